"""`reconnect bench`: throughput, latency, memory and cost on this machine, side by side in one run.

Everything runs against the embedded broker on loopback. Figures are only comparable within a
run (the machine is shared and noisy), so the throughput figures are also given as ratios to
two ceilings measured in the same run on the same topic: a bare aiokafka consumer (the
transport) and a Faust agent that only counts (the framework).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devtools.broker import EmbeddedBroker, free_port
from devtools.harness import REPO, WorkerProcess, create_topics, isolated_env, metric_sum
from streams.settings import Settings


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def row(self) -> str:
        verdict = "" if self.met is None else ("yes" if self.met else "**no**")
        shown = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:,.3g}"
        return f"| {self.name} | {shown} {self.unit} | {self.goal} | {verdict} | {self.note} |"


def _marks(count: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    """`count` register marks of a simulated cohort, in register order, as Kafka key/value pairs."""
    from models.simulator.generate import Simulation, SimulationConfig
    from streams.simulate_live import encode_mark
    from models.simulator.output import MarkFormatter

    simulation = Simulation(SimulationConfig(schools=4, pupils_per_school=300, phase="mixed", seed=seed))
    formatter = MarkFormatter(simulation.cohort, simulation.calendar)
    messages: list[tuple[bytes, bytes]] = []
    for result in simulation.days():
        messages.extend(encode_mark(record) for record in formatter.records(result.batch))
        if len(messages) >= count:
            break
    return messages[:count]


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=20, batch_size=512 * 1024,
                             max_request_size=8 * 1024 * 1024)
    started = time.perf_counter()
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


async def _bare_consume(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, first = 0, 0.0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batch and not first:
                first = time.perf_counter()
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - first
    finally:
        await consumer.stop()


def _faust_count(bootstrap: str, topic: str, count: int, event_loop: str = "uvloop") -> float:
    run = subprocess.run([sys.executable, "-m", "devtools.benchcount", "--bootstrap", bootstrap, "--topic", topic,
                          "--count", str(count), "--web-port", str(free_port()), "--event-loop", event_loop],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    for line in (run.stdout + run.stderr).splitlines():
        if "BENCH_RESULT" in line:
            return float(line.split("seconds=")[1].split()[0])
    raise RuntimeError(f"the count-only agent did not finish:\n{run.stderr[-2000:]}")


def _histogram_quantile(values: dict[str, float], name: str, q: float) -> float:
    """Prometheus-style quantile from cumulative buckets (linear within a bucket)."""
    buckets = sorted((float(key.split('le="')[1].split('"')[0]), value) for key, value in values.items()
                     if key.startswith(f"{name}_bucket"))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = bound, cumulative
    return lower


def _pipeline(bootstrap: str, count: int, workdir: Path, messages, profile: bool) -> tuple[float, dict, str]:
    env = isolated_env(bootstrap, f"benchpipe{time.time_ns()}")
    settings = create_topics(env)
    _produce(bootstrap, settings.topic_marks, messages)
    worker = WorkerProcess(env, workdir).start()
    spy_out = workdir / "py-spy.txt"
    try:
        worker.wait_ready(timeout=180)
        while metric_sum(worker.metrics(), "reconnect_marks_consumed_total") == 0:
            time.sleep(0.02)
        started = time.perf_counter()
        spy = None
        if profile and _py_spy():
            spy = subprocess.Popen([_py_spy(), "record", "-d", "20", "-r", "50", "-f", "raw", "-o", str(spy_out),
                                    "-p", str(worker.process.pid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while True:
            values = worker.metrics()
            if metric_sum(values, "reconnect_marks_applied_total") + metric_sum(
                    values, "reconnect_marks_dead_lettered_total") >= count:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        if spy:
            spy.wait(timeout=60)
        return elapsed, values, _profile_summary(spy_out) if spy else "(py-spy not installed: no profile)"
    finally:
        worker.stop()


def _py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else None


def _profile_summary(path: Path, top: int = 12) -> str:
    if not path.exists():
        return "(no profile recorded)"
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    rows = [f"| {n / total:.1%} | `{frame[:110]}` |" for frame, n in own.most_common(top)]
    return "| share of samples (own time) | frame |\n|---|---|\n" + "\n".join(rows)


def _burst(bootstrap: str, pupils: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Every pupil of a trust marked once (an AM register), spread over `seconds`."""
    env = isolated_env(bootstrap, f"benchburst{time.time_ns()}")
    settings = create_topics(env)
    worker = WorkerProcess(env, workdir).start()
    from kafka import KafkaProducer

    try:
        worker.wait_ready(timeout=180)
        producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=5)
        day = dt.date.today() - dt.timedelta(days=1)
        started = time.perf_counter()
        for i in range(pupils):
            pupil = f"T{i // 1000:03d}-P{i:06d}"
            value = (f'{{"schema_version":1,"school_id":"T{i // 1000:03d}","pupil_id":"{pupil}","date":"{day}",'
                     f'"session":"AM","code":"/","recorded_at":"{day}T08:50:00+00:00"}}').encode()
            producer.send(settings.topic_marks, key=pupil.encode(), value=value)
            due = started + seconds * (i + 1) / pupils
            if i % 500 == 0 and due > time.perf_counter():
                time.sleep(due - time.perf_counter())
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 600
        values = worker.metrics()
        while metric_sum(values, "reconnect_marks_applied_total") < pupils and time.monotonic() < deadline:
            time.sleep(0.5)
            values = worker.metrics()
        return {"p50": _histogram_quantile(values, "reconnect_processing_latency_seconds", 0.5),
                "p99": _histogram_quantile(values, "reconnect_processing_latency_seconds", 0.99),
                "applied": metric_sum(values, "reconnect_marks_applied_total"),
                "published_seconds": time.perf_counter() - started}
    finally:
        worker.stop()


# tracemalloc slows allocation several-fold; the per-pupil figure is stable well before 50,000.
MEMORY_SAMPLE_PUPILS = 10_000


def _memory_per_pupil(pupils: int, window_days: int) -> tuple[float, float]:
    """Bytes per tracked pupil (state object plus its table entry), for pupils with full windows."""
    from models.state import PupilState
    from schemas.codes import CODES

    start = dt.date(2025, 9, 1)
    present_am, present_pm, ill = CODES["/"].index, CODES["\\"].index, CODES["I"].index
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table: dict[str, PupilState] = {}
    for i in range(pupils):
        pupil = f"SCH{i // 1000:03d}-P{i:05d}"
        state = PupilState(f"SCH{i // 1000:03d}", window_days, start)
        for offset in range(window_days):
            day = start + dt.timedelta(days=offset)
            if day.weekday() < 5:
                stamp = 800_000_000 + offset * 86_400
                state.apply_raw(day.toordinal(), False, ill if (i + offset) % 17 == 0 else present_am, stamp, state.school_id)
                state.apply_raw(day.toordinal(), True, present_pm, stamp + 16_000, state.school_id)
        table[pupil] = state
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    serialized = sum(len(s.to_bytes()) for s in list(table.values())[:1000]) / 1000
    return used / pupils, serialized


def _scoring_cost(rows: int = 2000) -> tuple[float, float, float]:
    """Seconds per mark for features + batched scoring, batched scoring alone, and one-row scoring."""
    from models.artifact import load_model
    from models.features import features_batch, snapshot
    from models.state import PupilState
    from schemas.codes import CODES

    model = load_model(Settings().model_path)
    rng = np.random.default_rng(1)
    codes = [CODES[c].index for c in ("/", "\\", "I", "N", "L")]
    snapshots = []
    for _ in range(rows):
        state = PupilState("S", 126, dt.date(2025, 9, 1))
        for offset in range(100):
            day = dt.date(2025, 9, 1) + dt.timedelta(days=offset)
            if day.weekday() < 5:
                for pm in (False, True):
                    state.apply_raw(day.toordinal(), pm, int(rng.choice(codes, p=[.45, .45, .04, .03, .03])), 1, "S")
        snapshots.append(snapshot(state))
    started = time.perf_counter()
    _, X = features_batch(snapshots)
    model.score(X)
    batched_total = (time.perf_counter() - started) / rows
    started = time.perf_counter()
    model.score(X)
    batched = (time.perf_counter() - started) / rows
    started = time.perf_counter()
    for i in range(200):
        model.score(X[i:i + 1])
    single = (time.perf_counter() - started) / 200
    return batched_total, batched, single


def _replay(pupils: int, workdir: Path) -> tuple[int, float]:
    from models.artifact import load_model
    from models.engine import DecisionEngine
    from models.replay import replay_file
    from models.simulator.generate import SimulationConfig, simulate_year

    marks = workdir / "replay.csv"
    simulate_year(SimulationConfig(schools=max(pupils // 500, 1), pupils_per_school=min(pupils, 500), seed=9),
                  marks_path=marks)
    settings = Settings()
    engine = DecisionEngine(load_model(settings.model_path), window_days=settings.state_window_days)
    started = time.perf_counter()
    report, _ = replay_file(marks, engine, batch_size=5000)
    return report.read, time.perf_counter() - started


def run_bench(out: Path, *, marks: int, burst_pupils: int, burst_seconds: float, replay_pupils: int,
              profile: bool = True, echo=print) -> str:
    load_before = os.getloadavg()
    started = time.perf_counter()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as scratch, EmbeddedBroker() as broker:
        workdir = Path(scratch)
        echo(f"Embedded broker on {broker.bootstrap}; simulating {marks:,} marks...")
        messages = _marks(marks)
        env = isolated_env(broker.bootstrap, f"benchceil{time.time_ns()}")
        settings = create_topics(env)
        produce_s = _produce(broker.bootstrap, settings.topic_marks, messages)
        figures.append(Figure("kafka-python produce (setup)", marks / produce_s, "msg/s"))
        echo("Transport ceiling: bare aiokafka consumer...")
        bare = marks / asyncio.run(_bare_consume(broker.bootstrap, settings.topic_marks, marks))
        figures.append(Figure("ceiling 1: bare aiokafka consumer", bare, "msg/s", note="transport"))
        echo("Framework ceiling: a Faust agent that only counts...")
        count_only = marks / _faust_count(broker.bootstrap, settings.topic_marks, marks)
        figures.append(Figure("ceiling 2: Faust agent that only counts", count_only, "msg/s", note="framework"))
        echo("Full pipeline: one worker (validate, state, features, score, policy, publish)...")
        seconds, values, profile_text = _pipeline(broker.bootstrap, marks, workdir, messages, profile)
        pipeline = marks / seconds
        figures.append(Figure("full pipeline, one worker", pipeline, "marks/s", ">= 7,500", pipeline >= 7500,
                              f"{metric_sum(values, 'reconnect_interventions_published_total'):.0f} interventions"))
        figures.append(Figure("pipeline / bare consumer", pipeline / bare, "", note="ratio"))
        figures.append(Figure("pipeline / count-only Faust", pipeline / count_only, "", ">= 0.5",
                              pipeline / count_only >= 0.5, "ratio"))
        echo(f"Registration burst: {burst_pupils:,} pupils marked over {burst_seconds:.0f}s...")
        burst = _burst(broker.bootstrap, burst_pupils, burst_seconds, workdir)
        figures.append(Figure("burst: mark published -> decided, p50", burst["p50"], "s"))
        figures.append(Figure("burst: mark published -> decided, p99", burst["p99"], "s", "< 1 s", burst["p99"] < 1,
                              f"{burst['applied']:,.0f} marks in {burst['published_seconds']:.0f}s"))
    measured = min(burst_pupils, MEMORY_SAMPLE_PUPILS)
    echo(f"Memory per tracked pupil ({measured:,} pupils with full windows)...")
    per_pupil, serialized = _memory_per_pupil(measured, Settings().state_window_days)
    figures.append(Figure("memory per tracked pupil (full 18-week window)", per_pupil, "bytes", "<= 2,048",
                          per_pupil <= 2048, f"changelog record {serialized:,.0f} bytes"))
    figures.append(Figure(f"memory for {burst_pupils:,} pupils", per_pupil * burst_pupils / 2**20, "MiB",
                          note=f"per-pupil figure x {burst_pupils:,}"))
    echo("Scoring cost...")
    with_features, batched, single = _scoring_cost()
    figures.append(Figure("scoring per mark, micro-batched", batched * 1e6, "µs", "<= 20 µs", batched * 1e6 <= 20))
    figures.append(Figure("scoring per mark, one row at a time", single * 1e6, "µs", note="for comparison"))
    figures.append(Figure("features + scoring per mark, micro-batched", with_features * 1e6, "µs"))
    echo(f"Offline replay of a full year for {replay_pupils:,} pupils...")
    with tempfile.TemporaryDirectory() as scratch:
        read, replay_s = _replay(replay_pupils, Path(scratch))
    figures.append(Figure("offline replay, full year", read / replay_s, "marks/s", ">= 200,000",
                          read / replay_s >= 200_000, f"{read:,} marks in {replay_s:.0f}s"))
    report = _render(figures, profile_text, load_before, time.perf_counter() - started,
                     dict(marks=marks, burst_pupils=burst_pupils, burst_seconds=burst_seconds,
                          replay_pupils=replay_pupils))
    out.write_text(report)
    return report


OPTIMISATIONS = """## What was changed on the hot path, and what it gained

Measured during development on this machine, before and after, in the same conditions:

| change | before | after |
|---|---|---|
| Changelog: one Kafka record batch per partition per micro-batch, acknowledged before the batch's events, instead of Faust's one send per table write | 1,449 marks/s | 2,884 marks/s (same 60,000-mark run) |
| Features: a micro-batch of state snapshots summarised with numpy at once (`summarise_batch`) instead of a Python loop per mark | 60-140 µs/mark | 12-15 µs/mark (500-mark batches) |
| Mark validation: the model's checks called directly and the mark built without re-validation, instead of `model_validate` | 34 µs/mark | 12-20 µs/mark |
| Scoring: one calibrated boosted model instead of an ensemble of three; scored once per micro-batch | 69 µs/mark, 20 ms/call | 6.5 µs/mark |
| Offline replay (all of the above) | about 4,000 marks/s | about 16,000 marks/s |

What remains: the worker is now bound by Faust's per-message machinery (its consumer thread,
conductor and stream, about two thirds of the count-only ceiling are left for our work) and by
the round trips it waits for per micro-batch (interventions, dead letters and the changelog
are acknowledged before the batch's offsets can be committed). The goals of 7,500 marks/s per
worker and 200,000 marks/s offline were set against a machine where the count-only agent
reached 14,000-16,000 msg/s; here, in this run, it reached the figure in the table above.
Offline replay is Python per mark (CSV parsing, validation, state update); reaching 200,000
marks/s would need a columnar path (validate and apply a whole day of marks with numpy) that
shares the state layout but not the per-mark code, which is not built.
"""


def _render(figures: list[Figure], profile_text: str, load_before, elapsed: float, options: dict) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`reconnect bench --out BENCHMARKS.md`) on {dt.datetime.now():%Y-%m-%d %H:%M}, "
        f"commit {commit}, in {elapsed:.0f}s.",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}; "
        f"load average {load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end. The broker is the "
        "embedded tansu (in memory) on loopback. The machine is shared: compare figures within a run, as ratios.",
        "",
        f"Options: {', '.join(f'{k}={v:,}' if isinstance(v, int) else f'{k}={v}' for k, v in options.items())}.",
        "",
        "| measure | figure | goal | met | note |",
        "|---|---|---|---|---|",
        *(figure.row() for figure in figures),
        "",
        "## Where the worker's time goes",
        "",
        "py-spy samples of the worker during the full-pipeline run:",
        "",
        profile_text,
        "",
        OPTIMISATIONS,
    ]
    return "\n".join(lines)

"""`reconnect demo`: the whole system on one machine, in one command.

Starts the embedded broker, creates the topics, starts a worker, replays a simulated term so
far at full speed (so pupils have a history), then streams one school week day by day,
printing each intervention as it arrives. Stops everything on Ctrl-C or at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from rich.console import Console

from ops.broker import EmbeddedBroker, free_port
from streams.settings import REPO_ROOT, Settings

console = Console(highlight=False)
DEMO_DIR = REPO_ROOT / "var" / "demo"
# The live week: the eleventh week of the year, when most dips in the cohort have begun.
LIVE_WEEK_INDEX = 10
READY_TIMEOUT_S = 120
DRAIN_TIMEOUT_S = 300


def _ensure_model(settings: Settings) -> None:
    from models.artifact import ModelCompatibilityError, load_model

    try:
        model = load_model(settings.model_path)
        console.print(f"[bold]Model[/] {model.version} ({type(model.pipeline[-1]).__name__}, "
                      f"alert threshold {model.policy.enter_score:.2f})")
    except ModelCompatibilityError as exc:
        console.print(f"[yellow]{exc}[/]\nTraining a model first (about a minute)...")
        subprocess.run([sys.executable, "-m", "streams.cli", "train"], check=True, cwd=REPO_ROOT)


def _metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return totals


def _wait_ready(port: int, worker: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker stopped during start-up; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the worker was not ready within {READY_TIMEOUT_S}s; see {log}")


class InterventionPrinter(threading.Thread):
    """Prints each intervention as the worker publishes it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stop_event = threading.Event()
        self.kinds: Counter[str] = Counter()
        self.quiet = False

    def catch_up(self, published: float, timeout: float = 30.0) -> None:
        """Wait until every event published so far has been read (and counted, quietly)."""
        deadline = time.monotonic() + timeout
        while sum(self.kinds.values()) < published and time.monotonic() < deadline:
            time.sleep(0.1)

    def run(self) -> None:
        from kafka import KafkaConsumer

        from schemas.events import InterventionEvent

        consumer = KafkaConsumer(self.settings.topic_interventions, bootstrap_servers=self.settings.bootstrap_list,
                                 group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=300)
        try:
            while not self.stop_event.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for record in records:
                        event = InterventionEvent.model_validate_json(record.value)
                        self.kinds[f"{event.kind.value} tier {int(event.tier)}"] += 1
                        if not self.quiet:
                            colour = "green" if event.kind == "improving" else ("red" if event.tier == 3 else "yellow")
                            console.print(f"[{colour}]{event.headline()}[/]")
        finally:
            consumer.close()


def run_demo(*, schools: int, pupils_per_school: int, seed: int, pace: float) -> int:
    from models.simulator.generate import SimulationConfig
    from models.simulator.live import publish_live
    from ops.topics import ensure_topics

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    broker = EmbeddedBroker(log_path=DEMO_DIR / "broker.log")
    worker: subprocess.Popen | None = None
    printer: InterventionPrinter | None = None
    web_port = free_port()
    try:
        with console.status("Starting the embedded broker..."):
            broker.start()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "RECONNECT_WEB_PORT": str(web_port),
               "RECONNECT_DATA_DIR": str(DEMO_DIR / "faust"), "RECONNECT_METRICS_INTERVAL_S": "1"}
        os.environ.update({k: env[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "RECONNECT_WEB_PORT")})
        settings = Settings()
        console.print(f"[bold]Broker[/] embedded (tansu) on {broker.bootstrap}")
        _ensure_model(settings)
        for name, status in ensure_topics(settings).items():
            console.print(f"[bold]Topic[/] {name}: {status}")
        worker_log = DEMO_DIR / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
                                  cwd=REPO_ROOT, env=env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        with console.status("Starting the worker (joining the consumer group)..."):
            _wait_ready(web_port, worker, worker_log)
        console.print(f"[bold]Worker[/] ready. Metrics: http://127.0.0.1:{web_port}/metrics "
                      f"(also /readyz, /livez, /model, /state); log: {worker_log}")

        config = SimulationConfig(schools=schools, pupils_per_school=pupils_per_school, phase="mixed", seed=seed)
        school_days = config.calendar().school_days
        live_from = school_days[LIVE_WEEK_INDEX * 5]
        live_from -= dt.timedelta(days=live_from.weekday())
        live_to = live_from + dt.timedelta(days=4)
        printer = InterventionPrinter(settings)
        printer.quiet = True
        printer.start()
        console.print(f"\n[bold]Catching up[/] on {schools} schools x {pupils_per_school} pupils from "
                      f"{school_days[0]} to {live_from - dt.timedelta(days=1)} (as fast as possible)...")
        started = time.perf_counter()
        history = publish_live(config, to_date=live_from - dt.timedelta(days=1), bootstrap=settings.bootstrap_list,
                               topic=settings.topic_marks)
        values = _drain(web_port, history.marks)
        elapsed = time.perf_counter() - started
        printer.catch_up(values["reconnect_interventions_published_total"])
        console.print(f"  {history.marks:,} marks over {history.days} school days processed in {elapsed:.1f}s "
                      f"({history.marks / elapsed:,.0f} marks/s end to end); "
                      f"{sum(printer.kinds.values())} interventions raised along the way: {dict(printer.kinds)}")

        console.print(f"\n[bold]Live week[/] {live_from} to {live_to}, {pace:g}s per school day. "
                      "Each intervention as it arrives:")
        printer.quiet = False
        before = Counter(printer.kinds)
        week = publish_live(config, from_date=live_from, to_date=live_to, pace_seconds_per_day=pace,
                            bootstrap=settings.bootstrap_list, topic=settings.topic_marks,
                            on_day=lambda day, n: console.print(f"[dim]-- {day:%A %d %B}: {n} register marks --[/]"))
        values = _drain(web_port, history.marks + week.marks)
        time.sleep(1.0)  # let the printer catch the last events
        this_week = printer.kinds - before
        _summary(values, web_port, history.marks + week.marks, this_week)
        return 0
    except KeyboardInterrupt:
        console.print("\n[bold]Interrupted[/]: stopping cleanly.")
        return 130
    finally:
        if printer:
            printer.stop_event.set()
            printer.join(timeout=5)
        if worker and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        broker.stop()
        console.print("[dim]Worker and broker stopped; nothing left running.[/]")


def _drain(port: int, published: int) -> dict[str, float]:
    """Wait until the worker has handled every published mark."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = _metrics(port)
        handled = (values["reconnect_marks_applied_total"] + values["reconnect_marks_dead_lettered_total"]
                   + values["reconnect_marks_rekeyed_total"])
        if values["reconnect_marks_consumed_total"] >= published and handled >= values["reconnect_marks_consumed_total"]:
            return values
        time.sleep(0.5)
    raise RuntimeError(f"the worker handled {values.get('reconnect_marks_consumed_total', 0):,.0f} of "
                       f"{published:,} marks within {DRAIN_TIMEOUT_S}s")


def _summary(values: dict[str, float], port: int, published: int, this_week: Counter[str]) -> None:
    consumed = values["reconnect_marks_consumed_total"]
    applied = values["reconnect_marks_applied_total"]
    dead = values["reconnect_marks_dead_lettered_total"]
    console.print(f"\n[bold]This week[/]: {sum(this_week.values())} interventions {dict(this_week)}")
    console.print(f"[bold]Reconciliation[/]: published {published:,} = consumed {consumed:,.0f} = "
                  f"applied to pupil state {applied:,.0f} + dead-lettered {dead:,.0f}")
    console.print(f"[bold]Metrics[/] were at http://127.0.0.1:{port}/metrics "
                  f"(interventions published: {values['reconnect_interventions_published_total']:,.0f}, "
                  f"pupils tracked: {values['reconnect_pupils_tracked']:,.0f})")

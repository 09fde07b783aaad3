"""`reconnect demo`: the whole system on one machine, in one command.

Starts the embedded broker, creates the topics, starts a worker, replays a simulated term so
far at full speed (so pupils have a history), then streams one school week day by day,
printing each intervention as it arrives. Stops everything on Ctrl-C or at the end.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from collections import Counter

from rich.console import Console

from devtools.broker import EmbeddedBroker
from devtools.harness import WorkerProcess, reconnect_command, run_command
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
        run_command(reconnect_command("train"), timeout=3600).check_returncode()


def _totals(worker: WorkerProcess) -> Counter[str]:
    """The worker's metrics summed over their labels."""
    totals: Counter[str] = Counter()
    for key, value in worker.metrics().items():
        totals[key.split("{", 1)[0]] += value
    return totals


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
    from streams.simulate_live import publish_live
    from streams.topic_admin import ensure_topics

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    broker = EmbeddedBroker(log_path=DEMO_DIR / "broker.log")
    worker: WorkerProcess | None = None
    printer: InterventionPrinter | None = None
    try:
        with console.status("Starting the embedded broker..."):
            broker.start()
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap, broker_profile="embedded")
        console.print(f"[bold]Broker[/] embedded (tansu) on {broker.bootstrap}")
        _ensure_model(settings)
        for name, status in ensure_topics(settings).items():
            console.print(f"[bold]Topic[/] {name}: {status}")
        worker = WorkerProcess({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "RECONNECT_BROKER_PROFILE": "embedded"},
                               DEMO_DIR).start()
        with console.status("Starting the worker (joining the consumer group)..."):
            worker.wait_ready(timeout=READY_TIMEOUT_S)
        console.print(f"[bold]Worker[/] ready. Metrics: {worker.url}/metrics "
                      f"(also /readyz, /livez, /model, /state); log: {worker.log_path}")

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
        values = _drain(worker, history.marks)
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
        values = _drain(worker, history.marks + week.marks)
        time.sleep(1.0)  # let the printer catch the last events
        this_week = printer.kinds - before
        _summary(values, worker.url, history.marks + week.marks, this_week)
        return 0
    except KeyboardInterrupt:
        console.print("\n[bold]Interrupted[/]: stopping cleanly.")
        return 130
    finally:
        if printer:
            printer.stop_event.set()
            printer.join(timeout=5)
        if worker:
            worker.stop()
        broker.stop()
        console.print("[dim]Worker and broker stopped; nothing left running.[/]")


def _drain(worker: WorkerProcess, published: int) -> Counter[str]:
    """Wait until the worker has handled every published mark."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    values: Counter[str] = Counter()
    while time.monotonic() < deadline:
        values = _totals(worker)
        handled = (values["reconnect_marks_applied_total"] + values["reconnect_marks_dead_lettered_total"]
                   + values["reconnect_marks_rekeyed_total"])
        if values["reconnect_marks_consumed_total"] >= published and handled >= values["reconnect_marks_consumed_total"]:
            return values
        time.sleep(0.5)
    raise RuntimeError(f"the worker handled {values.get('reconnect_marks_consumed_total', 0):,.0f} of "
                       f"{published:,} marks within {DRAIN_TIMEOUT_S}s")


def _summary(values: Counter[str], url: str, published: int, this_week: Counter[str]) -> None:
    consumed = values["reconnect_marks_consumed_total"]
    applied = values["reconnect_marks_applied_total"]
    dead = values["reconnect_marks_dead_lettered_total"]
    console.print(f"\n[bold]This week[/]: {sum(this_week.values())} interventions {dict(this_week)}")
    console.print(f"[bold]Reconciliation[/]: published {published:,} = consumed {consumed:,.0f} = "
                  f"applied to pupil state {applied:,.0f} + dead-lettered {dead:,.0f}")
    console.print(f"[bold]Metrics[/] were at {url}/metrics "
                  f"(interventions published: {values['reconnect_interventions_published_total']:,.0f}, "
                  f"pupils tracked: {values['reconnect_pupils_tracked']:,.0f})")

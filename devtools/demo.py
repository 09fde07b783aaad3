"""`make demo` (`reconnect-dev demo`): the whole system on one machine, in one command.

Starts the embedded broker, creates the topics, starts a worker and the pastoral caseload with a
demo account, replays a simulated term so far at full speed (so pupils have a history), then
streams one school week day by day, printing each intervention as it arrives. The simulated year
is moved by whole weeks so that its live week ends yesterday: the caseload's "waiting" reads
true. Stops everything at the end (or, with --hold, on Ctrl-C) and leaves nothing running.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from devtools.broker import EmbeddedBroker, stop_on_signals
from devtools.caseload_process import CaseloadProcess
from devtools.harness import WorkerProcess, reconnect_command, run_command, wait_until
from streams.settings import REPO_ROOT, Settings

console = Console(highlight=False)
DEMO_DIR = REPO_ROOT / "var" / "demo"
# The live week: the eleventh week of the year, when most dips in the cohort have begun.
LIVE_WEEK_INDEX = 10
READY_TIMEOUT_S = 120
DRAIN_TIMEOUT_S = 300
DEMO_USER, DEMO_ROLE = "demo-head-of-year", "head_of_year"


def _ensure_model(settings: Settings) -> None:
    from models.artifact import ModelCompatibilityError, load_model

    try:
        model = load_model(settings.model_path)
        console.print(f"[bold]Model[/] {model.version} ({type(model.pipeline[-1]).__name__}, "
                      f"alert threshold {model.policy.enter_score:.3f})")
    except ModelCompatibilityError as exc:
        console.print(f"[yellow]{exc}[/]\nTraining a model first (a few minutes)...")
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

    def read(self) -> float:
        return sum(self.kinds.values())

    def run(self) -> None:
        from schemas.events import InterventionEvent, InterventionKind
        from streams.clients import kafka_consumer

        consumer = kafka_consumer(self.settings, self.settings.topic_interventions, group_id=None, role="demo")
        try:
            while not self.stop_event.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for record in records:
                        event = InterventionEvent.model_validate_json(record.value)
                        self.kinds[f"{event.kind.value} tier {int(event.tier)}"] += 1
                        if not self.quiet:
                            colour = ("green" if event.kind is InterventionKind.IMPROVING else
                                      "cyan" if event.kind is InterventionKind.HEALTH_NEEDS else
                                      "red" if event.tier == 3 else "yellow")
                            console.print(f"[{colour}]{event.headline()}[/]")
        finally:
            consumer.close()


def _shift_weeks(live_to: dt.date, today: dt.date) -> int:
    """Whole weeks that move the simulated live week (ending on Friday `live_to`) to the latest week
    whose recordings are all before today, the corrections of Friday's marks entered the next
    Monday included: a recording in the future is rightly dead-lettered."""
    from models.simulator.generate import DAYS_FROM_FRIDAY_TO_NEXT_WEEKDAY

    return ((today - live_to).days - DAYS_FROM_FRIDAY_TO_NEXT_WEEKDAY - 1) // 7


def _write_private(path: Path, text: str) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return path


def run_demo(*, schools: int, pupils_per_school: int, seed: int, pace: float, hold: bool) -> int:
    from models.simulator.generate import SimulationConfig
    from streams.simulate_live import publish_live
    from streams.topic_admin import ensure_topics

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    broker = EmbeddedBroker(log_path=DEMO_DIR / "broker.log")
    worker: WorkerProcess | None = None
    caseload: CaseloadProcess | None = None
    printer: InterventionPrinter | None = None
    try:
        with stop_on_signals():
            with console.status("Starting the embedded broker..."):
                broker.start()
            settings = Settings(kafka_bootstrap_servers=broker.bootstrap, broker_profile="embedded")
            console.print(f"[bold]Broker[/] embedded (tansu) on {broker.bootstrap}")
            _ensure_model(settings)
            for name, status in ensure_topics(settings).items():
                console.print(f"[bold]Topic[/] {name}: {status}")
            shared = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "RECONNECT_BROKER_PROFILE": "embedded"}
            worker = WorkerProcess(shared, DEMO_DIR).start()
            caseload = CaseloadProcess(shared, DEMO_DIR / "caseload")
            password = secrets.token_urlsafe(12)
            caseload.add_user(DEMO_USER, password, DEMO_ROLE, [f"SCH{n:03d}" for n in range(1, schools + 1)])
            caseload.start()
            with console.status("Starting the worker (joining the consumer group) and the caseload..."):
                worker.wait_ready(timeout=READY_TIMEOUT_S)
                caseload.wait_ready(timeout=READY_TIMEOUT_S)
            token_file = _write_private(DEMO_DIR / "api-token", worker.api_token)
            console.print(f"[bold]Worker[/] ready. Metrics: {worker.url}/metrics (also /readyz, /livez; "
                          f"/model and /state take the bearer token in {token_file}); log: {worker.log_path}")
            console.print(f"[bold]Caseload[/] {caseload.url}  sign in as [bold]{DEMO_USER}[/] with password "
                          f"[bold]{password}[/] (demo account, this run only)")

            config = SimulationConfig(schools=schools, pupils_per_school=pupils_per_school, phase="mixed", seed=seed)
            school_days = config.calendar().school_days
            live_from = school_days[LIVE_WEEK_INDEX * 5]
            live_from -= dt.timedelta(days=live_from.weekday())
            live_to = live_from + dt.timedelta(days=4)
            weeks = _shift_weeks(live_to, dt.date.today())
            shift = dt.timedelta(weeks=weeks)
            printer = InterventionPrinter(settings)
            printer.quiet = True
            printer.start()
            console.print(f"\n[bold]Catching up[/] on {schools} schools x {pupils_per_school} pupils from "
                          f"{school_days[0] + shift} to {live_from - dt.timedelta(days=1) + shift} "
                          f"(the simulated year moved {weeks} weeks, so that all of it is recorded before today; "
                          "as fast as possible)...")
            started = time.perf_counter()
            history = publish_live(config, to_date=live_from - dt.timedelta(days=1), bootstrap=settings.bootstrap_list,
                                   topic=settings.topic_marks, shift_weeks=weeks)
            values = _drain(worker, history.marks)
            elapsed = time.perf_counter() - started
            wait_until(lambda: printer.read() >= values["reconnect_interventions_published_total"], timeout=30,
                       what="the printer to read the interventions so far")
            console.print(f"  {history.marks:,} marks over {history.days} school days processed in {elapsed:.1f}s "
                          f"({history.marks / elapsed:,.0f} marks/s end to end); "
                          f"{printer.read():.0f} interventions raised along the way: {dict(printer.kinds)}")

            console.print(f"\n[bold]Live week[/] {live_from + shift} to {live_to + shift}, {pace:g}s per school "
                          "day. Each intervention as it arrives:")
            printer.quiet = False
            before = Counter(printer.kinds)
            week = publish_live(
                config, from_date=live_from, to_date=live_to, pace_seconds_per_day=pace,
                bootstrap=settings.bootstrap_list, topic=settings.topic_marks, shift_weeks=weeks,
                on_day=lambda day, n: console.print(f"[dim]-- {day + shift:%A %d %B}: {n} register marks --[/]"))
            values = _drain(worker, history.marks + week.marks)
            wait_until(lambda: printer.read() >= values["reconnect_interventions_published_total"], timeout=30,
                       what="the printer to read every intervention")
            _summary(values, worker.url, history.marks + week.marks, printer.kinds - before, caseload)
            if hold:
                console.print(f"\n[bold]Everything stays up[/]: the caseload at {caseload.url} "
                              f"(sign in as {DEMO_USER}). Press Ctrl-C to stop.")
                caseload.process.wait()
        return 0
    except KeyboardInterrupt:
        console.print("\n[bold]Stopping[/] cleanly.")
        return 0 if hold else 130
    finally:
        if printer:
            printer.stop_event.set()
            printer.join(timeout=5)
        for process in (caseload, worker):
            if process:
                process.stop()
        broker.stop()
        console.print("[dim]Caseload, worker and broker stopped; nothing left running.[/]")


def _drain(worker: WorkerProcess, published: int) -> Counter[str]:
    """Wait until the worker has handled every published mark."""

    def handled() -> Counter[str] | None:
        values = _totals(worker)
        done = (values["reconnect_marks_applied_total"] + values["reconnect_marks_dead_lettered_total"]
                + values["reconnect_marks_rekeyed_total"])
        consumed = values["reconnect_marks_consumed_total"]
        return values if consumed >= published and done >= consumed else None

    return wait_until(handled, timeout=DRAIN_TIMEOUT_S, interval=0.5, what=f"the worker to handle {published:,} marks")


def _summary(values: Counter[str], url: str, published: int, this_week: Counter[str],
             caseload: CaseloadProcess) -> None:
    consumed = values["reconnect_marks_consumed_total"]
    applied = values["reconnect_marks_applied_total"]
    dead = values["reconnect_marks_dead_lettered_total"]
    console.print(f"\n[bold]This week[/]: {sum(this_week.values())} interventions {dict(this_week)}")
    console.print(f"[bold]Reconciliation[/]: published {published:,} = consumed {consumed:,.0f} = "
                  f"applied to pupil state {applied:,.0f} + dead-lettered {dead:,.0f}")
    console.print(f"[bold]Metrics[/] were at {url}/metrics "
                  f"(interventions published: {values['reconnect_interventions_published_total']:,.0f}, "
                  f"pupils tracked: {values['reconnect_pupils_tracked']:,.0f})")
    health = caseload.health()[1]
    console.print(f"[bold]Caseload[/] {caseload.url}: {health}")

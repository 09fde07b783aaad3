"""The development tools leave nothing behind, and the demo publishes nothing recorded after today."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys

import pytest

from devtools.broker import free_port, wait_for_port
from streams.settings import REPO_ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.broker
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_broker_command_stops_its_child_on_sigterm_and_sigint(stop_signal, wait_until):
    port = free_port()
    command = subprocess.Popen([sys.executable, "-m", "devtools.cli", "broker", "--port", str(port)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = command.stdout.readline()
        child = int(re.search(r"pid (\d+)", banner).group(1))
        assert wait_for_port("127.0.0.1", port, 30) and _alive(child)
        command.send_signal(stop_signal)
        assert command.wait(timeout=30) is not None
        wait_until(lambda: not _alive(child), timeout=15, what="the tansu child to exit")
    finally:
        if command.poll() is None:
            command.kill()


@pytest.mark.parametrize("today", [dt.date(2026, 11, 30) + dt.timedelta(days=n) for n in range(14)])
def test_the_demo_week_and_its_corrections_are_all_recorded_before_today(today):
    """Run on a Saturday, the demo's live week ended the day before and Friday's corrections,
    entered first thing Monday, were in the future: 4 marks were dead-lettered."""
    from devtools.demo import _shift_weeks

    friday = dt.date(2025, 10, 17)  # the simulated live week's Friday
    shifted = friday + dt.timedelta(weeks=_shift_weeks(friday, today))
    corrections_entered = shifted + dt.timedelta(days=3)  # the next Monday
    assert shifted.weekday() == 4 and corrections_entered < today
    assert corrections_entered + dt.timedelta(weeks=1) >= today  # and no older than it needs to be


def test_the_count_only_bench_agent_keeps_faust_data_out_of_the_working_tree(tmp_path):
    """`make bench` left a `reconnect-bench-count-<ns>-data` folder in the repository root per run:
    Faust makes its data directory in the current directory unless told otherwise."""
    import shutil
    from pathlib import Path

    from devtools.benchcount import build_app, parse_args

    base = ["--bootstrap", "127.0.0.1:9", "--topic", "marks", "--count", "1"]
    given = build_app(parse_args([*base, "--data-dir", str(tmp_path)]))
    assert Path(given.conf.datadir).resolve().is_relative_to(tmp_path.resolve())
    default_args = parse_args(base)
    try:
        default = Path(build_app(default_args).conf.datadir).resolve()
        assert not default.is_relative_to(REPO_ROOT.resolve())
        assert default.is_relative_to(Path(default_args.data_dir).resolve())
    finally:
        shutil.rmtree(default_args.data_dir, ignore_errors=True)

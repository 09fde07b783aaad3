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


def test_the_frontier_refuses_evaluation_training_and_validation_cohorts(model_path):
    from devtools.frontier import HeldBackSeed, refuse_held_back
    from models.artifact import load_model
    from models.evaluation.cohorts import DEFAULT_EVAL_SEED, SHIFTED_EVAL_SEED

    model = load_model(model_path)
    model.training["validation"] = {"seed": 10_007, "profile": "default"}  # a model whose threshold was validated
    for seed in (DEFAULT_EVAL_SEED, SHIFTED_EVAL_SEED, model.training["simulation"]["seed"], 10_007):
        with pytest.raises(HeldBackSeed, match=f"seed {seed} is"):
            refuse_held_back([99, seed], model)
    refuse_held_back([99, 101], model)
    refused = subprocess.run([sys.executable, "-m", "devtools.cli", "frontier", "--seed", str(DEFAULT_EVAL_SEED)],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert refused.returncode == 2 and "evaluation cohort" in refused.stderr


def test_the_frontier_pools_every_cohorts_counts(model_path, tmp_path):
    from devtools.frontier import measure, render
    from models.artifact import load_model

    model = load_model(model_path)
    points = measure(model, [3, 5], [0.5, model.policy.enter_score], cache=tmp_path, window_days=126,
                     schools=1, pupils_per_school=120)
    low, shipped = points
    assert [p.enter_score for p in points] == [0.5, model.policy.enter_score]
    for point in points:
        first, second = point.per_cohort
        assert point.pooled.alerts == first.alerts + second.alerts
        assert point.pooled.alerts_in_dip == first.alerts_in_dip + second.alerts_in_dip
        assert point.pooled.dips == first.dips + second.dips > 0
        assert sorted(point.pooled.lead_days) == sorted(first.lead_days + second.lead_days)
        weeks = (first.pupils * first.school_days + second.pupils * second.school_days) / 5
        assert point.concerns_per_100_per_week == pytest.approx(100 * point.pooled.alerts / weeks)
    assert low.pooled.alerts >= shipped.pooled.alerts  # a lower entry score never raises fewer concerns here
    table = render(points, shipped=model.policy.enter_score)
    assert "Pooled over 2 development cohorts" in table and f"{model.policy.enter_score:.3f} (shipped)" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default-1x120-seed3", "default-1x120-seed5"]

"""Two workers share the partitions; when one is killed the other takes over with nothing lost."""

from __future__ import annotations

import time
import uuid

import pytest

from schemas.interchange import read_marks
from tests.stack import WorkerProcess, create_topics, isolated_env, metric_sum, produce_raw
from tests.test_faults import _wire
from tests.test_stream import write_crafted_csv

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _assigned(worker: WorkerProcess) -> set[str]:
    return {key for key in worker.metrics() if key.startswith("reconnect_consumer_lag_messages{")}


def test_two_workers_split_the_work_and_survive_one_being_killed(broker, model_path, tmp_path):
    marks_csv = write_crafted_csv(tmp_path / "marks.csv")
    messages = _wire(marks_csv)
    expected = {row.mark.key for row in read_marks(marks_csv) if row.mark}
    env = isolated_env(broker.bootstrap, f"scale{uuid.uuid4().hex[:8]}")
    settings = create_topics(env)
    one, two = WorkerProcess(env, tmp_path).start(), WorkerProcess(env, tmp_path).start()
    try:
        one.wait_ready(timeout=180)
        two.wait_ready(timeout=180)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (_assigned(one) and _assigned(two)):
            time.sleep(0.5)
        split = (_assigned(one), _assigned(two))
        assert split[0] and split[1] and not split[0] & split[1], f"partitions not split: {split}"

        half = len(messages) // 2
        produce_raw(broker.bootstrap, settings.topic_marks, messages[:half])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            applied = [metric_sum(w.metrics(), "reconnect_marks_applied_total") for w in (one, two)]
            if sum(applied) >= half:
                break
            time.sleep(0.5)
        assert sum(applied) == half and all(applied), f"work not shared: {applied}"
        held_before = [w.state()["sessions_held"] for w in (one, two)]
        print(f"two workers: applied {applied}, sessions held {held_before}")

        one.kill()
        produce_raw(broker.bootstrap, settings.topic_marks, messages[half:])
        deadline = time.monotonic() + 240
        state = two.state()
        while time.monotonic() < deadline and state["sessions_held"] < len(expected):
            time.sleep(1)
            state = two.state()
        # The survivor restored the dead worker's pupils from the changelog and finished the stream:
        # every distinct session exactly once, none lost, none counted twice.
        assert state["sessions_held"] == len(expected)
        assert state["pupils"] == len({key[0] for key in expected})
        assert len(_assigned(two)) == settings.topic_partitions
        print(f"survivor: {state}, rebalances {metric_sum(two.metrics(), 'reconnect_rebalances_total'):.0f}")
    finally:
        one.stop()
        two.stop()

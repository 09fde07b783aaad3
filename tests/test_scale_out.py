"""Two workers share the partitions; when one is killed the other takes over with nothing lost.

Each check waits for the condition it asserts (wait_until), never for a fixed time: the
partition split, for instance, is read from a gauge refreshed after a rebalance, so a survivor
can hold every session a moment before it reports owning every partition.
"""

from __future__ import annotations

import uuid

import pytest

from devtools.harness import (
    WorkerProcess,
    create_topics,
    isolated_env,
    marks_messages,
    metric_sum,
    produce_raw,
)
from schemas.interchange import read_marks

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _owned(worker: WorkerProcess) -> int:
    return int(worker.metrics().get("reconnect_partitions_assigned", 0))


def test_two_workers_split_the_work_and_survive_one_being_killed(broker, model_path, tmp_path, crafted_csv,
                                                                  wait_until):
    marks_csv = crafted_csv()
    messages = marks_messages(marks_csv)
    expected = {row.mark.key for row in read_marks(marks_csv) if row.mark}
    env = isolated_env(broker.bootstrap, f"scale{uuid.uuid4().hex[:8]}")
    settings = create_topics(env)
    # Info-level logs record each rebalance step, so a failure can be read afterwards.
    one, two = (WorkerProcess(env, tmp_path, loglevel="info").start(),
                WorkerProcess(env, tmp_path, loglevel="info").start())
    try:
        one.wait_ready(timeout=180)
        two.wait_ready(timeout=180)
        wait_until(lambda: _owned(one) + _owned(two) == settings.topic_partitions and _owned(one) and _owned(two),
                   timeout=90, what="the partitions to be split between the two workers")

        half = len(messages) // 2
        produce_raw(broker.bootstrap, settings.topic_marks, messages[:half])

        def applied() -> list[float]:
            return [metric_sum(w.metrics(), "reconnect_marks_applied_total") for w in (one, two)]

        wait_until(lambda: sum(applied()) >= half, timeout=180, what="the first half to be applied")
        assert sum(applied()) == half and all(applied()), f"work not shared: {applied()}"

        one.kill()
        produce_raw(broker.bootstrap, settings.topic_marks, messages[half:])
        # The survivor restores the dead worker's pupils from the changelog and finishes the stream:
        # every distinct session exactly once, none lost, none counted twice.
        wait_until(lambda: two.state()["sessions_held"] >= len(expected), timeout=240,
                   what="the survivor to hold every session")
        state = two.state()
        assert state["sessions_held"] == len(expected)
        assert state["pupils"] == len({key[0] for key in expected})
        wait_until(lambda: _owned(two) == settings.topic_partitions, timeout=60,
                   what="the survivor to report owning every partition")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n\n{one.diagnosis()}\n\n{two.diagnosis()}") from None
    finally:
        one.stop()
        two.stop()

"""Test helpers: the shared harness for real workers and topics (ops/harness.py)."""

from ops.harness import (  # noqa: F401 - re-exported for the tests
    REPO, WorkerProcess, consume_all, create_topics, isolated_env, metric_sum, metric_values, produce_raw,
    settings_for,
)

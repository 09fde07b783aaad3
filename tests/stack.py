"""Test helpers: the shared harness for real workers and topics (devtools/harness.py)."""

from devtools.harness import (  # noqa: F401 - re-exported for the tests
    REPO, WorkerProcess, consume_all, create_topics, isolated_env, metric_sum, metric_values, produce_raw,
    settings_for,
)

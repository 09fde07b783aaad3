"""Development tooling: the embedded broker, the demo, the benchmarks and the test harness.

Nothing in production imports this package (tests/test_layers.py checks it); it may import
everything else. Its command is `reconnect-dev`.
"""

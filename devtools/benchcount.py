"""A Faust agent that only counts: the framework's ceiling, for `reconnect bench`.

Run as `python -m devtools.benchcount worker`; configured by BENCH_* environment variables.
It is a separate app (its own consumer group), so it never touches the real one.
"""

from __future__ import annotations

import os
import time

import faust

app = faust.App(
    os.environ.get("BENCH_APP_ID", "reconnect-bench-count"),
    broker=f"kafka://{os.environ.get('BENCH_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://", broker_session_timeout=6, broker_heartbeat_interval=1,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")), consumer_auto_offset_reset="earliest",
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6067")), web_enabled=False,
)
topic = app.topic(os.environ.get("BENCH_TOPIC", "bench"), key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")
EXPECTED = int(os.environ.get("BENCH_COUNT", "0"))
seen = {"count": 0, "first": 0.0}


@app.agent(topic)
async def count(stream) -> None:
    async for _ in stream:
        if not seen["count"]:
            seen["first"] = time.perf_counter()
        seen["count"] += 1
        if seen["count"] >= EXPECTED:
            elapsed = time.perf_counter() - seen["first"]
            print(f"BENCH_RESULT count={seen['count']} seconds={elapsed:.4f}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    app.main()

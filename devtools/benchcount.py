"""A Faust agent that only counts: the framework's ceiling, for `make bench`.

Run as `python -m devtools.benchcount --bootstrap HOST:PORT --topic T --count N [--event-loop uvloop]
[--data-dir DIR]`.
It is a separate app (its own consumer group), so it never touches the real one; stock Faust
settings apart from the group timing every client here uses and the event loop asked for, so the
pipeline is compared with what the framework gives any agent on the same loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence

import faust

from streams.launch import loop_kind


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.app_id, broker=f"kafka://{args.bootstrap}", store="memory://", broker_session_timeout=6,
        broker_heartbeat_interval=1, topic_partitions=args.partitions, consumer_auto_offset_reset="earliest",
        web_port=args.web_port, web_enabled=False, datadir=args.data_dir,
    )
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def count(stream) -> None:
        async for _ in stream:
            if not seen["count"]:
                seen["first"] = time.perf_counter()
            seen["count"] += 1
            if seen["count"] >= args.count:
                print(f"BENCH_RESULT count={seen['count']} seconds={time.perf_counter() - seen['first']:.4f} "
                      f"loop={loop_kind(asyncio.get_running_loop())}", flush=True)
                os._exit(0)

    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--app-id", default=f"reconnect-bench-count-{time.time_ns()}")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--web-port", type=int, default=6067)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    # Faust keeps a data directory even with the memory store; by default it is made in the
    # current directory, which for `make bench` is the working tree.
    parser.add_argument("--data-dir", default=None, help="Faust's data directory (default: a new temporary one).")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = tempfile.mkdtemp(prefix="reconnect-bench-count-")
    return args


def main() -> None:
    args = parse_args()
    from faust.worker import Worker

    from streams.launch import use_event_loop

    use_event_loop(args.event_loop)
    Worker(build_app(args), loglevel="warning", loop=asyncio.get_event_loop()).execute_from_commandline()


if __name__ == "__main__":
    main()

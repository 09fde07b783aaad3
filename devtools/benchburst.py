"""The registration burst's publisher, for `make bench`: an MIS sending an AM register.

Run as `python -m devtools.benchburst --bootstrap HOST:PORT --topic T --pupils N --seconds S`.
Every pupil of a trust is marked present once, spread evenly over S seconds (sent in clumps of
500, as a register sync does). It runs in a process of its own, as a school's system would: a
record's timestamp is taken when it is handed to the producer, so a publisher sharing a process
with the bench's other work would count its own pauses (a garbage collection over the bench's
objects) as the worker's latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from kafka import KafkaProducer

CLUMP = 500


def publish(bootstrap: str, topic: str, pupils: int, seconds: float) -> float:
    """Seconds the publishing took."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=5)
    day = dt.date.today() - dt.timedelta(days=1)
    started = time.perf_counter()
    for i in range(pupils):
        school = f"T{i // 1000:03d}"
        pupil = f"{school}-P{i:06d}"
        value = (f'{{"schema_version":1,"school_id":"{school}","pupil_id":"{pupil}","date":"{day}",'
                 f'"session":"AM","code":"/","recorded_at":"{day}T08:50:00+00:00"}}').encode()
        producer.send(topic, key=pupil.encode(), value=value)
        due = started + seconds * (i + 1) / pupils
        if i % CLUMP == 0 and due > time.perf_counter():
            time.sleep(due - time.perf_counter())
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--pupils", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    print(f"BURST_PUBLISHED seconds={publish(args.bootstrap, args.topic, args.pupils, args.seconds):.3f}", flush=True)


if __name__ == "__main__":
    main()

"""`reconnect dead-letters`: what was dead-lettered and why, and a replay once the cause is fixed.

Dead letters hold raw input, which may carry pupil data, so the listing shows only where each
came from (file and line, or topic, partition and offset), its reason and size; the raw input
and the detail are printed only on request (`--show-raw`). They stay on the dead-letter topic
for RECONNECT_DEAD_LETTER_RETENTION_DAYS (default 90) days.

A replay rebuilds each selected dead letter's input and validates it again with the current
settings: a CSV row from its stored header line and raw bytes, a topic message from its raw
bytes. What now passes is published to the marks topic keyed by its pupil (a message byte for
byte as it was, a row as the mark ingest would have published); what still fails is counted
by its new reason and not published, so a replay never multiplies dead letters. Marks are
idempotent downstream (the same recording of a session replaces itself), so replaying the
same dead letters twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from pydantic import ValidationError

from schemas.deadletter import DeadLetter
from schemas.interchange import InterchangeFormatError, header_columns, parse_row
from schemas.marks import MarkLimits, MarkRejected, parse_mark_json
from streams.clients import ProducerRole, kafka_consumer, kafka_producer
from streams.settings import Settings


class DeadLetterTopicMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class StoredLetter:
    """One record of the dead-letter topic, read or not."""

    partition: int
    offset: int
    key: bytes | None
    letter: DeadLetter | None  # None: the record is not a dead letter this version can read
    problem: str | None = None

    @property
    def where(self) -> str:
        """Where the input came from, without any of its content."""
        letter = self.letter
        if letter is None:
            return f"dead-letter record [{self.partition}]@{self.offset}"
        if letter.source_file is not None:
            return f"{letter.source_file} line {letter.line}"
        if letter.topic is not None:
            return f"{letter.topic}[{letter.partition}]@{letter.offset}"
        return f"dead-letter record [{self.partition}]@{self.offset}"


def read_dead_letters(settings: Settings, *, timeout_s: float = 60.0) -> Iterator[StoredLetter]:
    """Every record on the dead-letter topic, oldest first per partition, up to the high water
    mark seen when reading (taken from fetch responses: right on Kafka and on the embedded
    broker, whose ListOffsets end offset can be low)."""
    topic = settings.topic_dead_letter
    consumer = kafka_consumer(settings, group_id=None, role="dead-letters")
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise DeadLetterTopicMissing(f"topic {topic} does not exist (reconnect topics create makes it)")
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        deadline = time.monotonic() + timeout_s
        while True:
            for records in consumer.poll(timeout_ms=500).values():
                deadline = time.monotonic() + timeout_s  # progress: a long topic is not a stuck one
                for record in records:
                    yield _stored(record)
            if all(_caught_up(consumer, tp) for tp in assigned):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no progress reading {topic} to its end for {timeout_s:.0f}s")
    finally:
        consumer.close()


def _caught_up(consumer, tp: TopicPartition) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and consumer.position(tp) >= highwater


def _stored(record) -> StoredLetter:
    try:
        letter = DeadLetter.model_validate_json(record.value or b"")
    except ValidationError as error:
        return StoredLetter(record.partition, record.offset, record.key, None,
                            f"not a dead letter: {error.errors(include_url=False)[0]['type']}")
    return StoredLetter(record.partition, record.offset, record.key, letter)


# -- selection ---------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """`--since`: an ISO date or timestamp (no offset means UTC), or an age such as 90m, 12h, 7d."""
    now = now or dt.datetime.now(dt.timezone.utc)
    text = text.strip()
    if match := _DURATION.fullmatch(text):
        return now - dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO date or timestamp nor an age like 12h or 7d") from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Selection:
    reasons: frozenset[str] = frozenset()  # empty: any
    stages: frozenset[str] = frozenset()
    since: dt.datetime | None = None
    source_file: str | None = None

    @property
    def is_everything(self) -> bool:
        return not (self.reasons or self.stages or self.since or self.source_file)

    def __call__(self, stored: StoredLetter) -> bool:
        letter = stored.letter
        if letter is None:
            return self.is_everything
        return ((not self.reasons or letter.reason in self.reasons)
                and (not self.stages or letter.stage in self.stages)
                and (self.since is None or letter.dead_lettered_at >= self.since)
                and (self.source_file is None or letter.source_file == self.source_file))


# -- listing -----------------------------------------------------------------------------------

@dataclass
class Listing:
    total: int = 0
    by_reason: Counter = field(default_factory=Counter)
    by_stage: Counter = field(default_factory=Counter)
    unreadable: int = 0
    selected: list[StoredLetter] = field(default_factory=list)


def summarise(stored: Iterable[StoredLetter], selection: Selection) -> Listing:
    listing = Listing()
    for record in stored:
        if not selection(record):
            continue
        listing.total += 1
        listing.selected.append(record)
        if record.letter is None:
            listing.unreadable += 1
        else:
            listing.by_reason[record.letter.reason] += 1
            listing.by_stage[record.letter.stage] += 1
    return listing


def describe(stored: StoredLetter, *, show_raw: bool) -> list[str]:
    """A listing line: when, stage, reason, where, size. The detail and raw input (which may
    name a pupil) only with show_raw."""
    letter = stored.letter
    if letter is None:
        return [f"  {'?':20}  {'?':7}  {'unreadable':24}  {stored.where}  ({stored.problem})"]
    size = f"{letter.raw_bytes} bytes {letter.raw_encoding}" + (" truncated" if letter.truncated else "")
    lines = [f"  {letter.dead_lettered_at.isoformat(timespec='seconds'):20}  {letter.stage:7}  "
             f"{letter.reason:24}  {stored.where}  {size}"]
    if show_raw:
        lines.append(f"      detail: {letter.detail}")
        lines.append(f"      raw:    {letter.raw!r}")
    return lines


# -- replay ------------------------------------------------------------------------------------

@dataclass
class ReplayReport:
    selected: int = 0
    replayed: int = 0  # acknowledged on the marks topic
    still_rejected: Counter = field(default_factory=Counter)  # reason -> count, under today's settings
    not_replayable: Counter = field(default_factory=Counter)  # why -> count
    failed: int = 0
    send_error: str | None = None

    def line(self) -> str:
        return (f"selected {self.selected}, replayed {self.replayed}, still rejected "
                f"{sum(self.still_rejected.values())}, not replayable {sum(self.not_replayable.values())}"
                + (f", FAILED to send {self.failed}" if self.failed else ""))


@dataclass(frozen=True)
class Rebuilt:
    key: bytes
    value: bytes


def rebuild(letter: DeadLetter, *, limits: MarkLimits, today: dt.date, now: dt.datetime | None) -> Rebuilt:
    """The input of a dead letter as a marks-topic record under the current limits; raises
    MarkRejected when it is still not a mark, ValueError when it cannot be rebuilt at all."""
    if letter.truncated:
        raise ValueError("truncated")  # only the beginning of the input was kept
    raw = letter.raw_payload()
    if letter.header is not None:
        try:
            columns = header_columns(letter.header)
        except InterchangeFormatError:
            raise ValueError("unreadable_header") from None
        # A row without recorded_at took the time of its import; the dead letter was written then.
        mark = parse_row(raw, columns, limits=limits, today=today, now=now,
                         recorded_at_default=letter.dead_lettered_at.isoformat())
        return Rebuilt(mark.pupil_id.encode(), mark.to_wire())
    if letter.topic is not None:
        mark = parse_mark_json(raw, limits=limits, today=today, now=now)
        return Rebuilt(mark.pupil_id.encode(), raw)  # the message as it was, keyed by its pupil
    raise ValueError("no_source")  # neither a CSV row with its header nor a topic message


def replay(settings: Settings, letters: Iterable[StoredLetter], *, dry_run: bool = False, producer=None,
           today: dt.date | None = None, now: dt.datetime | None = None) -> ReplayReport:
    """Re-publish what now passes validation to the marks topic; count the rest by reason."""
    report = ReplayReport()
    limits = settings.mark_limits()
    today = today or dt.date.today()
    lock = threading.Lock()

    def acknowledged(_metadata) -> None:
        with lock:
            report.replayed += 1

    def failed(exc: BaseException) -> None:
        with lock:
            report.failed += 1
            report.send_error = report.send_error or f"{type(exc).__name__}: {exc}"

    own_producer = producer is None and not dry_run
    broker_down: BaseException | None = None
    if own_producer:
        try:
            producer = kafka_producer(settings, ProducerRole.BULK)
        except KafkaError as exc:
            broker_down = exc
    try:
        for stored in letters:
            report.selected += 1
            if stored.letter is None:
                report.not_replayable["unreadable_record"] += 1
                continue
            try:
                rebuilt = rebuild(stored.letter, limits=limits, today=today, now=now)
            except MarkRejected as rejection:
                report.still_rejected[rejection.reason.value] += 1
                continue
            except ValueError as why:
                report.not_replayable[str(why)] += 1
                continue
            if dry_run:
                report.replayed += 1
                continue
            if broker_down is not None:
                failed(broker_down)  # counted, not tried: each try would block for max_block_ms
                continue
            try:
                future = producer.send(settings.topic_marks, key=rebuilt.key, value=rebuilt.value)
            except KafkaTimeoutError as exc:  # no metadata in max_block_ms: the broker is unreachable
                broker_down = exc
                failed(exc)
                continue
            except KafkaError as exc:
                failed(exc)
                continue
            future.add_callback(acknowledged)
            future.add_errback(failed)
        if producer is not None and not dry_run and broker_down is None:
            producer.flush()
    finally:
        if own_producer and producer is not None:
            producer.close()
    return report

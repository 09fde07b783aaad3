"""Per-pupil state, kept in a changelog-backed table partitioned like the marks topic."""

from __future__ import annotations

from models.state import PupilState
from streams.app import app, settings

# Values on the changelog are PupilState's compact binary form. In memory a key holds either
# those bytes (as restored from the changelog) or the decoded PupilState once touched.
pupil_state = app.Table(
    "pupil-state", default=None, key_type=str, value_type=bytes, partitions=settings.topic_partitions,
    help="Per-pupil register sessions (keyed by date and session), year totals and alert-policy state.",
)


class BatchStates:
    """The table as the decision engine sees it during one micro-batch.

    Reads come from the table's local store; writes update it and are collected, per source
    partition, for one changelog write at the end of the batch (see streams.changelog).
    Faust's own table assignment would send each record to the partition of the *current*
    event, which in a micro-batch is only the last one.
    """

    def __init__(self, table, partitions: dict[str, int]) -> None:
        self.table = table
        self.partitions = partitions
        self.changed: dict[str, PupilState] = {}

    def get(self, pupil_id: str) -> PupilState | None:
        value = self.table.data.get(pupil_id)
        if isinstance(value, bytes):
            value = PupilState.from_bytes(value)
            self.table.data[pupil_id] = value
        return value

    def __setitem__(self, pupil_id: str, state: PupilState) -> None:
        self.table.data[pupil_id] = state
        self.changed[pupil_id] = state

    def changelog_records(self) -> dict[int, list[tuple[bytes, bytes]]]:
        """Changelog records for every pupil written in this batch, keyed as Faust keys the table."""
        records: dict[int, list[tuple[bytes, bytes]]] = {}
        dumps_key = self.table.app.serializers.dumps_key
        for pupil_id, state in self.changed.items():
            key = dumps_key(str, pupil_id, serializer=self.table.key_serializer)
            records.setdefault(self.partitions[pupil_id], []).append((key, state.to_bytes()))
        return records

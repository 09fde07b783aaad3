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


class PartitionWriter:
    """Reads and writes pupil states from a micro-batch that spans several partitions.

    Faust's table assignment sends the changelog record to the partition of the *current*
    event, which in a micro-batch is only the last one; here each pupil's record goes to the
    partition its marks came from, so a restore puts it back where the stream expects it.
    """

    def __init__(self, table, partitions: dict[str, int]) -> None:
        self.table = table
        self.partitions = partitions

    def get(self, pupil_id: str) -> PupilState | None:
        value = self.table.data.get(pupil_id)
        if isinstance(value, bytes):
            value = PupilState.from_bytes(value)
            self.table.data[pupil_id] = value
        return value

    def __setitem__(self, pupil_id: str, state: PupilState) -> None:
        self.table.data[pupil_id] = state
        self.table.send_changelog(self.partitions[pupil_id], pupil_id, state.to_bytes())

"""Per-pupil state, kept in a changelog-backed table partitioned like the marks topic."""

from __future__ import annotations

from faust.serializers import codecs

from models.state import PupilState
from streams.app import app, settings


class PupilStateCodec(codecs.Codec):
    """The compact binary form of PupilState on the changelog topic."""

    def _dumps(self, obj: PupilState) -> bytes:
        return obj.to_bytes()

    def _loads(self, s: bytes) -> PupilState:
        return PupilState.from_bytes(s)


codecs.register("pupil_state", PupilStateCodec())

pupil_state = app.Table(
    "pupil-state", default=None, key_type=str, value_type=None, key_serializer="raw",
    value_serializer="pupil_state", partitions=settings.topic_partitions,
)


class PartitionWriter:
    """Writes states into the table from a micro-batch holding several partitions.

    Faust's table assignment sends the changelog record to the partition of the *current*
    event, which in a micro-batch is only the last one; here each pupil's record goes to the
    partition its marks came from, so a restore puts it back where the stream expects it.
    """

    def __init__(self, table, partitions: dict[str, int]) -> None:
        self.table = table
        self.partitions = partitions

    def get(self, pupil_id: str) -> PupilState | None:
        return self.table.data.get(pupil_id)

    def __setitem__(self, pupil_id: str, state: PupilState) -> None:
        self.table.data[pupil_id] = state
        self.table.send_changelog(self.partitions[pupil_id], pupil_id, state)

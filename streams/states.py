"""Per-pupil states as one micro-batch sees them: read from the table, written back all at once.

The table's store holds each pupil's compact bytes (`PupilState.to_bytes`), never a live object,
so a batch that fails half way leaves the table exactly as it was: the engine works on decoded
copies, and only `commit()` writes them back. `commit()` also returns the batch's changelog
records per source partition; Faust's own table assignment would send every record to the
partition of the *current* event, which in a micro-batch is only the last one.

For the mark-by-mark fallback a batch can open a child that sees the batch's changes so far
and is either absorbed (the mark went through) or dropped (it failed), so one failing mark
cannot leave another pupil's state half updated.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

from models.state import PupilState

ChangelogRecords = dict[int, list[tuple[bytes, bytes]]]


class BatchStates:
    """A MutableMapping-like view of pupil states for the decision engine (get and set)."""

    def __init__(self, store: MutableMapping[str, bytes], key_bytes: Callable[[str], bytes] = str.encode) -> None:
        self.store = store
        # The source partition of each pupil's records, filled in by the handler: the changelog
        # partition of a pupil's state is the partition its marks arrive on.
        self.partition_of: dict[str, int] = {}
        self.key_bytes = key_bytes
        self.loaded: dict[str, PupilState | None] = {}
        self.changed: set[str] = set()
        self.absorbed: dict[str, bytes] = {}

    def _raw(self, pupil_id: str) -> bytes | None:
        if pupil_id in self.absorbed:
            return self.absorbed[pupil_id]
        return self.store.get(pupil_id)

    def get(self, pupil_id: str, default: PupilState | None = None) -> PupilState | None:
        if pupil_id not in self.loaded:
            raw = self._raw(pupil_id)
            self.loaded[pupil_id] = PupilState.from_bytes(raw) if raw is not None else None
        state = self.loaded[pupil_id]
        return default if state is None else state

    def __setitem__(self, pupil_id: str, state: PupilState) -> None:
        self.loaded[pupil_id] = state
        self.changed.add(pupil_id)

    def child(self) -> BatchStates:
        """A view over this batch's changes so far, for one mark in isolation."""
        view = BatchStates(self.store, self.key_bytes)
        view.partition_of = self.partition_of
        view.absorbed = {**self.absorbed, **{pupil: self.loaded[pupil].to_bytes()  # type: ignore[union-attr]
                                             for pupil in self.changed}}
        return view

    def absorb(self, child: BatchStates) -> None:
        """Take a child's changes into this batch (the child's mark went through)."""
        for pupil in child.changed:
            self.absorbed[pupil] = child.loaded[pupil].to_bytes()  # type: ignore[union-attr]
            self.loaded.pop(pupil, None)
            self.changed.discard(pupil)

    def discard(self) -> None:
        """Forget every change: the batch will be retried mark by mark from the table's states."""
        self.loaded.clear()
        self.changed.clear()
        self.absorbed.clear()

    def commit(self) -> ChangelogRecords:
        """Write every changed state to the store; the changelog records, per partition."""
        encoded = dict(self.absorbed)
        encoded.update({pupil: self.loaded[pupil].to_bytes() for pupil in self.changed})  # type: ignore[union-attr]
        records: ChangelogRecords = {}
        for pupil, data in encoded.items():
            self.store[pupil] = data
            records.setdefault(self.partition_of[pupil], []).append((self.key_bytes(pupil), data))
        self.discard()
        return records

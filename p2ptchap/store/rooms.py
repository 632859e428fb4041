"""Room events on disk, with the outcome of resolution recorded beside them.

:class:`RoomStore` keeps every well-formed event received (even rejected or
pending ones: a later event may make a pending one resolvable, and a
rejected event must not be fetched again and again) and, after each batch,
the status :func:`p2ptchap.core.room.resolve` gives each event.  A batch of
events and the statuses it leads to are written in one transaction.

Each room's state is kept in memory as a :class:`~p2ptchap.core.live_room.
LiveRoom`, loaded from disk on first use: a batch costs time in proportion to
its own size in the common case, not to the room's.  If a write fails the
room is dropped from memory and reloaded from disk, so memory never gets
ahead of the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from p2ptchap.core.errors import StorageError
from p2ptchap.core.events import Event, InvalidEvent, event_id, parse_event
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import Directory, People, Resolution, resolve
from p2ptchap.store.db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class Added:
    """What one batch did: new events stored, and those refused before storage."""

    stored: int
    invalid: dict[bytes, str]


class RoomStore:
    """The events of every room, in a :class:`Database`."""

    def __init__(self, db: Database, directory: Directory, people: People) -> None:
        self.db = db
        self.directory = directory
        self.people = people
        self._live: dict[bytes, LiveRoom] = {}

    def live(self, room: bytes) -> LiveRoom:
        """The room's live state, loaded from disk the first time."""
        if room not in self._live:
            live = LiveRoom(room, self.directory, self.people)
            live.load(self.events(room))
            self._live[room] = live
        return self._live[room]

    def add(self, room: bytes, raws: Iterable[bytes]) -> tuple[Added, Resolution]:
        """Store new events of ``room`` and resolve it again, in one transaction.

        Events that are not well formed are not stored; their reason is in
        the result, keyed by the BLAKE2b id of their bytes.
        """
        fresh: list[Event] = []
        invalid: dict[bytes, str] = {}
        for raw in raws:
            try:
                fresh.append(parse_event(raw))
            except InvalidEvent as exc:
                invalid[event_id(raw)] = exc.reason
        live = self.live(room)
        new = list({e.id: e for e in fresh if e.id not in live.events and e.room == room}.values())
        full_before = live.full
        waiting = [e.id for e in live.resolution.pending]
        for event in new:
            live.add(event)
        # After a full resolution any status may have changed; otherwise only
        # the new events and those they released from waiting.
        changed = (
            list(live.events) if live.full != full_before else [*waiting, *(e.id for e in new)]
        )
        status = {event_id: live.status(event_id) for event_id in changed}
        resolution = live.resolution
        try:
            self._write(room, new, status, resolution)
        except StorageError:
            del self._live[room]  # reload from disk next time
            raise
        return Added(len(new), invalid), resolution

    def _write(
        self,
        room: bytes,
        new: list[Event],
        status: dict[bytes, tuple[str, str | None]],
        resolution: Resolution,
    ) -> None:
        with self.db.transaction() as cursor:
            cursor.executemany(
                "INSERT OR IGNORE INTO events (id, room, depth, type, account, device, seq, raw)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.id,
                        room,
                        e.depth,
                        e.type.value,
                        bytes(e.account),
                        bytes(e.device),
                        e.seq,
                        e.raw,
                    )
                    for e in new
                ],
            )
            cursor.executemany(
                "UPDATE events SET status = ?, reason = ? WHERE id = ?",
                [(s, r, i) for i, (s, r) in status.items()],
            )
            name = resolution.state.name if resolution.state else ""
            cursor.execute(
                "INSERT INTO rooms (room, name, accepted) VALUES (?, ?, ?) "
                "ON CONFLICT (room) DO UPDATE SET"
                " name = excluded.name, accepted = excluded.accepted",
                (room, name, len(resolution.accepted)),
            )

    def events(self, room: bytes) -> list[Event]:
        """Every stored event of ``room``, parsed again (they are re-checked on load)."""
        rows = self.db.query("SELECT raw FROM events WHERE room = ? ORDER BY depth, id", (room,))
        return [parse_event(_blob(row[0])) for row in rows]

    def load(self, room: bytes) -> Resolution:
        """The room's resolution computed afresh from what is on disk."""
        return resolve(self.events(room), room, self.directory, self.people)

    def statuses(self, room: bytes) -> dict[bytes, tuple[str, str | None]]:
        rows = self.db.query("SELECT id, status, reason FROM events WHERE room = ?", (room,))
        return {_blob(i): (str(s), None if r is None else str(r)) for i, s, r in rows}


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected a BLOB column")
    return value

"""Room events on disk, with the outcome of resolution recorded beside them.

:class:`RoomStore` keeps every well-formed event received (even rejected or
pending ones: a later event may make a pending one resolvable, and a
rejected event must not be fetched again and again) and, after each batch,
the status :func:`p2ptchap.core.room.resolve` gives each event.  A batch of
events and the statuses it leads to are written in one transaction.

Resolution is recomputed from the room's whole event set on each batch;
making it incremental is open work (see ``docs/protocol.md`` §10).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from p2ptchap.core.events import Event, InvalidEvent, event_id, parse_event
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
        events = self.events(room)
        known = {e.id for e in events}
        new = [e for e in fresh if e.id not in known and e.room == room]
        resolution = resolve([*events, *new], room, self.directory, self.people)
        status: dict[bytes, tuple[str, str | None]] = {
            e.id: ("accepted", None) for e in resolution.accepted
        }
        status.update({i: ("rejected", r.value) for i, r in resolution.rejected.items()})
        status.update({e.id: ("pending", None) for e in resolution.pending})
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
        return Added(len(new), invalid), resolution

    def events(self, room: bytes) -> list[Event]:
        """Every stored event of ``room``, parsed again (they are re-checked on load)."""
        rows = self.db.query("SELECT raw FROM events WHERE room = ? ORDER BY depth, id", (room,))
        return [parse_event(_blob(row[0])) for row in rows]

    def load(self, room: bytes) -> Resolution:
        """The room's resolution from what is on disk."""
        return resolve(self.events(room), room, self.directory, self.people)

    def statuses(self, room: bytes) -> dict[bytes, tuple[str, str | None]]:
        rows = self.db.query("SELECT id, status, reason FROM events WHERE room = ?", (room,))
        return {_blob(i): (str(s), None if r is None else str(r)) for i, s, r in rows}


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected a BLOB column")
    return value

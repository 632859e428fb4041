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
from typing import Any, Final

from p2ptchap.core import codec
from p2ptchap.core.errors import N_, DecodeError, StorageError
from p2ptchap.core.events import (
    ID_SIZE,
    Event,
    EventType,
    InvalidEvent,
    event_id,
    parse_event,
    reload_event,
)
from p2ptchap.core.keys import AccountKey, DeviceKey
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import Directory, People, Resolution, decode_state, encode_state, resolve
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
        """The room's live state, loaded from disk the first time.

        With a snapshot covering every stored event (the normal case) the
        room is restored without resolving anything; otherwise — a snapshot
        missing, or from another state format — it is resolved afresh.
        """
        if room not in self._live:
            live = LiveRoom(room, self.directory, self.people)
            events, status = self._read(room)
            snapshot = self.db.query("SELECT state, events FROM rooms WHERE room = ?", (room,))
            restored = False
            if snapshot and snapshot[0][0] is not None and snapshot[0][1] == len(events):
                try:
                    live.restore(events, status, decode_state(_blob(snapshot[0][0])))
                    restored = True
                except (DecodeError, ValueError):
                    pass
            if not restored:
                live.load(events)
            self._live[room] = live
        return self._live[room]

    def forget(self, room: bytes | None = None) -> None:
        """Drop a room (or all) from memory; the next use resolves it from disk.

        For when the directory changed (a certificate arrived, a device was
        revoked): who counts as a sender changed, so the rooms must be
        resolved again, see :meth:`resolve_again`.
        """
        if room is None:
            self._live.clear()
        else:
            self._live.pop(room, None)

    def resolve_again(self, room: bytes) -> Resolution:
        """Resolve a room from all its events and record every status anew."""
        live = LiveRoom(room, self.directory, self.people)
        live.load(self._read(room)[0])
        self._live[room] = live
        status = {event_id: live.status(event_id) for event_id in live.events}
        try:
            self._write(room, [], status, live.resolution)
        except StorageError:
            del self._live[room]
            raise
        return live.resolution

    def rooms(self) -> list[bytes]:
        """Every room with stored events."""
        return [_blob(row[0]) for row in self.db.query("SELECT room FROM rooms ORDER BY room")]

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
                "INSERT OR IGNORE INTO events (id, room, depth, type, account, device, seq, raw,"
                " prev_seq, prev, state_key, ts, content_at, content_len)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(room, e) for e in new],
            )
            cursor.executemany(
                "UPDATE events SET status = ?, reason = ? WHERE id = ?",
                [(s, r, i) for i, (s, r) in status.items()],
            )
            state = resolution.state
            cursor.execute(
                "INSERT INTO rooms (room, name, accepted, state, events)"
                " VALUES (?, ?, ?, ?, (SELECT count(*) FROM events WHERE room = ?))"
                " ON CONFLICT (room) DO UPDATE SET name = excluded.name,"
                " accepted = excluded.accepted, state = excluded.state, events = excluded.events",
                (
                    room,
                    state.name if state else "",
                    len(resolution.accepted),
                    encode_state(state) if state else None,
                    room,
                ),
            )

    def events(self, room: bytes) -> list[Event]:
        """Every stored event of ``room``, in ``(depth, id)`` order."""
        return self._read(room)[0]

    def _read(self, room: bytes) -> tuple[list[Event], dict[bytes, tuple[str, str | None]]]:
        """The room's events and their recorded statuses.

        Events were fully checked before they were stored; they are rebuilt
        from their columns (content decoded from its place in ``raw``), which
        is what makes a 100 000-event room open in about a second.  Rows
        written before those columns existed are decoded from ``raw``.
        """
        rows = self.db.query(
            "SELECT id, type, depth, account, device, seq, prev_seq, prev, state_key, ts,"
            " content_at, content_len, raw, status, reason"
            " FROM events WHERE room = ? ORDER BY depth, id",
            (room,),
        )
        keys: dict[bytes, AccountKey | DeviceKey] = {}
        events: list[Event] = []
        status: dict[bytes, tuple[str, str | None]] = {}
        try:
            for row in rows:
                event = _rebuild(room, row, keys)
                events.append(event)
                status[event.id] = (str(row[13]), None if row[14] is None else str(row[14]))
        except (DecodeError, InvalidEvent, ValueError, TypeError, KeyError) as exc:
            raise StorageError(
                f"room {room.hex()}: {exc}",
                user_message=N_("The database {path} is damaged; restore it from a backup."),
                path=self.db.path,
            ) from exc
        return events, status

    def load(self, room: bytes) -> Resolution:
        """The room's resolution computed afresh from what is on disk."""
        return resolve(self.events(room), room, self.directory, self.people)

    def statuses(self, room: bytes) -> dict[bytes, tuple[str, str | None]]:
        rows = self.db.query("SELECT id, status, reason FROM events WHERE room = ?", (room,))
        return {_blob(i): (str(s), None if r is None else str(r)) for i, s, r in rows}


def _row(room: bytes, event: Event) -> tuple[object, ...]:
    content = codec.encode(event.content)
    # Deterministic CBOR: the content's encoding appears verbatim in the body,
    # itself verbatim in ``raw``; any occurrence of these bytes decodes to it.
    at = event.raw.find(content)
    return (
        event.id,
        room,
        event.depth,
        event.type.value,
        bytes(event.account),
        bytes(event.device),
        event.seq,
        event.raw,
        event.prev_seq,
        b"".join(event.prev),
        event.state_key,
        event.ts,
        at if at >= 0 else None,
        len(content),
    )


_TYPES: Final = {kind.value: kind for kind in EventType}


def _rebuild(room: bytes, row: tuple[object, ...], keys: dict[bytes, Any]) -> Event:
    (identifier, kind, depth, account, device, seq, prev_seq, prev, state_key, ts) = row[:10]
    content_at, content_len, raw = row[10], row[11], _blob(row[12])
    if not isinstance(content_at, int) or not isinstance(content_len, int):
        return reload_event(raw)  # a row stored before schema 2
    account, device, prev = _blob(account), _blob(device), _blob(prev)
    if account not in keys:
        keys[account] = AccountKey(account)
    if device not in keys:
        keys[device] = DeviceKey(device)
    content = codec.decode_trusted(raw[content_at : content_at + content_len])
    event_kind = _TYPES[str(kind)]
    return Event(
        id=_blob(identifier),
        type=event_kind,
        room=room,
        state_key=None if state_key is None else str(state_key),
        account=keys[account],
        device=keys[device],
        seq=_int(seq),
        prev_seq=None if prev_seq is None else _blob(prev_seq),
        prev=tuple(prev[i : i + ID_SIZE] for i in range(0, len(prev), ID_SIZE)),
        depth=_int(depth),
        ts=_int(ts),
        content=codec.expect_map(content, "content"),
        raw=raw,
    )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an INTEGER column")
    return value


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected a BLOB column")
    return value

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

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator
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
from p2ptchap.core.files import parse_clear_reference
from p2ptchap.core.keys import AccountKey, DeviceKey
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import (
    RULES_VERSION,
    Directory,
    People,
    Resolution,
    decode_state,
    encode_state,
    resolve,
)
from p2ptchap.core.sync import Held
from p2ptchap.store.db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class Added:
    """What one batch did: new events stored, and those refused before storage."""

    stored: int
    invalid: dict[bytes, str]
    #: Ids of the events this batch stored (not those already held).
    new: tuple[bytes, ...] = ()


class RoomStore:
    """The events of every room, in a :class:`Database`."""

    def __init__(
        self,
        db: Database,
        directory: Directory,
        people: People,
        basis: Callable[[], bytes] = lambda: b"",
    ) -> None:
        self.db = db
        self.directory = directory
        self.people = people
        #: What resolution depends on besides the events (the directory and
        #: the revocations): a snapshot is reused only under the same basis.
        self._directory_basis = basis
        self._basis = b""
        self._live: dict[bytes, LiveRoom] = {}
        self._data_version: object = None
        self._held: dict[bytes, tuple[LiveRoom, int, Held]] = {}
        #: Rooms resolved afresh in memory whose statuses on disk are older.
        self._stale: set[bytes] = set()

    def live(self, room: bytes) -> LiveRoom:
        """The room's live state, loaded from disk the first time.

        With a snapshot covering every stored event (the normal case) the
        room is restored without resolving anything; otherwise — a snapshot
        missing, or from another state format — it is resolved afresh.
        """
        # Another process (the CLI while the node runs) may have written:
        # SQLite bumps data_version for commits by other connections.
        version = self.db.query("PRAGMA data_version")[0][0]
        basis = RULES_VERSION.to_bytes(4, "big") + self._directory_basis()
        if version != self._data_version or basis != self._basis:
            # Another process wrote, or a certificate or revocation arrived.
            self._live.clear()
            self._data_version, self._basis = version, basis
        if room not in self._live:
            with _paused_gc():
                self._live[room] = self._open(room)
        return self._live[room]

    def _open(self, room: bytes) -> LiveRoom:
        live = LiveRoom(room, self.directory, self.people)
        events, status = self._read(room)
        snapshot = self.db.query("SELECT state, events, basis FROM rooms WHERE room = ?", (room,))
        if (
            snapshot
            and snapshot[0][0] is not None
            and snapshot[0][1] == len(events)
            and snapshot[0][2] == self._basis
        ):
            try:
                live.restore(events, status, decode_state(blob(snapshot[0][0])))
            except (DecodeError, ValueError, KeyError):
                pass  # statuses that do not hold together: resolve instead
            else:
                return live
        live.load(events)
        # The statuses on disk are not those of this resolution (another
        # basis, or none): the next batch writes them all.
        self._stale.add(room)
        return live

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
        self.live(room)  # brings the basis up to date
        live = LiveRoom(room, self.directory, self.people)
        live.load(self._read(room)[0])
        self._live[room] = live
        status = {event_id: live.status(event_id) for event_id in live.events}
        try:
            self._write(room, [], status, live)
        except StorageError:
            self._live.pop(room, None)
            raise
        self._stale.discard(room)
        return live.resolution

    def last_of(self, room: bytes, device: bytes) -> tuple[int, bytes, int] | None:
        """``(seq, id, depth)`` of the device's latest stored event in the room, any status."""
        rows = self.db.query(
            "SELECT seq, id, depth FROM events WHERE room = ? AND device = ?"
            " ORDER BY seq DESC LIMIT 1",
            (room, device),
        )
        if not rows:
            return None
        seq, identifier, depth = rows[0]
        return int(str(seq)), blob(identifier), int(str(depth))

    def held(self, room: bytes) -> Held:
        """Per device, the ``seq`` → id of every stored event (any status) of ``room``.

        With a forking device (two events at one ``seq``) the smaller id is
        listed; the other is still known by id.  Kept until the room changes.
        """
        live = self.live(room)
        cached = self._held.get(room)
        if cached is not None and cached[0] is live and cached[1] == len(live.events):
            return cached[2]
        held: Held = {}
        for event in live.events.values():
            seqs = held.setdefault(bytes(event.device), {})
            other = seqs.get(event.seq)
            if other is None or event.id < other:
                seqs[event.seq] = event.id
        self._held[room] = (live, len(live.events), held)
        return held

    def raws(self, room: bytes, ids: Iterable[bytes]) -> list[Event]:
        """The stored events of ``room`` among ``ids`` (unknown ids are skipped)."""
        events = self.live(room).events
        return [events[i] for i in ids if i in events]

    def arrivals(self, after: int, limit: int = 4096) -> list[tuple[int, bytes, bytes]]:
        """Events stored after journal position ``after``: ``(n, room, id)``, oldest first."""
        rows = self.db.query(
            "SELECT n, room, id FROM arrivals WHERE n > ? ORDER BY n LIMIT ?", (after, limit)
        )
        return [(int(str(n)), blob(room), blob(i)) for n, room, i in rows]

    def last_arrival(self) -> int:
        rows = self.db.query("SELECT max(n) FROM arrivals")
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else 0

    def prune_arrivals(self, keep: int = 100_000) -> None:
        """Forget all but the latest ``keep`` journal entries (the events stay)."""
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM arrivals WHERE n <= ?", (self.last_arrival() - keep,))

    def rooms(self) -> list[bytes]:
        """Every room with stored events."""
        return [blob(row[0]) for row in self.db.query("SELECT room FROM rooms ORDER BY room")]

    def add(self, room: bytes, raws: Iterable[bytes]) -> tuple[Added, Resolution]:
        """Store new events of ``room`` and resolve it again, in one transaction.

        Events that are not well formed are not stored; their reason is in
        the result, keyed by the BLAKE2b id of their bytes.
        """
        fresh: list[Event] = []
        invalid: dict[bytes, str] = {}
        live = self.live(room)
        for raw in raws:
            identifier = event_id(raw)
            if identifier in live.events:
                continue  # a duplicate costs a hash, not a parse and a signature check
            try:
                fresh.append(parse_event(raw))
            except InvalidEvent as exc:
                invalid[identifier] = exc.reason
        new = list({e.id: e for e in fresh if e.id not in live.events and e.room == room}.values())
        if not new:
            return Added(0, invalid), live.resolution
        full_before = live.full
        waiting = [e.id for e in live.resolution.pending]
        live.add_all(new)
        # After a full resolution any status may have changed; otherwise only
        # the new events and those they released from waiting.
        everything = live.full != full_before or room in self._stale
        changed = list(live.events) if everything else [*waiting, *(e.id for e in new)]
        status = {event_id: live.status(event_id) for event_id in changed}
        resolution = live.resolution
        try:
            self._write(room, new, status, live)
        except StorageError:
            self._live.pop(room, None)  # reload from disk next time
            raise
        self._stale.discard(room)
        return Added(len(new), invalid, tuple(e.id for e in new)), resolution

    def _write(
        self,
        room: bytes,
        new: list[Event],
        status: dict[bytes, tuple[str, str | None]],
        live: LiveRoom,
    ) -> None:
        resolution = live.resolution
        with self.db.transaction() as cursor:
            cursor.executemany(
                "INSERT OR IGNORE INTO events (id, room, depth, type, account, device, seq, raw,"
                " prev_seq, prev, state_key, ts, content_at, content_len)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(room, e) for e in new],
            )
            cursor.executemany(
                "INSERT INTO arrivals (room, id) VALUES (?, ?)", [(room, e.id) for e in new]
            )
            cursor.executemany(
                "INSERT OR IGNORE INTO file_refs (root, event, room, size) VALUES (?, ?, ?, ?)",
                [_file_ref(room, e) for e in new if _names_file(e)],
            )
            cursor.executemany(
                "UPDATE events SET status = ?, reason = ? WHERE id = ?",
                [(s, r, i) for i, (s, r) in status.items()],
            )
            state = resolution.state
            # ``events`` is what the snapshot covers — the events this process
            # resolved, not a count of the table: if another process stored
            # more meanwhile, the counts differ and the next opening resolves.
            cursor.execute(
                "INSERT INTO rooms (room, name, accepted, state, events, basis)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room) DO UPDATE SET name = excluded.name,"
                " accepted = excluded.accepted, state = excluded.state,"
                " events = excluded.events, basis = excluded.basis",
                (
                    room,
                    state.name if state else "",
                    len(resolution.accepted),
                    encode_state(state) if state else None,
                    len(live.events),
                    self._basis,
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
        return {blob(i): (str(s), None if r is None else str(r)) for i, s, r in rows}


@contextlib.contextmanager
def _paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a room's objects are built.

    Building 100 000 events makes CPython's collector walk the growing heap
    again and again (it runs every 700 allocations): a third of the opening
    time, for objects that hold no cycles anyway.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def _rebuild(room: bytes, row: tuple[Any, ...], keys: dict[bytes, Any]) -> Event:
    """An event from its columns; ``TypeError``/``KeyError`` if a column is damaged."""
    identifier, kind, depth, account, device, seq, prev_seq, prev = row[:8]
    state_key, ts, at, length, raw = row[8:13]
    if at is None or length is None:
        return reload_event(blob(raw))  # a row stored before schema 2
    if not (
        type(identifier) is type(account) is type(device) is type(prev) is type(raw) is bytes
        and type(seq) is type(depth) is type(ts) is type(at) is type(length) is int
        and (prev_seq is None or type(prev_seq) is bytes)
        and (state_key is None or type(state_key) is str)
    ):
        raise TypeError("a column of the wrong type")
    if account not in keys:
        keys[account] = AccountKey(account)
    if device not in keys:
        keys[device] = DeviceKey(device)
    content = codec.decode_trusted(raw[at : at + length])
    if not isinstance(content, dict):
        raise TypeError("content is not a map")
    return Event(
        identifier,
        _TYPES[kind],
        room,
        state_key,
        keys[account],
        keys[device],
        seq,
        prev_seq,
        (prev,)
        if len(prev) == ID_SIZE
        else tuple(prev[i : i + ID_SIZE] for i in range(0, len(prev), ID_SIZE)),
        depth,
        ts,
        content,
        raw,
    )


def _names_file(event: Event) -> bool:
    return event.type is EventType.MESSAGE and "file" in event.content


def _file_ref(room: bytes, event: Event) -> tuple[bytes, bytes, bytes, int]:
    """The ``file_refs`` row of a message naming a file (its clear part was checked)."""
    root, size = parse_clear_reference(event.content["file"])
    return root, event.id, room, size


def blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected a BLOB column")
    return value

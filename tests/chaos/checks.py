"""What a chaos run must end with, read from every home folder.

A run ends healed and quiet; then, for every room:

* **Nothing lost.**  Every event any node holds, and every event a CLI
  command reported as written, is held by every current member's node, with
  no event left waiting for a parent; and all members resolve the same state
  (``encode_state`` bytes).
* **Readable by whom it should be.**  A member reads every accepted message
  whose causal past shows it joined (its latest membership there is a join),
  and holds the complete blob of every such file.
* **Unreadable by whom it should not be.**  No device holds the decrypted
  content of a message whose causal past does not show its account joined:
  neither a stranger, nor a removed member for what was sent after its
  removal was seen.  (A message sent by a device that had not seen the
  removal may be read: the protocol flags it as exposed, it is not a leak.)

These are the invariants of ``tests/sync/test_convergence.py``, checked here
against the real stores of real processes.  :func:`survey` reads a home
without its passphrase (what the CLI's read-only commands see), so it can be
polled while the nodes run; the decrypted checks, the integrity check, the
exports and the scan for clear markers run once the nodes are stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from p2ptchap.core.events import Event, EventType, Membership
from p2ptchap.core.keys import AccountKey
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import encode_state, resolve
from p2ptchap.files import open_files
from p2ptchap.rooms import open_rooms
from p2ptchap.store.db import DB_NAME
from p2ptchap.store.home import Home


@dataclasses.dataclass(frozen=True, slots=True)
class RoomView:
    """One node's copy of one room."""

    live: LiveRoom
    #: ``encode_state`` of its resolved state (``None`` before the create event).
    state: bytes | None
    #: Whether this node's own account is joined, in its own state.
    joined: bool
    #: Accounts (hex) joined in its state.
    members: frozenset[str]
    #: Ids of the events whose content it holds decrypted.
    decrypted: frozenset[bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class HomeView:
    """What one home holds: its account, its rooms, its complete blobs."""

    name: str
    account: str
    rooms: dict[bytes, RoomView]
    complete: frozenset[bytes]


def survey(name: str, home: Path) -> HomeView:
    """Read ``home`` without its passphrase (as ``room show`` does, beside a running node)."""
    rooms = open_rooms(Home(home), None, time.time)
    try:
        account = bytes(rooms.me.account.account_key).hex()
        views: dict[bytes, RoomView] = {}
        for room in rooms.store.rooms():
            live = rooms.store.live(room)
            state = live.resolution.state
            members = frozenset(bytes(a).hex() for a in state.members()) if state else frozenset()
            views[room] = RoomView(
                live=live,
                state=encode_state(state) if state is not None else None,
                joined=account in members,
                members=members,
                decrypted=frozenset(rooms.keys.decrypted(room)),
            )
        rows = rooms.db.query("SELECT root FROM blobs WHERE complete = 1")
        complete = frozenset(root for (root,) in rows if isinstance(root, bytes))
    finally:
        rooms.db.close()
    return HomeView(name, account, views, complete)


class Entitlement:
    """Whether an account's membership shows in a message's causal past, for one room copy.

    A message's author shares its session with the members of its own state
    when it sends — the state made by the message's causal past.  So an
    account may read a message exactly when it is joined in that state.

    Calling it answers quickly: among the membership events about the
    account that the room accepts and the message's past holds, is the
    latest (in the room's order) a join?  That can differ from the author's
    state at the time — an event the room dropped later (a join concurrent
    with a removal) still counted for the author — so :meth:`exact`, which
    resolves the message's causal past itself, has the last word whenever
    the quick answer would report a problem.
    """

    def __init__(self, live: LiveRoom) -> None:
        self.live = live
        self._about: dict[str, list[Event]] = {}
        for event in live.resolution.accepted:
            if event.type is EventType.MEMBER and event.state_key is not None:
                self._about.setdefault(event.state_key, []).append(event)
            elif event.type is EventType.CREATE:  # its sender is the first member
                self._about.setdefault(bytes(event.account).hex(), []).append(event)

    def __call__(self, account: str, message: Event) -> bool:
        if bytes(message.account).hex() == account:
            return True
        clock = self.live.clock(message.id) or {}
        latest: Event | None = None
        for event in self._about.get(account, ()):
            if clock.get(bytes(event.device), 0) >= event.seq and event.id != message.id:
                latest = event
        return latest is not None and (
            latest.type is EventType.CREATE or latest.content["membership"] == Membership.JOIN.value
        )

    def exact(self, account: str, message: Event) -> bool:
        """Whether ``account`` is joined in the state of ``message``'s causal past."""
        if bytes(message.account).hex() == account:
            return True
        events = self.live.events
        past: set[bytes] = set()
        todo = [*message.prev, *([message.prev_seq] if message.prev_seq else [])]
        while todo:
            identifier = todo.pop()
            if identifier in past or identifier not in events:
                continue
            past.add(identifier)
            parent = events[identifier]
            todo.extend([*parent.prev, *([parent.prev_seq] if parent.prev_seq else [])])
        live = self.live
        state = resolve([events[i] for i in past], live.room, live.directory, live.people).state
        return state is not None and state.is_member(AccountKey(bytes.fromhex(account)))


@dataclasses.dataclass
class Assessment:
    """Problems found (one sentence each), and the counts of the summary."""

    problems: list[str] = dataclasses.field(default_factory=list)
    #: (member, event) pairs missing, unreadable messages, missing files.
    lost: int = 0
    events: int = 0
    rooms: int = 0
    #: (member, message) pairs that must be readable, and were.
    readable: int = 0
    #: (member, file) pairs that must be held, and were complete.
    files_held: int = 0
    #: Decrypted contents held by a device that should not read them.
    leaks: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems and self.lost == 0 and self.leaks == 0


def _short(identifier: bytes) -> str:
    return identifier.hex()[:10]


def assess(
    views: Mapping[str, HomeView],
    acknowledged: Mapping[bytes, Iterable[tuple[str, bytes]]],
    *,
    limit: int = 40,
) -> Assessment:
    """Check the invariants of the module documentation over every home's view.

    ``acknowledged``: per room, ``(author, event id)`` of every event a CLI
    command reported as written.  At most ``limit`` problems are spelled
    out (the counts cover them all).
    """
    found = Assessment()
    names = {view.account: name for name, view in views.items()}

    def problem(text: str) -> None:
        if len(found.problems) < limit:
            found.problems.append(text)
        elif len(found.problems) == limit:
            found.problems.append("… more problems not shown")

    all_rooms = sorted({room for view in views.values() for room in view.rooms})
    for room in all_rooms:
        holders = {n: v.rooms[room] for n, v in views.items() if room in v.rooms}
        union: set[bytes] = set().union(*(set(h.live.events) for h in holders.values()))
        found.events += len(union)
        found.rooms += 1
        tag = _short(room)
        for author, event in acknowledged.get(room, ()):
            if event not in union:
                found.lost += 1
                problem(f"room {tag}: {author}'s acknowledged event {_short(event)} is nowhere")
            if author in holders and event not in holders[author].live.events:
                found.lost += 1
                problem(f"room {tag}: {author} no longer holds its own event {_short(event)}")
        union |= {event for _, event in acknowledged.get(room, ())}
        members = _members(holders, names)
        for member in sorted(members):
            copy = holders.get(member)
            if copy is None:
                found.lost += len(union)
                problem(f"room {tag}: member {member} does not hold the room")
                continue
            missing = union - set(copy.live.events)
            if missing:
                found.lost += len(missing)
                problem(
                    f"room {tag}: member {member} lacks {len(missing)} event(s), e.g."
                    f" {', '.join(_short(i) for i in sorted(missing)[:3])}"
                )
            if copy.live.resolution.pending:
                problem(
                    f"room {tag}: member {member} has {len(copy.live.resolution.pending)}"
                    " event(s) still waiting for a parent"
                )
            if not copy.joined:
                problem(f"room {tag}: {member} is a member for others, not in its own state")
        states = {holders[m].state for m in members if m in holders}
        if len(states) > 1:
            by_state: dict[bytes | None, list[str]] = {}
            for m in sorted(members):
                if m in holders:
                    by_state.setdefault(holders[m].state, []).append(m)
            groups = " / ".join(", ".join(group) for group in by_state.values())
            problem(f"room {tag}: members resolve {len(states)} different states: {groups}")
        _readability(found, views, holders, members, tag, problem)
    return found


def _members(holders: Mapping[str, RoomView], names: Mapping[str, str]) -> set[str]:
    """Whoever believes itself joined, and whoever such a node counts in (to a fixed point)."""
    members = {n for n, h in holders.items() if h.joined}
    while True:
        more = {
            names[a]
            for n in members
            if n in holders
            for a in holders[n].members
            if a in names and names[a] not in members
        }
        if not more:
            return members
        members |= more


def _readability(
    found: Assessment,
    views: Mapping[str, HomeView],
    holders: Mapping[str, RoomView],
    members: set[str],
    tag: str,
    problem: Callable[[str], None],
) -> None:
    """Members read (and hold the files of) what they should; nobody reads more."""
    for name, copy in holders.items():
        account = views[name].account
        entitled = Entitlement(copy.live)
        accepted_events = copy.live.resolution.accepted
        accepted = {e.id for e in accepted_events}
        redacted = {e.content["target"] for e in accepted_events if e.type is EventType.REDACTION}
        for identifier in copy.decrypted:
            event = copy.live.events.get(identifier)
            if event is None:
                problem(f"room {tag}: {name} holds a decrypted content without its event")
            elif (
                identifier in accepted
                and not entitled(account, event)
                and not entitled.exact(account, event)
            ):
                found.leaks += 1
                problem(
                    f"room {tag}: LEAK: {name} decrypted {_short(identifier)} although its"
                    " causal past does not show it joined"
                )
        if name not in members:
            continue
        for event in copy.live.resolution.accepted:
            if event.type is not EventType.MESSAGE or event.id in redacted:
                continue
            if not entitled(account, event):
                continue
            reference = event.content.get("file")
            root = reference.get("root") if isinstance(reference, dict) else None
            unread = event.id not in copy.decrypted
            unheld = isinstance(root, bytes) and root not in views[name].complete
            if (unread or unheld) and not entitled.exact(account, event):
                continue  # its author did not count it in: not its to read
            if unread:
                found.lost += 1
                problem(f"room {tag}: member {name} cannot read {_short(event.id)}")
            else:
                found.readable += 1
            if isinstance(root, bytes):
                if unheld:
                    found.lost += 1
                    problem(f"room {tag}: member {name} lacks the file of {_short(event.id)}")
                else:
                    found.files_held += 1


def integrity(home: Path) -> str | None:
    """``None`` if the home's database passes SQLite's integrity check, else what it said."""
    try:
        with sqlite3.connect(f"file:{home / DB_NAME}?mode=ro", uri=True) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        return str(exc)
    return None if rows == [("ok",)] else repr(rows[:5])


@dataclasses.dataclass(frozen=True, slots=True)
class Decrypted:
    """One message as a home's owner reads it (with the passphrase)."""

    room: bytes
    event: bytes
    text: bytes | None
    file_root: bytes | None


def read_all(home: Path, passphrase: str) -> list[Decrypted]:
    """Every message of every room of ``home``, decrypted where its key is held.

    The same code as ``p2ptchap room read``; it also proves the store opens
    with the project's classes, passphrase and all.
    """
    rooms = open_rooms(Home(home), passphrase, time.time)
    try:
        found = []
        for info in rooms.list_rooms():
            for message in rooms.messages(info.room, limit=1 << 30):
                found.append(
                    Decrypted(
                        info.room,
                        message.id,
                        message.body,
                        message.file.root if message.file is not None else None,
                    )
                )
        return found
    finally:
        rooms.db.close()


def export_file(home: Path, passphrase: str, room: bytes, event: bytes, out: Path) -> str:
    """Decrypt file message ``event`` of ``room`` from ``home`` to ``out``; its SHA-256."""
    rooms = open_rooms(Home(home), passphrase, time.time)
    try:
        files = open_files(rooms, Home(home))
        entry = files.find(room, event.hex())
        path = files.export(entry, out, replace=True)
        return sha256(path)
    finally:
        rooms.db.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def scan(paths: Iterable[Path], needle: bytes) -> list[Path]:
    """Files under ``paths`` (recursively) that contain ``needle``, read by pieces."""
    hits = []
    overlap = len(needle) - 1
    for top in paths:
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            tail = b""
            with path.open("rb") as handle:
                while piece := handle.read(1 << 22):
                    if needle in tail + piece:
                        hits.append(path)
                        break
                    tail = piece[-overlap:] if overlap else b""
    return hits

"""What the terminal app knows and does, apart from drawing it.

A :class:`ChatSession` holds the rooms (on the database thread), the
snapshot the screen draws (rooms list, the open room's timeline, notices,
peers), and performs what the user asks.  The drawing (``app.py``) only
reads snapshots and calls :meth:`ChatSession.submit`; the session is tested
without a terminal.

Nothing here blocks: database and disk work runs on the
:class:`~p2ptchap.store.dbthread.DatabaseThread`, the node is reached
through its control socket in a worker thread.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from p2ptchap.api import control
from p2ptchap.core.errors import N_, LocalError, P2PTchapError, UsageError
from p2ptchap.core.events import Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey
from p2ptchap.files import FileEntry, Files, FileSettings, open_files
from p2ptchap.i18n import Translator
from p2ptchap.rooms import Done, Message, RoomInfo, Rooms, open_rooms
from p2ptchap.store.dbthread import DatabaseThread
from p2ptchap.store.home import Home

log = logging.getLogger("p2ptchap.tui")

#: Messages of the open room kept on screen (older ones: scroll with /history).
TIMELINE = 200
#: How often the app looks for new events written by the node.
POLL = 0.4
#: How often it asks the node for its peers and status.
PEERS_POLL = 2.0
#: Notices kept under the timeline.
NOTICES = 200
STATE_FILE = "tui-state.json"

WAITING = {
    "no-key": N_("[waiting for the key from the sender's device]"),
    "bad-message": N_("[this message could not be decrypted: altered or replayed]"),
    "locked": N_("[encrypted: give the passphrase to read]"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class RoomEntry:
    """One line of the rooms list."""

    room: bytes
    name: str
    #: ``direct``, ``public`` or ``private``.
    kind: str
    membership: Membership | None
    unread: int
    mentioned: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Fresh:
    """A message from someone else that arrived since the last look."""

    room: bytes
    room_name: str
    sender: str
    text: str
    #: A DM, or a message naming the user: worth a bell.
    alert: bool


@dataclasses.dataclass(frozen=True, slots=True)
class FileCard:
    id: str
    name: str
    size: int
    mime: str
    #: ``complete``, ``partial``, ``wanted``, ``remote`` or ``locked``.
    state: str
    held: int


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One message of the timeline, ready to draw."""

    number: int
    id: bytes
    ts: int
    sender: str
    external: bool
    mine: bool
    #: ``True`` verified device, ``False`` a device the user has not verified.
    verified: bool
    text: str
    #: The body could not be shown (``text`` says why).
    waiting: bool
    reply: str | None
    edited: bool
    reactions: tuple[tuple[str, int], ...]
    file: FileCard | None
    #: ``(received, expected)`` for our own messages.
    delivery: tuple[int, int] | None
    mention: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    text: str
    #: ``info``, ``error`` or ``alert`` (a DM or a mention arrived).
    kind: str = "info"


@dataclasses.dataclass
class Snapshot:
    """What the screen shows; replaced as a whole, never mutated while drawn."""

    rooms: list[RoomEntry] = dataclasses.field(default_factory=list)
    room: RoomInfo | None = None
    timeline: list[Item] = dataclasses.field(default_factory=list)
    #: Messages from others newer than the previous snapshot's.
    fresh: list[Fresh] = dataclasses.field(default_factory=list)


class LocalState:
    """What only this app remembers: what was read, whom the user verified.

    A small JSON file in the (0700) home, written whole through a temporary
    file and a rename; a damaged file is set aside and started afresh.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, int] = {}
        self.verified: dict[str, list[str]] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            seen, verified = data.get("seen", {}), data.get("verified", {})
            self.seen = {str(k): int(v) for k, v in seen.items()}
            self.verified = {str(k): [str(d) for d in v] for k, v in verified.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring a damaged %s: %s", path.name, exc)
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".damaged"))

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        data = json.dumps({"seen": self.seen, "verified": self.verified}, indent=1)
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data)
            temporary.replace(self.path)
        except OSError as exc:  # a full disk loses the unread marks, not the messages
            log.warning("could not save %s: %s", self.path.name, exc)


class ChatSession:
    """The state and the actions of one user's chat (see the module documentation)."""

    def __init__(
        self,
        home: Home,
        tr: Translator,
        passphrase: str,
        *,
        clock: Callable[[], float] = time.time,
        node_call: Callable[..., Any] = control.call,
        files: FileSettings | None = None,
    ) -> None:
        self.home = home
        self.tr = tr
        self.clock = clock
        self._passphrase = passphrase
        self._node_call = node_call
        self._file_settings = files
        self.db = DatabaseThread()
        self.rooms: Rooms | None = None
        self.files: Files | None = None
        self.state = LocalState(home.root / STATE_FILE)
        self.snapshot = Snapshot()
        self.current: bytes | None = None
        self.notices: collections.deque[Notice] = collections.deque(maxlen=NOTICES)
        #: Peers as the node lists them; ``None``: no node answers.
        self.peers: list[dict[str, object]] | None = None
        self.node_status: dict[str, object] | None = None
        #: A question waiting for the user's answer (``/public on`` asks first).
        self.pending: tuple[str, Callable[[], Any]] | None = None
        #: Called after every change of what is shown (the app redraws).
        self.on_change: Callable[[], None] = lambda: None
        #: Called on a new DM or mention from someone else (bell, desktop notice).
        self.on_alert: Callable[[str, str], None] = lambda _title, _text: None
        self._journal = 0
        #: The receipts of the room shown when its timeline was last read.
        self._receipts: tuple[bytes | None, tuple[int, int]] = (None, (0, 0))
        self._alerted_until = 0
        self._search: sqlite3.Connection | None = None
        self._indexed: set[bytes] = set()
        self._downloads: dict[str, tuple[bytes, str, Path | None]] = {}
        self._me_name = ""
        #: Set by /quit: the app closes.
        self.quit_requested = False
        #: A listing shown over the timeline (``/help``, ``/members``…): title, lines.
        self.shown: tuple[str, list[Notice]] | None = None
        self._collecting: list[Notice] | None = None

    # --- life --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the rooms (checks the passphrase) on the database thread."""
        self.rooms = await self.db.run(
            open_rooms, self.home, self._passphrase, self.clock, os.urandom
        )
        settings = self._file_settings or FileSettings()
        self.files = await self.db.run(open_files, self.rooms, self.home, settings)
        self._me_name = self.rooms.me.account.display_name
        self._journal = await self.db.run(self.rooms.store.last_arrival)
        # What arrived before this start is not announced again.
        self._alerted_until = int(self.clock() * 1000)
        await self.refresh(full=True)
        infos = self.snapshot.rooms
        if infos:
            await self.select(infos[0].room)

    def close(self) -> None:
        self.state.save()
        self.db.close()

    async def run_background(self) -> None:
        """Follow the database and the node until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_database)
            nursery.start_soon(self._follow_node)

    async def _follow_database(self) -> None:
        while True:
            await trio.sleep(POLL)
            try:
                await self.refresh()
            except P2PTchapError as exc:
                self.say_error(exc)

    async def _follow_node(self) -> None:
        while True:
            await self.refresh_node()
            await trio.sleep(PEERS_POLL)

    async def refresh_node(self) -> None:
        if self.rooms is not None:
            # People the node met since the app opened: to find, and to encrypt for.
            await self.db.run(self.rooms.directory.refresh)
        try:
            peers = await trio.to_thread.run_sync(self._node_call, self.home.root, "peers")
            status = await trio.to_thread.run_sync(self._node_call, self.home.root, "status")
        except control.NodeNotRunning:
            self.peers, self.node_status = None, None
        except LocalError as exc:
            log.debug("node control: %s", exc)
        else:
            self.peers = list(peers) if isinstance(peers, list) else []
            self.node_status = dict(status) if isinstance(status, dict) else {}
        await self._poll_downloads()
        self.on_change()

    # --- snapshot ----------------------------------------------------------------------------

    @property
    def api(self) -> Rooms:
        """The rooms API (call it on the database thread: ``await session.db.run(...)``)."""
        if self.rooms is None:
            raise RuntimeError("session not opened")
        return self.rooms

    @property
    def file_api(self) -> Files:
        if self.files is None:
            raise RuntimeError("session not opened")
        return self.files

    async def refresh(self, *, full: bool = False) -> None:
        """Read what changed (new events from the node, our own actions) and redraw."""
        rooms = self.api
        arrivals = await self.db.run(rooms.store.arrivals, self._journal)
        # A receipt comes without an event: "received by N/M" under one's own
        # messages changes though nothing new arrived in the room.
        current = self.current
        receipts = (
            (current, await self.db.run(rooms.receipts.signature, current))
            if current is not None
            else (None, (0, 0))
        )
        if not arrivals and not full and receipts == self._receipts:
            return
        if arrivals:
            self._journal = arrivals[-1][0]
        changed = {room for _n, room, _i in arrivals}
        if current is not None and receipts != self._receipts:
            changed.add(current)
        self._receipts = receipts
        self.snapshot = await self.db.run(self._build, changed, full)
        self._notify()
        self.on_change()

    def _build(self, changed: set[bytes], full: bool) -> Snapshot:
        """On the database thread: the new snapshot."""
        rooms = self.api
        entries, fresh = [], []
        for info in rooms.list_rooms():
            if info.membership not in (Membership.JOIN, Membership.INVITE):
                continue
            kind = "direct" if info.direct else "public" if info.public else "private"
            name = info.name or self._direct_name(info) or info.room.hex()[:8]
            unread, mentioned = self._unread(info.room)
            if info.room in changed:
                fresh += self._fresh(info.room, name, kind == "direct")
            entries.append(RoomEntry(info.room, name, kind, info.membership, unread, mentioned))
        shown: RoomInfo | None = None
        timeline = self.snapshot.timeline
        if self.current is not None and self.current in rooms.store.rooms():
            shown = rooms.info(self.current)
            if full or self.current in changed or not timeline:
                timeline = self._timeline(self.current)
        else:
            timeline = []
        return Snapshot(entries, shown, timeline, fresh)

    def _direct_name(self, info: RoomInfo) -> str:
        if not info.direct:
            return ""
        me = self.api.me.account.account_key
        others = [m.name for m in self.api.members(info.room, everyone=True) if m.account != me]
        return ", ".join(others)

    def _unread(self, room: bytes) -> tuple[int, bool]:
        """Messages from others after what the user saw, and whether one names the user."""
        seen = self.state.seen.get(room.hex(), 0)
        me = self.api.me.account.account_key
        count, mentioned = 0, False
        for message in self.api.messages(room, limit=TIMELINE):
            if message.ts > seen and message.sender != me:
                count += 1
                mentioned = mentioned or self._mentions(message)
        return count, mentioned

    def _fresh(self, room: bytes, name: str, direct: bool) -> list[Fresh]:
        me = self.api.me.account.account_key
        found = []
        for message in self.api.messages(room, limit=20):
            if message.ts <= self._alerted_until or message.sender == me:
                continue
            self._alerted_until = max(self._alerted_until, message.ts)
            text = (
                message.body.decode("utf-8", "replace")
                if message.body is not None
                else self.tr(WAITING["no-key"])
            )
            alert = direct or self._mentions(message)
            found.append(Fresh(room, name, message.name, text, alert))
        return found

    def _mentions(self, message: Message) -> bool:
        if message.body is None or not self._me_name:
            return False
        text = message.body.decode("utf-8", "replace").casefold()
        name = self._me_name.casefold()
        first = name.split()[0] if name.split() else name
        return name in text or f"@{first}" in text

    def _timeline(self, room: bytes) -> list[Item]:
        rooms = self.api
        me = rooms.me.account.account_key
        messages = rooms.messages(room, limit=TIMELINE)
        by_id = {m.id: m for m in messages}
        files = {e.event: e for e in self.file_api.entries(room)}
        people = {m.account: m for m in rooms.members(room, everyone=True)}
        items = []
        for number, message in enumerate(messages, 1):
            person = people.get(message.sender)
            reply = None
            if message.reply_to is not None:
                target = by_id.get(message.reply_to)
                reply = _excerpt(target) if target is not None else "…"
            delivery = None
            if message.sender == me:
                counts = rooms.delivery(room, message.id)
                delivery = (len(counts.received), len(counts.expected))
            waiting = message.body is None
            text = (
                self.tr(WAITING.get(message.waiting or "locked", WAITING["locked"]))
                if message.body is None
                else message.body.decode("utf-8", "replace")
            )
            entry = files.get(message.id)
            items.append(
                Item(
                    number=number,
                    id=message.id,
                    ts=message.ts,
                    sender=message.name,
                    external=bool(person and person.external),
                    mine=message.sender == me,
                    verified=self._is_verified(message),
                    text=text,
                    waiting=waiting,
                    reply=reply,
                    edited=message.edited,
                    reactions=tuple((key, len(who)) for key, who in message.reactions),
                    file=_card(entry) if entry is not None else None,
                    delivery=delivery,
                    mention=message.sender != me and self._mentions(message),
                )
            )
            if not waiting:
                self._index(room, message)
        return items

    def _is_verified(self, message: Message) -> bool:
        if message.sender == self.api.me.account.account_key:
            return True
        devices = self.state.verified.get(bytes(message.sender).hex(), [])
        return message.device is not None and bytes(message.device).hex() in devices

    def _notify(self) -> None:
        """A notice for each new DM or mention from someone else (and the alert hook)."""
        for fresh in self.snapshot.fresh:
            if not fresh.alert:
                continue
            self.on_alert(fresh.sender, fresh.text)
            if fresh.room != self.current:
                self.say(
                    N_("New message from {name} in {room}."),
                    level="alert",
                    name=fresh.sender,
                    room=fresh.room_name,
                )

    # --- notices -----------------------------------------------------------------------------

    def say(self, template: str, *, level: str = "info", **values: object) -> None:
        self.say_text(self.tr(template).format(**values), level=level)

    def say_text(self, text: str, *, level: str = "info") -> None:
        """Like :meth:`say`, for a line already translated and filled in."""
        notice = Notice(text, level)
        if self._collecting is not None:
            self._collecting.append(notice)
        else:
            self.notices.append(notice)
        self.on_change()

    @contextlib.contextmanager
    def panel(self, title: str, **values: object) -> Iterator[None]:
        """What is said inside goes to a panel over the timeline (Esc closes it)."""
        self._collecting = []
        try:
            yield
        except BaseException:
            self._collecting = None
            raise
        lines, self._collecting = self._collecting, None
        self.shown = (self.tr(title).format(**values), lines)
        self.on_change()

    def close_panel(self) -> None:
        self.shown = None
        self.on_change()

    def say_error(self, error: P2PTchapError) -> None:
        self.notices.append(Notice(error.render(self.tr), "error"))
        self.on_change()

    def report(self, done: Done) -> None:
        for warning in done.warnings:
            self.say(N_("Warning: {warning}"), level="error", warning=self.tr(warning))

    # --- the open room -----------------------------------------------------------------------

    async def select(self, room: bytes) -> None:
        self.current = room
        self.state.seen[room.hex()] = int(self.clock() * 1000)
        self.snapshot = await self.db.run(self._build, {room}, True)
        await self.db.run(self.api.mark_read, room)
        self.on_change()

    async def move(self, step: int) -> None:
        """Open the next (``step`` 1) or previous (-1) room of the list."""
        entries = self.snapshot.rooms
        if not entries:
            return
        rooms = [e.room for e in entries]
        index = rooms.index(self.current) if self.current in rooms else -1
        await self.select(rooms[(index + step) % len(rooms)])

    def item(self, number: str) -> Item:
        """A message of the open room by its number on screen."""
        try:
            wanted = int(number.lstrip("#"))
        except ValueError:
            wanted = -1
        for item in self.snapshot.timeline:
            if item.number == wanted:
                return item
        raise UsageError(
            "no such message",
            user_message=N_("No message #{number} on screen."),
            number=number,
        )

    def require_room(self) -> bytes:
        if self.current is None:
            raise UsageError("no room", user_message=N_("Open a room first (Ctrl-N, or /go NAME)."))
        return self.current

    async def submit(self, text: str) -> None:
        """What the user typed in the composer: a /command, an answer, or a message."""
        from p2ptchap.ui.tui import commands  # noqa: PLC0415 - they import this module

        text = text.strip("\n")
        if not text.strip():
            return
        try:
            if self.pending is not None:
                _question, action = self.pending
                self.pending = None
                if text.strip().casefold() in {self.tr("yes").casefold(), "yes", "oui", "o", "y"}:
                    await action()
                else:
                    self.say(N_("Cancelled."))
            elif text.startswith("/") and not text.startswith("//"):
                await commands.run(self, text[1:])
            else:
                await self.send(text[1:] if text.startswith("//") else text)
        except P2PTchapError as exc:
            self.say_error(exc)
        except Exception as exc:  # a bug must not close the app: say it, go on
            log.exception("command failed: %s", text)
            self.say(N_("Internal error ({error}); the app goes on."), level="error", error=exc)
        await self.refresh(full=True)

    async def send(self, text: str, reply_to: bytes | None = None) -> None:
        room = self.require_room()
        done = await self.db.run(self.api.send, room, text.encode(), reply_to)
        self.state.seen[room.hex()] = int(self.clock() * 1000)
        self.report(done)

    def ask(self, question: str, action: Callable[[], Any], **values: object) -> None:
        """Ask a yes/no question; ``action`` (a coroutine function) runs on "yes"."""
        self.pending = (question, action)
        self.say(question, level="alert", **values)

    # --- search ------------------------------------------------------------------------------

    def _index(self, room: bytes, message: Message) -> None:
        """Add a decrypted message to the in-memory full-text index (database thread)."""
        if message.id in self._indexed or message.body is None:
            return
        if self._search is None:
            # In memory only: decrypted text never reaches the disk in clear.
            self._search = sqlite3.connect(":memory:")
            self._search.execute(
                "CREATE VIRTUAL TABLE messages USING fts5("
                "body, sender, room UNINDEXED, id UNINDEXED, ts UNINDEXED, "
                "tokenize='unicode61 remove_diacritics 2')"
            )
        body = message.body.decode("utf-8", "replace")
        if message.file is not None:
            body = f"{body} {message.file.name}"
        self._search.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
            (body, message.name, room.hex(), message.id.hex(), message.ts),
        )
        self._indexed.add(message.id)

    def search(self, query: str, limit: int = 30) -> list[tuple[str, str, int, str]]:
        """On the database thread: ``(room name, sender, ts, text)`` of matching messages."""
        rooms = self.api
        names = {}
        for info in rooms.list_rooms():
            names[info.room.hex()] = info.name or info.room.hex()[:8]
            if info.membership is Membership.JOIN:
                for message in rooms.messages(info.room, limit=10_000):
                    self._index(info.room, message)
        if self._search is None:
            return []
        words = [w for w in query.replace('"', " ").split() if w]
        if not words:
            return []
        expression = " ".join(f'"{w}"*' for w in words)
        rows = self._search.execute(
            "SELECT room, sender, ts, body FROM messages WHERE messages MATCH ? "
            "ORDER BY rank LIMIT ?",
            (expression, limit),
        ).fetchall()
        return [(names.get(r, r[:8]), s, int(t), b) for r, s, t, b in rows]

    # --- files -------------------------------------------------------------------------------

    def file_entry(self, file_id: str) -> FileEntry:
        """On the database thread: a file of the open room, by message number or id."""
        room = self.require_room()
        for item in self.snapshot.timeline:
            if f"#{item.number}" == file_id or str(item.number) == file_id:
                file_id = item.id.hex()
        return self.file_api.find(room, file_id)

    async def download(self, file_id: str, out: Path | None) -> None:
        entry = await self.db.run(self.file_entry, file_id)
        name = entry.descriptor.name if entry.descriptor else entry.id[:8]
        if entry.state == "complete":
            await self._save(entry, out)
            return
        try:
            await trio.to_thread.run_sync(
                lambda: self._node_call(
                    self.home.root, "file-download", root=entry.root.hex(), size=entry.size
                )
            )
        except control.NodeNotRunning:
            raise
        self._downloads[entry.root.hex()] = (entry.room, entry.id, out)
        self.say(N_("Downloading {name}…"), name=name)

    async def _poll_downloads(self) -> None:
        for root, (room, file_id, out) in list(self._downloads.items()):
            entry = await self.db.run(self.file_api.find, room, file_id)
            if entry.state == "complete":
                del self._downloads[root]
                with contextlib.suppress(P2PTchapError):
                    await self._save(entry, out)

    def downloads(self) -> list[tuple[str, int, int]]:
        """``(name, held, size)`` of files being fetched, for the status bar."""
        found = []
        for _room, file_id, _out in self._downloads.values():
            for item in self.snapshot.timeline:
                if item.file is not None and item.file.id == file_id:
                    found.append((item.file.name, item.file.held, item.file.size))
        return found

    async def _save(self, entry: FileEntry, out: Path | None) -> None:
        name = entry.descriptor.name if entry.descriptor else entry.id[:8]
        target = out or _downloads_folder() / name
        if target.is_dir():
            target = target / name
        try:
            saved = await self.db.run(self.file_api.export, entry, target)
        except P2PTchapError as exc:
            self.say_error(exc)
            return
        self.say(N_("Saved: {path}"), path=saved)

    async def send_file(self, path: Path) -> None:
        room = self.require_room()
        self.say(N_("Encrypting {name}…"), name=path.name)
        done, descriptor = await self.db.run(self.file_api.send, room, path)
        self.report(done)
        self.say(
            N_("Sent: {name} ({size})."), name=descriptor.name, size=human_size(descriptor.size)
        )

    # --- people ------------------------------------------------------------------------------

    def verify(self, who: str) -> tuple[str, str, str, AccountKey, list[str]]:
        """On the database thread: ``(name, email, safety number, account, devices)``."""
        from p2ptchap.core.identity import safety_number  # noqa: PLC0415

        rooms = self.api
        account = rooms.account_of(who)
        certificate = rooms.directory.account_ever(account)
        if certificate is None:
            raise UsageError(
                "unknown", user_message=N_("Nobody in the directory matches '{who}'."), who=who
            )
        devices = [bytes(d.device_key).hex() for d in rooms.directory.devices_of(account)]
        number = safety_number(rooms.me.account, certificate)
        return certificate.display_name, certificate.email, number, account, devices

    def mark_verified(self, account: AccountKey, devices: list[str]) -> None:
        self.state.verified[bytes(account).hex()] = devices
        self.state.save()

    def kind(self) -> Kind:
        return self.api.me.account.kind


def _excerpt(message: Message) -> str:
    body = message.body.decode("utf-8", "replace") if message.body is not None else "…"
    first = body.splitlines()[0] if body else ""
    return f"{message.name}: {first[:60]}"


def _card(entry: FileEntry) -> FileCard:
    d = entry.descriptor
    return FileCard(
        id=entry.id,
        name=d.name if d else "?",
        size=entry.size,
        mime=d.mime if d else "?",
        state=entry.state if d else "locked",
        held=entry.held,
    )


def _downloads_folder() -> Path:
    folder = Path(os.environ.get("XDG_DOWNLOAD_DIR", Path.home() / "Téléchargements"))
    if not folder.is_dir():
        folder = Path.home() / "Downloads"
    if not folder.is_dir():
        folder = Path.cwd()
    return folder


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("o", "Kio", "Mio", "Gio"):
        if value < 1024 or unit == "Gio":
            return f"{value:.0f} {unit}" if unit == "o" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} o"


def notify_desktop(title: str, text: str) -> None:
    """A desktop notification where ``notify-send`` exists (never waits, never fails)."""
    program = shutil.which("notify-send")
    if program is None:
        return
    import subprocess  # noqa: PLC0415

    with contextlib.suppress(OSError):
        subprocess.Popen(  # noqa: S603 - fixed program, text as arguments
            [program, "--app-name=p2ptchap", title, text[:200]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

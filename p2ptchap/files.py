"""Files in rooms: sending, listing, exporting, forwarding, and what to keep.

:class:`Files` joins the rooms (:mod:`p2ptchap.rooms`), where a file is a
message whose encrypted part carries its descriptor, and the blob store
(:mod:`p2ptchap.store.blobs`), where its sealed chunks are.  Both the CLI
(sending, exporting) and the node (fetching, serving, collecting) use it.

A file is named by the id of the message that carries it (hex, or a unique
prefix of 6 digits or more): the same file forwarded to another room is
another message, with the same content address.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Final

from p2ptchap.core import codec
from p2ptchap.core.errors import N_, LocalError, UsageError
from p2ptchap.core.events import EventType
from p2ptchap.core.files import (
    Descriptor,
    guess_mime,
    parse_clear_reference,
    safe_name,
)
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey
from p2ptchap.core.room import Rejection
from p2ptchap.core.sync import Access, access
from p2ptchap.images import image_facts
from p2ptchap.rooms import Done, RoomRefused, Rooms
from p2ptchap.store.blobs import BLOBS_DIR, BlobStore, NotDownloaded, Progress
from p2ptchap.store.home import Home

log = logging.getLogger("p2ptchap.files")

#: A blob nothing names yet (a file being sent) is kept this long.
IMPORT_GRACE: Final = 3600


@dataclasses.dataclass(frozen=True, slots=True)
class FileSettings:
    """``[files]`` in ``HOME/config.toml``."""

    #: Largest file this node sends or fetches (bytes).
    max_size: int = 4 << 30
    #: Files up to this size are fetched as soon as their message arrives
    #: (and so can be passed on to members who were away); larger ones
    #: when asked.
    auto_download: int = 16 << 20

    @classmethod
    def from_config(cls, table: dict[str, Any]) -> FileSettings:
        values = {}
        for key in ("max_size", "auto_download"):
            if key in table:
                value = table[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise UsageError(
                        f"bad {key}",
                        user_message=N_("In config.toml, [files] {key} must be a number of bytes."),
                        key=key,
                    )
                values[key] = value
        return cls(**values)


class FileUnknown(LocalError):
    default_message = N_("No file '{file}' in this room; see 'p2ptchap files ROOM'.")


class FileLocked(LocalError):
    default_message = N_(
        "The key of this file has not arrived yet (it comes from the sender's device)."
    )


@dataclasses.dataclass(frozen=True, slots=True)
class FileEntry:
    """One file message of a room, as listed."""

    event: bytes
    room: bytes
    root: bytes
    size: int
    sender: AccountKey
    sender_name: str
    ts: int
    #: The decrypted descriptor (``None`` until the message's key arrives).
    descriptor: Descriptor | None
    #: ``complete``, ``partial``, ``wanted`` (asked, nothing yet), or ``remote``.
    state: str
    held: int

    @property
    def id(self) -> str:
        return self.event.hex()

    def to_json(self) -> dict[str, object]:
        d = self.descriptor
        return {
            "id": self.id,
            "room": self.room.hex(),
            "root": self.root.hex(),
            "name": d.name if d else None,
            "size": self.size,
            "mime": d.mime if d else None,
            "sender": bytes(self.sender).hex(),
            "sender_name": self.sender_name,
            "ts": self.ts,
            "state": self.state if d else "locked",
            "held": self.held,
            "width": d.width if d else None,
            "height": d.height if d else None,
        }


def blob_store(home: Home, rooms: Rooms) -> BlobStore:
    return BlobStore(rooms.db, home.root / BLOBS_DIR, rooms.clock)


class Files:
    """Files of the rooms of one node (see the module documentation)."""

    def __init__(self, rooms: Rooms, blobs: BlobStore, settings: FileSettings) -> None:
        self.rooms = rooms
        self.blobs = blobs
        self.settings = settings

    # --- sending ----------------------------------------------------------------------------

    def send(
        self,
        room: bytes,
        path: Path,
        name: str | None = None,
        body: bytes = b"",
        progress: Progress = lambda _d, _t: None,
    ) -> tuple[Done, Descriptor]:
        """Encrypt the file at ``path`` into the store and post it to ``room``."""
        state = self.rooms.state(room)
        if not state.is_member(self.rooms.me.account.account_key):
            # Checked before the (long) encryption; the post checks again.
            raise RoomRefused(Rejection.NOT_A_MEMBER)
        root, size, key, head = self.blobs.import_file(
            path, self.rooms.rng, self.settings.max_size, progress
        )
        clean = safe_name(name if name is not None else path.name)
        mime = guess_mime(clean, head)
        facts = image_facts(path, mime)
        descriptor = Descriptor(
            root=root,
            size=size,
            key=key,
            mime=mime,
            name=clean,
            width=facts.width if facts else None,
            height=facts.height if facts else None,
            thumbnail=facts.thumbnail if facts else None,
        )
        return self.rooms.send_file(room, descriptor, body), descriptor

    def forward(self, entry: FileEntry, to_room: bytes) -> Done:
        """Post the same file to another room, by its descriptor (no upload).

        Our node must hold the whole blob: the members of the other room
        fetch it from us (or from whoever fetched it from us).
        """
        if entry.descriptor is None:
            raise FileLocked(entry.id)
        info = self.blobs.info(entry.root)
        if info is None or not info.complete:
            raise NotDownloaded(entry.id)
        return self.rooms.send_file(to_room, entry.descriptor)

    # --- listing ----------------------------------------------------------------------------

    def entries(self, room: bytes) -> list[FileEntry]:
        """The room's file messages still shown (not redacted), oldest first."""
        self.rooms.decrypt_room(room)
        accepted = self.rooms.store.live(room).resolution.accepted
        redacted = {e.content["target"] for e in accepted if e.type is EventType.REDACTION}
        found = []
        for event in accepted:
            if event.type is not EventType.MESSAGE or "file" not in event.content:
                continue
            if event.id in redacted:
                continue
            root, size = parse_clear_reference(event.content["file"])
            inner = self.rooms.keys.plaintext(event.id) if self.rooms.keys.unlocked else None
            descriptor = None
            if inner is not None and "file" in inner:
                descriptor = Descriptor.from_value(inner["file"])
            certificate = self.rooms.directory.account_ever(event.account)
            info = self.blobs.info(root)
            if info is None:
                state, held = "remote", 0
            elif info.complete:
                state, held = "complete", size
            else:
                held = info.held_bytes
                state = "partial" if held else ("wanted" if info.wanted else "remote")
            found.append(
                FileEntry(
                    event.id,
                    room,
                    root,
                    size,
                    event.account,
                    certificate.display_name if certificate else "?",
                    event.ts,
                    descriptor,
                    state,
                    held,
                )
            )
        return found

    def find(self, room: bytes, file_id: str) -> FileEntry:
        """A file of ``room`` by message id (hex, or a unique prefix of 6+ digits)."""
        text = file_id.strip().lower()
        if len(text) >= 6:
            found = [e for e in self.entries(room) if e.id.startswith(text)]
            if len(found) == 1:
                return found[0]
        raise FileUnknown(file_id, file=file_id)

    def export(
        self,
        entry: FileEntry,
        out: Path,
        progress: Progress = lambda _d, _t: None,
        *,
        replace: bool = False,
    ) -> Path:
        """Decrypt a downloaded file to ``out`` (a file path, or a folder to put it in)."""
        if entry.descriptor is None:
            raise FileLocked(entry.id)
        return self.blobs.export(entry.descriptor, out, progress, replace=replace)

    # --- who may fetch, what to keep ----------------------------------------------------

    def _refs(self, root: bytes | None = None) -> list[tuple[bytes, bytes, bytes]]:
        """``(root, event, room)`` of every accepted message naming a file (or ``root``)."""
        sql = (
            "SELECT f.root, f.event, f.room FROM file_refs f JOIN events e ON e.id = f.event"
            " WHERE e.status = 'accepted'"
        )
        rows = (
            self.rooms.db.query(sql + " AND f.root = ?", (root,))
            if root is not None
            else self.rooms.db.query(sql)
        )
        return [
            (r, e, m)
            for r, e, m in rows
            if isinstance(r, bytes) and isinstance(e, bytes) and isinstance(m, bytes)
        ]

    def _redacted(self, room: bytes) -> set[codec.Value]:
        accepted = self.rooms.store.live(room).resolution.accepted
        return {e.content["target"] for e in accepted if e.type is EventType.REDACTION}

    def rooms_of(self, root: bytes) -> list[bytes]:
        """Rooms where a kept message names ``root``."""
        found = []
        for _root, event, room in self._refs(root):
            if room not in found and event not in self._redacted(room):
                found.append(room)
        return found

    def may_serve(self, account: AccountKey, kind: Kind, email: str, root: bytes) -> bool:
        """Whether a peer of ``account`` may fetch ``root``: a full reader of a room naming it."""
        for room in self.rooms_of(root):
            state = self.rooms.store.live(room).resolution.state
            if access(state, account, kind, email) is Access.FULL:
                return True
        return False

    def may_ask(self, account: AccountKey, kind: Kind, email: str, root: bytes) -> bool:
        """Whether we may ask a peer of ``account`` for ``root`` (asking is not serving).

        A peer we would serve (:meth:`may_serve`), or one whose account wrote
        a kept message naming the file in a room we read: it made (or
        forwarded) that file, so the question tells it nothing it does not
        know — and it may be the only one holding it, removed from the room
        before anyone fetched it.  It serves us if its own state lets it.
        """
        if self.may_serve(account, kind, email, root):
            return True
        for _root, event, room in self._refs(root):
            if not self._we_read(room) or event in self._redacted(room):
                continue
            message = self.rooms.store.live(room).events.get(event)
            if message is not None and message.account == account:
                return True
        return False

    def kept_roots(self) -> set[bytes]:
        """Blobs to keep: named by a kept message of a room we still read."""
        redacted: dict[bytes, set[codec.Value]] = {}
        member: dict[bytes, bool] = {}
        kept = set()
        for root, event, room in self._refs():
            if room not in member:
                member[room] = self._we_read(room)
            if not member[room]:
                continue
            if room not in redacted:
                redacted[room] = self._redacted(room)
            if event not in redacted[room]:
                kept.add(root)
        return kept

    def collect(self, busy: set[bytes] | None = None) -> int:
        """Delete the blobs no kept message names (a file being sent is spared an hour).

        ``busy`` blobs (downloads in progress) are kept whatever names them.
        Files no record names (left by an import killed midway) go too, an
        hour after they were last written.
        """
        kept = self.kept_roots() | (busy or set())
        now = int(self.rooms.clock())
        old = {
            r
            for r, created in self.rooms.db.query("SELECT root, created FROM blobs")
            if isinstance(r, bytes) and isinstance(created, int) and created < now - IMPORT_GRACE
        }
        removed = self.blobs.remove(sorted(old - kept))
        if removed:
            log.info("removed %d file(s) no longer named by a kept message", removed)
        # What a process killed while importing left behind, once surely abandoned.
        strays = self.blobs.remove_strays(IMPORT_GRACE)
        if strays:
            log.info("removed %d unrecorded file(s) left by interrupted imports", strays)
        return removed + strays

    def auto_candidates(self, limit: int) -> list[tuple[bytes, int]]:
        """Files to fetch by themselves: up to ``limit`` bytes, named by a kept
        message of a room we read in full, and never held (nor cancelled)."""
        if limit <= 0:
            return []
        rows = self.rooms.db.query(
            "SELECT f.root, f.size, f.event, f.room FROM file_refs f"
            " JOIN events e ON e.id = f.event"
            " LEFT JOIN blobs b ON b.root = f.root"
            " WHERE e.status = 'accepted' AND f.size <= ? AND b.root IS NULL",
            (limit,),
        )
        found: dict[bytes, int] = {}
        readable: dict[bytes, bool] = {}
        redacted: dict[bytes, set[codec.Value]] = {}
        for root, size, event, room in rows:
            if not (isinstance(root, bytes) and isinstance(size, int)):
                continue
            if not isinstance(room, bytes) or root in found:
                continue
            if room not in readable:
                readable[room] = self._we_read(room)
                redacted[room] = self._redacted(room) if readable[room] else set()
            if readable[room] and event not in redacted[room]:
                found[root] = size
        return list(found.items())

    def _we_read(self, room: bytes) -> bool:
        """Whether our own state of ``room`` lets us read it in full (as for a peer)."""
        account = self.rooms.me.account
        state = self.rooms.store.live(room).resolution.state
        return access(state, account.account_key, account.kind, account.email) is Access.FULL


def open_files(rooms: Rooms, home: Home, settings: FileSettings | None = None) -> Files:
    return Files(rooms, blob_store(home, rooms), settings or FileSettings())

"""The room, directory and file operations, as the control socket serves them.

Each operation takes a JSON object of arguments and returns JSON data; the
running node runs them for the CLI, for the terminal's scripts and for bots
(:mod:`p2ptchap.node` registers every one on the control socket under its
name), and the CLI runs the very same functions on the home's database when
no node is running.  One body of logic, two ways to reach it: what a command
does is the same whether a node was up or not (only the transport's limits
differ: a request line of at most 64 KiB, paths that are valid UTF-8).

Arguments are checked here, each refusal a :class:`UsageError` with one
sentence; the rooms API then applies the room's rules (a refusal there is a
``RoomRefused``).  Warnings (``Done.warnings``) are returned as the
untranslated English templates so that each client shows them in its
user's language.  The wire format is in ``docs/protocol.md`` §7.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2ptchap.core.directory import RoomSummary
from p2ptchap.core.errors import N_, UsageError
from p2ptchap.core.files import Descriptor
from p2ptchap.core.keys import AccountKey
from p2ptchap.files import Files
from p2ptchap.rooms import Done, MemberInfo, Message, Role, RoomInfo, Rooms

#: ``progress(done, total)``: bytes encrypted or decrypted so far.
Progress = Callable[[int, int], None]

#: At most this many messages per ``room-read`` (a whole room's history, for
#: an archive or a check; the node encodes the answer on its worker thread).
MAX_READ = 100_000


@dataclasses.dataclass
class Workspace:
    """What the operations act on: one device's rooms and files."""

    rooms: Rooms
    files: Files


class Arguments:
    """A request's arguments, read with a type each; a wrong one is one sentence."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def bad(self, name: str, template: str) -> UsageError:
        return UsageError(f"bad argument {name!r}", user_message=template, name=name)

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self.values.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.bad(name, N_("The argument '{name}' must be a non-empty text."))
        if "\x00" in value:
            raise self.bad(name, N_("The argument '{name}' must not hold a NUL character."))
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: a file name that is not UTF-8
            raise self.bad(name, N_("The argument '{name}' is not valid text (UTF-8).")) from None
        return value

    def need(self, name: str) -> str:
        value = self.text(name)
        assert value is not None
        return value

    def flag(self, name: str) -> bool:
        value = self.values.get(name, False)
        if not isinstance(value, bool):
            raise self.bad(name, N_("The argument '{name}' must be true or false."))
        return value

    def number(self, name: str, default: int, low: int, high: int) -> int:
        value = self.values.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UsageError(
                f"bad argument {name!r}",
                user_message=N_("The argument '{name}' must be a number from {low} to {high}."),
                name=name,
                low=low,
                high=high,
            )
        return value

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if value not in options:
            raise UsageError(
                f"bad argument {name!r}",
                user_message=N_("The argument '{name}' must be one of: {options}."),
                name=name,
                options=", ".join(options),
            )
        return str(value)

    def path(self, name: str) -> Path:
        """An absolute path: the node does not share the client's working folder."""
        text = self.need(name)
        if not os.path.isabs(text):
            raise self.bad(name, N_("The argument '{name}' must be an absolute path."))
        return Path(text)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation: its function, and what running it needs."""

    run: Callable[[Workspace, Arguments, Progress], Any]
    #: It signs something new (sent at once by a running node; without one,
    #: it waits in the database until a node starts).
    writes: bool
    #: It needs the device's secret keys: to sign, or to decrypt.
    secret: bool


# --- shapes ------------------------------------------------------------------------------------


def room_json(i: RoomInfo) -> dict[str, Any]:
    return {
        "room": i.room.hex(),
        "name": i.name,
        "topic": i.topic,
        "public": i.public,
        "direct": i.direct,
        "externals": i.allow_externals,
        "members": i.members,
        "membership": i.membership.value if i.membership else None,
        "role": i.role.value,
    }


def member_json(m: MemberInfo) -> dict[str, Any]:
    return {
        "account": bytes(m.account).hex(),
        "name": m.name,
        "email": m.email,
        "external": m.external,
        "membership": m.membership.value,
        "role": m.role.value,
    }


def file_json(descriptor: Descriptor) -> dict[str, Any]:
    """A file card inside a message (``download`` takes the message's id)."""
    return {
        "root": descriptor.root.hex(),
        "name": descriptor.name,
        "size": descriptor.size,
        "mime": descriptor.mime,
    }


def summary_json(s: RoomSummary) -> dict[str, Any]:
    return {"room": s.room.hex(), "name": s.name, "topic": s.topic, "members": s.members}


def _done(done: Done, **more: Any) -> dict[str, Any]:
    return {
        "room": done.room.hex(),
        "events": [e.hex() for e in done.events],
        "warnings": list(done.warnings),
        **more,
    }


# --- rooms -------------------------------------------------------------------------------------


def room_list(w: Workspace, a: Arguments, _p: Progress) -> list[dict[str, Any]]:
    return [room_json(i) for i in w.rooms.list_rooms()]


def room_show(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    room = w.rooms.find(a.need("room"))
    info = w.rooms.info(room)
    # The room as every member sees it (not this device's own membership and
    # role, which room-list gives): the same answer on every node in sync.
    return {
        "room": room.hex(),
        "name": info.name,
        "topic": info.topic,
        "public": info.public,
        "direct": info.direct,
        "externals": info.allow_externals,
        "history": info.history,
        "count": info.members,
        "members": [member_json(m) for m in w.rooms.members(room, everyone=True)],
    }


def room_create(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    done = w.rooms.create(
        a.need("name"),
        topic=a.text("topic", required=False) or "",
        public=a.flag("public"),
        allow_externals=a.flag("externals"),
    )
    return _done(done)


def room_invite(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    rooms = w.rooms
    room = rooms.find(a.need("room"))
    person = rooms.person(a.need("who"))
    if isinstance(person, str):
        return _done(rooms.invite_email(room, person), account=None, email=person)
    return _done(rooms.invite(room, person), account=bytes(person).hex(), email=None)


def room_join(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    return _done(w.rooms.join(w.rooms.find(a.need("room"))))


def room_leave(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    return _done(w.rooms.leave(w.rooms.find(a.need("room"))))


def _target(w: Workspace, a: Arguments) -> tuple[bytes, AccountKey]:
    return w.rooms.find(a.need("room")), w.rooms.account_of(a.need("who"))


def room_kick(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    room, account = _target(w, a)
    reason = a.text("reason", required=False) or ""
    return _done(w.rooms.kick(room, account, reason), account=bytes(account).hex())


def room_ban(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    room, account = _target(w, a)
    reason = a.text("reason", required=False) or ""
    return _done(w.rooms.ban(room, account, reason), account=bytes(account).hex())


def room_unban(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    room, account = _target(w, a)
    return _done(w.rooms.unban(room, account), account=bytes(account).hex())


def room_set(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    rooms = w.rooms
    room = rooms.find(a.need("room"))
    name = a.text("name", required=False)
    topic = a.text("topic", required=False)
    access = a.choice("access", ("private", "public"))
    externals = a.values.get("externals")
    if externals is not None:
        externals = a.flag("externals")
    history = a.choice("history", ("joined", "shared"))
    if name is not None and not name.strip():
        raise UsageError("empty name", user_message=N_("A room's name cannot be empty."))
    changes: list[Done] = []
    if name is not None:
        changes.append(rooms.set_name(room, name))
    if topic is not None:
        changes.append(rooms.set_topic(room, topic))
    if access is not None:
        changes.append(rooms.set_public(room, access == "public"))
    if externals is not None:
        changes.append(rooms.set_externals(room, externals))
    if history is not None:
        changes.append(rooms.set_history(room, history == "shared"))
    if not changes:
        raise UsageError(
            "nothing to set",
            user_message=N_(
                "Say what to change: --name, --topic, --access, --externals or --history."
            ),
        )
    return {
        "room": room.hex(),
        "changes": len(changes),
        "events": [e.hex() for d in changes for e in d.events],
        "warnings": [warning for d in changes for warning in d.warnings],
    }


def room_role(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    room, account = _target(w, a)
    role = a.choice("role", tuple(r.value for r in Role))
    if role is None:
        raise a.bad("role", N_("The argument '{name}' is missing."))
    done = w.rooms.set_role(room, account, Role(role))
    return _done(done, account=bytes(account).hex(), role=role)


def room_dm(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    account = w.rooms.account_of(a.need("who"))
    return _done(w.rooms.direct(account), account=bytes(account).hex())


def room_send(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    rooms = w.rooms
    room = rooms.find(a.need("room"))
    text = a.text("text", required=False) or ""
    if not text.strip():
        raise UsageError("empty message", user_message=N_("The message is empty."))
    done = rooms.send(room, text.encode())
    return _done(done, event=done.events[-1].hex())


def room_read(w: Workspace, a: Arguments, _p: Progress) -> list[dict[str, Any]]:
    rooms = w.rooms
    room = rooms.find(a.need("room"))
    found = rooms.messages(room, limit=a.number("limit", 50, 1, MAX_READ))
    names = {bytes(m.account): m.name for m in rooms.members(room, everyone=True)}
    owners = {
        device.device_key: names.get(bytes(account), "?")
        for account in (m.account for m in rooms.members(room))
        for device in rooms.directory.devices_of(account)
    }
    me = rooms.me.account.account_key

    def delivery(m: Message) -> dict[str, Any]:
        counts = rooms.delivery(room, m.id)
        missing = {owners.get(d, "?") for d in counts.expected if d not in counts.received}
        return {
            "expected": len(counts.expected),
            "received": len(counts.received),
            "read": len(counts.read),
            "waiting_for": sorted(missing),
        }

    return [
        {
            "id": m.id.hex(),
            "sender": bytes(m.sender).hex(),
            "name": m.name,
            "mine": m.sender == me,
            "ts": m.ts,
            "text": m.body.decode("utf-8", errors="replace") if m.body is not None else None,
            "waiting": m.waiting,
            "reply_to": m.reply_to.hex() if m.reply_to else None,
            "edited": m.edited,
            "reactions": {key: len(who) for key, who in m.reactions},
            "file": file_json(m.file) if m.file else None,
            "delivery": delivery(m),
            "exposed_to": [bytes(x).hex() for x in m.exposed_to],
            "exposed_names": [names.get(bytes(x), bytes(x).hex()[:12]) for x in m.exposed_to],
        }
        for m in found
    ]


# --- directory ---------------------------------------------------------------------------------


def directory_search(w: Workspace, a: Arguments, _p: Progress) -> list[dict[str, Any]]:
    return [
        {
            "account": bytes(e.account).hex(),
            "name": e.name,
            "email": e.email,
            "external": e.is_external,
        }
        for e in w.rooms.search_people(a.need("query"))
    ]


def directory_rooms(w: Workspace, a: Arguments, _p: Progress) -> list[dict[str, Any]]:
    return [summary_json(s) for s in w.rooms.public_rooms(a.text("query", required=False) or "")]


# --- files -------------------------------------------------------------------------------------


def file_send(w: Workspace, a: Arguments, progress: Progress) -> dict[str, Any]:
    room = w.rooms.find(a.need("room"))
    done, descriptor = w.files.send(
        room,
        a.path("path"),
        name=a.text("name", required=False),
        body=(a.text("caption", required=False) or "").encode(),
        progress=progress,
    )
    return _done(done, id=done.events[-1].hex(), **file_json(descriptor))


def file_list(w: Workspace, a: Arguments, _p: Progress) -> list[dict[str, object]]:
    return [e.to_json() for e in w.files.entries(w.rooms.find(a.need("room")))]


def file_find(w: Workspace, a: Arguments, _p: Progress) -> dict[str, object]:
    """One file of a room by message id (or a unique prefix): its card and state."""
    entry = w.files.find(w.rooms.find(a.need("room")), a.need("file"))
    info = w.files.blobs.info(entry.root)
    return {**entry.to_json(), "complete": info is not None and info.complete}


def file_save(w: Workspace, a: Arguments, progress: Progress) -> dict[str, object]:
    """Decrypt a file held whole to ``out`` (a file, or a folder to put it in)."""
    entry = w.files.find(w.rooms.find(a.need("room")), a.need("file"))
    target = w.files.export(entry, a.path("out"), progress, replace=a.flag("replace"))
    return {**entry.to_json(), "path": str(target)}


def file_forward(w: Workspace, a: Arguments, _p: Progress) -> dict[str, Any]:
    rooms = w.rooms
    entry = w.files.find(rooms.find(a.need("room")), a.need("file"))
    done = w.files.forward(entry, rooms.find(a.need("to")))
    return _done(done, id=done.events[-1].hex())


OPERATIONS: dict[str, Operation] = {
    "room-list": Operation(room_list, writes=False, secret=False),
    "room-show": Operation(room_show, writes=False, secret=False),
    "room-create": Operation(room_create, writes=True, secret=True),
    "room-invite": Operation(room_invite, writes=True, secret=True),
    "room-join": Operation(room_join, writes=True, secret=True),
    "room-leave": Operation(room_leave, writes=True, secret=True),
    "room-kick": Operation(room_kick, writes=True, secret=True),
    "room-ban": Operation(room_ban, writes=True, secret=True),
    "room-unban": Operation(room_unban, writes=True, secret=True),
    "room-set": Operation(room_set, writes=True, secret=True),
    "room-role": Operation(room_role, writes=True, secret=True),
    "room-dm": Operation(room_dm, writes=True, secret=True),
    "room-send": Operation(room_send, writes=True, secret=True),
    "room-read": Operation(room_read, writes=False, secret=True),
    "directory-search": Operation(directory_search, writes=False, secret=False),
    "directory-rooms": Operation(directory_rooms, writes=False, secret=False),
    "file-send": Operation(file_send, writes=True, secret=True),
    "file-list": Operation(file_list, writes=False, secret=True),
    "file-find": Operation(file_find, writes=False, secret=True),
    "file-save": Operation(file_save, writes=False, secret=True),
    "file-forward": Operation(file_forward, writes=True, secret=True),
}


def run(workspace: Workspace, name: str, arguments: dict[str, Any], progress: Progress) -> Any:
    """Run operation ``name`` (a key of :data:`OPERATIONS`) on ``workspace``."""
    return OPERATIONS[name].run(workspace, Arguments(arguments), progress)

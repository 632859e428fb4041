"""The ``room`` and ``directory`` commands: rooms and directories from the command line.

They act on this node's database directly (SQLite lets the running node and
the CLI share it).  A person is named by e-mail address, by account key
(hex), or by a search that must match exactly one entry ("Hélène Dupont").
``room send`` and ``room read`` need the passphrase: messages are end-to-end
encrypted, and decrypted contents are sealed on disk.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from p2ptchap.core.directory import RoomSummary
from p2ptchap.core.errors import N_, UsageError
from p2ptchap.core.files import Descriptor
from p2ptchap.core.keys import AccountKey
from p2ptchap.i18n import Translator
from p2ptchap.rooms import Done, MemberInfo, Message, Role, RoomInfo, Rooms, open_rooms
from p2ptchap.ui.context import Context, emit_json

T = TypeVar("T")

# Words shown through ctx.tr: roles, memberships, yes/no.
ROOM_WORDS = (
    N_("admin"),
    N_("moderator"),
    N_("member"),
    N_("invite"),
    N_("join"),
    N_("leave"),
    N_("ban"),
    N_("public"),
    N_("private"),
    N_("direct"),
    N_("joined"),
    N_("shared"),
    N_("yes"),
    N_("no"),
    N_(" (external)"),
)


def _rooms(ctx: Context, *, write: bool) -> Rooms:
    return open_rooms(ctx.home, ctx.passphrase() if write else None, time.time, ctx.rng)


def member_line(tr: Callable[[str], str], m: MemberInfo) -> str:
    """One member as listed by ``room show`` and the app's ``/members``."""
    return tr(N_("  {name} <{email}>{external} — {role}, {membership}")).format(
        name=m.name,
        email=m.email,
        external=tr(" (external)") if m.external else "",
        role=tr(m.role.value),
        membership=tr(m.membership.value),
    )


def _person(rooms: Rooms, who: str) -> AccountKey | str:
    return rooms.person(who)


def _account(rooms: Rooms, who: str) -> AccountKey:
    return rooms.account_of(who)


def _done(ctx: Context, done: Done, template: str, **values: object) -> int:
    ctx.say(template, **values)
    for warning in done.warnings:
        ctx.say("Warning: {warning}", warning=ctx.tr(warning))
    return 0


def cmd_room_create(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    done = rooms.create(
        args.name, topic=args.topic or "", public=args.public, allow_externals=args.externals
    )
    if args.json:
        emit_json(ctx, {"room": done.room.hex(), "warnings": [ctx.tr(w) for w in done.warnings]})
        return 0
    return _done(
        ctx, done, N_("Room '{name}' created: {room}"), name=args.name, room=done.room.hex()
    )


def cmd_room_list(ctx: Context, args: argparse.Namespace) -> int:
    def line(i: RoomInfo) -> dict[str, object]:
        kind = "direct" if i.direct else "public" if i.public else "private"
        return {
            "room": i.room.hex()[:12],
            "name": i.name or "—",
            "kind": ctx.tr(kind),
            "members": i.members,
            "membership": ctx.tr(i.membership.value) if i.membership else "—",
            "role": ctx.tr(i.role.value),
        }

    return _listing(
        ctx,
        args.json,
        _rooms(ctx, write=False).list_rooms(),
        lambda i: {
            "room": i.room.hex(),
            "name": i.name,
            "topic": i.topic,
            "public": i.public,
            "direct": i.direct,
            "externals": i.allow_externals,
            "members": i.members,
            "membership": i.membership.value if i.membership else None,
            "role": i.role.value,
        },
        N_("No rooms yet: 'p2ptchap room create NAME' makes one."),
        N_("{room}  {name}  ({kind}, {members} member(s), {membership}, {role})"),
        line,
    )


def cmd_room_show(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=False)
    room = rooms.find(args.room)
    info = rooms.info(room)
    members = rooms.members(room, everyone=True)
    if args.json:
        emit_json(
            ctx,
            {
                "room": room.hex(),
                "name": info.name,
                "topic": info.topic,
                "public": info.public,
                "direct": info.direct,
                "externals": info.allow_externals,
                "history": info.history,
                "members": [
                    {
                        "account": bytes(m.account).hex(),
                        "name": m.name,
                        "email": m.email,
                        "external": m.external,
                        "membership": m.membership.value,
                        "role": m.role.value,
                    }
                    for m in members
                ],
            },
        )
        return 0
    kind = "direct" if info.direct else "public" if info.public else "private"
    ctx.say("{name} ({kind}) — {room}", name=info.name or "—", kind=ctx.tr(kind), room=room.hex())
    if info.topic:
        ctx.say("Topic: {topic}", topic=info.topic)
    ctx.say(
        "Externals allowed: {allowed}; history for new members: {history}",
        allowed=ctx.tr("yes" if info.allow_externals else "no"),
        history=ctx.tr(info.history),
    )
    for m in members:
        print(member_line(ctx.tr, m), file=ctx.out)
    return 0


def cmd_room_invite(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    room = rooms.find(args.room)
    person = _person(rooms, args.who)
    if isinstance(person, str):
        done = rooms.invite_email(room, person)
        return _done(ctx, done, "{email} is invited; they can join once enrolled.", email=person)
    done = rooms.invite(room, person)
    return _done(ctx, done, N_("Invitation sent."))


def _simple(action: str) -> Callable[[Context, argparse.Namespace], int]:
    """join / leave: an action on oneself."""

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        rooms = _rooms(ctx, write=True)
        room = rooms.find(args.room)
        done = rooms.join(room) if action == "join" else rooms.leave(room)
        message = N_("You joined the room.") if action == "join" else N_("You left the room.")
        return _done(ctx, done, message)

    return handler


def _on_person(action: str) -> Callable[[Context, argparse.Namespace], int]:
    """kick / ban / unban: an action on someone else."""

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        rooms = _rooms(ctx, write=True)
        room = rooms.find(args.room)
        account = _account(rooms, args.who)
        reason = getattr(args, "reason", None) or ""
        if action == "kick":
            done, message = rooms.kick(room, account, reason), N_("Removed from the room.")
        elif action == "ban":
            done, message = rooms.ban(room, account, reason), N_("Banned from the room.")
        else:
            done, message = rooms.unban(room, account), N_("Ban lifted.")
        return _done(ctx, done, message)

    return handler


def cmd_room_set(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    room = rooms.find(args.room)
    changes: list[Done] = []
    if args.name is not None:
        changes.append(rooms.set_name(room, args.name))
    if args.topic is not None:
        changes.append(rooms.set_topic(room, args.topic))
    if args.access is not None:
        changes.append(rooms.set_public(room, args.access == "public"))
    if args.externals is not None:
        changes.append(rooms.set_externals(room, args.externals == "yes"))
    if args.history is not None:
        changes.append(rooms.set_history(room, args.history == "shared"))
    if not changes:
        raise UsageError(
            "nothing to set",
            user_message=N_(
                "Say what to change: --name, --topic, --access, --externals or --history."
            ),
        )
    ctx.say("Room updated ({count} change(s)).", count=len(changes))
    for done in changes:
        for warning in done.warnings:
            ctx.say("Warning: {warning}", warning=ctx.tr(warning))
    return 0


def cmd_room_role(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    room = rooms.find(args.room)
    done = rooms.set_role(room, _account(rooms, args.who), Role(args.role))
    return _done(ctx, done, N_("Role set: {role}."), role=ctx.tr(args.role))


def cmd_room_dm(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    done = rooms.direct(_account(rooms, args.who))
    return _done(ctx, done, N_("Direct conversation: {room}"), room=done.room.hex())


def _listing(
    ctx: Context,
    as_json: bool,
    items: Sequence[T],
    to_json: Callable[[T], dict[str, Any]],
    empty: str,
    template: str,
    to_line: Callable[[T], dict[str, object]],
) -> int:
    """A list as JSON for scripts, or one translated line per item (``empty`` if none)."""
    if as_json:
        emit_json(ctx, [to_json(item) for item in items])
        return 0
    if not items:
        ctx.say(empty)
    for item in items:
        ctx.say(template, **to_line(item))
    return 0


def cmd_room_send(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    room = rooms.find(args.room)
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise UsageError("empty message", user_message=N_("The message is empty."))
    done = rooms.send(room, text.encode())
    if args.json:
        emit_json(ctx, {"room": room.hex(), "event": done.events[-1].hex()})
        return 0
    return _done(ctx, done, N_("Message sent (end-to-end encrypted)."))


_WAITING = {
    "no-key": N_("[waiting for the key from the sender's device]"),
    "bad-message": N_("[this message could not be decrypted: altered or replayed]"),
    "locked": N_("[encrypted: give the passphrase to read]"),
}


def _file_json(descriptor: Descriptor) -> dict[str, object]:
    """A file card, as ``files --json`` gives it (``download`` takes its root)."""
    return {
        "root": descriptor.root.hex(),
        "name": descriptor.name,
        "size": descriptor.size,
        "mime": descriptor.mime,
    }


def cmd_room_read(ctx: Context, args: argparse.Namespace) -> int:
    rooms = _rooms(ctx, write=True)
    room = rooms.find(args.room)
    found = rooms.messages(room, limit=args.limit)
    names = {bytes(m.account): m.name for m in rooms.members(room, everyone=True)}

    owners = {
        device.device_key: names.get(bytes(account), "?")
        for account in (m.account for m in rooms.members(room))
        for device in rooms.directory.devices_of(account)
    }
    me = rooms.me.account.account_key

    def text(body: bytes | None, waiting: str | None) -> str:
        if body is not None:
            return body.decode("utf-8", errors="replace")
        return ctx.tr(_WAITING.get(waiting or "", _WAITING["no-key"]))

    def delivery(m: Message) -> dict[str, object]:
        found = rooms.delivery(room, m.id)
        missing = {owners.get(d, "?") for d in found.expected if d not in found.received}
        return {
            "expected": len(found.expected),
            "received": len(found.received),
            "read": len(found.read),
            "waiting_for": sorted(missing),
        }

    if args.json:
        emit_json(
            ctx,
            [
                {
                    "id": m.id.hex(),
                    "sender": bytes(m.sender).hex(),
                    "name": m.name,
                    "ts": m.ts,
                    "text": m.body.decode("utf-8", errors="replace") if m.body else None,
                    "waiting": m.waiting,
                    "reply_to": m.reply_to.hex() if m.reply_to else None,
                    "edited": m.edited,
                    "reactions": {key: len(who) for key, who in m.reactions},
                    "file": _file_json(m.file) if m.file else None,
                    "delivery": delivery(m),
                    "exposed_to": [bytes(a).hex() for a in m.exposed_to],
                }
                for m in found
            ],
        )
        return 0
    if not found:
        ctx.say(N_("No messages yet."))
    for m in found:
        when = datetime.datetime.fromtimestamp(m.ts / 1000).strftime("%d/%m %H:%M")
        ctx.say("{when}  {name}: {text}", when=when, name=m.name, text=text(m.body, m.waiting))
        if m.sender == me:
            counts = delivery(m)
            ctx.say(
                N_("  ✓ received by {received}/{expected}"),
                received=counts["received"],
                expected=counts["expected"],
            )
        if m.exposed_to:
            ctx.say(
                N_("  ⚠ may have been readable by removed member(s): {names}"),
                names=", ".join(names.get(bytes(a), bytes(a).hex()[:12]) for a in m.exposed_to),
            )
    return 0


def cmd_directory_search(ctx: Context, args: argparse.Namespace) -> int:
    found = _rooms(ctx, write=False).search_people(args.query)
    return _listing(
        ctx,
        args.json,
        found,
        lambda e: {
            "account": bytes(e.account).hex(),
            "name": e.name,
            "email": e.email,
            "external": e.is_external,
        },
        N_("Nobody found."),
        N_("{name} <{email}>{external}"),
        lambda e: {
            "name": e.name,
            "email": e.email,
            "external": ctx.tr(" (external)") if e.is_external else "",
        },
    )


def cmd_directory_rooms(ctx: Context, args: argparse.Namespace) -> int:
    found = _rooms(ctx, write=False).public_rooms(args.query or "")
    return _listing(
        ctx,
        args.json,
        found,
        _summary,
        N_("No public room found."),
        N_("{room}  {name} — {topic} ({members} member(s))"),
        lambda s: {**_summary(s), "room": s.room.hex()[:12]},
    )


def _summary(s: RoomSummary) -> dict[str, Any]:
    return {"room": s.room.hex(), "name": s.name, "topic": s.topic, "members": s.members}


def _add_message_commands(actions: Any, command: Callable[..., Any], tr: Translator) -> None:
    sub = command(actions, "send", cmd_room_send, "send a message (end-to-end encrypted)")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("text", help=tr("the message; '-' reads it from standard input"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(actions, "read", cmd_room_read, "show a room's latest messages")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("--limit", type=int, default=50, help=tr("how many messages"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))


def add_commands(commands: Any, command: Callable[..., Any], tr: Translator) -> None:
    """Add the ``room`` and ``directory`` commands to the CLI's parser."""
    room = command(commands, "room", _group, "rooms: create, invite, moderate")
    actions = room.add_subparsers(dest="subcommand", metavar="ACTION", required=True)

    sub = command(actions, "create", cmd_room_create, "create a room (private unless --public)")
    sub.add_argument("name", help=tr("the room's name"))
    sub.add_argument("--topic", default=None, help=tr("the room's topic"))
    sub.add_argument("--public", action="store_true", help=tr("any agent can find and join it"))
    sub.add_argument("--externals", action="store_true", help=tr("allow external accounts"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(actions, "list", cmd_room_list, "list this node's rooms")
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(actions, "show", cmd_room_show, "show a room and its members with their roles")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(actions, "invite", cmd_room_invite, "invite someone (e-mail, name or key)")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("who", help=tr("e-mail address, 'First Last', or account key"))

    for name, help_text in (("join", N_("join a room")), ("leave", N_("leave a room"))):
        sub = command(actions, name, _simple(name), help_text)
        sub.add_argument("room", help=tr("room name or id"))

    for name, help_text in (
        ("kick", N_("remove someone from a room")),
        ("ban", N_("ban someone from a room")),
        ("unban", N_("lift a ban")),
    ):
        sub = command(actions, name, _on_person(name), help_text)
        sub.add_argument("room", help=tr("room name or id"))
        sub.add_argument("who", help=tr("e-mail address, 'First Last', or account key"))
        if name != "unban":
            sub.add_argument("--reason", default=None, help=tr("shown to the members"))

    sub = command(actions, "set", cmd_room_set, "change a room's name, topic or rules")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("--name", default=None, help=tr("new name"))
    sub.add_argument("--topic", default=None, help=tr("new topic"))
    sub.add_argument(
        "--access", choices=["private", "public"], default=None, help=tr("who may join")
    )
    sub.add_argument(
        "--externals", choices=["yes", "no"], default=None, help=tr("allow external accounts")
    )
    sub.add_argument(
        "--history",
        choices=["joined", "shared"],
        default=None,
        help=tr("what new members may read: from their arrival, or everything"),
    )

    _add_message_commands(actions, command, tr)

    sub = command(actions, "role", cmd_room_role, "give someone a role in a room")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("who", help=tr("e-mail address, 'First Last', or account key"))
    sub.add_argument("role", choices=[r.value for r in Role], help=tr("the new role"))

    sub = command(actions, "dm", cmd_room_dm, "open a direct conversation with someone")
    sub.add_argument("who", help=tr("e-mail address, 'First Last', or account key"))

    directory = command(commands, "directory", _group, "search people and public rooms")
    lookups = directory.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    sub = command(lookups, "search", cmd_directory_search, "find people by name or e-mail")
    sub.add_argument("query", help=tr("first name, last name or e-mail"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))
    sub = command(lookups, "rooms", cmd_directory_rooms, "list or search the public rooms")
    sub.add_argument("query", nargs="?", default=None, help=tr("words of the name or topic"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))


def _group(ctx: Context, args: argparse.Namespace) -> int:  # pragma: no cover
    raise UsageError("missing action")

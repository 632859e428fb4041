"""The ``room`` and ``directory`` commands: rooms and directories from the command line.

Each command is one operation of :mod:`p2ptchap.api.operations`, carried out
by the running node through its control socket, or by the command itself
on the home's database when no node runs (:mod:`p2ptchap.ui.backend`).  A
person is named by e-mail address, by account key (hex), or by a search
that must match exactly one entry ("Hélène Dupont").  Without a node,
commands that sign or decrypt need the passphrase: messages are end-to-end
encrypted, and decrypted contents are sealed on disk.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from typing import Any

from p2ptchap.core.errors import N_, UsageError
from p2ptchap.i18n import Translator
from p2ptchap.rooms import MemberInfo, Role
from p2ptchap.ui.backend import execute
from p2ptchap.ui.context import Context, emit_json

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


def member_line(tr: Callable[[str], str], m: MemberInfo) -> str:
    """One member as listed by the app's ``/members``."""
    return tr(N_("  {name} <{email}>{external} — {role}, {membership}")).format(
        name=m.name,
        email=m.email,
        external=tr(" (external)") if m.external else "",
        role=tr(m.role.value),
        membership=tr(m.membership.value),
    )


def _member_line(ctx: Context, m: dict[str, Any]) -> str:
    """One member as ``room show`` lists it, from its JSON."""
    return ctx.tr(N_("  {name} <{email}>{external} — {role}, {membership}")).format(
        name=m["name"],
        email=m["email"],
        external=ctx.tr(" (external)") if m["external"] else "",
        role=ctx.tr(m["role"]),
        membership=ctx.tr(m["membership"]),
    )


def _warnings(ctx: Context, result: dict[str, Any]) -> list[str]:
    return [ctx.tr(w) for w in result.get("warnings", [])]


def _done(ctx: Context, result: dict[str, Any], template: str, **values: object) -> int:
    """A change made: the JSON for scripts, else the sentence and its warnings."""
    if ctx.json:
        emit_json(ctx, {**result, "warnings": _warnings(ctx, result)})
        return 0
    ctx.say(template, **values)
    for warning in _warnings(ctx, result):
        ctx.say("Warning: {warning}", warning=warning)
    return 0


def _json(ctx: Context, args: argparse.Namespace) -> Context:
    ctx.json = bool(getattr(args, "json", False))
    return ctx


def cmd_room_create(ctx: Context, args: argparse.Namespace) -> int:
    result = execute(
        _json(ctx, args),
        "room-create",
        name=args.name,
        topic=args.topic,
        public=args.public,
        externals=args.externals,
    )
    return _done(
        ctx, result, N_("Room '{name}' created: {room}"), name=args.name, room=result["room"]
    )


def cmd_room_list(ctx: Context, args: argparse.Namespace) -> int:
    def line(i: dict[str, Any]) -> dict[str, object]:
        kind = "direct" if i["direct"] else "public" if i["public"] else "private"
        return {
            "room": i["room"][:12],
            "name": i["name"] or "—",
            "kind": ctx.tr(kind),
            "members": i["members"],
            "membership": ctx.tr(i["membership"]) if i["membership"] else "—",
            "role": ctx.tr(i["role"]),
        }

    return _listing(
        ctx,
        args.json,
        execute(ctx, "room-list"),
        N_("No rooms yet: 'p2ptchap room create NAME' makes one."),
        N_("{room}  {name}  ({kind}, {members} member(s), {membership}, {role})"),
        line,
    )


def cmd_room_show(ctx: Context, args: argparse.Namespace) -> int:
    info = execute(ctx, "room-show", room=args.room)
    if args.json:
        emit_json(ctx, info)
        return 0
    kind = "direct" if info["direct"] else "public" if info["public"] else "private"
    ctx.say(
        "{name} ({kind}) — {room}", name=info["name"] or "—", kind=ctx.tr(kind), room=info["room"]
    )
    if info["topic"]:
        ctx.say("Topic: {topic}", topic=info["topic"])
    ctx.say(
        "Externals allowed: {allowed}; history for new members: {history}",
        allowed=ctx.tr("yes" if info["externals"] else "no"),
        history=ctx.tr(info["history"]),
    )
    for m in info["members"]:
        print(_member_line(ctx, m), file=ctx.out)
    return 0


def cmd_room_invite(ctx: Context, args: argparse.Namespace) -> int:
    result = execute(_json(ctx, args), "room-invite", room=args.room, who=args.who)
    if result["email"] is not None:
        return _done(
            ctx, result, "{email} is invited; they can join once enrolled.", email=result["email"]
        )
    return _done(ctx, result, N_("Invitation sent."))


def _simple(action: str) -> Callable[[Context, argparse.Namespace], int]:
    """join / leave: an action on oneself."""

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        result = execute(_json(ctx, args), f"room-{action}", room=args.room)
        message = N_("You joined the room.") if action == "join" else N_("You left the room.")
        return _done(ctx, result, message)

    return handler


_ON_PERSON = {
    "kick": N_("Removed from the room."),
    "ban": N_("Banned from the room."),
    "unban": N_("Ban lifted."),
}


def _on_person(action: str) -> Callable[[Context, argparse.Namespace], int]:
    """kick / ban / unban: an action on someone else."""

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        reason = {} if action == "unban" else {"reason": args.reason or ""}
        result = execute(_json(ctx, args), f"room-{action}", room=args.room, who=args.who, **reason)
        return _done(ctx, result, _ON_PERSON[action])

    return handler


def cmd_room_set(ctx: Context, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {
        "name": args.name,
        "topic": args.topic,
        "access": args.access,
        "externals": None if args.externals is None else args.externals == "yes",
        "history": args.history,
    }
    result = execute(
        _json(ctx, args),
        "room-set",
        room=args.room,
        **{k: v for k, v in changes.items() if v is not None},
    )
    return _done(ctx, result, "Room updated ({count} change(s)).", count=result["changes"])


def cmd_room_role(ctx: Context, args: argparse.Namespace) -> int:
    result = execute(_json(ctx, args), "room-role", room=args.room, who=args.who, role=args.role)
    return _done(ctx, result, N_("Role set: {role}."), role=ctx.tr(args.role))


def cmd_room_dm(ctx: Context, args: argparse.Namespace) -> int:
    result = execute(_json(ctx, args), "room-dm", who=args.who)
    return _done(ctx, result, N_("Direct conversation: {room}"), room=result["room"])


def _listing(
    ctx: Context,
    as_json: bool,
    items: list[dict[str, Any]],
    empty: str,
    template: str,
    to_line: Callable[[dict[str, Any]], dict[str, object]],
) -> int:
    """A list as JSON for scripts, or one translated line per item (``empty`` if none)."""
    if as_json:
        emit_json(ctx, items)
        return 0
    if not items:
        ctx.say(empty)
    for item in items:
        ctx.say(template, **to_line(item))
    return 0


def cmd_room_send(ctx: Context, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise UsageError("empty message", user_message=N_("The message is empty."))
    result = execute(_json(ctx, args), "room-send", room=args.room, text=text)
    return _done(ctx, result, N_("Message sent (end-to-end encrypted)."))


_WAITING = {
    "no-key": N_("[waiting for the key from the sender's device]"),
    "bad-message": N_("[this message could not be decrypted: altered or replayed]"),
    "locked": N_("[encrypted: give the passphrase to read]"),
}


def cmd_room_read(ctx: Context, args: argparse.Namespace) -> int:
    found = execute(ctx, "room-read", room=args.room, limit=args.limit)
    if args.json:
        emit_json(ctx, found)
        return 0
    if not found:
        ctx.say(N_("No messages yet."))
    for m in found:
        when = datetime.datetime.fromtimestamp(m["ts"] / 1000).strftime("%d/%m %H:%M")
        text = m["text"]
        if text is None:
            text = ctx.tr(_WAITING.get(m["waiting"] or "", _WAITING["no-key"]))
        ctx.say("{when}  {name}: {text}", when=when, name=m["name"], text=text)
        if m["mine"]:
            ctx.say(
                N_("  ✓ received by {received}/{expected}"),
                received=m["delivery"]["received"],
                expected=m["delivery"]["expected"],
            )
        if m["exposed_names"]:
            ctx.say(
                N_("  ⚠ may have been readable by removed member(s): {names}"),
                names=", ".join(m["exposed_names"]),
            )
    return 0


def cmd_directory_search(ctx: Context, args: argparse.Namespace) -> int:
    return _listing(
        ctx,
        args.json,
        execute(ctx, "directory-search", query=args.query),
        N_("Nobody found."),
        N_("{name} <{email}>{external}"),
        lambda e: {
            "name": e["name"],
            "email": e["email"],
            "external": ctx.tr(" (external)") if e["external"] else "",
        },
    )


def cmd_directory_rooms(ctx: Context, args: argparse.Namespace) -> int:
    return _listing(
        ctx,
        args.json,
        execute(ctx, "directory-rooms", query=args.query or ""),
        N_("No public room found."),
        N_("{room}  {name} — {topic} ({members} member(s))"),
        lambda s: {**s, "room": s["room"][:12]},
    )


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

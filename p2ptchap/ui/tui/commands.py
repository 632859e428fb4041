"""The app's /commands: one table, each with its French alias, usage and help.

Every task of the user guide is one command away from the composer; ``/help``
lists them, Tab completes them.  A command's argument is the rest of the line
(names of people and rooms have spaces).  Refusals are typed errors whose
sentence the session shows.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

from p2ptchap.core.errors import N_, UsageError
from p2ptchap.core.events import Membership
from p2ptchap.core.identity import Kind
from p2ptchap.rooms import Done, Role
from p2ptchap.ui.cli_rooms import member_line
from p2ptchap.ui.tui.session import ChatSession, human_size

Handler = Callable[[ChatSession, str], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    name: str
    alias: str
    usage: str
    help: str
    handler: Handler


COMMANDS: list[Command] = []


def command(name: str, alias: str, usage: str, help_text: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS.append(Command(name, alias, usage, help_text, handler))
        return handler

    return register


def find(word: str) -> Command | None:
    word = word.casefold()
    for entry in COMMANDS:
        if word in (entry.name, entry.alias):
            return entry
    return None


def names() -> list[str]:
    """Every command word, for completion."""
    return sorted({w for c in COMMANDS for w in (c.name, c.alias)})


async def run(session: ChatSession, line: str) -> None:
    word, _, rest = line.partition(" ")
    entry = find(word)
    if entry is None:
        raise UsageError(
            "unknown command",
            user_message=N_("Unknown command /{word}; /help lists them."),
            word=word,
        )
    await entry.handler(session, rest.strip())


def _need(argument: str, usage: str) -> str:
    if not argument:
        raise UsageError("missing argument", user_message=N_("Usage: {usage}"), usage=usage)
    return argument


def _switch(argument: str) -> bool:
    words = {"on": True, "oui": True, "yes": True, "off": False, "non": False, "no": False}
    value = words.get(argument.casefold())
    if value is None:
        raise UsageError("on or off", user_message=N_("Answer on or off."))
    return value


# --- help and moving around -----------------------------------------------------------------


@command("help", "aide", "/help", N_("list the commands"))
async def _help(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Commands")):
        session.say(N_("Commands (Tab completes; Ctrl-N / Ctrl-P change room; Ctrl-Q quits):"))
        for entry in COMMANDS:
            session.say(
                "  {usage:<34} {help} (/{alias})",
                usage=entry.usage,
                help=session.tr(entry.help),
                alias=entry.alias,
            )


@command("go", "aller", "/go ROOM", N_("open a room by name"))
async def _go(session: ChatSession, argument: str) -> None:
    name = _need(argument, "/go ROOM").casefold()
    for entry in session.snapshot.rooms:
        if entry.name.casefold() == name or entry.room.hex().startswith(name):
            await session.select(entry.room)
            return
    matches = [e for e in session.snapshot.rooms if name in e.name.casefold()]
    if len(matches) == 1:
        await session.select(matches[0].room)
        return
    raise UsageError("no such room", user_message=N_("No room named '{name}'."), name=argument)


@command("quit", "quitter", "/quit", N_("leave the app (the node goes on if it was running)"))
async def _quit(session: ChatSession, argument: str) -> None:
    session.quit_requested = True
    session.on_change()


# --- rooms --------------------------------------------------------------------------------


@command("create", "salon", "/create NAME", N_("create a private room"))
async def _create(session: ChatSession, argument: str) -> None:
    name = _need(argument, "/create NAME")
    done = await session.db.run(session.api.create, name)
    session.report(done)
    await session.refresh(full=True)
    await session.select(done.room)
    session.say(N_("Room '{name}' created: private, you are its admin."), name=name)


@command("dm", "mp", "/dm PERSON", N_("start a direct conversation"))
async def _dm(session: ChatSession, argument: str) -> None:
    who = _need(argument, "/dm PERSON")
    rooms = session.api
    account = await session.db.run(rooms.account_of, who)
    done = await session.db.run(rooms.direct, account)
    session.report(done)
    await session.refresh(full=True)
    await session.select(done.room)


@command("forums", "forums", "/forums [WORDS]", N_("browse the public forums"))
async def _forums(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Public forums")):
        found = await session.db.run(session.api.public_rooms, argument)
        if not found:
            session.say(N_("No public forum found."))
        for summary in found:
            session.say(
                "  {name} — {topic} ({members} member(s)) · /join {name}",
                name=summary.name,
                topic=summary.topic or "…",
                members=summary.members,
            )


@command("join", "rejoindre", "/join ROOM", N_("join a public forum or accept an invitation"))
async def _join(session: ChatSession, argument: str) -> None:
    rooms = session.api
    target = await session.db.run(rooms.find, _need(argument, "/join ROOM"))
    done = await session.db.run(rooms.join, target)
    session.report(done)
    if target in await session.db.run(rooms.store.rooms):
        await session.refresh(full=True)
        await session.select(target)
        session.say(N_("You joined the room."))
    else:
        session.say(N_("Asked to join: the room arrives from the first member's node met."))


@command("leave", "partir", "/leave", N_("leave the open room"))
async def _leave(session: ChatSession, argument: str) -> None:
    room = session.require_room()
    done = await session.db.run(session.api.leave, room)
    session.report(done)
    session.current = None
    session.say(N_("You left the room."))
    await session.refresh(full=True)


@command("invite", "inviter", "/invite PERSON", N_("invite by name, e-mail, or a future address"))
async def _invite(session: ChatSession, argument: str) -> None:
    room = session.require_room()
    rooms = session.api
    person = await session.db.run(rooms.person, _need(argument, "/invite PERSON"))
    if isinstance(person, str):
        done = await session.db.run(rooms.invite_email, room, person)
        session.say(N_("{email} is invited; they can join once enrolled."), email=person)
    else:
        done = await session.db.run(rooms.invite, room, person)
        session.say(N_("Invitation sent."))
    session.report(done)


async def _on_member(session: ChatSession, argument: str, action: str) -> None:
    room = session.require_room()
    rooms = session.api
    who, _, reason = _need(argument, f"/{action} PERSON").partition(" : ")
    account = await session.db.run(rooms.account_of, who.strip())
    if action == "kick":
        done = await session.db.run(rooms.kick, room, account, reason.strip())
        session.say(N_("Removed from the room."))
    elif action == "ban":
        done = await session.db.run(rooms.ban, room, account, reason.strip())
        session.say(N_("Banned from the room."))
    else:
        done = await session.db.run(rooms.unban, room, account)
        session.say(N_("Ban lifted."))
    session.report(done)


@command("kick", "exclure", "/kick PERSON [: REASON]", N_("remove someone from the room"))
async def _kick(session: ChatSession, argument: str) -> None:
    await _on_member(session, argument, "kick")


@command("ban", "bannir", "/ban PERSON [: REASON]", N_("ban someone from the room"))
async def _ban(session: ChatSession, argument: str) -> None:
    await _on_member(session, argument, "ban")


@command("unban", "debannir", "/unban PERSON", N_("lift a ban"))
async def _unban(session: ChatSession, argument: str) -> None:
    await _on_member(session, argument, "unban")


@command("members", "membres", "/members", N_("members, roles and externals of the room"))
async def _members(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Members")):
        room = session.require_room()
        found = await session.db.run(lambda: session.api.members(room, everyone=True))
        for m in found:
            if m.membership is Membership.LEAVE:
                continue
            session.say_text(member_line(session.tr, m))


async def _change(session: ChatSession, method: Callable[..., Done], *args: object) -> None:
    """A setting of the open room: ``method(room, *args)``, its warnings, one line."""
    room = session.require_room()
    session.report(await session.db.run(method, room, *args))
    session.say(N_("Room updated ({count} change(s))."), count=1)


@command("name", "nom", "/name TEXT", N_("rename the room"))
async def _name(session: ChatSession, argument: str) -> None:
    await _change(session, session.api.set_name, _need(argument, "/name TEXT"))


@command("topic", "sujet", "/topic TEXT", N_("set the room's topic"))
async def _topic(session: ChatSession, argument: str) -> None:
    await _change(session, session.api.set_topic, argument)


@command("public", "public", "/public on|off", N_("make the room a public forum, or private"))
async def _public(session: ChatSession, argument: str) -> None:
    room = session.require_room()
    public = _switch(_need(argument, "/public on|off"))

    async def apply() -> None:
        done = await session.db.run(session.api.set_public, room, public)
        session.report(done)
        session.say(N_("The room is now public.") if public else N_("The room is now private."))

    if not public:
        await apply()
        return
    session.ask(
        N_(
            "Make this room public? Every agent will be able to find it, join it and "
            "read what is said from then on. Type yes to confirm."
        ),
        apply,
    )


@command("externals", "externes", "/externals on|off", N_("allow externals in the room or not"))
async def _externals(session: ChatSession, argument: str) -> None:
    await _change(session, session.api.set_externals, _switch(_need(argument, "/externals on|off")))


@command("history", "historique", "/history shared|joined", N_("what new members can read"))
async def _history(session: ChatSession, argument: str) -> None:
    value = _need(argument, "/history shared|joined").casefold()
    if value not in ("shared", "joined", "partagé", "partage", "arrivée", "arrivee"):
        raise UsageError("shared or joined", user_message=N_("Answer shared or joined."))
    await _change(session, session.api.set_history, value in ("shared", "partagé", "partage"))


@command("role", "role", "/role PERSON admin|moderator|member", N_("give someone a role"))
async def _role(session: ChatSession, argument: str) -> None:
    room = session.require_room()
    who, _, name = _need(argument, "/role PERSON admin|moderator|member").rpartition(" ")
    roles = {"admin": Role.ADMIN, "moderator": Role.MODERATOR, "moderateur": Role.MODERATOR}
    roles |= {"modérateur": Role.MODERATOR, "member": Role.MEMBER, "membre": Role.MEMBER}
    new = roles.get(name.casefold())
    if new is None or not who:
        raise UsageError("bad role", user_message=N_("Usage: {usage}"), usage="/role …")
    account = await session.db.run(session.api.account_of, who)
    done = await session.db.run(session.api.set_role, room, account, new)
    session.report(done)
    session.say(N_("Role set: {role}."), role=session.tr(new.value))


@command("info", "info", "/info", N_("the room's settings"))
async def _info(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Room settings")):
        room = session.require_room()
        info = await session.db.run(session.api.info, room)
        kind = "direct" if info.direct else "public" if info.public else "private"
        session.say(
            "{name} ({kind}) — {room}", name=info.name, kind=session.tr(kind), room=room.hex()
        )
        if info.topic:
            session.say(N_("Topic: {topic}"), topic=info.topic)
        session.say(
            N_("Externals allowed: {allowed}; history for new members: {history}"),
            allowed=session.tr("yes" if info.allow_externals else "no"),
            history=session.tr(info.history),
        )
        session.say(N_("Your role: {role}."), role=session.tr(info.role.value))


# --- messages -------------------------------------------------------------------------------


@command("reply", "repondre", "/reply N TEXT", N_("answer message #N"))
async def _reply(session: ChatSession, argument: str) -> None:
    number, _, text = _need(argument, "/reply N TEXT").partition(" ")
    item = session.item(number)
    await session.send(_need(text, "/reply N TEXT"), reply_to=item.id)


@command("edit", "modifier", "/edit N TEXT", N_("correct your message #N"))
async def _edit(session: ChatSession, argument: str) -> None:
    number, _, text = _need(argument, "/edit N TEXT").partition(" ")
    item = session.item(number)
    room = session.require_room()
    done = await session.db.run(
        session.api.edit, room, item.id, _need(text, "/edit N TEXT").encode()
    )
    session.report(done)


@command("react", "reagir", "/react N EMOJI", N_("react to message #N"))
async def _react(session: ChatSession, argument: str) -> None:
    number, _, key = _need(argument, "/react N EMOJI").partition(" ")
    item = session.item(number)
    room = session.require_room()
    done = await session.db.run(session.api.react, room, item.id, _need(key, "/react N EMOJI"))
    session.report(done)


@command("delete", "supprimer", "/delete N", N_("delete message #N (yours, or as moderator)"))
async def _delete(session: ChatSession, argument: str) -> None:
    item = session.item(_need(argument, "/delete N"))
    room = session.require_room()
    done = await session.db.run(session.api.redact, room, item.id, "")
    session.report(done)
    session.say(N_("Message deleted."))


@command("delivery", "recu", "/delivery N", N_("who received and read message #N"))
async def _delivery(session: ChatSession, argument: str) -> None:
    item = session.item(_need(argument, "/delivery N"))
    room = session.require_room()
    rooms = session.api
    counts = await session.db.run(rooms.delivery, room, item.id)
    session.say(
        N_("Message #{number}: received by {received}/{expected}, read by {read}."),
        number=item.number,
        received=len(counts.received),
        expected=len(counts.expected),
        read=len(counts.read),
    )


@command("search", "chercher", "/search WORDS", N_("search the history of your rooms"))
async def _search(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Search: {query}"), query=argument):
        query = _need(argument, "/search WORDS")
        found = await session.db.run(session.search, query)
        if not found:
            session.say(N_("Nothing found for '{query}'."), query=query)
        for room, sender, ts, text in found:
            session.say(
                "  [{room}] {time} {sender}: {text}",
                room=room,
                time=_clock(ts),
                sender=sender,
                text=text.replace("\n", " ")[:120],
            )


# --- files ----------------------------------------------------------------------------------


@command("file", "fichier", "/file PATH", N_("send a file (encrypted) to the room"))
async def _file(session: ChatSession, argument: str) -> None:
    path = Path(_unquote(_need(argument, "/file PATH"))).expanduser()
    await session.send_file(path)


@command("save", "enregistrer", "/save N [PATH]", N_("download file #N and save it"))
async def _save(session: ChatSession, argument: str) -> None:
    words = _words(_need(argument, "/save N [PATH]"))
    out = Path(words[1]).expanduser() if len(words) > 1 else None
    await session.download(words[0], out)


@command("files", "fichiers", "/files", N_("the files of the room"))
async def _files(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Files of the room")):
        cards = [i for i in session.snapshot.timeline if i.file is not None]
        if not cards:
            session.say(N_("No file in this room yet."))
        for item in cards:
            assert item.file is not None
            session.say(
                "  #{number} {name} ({size}, {mime}) — {state}",
                number=item.number,
                name=item.file.name,
                size=human_size(item.file.size),
                mime=item.file.mime,
                state=session.tr(item.file.state),
            )


# --- people and network -------------------------------------------------------------------


@command("who", "annuaire", "/who WORDS", N_("search the directory by name or e-mail"))
async def _who(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Directory")):
        found = await session.db.run(session.api.search_people, argument, 20)
        if not found:
            session.say(N_("Nobody found."))
        for entry in found:
            session.say(
                "  {name} <{email}>{external}",
                name=entry.name,
                email=entry.email,
                external=session.tr(" (external)") if entry.kind is Kind.EXTERNAL else "",
            )


@command("verify", "verifier", "/verify PERSON", N_("compare your safety number with someone"))
async def _verify(session: ChatSession, argument: str) -> None:
    name, email, number, account, devices = await session.db.run(
        session.verify, _need(argument, "/verify PERSON")
    )
    session.say(N_("Safety number with {name} <{email}>:"), name=name, email=email)
    session.say("  {number}", number=number)

    async def confirm() -> None:
        await session.db.run(session.mark_verified, account, devices)
        session.say(N_("{name} is verified on this device."), name=name)

    session.ask(
        N_("Read it aloud together. Is it identical on both screens? Type yes to confirm."),
        confirm,
    )


@command("peers", "pairs", "/peers", N_("who is reachable now, and how"))
async def _peers(session: ChatSession, argument: str) -> None:
    with session.panel(N_("Peers")):
        await session.refresh_node()
        if session.peers is None:
            session.say(N_("No node is running: start one with 'p2ptchap up'."), level="error")
            return
        if not session.peers:
            session.say(N_("No peer reachable."))
        for peer in session.peers:
            session.say(
                "  {name} <{email}> — {device} at {address}, found by {via}, since {since}",
                name=peer.get("name"),
                email=peer.get("email"),
                device=peer.get("device_name") or peer.get("device"),
                address=peer.get("address"),
                via=peer.get("via"),
                since=peer.get("since"),
            )


def _clock(ts: int) -> str:
    import time  # noqa: PLC0415

    return time.strftime("%d/%m %H:%M", time.localtime(ts / 1000))


def _unquote(text: str) -> str:
    words = _words(text)
    return words[0] if len(words) == 1 else text


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()

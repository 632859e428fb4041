"""The node-level rooms API on real SQLite files, with real certificates."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2ptchap.core import identity, revocation
from p2ptchap.core.errors import UsageError
from p2ptchap.core.events import Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.core.room import Rejection
from p2ptchap.i18n import Translator
from p2ptchap.rooms import (
    PUBLIC_WARNING,
    DirectoryRefused,
    Me,
    Role,
    RoomRefused,
    Rooms,
    RoomUnknown,
)
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from tests.conftest import NOW, Member, Org, make_org, make_rng


class World:
    """Several nodes, each with its own database; certificates known to all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.org: Org = make_org(make_rng(7))
        self.people: dict[str, Member] = {}
        self.nodes: dict[str, Rooms] = {}
        self.revocations: dict[str, RevocationSet] = {}

    def node(self, name: str, kind: Kind = Kind.AGENT, display: str = "") -> Rooms:
        member = self.org.member(f"{name}@interieur.gouv.fr", display or name.title(), kind=kind)
        self.people[name] = member
        db = Database(self.tmp_path / f"{name}.db")
        revocations = self.revocations.setdefault(name, RevocationSet())
        directory = DirectoryStore(db, self.org.trust, lambda: revocations, lambda: NOW)
        rooms = Rooms(
            db,
            directory,
            Me(member.account, _device(member), member.device_secret, member.exchange_secret),
            lambda: NOW,
        )
        self.nodes[name] = rooms
        for other in self.nodes.values():  # what gossip will do: everyone knows everyone
            for person in self.people.values():
                other.directory.add_account(person.certificate)
                other.directory.add_device(person.device)
        return rooms

    def sync(self, *names: str) -> None:
        """Exchange every room's events between the named nodes (issue 5 does it live)."""
        nodes = [self.nodes[n] for n in names]
        for source in nodes:
            for room in source.store.rooms():
                raws = [e.raw for e in source.store.events(room)]
                for target in nodes:
                    if target is not source:
                        target.store.add(room, raws)

    def key(self, name: str) -> AccountKey:
        return self.people[name].account.account_key


def _device(member: Member) -> identity.DeviceCertificate:
    return identity.parse_device_certificate(member.device)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_new_room_is_private_and_we_are_its_admin(world: World) -> None:
    alice = world.node("alice")
    done = alice.create("Cellule de crise", topic="Tempête")
    info = alice.info(done.room)
    assert (info.name, info.topic, info.public, info.direct) == (
        "Cellule de crise",
        "Tempête",
        False,
        False,
    )
    assert info.role is Role.ADMIN and info.membership is Membership.JOIN
    assert done.warnings == ()
    assert alice.public_rooms() == []  # a private room is never listed
    assert [m.email for m in alice.members(done.room)] == ["alice@interieur.gouv.fr"]
    assert alice.find("cellule de crise") == done.room
    assert alice.find(done.room.hex()[:8]) == done.room


def test_public_rooms_warn_are_listed_and_withdrawn(world: World) -> None:
    alice = world.node("alice")
    done = alice.create("Forum logistique", topic="Groupes électrogènes", public=True)
    assert done.warnings == (PUBLIC_WARNING,)
    assert "accessible à tous les agents" in Translator("fr")(done.warnings[0])
    assert [s.name for s in alice.public_rooms("electrogenes")] == ["Forum logistique"]
    assert alice.public_rooms("inconnu") == []
    alice.set_public(done.room, False)
    assert alice.public_rooms() == []
    again = alice.set_public(done.room, True)
    assert again.warnings == (PUBLIC_WARNING,) and len(alice.public_rooms()) == 1


def test_invite_join_post_and_roles_across_two_nodes(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = alice.create("Salon").room
    alice.invite(room, world.key("bruno"))
    world.sync("alice", "bruno")
    assert bruno.info(room).membership is Membership.INVITE
    bruno.join(room)
    bruno.send(room, b"bonjour")
    world.sync("alice", "bruno")
    assert [(m.name, m.role) for m in alice.members(room)] == [
        ("Alice", Role.ADMIN),
        ("Bruno", Role.MEMBER),
    ]
    assert [(m.name, m.body) for m in alice.messages(room)] == [("Bruno", b"bonjour")]
    with pytest.raises(RoomRefused) as info:
        bruno.kick(room, world.key("alice"))
    assert info.value.reason is Rejection.INSUFFICIENT_POWER
    assert "role" in info.value.render()
    alice.set_role(room, world.key("bruno"), Role.MODERATOR)
    assert alice.members(room)[1].role is Role.MODERATOR


def test_a_refused_action_stores_nothing(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = alice.create("Salon").room
    world.sync("alice", "bruno")
    before = len(bruno.store.events(room))
    for action in (
        lambda: bruno.send(room, b"intrus"),
        lambda: bruno.join(room),
        lambda: bruno.set_name(room, "pris"),
    ):
        with pytest.raises(RoomRefused):
            action()
    assert len(bruno.store.events(room)) == before
    bruno.store.forget()
    assert bruno.store.live(room).resolution.rejected == {}


def test_kick_ban_and_no_return(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = alice.create("Forum", public=True).room
    world.sync("alice", "bruno")
    bruno.join(room)
    world.sync("alice", "bruno")
    alice.kick(room, world.key("bruno"), "hors sujet")
    world.sync("alice", "bruno")
    assert bruno.info(room).membership is Membership.LEAVE
    bruno.join(room)  # public: a kicked agent may come back
    world.sync("alice", "bruno")
    alice.ban(room, world.key("bruno"))
    world.sync("alice", "bruno")
    with pytest.raises(RoomRefused) as info:
        bruno.join(room)
    assert info.value.reason is Rejection.BANNED
    alice.unban(room, world.key("bruno"))
    world.sync("alice", "bruno")
    bruno.join(room)
    with pytest.raises(RoomRefused):
        alice.unban(room, world.key("bruno"))  # not banned any more


def test_invite_by_email_of_someone_not_enrolled_yet(world: World) -> None:
    alice = world.node("alice")
    room = alice.create("Salon").room
    alice.invite_email(room, "Chloe@Interieur.gouv.fr")
    assert "chloe@interieur.gouv.fr" in alice.state(room).email_invites
    chloe = world.node("chloe")  # enrols afterwards
    world.sync("alice", "chloe")
    chloe.join(room)
    world.sync("alice", "chloe")
    assert {m.email for m in alice.members(room)} == {
        "alice@interieur.gouv.fr",
        "chloe@interieur.gouv.fr",
    }
    with pytest.raises(UsageError) as info:
        alice.invite_email(room, "pas une adresse")
    assert "valid e-mail" in info.value.render()


def test_an_address_already_known_is_invited_as_its_account(world: World) -> None:
    alice, world_bruno = world.node("alice"), world.node("bruno")
    room = alice.create("Salon").room
    alice.invite_email(room, "bruno@interieur.gouv.fr")
    assert alice.state(room).membership[world.key("bruno")] is Membership.INVITE
    assert world_bruno.directory.by_email("bruno@interieur.gouv.fr")


def test_externals_are_kept_to_rooms_that_allow_them(world: World) -> None:
    alice = world.node("alice")
    eve = world.node("eve", Kind.EXTERNAL)
    closed = alice.create("Interne").room
    with pytest.raises(RoomRefused) as info:
        alice.invite(closed, world.key("eve"))
    assert info.value.reason is Rejection.EXTERNALS_NOT_ALLOWED
    opened = alice.create("Avec partenaires", allow_externals=True).room
    alice.invite(opened, world.key("eve"))
    world.sync("alice", "eve")
    eve.join(opened)
    with pytest.raises(RoomRefused):
        eve.set_public(opened, True)
    with pytest.raises(DirectoryRefused):
        eve.search_people("alice")
    with pytest.raises(DirectoryRefused):
        eve.public_rooms()
    assert eve.account_by_email("alice@interieur.gouv.fr") is None  # no directory oracle
    own = eve.create("Externe").room
    assert eve.info(own).allow_externals  # an external's room lets its creator in
    with pytest.raises(RoomRefused):
        eve.set_public(own, True)


def test_direct_conversations(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    eve = world.node("eve", Kind.EXTERNAL)
    dm = alice.direct(world.key("bruno"))
    assert alice.info(dm.room).direct
    assert alice.direct(world.key("bruno")).room == dm.room  # the same one again
    world.sync("alice", "bruno")
    bruno.join(dm.room)
    with pytest.raises(RoomRefused) as info:
        alice.invite(dm.room, world.key("eve"))
    assert info.value.reason in {Rejection.DIRECT_ROOM, Rejection.EXTERNALS_NOT_ALLOWED}
    with pytest.raises(RoomRefused) as info:
        eve.direct(world.key("alice"))
    assert info.value.reason is Rejection.DIRECT_ROOM
    with pytest.raises(RoomRefused):
        alice.set_public(dm.room, True)
    agent_to_external = alice.direct(world.key("eve"))
    world.sync("alice", "eve")
    eve.join(agent_to_external.room)


def test_moderators_act_on_members_not_on_admins(world: World) -> None:
    alice, bruno, carole = world.node("alice"), world.node("bruno"), world.node("carole")
    room = alice.create("Forum", public=True).room
    world.sync("alice", "bruno", "carole")
    bruno.join(room)
    carole.join(room)
    world.sync("alice", "bruno", "carole")
    alice.set_role(room, world.key("bruno"), Role.MODERATOR)
    world.sync("alice", "bruno", "carole")
    with pytest.raises(RoomRefused):
        bruno.kick(room, world.key("alice"))
    with pytest.raises(RoomRefused):
        bruno.set_role(room, world.key("carole"), Role.ADMIN)  # more than he holds
    bruno.kick(room, world.key("carole"))
    world.sync("alice", "bruno", "carole")
    assert alice.state(room).membership[world.key("carole")] is Membership.LEAVE


def test_people_search_ignores_case_and_accents(world: World) -> None:
    alice = world.node("alice")
    world.node("helene", display="Hélène Dupont")
    found = alice.search_people("helene dupont")
    assert [e.name for e in found] == ["Hélène Dupont"]
    assert alice.search_people("HÉLÈNE@interieur.gouv.fr")[0].name == "Hélène Dupont"


def test_reactions_edits_and_redactions(world: World) -> None:
    alice = world.node("alice")
    room = alice.create("Salon").room
    first = alice.send(room, b"premier").events[0]
    alice.react(room, first, "👍")
    alice.edit(room, first, "premier (corrigé)".encode())
    second = alice.send(room, b"second", reply_to=first).events[0]
    alice.redact(room, second, "erreur")
    # The edit replaces the body shown; the redacted message is gone.
    assert [m.body for m in alice.messages(room)] == ["premier (corrigé)".encode()]
    with pytest.raises(RoomRefused):
        alice.edit(room, b"\x00" * 32, b"x")


def test_rooms_survive_reopening_and_other_processes_see_changes(world: World) -> None:
    alice = world.node("alice")
    room = alice.create("Salon").room
    other = Rooms(
        Database(alice.db.path), alice.directory, alice.me, lambda: NOW
    )  # e.g. the CLI next to a running node
    other.send(room, b"depuis la ligne de commande")
    assert [m.body for m in alice.messages(room)] == [b"depuis la ligne de commande"]
    alice.db.close()
    db = Database(alice.db.path)
    revocations = world.revocations["alice"]
    directory = DirectoryStore(db, world.org.trust, lambda: revocations, lambda: NOW)
    again = Rooms(db, directory, alice.me, lambda: NOW)
    assert again.info(room).name == "Salon"
    with pytest.raises(RoomUnknown):
        again.find("nulle part")


def test_a_revocation_reaches_stored_rooms_even_after_a_restart(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = alice.create("Forum", public=True).room
    world.sync("alice", "bruno")
    bruno.join(room)
    bruno.send(room, b"avant")
    world.sync("alice", "bruno")
    assert len(alice.members(room)) == 2
    member = world.people["bruno"]
    device = identity.parse_device_certificate(member.device).device_key
    record = revocation.revoke_device(member.secret, member.certificate, device, NOW)
    world.revocations["alice"].add(record, world.org.trust)
    assert [m.email for m in alice.members(room)] == ["alice@interieur.gouv.fr"]
    alice.db.close()
    db = Database(alice.db.path)
    revocations = world.revocations["alice"]
    directory = DirectoryStore(db, world.org.trust, lambda: revocations, lambda: NOW)
    again = Rooms(db, directory, alice.me, lambda: NOW)
    assert [m.email for m in again.members(room)] == ["alice@interieur.gouv.fr"]
    assert again.messages(room) == []


def test_two_processes_of_one_device_take_turns(world: World) -> None:
    alice = world.node("alice")
    room = alice.create("Salon").room
    other = Rooms(Database(alice.db.path), alice.directory, alice.me, lambda: NOW)
    alice.send(room, b"un")  # alice's process has the room in memory
    other.send(room, b"deux")  # the CLI, next to it, writes
    alice.send(room, b"trois")  # chains after the CLI's event: no fork
    fresh = Rooms(Database(alice.db.path), alice.directory, alice.me, lambda: NOW)
    assert [m.body for m in fresh.messages(room)] == [b"un", b"deux", b"trois"]
    assert all(s == "accepted" for s, _ in fresh.store.statuses(room).values())
    assert fresh.store.live(room).full == 0

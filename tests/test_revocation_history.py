"""Revoking a device or an account keeps the room history others built on.

Through the real stack (:class:`tests.test_rooms.World`: SQLite files, real
certificates and revocation records): Alice creates a room, Bruno joins,
they talk; then Bruno's node learns that Alice's laptop (or her whole
account) is revoked.  What Bruno's node had built on keeps counting — the
room, its name, its members, its messages — while what Alice's key writes
afterwards, which no valid device builds on, does not
(``docs/protocol.md`` §10, ``docs/threat-model.md``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2ptchap.core import revocation
from p2ptchap.core.events import Membership
from p2ptchap.core.room import Rejection
from p2ptchap.rooms import RoomRefused, Rooms
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from tests.conftest import NOW
from tests.test_rooms import World, _device

REVOKED = ("rejected", Rejection.REVOKED_SENDER.value)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _room(world: World) -> bytes:
    """Alice's room, Bruno in it, messages both ways; Bruno's node saw everything."""
    alice, bruno = world.nodes["alice"], world.nodes["bruno"]
    room = alice.create("Cellule de crise", topic="Crue de la Loire").room
    alice.invite(room, world.key("bruno"))
    world.sync("alice", "bruno")
    bruno.join(room)
    bruno.send(room, b"bonjour")
    world.sync("alice", "bruno")
    alice.send(room, b"point de situation a 18 h")
    world.sync("alice", "bruno")
    bruno.send(room, b"bien recu")
    world.sync("alice", "bruno")
    return room


def _seen(node: Rooms, room: bytes) -> tuple[object, ...]:
    """What the user of ``node`` sees of ``room``, and every event's status."""
    info = node.info(room)
    members = sorted(
        (bytes(m.account), m.membership, m.level) for m in node.members(room, everyone=True)
    )
    messages = [(m.id, m.sender, m.body) for m in node.messages(room)]
    return info.name, info.topic, info.members, members, messages, node.store.statuses(room)


def _revoke_device(world: World, node: str, name: str) -> None:
    member = world.people[name]
    record = revocation.revoke_device(
        member.secret, member.certificate, _device(member).device_key, NOW
    )
    assert world.revocations[node].add(record, world.org.trust)


def _revoke_account(world: World, node: str, name: str) -> None:
    email = world.people[name].account.email
    record = revocation.revoke_email(world.org.secret, email, NOW + 1)
    assert world.revocations[node].add(record, world.org.trust)


def test_revoking_the_creators_laptop_keeps_the_room_and_stops_its_new_events(
    world: World,
) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    carole = world.node("carole")
    room = _room(world)
    before = _seen(bruno, room)
    bodies = [b"bonjour", b"point de situation a 18 h", b"bien recu"]
    assert [m.body for m in bruno.messages(room)] == bodies
    _revoke_device(world, "bruno", "alice")
    laptop = _device(world.people["alice"]).device_key
    assert bruno.directory.sender(world.key("alice"), laptop) is None  # revoked, for sure
    assert _seen(bruno, room) == before
    assert bruno.info(room).name == "Cellule de crise" and bruno.info(room).members == 2
    # The same from the database, in another process (statuses resolved anew).
    other = Rooms(Database(bruno.db.path), bruno.directory, bruno.me, lambda: NOW)
    assert _seen(other, room) == before
    # The stolen laptop (its node never heard of the revocation) writes on.
    stolen = alice.send(room, b"message du voleur").events[-1]
    world.sync("alice", "bruno")
    assert bruno.store.live(room).status(stolen) == REVOKED
    assert [m.body for m in bruno.messages(room)] == bodies
    # Bruno's node does not build on it.
    reply = bruno.send(room, b"la suite").events[-1]
    assert stolen not in bruno.store.live(room).events[reply].prev
    assert bruno.store.live(room).status(stolen) == REVOKED
    # A member whose node had not heard of the revocation builds on it: then
    # it counts (the residual risk docs/threat-model.md describes).
    alice.invite(room, world.key("carole"))
    world.sync("alice", "carole")
    carole.join(room)
    world.sync("carole", "bruno")
    assert bruno.store.live(room).status(stolen) == ("accepted", None)


def test_revoking_an_account_keeps_its_history_and_invitations(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    world.node("carole")
    world.node("dora")
    room = _room(world)
    bruno.invite(room, world.key("dora"))  # before Dora's revocation
    world.sync("alice", "bruno")
    before = _seen(bruno, room)
    for name in ("alice", "carole", "dora"):
        _revoke_account(world, "bruno", name)
    assert bruno.directory.people(world.key("alice")) is None
    assert _seen(bruno, room) == before
    state = bruno.state(room)
    assert state.creator == world.key("alice") and state.is_member(world.key("alice"))
    assert state.membership[world.key("dora")] is Membership.INVITE  # it still stands
    # Alice's node, unaware, writes on: nothing of it counts on Bruno's.
    stolen = alice.set_name(room, "Salon du voleur").events[-1]
    world.sync("alice", "bruno")
    assert bruno.store.live(room).status(stolen) == REVOKED
    assert bruno.info(room).name == "Cellule de crise"
    # Bruno's node will not invite a revoked account, though the rules would
    # keep such an invitation if it had been made before the revocation.
    with pytest.raises(RoomRefused) as refused:
        bruno.invite(room, world.key("carole"))
    assert refused.value.reason is Rejection.UNKNOWN_INVITEE
    assert world.key("carole") not in bruno.state(room).membership


def test_a_node_that_learns_the_revocation_before_the_certificates_keeps_the_room(
    world: World,
) -> None:
    """Dora's node is set up after Alice's laptop was revoked: it gets the
    revocation first, then the (revoked) certificates, then the room.  The
    certificates are kept (the look-ups leave them out), so what was built
    on Alice's events still counts there as everywhere."""
    world.node("alice")
    bruno = world.node("bruno")
    room = _room(world)
    _revoke_device(world, "bruno", "alice")
    member = world.people["alice"]
    record = revocation.revoke_device(
        member.secret, member.certificate, _device(member).device_key, NOW
    )
    dora = world.node("dora")  # knows every certificate...
    dora.directory.db.close()
    revocations = world.revocations["dora"]
    assert revocations.add(record, world.org.trust)  # ... but learns the revocation first:
    db = Database(world.tmp_path / "dora-again.db")
    directory = DirectoryStore(db, world.org.trust, lambda: revocations, lambda: NOW)
    for person in world.people.values():
        directory.add_account(person.certificate)
        directory.add_device(person.device)
    assert directory.account(world.key("alice")) is not None  # her account is not revoked
    assert directory.sender(world.key("alice"), _device(member).device_key) is None
    fresh = Rooms(db, directory, dora.me, lambda: NOW)
    fresh.store.add(room, [e.raw for e in bruno.store.events(room)])
    assert fresh.info(room).name == "Cellule de crise"
    assert fresh.store.statuses(room) == bruno.store.statuses(room)

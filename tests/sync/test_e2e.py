"""End-to-end encryption through real replication (in-memory network, SQLite files).

What the issue asks us to show: a removed member who keeps every byte sent
to it reads nothing sent after its removal; nothing on the wire or in a
database holds a message in clear; ``joined`` and ``shared`` history;
undecryptable messages resolve by themselves when the owner comes back; a
new device of a member catches up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from p2ptchap.core import identity, peerwire, sync
from p2ptchap.core.events import EventType, parse_event
from p2ptchap.replication import Replicator, RevocationBook
from p2ptchap.rooms import Me, Rooms
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from tests.conftest import NOW, Org, make_rng
from tests.sync.netcell import SyncCell, SyncNode


@pytest.fixture
def cell(tmp_path: Path, org: Org) -> SyncCell:
    return SyncCell(tmp_path, org)


async def _known(node: SyncNode, other: SyncNode) -> None:
    for _ in range(100):  # certificates and prekeys arrive by trust gossip
        if node.rooms.directory.account(other.account.account_key) is not None:
            return
        await trio.sleep(0.2)
    raise AssertionError(f"{node.name} never learnt {other.name}")


async def _room(
    cell: SyncCell, creator: SyncNode, *joiners: SyncNode, shared: bool = False
) -> bytes:
    room = creator.rooms.create("Salon").room
    if shared:
        creator.rooms.set_history(room, True)
    for joiner in joiners:
        await _known(creator, joiner)
        creator.rooms.invite(room, joiner.account.account_key)
    for joiner in joiners:
        await _holds(joiner, room)
        joiner.rooms.join(room)
    await trio.sleep(5)
    return room


async def _holds(node: SyncNode, room: bytes) -> None:
    """Wait until ``node`` holds ``room`` (an invitation, or the room, has arrived)."""
    for _ in range(100):
        if room in node.rooms.store.rooms():
            return
        await trio.sleep(0.2)
    raise AssertionError(f"{node.name} never got the room")


async def _meshed(cell: SyncCell, *names: str) -> tuple[list[SyncNode], bytes]:
    """Nodes linked to each other, all members of a room the first one made."""
    nodes = await cell.add_many(*names)
    cell.net.mesh()
    return nodes, await _room(cell, *nodes)


def _bodies(node: SyncNode, room: bytes) -> list[bytes | None]:
    return [m.body for m in node.rooms.messages(room, limit=1000)]


def _wire_bytes(cell: SyncCell, target: str | None = None) -> bytes:
    return b"".join(s.data for s in cell.net.sent if target is None or s.target == target)


async def test_members_read_each_other_and_nothing_travels_in_clear(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b, c), room = await _meshed(cell, "a", "b", "c")
        a.rooms.send(room, b"SECRET-alpha")
        b.rooms.send(room, b"SECRET-bravo")
        c.rooms.send(room, b"SECRET-charlie")
        await trio.sleep(5)
        for node in (a, b, c):
            assert sorted(b for b in _bodies(node, room) if b) == [
                b"SECRET-alpha",
                b"SECRET-bravo",
                b"SECRET-charlie",
            ]
    assert b"SECRET" not in _wire_bytes(cell)
    # Nor in any database file, WAL included: decrypted contents are sealed.
    for path in cell.tmp_path.iterdir():
        assert b"SECRET" not in path.read_bytes(), path.name


async def test_a_removed_member_keeping_every_byte_reads_nothing_sent_after(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b, eve), room = await _meshed(cell, "a", "b", "eve")
        a.rooms.send(room, b"before the kick")
        await trio.sleep(3)
        assert _bodies(eve, room) == [b"before the kick"]
        a.rooms.kick(room, eve.account.account_key)
        await trio.sleep(3)
        sent_before = len(cell.net.sent)
        a.rooms.send(room, b"AFTER-1")
        b.rooms.send(room, b"AFTER-2")
        await trio.sleep(5)
        assert sorted(x for x in _bodies(b, room) if x) == [
            b"AFTER-1",
            b"AFTER-2",
            b"before the kick",
        ]
        # Eve's node keeps running and stores what it gets; it reads nothing new.
        assert _bodies(eve, room) == [b"before the kick"]
    # Everything any node sent Eve after the kick, given to Eve's own keys.
    eve_device = bytes(eve.verified.device.device_key)
    for sent in cell.net.sent[sent_before:]:
        if sent.target != "eve":
            continue
        assert b"AFTER" not in sent.data
        message = peerwire.decode(sent.data)
        assert isinstance(message, peerwire.Other)
        if message.type != "events":
            continue
        decoded = sync.decode(message.body)
        assert isinstance(decoded, sync.Events)
        for raw in decoded.events:
            event = parse_event(raw)
            if event.type is EventType.ROOM_KEY:
                shares = event.content["shares"]
                assert isinstance(shares, dict)
                assert eve_device not in shares, "a key was shared with the removed member"
            if event.type is EventType.MESSAGE and event.seq > 0:
                assert eve.rooms.crypto.decrypt(event) is None


async def test_joined_history_hides_the_past_and_shared_history_gives_it(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, late, later = await cell.add_many("a", "b", "late", "later")
        cell.net.mesh()
        joined = await _room(cell, a, b)
        shared = await _room(cell, a, b, shared=True)
        for room in (joined, shared):
            a.rooms.send(room, b"old from a")
            b.rooms.send(room, b"old from b")
        await trio.sleep(5)
        for room, newcomer in ((joined, late), (shared, later)):
            await _known(a, newcomer)
            a.rooms.invite(room, newcomer.account.account_key)
            await _holds(newcomer, room)
            newcomer.rooms.join(room)
        await trio.sleep(5)
        for room in (joined, shared):
            a.rooms.send(room, b"new from a")
        await trio.sleep(10)
        # joined: the events are there, the old keys are not.
        assert _bodies(late, joined) == [None, None, b"new from a"]
        # shared: a's invitation came with a bundle of the past sessions (a's and b's).
        assert _bodies(later, shared) == [b"old from a", b"old from b", b"new from a"]


async def _new_device(cell: SyncCell, of: SyncNode, name: str) -> SyncNode:
    """A second device of ``of``'s account, on the network (linked to nobody yet)."""
    secret, exchange, raw = of.member.new_device(name, make_rng(len(cell.nodes) + 90))
    device = identity.parse_device_certificate(raw)
    db = Database(cell.tmp_path / f"{name}.db")
    book = RevocationBook(cell.org.trust)
    directory = DirectoryStore(db, cell.org.trust, book.revocations, lambda: NOW)
    clock = lambda: NOW + trio.current_time()  # noqa: E731
    rooms = Rooms(db, directory, Me(of.account, device, secret, exchange), clock, make_rng(98))
    replicator = Replicator(rooms, book, settings=cell.settings)
    node = SyncNode(
        name, of.member, rooms, replicator, book, identity.VerifiedDevice(of.account, device)
    )
    cell.nodes[name] = node
    await cell.net.add(name, replicator, node.verified)
    return node


async def test_undecryptable_messages_resolve_when_the_owner_comes_back(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b), room = await _meshed(cell, "a", "b")
        # b's new laptop meets only b; a, who never heard of it, posts.
        b2 = await _new_device(cell, b, "b2")
        cell.net.connect("b", "b2")
        await _holds(b2, room)
        a.rooms.send(room, b"while the laptop was away from a")
        await trio.sleep(10)
        [waiting] = b2.rooms.messages(room)
        assert (waiting.body, waiting.waiting) == (None, "no-key")
        # Only the owner may give the key: b, though it holds it, is not asked.
        assert b2.replicator.counters["key-requests-sent"] == 0
        cell.net.connect("a", "b2")  # the owner comes within reach
        await trio.sleep(10)
        assert _bodies(b2, room) == [b"while the laptop was away from a"]
        assert a.replicator.counters["key-requests-answered"] >= 1


async def test_a_join_cannot_claim_messages_its_author_had_not_seen_it_before(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    """With ``joined`` history, a message sent before its author saw the join
    stays unreadable to the joiner, even asked for: the owner judges by its
    own view, not by the parents the joiner chose for its join."""
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.mesh()
        room = await _room(cell, a, b)
        await _known(a, c)
        a.rooms.invite(room, c.account.account_key)
        await _holds(c, room)
        cell.net.partition({"a"}, {"b", "c"})
        c.rooms.join(room)
        a.rooms.send(room, b"while c was only invited, as a knew it")
        await trio.sleep(2)
        cell.net.heal()
        await trio.sleep(15)
        a.rooms.send(room, b"after a saw the join")
        await trio.sleep(10)
        assert _bodies(c, room) == [None, b"after a saw the join"]


async def test_a_new_device_of_a_member_catches_up(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b), room = await _meshed(cell, "a", "b")
        a.rooms.send(room, b"before the new laptop")
        await trio.sleep(3)
        b2 = await _new_device(cell, b, "b2")
        cell.net.mesh()
        await _holds(b2, room)
        await trio.sleep(5)
        a.rooms.send(room, b"after the new laptop")
        await trio.sleep(10)
        # The new message was shared with the new device; the older one came
        # on request, since its account was entitled to it.
        assert _bodies(b2, room) == [b"before the new laptop", b"after the new laptop"]

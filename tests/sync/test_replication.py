"""Replication on the in-memory network: rooms, trust data, receipts, access."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from p2ptchap.core import codec, revocation, sync
from p2ptchap.core.events import EventType, Membership, make_event
from p2ptchap.core.identity import Kind, VerifiedDevice
from p2ptchap.net.connection import ConnectionFailed
from p2ptchap.rooms import JOIN_REQUESTED, Role
from tests.conftest import NOW, Org
from tests.sync.netcell import SyncCell, SyncNode


@pytest.fixture
def cell(tmp_path: Path, org: Org) -> SyncCell:
    return SyncCell(tmp_path, org)


async def test_two_nodes_learn_each_other_and_share_a_room(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        alice, bob = await cell.add_many("alice", "bob")
        cell.net.mesh()
        await trio.sleep(2)
        # Trust gossip: each directory now holds the other's certificates.
        assert alice.rooms.directory.account(bob.account.account_key) is not None
        done = alice.rooms.create("Cellule de crise")
        alice.rooms.invite(done.room, bob.account.account_key)
        await trio.sleep(2)
        assert bob.rooms.info(done.room).membership is Membership.INVITE
        bob.rooms.join(done.room)
        # Under the default history rule, bob reads what alice sends once
        # alice has seen him join (protocol §14).
        await trio.sleep(2)
        assert alice.rooms.info(done.room).members == 2
        for n in range(5):
            alice.rooms.send(done.room, f"message {n}".encode())
        await trio.sleep(2)
        assert [m.body for m in bob.rooms.messages(done.room)] == [
            f"message {n}".encode() for n in range(5)
        ]
        assert alice.rooms.state(done.room) == bob.rooms.state(done.room)


async def _room_with(
    cell: SyncCell, creator: SyncNode, *joiners: SyncNode, wait: float = 3
) -> bytes:
    """A private room of ``creator`` that every one of ``joiners`` has joined."""
    room = creator.rooms.create("Salon").room
    for joiner in joiners:
        for _ in range(50):  # its certificate arrives by trust gossip
            if creator.rooms.directory.account(joiner.account.account_key) is not None:
                break
            await trio.sleep(0.2)
        creator.rooms.invite(room, joiner.account.account_key)
    for joiner in joiners:
        for _ in range(50):
            if room in joiner.rooms.store.rooms():
                break
            await trio.sleep(0.2)
        joiner.rooms.join(room)
    await trio.sleep(wait)
    return room


async def _two_in_a_room(cell: SyncCell) -> tuple[SyncNode, SyncNode, bytes]:
    """Nodes ``a`` and ``b``, linked, both members of a private room of ``a``."""
    a, b = await cell.add_many("a", "b")
    cell.net.mesh()
    return a, b, await _room_with(cell, a, b)


async def test_store_and_forward_along_a_chain_whose_ends_never_meet(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.chain("a", "b", "c")
        await trio.sleep(3)
        # Trust data crosses B: A can invite C, whom it never met.
        assert a.rooms.directory.account(c.account.account_key) is not None
        room = await _room_with(cell, a, b, c)
        # A and C are never online at the same time: B carries both ways.
        cell.net.disconnect("b", "c")
        a.rooms.send(room, b"from A")
        await trio.sleep(2)
        cell.net.disconnect("a", "b")
        cell.net.connect("b", "c")
        await trio.sleep(2)
        c.rooms.send(room, b"from C while A is away")
        await trio.sleep(2)
        cell.net.disconnect("b", "c")
        cell.net.connect("a", "b")
        await trio.sleep(3)
        bodies = [m.body for m in a.rooms.messages(room)]
        assert bodies == [b"from A", b"from C while A is away"]
        assert [m.body for m in c.rooms.messages(room)] == [b"from A", b"from C while A is away"]
        assert not cell.net.linked("a", "c")
        assert not any({s.source, s.target} == {"a", "c"} for s in cell.net.sent)


async def test_each_device_acknowledges_and_the_sender_sees_who_has_its_message(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.mesh()
        room = await _room_with(cell, a, b, c)
        cell.net.isolate("c")
        sent = a.rooms.send(room, b"urgent").events[0]
        await trio.sleep(3)
        delivery = a.rooms.delivery(room, sent)
        assert len(delivery.expected) == 2
        assert delivery.received == (b.verified.device.device_key,)
        cell.net.connect("c", "b")  # C gets it through B; its receipt comes back through B
        await trio.sleep(3)
        delivery = a.rooms.delivery(room, sent)
        assert set(delivery.received) == {
            b.verified.device.device_key,
            c.verified.device.device_key,
        }
        assert delivery.read == ()  # read receipts are off unless the user turns them on


async def test_a_revocation_spreads_and_cuts_the_device_off(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.chain("a", "b", "c")
        room = await _room_with(cell, a, b, c)
        record = revocation.revoke_device(
            c.member.secret, c.member.certificate, c.verified.device.device_key, NOW
        )
        assert a.book.add_revocations([record]) == 1
        a.replicator.trust_changed(revoked=True)
        await trio.sleep(0.5)  # one gossip round: A → B
        assert len(b.book.revocations()) == 1
        # B no longer treats C as a peer: nothing more of the room goes to it.
        before = len([s for s in cell.net.sent if s.target == "c"])
        a.rooms.send(room, b"not for a revoked device")
        await trio.sleep(3)
        to_c = [s for s in cell.net.sent[:] if s.target == "c"][before:]
        assert not any(b"not for a revoked device" in s.data for s in to_c)


async def test_a_non_member_asking_for_a_private_room_is_refused(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b = await cell.add_many("a", "b")
        await cell.add("mallory")
        cell.net.mesh()
        room = await _room_with(cell, a, b)
        a.rooms.send(room, b"secret")
        await trio.sleep(2)
        # Mallory learnt the room id somehow and asks for everything.
        link = cell.net._links[("mallory", "a")]
        want = sync.Want(room, ((bytes(a.verified.device.device_key), 1, 100),), (room,))
        await link.send(sync.encode(want))
        await trio.sleep(1)
        answers = [
            sync.decode_bytes(s.data)
            for s in cell.net.sent
            if (s.source, s.target) == ("a", "mallory")
        ]
        carried = [e for m in answers if isinstance(m, sync.Events) for e in m.events]
        assert carried == []
        assert any(isinstance(m, sync.Refused) for m in answers)
        assert a.replicator.counters["refused-to-peer"] == 1


async def test_a_malformed_message_closes_the_link_and_nothing_is_stored(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        await cell.add("a")
        await cell.add("b")
        cell.net.connect("a", "b")
        await trio.sleep(1)
        await cell.net._links[("b", "a")].send(codec.encode({"t": "want", "room": b"short"}))
        await trio.sleep(1)
        assert cell.net.protocol_errors == 1
        assert not cell.net.linked("a", "b")
        assert cell.nodes["a"].replicator.counters["malformed-message"] == 1


async def test_joining_a_public_room_known_only_by_its_summary(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b = await cell.add_many("a", "b")
        external = await cell.add("e", Kind.EXTERNAL)
        cell.net.mesh()
        room = a.rooms.create("Forum", public=True).room
        await trio.sleep(3)
        # The summary spread with the trust data; the room itself did not.
        assert [s.room for s in b.rooms.public_rooms()] == [room]
        assert room not in b.rooms.store.rooms()
        assert external.rooms.directory.summaries() == []  # externals never get them
        done = b.rooms.join(b.rooms.find("Forum"))
        assert done.warnings == (JOIN_REQUESTED,) and done.events == ()
        await trio.sleep(3)
        assert b.rooms.info(room).membership is Membership.JOIN
        assert a.rooms.info(room).members == 2
        assert b.rooms.wanted() == []


async def test_a_forum_created_by_another_process_reaches_the_others_within_a_round(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        _, b = await cell.add_many("a", "b")
        cell.net.mesh()
        await trio.sleep(5)  # trust exchanged: both digests equal, nothing more sent
        room = cell.other_process("a").create("Forum", public=True).room
        # One round (1 s here) for a's node to notice; not the minute-long
        # re-exchange of differing digests.
        await trio.sleep(2.5)
        assert [s.room for s in b.rooms.public_rooms()] == [room]


# --- what a hostile or broken peer cannot do (from the security review) ----------------


async def test_a_member_who_left_then_is_banned_gets_the_ban_not_what_was_said_since(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, room = await _two_in_a_room(cell)
        b.rooms.leave(room)
        await trio.sleep(2)
        cell.net.disconnect("a", "b")
        a.rooms.send(room, b"after Bob left")
        a.rooms.ban(room, b.account.account_key)
        before = len(cell.net.sent)
        cell.net.connect("a", "b")
        await trio.sleep(5)
        to_b = [s.data for s in cell.net.sent[before:] if s.target == "b"]
        assert not any(b"after Bob left" in data for data in to_b)
        assert b.rooms.info(room).membership is not Membership.JOIN


async def test_an_external_learns_only_the_people_of_rooms_it_is_in(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b = await cell.add_many("a", "b")
        external = await cell.add("e", Kind.EXTERNAL)
        carol = await cell.add("carol")
        cell.net.connect("a", "b")
        cell.net.connect("a", "carol")
        await trio.sleep(2)
        # A room that allows externals, without the external in it.
        room = a.rooms.create("Ouvert", allow_externals=True).room
        a.rooms.invite(room, carol.account.account_key)
        await trio.sleep(1)
        carol.rooms.join(room)
        cell.net.connect("a", "e")
        await trio.sleep(3)
        known = external.rooms.directory
        assert known.account(carol.account.account_key) is None
        assert known.account(b.account.account_key) is None


async def test_an_unsolicited_reply_is_a_push_and_an_unknown_room_is_not_stored(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, mallory = await cell.add_many("a", "mallory")
        cell.net.connect("a", "mallory")
        await trio.sleep(1)
        fake = mallory.rooms.create("Piège").room
        raws = tuple(e.raw for e in mallory.rooms.store.events(fake))
        link = cell.net._links[("mallory", "a")]
        await link.send(sync.encode(sync.Events(fake, raws, True)))
        await trio.sleep(1)
        assert fake not in a.rooms.store.rooms()
        assert a.replicator.counters["unsolicited-unknown-room"] == 1


async def test_an_absurd_vector_costs_one_want_not_a_ping_pong(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        _, _, room = await _two_in_a_room(cell)
        link = cell.net._links[("b", "a")]
        lie = sync.Vector(room, {bytes(32): (10**12, bytes(32))}, (), bytes(16))
        before = len(cell.net.sent)
        await link.send(sync.encode(lie))
        await trio.sleep(10)
        wants = [
            s
            for s in cell.net.sent[before:]
            if s.source == "a" and isinstance(sync.decode_bytes(s.data), sync.Want)
        ]
        assert len(wants) <= 2  # one want, perhaps once more after the timeout


async def test_events_of_made_up_devices_do_not_grow_the_vector_nor_spread(
    cell: SyncCell, autojump_clock: trio.testing.MockClock, org: Org
) -> None:
    async with cell.running():
        a, b, mallory = await cell.add_many("a", "b", "mallory")
        cell.net.mesh()
        room = await _room_with(cell, a, b)
        # Events signed by devices nobody certified, pushed at A.
        strangers = [org.member(f"x{i}@interieur.gouv.fr", f"X{i}") for i in range(20)]
        junk = [
            make_event(
                m.device_secret,
                m.account.account_key,
                EventType.MESSAGE,
                {"session": bytes(32), "index": 0, "ct": b"junk" * 4},
                room=room,
                seq=1,
                prev_seq=None,
                prev=[room],
                depth=1,
                ts=0,
            ).raw
            for m in strangers
        ]
        # Pushed by a member (a stranger's pushes are cut shorter: see below).
        link = cell.net._links[("b", "a")]
        await link.send(sync.encode(sync.Events(room, tuple(junk), False)))
        await trio.sleep(3)
        assert a.replicator.counters["event-rejected:unknown-sender"] == 20
        vector = a.replicator._vector(room)
        assert len(vector.vector) == 2  # A's and B's devices only
        assert not any(b"junk" in s.data for s in cell.net.sent if s.target == "b")
        assert mallory is not None


async def test_a_strangers_push_into_a_private_room_is_dropped_but_its_own_join(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b, mallory = await cell.add_many("a", "b", "mallory")
        cell.net.mesh()
        room = await _room_with(cell, a, b)
        heads = a.rooms.store.live(room).heads()
        depth = 1 + max(h.depth for h in heads)

        def signed(kind: EventType, content: dict[codec.Key, codec.Value], key: str) -> bytes:
            return make_event(
                mallory.member.device_secret,
                mallory.account.account_key,
                kind,
                content,
                room=room,
                seq=1,
                prev_seq=None,
                prev=[h.id for h in heads],
                depth=depth,
                ts=NOW * 1000,
                state_key=key,
            ).raw

        junk = [signed(EventType.TOPIC, {"topic": f"junk {n}"}, "") for n in range(40)]
        mine = bytes(mallory.account.account_key).hex()
        own = signed(EventType.MEMBER, {"membership": "join"}, mine)
        before = len(a.rooms.store.live(room).events)
        link = cell.net._links[("mallory", "a")]
        await link.send(sync.encode(sync.Events(room, (*junk, own), False)))
        await trio.sleep(3)
        assert a.replicator.counters["push-from-stranger"] == 40
        # Its own (refused) join was looked at; none of the junk was kept.
        assert len(a.rooms.store.live(room).events) <= before + 1
        assert not any(b"junk " in s.data for s in cell.net.sent if s.target == "b")
        assert a.rooms.state(room) == b.rooms.state(room)


class _Broken:
    """A link whose connection died: every send fails as a real one would."""

    def __init__(self, verified: VerifiedDevice) -> None:
        self.verified = verified
        self.sent = 0

    async def send(self, data: bytes) -> None:
        self.sent += 1
        await trio.lowlevel.checkpoint()
        raise ConnectionFailed("peer stopped reading")


async def test_a_peer_whose_connection_fails_is_dropped_and_the_node_keeps_running(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        a, b = await cell.add_many("a", "b")
        broken = _Broken(b.verified)
        a.replicator.connected(broken)
        await trio.sleep(3)  # rounds and pushes keep trying to queue to it
        a.rooms.create("Toujours là")
        await trio.sleep(3)
        assert broken.sent == 1
        assert a.replicator._peers == {}
        assert a.replicator.counters["internal-error"] == 0


async def test_a_member_whose_invitation_was_voided_concurrently_learns_it(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    """The flake of the random-cell test, made deterministic.

    ``x`` invites ``n`` while, on the other side of a partition, ``c``
    kicks ``x``: once healed, every state rejects the invitation (made by
    someone removed concurrently) and with it ``n``'s join.  ``n`` must
    learn that too — nobody counts it as a member any more, so nobody
    would send it the kick as a member — instead of believing itself a
    member and asking for ever.
    """
    async with cell.running():
        c, x, n, other = await cell.add_many("c", "x", "n", "other")
        cell.net.mesh()
        room = await _room_with(cell, c, x, other)
        c.rooms.set_role(room, x.account.account_key, Role.MODERATOR)
        await trio.sleep(3)
        cell.net.partition(["c", "other"], ["x", "n"])
        await trio.sleep(1)
        x.rooms.invite(room, n.account.account_key)
        for _ in range(50):
            if room in n.rooms.store.rooms():
                break
            await trio.sleep(0.2)
        n.rooms.join(room)
        await trio.sleep(3)
        assert n.rooms.state(room).is_member(n.account.account_key)
        c.rooms.kick(room, x.account.account_key)
        await trio.sleep(3)
        cell.net.heal()
        await trio.sleep(60)

        n_key = n.account.account_key
        for node in (c, x, other):
            assert not node.rooms.state(room).is_member(n_key), node.name
        # n reaches the same verdict about itself, and the same state.
        assert not n.rooms.state(room).is_member(n_key)
        assert n.rooms.state(room) == c.rooms.state(room)
        # It got the kick and what explains it, not what was said since.
        c.rooms.send(room, b"after the heal")
        await trio.sleep(10)
        assert b"after the heal" not in [m.body for m in n.rooms.messages(room, limit=100)]
        said = [e for e in c.rooms.store.live(room).events.values() if e.type is EventType.MESSAGE]
        assert said and not set(n.rooms.store.live(room).events) & {e.id for e in said}


async def test_a_superseded_forum_summary_is_not_passed_around_for_ever(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    """Found by the chaos run: ``trust-received`` grew by the thousand on every node.

    A node that receives an older summary than the one it keeps does not
    store it; it used to count it as new all the same and pass it to every
    other peer, each of which did likewise — round and round, for ever.
    """
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.mesh()
        room = a.rooms.create("Forum", public=True).room
        await trio.sleep(5)
        old = a.rooms.directory.summary(room)
        assert old is not None and c.rooms.directory.summary(room) == old
        cell.net.partition(["a", "b"], ["c"])
        b.rooms.join(room)  # b's node publishes a newer summary (two members)
        await trio.sleep(5)
        cell.net.heal()  # c still offers the old one
        await trio.sleep(30)
        newest = a.rooms.directory.summary(room)
        assert newest is not None and newest.members == 2 and newest != old
        assert all(n.rooms.directory.summary(room) == newest for n in (a, b, c))
        before = {n.name: n.replicator.counters["trust-received"] for n in (a, b, c)}
        await trio.sleep(60)
        after = {n.name: n.replicator.counters["trust-received"] for n in (a, b, c)}
        assert after == before, (before, after)

"""Replication under hostile sync messages: the pure planner, then a live replicator.

* :func:`~p2ptchap.core.sync.missing` against any vector a peer can send
  (sequence numbers up to 2^64 − 1, forks, heads we hold or not): the
  ``want`` it plans stays within the batch, the range and id limits, asks
  only for what we lack and did not already ask in vain, and is a message
  the strict decoder accepts.
* A node's :class:`~p2ptchap.replication.Replicator`, running on the
  in-memory network with its SQLite store, is sent damaged and re-signed
  versions of the genuine sync messages of a room it shares with a member
  — by that member and by an enrolled stranger.  Only a ``DecodeError``
  may come out of it (the link is then closed, as the peer manager does);
  what it stores — events, room state, receipts, people — does not change;
  and once the links are back, a genuine message still arrives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import codec, sync
from p2ptchap.core.events import ID_SIZE
from p2ptchap.core.keys import KEY_SIZE
from p2ptchap.core.room import encode_state
from tests.conftest import make_org, make_rng
from tests.fuzz.mutations import encodings, mutated_bytes, mutated_value
from tests.fuzz.support import fuzz
from tests.sync.netcell import SyncCell, SyncNode

devices = st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE) | st.sampled_from(
    [bytes(32), b"\x01" * 32]
)
ids = st.binary(min_size=ID_SIZE, max_size=ID_SIZE) | st.sampled_from([b"\x02" * 32, b"\x03" * 32])
ROOM = bytes(32)
seqs = st.integers(1, 40) | st.sampled_from([2**32, 2**63 - 1, 2**64 - 1])


@fuzz(120)
@given(
    held=st.dictionaries(
        devices, st.dictionaries(st.integers(1, 40), ids, max_size=30), max_size=4
    ),
    theirs=st.dictionaries(devices, st.tuples(seqs, ids), max_size=6),
    heads=st.lists(ids, max_size=16),
    parents=st.lists(ids, max_size=16),
    skip=st.sets(st.tuples(devices, st.integers(1, 40)), max_size=40),
    skip_ids=st.sets(ids, max_size=8),
    limit=st.integers(-1, sync.WANT_BATCH),
)
def test_a_planned_want_is_bounded_and_asks_only_what_is_lacking(
    held: dict[bytes, dict[int, bytes]],
    theirs: dict[bytes, tuple[int, bytes]],
    heads: list[bytes],
    parents: list[bytes],
    skip: set[tuple[bytes, int]],
    skip_ids: set[bytes],
    limit: int,
) -> None:
    known = {i for seqs_held in held.values() for i in seqs_held.values()}
    want = sync.missing(
        held,
        known,
        theirs,
        heads,
        parents,
        skip=skip,
        skip_ids=skip_ids,
        room=bytes(32),
        limit=limit,
    )
    asked = sum(high - low + 1 for _, low, high in want.ranges) + len(want.ids)
    assert asked <= max(0, limit)
    assert len(want.ranges) <= sync.MAX_WANT_RANGES and len(want.ids) <= sync.MAX_WANT_IDS
    for device, low, high in want.ranges:
        assert device in theirs and 1 <= low <= high <= theirs[device][0]
        for seq in range(low, high + 1):
            assert seq not in held.get(device, {}) and (device, seq) not in skip
    assert len(set(want.ids)) == len(want.ids)
    assert not set(want.ids) & (known | skip_ids)
    assert sync.decode_bytes(sync.encode(want)) == want


# --- a live replicator ------------------------------------------------------------------------


def _snapshot(node: SyncNode, room: bytes) -> tuple[object, ...]:
    """What a node holds of a room and of the people: must not change under attack."""
    store = node.rooms.store
    return (
        sorted(e.id for e in store.events(room)),
        encode_state(node.rooms.state(room)),
        node.rooms.receipts.digest(room),
        sorted(r.hex() for r in store.rooms()),
        node.rooms.directory.count_devices(node.account.account_key),
    )


async def _shared_room(cell: SyncCell) -> tuple[SyncNode, SyncNode, bytes]:
    a, b = await cell.add_many("a", "b")
    await cell.add("mallory")
    cell.net.mesh()
    await trio.sleep(2)
    room = a.rooms.create("Salon").room
    a.rooms.invite(room, b.account.account_key)
    await trio.sleep(2)
    b.rooms.join(room)
    await trio.sleep(2)
    a.rooms.send(room, b"bonjour")
    b.rooms.send(room, b"salut")
    await trio.sleep(3)
    return a, b, room


def _genuine_messages(cell: SyncCell) -> list[bytes]:
    """The sync messages b sent a, one of each type (the seeds of the attack)."""
    seen: dict[str, bytes] = {}
    for sent in cell.net.sent:
        if (sent.source, sent.target) == ("b", "a"):
            body = codec.decode(sent.data)
            assert isinstance(body, dict)
            seen.setdefault(str(body["t"]), sent.data)
    return [seen[t] for t in sorted(seen)]


def _run(attack: st.DataObject) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            cell = SyncCell(Path(folder), make_org(make_rng(5)))
            async with cell.running():
                a, b, room = await _shared_room(cell)
                before = _snapshot(a, room)
                seeds = _genuine_messages(cell)
                assert len(seeds) >= 4
                for _ in range(attack.draw(st.integers(1, 6), label="messages")):
                    seed = attack.draw(st.sampled_from(seeds), label="seed")
                    if attack.draw(st.booleans(), label="structural"):
                        value = attack.draw(mutated_value(codec.decode(seed)))
                        data = attack.draw(encodings(value))
                    else:
                        data = attack.draw(mutated_bytes(seed, tuple(seeds)))
                    sender = attack.draw(st.sampled_from(["b", "mallory"]), label="sender")
                    cell.net.connect(sender, "a")
                    await cell.net._links[(sender, "a")].send(data)
                    await trio.sleep(1.5)
                    assert _snapshot(a, room) == before, "a hostile message changed the store"
                cell.net.mesh()
                await trio.sleep(4)
                b.rooms.send(room, b"toujours la")
                await trio.sleep(4)
                assert b"toujours la" in [m.body for m in a.rooms.messages(room)]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@fuzz(8)
@given(attack=st.data())
def test_a_replicator_fed_hostile_sync_messages(attack: st.DataObject) -> None:
    _run(attack)

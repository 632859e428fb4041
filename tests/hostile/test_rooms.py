"""Attacks on replication: private rooms asked for, forged, replayed and foreign-room events.

The attacker is a certified insider who is *not* a member of Alice's
private room, but knows its id and its heads (a former member, say: the
test reads them from Alice's database).  Nothing of the room may reach it
but ``refused``; nothing it forges may be stored; nothing it replays may
change anything.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
import trio

from p2ptchap.core import codec
from p2ptchap.core import sync as syncwire
from p2ptchap.core.events import Event, EventType, event_id, parse_event
from tests.hostile.arena import Arena, scale
from tests.hostile.toolkit import Credentials, close_all, insider, signed_event, with_bad_signature

pytestmark = pytest.mark.slow


def stored(arena: Arena, name: str, ids: list[bytes]) -> int:
    """How many of ``ids`` the node of ``name`` holds in its database, whatever their status."""
    with sqlite3.connect(f"file:{arena.root / name / 'node.db'}?mode=ro", uri=True) as db:
        return sum(
            db.execute("SELECT 1 FROM events WHERE id = ?", (i,)).fetchone() is not None
            for i in ids
        )


def on_heads(arena: Arena, who: Credentials, count: int, kind: EventType = EventType.NAME,
             account: bytes | None = None) -> list[Event]:  # fmt: skip
    """``count`` events of ``who``'s device, a chain on the room's current heads."""
    heads = arena.rooms("alice").store.live(arena.room).heads()
    prev, depth, previous = [e.id for e in heads], max(e.depth for e in heads) + 1, None
    events = []
    for seq in range(1, count + 1):
        event = signed_event(
            who.signing, account or who.account_key, kind, {"name": f"piraté {seq}"},
            room=arena.room, seq=seq, prev=prev, depth=depth, prev_seq=previous, state_key="",
        )  # fmt: skip
        events.append(event)
        prev, depth, previous = [event.id], depth + 1, event.id
    return events


async def test_a_stranger_asking_for_a_private_room_gets_refused_and_never_its_events(
    arena: Arena,
) -> None:
    mallory = arena.mint.person("curieux@x.gouv.fr")
    alice_device = bytes(arena.rooms("alice").me.device.device_key)
    held = arena.rooms("alice").store.held(arena.room)
    ids = [i for seqs in held.values() for i in seqs.values()]
    asks = int(scale(500, 5000))
    before = (await arena.status_async())["sync"]
    async with trio.open_nursery() as nursery:
        async with arena.attack("private room asked for") as window:
            peer = await insider(mallory, arena.trust, arena.port, nursery)
            await peer.send_sync(syncwire.Vector(arena.room, {}, (), bytes(16)))
            ranges = tuple((device, 1, 1 << 30) for device in held)
            for _ in range(asks):
                await peer.send_sync(syncwire.Want(arena.room, ranges, tuple(ids[:512])))
            answered = await peer.wait_for(lambda r: r.types["refused"] >= asks, timeout=30)
            window.figures["wants refused"] = peer.received.types["refused"]
        nursery.cancel_scope.cancel()
    await close_all([peer])
    assert answered, peer.received.types
    assert {m["reason"] for m in peer.received.of_type("refused")} == {"not-a-member"}
    # Of the room it may hold at most Alice's own membership events, never a message.
    leaked = [
        parse_event(raw)
        for m in peer.received.of_type("events")
        for raw in codec.expect_list(m["events"], "events")
        if isinstance(raw, bytes)
    ]
    assert all(e.type is EventType.MEMBER and bytes(e.device) == alice_device for e in leaked)
    assert not peer.received.of_type("vv") or all(
        m["room"] != arena.room for m in peer.received.of_type("vv")
    )
    after = (await arena.status_async())["sync"]
    assert after["refused-to-peer"] - before.get("refused-to-peer", 0) >= asks


async def test_forged_events_are_refused_and_never_stored(arena: Arena) -> None:
    mallory = arena.mint.person("faussaire@x.gouv.fr")
    bruno = arena.rooms("bruno").me
    [genuine] = on_heads(arena, mallory, 1)
    bad_signature = with_bad_signature(genuine.raw)
    # Its own device, someone else's device key in the body: the signature cannot match.
    [posing] = on_heads(arena, mallory, 1, account=bytes(bruno.account.account_key))
    claims_device = posing.raw.replace(
        bytes(mallory.signing.public_key()), bytes(bruno.device.device_key)
    )
    forged = [bad_signature, claims_device]
    before = (await arena.status_async())["sync"]
    async with trio.open_nursery() as nursery:
        async with arena.attack("forged events"):
            peer = await insider(mallory, arena.trust, arena.port, nursery)
            await peer.send_sync(syncwire.Events(arena.room, tuple(forged), False))
            await trio.sleep(1)
        nursery.cancel_scope.cancel()
    await close_all([peer])
    after = (await arena.status_async())["sync"]
    # From a stranger to the room, a push is cut before its signatures are
    # even checked (only its own membership would be looked at).
    refused = ("invalid-event:bad-signature", "push-from-stranger")
    assert sum(after.get(k, 0) - before.get(k, 0) for k in refused) == len(forged), after
    ids = [event_id(raw) for raw in forged]
    assert stored(arena, "alice", ids) == 0 and stored(arena, "bruno", ids) == 0


async def test_replayed_events_change_nothing(arena: Arena) -> None:
    """Every event of the room, as a former member kept them, sent again and again."""
    mallory = arena.mint.person("ancien@x.gouv.fr")
    raws = [e.raw for e in arena.rooms("bruno").store.events(arena.room)]
    rounds = int(scale(3, 30))
    before_status = await arena.status_async()
    before_rows = stored(arena, "alice", [event_id(r) for r in raws])
    state_before = arena.rooms("alice").state(arena.room)
    async with trio.open_nursery() as nursery:
        async with arena.attack("replayed events") as window:
            peer = await insider(mallory, arena.trust, arena.port, nursery)
            for _ in range(rounds):
                for part in syncwire.batches(raws, 512, syncwire.MAX_BATCH_BYTES):
                    await peer.send_sync(syncwire.Events(arena.room, tuple(part), False))
            await trio.sleep(1)
            window.figures["events replayed"] = rounds * len(raws)
        nursery.cancel_scope.cancel()
    await close_all([peer])
    after_status = await arena.status_async()
    # A former member is a stranger now: its pushes are dropped (counted), or
    # recognised as held already.
    gained = sum(
        after_status["sync"].get(k, 0) - before_status["sync"].get(k, 0)
        for k in ("events-duplicate", "push-from-stranger")
    )
    assert gained > 0
    assert stored(arena, "alice", [event_id(r) for r in raws]) == before_rows
    assert arena.rooms("alice").state(arena.room) == state_before


async def test_events_for_a_room_the_sender_is_not_in_are_not_stored_nor_relayed(
    arena: Arena,
) -> None:
    mallory = arena.mint.person("intrus@x.gouv.fr")
    events = on_heads(arena, mallory, int(scale(200, 20000)))
    name_before = arena.rooms("alice").state(arena.room).name
    async with trio.open_nursery() as nursery:
        async with arena.attack("events for a room it is not in") as window:
            peer = await insider(mallory, arena.trust, arena.port, nursery)
            raws = [e.raw for e in events]
            for part in syncwire.batches(raws, 512, syncwire.MAX_BATCH_BYTES):
                await peer.send_sync(syncwire.Events(arena.room, tuple(part), False))
            await trio.sleep(2)
            window.figures["events pushed"] = len(raws)
        nursery.cancel_scope.cancel()
    await close_all([peer])
    assert arena.rooms("alice").state(arena.room).name == name_before
    ids = [e.id for e in events]
    deadline = time.time() + 3
    while time.time() < deadline and stored(arena, "bruno", ids) == 0:
        await trio.sleep(0.2)
    assert stored(arena, "bruno", ids) == 0, "relayed to the honest member"
    assert stored(arena, "alice", ids) == 0, "stored by the attacked node"

"""End-to-end encryption at the rooms API, against hostile members and at rest.

Nodes are :class:`tests.test_rooms.World` nodes (real SQLite files, real
certificates); events are carried by copying them, so each test controls
exactly who has seen what.  A hostile member is a real member whose device
signs events its honest software would never make.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2ptchap.core import codec, revocation
from p2ptchap.core.events import EventType
from p2ptchap.core.identity import parse_device_certificate
from p2ptchap.core.megolm import InboundSession, OutboundSession, Ratchet
from p2ptchap.core.roomkeys import (
    PREKEY_GRACE,
    PREKEY_ROTATION,
    HistoryKey,
    ShareKind,
    encode_history,
    encode_room_key,
    open_share,
    seal_share,
)
from p2ptchap.e2e import ROTATE_AFTER_MESSAGES, ROTATE_AFTER_SECONDS, rotation_reason
from p2ptchap.rooms import Rooms
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from tests.conftest import NOW, make_rng
from tests.test_rooms import World, _device

T = EventType


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _room(world: World, *names: str, shared: bool = False) -> bytes:
    first = world.nodes[names[0]]
    room = first.create("Salon").room
    if shared:
        first.set_history(room, True)
    for name in names[1:]:
        first.invite(room, world.key(name))
    world.sync(*names)
    for name in names[1:]:
        world.nodes[name].join(room)
    world.sync(*names)
    return room


def _forge(
    node: Rooms, room: bytes, kind: EventType, content: dict[codec.Key, codec.Value]
) -> bytes:
    """An event signed by ``node``'s device as its software never would; stored there."""
    event = node._make(room, kind, content)
    node.store.add(room, [event.raw])
    return event.id


def _current_session(node: Rooms, room: bytes) -> bytes:
    session = node.keys.outbound(room)
    assert session is not None
    return session.session_id


def test_members_read_and_the_database_holds_no_clear_text(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    alice.send(room, "Évacuation du gymnase à 3 h".encode())
    world.sync("alice", "bruno")
    assert [m.body for m in bruno.messages(room)] == ["Évacuation du gymnase à 3 h".encode()]
    for node in (alice, bruno):
        node.db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in world.tmp_path.iterdir():
        assert "Évacuation".encode() not in path.read_bytes(), path.name


def test_without_the_passphrase_messages_are_locked(world: World) -> None:
    alice = world.node("alice")
    room = alice.create("Salon").room
    alice.send(room, b"secret")
    directory = DirectoryStore(
        Database(alice.db.path), world.org.trust, lambda: world.revocations["alice"], lambda: NOW
    )
    reader = Rooms(
        directory.db,
        directory,
        type(alice.me)(alice.me.account, alice.me.device, None, None),
        lambda: NOW,
    )
    [message] = reader.messages(room)
    assert (message.body, message.waiting) == (None, "locked")


def test_a_replayed_index_is_refused(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    first = alice.send(room, b"once").events[-1]
    original = alice.store.live(room).events[first].content
    _forge(alice, room, T.MESSAGE, dict(original))  # same session, index and ciphertext
    world.sync("alice", "bruno")
    shown = bruno.messages(room)
    assert [m.body for m in shown] == [b"once", None]
    assert shown[1].waiting == "bad-message"


@pytest.mark.parametrize("field", ["ct", "index", "session"])
def test_a_tampered_field_re_signed_by_the_owner_does_not_decrypt(world: World, field: str) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    alice.send(room, b"genuine")
    session = alice.keys.outbound(room)
    assert session is not None
    _, ciphertext = session.encrypt(bytes(alice.me.device.device_key), b"not sent")
    content: dict[codec.Key, codec.Value] = {
        "session": session.session_id,
        "index": session.ratchet.index - 1,
        "ct": ciphertext,
    }
    if field == "ct":
        content["ct"] = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    elif field == "index":
        content["index"] = session.ratchet.index + 5  # AD and key of another index
    else:
        content["session"] = bytes(32)
    _forge(alice, room, T.MESSAGE, content)
    world.sync("alice", "bruno")
    assert [m.body for m in bruno.messages(room)] == [b"genuine", None]


def test_a_key_share_carried_by_another_device_is_not_taken(world: World) -> None:
    alice, bruno, mallory = world.node("alice"), world.node("bruno"), world.node("mallory")
    room = _room(world, "alice", "bruno", "mallory")
    done = alice.send(room, b"from alice")
    key_event = alice.store.live(room).events[done.events[0]]
    assert key_event.type is T.ROOM_KEY
    # Mallory re-posts alice's shares as its own: they were sealed by alice
    # for alice's session, so they open for no one under mallory's name.
    _forge(mallory, room, T.ROOM_KEY, dict(key_event.content))
    session = key_event.content["session"]
    assert isinstance(session, bytes)
    world.sync("alice", "bruno", "mallory")
    assert [m.body for m in bruno.messages(room)] == [b"from alice"]
    assert bruno.keys.inbound(bytes(mallory.me.device.device_key), session) is None


def test_a_session_key_from_a_non_owner_never_decrypts_the_owners_messages(world: World) -> None:
    alice, bruno, mallory = world.node("alice"), world.node("bruno"), world.node("mallory")
    room = _room(world, "alice", "bruno", "mallory")
    alice.send(room, b"first")
    world.sync("alice", "mallory")  # mallory learns alice's session id, not bruno
    session = _current_session(alice, room)
    # Mallory shares a made-up key "for alice's session" with bruno.
    fake = Ratchet.generate(make_rng(5))
    targets = {bytes(bruno.me.device.device_key): bytes(world.key("bruno"))}
    for content in mallory.crypto.share_contents(room, session, fake, targets):
        _forge(mallory, room, T.ROOM_KEY, content)
    # Bruno gets mallory's events first, then alice's.
    world.sync("mallory", "bruno")
    world.sync("alice", "bruno")
    assert [m.body for m in bruno.messages(room)] == [b"first"]
    held = bruno.keys.inbound(bytes(mallory.me.device.device_key), session)
    assert held is not None  # filed under mallory's device, where alice's messages never look


def test_a_forged_history_bundle_neither_overrides_nor_blocks_the_owners_key(
    world: World,
) -> None:
    alice, bruno, mallory = world.node("alice"), world.node("bruno"), world.node("mallory")
    room = alice.create("Salon").room
    alice.set_history(room, True)
    for name in ("bruno", "mallory"):
        alice.invite(room, world.key(name))
    world.sync("alice", "bruno", "mallory")
    bruno.join(room)
    mallory.join(room)
    world.sync("alice", "bruno", "mallory")
    alice.send(room, b"shared history")
    world.sync("alice", "mallory")
    session = _current_session(alice, room)
    fake = HistoryKey(alice.me.device.device_key, session, Ratchet.generate(make_rng(6)))
    targets = {bytes(bruno.me.device.device_key): bytes(world.key("bruno"))}
    shares = mallory.crypto._seal(ShareKind.HISTORY, room, b"", encode_history([fake]), targets)
    _forge(mallory, room, T.HISTORY_KEYS, {"shares": shares})
    world.sync("mallory", "bruno")  # the forged bundle first
    world.sync("alice", "bruno")
    assert [m.body for m in bruno.messages(room)] == [b"shared history"]


def test_sessions_rotate_on_removal_count_age_history_and_revocation(world: World) -> None:
    alice = world.node("alice")
    world.node("bruno")
    world.node("carla")
    room = _room(world, "alice", "bruno", "carla")
    alice.send(room, b"1")
    first = _current_session(alice, room)
    alice.send(room, b"2")
    assert _current_session(alice, room) == first  # same members: same session
    alice.kick(room, world.key("carla"))
    alice.send(room, b"3")
    after_kick = _current_session(alice, room)
    assert after_kick != first
    alice.set_history(room, True)
    alice.send(room, b"4")
    after_history = _current_session(alice, room)
    assert after_history != after_kick
    member = world.people["bruno"]
    record = revocation.revoke_device(
        member.secret, member.certificate, _device(member).device_key, NOW
    )
    world.revocations["alice"].add(record, world.org.trust)
    alice.send(room, b"5")
    assert _current_session(alice, room) != after_history


def test_rotation_reasons() -> None:
    rng = make_rng(1)
    session = OutboundSession.create(b"r" * 32, "joined", NOW, rng)
    served = {b"d1" * 16: b"a1" * 16}
    session.recipients.update(served)
    assert rotation_reason(None, NOW, served, "joined") == "new"
    assert rotation_reason(session, NOW, served, "joined") is None
    assert rotation_reason(session, NOW + ROTATE_AFTER_SECONDS, served, "joined") == "age"
    assert rotation_reason(session, NOW, served, "shared") == "history"
    assert rotation_reason(session, NOW, {}, "joined") == "removed"
    more = {**served, b"d2" * 16: b"a2" * 16}
    assert rotation_reason(session, NOW, more, "joined") == "joined"
    # A new device of a member already served: no rotation, a share.
    assert rotation_reason(session, NOW, {**served, b"d3" * 16: b"a1" * 16}, "joined") is None
    for _ in range(ROTATE_AFTER_MESSAGES):
        session.encrypt(b"d0" * 16, b"x")
    assert rotation_reason(session, NOW, served, "joined") == "count"


def test_a_message_sent_concurrently_with_a_removal_is_flagged(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    world.node("carla")
    room = _room(world, "alice", "bruno", "carla")
    bruno.send(room, b"before")
    world.sync("alice", "bruno", "carla")
    alice.kick(room, world.key("carla"))  # bruno has not seen it...
    bruno.send(room, b"concurrent")  # ... and uses the session carla holds
    world.sync("alice", "bruno")
    shown = {m.body: m.exposed_to for m in alice.messages(room)}
    assert shown[b"before"] == ()
    assert shown[b"concurrent"] == (world.key("carla"),)
    # Once bruno has seen the kick, his next message is in a new session.
    bruno.send(room, b"after")
    world.sync("alice", "bruno")
    shown = {m.body: m.exposed_to for m in alice.messages(room)}
    assert shown[b"after"] == ()


def test_our_own_other_device_receives_the_session(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    member = world.people["bruno"]
    signing, exchange, raw = member.new_device("portable", make_rng(3))
    alice.directory.add_device(raw)
    done = alice.send(room, b"to both of bruno's devices")
    key_event = alice.store.live(room).events[done.events[0]]
    shares = key_event.content["shares"]
    assert isinstance(shares, dict)
    assert bytes(parse_device_certificate(raw).device_key) in shares
    assert bytes(bruno.me.device.device_key) in shares
    del signing, exchange


def test_inbound_sessions_at_rest_keep_no_used_key(world: World) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    alice.send(room, b"one")
    world.sync("alice", "bruno")
    bruno.messages(room)
    session = _current_session(alice, room)
    held = bruno.keys.inbound(bytes(alice.me.device.device_key), session)
    assert isinstance(held, InboundSession)
    assert held.ratchet.index == 1 and held.skipped == {} and held.used == {0}
    assert encode_room_key(held.ratchet) != encode_room_key(Ratchet(0, bytes(128)))


def test_prekeys_rotate_weekly_and_replaced_secrets_are_deleted_after_the_grace(
    world: World,
) -> None:
    alice, bruno = world.node("alice"), world.node("bruno")
    now = [NOW]
    bruno.crypto.clock = lambda: now[0]
    first = bruno.keys.own_prekey()
    assert first is not None  # made when the node first opened
    assert bruno.crypto.ensure_prekey() is None  # not due yet
    # Alice seals a share to Bruno's current prekey (as a sender would).
    assert alice.add_prekey(first[0].raw)
    prekey = alice.keys.prekey_of(bytes(bruno.me.device.device_key))
    assert prekey is not None and prekey.key == first[0].key
    assert alice.me.exchange is not None
    fields = {
        "room": bytes(32),
        "session": bytes(32),
        "sender": alice.me.device.device_key,
        "recipient": bruno.me.device.device_key,
    }
    box = seal_share(
        ShareKind.ROOM_KEY,
        b"payload",
        sender_exchange=alice.me.exchange,
        recipient_key=prekey.key,
        rng=make_rng(8),
        **fields,  # type: ignore[arg-type]
    )
    now[0] += PREKEY_ROTATION
    second = bruno.crypto.ensure_prekey()
    assert second is not None and second.key != first[0].key
    # Within the grace period the old secret still opens late shares ...
    secret = bruno.keys.own_prekey_secret(first[0].id)
    assert secret is not None
    opened = open_share(
        ShareKind.ROOM_KEY,
        box,
        sender_exchange=alice.me.exchange.public_key(),
        recipient_secret=secret,
        **fields,  # type: ignore[arg-type]
    )
    assert opened == b"payload"
    # ... and after it, the secret is gone: a captured share stays sealed.
    now[0] += PREKEY_GRACE
    bruno.crypto.ensure_prekey()
    assert bruno.keys.own_prekey_secret(first[0].id) is None
    assert bruno.keys.own_prekey_secret(second.id) is not None
    # Gossip keeps only the newest record of a device.
    assert alice.add_prekey(second.raw)
    assert not alice.add_prekey(first[0].raw)


def test_a_history_bundle_never_carries_a_session_still_in_use(world: World) -> None:
    """Security review F1: the bundle retires the inviter's session, and holds
    another member's only once that member has moved on; so an invitee
    removed again reads nothing sent after."""
    alice, bruno, mallory = world.node("alice"), world.node("bruno"), world.node("mallory")
    room = _room(world, "alice", "bruno", shared=True)
    alice.send(room, b"old from alice")
    bruno.send(room, b"old from bruno")
    world.sync("alice", "bruno")
    alice.invite(room, world.key("mallory"))
    world.sync("alice", "bruno", "mallory")
    # Alice's closed session came in the bundle; Bruno's, still in use, did not.
    assert sorted(m.body or b"" for m in mallory.messages(room)) == [b"", b"old from alice"]
    alice.kick(room, world.key("mallory"))  # the invitation withdrawn
    world.sync("alice", "bruno")
    alice.send(room, b"ALICE AFTER")
    bruno.send(room, b"BRUNO AFTER")
    world.sync("alice", "bruno", "mallory")
    assert [m.body for m in mallory.messages(room)][2:] == [None, None]


def test_a_bundle_entry_with_a_boolean_index_is_refused_and_breaks_nothing(world: World) -> None:
    """Security review F2: a hostile bundle must not make the room unreadable."""
    alice, bruno, mallory = world.node("alice"), world.node("bruno"), world.node("mallory")
    room = _room(world, "alice", "bruno", "mallory", shared=True)
    alice.send(room, b"fine")
    world.sync("alice", "mallory")
    payload = codec.encode(
        {"sessions": [[bytes(alice.me.device.device_key), bytes(32), True, bytes(128)]]}
    )
    targets = {bytes(bruno.me.device.device_key): bytes(world.key("bruno"))}
    shares = mallory.crypto._seal(ShareKind.HISTORY, room, b"", payload, targets)
    _forge(mallory, room, T.HISTORY_KEYS, {"shares": shares})
    world.sync("alice", "bruno", "mallory")
    alice.send(room, b"still fine")
    world.sync("alice", "bruno")
    assert [m.body for m in bruno.messages(room)] == [b"fine", b"still fine"]


def test_an_owner_that_left_does_not_answer_key_requests(world: World) -> None:
    """Security review F6: answering would need an event it may not write."""
    alice, bruno = world.node("alice"), world.node("bruno")
    room = _room(world, "alice", "bruno")
    alice.send(room, b"x")
    session = _current_session(alice, room)
    alice.leave(room)
    device = bruno.me.device.device_key
    assert alice.answer_key_request(room, device, world.key("bruno"), [session]) is None

"""The secure channel: handshake with certificates, records, limits, hostile peers."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.channel import (
    MAX_RECORD_BODY,
    NEED_DATA,
    ChannelConfig,
    ChannelUsageError,
    Closed,
    ConnectionTruncated,
    Established,
    Event,
    Message,
    PeerRejected,
    Pong,
    ProtocolViolation,
    SecureChannel,
    make_credentials,
)
from p2ptchap.core.errors import RemoteError, VerificationFailure
from p2ptchap.core.keys import Rng
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.core.revocation import RevocationSet, revoke_device
from tests.conftest import DAY, NOW, Member, Org, endpoint, make_org, make_rng

F = VerificationFailure
NETWORK_KEY = bytes(range(32))


def drain(channel: SecureChannel) -> list[Event]:
    events = []
    while (event := channel.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def pump(
    a: SecureChannel, b: SecureChannel, chunk: Callable[[bytes], list[bytes]] = lambda d: [d]
) -> tuple[list[Event], list[Event]]:
    """Move bytes both ways until both are quiet; return each side's events."""
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    for _ in range(1000):
        moved = False
        for source, sink, seen in ((a, b, seen_b), (b, a, seen_a)):
            data = source.data_to_send()
            if data:
                moved = True
                for piece in chunk(data):
                    sink.receive_data(piece)
                    seen.extend(drain(sink))
        if not moved:
            return seen_a, seen_b
    raise AssertionError("channels never went quiet")


@pytest.fixture
def pair(org: Org) -> tuple[Member, Member]:
    return org.member("alice@x.gouv.fr", "Alice"), org.member("bruno@x.gouv.fr", "Bruno")


@pytest.mark.parametrize("network_key", [None, NETWORK_KEY])
def test_handshake_authenticates_both_sides(
    org: Org, pair: tuple[Member, Member], rng: Rng, network_key: bytes | None
) -> None:
    alice, bruno = pair
    config = ChannelConfig(network_key=network_key)
    a = endpoint(alice, org, initiator=True, rng=rng, config=config)
    b = endpoint(bruno, org, initiator=False, rng=rng, config=config)
    events_a, events_b = pump(a, b)
    assert len(events_a) == len(events_b) == 1
    est_a, est_b = events_a[0], events_b[0]
    assert isinstance(est_a, Established) and isinstance(est_b, Established)
    assert est_a.peer.account.email == "bruno@x.gouv.fr"
    assert est_b.peer.account.email == "alice@x.gouv.fr"
    assert est_a.handshake_hash == est_b.handshake_hash
    assert a.is_open and b.is_open


def open_pair(
    org: Org, pair: tuple[Member, Member], rng: Rng, config: ChannelConfig | None = None
) -> tuple[SecureChannel, SecureChannel]:
    a = endpoint(pair[0], org, initiator=True, rng=rng, config=config)
    b = endpoint(pair[1], org, initiator=False, rng=rng, config=config)
    pump(a, b)
    assert a.is_open and b.is_open
    return a, b


def test_messages_of_every_size_round_trip(org: Org, pair: tuple[Member, Member], rng: Rng) -> None:
    a, b = open_pair(org, pair, rng)
    sizes = [0, 1, MAX_RECORD_BODY - 1, MAX_RECORD_BODY, MAX_RECORD_BODY + 1, 3 * MAX_RECORD_BODY]
    for size in sizes:
        payload = rng(size)
        a.send_message(payload)
        b.send_message(payload[::-1])
        events_a, events_b = pump(a, b)
        assert events_b == [Message(payload)]
        assert events_a == [Message(payload[::-1])]


def test_ping_is_answered_with_the_same_body(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    a, b = open_pair(org, pair, rng)
    a.send_ping(b"12345678")
    events_a, events_b = pump(a, b)
    assert events_a == [Pong(b"12345678")]
    assert events_b == []


def test_periodic_and_explicit_rekey(org: Org, pair: tuple[Member, Member], rng: Rng) -> None:
    a, b = open_pair(org, pair, rng, ChannelConfig(rekey_after=3))
    for i in range(20):
        a.send_message(b"m%d" % i)
    a.rekey()
    a.send_message(b"after")
    _, events_b = pump(a, b)
    assert events_b == [Message(b"m%d" % i) for i in range(20)] + [Message(b"after")]


def test_close_is_explicit_and_truncation_is_detected(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    a, b = open_pair(org, pair, rng)
    a.send_message(b"bye")
    a.close()
    _, events_b = pump(a, b)
    assert events_b == [Message(b"bye"), Closed()]
    assert b.is_closed
    with pytest.raises(ChannelUsageError):
        a.send_message(b"more")

    c, d = open_pair(org, pair, rng)
    c.send_message(b"half")
    d.receive_data(c.data_to_send())
    assert drain(d) == [Message(b"half")]
    d.receive_data(b"")  # the TCP stream ends, no CLOSE record
    with pytest.raises(ConnectionTruncated):
        d.next_event()


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_revoked_device_is_refused_with_the_reason(
    org: Org, pair: tuple[Member, Member], rng: Rng, side: str
) -> None:
    alice, bruno = pair
    revoked_member = alice if side == "initiator" else bruno
    revocations = RevocationSet()
    revocations.add(
        revoke_device(
            revoked_member.secret,
            revoked_member.certificate,
            revoked_member.device_secret.public_key(),
            NOW,
        ),
        org.trust,
    )
    a = endpoint(alice, org, initiator=True, rng=rng, revocations=revocations)
    b = endpoint(bruno, org, initiator=False, rng=rng, revocations=revocations)
    b.receive_data(a.data_to_send())
    assert drain(b) == []
    a.receive_data(b.data_to_send())
    if side == "responder":
        with pytest.raises(PeerRejected) as info:
            a.next_event()
        # The initiator refused before sending message 3: the rejected
        # responder never sees who the initiator is.
        assert a.data_to_send() == b""
    else:
        assert drain(a) == [Established(a.peer, a.handshake_hash)]  # type: ignore[arg-type]
        b.receive_data(a.data_to_send())
        with pytest.raises(PeerRejected) as info:
            b.next_event()
        assert b.data_to_send() == b""
    assert info.value.reason is F.REVOKED


def test_unknown_authority_and_expired_certificates_are_refused(org: Org, rng: Rng) -> None:
    stranger_org = make_org(rng, "Étrangers", ["justice.fr"])
    stranger = stranger_org.member("eve@justice.fr", "Eve")
    bruno = org.member("bruno@x.gouv.fr", "Bruno")
    a = endpoint(stranger, stranger_org, initiator=True, rng=rng)
    b = endpoint(bruno, org, initiator=False, rng=rng)
    # The initiator trusts its own authority only, so it refuses Bruno.
    b.receive_data(a.data_to_send())
    drain(b)
    a.receive_data(b.data_to_send())
    with pytest.raises(PeerRejected) as info:
        a.next_event()
    assert info.value.reason is F.UNKNOWN_AUTHORITY

    short = org.member("short@x.gouv.fr", "Short", days=1)
    a = endpoint(bruno, org, initiator=True, rng=rng, now=NOW + 3 * DAY)
    b = endpoint(short, org, initiator=False, rng=rng, now=NOW + 3 * DAY)
    b.receive_data(a.data_to_send())
    drain(b)
    a.receive_data(b.data_to_send())
    with pytest.raises(PeerRejected) as info:
        a.next_event()
    assert info.value.reason is F.EXPIRED


def test_credentials_for_another_static_key_are_refused(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    alice, bruno = pair
    # Bruno presents a signature made for some other Noise key: someone
    # replaying his certificates from another machine.
    other = X25519KeyPair.generate(rng).public
    stolen = make_credentials(bruno.certificate, bruno.device, bruno.device_secret, other)
    a = endpoint(alice, org, initiator=True, rng=rng)
    b = endpoint(bruno, org, initiator=False, rng=rng, credentials=stolen)
    b.receive_data(a.data_to_send())
    drain(b)
    a.receive_data(b.data_to_send())
    with pytest.raises(PeerRejected) as info:
        a.next_event()
    assert info.value.reason is F.BAD_SIGNATURE


def test_wrong_network_key_reveals_no_certificate(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    alice, bruno = pair
    a = endpoint(alice, org, initiator=True, rng=rng, config=ChannelConfig(network_key=bytes(32)))
    b = endpoint(
        bruno, org, initiator=False, rng=rng, config=ChannelConfig(network_key=NETWORK_KEY)
    )
    b.receive_data(a.data_to_send())
    drain(b)
    message2 = b.data_to_send()
    assert bruno.certificate not in message2  # responder shows nothing yet
    a.receive_data(message2)
    drain(a)
    b.receive_data(a.data_to_send())
    with pytest.raises(RemoteError):
        b.next_event()
    assert b.data_to_send() == b""
    assert not a.is_open


def _handshake_with_a_flip(
    org: Org, pair: tuple[Member, Member], index: int, position: int
) -> bool:
    """Run a handshake with one bit flipped in message ``index``; return whether both opened."""
    rng = make_rng(5)
    a = endpoint(pair[0], org, initiator=True, rng=rng)
    b = endpoint(pair[1], org, initiator=False, rng=rng)
    for step in range(3):
        sender, receiver = (a, b) if step % 2 == 0 else (b, a)
        data = bytearray(sender.data_to_send())
        if not data:
            break
        if step == index and position is not None:
            data[position] ^= 0x01
        receiver.receive_data(bytes(data))
        try:
            drain(receiver)
        except RemoteError:
            break
    # A flip in a length prefix can leave a side waiting for bytes that never
    # come: the shell's handshake timeout ends that; it is never "open".
    return a.is_open and b.is_open


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_flipped_byte_of_every_handshake_message_is_rejected(
    org: Org, pair: tuple[Member, Member], index: int
) -> None:
    assert _handshake_with_a_flip(org, pair, index, position=None)  # unflipped, it works
    lengths = [34, 0, 0]
    rng = make_rng(5)
    a = endpoint(pair[0], org, initiator=True, rng=rng)
    b = endpoint(pair[1], org, initiator=False, rng=rng)
    lengths[0] = len(first := a.data_to_send())
    b.receive_data(first)
    drain(b)
    lengths[1] = len(second := b.data_to_send())
    a.receive_data(second)
    drain(a)
    lengths[2] = len(a.data_to_send())
    # Message 1 travels in clear and cannot be authenticated by its reader,
    # but a flip anywhere must keep the two sides from both opening.
    for position in range(lengths[index]):
        assert not _handshake_with_a_flip(org, pair, index, position), position


def test_low_order_ephemeral_key_is_rejected(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    b = endpoint(pair[1], org, initiator=False, rng=rng)
    b.receive_data(b"\x00\x20" + bytes(32))  # message 1: e = the all-zero point
    with pytest.raises(RemoteError):
        drain(b)
    assert b.data_to_send() == b""


def test_oversized_and_malformed_frames(org: Org, pair: tuple[Member, Member], rng: Rng) -> None:
    a, b = open_pair(org, pair, rng, ChannelConfig(max_message=1000))
    a.send_message(b"x" * 600)
    b.receive_data(a.data_to_send())
    assert drain(b) == [Message(b"x" * 600)]
    a_big, b_big = open_pair(org, pair, rng, ChannelConfig(max_message=200_000))
    b_small = b_big
    b_small.config = ChannelConfig(max_message=100_000)  # the receiver's own limit
    a_big.send_message(b"y" * 150_000)
    b_small.receive_data(a_big.data_to_send())
    with pytest.raises(ProtocolViolation):
        drain(b_small)

    _, b2 = open_pair(org, pair, rng)
    b2.receive_data(b"\x00\x00")  # a zero-length Noise message
    with pytest.raises(ProtocolViolation):
        drain(b2)

    _, b3 = open_pair(org, pair, rng, ChannelConfig(max_buffered=100_000))
    with pytest.raises(ProtocolViolation):
        for _ in range(10):
            b3.receive_data(b"\xff\xff" + bytes(65535))  # a flood never consumed


def test_a_peer_stalling_mid_handshake_produces_no_event(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    a = endpoint(pair[0], org, initiator=True, rng=rng)
    b = endpoint(pair[1], org, initiator=False, rng=rng)
    first = a.data_to_send()
    b.receive_data(first[:10])  # half a message, then nothing: the shell's timeout acts
    assert b.next_event() is NEED_DATA
    b.receive_data(b"")
    with pytest.raises(ConnectionTruncated):
        b.next_event()


def test_misuse_is_a_usage_error(org: Org, pair: tuple[Member, Member], rng: Rng) -> None:
    a = endpoint(pair[0], org, initiator=True, rng=rng)
    with pytest.raises(ChannelUsageError):
        a.send_message(b"too early")
    with pytest.raises(ChannelUsageError):
        ChannelConfig(network_key=b"short")


_ORG = make_org(make_rng(11))
_PAIR = (_ORG.member("a@x.gouv.fr", "A"), _ORG.member("b@x.gouv.fr", "B"))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    messages=st.lists(st.binary(max_size=70_000), max_size=6),
    network_key=st.sampled_from([None, NETWORK_KEY]),
)
def test_any_split_of_the_byte_stream_gives_the_same_events(
    seed: int, messages: list[bytes], network_key: bytes | None
) -> None:
    # TCP may deliver the stream in any pieces: a seeded "terrible network"
    # that cuts and coalesces at random must not change what arrives.
    cutter = random.Random(seed)

    def chunk(data: bytes) -> list[bytes]:
        pieces, start = [], 0
        while start < len(data):
            end = start + cutter.randint(1, 5000)
            pieces.append(data[start:end])
            start = end
        return pieces

    config = ChannelConfig(network_key=network_key, rekey_after=4)
    rng = make_rng(seed)
    a = endpoint(_PAIR[0], _ORG, initiator=True, rng=rng, config=config)
    b = endpoint(_PAIR[1], _ORG, initiator=False, rng=rng, config=config)
    pump(a, b, chunk)
    assert a.is_open and b.is_open
    for message in messages:
        a.send_message(message)
    a.close()
    _, events_b = pump(a, b, chunk)
    assert events_b == [Message(m) for m in messages] + [Closed()]

"""SecureConnection over trio streams: generic stream behaviour, TCP, timeouts."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2ptchap.core.channel import ChannelConfig, PeerRejected
from p2ptchap.core.errors import VerificationFailure
from p2ptchap.core.keys import Rng
from p2ptchap.core.revocation import RevocationSet, revoke_device
from p2ptchap.net.connection import (
    ConnectionFailed,
    HandshakeTimeout,
    SecureConnection,
    SecureStream,
    Timeouts,
)
from tests.conftest import NOW, Member, Org, endpoint


@pytest.fixture
def pair(org: Org) -> tuple[Member, Member]:
    return org.member("alice@x.gouv.fr", "Alice"), org.member("bruno@x.gouv.fr", "Bruno")


def connections(
    org: Org,
    pair: tuple[Member, Member],
    rng: Rng,
    left: trio.abc.Stream,
    right: trio.abc.Stream,
    *,
    revocations: RevocationSet | None = None,
    timeouts: Timeouts | None = None,
    config: ChannelConfig | None = None,
) -> tuple[SecureConnection, SecureConnection]:
    a = endpoint(pair[0], org, initiator=True, rng=rng, revocations=revocations, config=config)
    b = endpoint(pair[1], org, initiator=False, rng=rng, revocations=revocations, config=config)
    return (
        SecureConnection(left, a, timeouts=timeouts or Timeouts()),
        SecureConnection(right, b, timeouts=timeouts or Timeouts()),
    )


async def both_handshake(a: SecureConnection, b: SecureConnection) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.handshake)
        nursery.start_soon(b.handshake)


async def test_check_two_way_stream_over_the_secure_channel(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    async def make_pair(
        maker: object,
    ) -> tuple[SecureStream, SecureStream]:
        left, right = maker()  # type: ignore[operator]
        a, b = connections(org, pair, rng, left, right)
        await both_handshake(a, b)
        return SecureStream(a), SecureStream(b)

    async def stream_maker() -> tuple[SecureStream, SecureStream]:
        return await make_pair(trio.testing.memory_stream_pair)

    async def clogged_stream_maker() -> tuple[SecureStream, SecureStream]:
        return await make_pair(trio.testing.lockstep_stream_pair)

    await trio.testing.check_two_way_stream(stream_maker, clogged_stream_maker)


async def test_messages_over_real_tcp_on_loopback(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    received: list[bytes | None] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    b_channel = endpoint(pair[1], org, initiator=False, rng=rng)

    async def serve(stream: trio.SocketStream) -> None:
        conn = SecureConnection(stream, b_channel)
        peer = await conn.handshake()
        assert peer.account.email == "alice@x.gouv.fr"
        while (message := await conn.receive_message()) is not None:
            received.append(message)
            await conn.send_message(message[::-1])
        received.append(None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = SecureConnection(stream, endpoint(pair[0], org, initiator=True, rng=rng))
        peer = await conn.handshake()
        assert peer.account.email == "bruno@x.gouv.fr"
        big = rng(300_000)
        for payload in (b"bonjour", big):
            await conn.send_message(payload)
            assert await conn.receive_message() == payload[::-1]
        await conn.ping()
        await conn.send_message(b"last")
        assert await conn.receive_message() == b"tsal"
        assert conn.rtt is not None and conn.rtt >= 0
        await conn.aclose()
        with trio.fail_after(5):
            while received[-1:] != [None]:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert received == [b"bonjour", big, b"last", None]


async def test_revoked_initiator_is_refused_and_dropped(
    org: Org, pair: tuple[Member, Member], rng: Rng
) -> None:
    revocations = RevocationSet()
    alice = pair[0]
    revocations.add(
        revoke_device(alice.secret, alice.certificate, alice.device_secret.public_key(), NOW),
        org.trust,
    )
    left, right = trio.testing.memory_stream_pair()
    a, b = connections(org, pair, rng, left, right, revocations=revocations)
    outcome: dict[str, BaseException] = {}

    async def run(name: str, conn: SecureConnection) -> None:
        try:
            await conn.handshake()
        except Exception as exc:
            outcome[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "a", a)
        nursery.start_soon(run, "b", b)
    rejected = outcome["b"]
    assert isinstance(rejected, PeerRejected)
    assert rejected.reason is VerificationFailure.REVOKED
    # In XX the initiator is authenticated last: its handshake completed, and
    # the connection is dropped without a word when it next reads.
    assert "a" not in outcome
    with pytest.raises(ConnectionFailed):
        await a.receive_message()


async def test_a_peer_that_stalls_mid_handshake_times_out(
    org: Org, pair: tuple[Member, Member], rng: Rng, autojump_clock: trio.testing.MockClock
) -> None:
    left, right = trio.testing.memory_stream_pair()
    b = SecureConnection(
        right, endpoint(pair[1], org, initiator=False, rng=rng), timeouts=Timeouts(handshake=5)
    )
    await left.send_all(b"\x00\x20" + bytes(10))  # part of message 1, then silence
    start = trio.current_time()
    with pytest.raises(HandshakeTimeout):
        await b.handshake()
    assert trio.current_time() - start == pytest.approx(5)


async def test_a_silent_peer_is_declared_dead_after_the_idle_timeout(
    org: Org, pair: tuple[Member, Member], rng: Rng, autojump_clock: trio.testing.MockClock
) -> None:
    left, right = trio.testing.memory_stream_pair()
    a, b = connections(org, pair, rng, left, right, timeouts=Timeouts(idle=6))
    await both_handshake(a, b)
    start = trio.current_time()
    with pytest.raises(ConnectionFailed):
        await b.receive_message()  # Alice's machine froze: nothing ever comes
    assert trio.current_time() - start == pytest.approx(6, abs=0.1)


async def test_a_flooding_peer_is_cut_off(org: Org, pair: tuple[Member, Member], rng: Rng) -> None:
    left, right = trio.testing.memory_stream_pair()
    config = ChannelConfig(max_message=100_000)
    a, b = connections(org, pair, rng, left, right, config=config)
    await both_handshake(a, b)
    # A message over the receiver's limit: the sender's own limit is bypassed
    # by writing records directly.
    a.channel.config = ChannelConfig(max_message=10_000_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_message, b"z" * 1_000_000)
        with pytest.raises(Exception) as info:
            await b.receive_message()
        nursery.cancel_scope.cancel()
    assert "maximum" in str(info.value)


async def test_a_peer_that_stops_reading_cannot_block_us_forever(
    org: Org, pair: tuple[Member, Member], rng: Rng, autojump_clock: trio.testing.MockClock
) -> None:
    left, right = trio.testing.lockstep_stream_pair()
    a, b = connections(org, pair, rng, left, right, timeouts=Timeouts(idle=6))
    await both_handshake(a, b)
    start = trio.current_time()
    with pytest.raises(ConnectionFailed):
        await a.send_message(b"x" * 100)  # Bruno never reads again
    assert trio.current_time() - start == pytest.approx(6, abs=0.1)

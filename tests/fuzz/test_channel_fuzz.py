"""The secure channel under an active attacker: damaged handshakes, hostile record streams.

* A byte of the handshake traffic, in either direction, at any step, is
  damaged (with or without a network key).  Whatever happens, only typed
  remote errors come out; a side that fails is failed for good (it sends
  nothing more, ignores what arrives); and if both sides report the
  channel established, each knows the other's true identity and both hold
  the same handshake hash.
* Once open, the records of one direction are dropped, duplicated,
  swapped, damaged, truncated, or mixed with forged records, and arrive in
  random pieces.  The receiver delivers a prefix of what was sent — never
  a message out of order, twice, or made up — then fails with a typed
  error (or reports the cut, at the end of the stream).
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core.channel import (
    LENGTH_PREFIX,
    MAX_RECORD_BODY,
    NEED_DATA,
    ChannelConfig,
    Closed,
    Established,
    Event,
    Message,
    SecureChannel,
)
from p2ptchap.core.errors import RemoteError
from tests.conftest import endpoint, make_org, make_rng
from tests.fuzz.mutations import mutated_bytes
from tests.fuzz.support import Accepted, attempt, fuzz

NETWORK_KEY = bytes(range(32))
_ORG = make_org(make_rng(91))
_ALICE = _ORG.member("alice@interieur.gouv.fr", "Alice")
_BRUNO = _ORG.member("bruno@interieur.gouv.fr", "Bruno")


def channels(seed: int, network_key: bytes | None) -> tuple[SecureChannel, SecureChannel]:
    config = ChannelConfig(network_key=network_key, rekey_after=3)
    rng = make_rng(seed)
    return (
        endpoint(_ALICE, _ORG, initiator=True, rng=rng, config=config),
        endpoint(_BRUNO, _ORG, initiator=False, rng=rng, config=config),
    )


def drain(channel: SecureChannel) -> tuple[list[Event], RemoteError | None]:
    """Every event ``channel`` has now, and the error that stopped it, if any."""
    events: list[Event] = []
    while True:
        result = attempt(channel.next_event, (RemoteError,))
        if not isinstance(result, Accepted):
            assert isinstance(result.error, RemoteError)
            return events, result.error
        if result.value is NEED_DATA:
            return events, None
        events.append(result.value)


def assert_failed_quietly(channel: SecureChannel) -> None:
    assert channel.is_closed and not channel.is_open
    assert channel.data_to_send() == b"", "a failed channel still sends"
    channel.receive_data(b"\x00\x05hello")  # ignored, not an error
    assert channel.next_event() is NEED_DATA


@fuzz(120)
@given(
    seed=st.integers(0, 2**32),
    network_key=st.sampled_from([None, NETWORK_KEY]),
    damaged_move=st.integers(0, 3),
    data=st.data(),
)
def test_damaged_handshake_traffic(
    seed: int, network_key: bytes | None, damaged_move: int, data: st.DataObject
) -> None:
    a, b = channels(seed, network_key)
    seen: dict[int, list[Event]] = {id(a): [], id(b): []}
    failed: set[int] = set()
    move = 0
    for _ in range(12):
        moved = False
        for source, sink in ((a, b), (b, a)):
            if id(source) in failed or id(sink) in failed:
                continue
            stream = source.data_to_send()
            if not stream:
                continue
            moved = True
            if move == damaged_move:
                stream = data.draw(mutated_bytes(stream))
            move += 1
            error = attempt(lambda s=sink, d=stream: s.receive_data(d), (RemoteError,))
            events, stopped = drain(sink)
            seen[id(sink)].extend(events)
            if not isinstance(error, Accepted) or stopped is not None:
                failed.add(id(sink))
                assert_failed_quietly(sink)
        if not moved:
            break
    established = {
        side: [e for e in seen[id(side)] if isinstance(e, Established)] for side in (a, b)
    }
    for side, peer in ((a, _BRUNO), (b, _ALICE)):
        for event in established[side]:
            assert event.peer.account.raw == peer.certificate, "wrong peer identity"
            assert event.peer.device.raw == peer.device
    if established[a] and established[b]:
        assert established[a][0].handshake_hash == established[b][0].handshake_hash


def frames(stream: bytes) -> list[bytes]:
    """The length-prefixed Noise messages of a stream (each with its prefix)."""
    out, position = [], 0
    while position < len(stream):
        length = int.from_bytes(stream[position : position + LENGTH_PREFIX], "big")
        out.append(stream[position : position + LENGTH_PREFIX + length])
        position += LENGTH_PREFIX + length
    assert position == len(stream)
    return out


def open_pair(seed: int) -> tuple[SecureChannel, SecureChannel]:
    a, b = channels(seed, None)
    for _ in range(4):
        for source, sink in ((a, b), (b, a)):
            stream = source.data_to_send()
            if stream:  # b"" would say the stream ended
                sink.receive_data(stream)
                drain(sink)
    assert a.is_open and b.is_open
    return a, b


_OPS = ("drop", "duplicate", "swap", "damage", "forge", "empty", "truncate")


@fuzz(120)
@given(
    seed=st.integers(0, 2**32),
    sizes=st.lists(
        st.integers(0, 300) | st.sampled_from([MAX_RECORD_BODY, MAX_RECORD_BODY + 10]),
        min_size=1,
        max_size=6,
    ),
    pings=st.integers(0, 2),
    close=st.booleans(),
    ops=st.lists(st.tuples(st.sampled_from(_OPS), st.integers(0, 10_000)), max_size=3),
    eof=st.booleans(),
    data=st.data(),
)
def test_hostile_record_stream(
    seed: int,
    sizes: list[int],
    pings: int,
    close: bool,
    ops: list[tuple[str, int]],
    eof: bool,
    data: st.DataObject,
) -> None:
    a, b = open_pair(seed)
    # Messages larger than a record travel as MORE records then a DATA one.
    messages = [bytes([index]) * size for index, size in enumerate(sizes)]
    for index, message in enumerate(messages):
        a.send_message(message)
        if index < pings:
            a.send_ping(bytes([index]))
    if close:
        a.close()
    honest = frames(a.data_to_send())
    expected: list[Event] = [Message(m) for m in messages] + ([Closed()] if close else [])
    hostile = list(honest)
    for op, where in ops:
        if not hostile:
            break
        i = where % len(hostile)
        if op == "drop":
            del hostile[i]
        elif op == "duplicate":
            hostile.insert(i, hostile[i])
        elif op == "swap" and i + 1 < len(hostile):
            hostile[i], hostile[i + 1] = hostile[i + 1], hostile[i]
        elif op == "damage":
            hostile[i] = data.draw(mutated_bytes(hostile[i]))
        elif op == "forge":
            body = data.draw(st.binary(min_size=1, max_size=80))
            hostile.insert(i, len(body).to_bytes(LENGTH_PREFIX, "big") + body)
        elif op == "empty":
            hostile.insert(i, b"\x00\x00")
        elif op == "truncate":
            hostile[i] = hostile[i][: where % max(1, len(hostile[i]))]
            del hostile[i + 1 :]
    stream = b"".join(hostile)
    cutter = random.Random(seed)
    got: list[Event] = []
    error: RemoteError | None = None
    position = 0
    while position < len(stream) and error is None:
        piece = stream[position : position + cutter.randint(1, 70_000)]
        position += len(piece)
        result = attempt(lambda p=piece: b.receive_data(p), (RemoteError,))
        events, error = drain(b)
        got.extend(events)
        if not isinstance(result, Accepted):
            error = result.error
    if eof and error is None:
        b.receive_data(b"")
        events, error = drain(b)
        got.extend(events)
    assert got == expected[: len(got)], "events that were not sent, or out of order"
    if error is not None:
        assert_failed_quietly(b)
    elif stream == b"".join(honest):
        assert got == expected
        truncated = eof and not close
        assert not truncated, "a stream cut before CLOSE must be reported"

"""Noise handshakes and transports fed hostile messages at every step.

* **Handshakes** (``XX`` and ``XXpsk3`` for connections, ``NN`` for
  pairing, the one-way ``K`` and ``X`` for key shares): an honest run in
  which one message, chosen at random, is damaged on the way.  The reader
  either refuses it with a typed error — and is then dead for good: no
  further read or write, no remote key, no transport keys — or accepts
  it, and then the two parties can never finish with the same handshake
  hash, nor exchange one transport message.
* **Transports**: the messages of one direction delivered with replays,
  reordering, drops, truncations and bit flips.  The receiver decrypts
  exactly the genuine messages that arrive in order and refuses every
  other one without moving its nonce, so the next genuine message still
  opens (the model below says what each delivery must give).
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core.errors import RemoteError
from p2ptchap.core.noise import (
    DecryptionError,
    HandshakeError,
    HandshakeState,
    MalformedNoiseMessage,
    NoiseTransport,
    NoiseUsageError,
    X25519KeyPair,
)
from p2ptchap.core.noise_patterns import resolve_pattern
from tests.fuzz.mutations import mutated_bytes
from tests.fuzz.support import Accepted, attempt, fuzz

HANDSHAKE_ERRORS = (HandshakeError, MalformedNoiseMessage)
PATTERNS = ("XX", "XXpsk3", "NN", "K", "X")


def parties(pattern: str, seed: int) -> tuple[HandshakeState, HandshakeState]:
    resolved = resolve_pattern(pattern)
    rnd = random.Random(seed)
    statics = {True: X25519KeyPair(rnd.randbytes(32)), False: X25519KeyPair(rnd.randbytes(32))}
    psks = [rnd.randbytes(32) for _ in range(resolved.psk_count)]

    def party(initiator: bool) -> HandshakeState:
        return HandshakeState(
            pattern,
            initiator=initiator,
            prologue=b"p2ptchap/1",
            s=statics[initiator] if resolved.needs_static(initiator) else None,
            rs=statics[not initiator].public if resolved.needs_remote_static(initiator) else None,
            psks=psks,
            rng=rnd.randbytes,
        )

    return party(True), party(False)


def assert_dead(handshake: HandshakeState) -> None:
    assert not handshake.is_complete and not handshake.is_our_turn
    assert handshake.remote_static is None
    for call in (
        lambda: handshake.read_message(bytes(64)),
        lambda: handshake.write_message(b""),
        handshake.split,
    ):
        attempt_usage = attempt(call, (NoiseUsageError,))
        assert not isinstance(attempt_usage, Accepted), "a failed handshake went on"


@fuzz(150)
@given(
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**32),
    payloads=st.lists(st.binary(max_size=64), min_size=3, max_size=3),
    data=st.data(),
)
def test_a_damaged_handshake_message(
    pattern: str, seed: int, payloads: list[bytes], data: st.DataObject
) -> None:
    initiator, responder = parties(pattern, seed)
    steps = len(resolve_pattern(pattern).messages)
    damaged_at = data.draw(st.integers(0, steps - 1))
    damaged = False
    for step in range(steps):
        writer, reader = (initiator, responder) if step % 2 == 0 else (responder, initiator)
        message = writer.write_message(payloads[step])
        if step == damaged_at:
            hostile = data.draw(mutated_bytes(message) | st.binary(max_size=200))
            damaged = hostile != message
            message = hostile
        result = attempt(lambda m=message, r=reader: r.read_message(m), HANDSHAKE_ERRORS)
        if not isinstance(result, Accepted):
            assert damaged, "an untouched handshake message was refused"
            assert_dead(reader)
            return
        if not damaged:
            assert result.value == payloads[step]
    assert initiator.is_complete and responder.is_complete
    if not damaged:
        assert initiator.handshake_hash == responder.handshake_hash
        return
    # The damage went unnoticed by the reader (the first message of XX or
    # NN travels in clear, a payload is malleable there): the two sides must
    # not agree on anything.
    assert initiator.handshake_hash != responder.handshake_hash
    sender, receiver = initiator.to_transport(), responder.to_transport()
    refused = attempt(lambda: receiver.decrypt(sender.encrypt(b"hello")), (DecryptionError,))
    assert not isinstance(refused, Accepted), "damaged handshake, working transport"


def transport_pair(seed: int) -> tuple[NoiseTransport, NoiseTransport]:
    initiator, responder = parties("XX", seed)
    for step in range(3):
        writer, reader = (initiator, responder) if step % 2 == 0 else (responder, initiator)
        reader.read_message(writer.write_message(b""))
    return initiator.to_transport(), responder.to_transport()


@st.composite
def deliveries(draw: st.DrawFn, count: int) -> list[tuple[int, str]]:
    """What arrives: (index of a sent message, how it was damaged), in arrival order."""
    plan = []
    for _ in range(draw(st.integers(0, 2 * count + 2))):
        index = draw(st.integers(0, count - 1))
        plan.append((index, draw(st.sampled_from(["none", "none", "flip", "cut", "grow"]))))
    return plan


@fuzz(150)
@given(
    seed=st.integers(0, 2**32),
    plaintexts=st.lists(st.binary(max_size=100), min_size=1, max_size=8),
    data=st.data(),
)
def test_transport_with_replays_reorders_and_damage(
    seed: int, plaintexts: list[bytes], data: st.DataObject
) -> None:
    sender, receiver = transport_pair(seed)
    sent = [sender.encrypt(p) for p in plaintexts]
    expected = 0  # the next genuine message the receiver can open
    for index, damage in data.draw(deliveries(len(sent))):
        message = sent[index]
        if damage == "flip":
            position = data.draw(st.integers(0, len(message) - 1))
            message = (
                message[:position] + bytes([message[position] ^ 0x80]) + message[position + 1 :]
            )
        elif damage == "cut":
            message = message[: data.draw(st.integers(0, len(message) - 1))]
        elif damage == "grow":
            message += data.draw(st.binary(min_size=1, max_size=4))
        result = attempt(
            lambda m=message: receiver.decrypt(m), (DecryptionError, MalformedNoiseMessage)
        )
        if index == expected and damage == "none":
            assert isinstance(result, Accepted) and result.value == plaintexts[index]
            expected += 1
        else:
            assert not isinstance(result, Accepted), f"message {index} ({damage}) accepted"
            assert isinstance(result.error, RemoteError)
    # Whatever came before, the genuine rest still arrives in order.
    for index in range(expected, len(sent)):
        assert receiver.decrypt(sent[index]) == plaintexts[index]

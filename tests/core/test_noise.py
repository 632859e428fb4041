"""Noise (revision 34): cacophony vectors, tampering, limits and misuse."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.errors import DecodeError, LocalError, RemoteError, UsageError
from p2ptchap.core.noise import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    CipherState,
    DecryptionError,
    HandshakeError,
    HandshakeState,
    MalformedNoiseMessage,
    NoiseTransport,
    NoiseUsageError,
    NonceExhausted,
    X25519KeyPair,
    X25519PublicKey,
)
from p2ptchap.core.noise_patterns import (
    TAGLEN,
    Token,
    UnknownPattern,
    resolve_pattern,
    supported_patterns,
)

VECTOR_FILE = (
    Path(__file__).parent.parent / "vectors" / "noise" / "cacophony_25519_ChaChaPoly_BLAKE2b.json"
)
VECTORS: list[dict[str, Any]] = json.loads(VECTOR_FILE.read_text())["vectors"]
SUITE = "_25519_ChaChaPoly_BLAKE2b"

# The patterns p2ptchap relies on, plus common ones the generic engine must also get right.
PATTERNS_UNDER_TEST = ["XX", "XXpsk3", "N", "K", "X", "NN", "KK", "IK", "NNpsk0+psk2"]

# Low-order points of Curve25519 and its twist (as listed in libsodium's blocklist).
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
]


def pattern_of(protocol_name: str) -> str:
    assert protocol_name.startswith("Noise_") and protocol_name.endswith(SUITE)
    return protocol_name.removeprefix("Noise_").removesuffix(SUITE)


def vector_party(vector: dict[str, Any], initiator: bool) -> HandshakeState:
    role = "init" if initiator else "resp"

    def field(name: str) -> bytes | None:
        value = vector.get(f"{role}_{name}")
        return None if value is None else bytes.fromhex(value)

    static, ephemeral, remote = field("static"), field("ephemeral"), field("remote_static")
    prologue = field("prologue")
    assert prologue is not None
    return HandshakeState(
        pattern_of(vector["protocol_name"]),
        initiator=initiator,
        prologue=prologue,
        s=X25519KeyPair(static) if static else None,
        e=X25519KeyPair(ephemeral) if ephemeral else None,
        rs=X25519PublicKey(remote) if remote else None,
        psks=[bytes.fromhex(psk) for psk in vector.get(f"{role}_psks", [])],
    )


def make_pair(
    pattern: str, seed: int = 0, prologue: bytes = b"p2ptchap/1"
) -> tuple[HandshakeState, HandshakeState]:
    """An initiator and a responder with deterministic keys and rng."""
    resolved = resolve_pattern(pattern)
    rnd = random.Random(seed)
    statics = {True: X25519KeyPair(rnd.randbytes(32)), False: X25519KeyPair(rnd.randbytes(32))}
    psks = [rnd.randbytes(32) for _ in range(resolved.psk_count)]

    def party(initiator: bool) -> HandshakeState:
        needs_remote = resolved.needs_remote_static(initiator)
        return HandshakeState(
            pattern,
            initiator=initiator,
            prologue=prologue,
            s=statics[initiator] if resolved.needs_static(initiator) else None,
            rs=statics[not initiator].public if needs_remote else None,
            psks=psks,
            rng=rnd.randbytes,
        )

    return party(True), party(False)


def run_handshake(initiator: HandshakeState, responder: HandshakeState) -> list[bytes]:
    """Run to completion with small payloads; return the messages sent."""
    sent: list[bytes] = []
    while not (initiator.is_complete and responder.is_complete):
        writer, reader = (initiator, responder) if initiator.is_our_turn else (responder, initiator)
        payload = b"hello %d" % len(sent)
        message = writer.write_message(payload)
        assert reader.read_message(message) == payload
        sent.append(message)
    return sent


def assert_dead(state: HandshakeState) -> None:
    assert not state.is_complete
    assert not state.is_our_turn
    assert state.remote_static is None
    for attempt in (
        lambda: state.write_message(b""),
        lambda: state.read_message(bytes(200)),
        state.split,
        lambda: state.handshake_hash,
    ):
        with pytest.raises(NoiseUsageError):
            attempt()


# --- the cacophony vectors ---------------------------------------------------


def test_vector_file_covers_the_patterns_we_rely_on() -> None:
    names = {pattern_of(vector["protocol_name"]) for vector in VECTORS}
    assert {"XX", "XXpsk3", "N", "K", "X", "NN", "KK", "IK"} <= names
    assert len(VECTORS) == 59


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: pattern_of(vector["protocol_name"]))
def test_cacophony_vector(vector: dict[str, Any]) -> None:
    initiator, responder = vector_party(vector, True), vector_party(vector, False)
    pattern = resolve_pattern(pattern_of(vector["protocol_name"]))
    transports: dict[bool, NoiseTransport] = {}
    for index, step in enumerate(vector["messages"]):
        payload, expected = bytes.fromhex(step["payload"]), bytes.fromhex(step["ciphertext"])
        # Cacophony continues the alternation of the handshake into the
        # transport phase; after a one-way handshake only the initiator sends.
        initiator_sends = pattern.one_way or index % 2 == 0
        if index < len(pattern.messages):
            writer, reader = (initiator, responder) if initiator_sends else (responder, initiator)
            assert writer.is_our_turn and not reader.is_our_turn
            assert len(expected) == pattern.message_size(index, len(payload))
            assert writer.write_message(payload) == expected
            # The reader consumes the vector's bytes, not ours.
            assert reader.read_message(expected) == payload
            if index == len(pattern.messages) - 1:
                for state in (initiator, responder):
                    assert state.is_complete
                    assert state.handshake_hash.hex() == vector["handshake_hash"]
                transports = {True: initiator.to_transport(), False: responder.to_transport()}
        else:
            sender, receiver = transports[initiator_sends], transports[not initiator_sends]
            assert sender.encrypt(payload) == expected
            assert receiver.decrypt(expected) == payload
    assert transports, "the vector holds no complete handshake"


def test_remote_static_is_learned() -> None:
    initiator, responder = make_pair("XX")
    assert initiator.remote_static is None and responder.remote_static is None
    run_handshake(initiator, responder)
    assert initiator.remote_static is not None and responder.remote_static is not None
    assert initiator.handshake_hash == responder.handshake_hash


# --- tampering -----------------------------------------------------------------


def flip(message: bytes, position: int) -> bytes:
    tampered = bytearray(message)
    tampered[position] ^= 0x01
    return bytes(tampered)


def first_failure(
    initiator: HandshakeState, responder: HandshakeState, tamper_index: int, position: int
) -> tuple[HandshakeState, HandshakeError]:
    index = 0
    while not (initiator.is_complete and responder.is_complete):
        writer, reader = (initiator, responder) if initiator.is_our_turn else (responder, initiator)
        try:
            message = writer.write_message(b"hello %d" % index)
        except HandshakeError as exc:
            return writer, exc
        if index == tamper_index:
            message = flip(message, position)
        try:
            reader.read_message(message)
        except HandshakeError as exc:
            return reader, exc
        index += 1
    pytest.fail(f"flipping byte {position} of message {tamper_index} went unnoticed")


@pytest.mark.parametrize("pattern", PATTERNS_UNDER_TEST)
def test_flipping_any_handshake_byte_kills_the_handshake(pattern: str) -> None:
    clean = run_handshake(*make_pair(pattern))
    for index, message in enumerate(clean):
        for position in range(len(message)):
            initiator, responder = make_pair(pattern)
            failed, error = first_failure(initiator, responder, index, position)
            assert isinstance(error, RemoteError)
            assert_dead(failed)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda point: point[:4].hex())
def test_low_order_ephemeral_is_rejected(point: bytes) -> None:
    # XX message 1 is only hashed: the bad key is caught by the responder's
    # first DH, when it writes message 2.
    _, responder = make_pair("XX")
    assert responder.read_message(point) == b""
    with pytest.raises(HandshakeError):
        responder.write_message(b"")
    assert_dead(responder)

    # In message 2 the initiator meets the key in its own "ee" DH.
    initiator, _ = make_pair("XX")
    initiator.write_message(b"")
    with pytest.raises(HandshakeError):
        initiator.read_message(point + bytes(48 + TAGLEN))
    assert_dead(initiator)


def test_low_order_static_is_rejected() -> None:
    initiator = HandshakeState(
        "N", initiator=True, rs=X25519PublicKey(bytes(32)), rng=random.Random(1).randbytes
    )
    with pytest.raises(HandshakeError):
        initiator.write_message(b"room key")
    assert_dead(initiator)


def test_wrong_psk_fails() -> None:
    rnd = random.Random(3)
    ours, theirs = X25519KeyPair(rnd.randbytes(32)), X25519KeyPair(rnd.randbytes(32))
    initiator = HandshakeState(
        "XXpsk3", initiator=True, s=ours, psks=[bytes(32)], rng=rnd.randbytes
    )
    responder = HandshakeState(
        "XXpsk3", initiator=False, s=theirs, psks=[bytes([1]) * 32], rng=rnd.randbytes
    )
    with pytest.raises(HandshakeError):
        run_handshake(initiator, responder)
    assert_dead(responder)


def test_truncated_handshake_message_is_malformed() -> None:
    initiator, responder = make_pair("XX")
    responder.read_message(initiator.write_message(b""))
    message = responder.write_message(b"")
    with pytest.raises(MalformedNoiseMessage) as excinfo:
        initiator.read_message(message[:-1])
    assert isinstance(excinfo.value, DecodeError)
    assert_dead(initiator)


# --- turn-taking and misuse ------------------------------------------------------


def test_out_of_turn_calls_are_local_errors() -> None:
    initiator, responder = make_pair("XX")
    with pytest.raises(NoiseUsageError) as excinfo:
        responder.write_message(b"")
    assert isinstance(excinfo.value, LocalError)
    with pytest.raises(NoiseUsageError):
        initiator.read_message(bytes(32))
    with pytest.raises(NoiseUsageError):
        initiator.split()
    with pytest.raises(NoiseUsageError):
        _ = initiator.handshake_hash
    # Misuse does not damage the state: the handshake still completes.
    run_handshake(initiator, responder)
    with pytest.raises(NoiseUsageError):
        initiator.write_message(b"")
    with pytest.raises(NoiseUsageError):
        responder.read_message(bytes(64))


def test_split_happens_once() -> None:
    initiator, responder = make_pair("XX")
    run_handshake(initiator, responder)
    send, receive = initiator.split()
    peer_send, peer_receive = responder.split()
    assert peer_receive.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"x")) == b"x"
    assert receive.decrypt_with_ad(b"", peer_send.encrypt_with_ad(b"", b"y")) == b"y"
    with pytest.raises(NoiseUsageError):
        initiator.to_transport()


def test_one_way_transport_has_one_direction() -> None:
    initiator, responder = make_pair("K")
    run_handshake(initiator, responder)
    sender, receiver = initiator.to_transport(), responder.to_transport()
    assert receiver.decrypt(sender.encrypt(b"room key")) == b"room key"
    with pytest.raises(NoiseUsageError):
        receiver.encrypt(b"reply")
    with pytest.raises(NoiseUsageError):
        sender.decrypt(bytes(TAGLEN))


@pytest.mark.parametrize(
    ("pattern", "arguments"),
    [
        ("XX", {}),  # no static key
        ("NN", {"s": X25519KeyPair(bytes(range(32)))}),  # static key not used
        ("IK", {"s": X25519KeyPair(bytes(range(32)))}),  # responder key missing
        ("XXpsk3", {"s": X25519KeyPair(bytes(range(32)))}),  # PSK missing
        ("XXpsk3", {"s": X25519KeyPair(bytes(range(32))), "psks": [bytes(31)]}),
        ("XX", {"s": X25519KeyPair(bytes(range(32))), "rng": None}),  # no ephemeral source
    ],
)
def test_arguments_that_cannot_work_are_refused(pattern: str, arguments: dict[str, Any]) -> None:
    arguments.setdefault("rng", random.Random(0).randbytes)
    with pytest.raises(NoiseUsageError):
        HandshakeState(pattern, initiator=True, **arguments)


def test_one_way_responder_takes_no_ephemeral() -> None:
    with pytest.raises(NoiseUsageError):
        HandshakeState(
            "N",
            initiator=False,
            s=X25519KeyPair(bytes(32)),
            e=X25519KeyPair(bytes(range(32))),
        )


@pytest.mark.parametrize("name", ["XY", "XXpsk4", "XXpsk3+psk3", "XXpsk01", "XXfallback", ""])
def test_unknown_patterns_are_refused(name: str) -> None:
    with pytest.raises(UnknownPattern) as excinfo:
        resolve_pattern(name)
    assert isinstance(excinfo.value, UsageError)


def test_psk_modifiers_are_placed_per_section_9() -> None:
    assert resolve_pattern("XXpsk3").messages[2] == (Token.S, Token.SE, Token.PSK)
    both = resolve_pattern("NNpsk0+psk2").messages
    assert both == ((Token.PSK, Token.E), (Token.E, Token.EE, Token.PSK))


@pytest.mark.parametrize("base", supported_patterns())
def test_every_party_sends_e_first(base: str) -> None:
    # resolve_pattern relies on this to satisfy the PSK validity rule (§9.3)
    # for every modifier placement; and pre-messages hold only "s".
    pattern = resolve_pattern(base)
    for initiator in (True, False):
        sent = pattern.sent_tokens(initiator)
        assert not sent or sent[0] is Token.E
        assert set(pattern.premessage(initiator)) <= {Token.S}


# --- keys, nonces and sizes ------------------------------------------------------


def test_key_pair_repr_hides_the_private_key() -> None:
    private = bytes(range(32))
    pair = X25519KeyPair(private)
    assert private.hex() not in repr(pair)
    assert private.hex() not in str(pair)
    assert bytes(pair.public).hex() in repr(pair)
    assert pair.public == X25519PublicKey(bytes(pair.public))
    assert len({pair.public, X25519PublicKey(bytes(pair.public))}) == 1
    with pytest.raises(NoiseUsageError):
        X25519PublicKey(bytes(31))
    with pytest.raises(NoiseUsageError):
        X25519KeyPair(bytes(33))


def test_bytearray_inputs_are_accepted() -> None:
    # The bindings refuse bytearray; trio hands us bytearrays.
    initiator, responder = make_pair("XX")
    message = bytearray(initiator.write_message(bytearray(b"hi")))
    assert responder.read_message(message) == b"hi"


def test_nonce_exhaustion() -> None:
    sender, receiver = CipherState(bytes(32)), CipherState(bytes(32))
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(NonceExhausted) as excinfo:
        sender.encrypt_with_ad(b"", b"one too many")
    assert isinstance(excinfo.value, LocalError)
    with pytest.raises(NonceExhausted):
        receiver.decrypt_with_ad(b"", bytes(TAGLEN))
    with pytest.raises(NoiseUsageError):
        sender.set_nonce(MAX_NONCE + 1)


def test_failed_decryption_keeps_the_nonce() -> None:
    initiator, responder = make_pair("XX")
    run_handshake(initiator, responder)
    sender, receiver = initiator.to_transport(), responder.to_transport()
    genuine = sender.encrypt(b"genuine")
    with pytest.raises(DecryptionError):
        receiver.decrypt(flip(genuine, 0))
    assert receiver.receive_cipher.nonce == 0
    assert receiver.decrypt(genuine) == b"genuine"
    with pytest.raises(DecryptionError):
        receiver.decrypt(genuine)  # a replay uses the wrong nonce


def test_rekey_must_happen_on_both_sides() -> None:
    initiator, responder = make_pair("XX")
    run_handshake(initiator, responder)
    sender, receiver = initiator.to_transport(), responder.to_transport()
    sender.rekey_send()
    message = sender.encrypt(b"after rekey")
    with pytest.raises(DecryptionError):
        receiver.decrypt(message)
    receiver.rekey_receive()
    assert receiver.decrypt(message) == b"after rekey"
    # The other direction was not rekeyed and still works.
    assert sender.decrypt(receiver.encrypt(b"reply")) == b"reply"
    with pytest.raises(NoiseUsageError):
        CipherState().rekey()


def test_handshake_message_size_limit() -> None:
    initiator, responder = make_pair("XX")
    # XX message 1 is a 32-byte ephemeral key and a plaintext payload.
    with pytest.raises(NoiseUsageError):
        initiator.write_message(bytes(MAX_MESSAGE_LEN - 32 + 1))
    assert initiator.is_our_turn  # refused before any state changed
    message = initiator.write_message(bytes(MAX_MESSAGE_LEN - 32))
    assert len(message) == MAX_MESSAGE_LEN
    assert responder.read_message(message) == bytes(MAX_MESSAGE_LEN - 32)

    initiator, responder = make_pair("XX")
    with pytest.raises(MalformedNoiseMessage):
        responder.read_message(bytes(MAX_MESSAGE_LEN + 1))
    assert_dead(responder)


def test_transport_message_size_limit() -> None:
    initiator, responder = make_pair("XX")
    run_handshake(initiator, responder)
    sender, receiver = initiator.to_transport(), responder.to_transport()
    largest = MAX_MESSAGE_LEN - TAGLEN
    with pytest.raises(NoiseUsageError):
        sender.encrypt(bytes(largest + 1))
    assert sender.send_cipher.nonce == 0
    message = sender.encrypt(bytes(largest))
    assert len(message) == MAX_MESSAGE_LEN
    assert receiver.decrypt(message) == bytes(largest)
    for bad_length in (MAX_MESSAGE_LEN + 1, TAGLEN - 1):
        with pytest.raises(MalformedNoiseMessage):
            receiver.decrypt(bytes(bad_length))


# --- properties ------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    handshake_payloads=st.lists(st.binary(max_size=300), min_size=3, max_size=3),
    transport_payloads=st.lists(st.tuples(st.booleans(), st.binary(max_size=2000)), max_size=20),
    psk=st.booleans(),
)
def test_xx_round_trip(
    seed: int,
    handshake_payloads: list[bytes],
    transport_payloads: list[tuple[bool, bytes]],
    psk: bool,
) -> None:
    initiator, responder = make_pair("XXpsk3" if psk else "XX", seed=seed)
    for payload in handshake_payloads:
        writer, reader = (initiator, responder) if initiator.is_our_turn else (responder, initiator)
        assert reader.read_message(writer.write_message(payload)) == payload
    assert initiator.is_complete and responder.is_complete
    assert initiator.handshake_hash == responder.handshake_hash
    transports = {True: initiator.to_transport(), False: responder.to_transport()}
    for from_initiator, payload in transport_payloads:
        message = transports[from_initiator].encrypt(payload)
        assert len(message) == len(payload) + TAGLEN
        assert transports[not from_initiator].decrypt(message) == payload

"""Megolm sessions: the ratchet against libolm and the specification, then the sessions.

Oracles:

- libolm (python-olm), the reference implementation of the Megolm specification
  (matrix-org/olm ``docs/megolm.md``), for the ratchet values ``R(i)``, in both
  directions (we import into olm; olm's outbound session is read by us);
- a naive ratchet written here from the specification's per-index rules;
- an HKDF and an AEAD call written here from the documented message-key and
  associated-data formats, to open what :class:`OutboundSession` seals.

Then round trips, replay, the window of skipped keys, ``merge``, forward
secrecy of what is stored, tampering, and the cost bound of ``advance_to``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import os
import random
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from olm import InboundGroupSession, OutboundGroupSession  # type: ignore[attr-defined]

from p2ptchap.core import codec, megolm
from p2ptchap.core.errors import DecodeError, RemoteError
from p2ptchap.core.megolm import (
    AD_CONTEXT,
    KEY_INFO,
    MAX_INDEX,
    RATCHET_SIZE,
    SESSION_ID_SIZE,
    WINDOW,
    InboundSession,
    MegolmError,
    OutboundSession,
    Ratchet,
    associated_data,
    message_key,
)

ROOM = b"R" * 32
OTHER_ROOM = b"r" * 32
DEVICE = b"D" * 32
OTHER_DEVICE = b"d" * 32


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


# --- independent references ---------------------------------------------------------------


def h(part: bytes, j: int) -> bytes:
    """The specification's ``H_j(A)``: HMAC-SHA-256 keyed with ``A`` over the byte ``j``."""
    return hmac.new(part, bytes([j]), hashlib.sha256).digest()


def spec_step(index: int, data: bytes) -> bytes:
    """``R(index + 1)`` from ``R(index)``, by the specification's rules for ``i = index + 1``."""
    i = index + 1
    parts = [data[32 * k : 32 * (k + 1)] for k in range(4)]
    if i % 2**24 == 0:
        first = 0
    elif i % 2**16 == 0:
        first = 1
    elif i % 2**8 == 0:
        first = 2
    else:
        first = 3
    source = parts[first]
    for k in range(first, 4):
        parts[k] = h(source, k)
    return b"".join(parts)


def spec_walk(index: int, data: bytes, target: int) -> bytes:
    for i in range(index, target):
        data = spec_step(i, data)
    return data


def reference_message_key(data: bytes) -> bytes:
    """HKDF-SHA-256 (RFC 5869) of the ratchet, empty salt, the documented info, 56 bytes."""
    prk = hmac.new(bytes(32), data, hashlib.sha256).digest()
    t1 = hmac.new(prk, KEY_INFO + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + KEY_INFO + b"\x02", hashlib.sha256).digest()
    return (t1 + t2)[:56]


def reference_open(
    data: bytes, ciphertext: bytes, room: bytes, session: bytes, index: int, device: bytes
) -> bytes:
    """Open a message with nothing from the module but the documented formats."""
    key = reference_message_key(data)
    ad = b"p2ptchap/1 megolm\x00" + room + session + index.to_bytes(4, "big") + device
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ciphertext, ad, key[32:], key[:32]
    )


# --- libolm -------------------------------------------------------------------------------


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def olm_import(index: int, data: bytes) -> InboundGroupSession:
    """An olm inbound session from libolm's export format (v1, index, ratchet, key)."""
    raw = b"\x01" + index.to_bytes(4, "big") + data + bytes(range(32))
    return InboundGroupSession.import_session(base64.b64encode(raw).decode().rstrip("="))


def olm_ratchet(session: InboundGroupSession, index: int) -> bytes:
    raw = _unb64(session.export_session(index))
    assert raw[0] == 0x01
    assert int.from_bytes(raw[1:5], "big") == index
    return raw[5 : 5 + RATCHET_SIZE]


#: libolm reads an index more than 2^31 after its latest ratchet as one before it.
OLM_REACH = 2**31 - 1


def olm_advance(start: int, data: bytes, target: int) -> bytes:
    """``R(target)`` computed by libolm alone, re-importing every 2^31 − 1 steps."""
    while target - start > OLM_REACH:
        data, start = olm_ratchet(olm_import(start, data), start + OLM_REACH), start + OLM_REACH
    return olm_ratchet(olm_import(start, data), target)


def _byte() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 2, 254, 255]), st.integers(0, 255))


#: Indices whose bytes are often at a boundary (0, 1, 254, 255).
indices = st.builds(lambda a, b, c, d: a << 24 | b << 16 | c << 8 | d, *[_byte()] * 4)

BOUNDARIES = sorted(
    {
        0,
        1,
        2,
        254,
        255,
        256,
        257,
        511,
        512,
        513,
        65534,
        65535,
        65536,
        65537,
        65792,
        2**24 - 257,
        2**24 - 256,
        2**24 - 1,
        2**24,
        2**24 + 1,
        2**24 + 256,
        2**24 + 65536,
        2**25 - 1,
        2**25,
        *(
            2**24 * k + 2**16 * m + 2**8 * n + d
            for k in (1, 7, 255)
            for m in (0, 1, 255)
            for n in (0, 1, 255)
            for d in (0, 1, 255)
        ),
        MAX_INDEX - 256,
        MAX_INDEX - 255,
        MAX_INDEX - 1,
        MAX_INDEX,
    }
)


# --- the ratchet --------------------------------------------------------------------------


def test_first_step_rehashes_only_the_last_part() -> None:
    data = bytes(range(128))
    after = Ratchet(0, data).advance()
    assert after.index == 1
    assert after.data == data[:96] + h(data[96:], 3)


@pytest.mark.parametrize(
    ("index", "first_rederived"),
    [(1, 3), (255, 3), (256, 2), (512, 2), (65536, 1), (2**24, 0), (2**24 + 256, 2), (2**31, 0)],
)
def test_single_step_follows_the_specification(index: int, first_rederived: int) -> None:
    data = os.urandom(128)
    parts = [data[32 * k : 32 * (k + 1)] for k in range(4)]
    source = parts[first_rederived]
    expected = parts[:first_rederived] + [h(source, k) for k in range(first_rederived, 4)]
    assert Ratchet(index - 1, data).advance() == Ratchet(index, b"".join(expected))


@pytest.mark.parametrize("target", BOUNDARIES)
def test_advance_to_matches_libolm_from_zero(target: int) -> None:
    data = seeded(target)(128)
    assert Ratchet(0, data).advance_to(target).data == olm_advance(0, data, target)


@pytest.mark.parametrize("start", [1, 255, 256, 257, 65535, 65536, 2**24 - 1, 2**24, 2**31 + 77])
def test_advance_to_matches_libolm_from_other_starts(start: int) -> None:
    data = seeded(start)(128)
    ratchet = Ratchet(start, data)
    for target in [start, *(b for b in BOUNDARIES if b > start)]:
        assert ratchet.advance_to(target).data == olm_advance(start, data, target), target


def test_every_index_across_a_2_24_boundary_matches_libolm_and_the_spec() -> None:
    start = 2**24 - 300
    data = os.urandom(128)
    oracle = olm_import(start, data)
    ratchet, naive = Ratchet(start, data), data
    for index in range(start, 2**24 + 300):
        assert ratchet.index == index
        assert ratchet.data == naive == olm_ratchet(oracle, index)
        assert Ratchet(start, data).advance_to(index) == ratchet
        ratchet, naive = ratchet.advance(), spec_step(index, naive)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=128, max_size=128), a=indices, b=indices)
def test_advance_to_matches_libolm_anywhere(data: bytes, a: int, b: int) -> None:
    start, target = min(a, b), max(a, b)
    assert olm_ratchet(olm_import(start, data), start) == data
    assert Ratchet(start, data).advance_to(target).data == olm_advance(start, data, target)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=128, max_size=128),
    start=st.integers(0, MAX_INDEX),
    distance=st.integers(0, MAX_INDEX),
)
def test_advance_to_matches_libolm_uniform(data: bytes, start: int, distance: int) -> None:
    target = min(MAX_INDEX, start + distance)
    assert Ratchet(start, data).advance_to(target).data == olm_advance(start, data, target)


def test_reads_libolm_outbound_sessions() -> None:
    """The other direction: olm's own sending ratchet, read and advanced by us."""
    outbound = OutboundGroupSession()
    key = _unb64(outbound.session_key)
    assert len(key) == 1 + 4 + 128 + 32 + 64
    assert key[0] == 0x02
    ours = Ratchet(int.from_bytes(key[1:5], "big"), key[5:133])
    assert ours.index == outbound.message_index == 0
    inbound = InboundGroupSession(outbound.session_key)
    stepped = ours
    for n in range(1, 600):
        outbound.encrypt(f"message {n}")
        assert outbound.message_index == n
        stepped = stepped.advance()
        if n in (1, 2, 100, 255, 256, 257, 511, 512, 599):
            current = _unb64(outbound.session_key)
            assert int.from_bytes(current[1:5], "big") == n
            assert current[5:133] == stepped.data
            assert olm_ratchet(inbound, n) == stepped.data == ours.advance_to(n).data
    for target in BOUNDARIES:
        if target <= OLM_REACH:
            assert olm_ratchet(inbound, target) == ours.advance_to(target).data
        assert olm_advance(0, ours.data, target) == ours.advance_to(target).data


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=128, max_size=128), start=indices, steps=st.integers(0, 700))
def test_advance_to_matches_the_naive_spec_and_repeated_advance(
    data: bytes, start: int, steps: int
) -> None:
    target = min(MAX_INDEX, start + steps)
    ratchet = Ratchet(start, data)
    one_by_one = ratchet
    for _ in range(start, target):
        one_by_one = one_by_one.advance()
    naive = Ratchet(target, spec_walk(start, data, target))
    assert one_by_one == ratchet.advance_to(target) == naive


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=128, max_size=128), a=indices, b=indices, c=indices)
def test_advance_to_composes(data: bytes, a: int, b: int, c: int) -> None:
    first, middle, last = sorted((a, b, c))
    ratchet = Ratchet(first, data)
    assert ratchet.advance_to(middle).advance_to(last) == ratchet.advance_to(last)


def test_advance_to_same_index_is_identity() -> None:
    ratchet = Ratchet(300, os.urandom(128))
    assert ratchet.advance_to(300) == ratchet


@pytest.mark.parametrize(("start", "target"), [(1, 0), (256, 255), (MAX_INDEX, 0), (5, -1)])
def test_advance_to_backwards_raises(start: int, target: int) -> None:
    with pytest.raises(MegolmError):
        Ratchet(start, bytes(128)).advance_to(target)


def test_advance_beyond_max_index_raises() -> None:
    with pytest.raises(MegolmError):
        Ratchet(0, bytes(128)).advance_to(MAX_INDEX + 1)
    with pytest.raises(MegolmError):
        Ratchet(MAX_INDEX, bytes(128)).advance()
    assert Ratchet(MAX_INDEX - 1, bytes(128)).advance().index == MAX_INDEX
    assert issubclass(MegolmError, RemoteError)


@pytest.mark.parametrize(
    ("index", "data"),
    [(0, b""), (0, bytes(127)), (0, bytes(129)), (-1, bytes(128)), (MAX_INDEX + 1, bytes(128))],
)
def test_ratchet_validates(index: int, data: bytes) -> None:
    with pytest.raises(DecodeError):
        Ratchet(index, data)


def test_generate_uses_the_rng() -> None:
    assert Ratchet.generate(seeded(1)) == Ratchet(0, seeded(1)(128))


@contextlib.contextmanager
def counting_hmacs() -> Iterator[list[int]]:
    """Counts every HMAC the megolm module computes (those of its ratchet)."""
    calls = [0]

    def counting_new(key: bytes, msg: bytes, digestmod: Any) -> Any:
        calls[0] += 1
        return hmac.new(key, msg, digestmod)

    namespace = types.SimpleNamespace(new=counting_new, compare_digest=hmac.compare_digest)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(megolm, "hmac", namespace)
        yield calls


@pytest.fixture
def hmac_calls() -> Iterator[list[int]]:
    with counting_hmacs() as calls:
        yield calls


def test_advance_to_cost_is_bounded(hmac_calls: list[int]) -> None:
    ratchet = Ratchet(0, os.urandom(128))
    started = time.perf_counter()
    far = ratchet.advance_to(MAX_INDEX)
    assert time.perf_counter() - started < 1.0
    assert hmac_calls[0] <= 4 * 256 + 4
    assert hmac_calls[0] > 0  # the counter does see the ratchet's HMACs
    assert far.data == olm_advance(0, ratchet.data, MAX_INDEX)


@settings(max_examples=100, deadline=None)
@given(a=indices, b=indices)
def test_advance_to_cost_is_bounded_anywhere(a: int, b: int) -> None:
    with counting_hmacs() as calls:
        Ratchet(min(a, b), bytes(128)).advance_to(max(a, b))
    assert calls[0] <= 4 * 256 + 4


# --- keys and associated data -------------------------------------------------------------


@settings(max_examples=50)
@given(index=indices, data=st.binary(min_size=128, max_size=128))
def test_message_key_is_hkdf_of_the_ratchet(index: int, data: bytes) -> None:
    assert KEY_INFO == b"p2ptchap/1 megolm message key"
    key = message_key(Ratchet(index, data))
    assert len(key) == 56
    assert key == reference_message_key(data)


def test_message_keys_differ_per_index() -> None:
    ratchet = Ratchet(0, os.urandom(128))
    keys = set()
    for _ in range(600):
        keys.add(message_key(ratchet))
        ratchet = ratchet.advance()
    assert len(keys) == 600


def test_associated_data_layout() -> None:
    session = b"S" * 32
    ad = associated_data(ROOM, session, 0x01020304, DEVICE)
    assert AD_CONTEXT == b"p2ptchap/1 megolm\x00"
    assert ad == b"p2ptchap/1 megolm\x00" + ROOM + session + b"\x01\x02\x03\x04" + DEVICE
    assert associated_data(ROOM, session, MAX_INDEX, DEVICE)[-36:-32] == b"\xff" * 4


# --- sessions -----------------------------------------------------------------------------


def inbound_for(
    outbound: OutboundSession, at: int = 0, *, owner: bytes = DEVICE, first: bool = False
) -> InboundSession:
    ratchet = outbound.first.advance_to(at)
    return InboundSession(
        outbound.room, owner, outbound.session_id, ratchet, first=ratchet if first else None
    )


def encrypt_at(outbound: OutboundSession, index: int, plaintext: bytes) -> bytes:
    """A message at ``index`` from ``outbound``'s session, through its own ``encrypt``."""
    sender = dataclasses.replace(outbound, ratchet=outbound.first.advance_to(index))
    got, ciphertext = sender.encrypt(DEVICE, plaintext)
    assert got == index
    return ciphertext


def roundtrip(session: InboundSession) -> InboundSession:
    return InboundSession.from_value(codec.decode(codec.encode(session.to_value())))


def test_outbound_create() -> None:
    rng = seeded(7)
    session = OutboundSession.create(ROOM, "shared", 1234, rng)
    expected = seeded(7)
    assert session.ratchet == session.first == Ratchet(0, expected(128))
    assert session.session_id == expected(SESSION_ID_SIZE)
    assert (session.room, session.created, session.history) == (ROOM, 1234, "shared")
    assert session.recipients == {}
    assert session.sent == 0


def test_outbound_encrypt_numbers_messages_and_moves_on() -> None:
    session = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    first = session.first
    for n in range(5):
        index, ciphertext = session.encrypt(DEVICE, b"hello %d" % n)
        assert index == n
        assert session.sent == n + 1
        assert session.ratchet == first.advance_to(n + 1)
        assert len(ciphertext) == len(b"hello %d" % n) + megolm.TAG_SIZE
        # Opened with nothing but the documented key and associated-data formats.
        assert (
            reference_open(
                first.advance_to(n).data, ciphertext, ROOM, session.session_id, n, DEVICE
            )
            == b"hello %d" % n
        )
    assert session.first == first


def test_outbound_value_roundtrip() -> None:
    session = OutboundSession.create(ROOM, "joined", 99, os.urandom)
    session.recipients[OTHER_DEVICE] = b"A" * 32
    for _ in range(3):
        session.encrypt(DEVICE, b"x")
    again = OutboundSession.from_value(codec.decode(codec.encode(session.to_value())))
    assert again == session
    assert again.encrypt(DEVICE, b"y")[0] == 3


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(1, 40),
    order=st.randoms(use_true_random=False),
    serialise=st.booleans(),
)
def test_round_trip_in_any_order_each_index_once(
    count: int, order: random.Random, serialise: bool
) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"message %d" % n) for n in range(count)]
    inbound = inbound_for(outbound)
    shuffled = list(messages)
    order.shuffle(shuffled)
    for index, ciphertext in shuffled:
        assert inbound.decrypt(index, ciphertext) == b"message %d" % index
        with pytest.raises(MegolmError):
            inbound.decrypt(index, ciphertext)  # replay
        if serialise:
            inbound = roundtrip(inbound)
        with pytest.raises(MegolmError):
            inbound.decrypt(index, ciphertext)  # still a replay after storing
        assert len(inbound.skipped) <= WINDOW
    assert inbound.skipped == {}
    assert inbound.used == set(range(count))
    assert inbound.ratchet == outbound.first.advance_to(count)


@settings(max_examples=15, deadline=None)
@given(order=st.permutations(range(WINDOW + 1)))
def test_any_order_within_the_window(order: list[int]) -> None:
    """The newest message first, then all WINDOW older ones in any order: all decrypt."""
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(WINDOW + 1)]
    inbound = inbound_for(outbound)
    assert inbound.decrypt(*messages[WINDOW]) == b"%d" % WINDOW
    for index in order:
        if index == WINDOW:
            continue
        assert inbound.decrypt(*messages[index]) == b"%d" % index
        assert len(inbound.skipped) <= WINDOW
    assert inbound.skipped == {}


def test_too_old_beyond_the_window_raises() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    gap = WINDOW + 10
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(gap + 1)]
    inbound = inbound_for(outbound)
    assert inbound.decrypt(*messages[gap]) == b"%d" % gap
    assert len(inbound.skipped) == WINDOW
    assert min(inbound.skipped) == gap - WINDOW
    for index in range(gap - WINDOW):
        before = inbound.to_value()
        with pytest.raises(MegolmError):
            inbound.decrypt(*messages[index])
        assert inbound.to_value() == before
    for index in range(gap - WINDOW, gap):
        assert inbound.decrypt(*messages[index]) == b"%d" % index


def test_huge_gap_keeps_the_window_and_bounded_cost(hmac_calls: list[int]) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(outbound)
    far = 3_000_000_000
    ciphertext = encrypt_at(outbound, far, b"far")
    hmac_calls[0] = 0
    assert inbound.decrypt(far, ciphertext) == b"far"
    assert len(inbound.skipped) == WINDOW
    assert sorted(inbound.skipped) == list(range(far - WINDOW, far))
    # One jump, then WINDOW steps (the HKDFs are not counted): nowhere near `far` HMACs.
    assert hmac_calls[0] < 10 * WINDOW + 4 * 4 * 256
    assert inbound.decrypt(far - 1, encrypt_at(outbound, far - 1, b"x")) == b"x"
    with pytest.raises(MegolmError):
        inbound.decrypt(far - WINDOW - 1, encrypt_at(outbound, far - WINDOW - 1, b"y"))


@pytest.mark.parametrize("start", [1, 5, 256, 300])
def test_inbound_from_index_k_cannot_decrypt_below_k(start: int) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(start + 3)]
    inbound = inbound_for(outbound, start)
    for index in range(start):
        with pytest.raises(MegolmError):
            inbound.decrypt(*messages[index])
    assert inbound.decrypt(*messages[start + 2]) == b"%d" % (start + 2)
    for index in range(start):
        with pytest.raises(MegolmError):
            inbound.decrypt(*messages[index])
    assert set(inbound.skipped) == {start, start + 1}
    assert inbound.decrypt(*messages[start]) == b"%d" % start


def test_merge_restores_unused_keys_only() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(12)]
    inbound = inbound_for(outbound, 5)
    for index in (7, 9):
        assert inbound.decrypt(*messages[index]) == b"%d" % index
    assert set(inbound.skipped) == {5, 6, 8}
    assert inbound.decrypt(*messages[6]) == b"6"
    # A share at a higher or equal index teaches nothing.
    assert inbound.merge(outbound.first.advance_to(10)) is False
    assert inbound.merge(outbound.first.advance_to(11)) is False
    assert set(inbound.skipped) == {5, 8}
    # A lower share gives back 0..4 but never 6, 7 or 9, which were used.
    assert inbound.merge(outbound.first.advance_to(0)) is True
    assert set(inbound.skipped) == {0, 1, 2, 3, 4, 5, 8}
    assert inbound.merge(outbound.first.advance_to(0)) is False
    for index in (6, 7, 9):
        with pytest.raises(MegolmError):
            inbound.decrypt(*messages[index])
    inbound = roundtrip(inbound)
    for index in (0, 1, 2, 3, 4, 5, 8, 10, 11):
        assert inbound.decrypt(*messages[index]) == b"%d" % index
    for index in range(12):
        with pytest.raises(MegolmError):
            inbound.decrypt(*messages[index])
    assert inbound.merge(outbound.first) is False
    assert inbound.skipped == {}


def test_a_wrong_share_does_not_spoil_held_keys() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(10)]
    inbound = inbound_for(outbound, 5)
    inbound.decrypt(*messages[9])
    assert set(inbound.skipped) == {5, 6, 7, 8}
    with pytest.raises(MegolmError):  # not a share of this session: refused
        inbound.merge(Ratchet(0, os.urandom(128)))
    for index in (5, 6, 7, 8):
        assert inbound.decrypt(*messages[index]) == b"%d" % index


def test_a_wrong_share_does_not_block_the_genuine_one() -> None:
    """A wrong lower share, then the genuine one: the genuine keys are learnt.

    (A share can be checked: advanced to the index we hold, a share of this
    session gives exactly our ratchet.)
    """
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(10)]
    inbound = inbound_for(outbound, 5)
    inbound.decrypt(*messages[9])
    with pytest.raises(MegolmError):  # not a share of this session: refused
        inbound.merge(Ratchet(0, os.urandom(128)))
    inbound.merge(outbound.first)
    for index in range(9):
        assert inbound.decrypt(*messages[index]) == b"%d" % index, index


def test_a_wrong_share_does_not_become_first() -> None:
    """``first`` is passed on to new members: a share not of this session must not replace it."""
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(outbound, 5, first=True)
    inbound.decrypt(9, encrypt_at(outbound, 9, b"x"))
    with pytest.raises(MegolmError):  # not a share of this session: refused
        inbound.merge(Ratchet(0, os.urandom(128)))
    assert inbound.first == outbound.first.advance_to(5)


def test_merge_keeps_the_earliest_first_when_history_is_kept() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(outbound, 10, first=True)
    assert inbound.first == outbound.first.advance_to(10)
    inbound.decrypt(20, encrypt_at(outbound, 20, b"x"))
    inbound.merge(outbound.first.advance_to(3))
    assert inbound.first == outbound.first.advance_to(3)
    inbound.merge(outbound.first.advance_to(7))
    assert inbound.first == outbound.first.advance_to(3)
    assert roundtrip(inbound) == inbound


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(1, 30),
    start=st.sampled_from([0, 250, 65530]),
    order=st.randoms(use_true_random=False),
    decrypted=st.integers(1, 30),
)
def test_stored_value_is_forward_secret(
    count: int, start: int, order: random.Random, decrypted: int
) -> None:
    outbound = OutboundSession.create(ROOM, "secret", 0, os.urandom)
    outbound.ratchet = outbound.first.advance_to(start)
    messages = [outbound.encrypt(DEVICE, b"m%d" % n) for n in range(count)]
    inbound = inbound_for(outbound, start)
    shuffled = list(messages)
    order.shuffle(shuffled)
    for index, ciphertext in shuffled[:decrypted]:
        inbound.decrypt(index, ciphertext)
        blob = codec.encode(inbound.to_value())
        inbound = InboundSession.from_value(codec.decode(blob))
        for used in inbound.used:
            key = message_key(outbound.first.advance_to(used))
            assert key[:32] not in blob
            assert key[32:] not in blob
        for below in range(start, inbound.ratchet.index):
            assert outbound.first.advance_to(below).data not in blob
        assert inbound.ratchet.index == max(inbound.used) + 1
    for index, ciphertext in shuffled[decrypted:]:
        assert inbound.decrypt(index, ciphertext) == b"m%d" % (index - start)


def test_inbound_value_roundtrip() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(6)]
    inbound = inbound_for(outbound, first=True)
    inbound.decrypt(*messages[4])
    inbound.decrypt(*messages[1])
    again = roundtrip(inbound)
    assert again == inbound
    assert again.first == outbound.first
    plain = inbound_for(outbound)
    assert roundtrip(plain) == plain
    assert "first" not in plain.to_value()


# --- tampering ----------------------------------------------------------------------------


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("past", [False, True], ids=["ahead", "skipped"])
def test_every_bit_flip_is_refused_and_changes_nothing(past: bool) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"tamper!") for _ in range(4)]
    inbound = inbound_for(outbound)
    if past:
        inbound.decrypt(*messages[3])  # message 1 is now a skipped key
    index, ciphertext = messages[1]
    before = inbound.to_value()
    for bit in range(len(ciphertext) * 8):
        with pytest.raises(MegolmError):
            inbound.decrypt(index, _flip(ciphertext, bit))
        assert inbound.to_value() == before
    for bad in (ciphertext[:-1], ciphertext + b"\x00", ciphertext[:16], ciphertext[1:]):
        with pytest.raises(MegolmError):
            inbound.decrypt(index, bad)
        assert inbound.to_value() == before
    assert inbound.decrypt(index, ciphertext) == b"tamper!"


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17])
@pytest.mark.parametrize("past", [False, True], ids=["ahead", "skipped"])
def test_short_ciphertexts_are_refused_as_megolm_errors(length: int, past: bool) -> None:
    """Shorter than a tag or not: data from a peer that does not open is a MegolmError."""
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"") for _ in range(3)]
    inbound = inbound_for(outbound)
    if past:
        inbound.decrypt(*messages[2])
    before = inbound.to_value()
    with pytest.raises(MegolmError):
        inbound.decrypt(1, bytes(length))
    assert inbound.to_value() == before
    assert inbound.decrypt(*messages[1]) == b""


@pytest.mark.parametrize(
    "change",
    [
        {"room": OTHER_ROOM},
        {"session_id": b"s" * 32},
        {"owner": OTHER_DEVICE},
    ],
    ids=["room", "session", "device"],
)
def test_other_bindings_are_refused(change: dict[str, bytes]) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    index, ciphertext = outbound.encrypt(DEVICE, b"bound")
    genuine = inbound_for(outbound)
    wrong = dataclasses.replace(genuine, **change)  # type: ignore[arg-type]
    before = wrong.to_value()
    with pytest.raises(MegolmError):
        wrong.decrypt(index, ciphertext)
    assert wrong.to_value() == before
    assert genuine.decrypt(index, ciphertext) == b"bound"


def test_sender_device_is_bound() -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    index, ciphertext = outbound.encrypt(OTHER_DEVICE, b"from another device")
    inbound = inbound_for(outbound, owner=DEVICE)
    before = inbound.to_value()
    with pytest.raises(MegolmError):
        inbound.decrypt(index, ciphertext)
    assert inbound.to_value() == before
    assert inbound_for(outbound, owner=OTHER_DEVICE).decrypt(index, ciphertext) == (
        b"from another device"
    )


@pytest.mark.parametrize("claimed", [0, 2, 3, 300, 2**24 + 1, MAX_INDEX])
def test_other_index_is_refused_and_changes_nothing(claimed: int) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    messages = [outbound.encrypt(DEVICE, b"%d" % n) for n in range(3)]
    inbound = inbound_for(outbound)
    inbound.decrypt(*messages[2])  # indices 0 and 1 are held as skipped keys
    index, ciphertext = messages[1]
    before = inbound.to_value()
    if claimed != index:
        with pytest.raises(MegolmError):
            inbound.decrypt(claimed, ciphertext)
        assert inbound.to_value() == before
    assert inbound.decrypt(index, ciphertext) == b"1"


@pytest.mark.parametrize("index", [-1, MAX_INDEX + 1, 2**64])
def test_index_out_of_range_is_refused(index: int) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    _, ciphertext = outbound.encrypt(DEVICE, b"x")
    inbound = inbound_for(outbound)
    before = inbound.to_value()
    with pytest.raises(MegolmError):
        inbound.decrypt(index, ciphertext)
    assert inbound.to_value() == before


def test_message_of_another_session_is_refused() -> None:
    ours = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    theirs = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(ours)
    with pytest.raises(MegolmError):
        inbound.decrypt(*theirs.encrypt(DEVICE, b"x"))
    assert inbound.decrypt(*ours.encrypt(DEVICE, b"y")) == b"y"


def test_the_last_counter_value_is_never_used_and_refusing_it_changes_nothing() -> None:
    """Index 2^32−1 cannot carry a message: the ratchet could not move past it.

    The receiver refuses it without touching the session; the sender refuses
    to encrypt there (a local error: its session should have been rotated).
    """
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(outbound, MAX_INDEX - 3)
    last = outbound.first.advance_to(MAX_INDEX)
    ad = associated_data(ROOM, outbound.session_id, MAX_INDEX, DEVICE)
    ciphertext = megolm.seal(message_key(last), b"the end", ad)
    before = inbound.to_value()
    with pytest.raises(MegolmError):
        inbound.decrypt(MAX_INDEX, ciphertext)
    assert inbound.to_value() == before
    # The one before it is fine.
    previous = outbound.first.advance_to(MAX_INDEX - 1)
    ad = associated_data(ROOM, outbound.session_id, MAX_INDEX - 1, DEVICE)
    ciphertext = megolm.seal(message_key(previous), b"almost", ad)
    assert inbound.decrypt(MAX_INDEX - 1, ciphertext) == b"almost"
    outbound.ratchet = last
    with pytest.raises(megolm.SessionExhausted):
        outbound.encrypt(DEVICE, b"no room left")


# --- the window, under arbitrary sequences ------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("ahead"), st.integers(0, 2**20)),
        st.tuples(st.just("ahead"), st.integers(0, 3)),
        st.tuples(st.just("behind"), st.integers(1, WINDOW + 20)),
        st.tuples(st.just("merge"), st.integers(1, 2 * WINDOW)),
        st.tuples(st.just("store"), st.just(0)),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 2**16), ops=operations)
def test_window_invariants(start: int, ops: list[tuple[str, int]]) -> None:
    outbound = OutboundSession.create(ROOM, "shared", 0, os.urandom)
    inbound = inbound_for(outbound, start)
    floor, used = start, set()
    for op, amount in ops:
        top = inbound.ratchet.index
        if op == "store":
            inbound = roundtrip(inbound)
        elif op == "merge":
            share = max(0, top - amount)
            held = set(inbound.skipped)
            taught = inbound.merge(outbound.first.advance_to(share))
            assert taught == bool(set(inbound.skipped) - held)
            assert held <= set(inbound.skipped) or len(held) == WINDOW
            floor = min(floor, share)
            # Every unused index of the last WINDOW the share covers is now held.
            for index in range(max(share, top - WINDOW), top):
                assert (index in inbound.skipped) != (index in used)
        else:
            index = top + amount if op == "ahead" else top - amount
            if index < 0:
                continue
            expected = index >= top or (index not in used and index in inbound.skipped)
            if index not in used and max(floor, top - WINDOW) <= index < top:
                assert expected, "an unused index within the window was dropped"
            if index < floor or index in used:
                assert not expected
            ciphertext = encrypt_at(outbound, index, b"%d" % index)
            before = inbound.to_value()
            if expected:
                assert inbound.decrypt(index, ciphertext) == b"%d" % index
                used.add(index)
            else:
                with pytest.raises(MegolmError):
                    inbound.decrypt(index, ciphertext)
                assert inbound.to_value() == before
        assert len(inbound.skipped) <= WINDOW
        assert inbound.used == used
        assert not set(inbound.skipped) & used
        assert all(floor <= index < inbound.ratchet.index for index in inbound.skipped)
        assert inbound.ratchet == outbound.first.advance_to(inbound.ratchet.index)
        if inbound.skipped:
            for index in (min(inbound.skipped), max(inbound.skipped)):
                assert inbound.skipped[index] == message_key(outbound.first.advance_to(index))

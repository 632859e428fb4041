"""What the fuzzers found, each as the smallest input that showed it, kept after the fix.

1. ``vv`` messages accepted version-vector entries in any order and heads
   unsorted or repeated, although protocol §13 says "sorted by device, each
   device once" and "sorted, distinct": two encodings of one vector, and a
   decoder laxer than the specification (found by
   ``test_structural_mutations_signed_again[sync]``).
2. Megolm sessions read back from the key store accepted unknown fields and
   repeated ``used`` indices, silently dropped recipients whose keys were not
   32-byte strings (that device would never be sent the key again), and took
   any value as ``from_owner`` (found by ``...[inbound-session]`` and
   ``...[outbound-session]``).
"""

from __future__ import annotations

import pytest

from p2ptchap.core import codec, sync
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.megolm import InboundSession, OutboundSession
from tests.conftest import NOW, make_rng

ROOM = bytes(32)
D1, D2 = b"\x01" * 32, b"\x02" * 32
E1, E2 = b"\x11" * 32, b"\x12" * 32


def _vv(entries: list[list[codec.Value]], heads: list[codec.Value]) -> bytes:
    return codec.encode({"t": "vv", "room": ROOM, "vv": entries, "heads": heads, "rc": bytes(16)})


def test_a_vector_in_order_with_sorted_heads_is_accepted() -> None:
    message = sync.decode_bytes(_vv([[D1, 3, E1], [D2, 1, E2]], [E1, E2]))
    assert message == sync.Vector(ROOM, {D1: (3, E1), D2: (1, E2)}, (E1, E2), bytes(16))
    assert sync.encode(message) == _vv([[D1, 3, E1], [D2, 1, E2]], [E1, E2])


@pytest.mark.parametrize(
    ("entries", "heads"),
    [
        ([[D2, 1, E2], [D1, 3, E1]], []),  # devices out of order
        ([[D1, 1, E2], [D1, 3, E1]], []),  # a device twice
        ([], [E2, E1]),  # heads out of order
        ([], [E1, E1]),  # a head twice
    ],
    ids=["unsorted-devices", "repeated-device", "unsorted-heads", "repeated-head"],
)
def test_a_vector_not_in_its_one_encoding_is_refused(
    entries: list[list[codec.Value]], heads: list[codec.Value]
) -> None:
    with pytest.raises(DecodeError):
        sync.decode_bytes(_vv(entries, heads))


def _sessions() -> tuple[OutboundSession, InboundSession]:
    outbound = OutboundSession.create(ROOM, "shared", NOW, make_rng(3))
    outbound.recipients[D1] = D2
    inbound = InboundSession(ROOM, D1, outbound.session_id, outbound.first, first=outbound.first)
    for _ in range(3):
        index, ciphertext = outbound.encrypt(D1, b"x")
    inbound.decrypt(index, ciphertext)
    return outbound, inbound


def test_stored_sessions_read_back_as_they_were() -> None:
    outbound, inbound = _sessions()
    assert OutboundSession.from_value(outbound.to_value()) == outbound
    assert InboundSession.from_value(inbound.to_value()) == inbound


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v.update(extra=1),
        lambda v: v.update(used=[2, 2]),
        lambda v: v.update(used=[2, 1]),
        lambda v: v.update(used=[True]),
        lambda v: v.update(from_owner=1),
        lambda v: v.pop("first"),
        lambda v: v.update(skipped={-1: bytes(56)}),
    ],
    ids=[
        "extra-field",
        "repeated-used",
        "unsorted-used",
        "bool-used",
        "int-flag",
        "half-first",
        "negative-skip",
    ],
)
def test_a_damaged_inbound_session_is_refused(damage) -> None:  # type: ignore[no-untyped-def]
    _, inbound = _sessions()
    value = inbound.to_value()
    damage(value)
    with pytest.raises(DecodeError):
        InboundSession.from_value(codec.decode_trusted(codec.encode(value)))


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v.update(extra=1),
        lambda v: v.update(recipients={"x": {D1: D2}}),
        lambda v: v.update(recipients={D1: b"short"}),
    ],
    ids=["extra-field", "nested-recipient", "short-account"],
)
def test_a_damaged_outbound_session_is_refused(damage) -> None:  # type: ignore[no-untyped-def]
    outbound, _ = _sessions()
    value = outbound.to_value()
    damage(value)
    with pytest.raises(DecodeError):
        OutboundSession.from_value(codec.decode_trusted(codec.encode(value)))

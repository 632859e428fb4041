"""Replication, the pure part: sync messages, version vectors, ``missing``, access, receipts.

Tested from the contract in :mod:`p2ptchap.core.sync`'s docstrings: every
message round-trips and anything malformed raises ``DecodeError`` alone;
``missing`` asks for exactly what we lack within its bounds; ``access``
follows our state of the room; receipts are signed by their device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import MAX_EVENT_BYTES, MAX_PREV, Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey, AccountSecret, DeviceSecret
from p2ptchap.core.room import RoomState
from p2ptchap.core.sync import (
    MAX_BATCH_EVENTS,
    MAX_KEY_REQUEST,
    MAX_REASON,
    MAX_RECEIPTS,
    MAX_TRUST_IDS,
    MAX_TRUST_ITEMS,
    MAX_VECTOR,
    MAX_WANT_IDS,
    MAX_WANT_RANGES,
    RECEIPT_CONTEXT,
    TYPES,
    Access,
    Events,
    InvalidReceipt,
    KeyRequest,
    ReceiptKind,
    Receipts,
    Refused,
    SyncMessage,
    TrustIds,
    TrustItems,
    TrustKind,
    TrustSum,
    TrustWant,
    Vector,
    Want,
    access,
    batches,
    covers,
    decode,
    decode_bytes,
    encode,
    make_receipt,
    missing,
    newer,
    parse_receipt,
    trust_digest,
    trust_id,
    version_vector,
)
from tests.conftest import NOW, Org, assert_every_flip_rejected, make_rng

ROOM = bytes(range(32))
D1, D2, D3 = (bytes([n]) * 32 for n in (1, 2, 3))


def eid(n: int) -> bytes:
    """A distinct 32-byte event id."""
    return n.to_bytes(32, "big")


def hold(device_seqs: dict[bytes, set[int] | range]) -> dict[bytes, dict[int, bytes]]:
    """``held`` for the given seqs, each with an id derived from (device, seq)."""
    return {d: {s: eid(d[0] * 1_000_000 + s) for s in seqs} for d, seqs in device_seqs.items()}


def known_of(held: dict[bytes, dict[int, bytes]]) -> set[bytes]:
    return {i for seqs in held.values() for i in seqs.values()}


def asked(want: Want) -> set[tuple[bytes, int]]:
    """Every (device, seq) the ranges of ``want`` cover."""
    return {(d, s) for d, lo, hi in want.ranges for s in range(lo, hi + 1)}


def total_asked(want: Want) -> int:
    return sum(hi - lo + 1 for _, lo, hi in want.ranges) + len(want.ids)


# --- strategies ----------------------------------------------------------------------------

ids32 = st.binary(min_size=32, max_size=32)
uint64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
seqs = st.integers(min_value=1, max_value=(1 << 64) - 1)


@st.composite
def want_ranges(draw: st.DrawFn) -> tuple[bytes, int, int]:
    low = draw(seqs)
    high = draw(st.integers(min_value=low, max_value=(1 << 64) - 1))
    return draw(ids32), low, high


vectors = st.dictionaries(ids32, st.tuples(seqs, ids32), max_size=5)

messages: st.SearchStrategy[SyncMessage] = st.one_of(
    st.builds(
        Vector,
        ids32,
        vectors,
        st.lists(ids32, max_size=MAX_PREV).map(lambda h: tuple(sorted(set(h)))),
        st.binary(min_size=16, max_size=16),
    ),
    st.builds(
        Want,
        ids32,
        st.lists(want_ranges(), max_size=5).map(tuple),
        st.lists(ids32, max_size=5).map(tuple),
    ),
    st.builds(
        Events, ids32, st.lists(st.binary(max_size=64), max_size=5).map(tuple), st.booleans()
    ),
    st.builds(Refused, ids32, st.text(max_size=MAX_REASON)),
    st.builds(TrustSum, ids32, uint64),
    st.builds(TrustIds, st.lists(ids32, max_size=5).map(tuple)),
    st.builds(TrustWant, st.lists(ids32, max_size=5).map(tuple)),
    st.builds(
        TrustItems,
        st.lists(st.tuples(st.sampled_from(TrustKind), st.binary(max_size=64)), max_size=5).map(
            tuple
        ),
    ),
    st.builds(Receipts, ids32, st.lists(st.binary(max_size=64), max_size=5).map(tuple)),
)


# --- messages: round trips -----------------------------------------------------------------


@given(messages)
def test_every_message_round_trips(message: SyncMessage) -> None:
    raw = encode(message)
    assert decode_bytes(raw) == message
    assert decode(codec.expect_map(codec.decode(raw), "message")) == message
    assert encode(decode_bytes(raw)) == raw


@pytest.mark.parametrize(
    "message",
    [
        Vector(ROOM, {D1: (3, eid(1)), D2: (1, eid(2))}, (eid(5), eid(6)), bytes(16)),
        Vector(ROOM, {}, (), b"\xff" * 16),
        Want(ROOM, ((D1, 1, 4), (D2, 7, 7)), (eid(9),)),
        Want(ROOM, (), ()),
        Events(ROOM, (b"event one", b""), True),
        Events(ROOM, (), False),
        Refused(ROOM, "not-a-member"),
        TrustSum(eid(1), 0),
        TrustSum(eid(1), (1 << 64) - 1),
        TrustIds((eid(1), eid(2))),
        TrustWant((eid(3),)),
        TrustItems(tuple((kind, kind.value.encode()) for kind in TrustKind)),
        Receipts(ROOM, (b"receipt",)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_each_message_type_round_trips(message: SyncMessage) -> None:
    assert decode_bytes(encode(message)) == message


def test_vector_heads_are_sent_sorted_and_deduplicated() -> None:
    message = Vector(ROOM, {D1: (2, eid(1))}, (eid(3), eid(1), eid(3), eid(2)), bytes(16))
    back = decode_bytes(encode(message))
    assert isinstance(back, Vector)
    assert back.heads == (eid(1), eid(2), eid(3))
    assert back.vector == message.vector
    # The order heads were given in, or repeats, do not change the bytes; the set does.
    same = Vector(ROOM, message.vector, (eid(2), eid(1), eid(3)), bytes(16))
    fewer = Vector(ROOM, message.vector, (eid(2), eid(1)), bytes(16))
    assert encode(message) == encode(same) != encode(fewer)


def test_encode_refuses_what_is_not_a_sync_message() -> None:
    with pytest.raises(TypeError):
        encode("vv")  # type: ignore[arg-type]


# --- messages: malformed input -------------------------------------------------------------


def body_of(message: SyncMessage) -> dict[codec.Key, codec.Value]:
    return codec.expect_map(codec.decode(encode(message)), "message")


def with_(message: SyncMessage, **changes: codec.Value) -> dict[codec.Key, codec.Value]:
    return {**body_of(message), **changes}


def without(message: SyncMessage, key: str) -> dict[codec.Key, codec.Value]:
    body = body_of(message)
    del body[key]
    return body


VV = Vector(ROOM, {D1: (2, eid(1))}, (eid(1),), bytes(16))
WANT = Want(ROOM, ((D1, 1, 2),), (eid(1),))
EVENTS = Events(ROOM, (b"x",), False)
REFUSED = Refused(ROOM, "no")
TSUM = TrustSum(eid(1), 3)
TIDS = TrustIds((eid(1),))
TWANT = TrustWant((eid(1),))
TRUST = TrustItems(((TrustKind.ACCOUNT, b"cert"),))
RECEIPTS = Receipts(ROOM, (b"r",))
KEYREQ = KeyRequest(ROOM, (eid(2),))
EVERY = (VV, WANT, EVENTS, REFUSED, TSUM, TIDS, TWANT, TRUST, RECEIPTS, KEYREQ)


def vv_entry(device: codec.Value, seq: codec.Value, top: codec.Value) -> codec.Value:
    return [[device, seq, top]]


MALFORMED: dict[str, dict[codec.Key, codec.Value]] = {
    # the type
    "unknown t": {"t": "vector"},
    "t missing": {"room": ROOM},
    "t not text": {"t": 1, "room": ROOM},
    "t is bytes": with_(VV, t=b"vv"),
    # sizes
    "vv room 31 bytes": with_(VV, room=ROOM[:31]),
    "vv room 33 bytes": with_(VV, room=ROOM + b"\x00"),
    "vv room text": with_(VV, room="room"),
    "vv rc 15 bytes": with_(VV, rc=bytes(15)),
    "vv rc 17 bytes": with_(VV, rc=bytes(17)),
    "vv rc 32 bytes": with_(VV, rc=bytes(32)),
    "vv device 31 bytes": with_(VV, vv=vv_entry(D1[:31], 1, eid(1))),
    "vv device 33 bytes": with_(VV, vv=vv_entry(D1 + b"\x00", 1, eid(1))),
    "vv top id 31 bytes": with_(VV, vv=vv_entry(D1, 1, eid(1)[:31])),
    "vv head 31 bytes": with_(VV, heads=[eid(1)[:31]]),
    "want room 31 bytes": with_(WANT, room=ROOM[:31]),
    "want device 33 bytes": with_(WANT, ranges=[[D1 + b"\x00", 1, 2]]),
    "want id 31 bytes": with_(WANT, ids=[eid(1)[:31]]),
    "events room 33 bytes": with_(EVENTS, room=ROOM + b"\x00"),
    "refused room 31 bytes": with_(REFUSED, room=ROOM[:31]),
    "key-req room 31 bytes": with_(KEYREQ, room=ROOM[:31]),
    "key-req session 33 bytes": with_(KEYREQ, sessions=[eid(2) + b"\x00"]),
    "key-req too many sessions": with_(KEYREQ, sessions=[eid(2)] * (MAX_KEY_REQUEST + 1)),
    "key-req sessions not a list": with_(KEYREQ, sessions=eid(2)),
    "key-req extra field": with_(KEYREQ, extra=1),
    "receipts room 31 bytes": with_(RECEIPTS, room=ROOM[:31]),
    "trust-sum digest 31 bytes": with_(TSUM, digest=eid(1)[:31]),
    "trust-ids id 33 bytes": with_(TIDS, ids=[eid(1) + b"\x00"]),
    "trust-want id 31 bytes": with_(TWANT, ids=[eid(1)[:31]]),
    # the version vector
    "vv device twice": with_(VV, vv=[[D1, 1, eid(1)], [D1, 2, eid(2)]]),
    "vv seq 0": with_(VV, vv=vv_entry(D1, 0, eid(1))),
    "vv seq negative": with_(VV, vv=vv_entry(D1, -1, eid(1))),
    "vv seq true": with_(VV, vv=vv_entry(D1, True, eid(1))),
    "vv seq text": with_(VV, vv=vv_entry(D1, "1", eid(1))),
    "vv entry of two": with_(VV, vv=[[D1, 1]]),
    "vv entry of four": with_(VV, vv=[[D1, 1, eid(1), 0]]),
    "vv entry not a list": with_(VV, vv=[D1]),
    "vv not a list": with_(VV, vv={D1: [1, eid(1)]}),
    "vv heads not a list": with_(VV, heads=eid(1)),
    # want
    "want range ends before it starts": with_(WANT, ranges=[[D1, 5, 4]]),
    "want range from 0": with_(WANT, ranges=[[D1, 0, 4]]),
    "want range to 0": with_(WANT, ranges=[[D1, 0, 0]]),
    "want range from true": with_(WANT, ranges=[[D1, True, 4]]),
    "want range to true": with_(WANT, ranges=[[D1, 1, True]]),
    "want range of two": with_(WANT, ranges=[[D1, 1]]),
    "want range not a list": with_(WANT, ranges=[D1]),
    "want ids not a list": with_(WANT, ids=eid(1)),
    # events
    "events element text": with_(EVENTS, events=["event"]),
    "events element int": with_(EVENTS, events=[1]),
    "events element over 64 KiB": with_(EVENTS, events=[bytes(MAX_EVENT_BYTES + 1)]),
    "events reply int": with_(EVENTS, reply=1),
    "events reply none": with_(EVENTS, reply=None),
    "events reply text": with_(EVENTS, reply="true"),
    "events not a list": with_(EVENTS, events=b"x"),
    # refused
    "refused reason too long": with_(REFUSED, reason="x" * (MAX_REASON + 1)),
    "refused reason bytes": with_(REFUSED, reason=b"no"),
    # trust
    "trust-sum n true": with_(TSUM, n=True),
    "trust-sum n false": with_(TSUM, n=False),
    "trust-sum n negative": with_(TSUM, n=-1),
    "trust-sum n bytes": with_(TSUM, n=b"\x03"),
    "trust unknown kind": with_(TRUST, items=[["certificate", b"cert"]]),
    "trust kind bytes": with_(TRUST, items=[[b"account", b"cert"]]),
    "trust kind list": with_(TRUST, items=[[["account"], b"cert"]]),
    "trust kind map": with_(TRUST, items=[[{"k": "account"}, b"cert"]]),
    "trust raw text": with_(TRUST, items=[["account", "cert"]]),
    "trust item of three": with_(TRUST, items=[["account", b"cert", b""]]),
    "trust item of one": with_(TRUST, items=[["account"]]),
    # receipts
    "receipts element text": with_(RECEIPTS, items=["r"]),
    "receipts not a list": with_(RECEIPTS, items=b"r"),
}
for _message in EVERY:
    _body = body_of(_message)
    MALFORMED[f"{_body['t']} extra key"] = {**_body, "extra": 0}
    for _key in _body:
        if _key != "t":
            MALFORMED[f"{_body['t']} without {_key}"] = without(_message, str(_key))


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_decode_error(body: dict[codec.Key, codec.Value]) -> None:
    with pytest.raises(DecodeError):
        decode(body)
    with pytest.raises(DecodeError):
        decode_bytes(codec.encode(body))


def test_the_bodies_the_malformed_ones_derive_from_are_valid() -> None:
    # Otherwise the table above could pass for the wrong reason.
    for message in EVERY:
        assert decode(body_of(message)) == message


# Each: (the bound, a body holding n items).
BOUNDED: dict[str, tuple[int, Callable[[int], dict[codec.Key, codec.Value]]]] = {
    "vv devices": (
        MAX_VECTOR,
        lambda n: with_(VV, vv=[[i.to_bytes(32, "big"), 1, eid(i)] for i in range(n)]),
    ),
    "vv heads": (MAX_PREV, lambda n: with_(VV, heads=[eid(i) for i in range(n)])),
    "want ranges": (MAX_WANT_RANGES, lambda n: with_(WANT, ranges=[[D1, 1, 1]] * n)),
    "want ids": (MAX_WANT_IDS, lambda n: with_(WANT, ids=[eid(i) for i in range(n)])),
    "events": (MAX_BATCH_EVENTS, lambda n: with_(EVENTS, events=[b""] * n)),
    "trust-ids": (MAX_TRUST_IDS, lambda n: with_(TIDS, ids=[eid(i) for i in range(n)])),
    "trust-want": (MAX_TRUST_IDS, lambda n: with_(TWANT, ids=[eid(i) for i in range(n)])),
    "trust items": (MAX_TRUST_ITEMS, lambda n: with_(TRUST, items=[["device", b""]] * n)),
    "receipts": (MAX_RECEIPTS, lambda n: with_(RECEIPTS, items=[b""] * n)),
}


@pytest.mark.parametrize("bound, build", BOUNDED.values(), ids=BOUNDED.keys())
def test_counts_up_to_the_bound_pass_and_one_more_is_refused(
    bound: int, build: Callable[[int], dict[codec.Key, codec.Value]]
) -> None:
    decode_bytes(codec.encode(build(bound)))
    with pytest.raises(DecodeError):
        decode_bytes(codec.encode(build(bound + 1)))


def test_an_event_of_exactly_64_kib_passes() -> None:
    body = with_(EVENTS, events=[bytes(MAX_EVENT_BYTES)])
    assert decode_bytes(codec.encode(body)) == Events(ROOM, (bytes(MAX_EVENT_BYTES),), False)


def test_bytes_that_are_not_a_map_or_not_cbor_raise_decode_error() -> None:
    for data in (b"", b"\xff", codec.encode([1, 2]), codec.encode("vv"), encode(VV) + b"\x00"):
        with pytest.raises(DecodeError):
            decode_bytes(data)


# Values shaped like the fields (32- and 16-byte strings, small ints, [device, seq, id]
# triples) so the fuzz reaches the checks past the first one, and anything else CBOR holds.
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1),
    st.integers(min_value=-2, max_value=5),
    st.binary(max_size=40),
    ids32,
    st.binary(min_size=16, max_size=16),
    st.sampled_from([bytes(MAX_EVENT_BYTES), bytes(MAX_EVENT_BYTES + 1)]),
    st.text(max_size=70),
    st.sampled_from([k.value for k in TrustKind]),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(), st.binary(max_size=5)),
            children,
            max_size=3,
        ),
    ),
    max_leaves=12,
)
FIELDS = (
    "room",
    "vv",
    "heads",
    "rc",
    "ranges",
    "ids",
    "events",
    "reply",
    "reason",
    "digest",
    "n",
    "items",
    "extra",
)


@st.composite
def sync_bodies(draw: st.DrawFn) -> dict[codec.Key, codec.Value]:
    kind = draw(st.sampled_from(sorted(TYPES)))
    base = body_of(next(m for m in EVERY if body_of(m)["t"] == kind))
    body: dict[codec.Key, codec.Value] = {"t": kind}
    for key in draw(st.sets(st.sampled_from(FIELDS), max_size=6)) | set(base) - {"t"}:
        if key in base and draw(st.booleans()):
            value = base[key]
            if isinstance(value, list) and draw(st.booleans()):
                value = [*value, draw(cbor_values)]  # a valid list with one odd element
            body[key] = value
        elif draw(st.integers(0, 4)):  # mostly present: missing keys are the first check
            body[key] = draw(cbor_values)
    return body


@given(sync_bodies())
def test_decode_of_any_map_raises_nothing_but_decode_error(
    body: dict[codec.Key, codec.Value],
) -> None:
    try:
        message = decode(body)
    except DecodeError:
        return
    # What passes is a message that survives the wire unchanged.
    assert decode_bytes(encode(message)) == message


@given(
    st.dictionaries(st.text(max_size=8), cbor_values, max_size=6), st.sampled_from(sorted(TYPES))
)
def test_decode_of_a_random_map_with_a_sync_type_raises_only_decode_error(
    body: dict[codec.Key, codec.Value], kind: str
) -> None:
    with contextlib.suppress(DecodeError):
        decode({**body, "t": kind})


# --- version vectors -----------------------------------------------------------------------


def test_version_vector_is_the_contiguous_prefix_per_device() -> None:
    held = {D1: {1: eid(11), 2: eid(12), 3: eid(13)}, D2: {1: eid(21), 2: eid(22), 4: eid(24)}}
    assert version_vector(held) == {D1: (3, eid(13)), D2: (2, eid(22))}


def test_devices_without_seq_one_are_absent_from_the_vector() -> None:
    held = {D1: {2: eid(12), 3: eid(13)}, D2: {}, D3: {1: eid(31)}}
    assert version_vector(held) == {D3: (1, eid(31))}
    assert version_vector({}) == {}


@given(
    st.dictionaries(
        st.sampled_from([D1, D2, D3]), st.sets(st.integers(min_value=1, max_value=12), max_size=12)
    )
)
def test_version_vector_property(held_seqs: dict[bytes, set[int]]) -> None:
    held = hold(held_seqs)
    vector = version_vector(held)
    for device, seqs_held in held_seqs.items():
        top = 0
        while top + 1 in seqs_held:
            top += 1
        if top == 0:
            assert device not in vector
        else:
            assert vector[device] == (top, held[device][top])
    assert set(vector) <= set(held_seqs)


def test_covers_reads_a_version_vector() -> None:
    vector = {D1: (3, eid(1))}
    assert covers(vector, D1, 1) and covers(vector, D1, 3)
    assert not covers(vector, D1, 4)
    assert not covers(vector, D2, 1)


# --- missing -------------------------------------------------------------------------------


def test_missing_asks_for_the_gaps_up_to_the_peers_top_in_ranges() -> None:
    held = hold({D1: {1, 2, 5, 8}, D2: set()})
    theirs = {D1: (10, eid(999)), D2: (3, eid(998))}
    want = missing(held, known_of(held), theirs, (), room=ROOM)
    assert want.room == ROOM
    assert sorted(want.ranges) == [(D1, 3, 4), (D1, 6, 7), (D1, 9, 10), (D2, 1, 3)]
    assert want.ids == ()


def test_missing_asks_nothing_of_a_peer_that_has_no_more_than_us() -> None:
    held = hold({D1: range(1, 6)})
    vector = version_vector(held)
    assert missing(held, known_of(held), vector, (), room=ROOM).empty
    # Behind us: nothing either.
    assert missing(held, known_of(held), {D1: (2, held[D1][2])}, (), room=ROOM).empty
    assert missing(held, known_of(held), {}, (), room=ROOM).empty


def test_missing_asks_nothing_we_hold_even_above_our_vector() -> None:
    held = hold({D1: {1, 3, 4, 6}})
    want = missing(held, known_of(held), {D1: (6, held[D1][6])}, (), room=ROOM)
    assert want.ranges == ((D1, 2, 2), (D1, 5, 5))
    assert want.ids == ()


def test_missing_respects_skip() -> None:
    held = hold({D1: {1}})
    theirs = {D1: (6, eid(999)), D2: (2, eid(998))}
    skip = {(D1, 3), (D1, 4), (D2, 1), (D2, 2)}
    want = missing(held, known_of(held), theirs, (), skip=skip, room=ROOM)
    assert want.ranges == ((D1, 2, 2), (D1, 5, 6))


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 100])
def test_missing_asks_for_at_most_limit_events(limit: int) -> None:
    held = hold({D1: {3}})
    theirs = {D1: (6, eid(999)), D2: (4, eid(998))}
    heads = [eid(500), eid(501)]
    want = missing(held, known_of(held), theirs, heads, [eid(502)], room=ROOM, limit=limit)
    assert 0 < total_asked(want) <= limit
    lacking = {(D1, s) for s in (1, 2, 4, 5, 6)} | {(D2, s) for s in (1, 2, 3, 4)}
    assert asked(want) <= lacking
    if limit >= 100:
        assert asked(want) == lacking and set(want.ids) == {eid(500), eid(501), eid(502)}


def test_fork_ids_count_against_the_limit() -> None:
    held = hold({D1: {1}})
    # D1's top (seq 1) is held with another id: a fork, asked by id; D2 is lacking.
    theirs = {D1: (1, eid(999)), D2: (1, eid(998))}
    want = missing(held, known_of(held), theirs, (), room=ROOM, limit=1)
    assert total_asked(want) <= 1


def test_a_zero_limit_asks_nothing() -> None:
    want = missing({}, set(), {D1: (3, eid(1))}, (eid(2),), room=ROOM, limit=0)
    assert total_asked(want) == 0


def test_missing_asks_by_id_for_a_forked_top() -> None:
    held = hold({D1: {1, 2, 3}, D2: {1, 2}})
    # Same seq as ours for D1, another id: a fork.  D2's top matches ours.
    theirs = {D1: (3, eid(777)), D2: (2, held[D2][2])}
    want = missing(held, known_of(held), theirs, (), room=ROOM)
    assert want.ranges == ()
    assert want.ids == (eid(777),)


def test_a_forked_top_we_know_or_skip_is_not_asked() -> None:
    held = hold({D1: {1, 2}})
    theirs = {D1: (2, eid(777))}
    known = known_of(held) | {eid(777)}  # held keeps the smallest id; we know the other
    assert missing(held, known, theirs, (), room=ROOM).empty
    want = missing(held, known_of(held), theirs, (), skip_ids={eid(777)}, room=ROOM)
    assert want.empty


def test_a_top_inside_a_range_we_ask_for_is_not_asked_again_by_id() -> None:
    held = hold({D1: {1}})
    want = missing(held, known_of(held), {D1: (4, eid(777))}, (), room=ROOM)
    assert want.ranges == ((D1, 2, 4),)
    assert want.ids == ()


def test_missing_asks_for_unknown_heads_and_parents_by_id_without_duplicates() -> None:
    held = hold({D1: {1, 2}})
    known = known_of(held)
    theirs = {D1: (2, eid(777))}  # a fork: eid(777) is asked once, not again as a head
    heads = [held[D1][2], eid(100), eid(101), eid(100), eid(777)]
    parents = [eid(101), eid(102), held[D1][1], eid(102)]
    want = missing(held, known, theirs, heads, parents, room=ROOM)
    assert want.ranges == ()
    assert sorted(want.ids) == sorted([eid(777), eid(100), eid(101), eid(102)])
    assert len(want.ids) == len(set(want.ids))
    assert not known & set(want.ids)


def test_heads_and_parents_in_skip_ids_are_not_asked() -> None:
    want = missing({}, set(), {}, [eid(1), eid(2)], [eid(3)], skip_ids={eid(1), eid(3)}, room=ROOM)
    assert want.ids == (eid(2),)


def test_many_unknown_heads_stop_at_the_limit() -> None:
    heads = [eid(i) for i in range(10)]
    want = missing({}, set(), {}, heads, room=ROOM, limit=4)
    assert len(want.ids) == 4 and set(want.ids) <= set(heads)


def test_a_huge_peer_top_is_asked_one_batch_at_a_time() -> None:
    # A peer may claim any seq: the ranges stay within the batch and the call is quick.
    want = missing({}, set(), {D1: ((1 << 64) - 1, eid(1))}, (), room=ROOM, limit=512)
    assert want.ranges == ((D1, 1, 512),)


def test_wants_that_missing_builds_decode_on_the_other_side() -> None:
    held = hold({D1: {1, 4}})
    theirs = {device: (9, eid(i)) for i, device in enumerate([D1, D2, D3])}
    want = missing(held, known_of(held), theirs, [eid(50)], [eid(51)], room=ROOM)
    assert decode_bytes(encode(want)) == want


def test_a_want_with_many_forked_devices_stays_within_max_want_ids() -> None:
    devices = [(i + 1).to_bytes(32, "big") for i in range(MAX_WANT_IDS + 1)]
    held = {d: {1: eid(0)} for d in devices}
    theirs = {d: (1, eid(i + 1)) for i, d in enumerate(devices)}
    want = missing(held, {eid(0)}, theirs, (), room=ROOM)
    assert len(want.ids) <= MAX_WANT_IDS
    decode_bytes(encode(want))  # the asker's own want must be one a peer accepts


def test_the_number_of_ranges_stays_within_max_want_ranges() -> None:
    # Every other seq held: each gap is a range of its own.
    held = hold({D1: set(range(2, 2 * MAX_WANT_RANGES + 10, 2))})
    theirs = {D1: (2 * MAX_WANT_RANGES + 10, eid(1))}
    want = missing(held, known_of(held), theirs, (), room=ROOM, limit=10_000)
    assert len(want.ranges) == MAX_WANT_RANGES
    decode_bytes(encode(want))


DEVICES = [D1, D2, D3]


@given(
    held_seqs=st.dictionaries(
        st.sampled_from(DEVICES), st.sets(st.integers(min_value=1, max_value=25), max_size=25)
    ),
    tops=st.dictionaries(st.sampled_from(DEVICES), st.integers(min_value=1, max_value=25)),
    skip=st.sets(st.tuples(st.sampled_from(DEVICES), st.integers(min_value=1, max_value=25))),
)
def test_missing_asks_exactly_for_what_we_lack(
    held_seqs: dict[bytes, set[int]], tops: dict[bytes, int], skip: set[tuple[bytes, int]]
) -> None:
    held = hold(held_seqs)
    # The peer agrees with us on its top event when we hold it (no fork).
    theirs = {d: (top, held.get(d, {}).get(top, eid(900 + top))) for d, top in tops.items()}
    want = missing(held, known_of(held), theirs, (), skip=skip, room=ROOM, limit=10**6)
    expected = {
        (d, s)
        for d, top in tops.items()
        for s in range(1, top + 1)
        if s not in held_seqs.get(d, set())
    } - skip
    assert asked(want) == expected
    assert want.ids == ()
    # No overlap, no empty range, and consecutive seqs are merged into one range.
    assert sum(hi - lo + 1 for _, lo, hi in want.ranges) == len(expected)
    ends = {(d, hi) for d, _, hi in want.ranges}
    for d, lo, hi in want.ranges:
        assert 1 <= lo <= hi
        assert (d, lo - 1) not in ends


@given(
    held_seqs=st.dictionaries(
        st.sampled_from(DEVICES), st.sets(st.integers(min_value=1, max_value=25), max_size=25)
    ),
    tops=st.dictionaries(st.sampled_from(DEVICES), st.integers(min_value=1, max_value=25)),
    heads=st.lists(st.integers(min_value=0, max_value=30).map(eid), max_size=8),
    limit=st.integers(min_value=1, max_value=40),
)
def test_missing_stays_within_the_limit_and_makes_progress(
    held_seqs: dict[bytes, set[int]], tops: dict[bytes, int], heads: list[bytes], limit: int
) -> None:
    held = hold(held_seqs)
    known = known_of(held) | {eid(i) for i in range(0, 31, 3)}
    theirs = {d: (top, held.get(d, {}).get(top, eid(900 + top))) for d, top in tops.items()}
    want = missing(held, known, theirs, heads, room=ROOM, limit=limit)
    lacking = {
        (d, s)
        for d, top in tops.items()
        for s in range(1, top + 1)
        if s not in held_seqs.get(d, ())
    }
    unknown_heads = set(heads) - known
    assert total_asked(want) <= limit
    assert asked(want) <= lacking
    assert set(want.ids) <= unknown_heads
    assert len(want.ids) == len(set(want.ids))
    if lacking or unknown_heads:
        assert not want.empty


# --- batches -------------------------------------------------------------------------------


@given(
    st.lists(st.binary(max_size=30), max_size=40),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=80),
)
def test_batches_keep_order_and_bounds(raws: list[bytes], max_events: int, max_bytes: int) -> None:
    parts = batches(raws, max_events, max_bytes)
    assert [raw for part in parts for raw in part] == raws
    for part in parts:
        assert 0 < len(part) <= max_events
        assert sum(map(len, part)) <= max_bytes or len(part) == 1


@given(st.lists(st.binary(max_size=30), max_size=40), st.integers(min_value=1, max_value=80))
def test_an_oversized_item_forms_a_batch_of_its_own(raws: list[bytes], max_bytes: int) -> None:
    for part in batches(raws, 10, max_bytes):
        if any(len(raw) > max_bytes for raw in part):
            assert len(part) == 1


def test_batches_examples() -> None:
    big = bytes(200)
    assert batches([b"a" * 10, big, b"b" * 10], 10, 100) == [[b"a" * 10], [big], [b"b" * 10]]
    assert batches([b"x"] * 5, 2, 100) == [[b"x", b"x"], [b"x", b"x"], [b"x"]]
    assert batches([b"ab", b"cd", b"e"], 10, 4) == [[b"ab", b"cd"], [b"e"]]
    assert batches([], 3, 3) == []
    assert batches(iter([b"a", b"b"]), 3, 3) == [[b"a", b"b"]]


# --- access --------------------------------------------------------------------------------

CREATOR, ALICE, BOB = (AccountKey(bytes([n]) * 32) for n in (10, 11, 12))
STRANGER = AccountKey(bytes([99]) * 32)
A, E = Kind.AGENT, Kind.EXTERNAL


def state(**fields: object) -> RoomState:
    return RoomState(room=ROOM, creator=CREATOR, **fields)  # type: ignore[arg-type]


PRIVATE = {"join_rule": "private"}
PUBLIC = {"join_rule": "public"}
OPEN = {"allow_externals": True}
ACCESS_CASES = [
    # (room fields, membership of ALICE, kind, email, expected)
    (PRIVATE, Membership.JOIN, A, "a@x.gouv.fr", Access.FULL),
    (PRIVATE, Membership.INVITE, A, "a@x.gouv.fr", Access.INVITED),
    (PRIVATE, Membership.LEAVE, A, "a@x.gouv.fr", Access.REMOVED),
    (PRIVATE, Membership.BAN, A, "a@x.gouv.fr", Access.REMOVED),
    (PRIVATE, None, A, "a@x.gouv.fr", Access.OWN),
    (PRIVATE, None, A, "invited@x.gouv.fr", Access.INVITED),
    # public, not direct: any agent stranger, or an invited agent, gets everything
    (PUBLIC, None, A, "a@x.gouv.fr", Access.FULL),
    (PUBLIC, Membership.INVITE, A, "a@x.gouv.fr", Access.FULL),
    (PUBLIC, Membership.JOIN, A, "a@x.gouv.fr", Access.FULL),
    (PUBLIC, Membership.BAN, A, "a@x.gouv.fr", Access.REMOVED),
    (PUBLIC, Membership.LEAVE, A, "a@x.gouv.fr", Access.REMOVED),
    ({**PUBLIC, "direct": True}, None, A, "a@x.gouv.fr", Access.OWN),
    ({**PUBLIC, "direct": True}, Membership.JOIN, A, "a@x.gouv.fr", Access.FULL),
    # externals: nothing at all unless the room allows them, whatever their membership
    (PRIVATE, Membership.JOIN, E, "e@asso.fr", Access.NONE),
    (PRIVATE, Membership.INVITE, E, "e@asso.fr", Access.NONE),
    (PRIVATE, None, E, "invited@x.gouv.fr", Access.NONE),
    (PRIVATE, Membership.BAN, E, "e@asso.fr", Access.NONE),
    (PUBLIC, None, E, "e@asso.fr", Access.NONE),
    (PUBLIC, Membership.JOIN, E, "e@asso.fr", Access.NONE),
    ({**PRIVATE, **OPEN}, Membership.JOIN, E, "e@asso.fr", Access.FULL),
    ({**PRIVATE, **OPEN}, Membership.INVITE, E, "e@asso.fr", Access.INVITED),
    ({**PRIVATE, **OPEN}, Membership.LEAVE, E, "e@asso.fr", Access.REMOVED),
    ({**PRIVATE, **OPEN}, None, E, "invited@x.gouv.fr", Access.INVITED),
    ({**PRIVATE, **OPEN}, None, E, "e@asso.fr", Access.OWN),
    # re-invited by address after leaving: invited again (the rules let it join);
    # a ban is not lifted by an invitation
    (PRIVATE, Membership.LEAVE, A, "invited@x.gouv.fr", Access.INVITED),
    (PRIVATE, Membership.BAN, A, "invited@x.gouv.fr", Access.REMOVED),
    # a public room is public to agents only
    ({**PUBLIC, **OPEN}, None, E, "e@asso.fr", Access.OWN),
    ({**PUBLIC, **OPEN}, Membership.JOIN, E, "e@asso.fr", Access.FULL),
]


@pytest.mark.parametrize("fields, membership, kind, email, expected", ACCESS_CASES)
def test_access(
    fields: dict[str, object],
    membership: Membership | None,
    kind: Kind,
    email: str,
    expected: Access,
) -> None:
    members = {CREATOR: Membership.JOIN, BOB: Membership.JOIN}
    if membership is not None:
        members[ALICE] = membership
    room = state(membership=members, email_invites={"invited@x.gouv.fr"}, **fields)
    assert access(room, ALICE, kind, email) is expected


def test_access_without_a_state_is_none() -> None:
    assert access(None, ALICE, Kind.AGENT, "a@x.gouv.fr") is Access.NONE


def test_only_the_account_itself_is_looked_up() -> None:
    room = state(membership={CREATOR: Membership.JOIN, ALICE: Membership.BAN})
    assert access(room, CREATOR, Kind.AGENT, "c@x.gouv.fr") is Access.FULL
    assert access(room, STRANGER, Kind.AGENT, "s@x.gouv.fr") is Access.OWN


def test_access_with_certified_accounts(org: Org) -> None:
    agent = org.member("camille.dupont@x.gouv.fr").account
    external = org.member("claire@croix-rouge.fr", "Claire", kind=Kind.EXTERNAL).account
    room = state(
        membership={CREATOR: Membership.JOIN, agent.account_key: Membership.JOIN},
        email_invites={external.email},
        allow_externals=True,
    )
    assert access(room, agent.account_key, agent.kind, agent.email) is Access.FULL
    assert access(room, external.account_key, external.kind, external.email) is Access.INVITED
    closed = state(membership=room.membership, email_invites={external.email})
    assert access(closed, external.account_key, external.kind, external.email) is Access.NONE


# --- receipts ------------------------------------------------------------------------------

_RNG = make_rng(77)
DEVICE = DeviceSecret.generate(_RNG)
OTHER_DEVICE = DeviceSecret.generate(_RNG)
ACCOUNT = AccountSecret.generate(_RNG).public_key()


def receipt_bytes(
    vector: dict[bytes, int] | None = None,
    ts: int = NOW,
    kind: ReceiptKind = ReceiptKind.RECEIVED,
    secret: DeviceSecret = DEVICE,
) -> bytes:
    return make_receipt(
        secret, ACCOUNT, kind, ROOM, {D1: 3, D2: 1} if vector is None else vector, ts
    )


@given(
    kind=st.sampled_from(ReceiptKind),
    room=ids32,
    vector=st.dictionaries(ids32, st.integers(min_value=1, max_value=(1 << 64) - 1), max_size=6),
    ts=st.integers(min_value=0, max_value=(1 << 63) - 1),
)
def test_receipts_round_trip(
    kind: ReceiptKind, room: bytes, vector: dict[bytes, int], ts: int
) -> None:
    raw = make_receipt(DEVICE, ACCOUNT, kind, room, vector, ts)
    receipt = parse_receipt(raw)
    assert receipt.kind is kind
    assert receipt.room == room
    assert receipt.account == ACCOUNT
    assert receipt.device == DEVICE.public_key()
    assert receipt.ts == ts
    assert receipt.vector == vector
    assert receipt.raw == raw


def test_receipts_of_a_member_round_trip(org: Org) -> None:
    member = org.member("camille.dupont@x.gouv.fr")
    raw = make_receipt(
        member.device_secret, member.account.account_key, ReceiptKind.READ, ROOM, {D1: 7}, NOW
    )
    receipt = parse_receipt(raw)
    assert (receipt.kind, receipt.account, receipt.device, receipt.vector) == (
        ReceiptKind.READ,
        member.account.account_key,
        member.device_secret.public_key(),
        {D1: 7},
    )


def test_any_flipped_byte_of_a_receipt_is_refused() -> None:
    assert_every_flip_rejected(receipt_bytes(), parse_receipt, (InvalidReceipt,))


def test_a_receipt_re_signed_by_another_device_is_refused() -> None:
    outer = codec.expect_map(codec.decode(receipt_bytes()), "receipt")
    body = outer["body"]
    assert isinstance(body, bytes)
    forged = codec.encode({"body": body, "sig": OTHER_DEVICE.sign(RECEIPT_CONTEXT + body)})
    with pytest.raises(InvalidReceipt):
        parse_receipt(forged)
    # The same body signed by its own device passes: only the signer differs.
    genuine = codec.encode({"body": body, "sig": DEVICE.sign(RECEIPT_CONTEXT + body)})
    assert parse_receipt(genuine).device == DEVICE.public_key()


def test_a_receipt_signed_without_the_receipt_context_is_refused() -> None:
    outer = codec.expect_map(codec.decode(receipt_bytes()), "receipt")
    body = outer["body"]
    assert isinstance(body, bytes)
    with pytest.raises(InvalidReceipt):
        parse_receipt(codec.encode({"body": body, "sig": DEVICE.sign(body)}))


def signed(body: dict[codec.Key, codec.Value]) -> bytes:
    data = codec.encode(body)
    return codec.encode({"body": data, "sig": DEVICE.sign(RECEIPT_CONTEXT + data)})


GOOD_BODY: dict[codec.Key, codec.Value] = {
    "v": 1,
    "kind": "received",
    "room": ROOM,
    "account": bytes(ACCOUNT),
    "device": bytes(DEVICE.public_key()),
    "ts": NOW,
    "vv": [[D1, 3]],
}
BAD_BODIES = {
    "version 2": {"v": 2},
    "unknown kind": {"kind": "delivered"},
    "extra field": {"extra": 1},
    "room 31 bytes": {"room": ROOM[:31]},
    "seq 0": {"vv": [[D1, 0]]},
    "seq true": {"vv": [[D1, True]]},
    "device twice": {"vv": [[D1, 3], [D1, 4]]},
    "device 31 bytes": {"vv": [[D1[:31], 3]]},
    "entry of three": {"vv": [[D1, 3, 0]]},
    "negative ts": {"ts": -1},
    "too many devices": {"vv": [[i.to_bytes(32, "big"), 1] for i in range(MAX_VECTOR + 1)]},
}


@pytest.mark.parametrize("change", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_well_signed_but_malformed_receipts_are_refused(change: dict[str, codec.Value]) -> None:
    assert parse_receipt(signed(GOOD_BODY)).vector == {D1: 3}
    with pytest.raises(InvalidReceipt):
        parse_receipt(signed({**GOOD_BODY, **change}))


def test_receipts_that_are_not_receipts_are_refused() -> None:
    for raw in (b"", b"\x00", codec.encode([1]), codec.encode({"body": b"", "sig": bytes(64)})):
        with pytest.raises(InvalidReceipt):
            parse_receipt(raw)


def test_receipt_covers() -> None:
    receipt = parse_receipt(receipt_bytes({D1: 5}))
    assert receipt.covers(D1, 1) and receipt.covers(D1, 5)
    assert not receipt.covers(D1, 6)
    assert not receipt.covers(D2, 1)


def test_a_later_receipt_is_newer_whatever_it_covers() -> None:
    early = parse_receipt(receipt_bytes({D1: 100}, ts=NOW))
    late = parse_receipt(receipt_bytes({D1: 1}, ts=NOW + 1))
    assert newer(late, early) and not newer(early, late)


def test_at_the_same_time_the_receipt_covering_more_is_newer() -> None:
    less = parse_receipt(receipt_bytes({D1: 3, D2: 1}))
    more = parse_receipt(receipt_bytes({D1: 2, D2: 3}))
    assert newer(more, less) and not newer(less, more)


def test_at_equal_time_and_coverage_the_bytes_decide_the_same_way_everywhere() -> None:
    one = parse_receipt(receipt_bytes({D1: 2, D2: 2}))
    other = parse_receipt(receipt_bytes({D1: 3, D2: 1}))
    assert one.raw != other.raw
    assert newer(one, other) != newer(other, one)
    assert newer(one, other) is (one.raw > other.raw)
    assert not newer(one, one)


def test_anything_is_newer_than_nothing() -> None:
    oldest = parse_receipt(receipt_bytes({}, ts=0))
    assert newer(oldest, None)


# --- trust ids -----------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_trust_ids_differ_by_kind(raw: bytes) -> None:
    ids = {trust_id(kind, raw) for kind in TrustKind}
    assert len(ids) == len(TrustKind)
    assert all(len(i) == 32 for i in ids)


def test_trust_id_differs_by_bytes() -> None:
    assert trust_id(TrustKind.ACCOUNT, b"a") != trust_id(TrustKind.ACCOUNT, b"b")
    assert trust_id(TrustKind.ACCOUNT, b"a") == trust_id(TrustKind.ACCOUNT, b"a")


@given(st.lists(ids32, unique=True, max_size=10), st.randoms(use_true_random=False), ids32)
def test_trust_digest_is_a_digest_of_the_set(
    ids: list[bytes], random: object, extra: bytes
) -> None:
    shuffled = list(ids)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert trust_digest(shuffled) == trust_digest(ids) == trust_digest(set(ids))
    if extra not in ids:
        assert trust_digest([*ids, extra]) != trust_digest(ids)
    if ids:
        assert trust_digest(ids[1:]) != trust_digest(ids)

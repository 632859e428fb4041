"""Deterministic CBOR: properties, RFC 8949 examples, and hostile input."""

from __future__ import annotations

from collections.abc import Mapping

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.codec import Limits, Tag, decode, encode
from p2ptchap.core.errors import DecodeError, UsageError

ALLOWED_TAGS = frozenset({18, 61})
LIMITS = Limits(tags=ALLOWED_TAGS)

keys = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1), st.binary(max_size=8), st.text(max_size=8)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(keys, children, max_size=6),
        st.builds(Tag, st.sampled_from(sorted(ALLOWED_TAGS)), children),
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip_and_reencoding_is_identical(value: object) -> None:
    encoded = encode(value)  # type: ignore[arg-type]
    decoded = decode(encoded, LIMITS)
    assert decoded == value
    assert encode(decoded) == encoded


@given(values)
def test_independent_decoder_agrees(value: object) -> None:
    # cbor2 is an independent implementation of the format: what we encode
    # must mean the same thing to it.
    def untag(v: object) -> object:
        if isinstance(v, cbor2.CBORTag):
            return Tag(v.tag, untag(v.value))
        if isinstance(v, list | tuple):
            return [untag(x) for x in v]
        if isinstance(v, Mapping):  # cbor2 builds frozendicts inside tags
            return {k: untag(x) for k, x in v.items()}
        return v

    assert untag(cbor2.loads(encode(value))) == value  # type: ignore[arg-type]


@given(st.dictionaries(keys, scalars, min_size=2, max_size=10))
def test_map_keys_are_in_bytewise_order_of_their_encodings(mapping: dict[object, object]) -> None:
    # cbor2 keeps the order in which keys appear on the wire.
    on_the_wire = [encode(k) for k in cbor2.loads(encode(mapping))]  # type: ignore[arg-type]
    assert on_the_wire == sorted(on_the_wire)


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = decode(data, LIMITS)
    except DecodeError:
        return
    assert encode(value) == data


@given(values, st.data())
def test_truncated_or_extended_encodings_are_rejected(value: object, data: st.DataObject) -> None:
    encoded = encode(value)  # type: ignore[arg-type]
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode(encoded[:cut], LIMITS)
    with pytest.raises(DecodeError):
        decode(encoded + data.draw(st.binary(min_size=1, max_size=4)), LIMITS)


@pytest.mark.parametrize(
    ("value", "hex_encoding"),
    [
        # Examples from RFC 8949 Appendix A.
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (1000, "1903e8"),
        (1000000, "1a000f4240"),
        (18446744073709551615, "1bffffffffffffffff"),
        (-18446744073709551616, "3bffffffffffffffff"),
        (-1000, "3903e7"),
        (b"\x01\x02\x03\x04", "4401020304"),
        ("\u00fc", "62c3bc"),
        ("\u6c34", "63e6b0b4"),
        ([1, [2, 3], [4, 5]], "8301820203820405"),
        ({1: 2, 3: 4}, "a201020304"),
        ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
        # RFC 8949 §4.2.1: bytewise order puts 10 before 100 before -1.
        ({-1: 0, 100: 0, 10: 0}, "a30a00186400" + "2000"),
        ({"aa": 0, "b": 0}, "a261620062616100"),
    ],
)
def test_known_encodings(value: object, hex_encoding: str) -> None:
    assert encode(value).hex() == hex_encoding  # type: ignore[arg-type]
    assert decode(bytes.fromhex(hex_encoding)) == value


@pytest.mark.parametrize(
    ("hex_encoding", "why"),
    [
        ("1817", "non-shortest integer head"),
        ("190017", "non-shortest integer head"),
        ("5800", "non-shortest length"),
        ("a2616201616101", "unsorted map keys"),
        ("a2616101616102", "duplicate map keys"),
        ("9f01ff", "indefinite-length array"),
        ("5f4101ff", "indefinite-length byte string"),
        ("f93c00", "half float"),
        ("fb3ff0000000000000", "double float"),
        ("f7", "undefined"),
        ("f0", "unassigned simple value"),
        ("c11a514b67b0", "epoch date tag"),
        ("c249010000000000000000", "bignum"),
        ("d81c81d81d00", "shared reference"),
        ("d9d9f700", "self-describe tag"),
        ("d86400", "tag not in the allowed set"),
        ("62c328", "invalid UTF-8"),
        ("0000", "trailing bytes"),
        ("", "empty input"),
        ("a1810000", "array as a map key"),
        ("a1f500", "boolean as a map key"),
    ],
)
def test_non_canonical_or_foreign_input_is_rejected(hex_encoding: str, why: str) -> None:
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(hex_encoding), LIMITS)


def test_limits_are_enforced() -> None:
    assert decode(encode(b"x" * 100), Limits(max_bytes=102)) == b"x" * 100
    with pytest.raises(DecodeError):
        decode(encode(b"x" * 100), Limits(max_bytes=101))
    assert decode(encode(list(range(10))), Limits(max_items=11)) == list(range(10))
    with pytest.raises(DecodeError):
        decode(encode(list(range(10))), Limits(max_items=10))
    with pytest.raises(DecodeError):
        decode(encode({1: 1, 2: 2}), Limits(max_items=4))
    nested: object = 0
    for _ in range(5):
        nested = [nested]
    assert decode(encode(nested), Limits(max_depth=5)) == nested  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(encode(nested), Limits(max_depth=4))  # type: ignore[arg-type]


def test_item_bomb_is_refused_from_the_heads() -> None:
    # A million empty maps in one array: refused by counting heads, before
    # any of them is built.
    bomb = b"\x9a\x00\x10\x00\x00" + b"\xa0" * (1 << 20)
    with pytest.raises(DecodeError, match="items"):
        decode(bomb, Limits(max_bytes=2 << 20))
    with pytest.raises(DecodeError, match="truncated"):
        decode(b"\x9b" + b"\xff" * 8, LIMITS)  # an array claiming 2**64 - 1 items


def test_deep_nesting_bomb_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x81" * 100_000 + b"\x00", Limits(max_bytes=1 << 20))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        decode("a1", LIMITS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [1.5, {1, 2}, 2**64, -(2**64) - 1, {(1, 2): 3}, {True: 1}, object()]
)
def test_encoding_values_outside_the_model_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError):
        encode(bad)  # type: ignore[arg-type]

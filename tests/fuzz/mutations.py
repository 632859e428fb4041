"""Hypothesis strategies that damage valid encodings, at the byte and at the CBOR level.

Random bytes rarely get past a decoder's first check; mutations of *valid*
encodings do.  Three families, each usable on any seed:

* :func:`mutated_bytes` — bit flips, byte overwrites with CBOR-significant
  values, truncations, insertions, deletions, duplicated slices, splices
  from another seed, and heads announcing huge lengths;
* :func:`mutated_value` — the decoded value with one node changed: a field
  of the wrong type, a missing or extra field, an out-of-range integer, an
  unnormalised text, a deeply nested or huge container; byte strings that
  hold CBOR themselves (signed bodies, COSE payloads) are mutated inside;
* :func:`noncanonical` — an encoding of a value that is *not* the
  deterministic one: a head longer than needed, indefinite lengths, map
  keys out of order or repeated, an integer as a float, simple values and
  tags our data model excludes.
"""

from __future__ import annotations

import struct
import unicodedata
from typing import Final

from hypothesis import strategies as st

from p2ptchap.core import codec
from p2ptchap.core.codec import Tag, Value

#: Bytes that mean something to a CBOR decoder: 1/2/4/8-byte arguments,
#: indefinite lengths, floats, undefined, break, and the first byte of
#: each major type.
_SIGNIFICANT: Final = (
    0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x20, 0x3B, 0x40, 0x5B, 0x5F, 0x60, 0x7B,
    0x7F, 0x80, 0x9B, 0x9F, 0xA0, 0xBB, 0xBF, 0xC0, 0xC1, 0xD2, 0xF4, 0xF5, 0xF6, 0xF7,
    0xF9, 0xFA, 0xFB, 0xFF,
)  # fmt: skip
#: Heads announcing an absurd length: byte string, text, array, map of 2^64-1.
_HUGE_HEADS: Final = (b"\x5b", b"\x7b", b"\x9b", b"\xbb")

_UINT64: Final = 2**64


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes, others: tuple[bytes, ...] = ()) -> bytes:
    """``seed`` with one to four byte-level mutations."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        op = draw(st.sampled_from(_BYTE_OPS if size else ("insert", "splice")))
        pos = draw(st.integers(0, max(0, size - 1)))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.sampled_from(_SIGNIFICANT) | st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "duplicate":
            end = draw(st.integers(pos, min(size, pos + 64)))
            data[end:end] = data[pos:end]
        elif op == "splice" and others:
            other = draw(st.sampled_from(others))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
        elif op == "huge":
            data[pos : pos + 9] = draw(st.sampled_from(_HUGE_HEADS)) + b"\xff" * 8
    return bytes(data)


_BYTE_OPS: Final = (
    "flip",
    "set",
    "truncate",
    "insert",
    "delete",
    "extend",
    "duplicate",
    "splice",
    "huge",
)


# --- values ------------------------------------------------------------------------


def _nested(depth: int, leaf: Value) -> Value:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


hostile_scalars: Final = st.one_of(
    st.sampled_from([0, 1, -1, 23, 24, 255, 256, 2**31, 2**32, 2**63 - 1, 2**63, _UINT64 - 1]),
    st.sampled_from([-(2**63), -(2**64)]),
    st.integers(-(2**64), _UINT64 - 1),
    st.sampled_from([b"", b"\x00", bytes(16), bytes(31), bytes(32), bytes(33), bytes(64)]),
    st.binary(max_size=80),
    st.sampled_from(["", " ", "a" * 300, "\u202e", "\x00", "É", "e\u0301", "ß", "İ"]),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
)

hostile_values: Final = st.one_of(
    hostile_scalars,
    st.builds(_nested, st.integers(1, 40), hostile_scalars),
    st.lists(hostile_scalars, max_size=4),
    st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), hostile_scalars, max_size=3),
    st.builds(lambda n, v: [v] * n, st.integers(100, 2000), st.just(0)),
    st.builds(Tag, st.sampled_from([0, 1, 2, 18, 24, 55799]), hostile_scalars),
)


def _count(value: Value) -> int:
    if isinstance(value, list | tuple):
        return 1 + sum(_count(item) for item in value)
    if isinstance(value, dict):
        return 1 + sum(_count(item) for item in value.values())
    if isinstance(value, Tag):
        return 1 + _count(value.value)
    return 1


def _inner_cbor(value: bytes) -> Value | None:
    """The value a byte string holds if it is itself deterministic CBOR of a container."""
    try:
        inner = codec.decode(value, codec.Limits(tags=frozenset({18})))
    except Exception:
        return None
    return inner if isinstance(inner, dict | list | Tag) else None


@st.composite
def mutated_value(draw: st.DrawFn, value: Value, depth: int = 0) -> Value:
    """``value`` with one node replaced, removed, added to or altered."""
    target = draw(st.integers(0, _count(value) - 1))
    counter = [0]

    def walk(node: Value) -> Value:
        index = counter[0]
        counter[0] += 1
        if index == target:
            return _alter(draw, node, depth)
        if isinstance(node, list | tuple):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, Tag):
            return Tag(node.number, walk(node.value))
        return node

    return walk(value)


def _alter(draw: st.DrawFn, node: Value, depth: int) -> Value:
    if isinstance(node, bytes) and depth < 3:
        inner = _inner_cbor(node)
        if inner is not None and draw(st.booleans()):
            return draw(encodings(draw(mutated_value(inner, depth + 1))))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(hostile_values)
    if choice == 1:
        return [node] if draw(st.booleans()) else {"x": node}
    if isinstance(node, bool) or node is None:
        return draw(hostile_scalars)
    if isinstance(node, int):
        return draw(
            st.sampled_from(
                [node + 1, node - 1, -node - 1, node * 2**32, node + 2**63, _UINT64 - 1]
            ).filter(lambda n: -_UINT64 <= n < _UINT64)
        )
    if isinstance(node, str):
        return draw(
            st.sampled_from(
                [
                    node.upper(),
                    unicodedata.normalize("NFD", node + "é"),
                    f" {node} ",
                    node + "\u202e",
                    node[:-1],
                    node * 30,
                ]
            )
        )
    if isinstance(node, bytes):
        return draw(
            st.sampled_from(
                [node[:-1], node + b"\x00", b"", bytes([node[0] ^ 1]) + node[1:] if node else b"x"]
            )
        )
    if isinstance(node, list | tuple):
        items = list(node)
        if not items:
            return [draw(hostile_values)]
        position = draw(st.integers(0, len(items) - 1))
        operation = draw(st.integers(0, 3))
        if operation == 0:
            del items[position]
        elif operation == 1:
            items.insert(position, items[position])
        elif operation == 2:
            items.reverse()
        else:
            items.append(draw(hostile_values))
        return items
    if isinstance(node, dict):
        mapping = dict(node)
        keys = list(mapping)
        operation = draw(st.integers(0, 2))
        if operation == 0 and keys:
            del mapping[draw(st.sampled_from(keys))]
        elif operation == 1:
            new_key = draw(
                st.sampled_from([*keys, "t", "v", "x", 0, -1, b"k"]) | st.text(max_size=5)
            )
            mapping[new_key] = draw(hostile_values)
        elif keys:
            key = draw(st.sampled_from(keys))
            if isinstance(key, str):
                mapping[key.encode()] = mapping.pop(key)
            else:
                mapping[key] = draw(hostile_values)
        return mapping
    if isinstance(node, Tag):
        return Tag(draw(st.sampled_from([0, 1, 2, 18, 19, 61])), node.value)
    return node


# --- encodings ---------------------------------------------------------------------


def encodings(value: Value) -> st.SearchStrategy[bytes]:
    """The deterministic encoding of ``value`` (mostly) or a non-canonical one."""
    canonical = st.just(value).map(_encode_leniently)
    return st.one_of(canonical, canonical, noncanonical(value))


def _encode_leniently(value: Value) -> bytes:
    try:
        return codec.encode(value)
    except Exception:  # values outside the model (out-of-range ints): made non-canonically
        return _Writer(-1, "wide").encode(value)


@st.composite
def noncanonical(draw: st.DrawFn, value: Value) -> bytes:
    """An encoding of ``value`` breaking one deterministic-encoding rule at one node."""
    target = draw(st.integers(0, _count(value) - 1))
    trick = draw(st.sampled_from(_TRICKS))
    return _Writer(target, trick).encode(value)


_TRICKS: Final = (
    "wide",
    "indefinite",
    "unsorted",
    "duplicate-key",
    "float",
    "undefined",
    "self-describe",
    "bignum",
)


class _Writer:
    """A CBOR writer that applies ``trick`` at the ``target``-th node (pre-order)."""

    def __init__(self, target: int, trick: str) -> None:
        self.target = target
        self.trick = trick
        self.index = 0

    def encode(self, value: Value) -> bytes:
        out: list[bytes] = []
        self._write(out, value)
        return b"".join(out)

    def _head(self, major: int, argument: int, wide: bool) -> bytes:
        prefix = major << 5
        if argument >= _UINT64:
            argument = _UINT64 - 1
        if not wide:
            return codec._head(major, argument)
        for info, fmt, limit in ((25, ">BH", 0x10000), (26, ">BI", 1 << 32)):
            if argument < limit:
                return struct.pack(fmt, prefix | info, argument)
        return struct.pack(">BQ", prefix | 27, argument)

    def _write(self, out: list[bytes], value: Value) -> None:
        here = self.index == self.target
        self.index += 1
        trick = self.trick if here else ""
        wide = trick == "wide"
        if trick == "self-describe":
            out.append(b"\xd9\xd9\xf7")
        if trick == "undefined":
            out.append(b"\xf7")
            return
        if value is None or isinstance(value, bool):
            out.append({None: b"\xf6", True: b"\xf5", False: b"\xf4"}[value])
        elif isinstance(value, int):
            if trick == "float":
                out.append(b"\xfb" + struct.pack(">d", float(value)))
            elif trick == "bignum":
                magnitude = value if value >= 0 else -1 - value
                raw = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big")
                out.append(b"\xc2" if value >= 0 else b"\xc3")
                out.append(codec._head(2, len(raw)) + raw)
            elif value >= 0:
                out.append(self._head(0, value, wide))
            else:
                out.append(self._head(1, -1 - value, wide))
        elif isinstance(value, bytes | str):
            raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
            major = 2 if isinstance(value, bytes) else 3
            if trick == "indefinite":
                out.append(bytes([(major << 5) | 31]))
                out.append(codec._head(major, len(raw)) + raw)
                out.append(b"\xff")
            else:
                out.append(self._head(major, len(raw), wide) + raw)
        elif isinstance(value, list | tuple):
            indefinite = trick == "indefinite"
            out.append(b"\x9f" if indefinite else self._head(4, len(value), wide))
            for item in value:
                self._write(out, item)
            if indefinite:
                out.append(b"\xff")
        elif isinstance(value, dict):
            pairs = sorted(((self._key(k), v) for k, v in value.items()), key=lambda p: p[0])
            if trick == "unsorted":
                pairs.reverse()
            if trick == "duplicate-key" and pairs:
                pairs.append(pairs[0])
            indefinite = trick == "indefinite"
            out.append(b"\xbf" if indefinite else self._head(5, len(pairs), wide))
            for key, item in pairs:
                out.append(key)
                self._write(out, item)
            if indefinite:
                out.append(b"\xff")
        elif isinstance(value, Tag):
            out.append(self._head(6, value.number, wide))
            self._write(out, value.value)
        else:
            out.append(b"\xf7")

    def _key(self, key: object) -> bytes:
        if isinstance(key, int) and not isinstance(key, bool):
            return codec._head(0, key) if key >= 0 else codec._head(1, -1 - key)
        if isinstance(key, bytes):
            return codec._head(2, len(key)) + key
        raw = str(key).encode("utf-8", "surrogatepass")
        return codec._head(3, len(raw)) + raw

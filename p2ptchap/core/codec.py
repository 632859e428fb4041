"""Deterministic CBOR: the one encoding of every value p2ptchap signs or sends.

Encoding follows the core deterministic encoding requirements of RFC 8949
§4.2.1: preferred (shortest) serialization of every head, definite lengths
only, and map keys sorted by the bytewise lexicographic order of their
encodings.  (cbor2's ``canonical=True`` implements the older RFC 7049
length-first order, which is why we sort ourselves.)

Decoding is strict: the input must be exactly one data item that is the
deterministic encoding of a value of the data model below, within the given
:class:`Limits`.  Because non-canonical input is refused, a value has exactly
one accepted encoding, so hashing or verifying "the bytes as received" and
hashing the re-encoded value agree: nobody can make two byte strings that
decode to the same signed event.

The data model is deliberately small:

=================  ==========================================
Python             CBOR
=================  ==========================================
``int``            major types 0 and 1 (−2**64 ≤ n < 2**64)
``bytes``          byte string
``str``            text string (valid UTF-8)
``list``           array (tuples are encoded as arrays too)
``dict``           map; keys are ``int``, ``bytes`` or ``str``
``bool``, ``None`` simple values 20, 21, 22
:class:`Tag`       tag, only for tag numbers the caller allows
=================  ==========================================

Floating-point numbers, ``undefined``, other simple values and unknown tags
are rejected: nothing in our protocol needs them, and each is a source of
ambiguity.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias, cast

import cbor2

from p2ptchap.core.errors import DecodeError, UsageError

Value: TypeAlias = (
    "int | bytes | str | bool | list[Value] | tuple[Value, ...] | dict[Key, Value] | Tag | None"
)
Key: TypeAlias = "int | bytes | str"


@dataclasses.dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tag: a tag number wrapping one value."""

    number: int
    value: Value


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while decoding untrusted bytes.

    ``max_bytes`` bounds the input size, ``max_items`` the number of data
    items (every array element, map key and map value counts), ``max_depth``
    the nesting of arrays, maps and tags; ``tags`` lists the tag numbers that
    may appear.
    """

    max_bytes: int = 1 << 20
    max_items: int = 1 << 16
    max_depth: int = 16
    tags: frozenset[int] = frozenset()


DEFAULT_LIMITS: Final = Limits()

_UINT64_LIMIT: Final = 1 << 64

# Tag numbers cbor2 gives a meaning of its own while decoding (dates, bignums,
# shared references, sets, ...).  Overriding each of them to fail means the
# library can never build an object graph we did not ask for; the strict
# re-encoding check below would reject them anyway, but only after the work
# (and, for shared references, the memory) had been spent.
_CBOR2_SEMANTIC_TAGS: Final = (
    0,
    1,
    2,
    3,
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    55799,
)


# --- encoding --------------------------------------------------------------


def _head(major: int, argument: int) -> bytes:
    """The shortest head for ``major`` with ``argument`` (RFC 8949 §3, §4.2.1)."""
    prefix = major << 5
    if argument < 24:
        return bytes((prefix | argument,))
    if argument < 0x100:
        return bytes((prefix | 24, argument))
    if argument < 0x10000:
        return struct.pack(">BH", prefix | 25, argument)
    if argument < 0x100000000:
        return struct.pack(">BI", prefix | 26, argument)
    return struct.pack(">BQ", prefix | 27, argument)


def _encode_into(out: list[bytes], value: Value, depth: int) -> None:  # noqa: PLR0912
    if depth > DEFAULT_LIMITS.max_depth * 4:
        # Encoding only handles our own values, but a cycle would otherwise
        # recurse until the interpreter gives up.
        raise UsageError("value nests too deeply to encode")
    if value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif isinstance(value, int):
        if value >= 0:
            if value >= _UINT64_LIMIT:
                raise UsageError(f"integer {value} is out of the 64-bit range")
            out.append(_head(0, value))
        else:
            if -value > _UINT64_LIMIT:
                raise UsageError(f"integer {value} is out of the 64-bit range")
            out.append(_head(1, -1 - value))
    elif isinstance(value, bytes):
        out.append(_head(2, len(value)))
        out.append(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(_head(4, len(value)))
        for item in value:
            _encode_into(out, item, depth + 1)
    elif isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            if not isinstance(key, int | bytes | str) or isinstance(key, bool):
                raise UsageError(f"map key of type {type(key).__name__} is not allowed")
            pairs.append((encode(key), item))
        pairs.sort(key=lambda pair: pair[0])
        out.append(_head(5, len(pairs)))
        for encoded_key, item in pairs:
            out.append(encoded_key)
            _encode_into(out, item, depth + 1)
    elif isinstance(value, Tag):
        if not 0 <= value.number < _UINT64_LIMIT:
            raise UsageError(f"tag number {value.number} is out of range")
        out.append(_head(6, value.number))
        _encode_into(out, value.value, depth + 1)
    else:
        raise UsageError(f"values of type {type(value).__name__} cannot be encoded")


def encode(value: Value) -> bytes:
    """Return the deterministic encoding of ``value``.

    Raises :class:`UsageError` for values outside the data model (floats,
    sets, out-of-range integers, unsupported map keys): those are bugs in the
    caller, never the fault of a peer.
    """
    out: list[bytes] = []
    _encode_into(out, value, 0)
    return b"".join(out)


# --- decoding --------------------------------------------------------------


def _reject_semantic_tag(_decoder: object, _immutable: bool = False) -> None:
    raise DecodeError("tag not allowed")


_REJECT_SEMANTIC: Final = dict.fromkeys(_CBOR2_SEMANTIC_TAGS, _reject_semantic_tag)


class _Converter:
    """Walks what cbor2 built, counting items and turning it into our model."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.items = 0

    def convert(self, obj: object, depth: int) -> Value:
        self.items += 1
        if self.items > self.limits.max_items:
            raise DecodeError(f"more than {self.limits.max_items} items")
        if depth > self.limits.max_depth:
            raise DecodeError(f"nested deeper than {self.limits.max_depth}")
        if obj is None or isinstance(obj, bool | bytes | str):
            return obj
        if isinstance(obj, int):
            if not -_UINT64_LIMIT <= obj < _UINT64_LIMIT:
                raise DecodeError("integer out of range")
            return obj
        if isinstance(obj, list | tuple):
            return [self.convert(item, depth + 1) for item in obj]
        # Inside tags cbor2 builds immutable containers (tuples, frozendict).
        if isinstance(obj, Mapping):
            result: dict[Key, Value] = {}
            for key, item in obj.items():
                self.items += 1
                if isinstance(key, bool) or not isinstance(key, int | bytes | str):
                    raise DecodeError("map key of a disallowed type")
                result[key] = self.convert(item, depth + 1)
            return result
        if isinstance(obj, Tag):
            return Tag(obj.number, self.convert(obj.value, depth + 1))
        raise DecodeError(f"value of a disallowed type ({type(obj).__name__})")


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Value:
    """Decode one deterministic CBOR data item, strictly.

    Guarantees: the result re-encodes with :func:`encode` to exactly ``data``.
    Raises :class:`DecodeError` — and nothing else — if ``data`` is not
    ``bytes``-like, is larger than ``limits.max_bytes``, is not exactly one
    well-formed item, uses indefinite lengths, non-shortest heads, unsorted or
    duplicate map keys, floats, simple values other than false/true/null, or
    tags outside ``limits.tags``, or exceeds the item or depth limits.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("input is not bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds {limits.max_bytes}")
    if not data:
        raise DecodeError("empty input")

    # cbor2 6 calls the hook as hook(tag, immutable).
    # Count items and nesting from the heads alone before cbor2 builds
    # anything: otherwise a megabyte of empty maps becomes a million dicts
    # (hundreds of megabytes) before the limits below could refuse it.
    _scan_heads(data, limits)

    def tag_hook(tag: cbor2.CBORTag, _immutable: bool = False) -> Tag:
        if tag.tag not in limits.tags:
            raise DecodeError(f"tag {tag.tag} not allowed")
        return Tag(tag.tag, tag.value)

    try:
        raw = cbor2.loads(
            data,
            tag_hook=tag_hook,
            semantic_decoders=_REJECT_SEMANTIC,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=limits.max_depth + 1,
        )
    except DecodeError:
        raise
    # This is the one boundary where a third-party parser meets untrusted
    # bytes: whatever it raises (its own error, or a ValueError, TypeError,
    # RecursionError it lets through) means "malformed input" to us.
    except Exception as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from exc
    value = _Converter(limits).convert(raw, 0)
    # cbor2 accepts trailing bytes after the first item, non-shortest heads
    # and unsorted keys; the deterministic re-encoding catches all of them.
    if encode(value) != data:
        raise DecodeError("not the deterministic encoding of its value")
    return value


def decode_trusted(data: bytes) -> Value:
    """Decode bytes this program checked with :func:`decode` before storing them.

    For reading back our own database only (a large room's events on
    opening): it skips the head scan, the conversion walk and the canonical
    re-encoding, which together cost ten times cbor2's own decoding; tags
    are still refused, so the result is made of maps, arrays, byte and text
    strings, integers, booleans and null.  Never use it on bytes from a peer.
    """
    try:
        value = cbor2.loads(data, semantic_decoders=_REJECT_SEMANTIC, tag_hook=_reject_semantic_tag)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from exc
    return cast(Value, value)


def _scan_heads(data: bytes, limits: Limits) -> None:  # noqa: PLR0912 - one flat loop
    """Walk the heads of one data item; raise :class:`DecodeError` past the limits.

    Checks only what bounds the work of building the value: the number of
    items, the nesting, definite lengths, and that every length fits in the
    input.  Each step consumes at least one byte, so the walk is linear.
    """
    size = len(data)
    position = 0
    items = 0
    pending = [1]  # items still expected at each open level
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if position >= size:
            raise DecodeError("truncated input")
        initial = data[position]
        position += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info <= 27:
            width = 1 << (info - 24)
            if position + width > size:
                raise DecodeError("truncated head")
            argument = int.from_bytes(data[position : position + width], "big")
            position += width
        else:
            raise DecodeError("indefinite length or reserved head")
        items += 1
        if items > limits.max_items:
            raise DecodeError(f"more than {limits.max_items} items")
        if major in (2, 3):
            position += argument
            if position > size:
                raise DecodeError("truncated string")
        elif major in (4, 5, 6):
            pending.append(argument * 2 if major == 5 else (argument if major == 4 else 1))
            if len(pending) - 1 > limits.max_depth:
                raise DecodeError(f"nested deeper than {limits.max_depth}")
    if position != size:
        raise DecodeError("trailing bytes after the data item")


# --- typed access helpers --------------------------------------------------
#
# Decoded values are untrusted; these helpers turn "the field has the wrong
# type" into a DecodeError at the point of use, so parsers of our structures
# read as a list of fields rather than a thicket of isinstance checks.


def expect_map(value: Value, what: str) -> dict[Key, Value]:
    """Return ``value`` if it is a map, else raise :class:`DecodeError`."""
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a map")
    return value


def expect_list(value: Value, what: str) -> list[Value]:
    """Return ``value`` if it is an array, else raise :class:`DecodeError`."""
    if not isinstance(value, list):
        raise DecodeError(f"{what}: expected an array")
    return value


def field(mapping: dict[Key, Value], key: Key, what: str) -> Value:
    """Return ``mapping[key]``, raising :class:`DecodeError` if absent."""
    try:
        return mapping[key]
    except KeyError:
        raise DecodeError(f"{what}: missing field {key!r}") from None


def get_bytes(mapping: dict[Key, Value], key: Key, what: str, size: int | None = None) -> bytes:
    """Return the byte string at ``key`` (of exactly ``size`` bytes if given)."""
    value = field(mapping, key, what)
    if not isinstance(value, bytes):
        raise DecodeError(f"{what}: field {key!r} must be bytes")
    if size is not None and len(value) != size:
        raise DecodeError(f"{what}: field {key!r} must be {size} bytes")
    return value


def get_text(mapping: dict[Key, Value], key: Key, what: str, max_length: int = 1024) -> str:
    """Return the text string at ``key``, at most ``max_length`` characters."""
    value = field(mapping, key, what)
    if not isinstance(value, str):
        raise DecodeError(f"{what}: field {key!r} must be text")
    if len(value) > max_length:
        raise DecodeError(f"{what}: field {key!r} is too long")
    return value


def get_int(
    mapping: dict[Key, Value], key: Key, what: str, minimum: int = 0, maximum: int = (1 << 63) - 1
) -> int:
    """Return the integer at ``key``, within ``[minimum, maximum]``."""
    value = field(mapping, key, what)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what}: field {key!r} must be an integer")
    if not minimum <= value <= maximum:
        raise DecodeError(f"{what}: field {key!r} is out of range")
    return value


#: The last second of year 9999: times beyond it cannot be shown as dates.
MAX_TIMESTAMP: Final = 253_402_300_799


def get_time(mapping: dict[Key, Value], key: Key, what: str) -> int:
    """Return the timestamp (seconds since 1970, UTC) at ``key``, up to year 9999."""
    return get_int(mapping, key, what, minimum=0, maximum=MAX_TIMESTAMP)


def only_keys(mapping: dict[Key, Value], allowed: Iterable[Key], what: str) -> None:
    """Raise :class:`DecodeError` if ``mapping`` has keys outside ``allowed``.

    Unknown fields in signed structures are refused rather than ignored, so a
    signer's intent cannot be extended by fields a verifier skips.
    """
    extra = set(mapping) - set(allowed)
    if extra:
        raise DecodeError(f"{what}: unexpected fields {sorted(map(repr, extra))}")

"""Replication, the pure part: sync messages, version vectors, and who gets what.

Rooms are replicated peer to peer by *pulling*: each side tells the other
what it holds with a **version vector** — per device, the highest ``seq``
up to which it holds every event of that device in the room, and the id of
that event — plus the room's DAG heads; the other side asks for what it
lacks (``want``: ranges of sequence numbers per device, and ids for heads
and missing parents), a bounded batch at a time, and asks again when the
batch is stored.  New events are also *pushed* at once to connected peers
who should have them.  The exact wire format is in ``docs/protocol.md``
§13; this module encodes and checks it, and computes, without any I/O:

* :func:`version_vector` — the vector of what a node holds;
* :func:`missing` — what to ask a peer for, from its vector;
* :func:`access` — what a peer may receive of a room, decided by *our*
  computed state of the room: everything for members (and, in a public
  room, for any agent), the invitation and its causal past for an invitee,
  nothing otherwise;
* receipts — a device's signed statement of which events of a room it has
  received (or read), as a version vector, so one receipt covers every
  message up to it.

Every message is a deterministic CBOR map with a ``"t"`` field, carried on
the peer's secure channel (:mod:`p2ptchap.core.peerwire` for the envelope).
Anything malformed raises :class:`~p2ptchap.core.errors.DecodeError`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.envelope import open_envelope, seal
from p2ptchap.core.errors import N_, DecodeError, RemoteError
from p2ptchap.core.events import ID_SIZE, MAX_EVENT_BYTES, MAX_PREV, Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import KEY_SIZE, AccountKey, DeviceKey, DeviceSecret
from p2ptchap.core.room import RoomState

#: Most devices a version vector may list (a room of 1 000 people with four
#: devices each fits).
MAX_VECTOR: Final = 4096
#: Most ranges and ids one ``want`` may ask for.
MAX_WANT_RANGES: Final = 512
MAX_WANT_IDS: Final = 512
#: Most sessions one ``key-req`` asks for.
MAX_KEY_REQUEST: Final = 64
#: Most events one ``want`` asks for in all: the batch the asker stores
#: before asking again, which is the flow control.
WANT_BATCH: Final = 512
#: An ``events`` message carries at most this many events and bytes.
MAX_BATCH_EVENTS: Final = 512
MAX_BATCH_BYTES: Final = 2 << 20
#: Trust gossip: ids per ``trust-ids`` message, ids per ``trust-want``,
#: items and bytes per ``trust`` message.
MAX_TRUST_IDS: Final = 8192
MAX_TRUST_ITEMS: Final = 1024
MAX_TRUST_BYTES: Final = 2 << 20
MAX_RECEIPTS: Final = 1024
MAX_REASON: Final = 64

_LIMITS: Final = Limits(max_bytes=MAX_BATCH_BYTES + 64 * 1024, max_items=1 << 16, max_depth=6)

RECEIPT_CONTEXT: Final = b"p2ptchap/1 receipt\x00"
MAX_RECEIPT_BYTES: Final = 256 * 1024
_RECEIPT_LIMITS: Final = Limits(max_bytes=MAX_RECEIPT_BYTES, max_items=3 * MAX_VECTOR + 16)

#: device key bytes → (seq, id of that device's event at ``seq``)
VersionVector = dict[bytes, tuple[int, bytes]]


class TrustKind(enum.Enum):
    """What a gossiped trust item is."""

    ACCOUNT = "account"
    DEVICE = "device"
    REVOCATION = "revocation"
    SUMMARY = "summary"
    PREKEY = "prekey"


def trust_id(kind: TrustKind, raw: bytes) -> bytes:
    """A trust item's identity: BLAKE2b-256 of its kind, a zero byte and its bytes."""
    return hashlib.blake2b(kind.value.encode() + b"\x00" + raw, digest_size=32).digest()


def trust_digest(ids: Iterable[bytes]) -> bytes:
    """One digest of a set of trust ids: equal sets, equal digests."""
    digest = hashlib.blake2b(digest_size=32, person=b"p2ptchap-trust")
    for identifier in sorted(set(ids)):
        digest.update(identifier)
    return digest.digest()


# --- messages ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Vector:
    """``vv``: what the sender holds of ``room`` (and a digest of its receipts)."""

    room: bytes
    vector: VersionVector
    heads: tuple[bytes, ...]
    receipts: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Want:
    """``want``: send me these events of ``room`` (ranges are inclusive)."""

    room: bytes
    ranges: tuple[tuple[bytes, int, int], ...]
    ids: tuple[bytes, ...]

    @property
    def empty(self) -> bool:
        return not self.ranges and not self.ids


@dataclasses.dataclass(frozen=True, slots=True)
class Events:
    """``events``: events of ``room``; ``reply`` on the last answer to a ``want``."""

    room: bytes
    events: tuple[bytes, ...]
    reply: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """``refused``: the sender will not give us ``room`` (and says why)."""

    room: bytes
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TrustSum:
    """``trust-sum``: the digest and size of the sender's trust set."""

    digest: bytes
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class TrustIds:
    """``trust-ids``: (part of) the ids of the sender's trust set."""

    ids: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TrustWant:
    """``trust-want``: send me these trust items."""

    ids: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TrustItems:
    """``trust``: certificates, revocations, public-room summaries."""

    items: tuple[tuple[TrustKind, bytes], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Receipts:
    """``receipts``: signed receipts of ``room``."""

    room: bytes
    items: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRequest:
    """``key-req``: send me the keys of these sessions of yours in ``room``.

    Sent only to the device that owns the sessions, which answers (or not)
    with ``room_key`` events, carried like any event.
    """

    room: bytes
    sessions: tuple[bytes, ...]


SyncMessage = (
    Vector
    | Want
    | Events
    | Refused
    | TrustSum
    | TrustIds
    | TrustWant
    | TrustItems
    | Receipts
    | KeyRequest
)


def _vector_entries(vector: Mapping[bytes, tuple[int, bytes]]) -> list[codec.Value]:
    return [[device, seq, top] for device, (seq, top) in sorted(vector.items())]


def encode(message: SyncMessage) -> bytes:  # noqa: PLR0911 - one branch per message type
    """The wire bytes of one sync message."""
    match message:
        case Vector(room, vector, heads, receipts):
            return codec.encode(
                {
                    "t": "vv",
                    "room": room,
                    "vv": _vector_entries(vector),
                    "heads": list[codec.Value](sorted(set(heads))),
                    "rc": receipts,
                }
            )
        case Want(room, ranges, ids):
            return codec.encode(
                {
                    "t": "want",
                    "room": room,
                    "ranges": [[d, lo, hi] for d, lo, hi in ranges],
                    "ids": list[codec.Value](ids),
                }
            )
        case Events(room, events, reply):
            return codec.encode(
                {"t": "events", "room": room, "events": list[codec.Value](events), "reply": reply}
            )
        case Refused(room, reason):
            return codec.encode({"t": "refused", "room": room, "reason": reason})
        case TrustSum(digest, count):
            return codec.encode({"t": "trust-sum", "digest": digest, "n": count})
        case TrustIds(ids):
            return codec.encode({"t": "trust-ids", "ids": list[codec.Value](ids)})
        case TrustWant(ids):
            return codec.encode({"t": "trust-want", "ids": list[codec.Value](ids)})
        case TrustItems(items):
            return codec.encode({"t": "trust", "items": [[kind.value, raw] for kind, raw in items]})
        case Receipts(room, items):
            return codec.encode({"t": "receipts", "room": room, "items": list[codec.Value](items)})
        case KeyRequest(room, sessions):
            return codec.encode(
                {"t": "key-req", "room": room, "sessions": list[codec.Value](sessions)}
            )
    raise TypeError(f"not a sync message: {message!r}")


def _id(value: codec.Value, what: str, size: int = ID_SIZE) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise DecodeError(f"{what}: expected {size} bytes")
    return value


def _ids(value: codec.Value, what: str, limit: int) -> tuple[bytes, ...]:
    items = codec.expect_list(value, what)
    if len(items) > limit:
        raise DecodeError(f"{what}: more than {limit}")
    return tuple(_id(item, what) for item in items)


def _sorted_ids(value: codec.Value, what: str, limit: int) -> tuple[bytes, ...]:
    """Ids that must come sorted and distinct, as a set is sent."""
    found = _ids(value, what, limit)
    if any(a >= b for a, b in itertools.pairwise(found)):
        raise DecodeError(f"{what}: sorted and distinct")
    return found


def _uint(value: codec.Value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DecodeError(f"{what}: expected an integer ≥ {minimum}")
    return value


def decode_vector(value: codec.Value, what: str) -> VersionVector:
    entries = codec.expect_list(value, what)
    if len(entries) > MAX_VECTOR:
        raise DecodeError(f"{what}: more than {MAX_VECTOR} devices")
    vector: VersionVector = {}
    previous = b""
    for entry in entries:
        parts = codec.expect_list(entry, what)
        if len(parts) != 3:
            raise DecodeError(f"{what}: an entry is [device, seq, id]")
        device = _id(parts[0], what, KEY_SIZE)
        # Sorted by device, each once (protocol §13): one encoding per vector.
        if device <= previous:
            raise DecodeError(f"{what}: devices are sorted, each once")
        previous = device
        vector[device] = (_uint(parts[1], what, 1), _id(parts[2], what))
    return vector


def _decode_vector_message(body: dict[codec.Key, codec.Value]) -> Vector:
    codec.only_keys(body, ("t", "room", "vv", "heads", "rc"), "vv")
    return Vector(
        _id(codec.field(body, "room", "vv"), "vv room"),
        decode_vector(codec.field(body, "vv", "vv"), "vv"),
        _sorted_ids(codec.field(body, "heads", "vv"), "vv heads", MAX_PREV),
        _id(codec.field(body, "rc", "vv"), "vv rc", 16),
    )


def _decode_want(body: dict[codec.Key, codec.Value]) -> Want:
    codec.only_keys(body, ("t", "room", "ranges", "ids"), "want")
    raw_ranges = codec.expect_list(codec.field(body, "ranges", "want"), "want ranges")
    if len(raw_ranges) > MAX_WANT_RANGES:
        raise DecodeError("want: too many ranges")
    ranges = []
    for entry in raw_ranges:
        parts = codec.expect_list(entry, "want range")
        if len(parts) != 3:
            raise DecodeError("want: a range is [device, from, to]")
        low, high = _uint(parts[1], "want", 1), _uint(parts[2], "want", 1)
        if high < low:
            raise DecodeError("want: a range ends before it starts")
        ranges.append((_id(parts[0], "want device", KEY_SIZE), low, high))
    return Want(
        _id(codec.field(body, "room", "want"), "want room"),
        tuple(ranges),
        _ids(codec.field(body, "ids", "want"), "want ids", MAX_WANT_IDS),
    )


def _decode_events(body: dict[codec.Key, codec.Value]) -> Events:
    codec.only_keys(body, ("t", "room", "events", "reply"), "events")
    raws = codec.expect_list(codec.field(body, "events", "events"), "events")
    if len(raws) > MAX_BATCH_EVENTS:
        raise DecodeError("events: too many")
    events = tuple(r for r in raws if isinstance(r, bytes) and len(r) <= MAX_EVENT_BYTES)
    if len(events) != len(raws):
        raise DecodeError("events: each is a byte string of at most 64 KiB")
    reply = codec.field(body, "reply", "events")
    if not isinstance(reply, bool):
        raise DecodeError("events: reply is a boolean")
    return Events(_id(codec.field(body, "room", "events"), "events room"), events, reply)


def _decode_refused(body: dict[codec.Key, codec.Value]) -> Refused:
    codec.only_keys(body, ("t", "room", "reason"), "refused")
    return Refused(
        _id(codec.field(body, "room", "refused"), "refused room"),
        codec.get_text(body, "reason", "refused", MAX_REASON),
    )


def _decode_trust_sum(body: dict[codec.Key, codec.Value]) -> TrustSum:
    codec.only_keys(body, ("t", "digest", "n"), "trust-sum")
    return TrustSum(
        _id(codec.field(body, "digest", "trust-sum"), "trust-sum digest"),
        _uint(codec.field(body, "n", "trust-sum"), "trust-sum n"),
    )


def _decode_trust_ids(body: dict[codec.Key, codec.Value]) -> TrustIds:
    codec.only_keys(body, ("t", "ids"), "trust-ids")
    return TrustIds(_ids(codec.field(body, "ids", "trust-ids"), "trust-ids", MAX_TRUST_IDS))


def _decode_trust_want(body: dict[codec.Key, codec.Value]) -> TrustWant:
    codec.only_keys(body, ("t", "ids"), "trust-want")
    return TrustWant(_ids(codec.field(body, "ids", "trust-want"), "trust-want", MAX_TRUST_IDS))


def _decode_trust(body: dict[codec.Key, codec.Value]) -> TrustItems:
    codec.only_keys(body, ("t", "items"), "trust")
    entries = codec.expect_list(codec.field(body, "items", "trust"), "trust")
    if len(entries) > MAX_TRUST_ITEMS:
        raise DecodeError("trust: too many items")
    items = []
    for entry in entries:
        parts = codec.expect_list(entry, "trust item")
        if len(parts) != 2 or not isinstance(parts[1], bytes):
            raise DecodeError("trust: an item is [kind, bytes]")
        try:
            items.append((TrustKind(parts[0]), parts[1]))
        except ValueError:
            raise DecodeError("trust: unknown item kind") from None
    return TrustItems(tuple(items))


def _decode_receipts(body: dict[codec.Key, codec.Value]) -> Receipts:
    codec.only_keys(body, ("t", "room", "items"), "receipts")
    raws = codec.expect_list(codec.field(body, "items", "receipts"), "receipts")
    items = tuple(r for r in raws if isinstance(r, bytes))
    if len(raws) > MAX_RECEIPTS or len(items) != len(raws):
        raise DecodeError("receipts: at most 1024 byte strings")
    return Receipts(_id(codec.field(body, "room", "receipts"), "receipts room"), items)


def _decode_key_request(body: dict[codec.Key, codec.Value]) -> KeyRequest:
    codec.only_keys(body, ("t", "room", "sessions"), "key-req")
    return KeyRequest(
        _id(codec.field(body, "room", "key-req"), "key-req room"),
        _ids(codec.field(body, "sessions", "key-req"), "key-req sessions", MAX_KEY_REQUEST),
    )


_DECODERS: Final[dict[str, Callable[[dict[codec.Key, codec.Value]], SyncMessage]]] = {
    "vv": _decode_vector_message,
    "want": _decode_want,
    "events": _decode_events,
    "refused": _decode_refused,
    "trust-sum": _decode_trust_sum,
    "trust-ids": _decode_trust_ids,
    "trust-want": _decode_trust_want,
    "trust": _decode_trust,
    "receipts": _decode_receipts,
    "key-req": _decode_key_request,
}

#: The ``"t"`` values this module handles.
TYPES: Final = frozenset(_DECODERS)


def decode(body: dict[codec.Key, codec.Value]) -> SyncMessage:
    """Check one sync message whose envelope :mod:`peerwire` already decoded.

    ``body["t"]`` must be one of :data:`TYPES`.  Raise :class:`DecodeError`.
    """
    kind = codec.get_text(body, "t", "message", 32)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise DecodeError(f"not a sync message type: {kind!r}")
    return decoder(body)


def decode_bytes(data: bytes) -> SyncMessage:
    """Decode a whole sync message from bytes (tests, tools)."""
    return decode(codec.expect_map(codec.decode(data, _LIMITS), "message"))


def batches(raws: Iterable[bytes], max_events: int, max_bytes: int) -> list[list[bytes]]:
    """Cut ``raws`` into batches within both bounds (each batch non-empty)."""
    out: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for raw in raws:
        if current and (len(current) >= max_events or size + len(raw) > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(raw)
        size += len(raw)
    if current:
        out.append(current)
    return out


# --- version vectors -----------------------------------------------------------------------

#: device key bytes → {seq: id}; with a forking device, the smallest id per seq.
Held = dict[bytes, dict[int, bytes]]


def version_vector(held: Mapping[bytes, Mapping[int, bytes]]) -> VersionVector:
    """Per device, the highest ``seq`` up to which every event is held, and its id."""
    vector: VersionVector = {}
    for device, seqs in held.items():
        top = 0
        while top + 1 in seqs:
            top += 1
        if top:
            vector[device] = (top, seqs[top])
    return vector


def missing(
    held: Mapping[bytes, Mapping[int, bytes]],
    known: set[bytes] | frozenset[bytes],
    theirs: Mapping[bytes, tuple[int, bytes]],
    heads: Iterable[bytes],
    parents: Iterable[bytes] = (),
    *,
    skip: frozenset[tuple[bytes, int]] | set[tuple[bytes, int]] = frozenset(),
    skip_ids: frozenset[bytes] | set[bytes] = frozenset(),
    room: bytes = b"",
    limit: int = WANT_BATCH,
) -> Want:
    """What to ask a peer for, given its vector and heads: at most ``limit`` events.

    ``held`` and ``known`` (every id we hold) describe us; ``parents`` are
    ids our pending events wait for (backfill).  ``skip`` and ``skip_ids``
    are what we asked this peer for and it did not have: not asked again
    until its vector changes.  Ranges cover only the sequence numbers we
    lack, so an exchange moves the missing events and little else.  A
    device's top event whose id differs from ours at the same ``seq`` is a
    fork: asked for by id.
    """
    ranges: list[tuple[bytes, int, int]] = []
    ids: list[bytes] = []
    budget = limit
    if budget <= 0:
        return Want(room, (), ())
    for device, (top, top_id) in sorted(theirs.items()):
        ours = held.get(device, {})
        start = None
        for seq in range(1, top + 1):
            lacking = seq not in ours and (device, seq) not in skip
            if lacking and start is None:
                start = seq
            if start is not None and (not lacking or seq == top or seq - start + 1 >= budget):
                end = seq if lacking else seq - 1
                ranges.append((device, start, end))
                budget -= end - start + 1
                start = None
                if budget <= 0 or len(ranges) >= MAX_WANT_RANGES:
                    return Want(room, tuple(ranges), tuple(ids))
        if (
            top in ours
            and top_id not in known
            and top_id not in skip_ids
            and top_id not in ids
            and len(ids) < MAX_WANT_IDS
        ):
            ids.append(top_id)
            budget -= 1
            if budget <= 0:
                return Want(room, tuple(ranges), tuple(ids))
    for identifier in [*heads, *parents]:
        if budget <= 0 or len(ids) >= MAX_WANT_IDS:
            break
        if identifier not in known and identifier not in skip_ids and identifier not in ids:
            ids.append(identifier)
            budget -= 1
    return Want(room, tuple(ranges), tuple(ids))


def covers(vector: Mapping[bytes, tuple[int, bytes]], device: bytes, seq: int) -> bool:
    """Whether a version vector says its holder has event ``seq`` of ``device``."""
    entry = vector.get(device)
    return entry is not None and entry[0] >= seq


# --- who gets what --------------------------------------------------------------------------


class Access(enum.Enum):
    """What a peer may receive of a room, by our state of it."""

    #: Every event: a member, or any agent in a public room.
    FULL = "full"
    #: The invitation addressed to it and its causal past, and our own
    #: membership events (what a stranger gets, see :attr:`OWN`).
    INVITED = "invited"
    #: An account that left, was kicked or banned: the event that removed
    #: it and its causal past (what it could see as a member), so that it
    #: learns of its removal — nothing after.
    REMOVED = "removed"
    #: A stranger to our state of the room (it may have joined after what
    #: we know) who knows the room's id: only our own membership events
    #: (that we joined, or left), in answer to its vector — never a
    #: message.  Two members whose views are each stale about the other
    #: can so show each other their admission, and then sync fully.
    OWN = "own"
    NONE = "none"


def access(  # noqa: PLR0911 - the cases, one after the other
    state: RoomState | None, account: AccountKey, kind: Kind, email: str
) -> Access:
    """What the device of ``account`` (``kind``, normalised ``email``) may receive.

    Externals get nothing of a room that does not allow them; an account
    that left, was kicked or banned, nothing after its removal; an
    invitation by e-mail counts for the account that has that address.
    """
    if state is None:
        return Access.NONE
    if kind is Kind.EXTERNAL and not state.allow_externals:
        return Access.NONE
    membership = state.membership.get(account)
    if membership is Membership.JOIN:
        return Access.FULL
    if membership is Membership.BAN:
        return Access.REMOVED
    invited = membership is Membership.INVITE or email in state.email_invites
    if membership is Membership.LEAVE:
        # Invited again by address, it may join again (the rules allow it).
        return Access.INVITED if invited else Access.REMOVED
    if state.join_rule == "public" and not state.direct and kind is Kind.AGENT:
        return Access.FULL
    return Access.INVITED if invited else Access.OWN


# --- receipts -------------------------------------------------------------------------------


class ReceiptKind(enum.Enum):
    RECEIVED = "received"
    READ = "read"


class InvalidReceipt(RemoteError):
    """A receipt that is malformed or wrongly signed."""

    default_message = N_("A delivery receipt was malformed or forged and was ignored.")


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    """A device says it has received (or read) every event of ``room`` up to ``vector``."""

    kind: ReceiptKind
    room: bytes
    account: AccountKey
    device: DeviceKey
    ts: int
    vector: dict[bytes, int]
    raw: bytes

    def covers(self, device: bytes, seq: int) -> bool:
        return self.vector.get(device, 0) >= seq


def make_receipt(
    secret: DeviceSecret,
    account: AccountKey,
    kind: ReceiptKind,
    room: bytes,
    vector: Mapping[bytes, int],
    ts: int,
) -> bytes:
    """Sign a receipt: ``vector`` maps device key bytes to the seq held (or read) up to."""
    entries = sorted(vector.items())[:MAX_VECTOR]
    body = codec.encode(
        {
            "v": 1,
            "kind": kind.value,
            "room": room,
            "account": bytes(account),
            "device": bytes(secret.public_key()),
            "ts": ts,
            "vv": [[device, seq] for device, seq in entries],
        }
    )
    return seal(secret, RECEIPT_CONTEXT, body)


def parse_receipt(raw: bytes) -> Receipt:
    """Check a receipt's shape and signature; raise :class:`InvalidReceipt`.

    Whether its device belongs to its account is the caller's question.
    """
    try:
        if len(raw) > MAX_RECEIPT_BYTES:
            raise DecodeError("receipt too large")
        body_bytes, body, signature = open_envelope(
            raw,
            lambda data: codec.decode(data, _RECEIPT_LIMITS),
            "receipt",
            ("v", "kind", "room", "account", "device", "ts", "vv"),
        )
        try:
            kind = ReceiptKind(codec.get_text(body, "kind", "receipt", 16))
        except ValueError:
            raise DecodeError("unknown receipt kind") from None
        entries = codec.expect_list(codec.field(body, "vv", "receipt"), "receipt vv")
        if len(entries) > MAX_VECTOR:
            raise DecodeError("receipt: too many devices")
        vector: dict[bytes, int] = {}
        for entry in entries:
            parts = codec.expect_list(entry, "receipt vv")
            if len(parts) != 2:
                raise DecodeError("receipt: an entry is [device, seq]")
            device = _id(parts[0], "receipt device", KEY_SIZE)
            if device in vector:
                raise DecodeError("receipt: a device twice")
            vector[device] = _uint(parts[1], "receipt seq", 1)
        receipt = Receipt(
            kind=kind,
            room=codec.get_bytes(body, "room", "receipt", size=ID_SIZE),
            account=AccountKey(codec.get_bytes(body, "account", "receipt", size=KEY_SIZE)),
            device=DeviceKey(codec.get_bytes(body, "device", "receipt", size=KEY_SIZE)),
            ts=codec.get_int(body, "ts", "receipt", minimum=0),
            vector=vector,
            raw=raw,
        )
    except DecodeError as exc:
        raise InvalidReceipt(str(exc)) from exc
    try:
        receipt.device.verify(RECEIPT_CONTEXT + body_bytes, signature)
    except RemoteError as exc:
        raise InvalidReceipt(f"bad signature: {exc}") from exc
    return receipt


def newer(receipt: Receipt, known: Receipt | None) -> bool:
    """Whether ``receipt`` should replace ``known`` (same room, device and kind).

    A later one wins; at equal times the one covering more, then the bytes,
    so every node keeps the same one.
    """
    if known is None:
        return True
    mine = (receipt.ts, sum(receipt.vector.values()), receipt.raw)
    theirs = (known.ts, sum(known.vector.values()), known.raw)
    return mine > theirs

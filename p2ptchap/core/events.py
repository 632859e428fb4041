"""Room events: the signed, content-addressed records a room's history is made of.

An event is a deterministic CBOR map (the *body*), signed by the sending
device.  On the wire and on disk it is the CBOR map::

    {"body": bstr, "sig": bstr(64)}

``sig`` is the device's Ed25519 signature over ``"p2ptchap/1 event" || 0x00
|| body``; the **event id** is BLAKE2b-256 of the whole encoded signed event,
so the id covers the signature too.  The **room id** is the id of the room's
``create`` event.

Body fields:

=============  =============================================================
``v``          1
``type``       one of :class:`EventType`
``room``       room id (bstr 32); absent in ``create``
``state_key``  text, for state events (``""`` when a room has one of them)
``account``    the sender's account master key (bstr 32)
``device``     the sender's device signing key (bstr 32)
``seq``        the device's sequence number in this room, from 1
``prev_seq``   id of the device's previous event in this room; absent for 1
``prev``       ids of the room's latest events when this one was made
               (1 … 16, sorted, distinct); absent in ``create``
``depth``      1 + the largest depth among the parents, ``prev`` and
               ``prev_seq`` alike (0 for ``create``);
               checked against the parents, never trusted
``ts``         milliseconds since 1970 on the sender's clock (display only)
``content``    a map whose schema depends on ``type`` (see :func:`check_content`)
=============  =============================================================

This module checks everything that can be checked from one event alone:
shape, limits, content schema, signature.  Whether the device belongs to the
account, whether the sender may do this in the room, and whether ``depth``
and ``prev_seq`` are right, need the room: :mod:`p2ptchap.core.room`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.addresses import InvalidAddress, normalise_email
from p2ptchap.core.codec import Limits
from p2ptchap.core.envelope import open_envelope, seal
from p2ptchap.core.errors import DecodeError, RemoteError
from p2ptchap.core.files import parse_clear_reference
from p2ptchap.core.keys import KEY_SIZE, AccountKey, DeviceKey, DeviceSecret

EVENT_CONTEXT: Final = b"p2ptchap/1 event\x00"
ID_SIZE: Final = 32
MAX_EVENT_BYTES: Final = 64 * 1024
MAX_PREV: Final = 16
MAX_NAME: Final = 255
MAX_TOPIC: Final = 4000
MAX_REASON: Final = 500
MAX_REACTION: Final = 64
#: Shares per key event, and the size of a prekey id (``core/roomkeys.py``).
MAX_SHARES: Final = 1024
PREKEY_ID_SIZE: Final = 8
MAX_MEGOLM_INDEX: Final = 2**32 - 1
#: XChaCha20-Poly1305's tag: no ciphertext is shorter.
CIPHERTEXT_OVERHEAD: Final = 16
ADMIN: Final = 100
MODERATOR: Final = 50
MEMBER: Final = 0
_LIMITS: Final = Limits(max_bytes=MAX_EVENT_BYTES, max_items=4096, max_depth=6)


class EventType(enum.Enum):
    """Every kind of room event."""

    CREATE = "create"
    NAME = "name"
    TOPIC = "topic"
    JOIN_RULE = "join_rule"
    EXTERNALS = "externals"
    HISTORY = "history"
    POWER = "power"
    MEMBER = "member"
    EMAIL_INVITE = "email_invite"
    MESSAGE = "message"
    EDIT = "edit"
    REACTION = "reaction"
    REDACTION = "redaction"
    ROOM_KEY = "room_key"
    HISTORY_KEYS = "history_keys"


#: Types whose latest accepted event per ``state_key`` makes the room's state.
STATE_TYPES: Final = frozenset(
    {
        EventType.CREATE,
        EventType.NAME,
        EventType.TOPIC,
        EventType.JOIN_RULE,
        EventType.EXTERNALS,
        EventType.HISTORY,
        EventType.POWER,
        EventType.MEMBER,
        EventType.EMAIL_INVITE,
    }
)


class Membership(enum.Enum):
    INVITE = "invite"
    JOIN = "join"
    LEAVE = "leave"  # by oneself: leave; by someone else: kick (or unban after a ban)
    BAN = "ban"


class InvalidEvent(RemoteError):
    """An event that is malformed, oversized or wrongly signed; ``reason`` says which."""

    default_message = "A room event was malformed or forged and was rejected."

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A signed event whose shape, content and signature were checked."""

    id: bytes
    type: EventType
    room: bytes  # the event's own id for ``create``
    state_key: str | None
    account: AccountKey
    device: DeviceKey
    seq: int
    prev_seq: bytes | None
    prev: tuple[bytes, ...]
    depth: int
    ts: int
    content: dict[codec.Key, codec.Value]
    raw: bytes

    @property
    def is_state(self) -> bool:
        return self.type in STATE_TYPES


# --- content schemas -----------------------------------------------------------------


def _text(content: dict[codec.Key, codec.Value], key: str, limit: int) -> str:
    return codec.get_text(content, key, "content", limit)


def _id(content: dict[codec.Key, codec.Value], key: str) -> bytes:
    return codec.get_bytes(content, key, "content", size=ID_SIZE)


def _check_power(content: dict[codec.Key, codec.Value]) -> None:
    codec.only_keys(content, ("users", "invite", "kick", "ban", "redact", "state", "post"), "power")
    for action in ("invite", "kick", "ban", "redact", "state", "post"):
        codec.get_int(content, action, "power", minimum=0, maximum=ADMIN)
    users = codec.expect_map(codec.field(content, "users", "power"), "power users")
    if len(users) > 10_000:
        raise DecodeError("power: too many users")
    for key, level in users.items():
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise DecodeError("power: users are account keys")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= ADMIN:
            raise DecodeError("power: levels are 0 … 100")


Content = dict[codec.Key, codec.Value]


def _check_create(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("direct", "nonce"), "create")
    if not isinstance(codec.field(content, "direct", "create"), bool):
        raise DecodeError("create: direct is a boolean")
    if "nonce" in content:  # makes two rooms created alike in one millisecond distinct
        codec.get_bytes(content, "nonce", "create", size=16)


def _check_name(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("name",), "name")
    _text(content, "name", MAX_NAME)


def _check_topic(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("topic",), "topic")
    _text(content, "topic", MAX_TOPIC)


def _check_join_rule(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("rule",), "join_rule")
    if _text(content, "rule", 16) not in {"private", "public"}:
        raise DecodeError("join_rule: private or public")


def _check_externals(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("allow",), "externals")
    if not isinstance(codec.field(content, "allow", "externals"), bool):
        raise DecodeError("externals: allow is a boolean")


def _check_history(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("visibility",), "history")
    if _text(content, "visibility", 16) not in {"joined", "shared"}:
        raise DecodeError("history: joined or shared")


def _check_member(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("membership", "reason", "certificate"), "member")
    Membership(_text(content, "membership", 16))
    if "reason" in content:
        _text(content, "reason", MAX_REASON)
    if "certificate" in content:
        codec.get_bytes(content, "certificate", "member")
    if state_key is None or len(state_key) != 2 * KEY_SIZE:
        raise DecodeError("member: the state_key is the member's account key in hex")
    if bytes.fromhex(state_key).hex() != state_key:
        raise DecodeError("member: the state_key is lower-case hex")


def _check_email_invite(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("invited",), "email_invite")
    if not isinstance(codec.field(content, "invited", "email_invite"), bool):
        raise DecodeError("email_invite: invited is a boolean")
    try:
        if state_key is None or normalise_email(state_key) != state_key:
            raise DecodeError("email_invite: the state_key is a normalised address")
    except InvalidAddress as exc:
        raise DecodeError(f"email_invite: {exc}") from exc


def _check_encrypted(content: Content, what: str, clear: tuple[str, ...] = ()) -> None:
    """An encrypted content: Megolm session id, message index, ciphertext (``core/megolm.py``)."""
    codec.only_keys(content, (*clear, "session", "index", "ct"), what)
    _id(content, "session")
    codec.get_int(content, "index", what, maximum=MAX_MEGOLM_INDEX)
    if len(codec.get_bytes(content, "ct", what)) < CIPHERTEXT_OVERHEAD:
        raise DecodeError(f"{what}: ciphertext shorter than its tag")


def _check_message(state_key: str | None, content: Content) -> None:
    # A message with a file names it in clear (root and size, what relays
    # need); the descriptor with the key is in the ciphertext.
    _check_encrypted(content, "message", ("file",))
    if "file" in content:
        parse_clear_reference(content["file"])


def _check_edit(state_key: str | None, content: Content) -> None:
    _check_encrypted(content, "edit", ("target",))
    _id(content, "target")


def _check_reaction(state_key: str | None, content: Content) -> None:
    _check_encrypted(content, "reaction", ("target",))
    _id(content, "target")


def _check_shares(content: Content, what: str) -> None:
    """``shares``: recipient device key → [prekey id (0 or 8 bytes), sealed share]."""
    shares = codec.expect_map(codec.field(content, "shares", what), what)
    if not 0 < len(shares) <= MAX_SHARES:
        raise DecodeError(f"{what}: 1 to {MAX_SHARES} shares")
    for device, share in shares.items():
        if not isinstance(device, bytes) or len(device) != KEY_SIZE:
            raise DecodeError(f"{what}: shares are keyed by device key")
        entry = codec.expect_list(share, what)
        if (
            len(entry) != 2
            or not isinstance(entry[0], bytes)
            or len(entry[0]) not in (0, PREKEY_ID_SIZE)
            or not isinstance(entry[1], bytes)
        ):
            raise DecodeError(f"{what}: a share is [prekey id, sealed bytes]")


def _check_room_key(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("session", "shares"), "room_key")
    _id(content, "session")
    _check_shares(content, "room_key")


def _check_history_keys(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("shares",), "history_keys")
    _check_shares(content, "history_keys")


def _check_redaction(state_key: str | None, content: Content) -> None:
    codec.only_keys(content, ("target", "reason"), "redaction")
    _id(content, "target")
    if "reason" in content:
        _text(content, "reason", MAX_REASON)


_CONTENT_CHECKS: Final = {
    EventType.CREATE: _check_create,
    EventType.NAME: _check_name,
    EventType.TOPIC: _check_topic,
    EventType.JOIN_RULE: _check_join_rule,
    EventType.EXTERNALS: _check_externals,
    EventType.HISTORY: _check_history,
    EventType.POWER: lambda state_key, content: _check_power(content),
    EventType.MEMBER: _check_member,
    EventType.EMAIL_INVITE: _check_email_invite,
    EventType.MESSAGE: _check_message,
    EventType.EDIT: _check_edit,
    EventType.REACTION: _check_reaction,
    EventType.REDACTION: _check_redaction,
    EventType.ROOM_KEY: _check_room_key,
    EventType.HISTORY_KEYS: _check_history_keys,
}


def check_content(kind: EventType, state_key: str | None, content: Content) -> None:
    """Raise :class:`DecodeError` unless ``content`` fits ``kind``'s schema.

    The schemas, one small function per type above, are the reference for
    ``docs/protocol.md``.
    """
    if kind in STATE_TYPES and state_key is None:
        raise DecodeError(f"{kind.value}: a state event needs a state_key")
    if kind not in STATE_TYPES and state_key is not None:
        raise DecodeError(f"{kind.value}: not a state event")
    _CONTENT_CHECKS[kind](state_key, content)


# --- making and reading events ----------------------------------------------------------


def event_id(raw: bytes) -> bytes:
    """The id of an encoded signed event."""
    return hashlib.blake2b(raw, digest_size=ID_SIZE).digest()


def make_event(
    secret: DeviceSecret,
    account: AccountKey,
    kind: EventType,
    content: dict[codec.Key, codec.Value],
    *,
    room: bytes | None,
    seq: int,
    prev_seq: bytes | None,
    prev: list[bytes],
    depth: int,
    ts: int,
    state_key: str | None = None,
) -> Event:
    """Sign a new event and return it parsed (so it is checked like any other)."""
    body: dict[codec.Key, codec.Value] = {
        "v": 1,
        "type": kind.value,
        "account": bytes(account),
        "device": bytes(secret.public_key()),
        "seq": seq,
        "depth": depth,
        "ts": ts,
        "content": content,
    }
    if room is not None:
        body["room"] = room
    if state_key is not None:
        body["state_key"] = state_key
    if prev_seq is not None:
        body["prev_seq"] = prev_seq
    if prev:
        body["prev"] = list[codec.Value](sorted(set(prev)))
    encoded = codec.encode(body)
    raw = seal(secret, EVENT_CONTEXT, encoded)
    return parse_event(raw)


def parse_event(raw: bytes) -> Event:
    """Check one event on its own; raise :class:`InvalidEvent` with a reason.

    Reasons: ``oversized``, ``malformed``, ``bad-signature``.
    """
    return _parse(raw, stored=False)


def reload_event(raw: bytes) -> Event:
    """An event read back from our own database, where only checked events go.

    Same result as :func:`parse_event` on the same bytes, three times faster:
    the signature is not verified again and the CBOR is not re-checked for
    canonical form (see :func:`p2ptchap.core.codec.decode_trusted`).  Someone
    able to write our database could as well change our keys; the threat
    model says so.
    """
    return _parse(raw, stored=True)


_FIELDS: Final = (
    "v",
    "type",
    "room",
    "state_key",
    "account",
    "device",
    "seq",
    "prev_seq",
    "prev",
    "depth",
    "ts",
    "content",
)


def _parse(raw: bytes, *, stored: bool) -> Event:
    def decode(data: bytes) -> codec.Value:
        return codec.decode_trusted(data) if stored else codec.decode(data, _LIMITS)

    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("oversized", f"{len(raw)} bytes")
    try:
        encoded, body, signature = open_envelope(raw, decode, "event", _FIELDS)
        kind = EventType(codec.get_text(body, "type", "event", 32))
        state_key = codec.get_text(body, "state_key", "event", 320) if "state_key" in body else None
        content = codec.expect_map(codec.field(body, "content", "event"), "content")
        check_content(kind, state_key, content)
        account = AccountKey(codec.get_bytes(body, "account", "event", size=KEY_SIZE))
        device = DeviceKey(codec.get_bytes(body, "device", "event", size=KEY_SIZE))
        seq = codec.get_int(body, "seq", "event", minimum=1)
        depth = codec.get_int(body, "depth", "event")
        ts = codec.get_int(body, "ts", "event")
        prev_seq = (
            codec.get_bytes(body, "prev_seq", "event", ID_SIZE) if "prev_seq" in body else None
        )
        raw_prev = codec.expect_list(body["prev"], "prev") if "prev" in body else []
        prev = tuple(p for p in raw_prev if isinstance(p, bytes) and len(p) == ID_SIZE)
        if len(prev) != len(raw_prev) or list(prev) != sorted(set(prev)):
            raise DecodeError("prev: sorted, distinct 32-byte ids")
        if len(prev) > MAX_PREV:
            raise InvalidEvent("too-many-parents", f"{len(prev)} parents")
        if (seq == 1) != (prev_seq is None):
            raise DecodeError("prev_seq is absent exactly for the first event of a device")
        if kind is EventType.CREATE:
            if "room" in body or prev or depth != 0 or seq != 1 or state_key != "":
                raise DecodeError("create: no room, no parents, depth 0, seq 1, state_key ''")
            room = b""
        else:
            room = codec.get_bytes(body, "room", "event", size=ID_SIZE)
            if not prev or depth < 1:
                raise DecodeError("an event other than create has parents and depth ≥ 1")
    except (DecodeError, ValueError) as exc:
        raise InvalidEvent("malformed", str(exc)) from exc
    try:
        if not stored:
            device.verify(EVENT_CONTEXT + encoded, signature)
    except RemoteError as exc:
        raise InvalidEvent("bad-signature", str(exc)) from exc
    identifier = event_id(raw)
    return Event(
        id=identifier,
        type=kind,
        room=room or identifier,
        state_key=state_key,
        account=account,
        device=device,
        seq=seq,
        prev_seq=prev_seq,
        prev=prev,
        depth=depth,
        ts=ts,
        content=content,
        raw=raw,
    )

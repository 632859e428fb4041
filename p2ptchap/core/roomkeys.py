"""Room-key delivery: signed prekeys, and Megolm keys sealed to each member device.

**Prekeys.**  Each device publishes a signed, rotating X25519 *prekey*: the
envelope ``{"body", "sig"}`` (:mod:`p2ptchap.core.envelope`) whose body is
``{"v": 1, "account", "device", "key", "created"}``, signed by the device
under the context ``"p2ptchap/1 prekey" || 0x00``.  Prekey records are
gossiped with certificates.  A device makes a new one every
:data:`PREKEY_ROTATION` and deletes the secret of a replaced one
:data:`PREKEY_GRACE` later, so that a key share captured today cannot be
opened once that time has passed, even with the device's long-term keys.

**Shares.**  A Megolm session key (index and ratchet) is sent to one device
as a one-way ``Noise_K_25519_ChaChaPoly_BLAKE2b`` message: the initiator is
the sending device with its certificate's X25519 key, the responder's
static key is the recipient's prekey (both known in advance, so the message
is ``e || AEAD(payload)``, 48 bytes plus the payload).  The prologue binds
the kind of share, the room, the session, the sender device and the
recipient device, so a share cannot be replayed into another room, session,
recipient or kind.  With no prekey known for a device, the share is sealed
to the X25519 key of its certificate (``prekey id`` empty) — weaker, since
that key does not rotate; it happens only before the device's first prekey
has reached the sender.

Two kinds of shares, with distinct prologues and payloads:

* ``room-key`` — the sender's own session: payload ``{"index", "ratchet"}``;
  accepted only when the session's owner is the device that signed the
  event carrying it.
* ``history`` — a bundle of past sessions of a room whose history is shared,
  sent by a member to a newly invited member: payload
  ``{"sessions": [[owner, session, index, ratchet], …]}``.

The events carrying shares are room events (``room_key`` and
``history_keys``, :mod:`p2ptchap.core.events`), so any peer stores and
forwards them like any event.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.envelope import open_envelope, seal
from p2ptchap.core.errors import N_, DecodeError, RemoteError
from p2ptchap.core.keys import (
    KEY_SIZE,
    AccountKey,
    DeviceKey,
    DeviceSecret,
    ExchangeKey,
    ExchangeSecret,
    Rng,
)
from p2ptchap.core.megolm import RATCHET_SIZE, SESSION_ID_SIZE, MegolmError, Ratchet
from p2ptchap.core.noise import HandshakeState, X25519KeyPair, X25519PublicKey

PREKEY_CONTEXT: Final = b"p2ptchap/1 prekey\x00"
#: A device makes a new prekey this often (seconds) …
PREKEY_ROTATION: Final = 7 * 24 * 3600
#: … and deletes a replaced prekey's secret this long after it was replaced.
PREKEY_GRACE: Final = 30 * 24 * 3600
PREKEY_ID_SIZE: Final = 8
NOISE_PATTERN: Final = "K"
_PROLOGUE: Final = b"p2ptchap/1 "
#: A share of one session: 48 bytes of Noise overhead, ~150 of payload.
MAX_SHARE_BYTES: Final = 60 * 1024
#: Sessions per history bundle message (~190 bytes each: a share stays under 20 KiB).
MAX_BUNDLE_SESSIONS: Final = 100
_PREKEY_LIMITS: Final = Limits(max_bytes=512, max_items=16, max_depth=2)
_PAYLOAD_LIMITS: Final = Limits(max_bytes=MAX_SHARE_BYTES, max_items=4 * 1024, max_depth=4)


class ShareKind(enum.Enum):
    """What a sealed share carries; each kind has its own prologue."""

    ROOM_KEY = "room-key"
    HISTORY = "history"


class InvalidPrekey(RemoteError):
    default_message = N_("A device's published key was malformed or forged and was ignored.")


class InvalidShare(RemoteError):
    """A key share that does not open for us, or whose payload is malformed."""

    default_message = N_("A room key sent to this device could not be opened and was ignored.")


# --- prekeys ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Prekey:
    """A device's signed prekey record."""

    account: AccountKey
    device: DeviceKey
    key: ExchangeKey
    created: int
    raw: bytes

    @property
    def id(self) -> bytes:
        """The short id a share names its prekey by: the key's first bytes."""
        return bytes(self.key)[:PREKEY_ID_SIZE]

    @property
    def record_id(self) -> bytes:
        """The id under which trust gossip knows the record."""
        return hashlib.blake2b(self.raw, digest_size=32).digest()


def make_prekey(secret: DeviceSecret, account: AccountKey, key: ExchangeKey, created: int) -> bytes:
    body = codec.encode(
        {
            "v": 1,
            "account": bytes(account),
            "device": bytes(secret.public_key()),
            "key": bytes(key),
            "created": created,
        }
    )
    return seal(secret, PREKEY_CONTEXT, body)


def parse_prekey(raw: bytes, *, verify: bool = True) -> Prekey:
    """Check a prekey record's shape and device signature; raise :class:`InvalidPrekey`.

    Whether the device belongs to the account, and is valid, is the
    caller's question (it holds the directory).  ``verify=False`` is for
    records read back from our own database, checked when they were stored.
    """
    what = "prekey"
    try:
        body_bytes, body, signature = open_envelope(
            raw,
            lambda data: codec.decode(data, _PREKEY_LIMITS),
            what,
            ("v", "account", "device", "key", "created"),
        )
        prekey = Prekey(
            AccountKey(codec.get_bytes(body, "account", what, size=KEY_SIZE)),
            DeviceKey(codec.get_bytes(body, "device", what, size=KEY_SIZE)),
            ExchangeKey(codec.get_bytes(body, "key", what, size=KEY_SIZE)),
            codec.get_int(body, "created", what, minimum=0),
            raw,
        )
        if verify:
            prekey.device.verify(PREKEY_CONTEXT + body_bytes, signature)
    except (DecodeError, RemoteError) as exc:
        raise InvalidPrekey(str(exc)) from exc
    return prekey


# --- shares -------------------------------------------------------------------------------


def _prologue(
    kind: ShareKind, room: bytes, session: bytes, sender: DeviceKey, recipient: DeviceKey
) -> bytes:
    return (
        _PROLOGUE
        + kind.value.encode()
        + b"\x00"
        + room
        + session
        + bytes(sender)
        + bytes(recipient)
    )


def seal_share(
    kind: ShareKind,
    payload: bytes,
    *,
    room: bytes,
    session: bytes,
    sender: DeviceKey,
    sender_exchange: ExchangeSecret,
    recipient: DeviceKey,
    recipient_key: ExchangeKey,
    rng: Rng,
) -> bytes:
    """One-way Noise ``K`` message carrying ``payload`` to ``recipient``'s ``recipient_key``."""
    handshake = HandshakeState(
        NOISE_PATTERN,
        initiator=True,
        prologue=_prologue(kind, room, session, sender, recipient),
        s=X25519KeyPair(sender_exchange.secret_bytes()),
        rs=X25519PublicKey(bytes(recipient_key)),
        rng=rng,
    )
    return handshake.write_message(payload)


def open_share(
    kind: ShareKind,
    message: bytes,
    *,
    room: bytes,
    session: bytes,
    sender: DeviceKey,
    sender_exchange: ExchangeKey,
    recipient: DeviceKey,
    recipient_secret: bytes,
) -> bytes:
    """The payload of a share sealed to us; raises :class:`InvalidShare`."""
    if len(message) > MAX_SHARE_BYTES:
        raise InvalidShare("share too large")
    try:
        handshake = HandshakeState(
            NOISE_PATTERN,
            initiator=False,
            prologue=_prologue(kind, room, session, sender, recipient),
            s=X25519KeyPair(recipient_secret),
            rs=X25519PublicKey(bytes(sender_exchange)),
        )
        return handshake.read_message(message)
    except (RemoteError, DecodeError) as exc:
        raise InvalidShare(str(exc)) from exc


def encode_room_key(ratchet: Ratchet) -> bytes:
    return codec.encode({"index": ratchet.index, "ratchet": ratchet.data})


def decode_room_key(payload: bytes) -> Ratchet:
    what = "room key"
    try:
        body = codec.expect_map(codec.decode(payload, _PAYLOAD_LIMITS), what)
        codec.only_keys(body, ("index", "ratchet"), what)
        return Ratchet(
            codec.get_int(body, "index", what, minimum=0),
            codec.get_bytes(body, "ratchet", what, size=RATCHET_SIZE),
        )
    except (DecodeError, MegolmError) as exc:
        raise InvalidShare(str(exc)) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryKey:
    """One past session in a history bundle."""

    owner: DeviceKey
    session: bytes
    ratchet: Ratchet


def encode_history(keys: list[HistoryKey]) -> bytes:
    return codec.encode(
        {"sessions": [[bytes(k.owner), k.session, k.ratchet.index, k.ratchet.data] for k in keys]}
    )


def decode_history(payload: bytes) -> list[HistoryKey]:
    what = "history bundle"
    try:
        body = codec.expect_map(codec.decode(payload, _PAYLOAD_LIMITS), what)
        codec.only_keys(body, ("sessions",), what)
        items = codec.expect_list(codec.field(body, "sessions", what), what)
        if len(items) > MAX_BUNDLE_SESSIONS:
            raise DecodeError("history bundle: too many sessions")
        keys = []
        for item in items:
            entry = codec.expect_list(item, what)
            if len(entry) != 4:
                raise DecodeError("history bundle: [owner, session, index, ratchet]")
            owner, session, index, data = entry
            if not (
                isinstance(owner, bytes)
                and len(owner) == KEY_SIZE
                and isinstance(session, bytes)
                and len(session) == SESSION_ID_SIZE
                and isinstance(index, int)
                and not isinstance(index, bool)
                and isinstance(data, bytes)
            ):
                raise DecodeError("history bundle: malformed entry")
            keys.append(HistoryKey(DeviceKey(owner), session, Ratchet(index, data)))
        return keys
    except (DecodeError, MegolmError) as exc:
        raise InvalidShare(str(exc)) from exc

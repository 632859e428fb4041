"""Pairing over the LAN: enrolment with an authority, linking a new device.

A node without a certificate cannot open a secure channel (it has no
credentials), so enrolment and device linking use their own short exchange,
authenticated by people instead of certificates:

1. The server first sends a **commitment**: a hash of the ephemeral key and
   the offer it will send in message 2 (:func:`commitment`).
2. ``Noise_NN_25519_ChaChaPoly_BLAKE2b``, prologue ``p2ptchap/1 pairing``:
   message 1 (client → server) has an empty payload; message 2 (server →
   client) carries the server's :class:`Offer` — the authority's trust file,
   or the account's certificate and trust files.  The client checks it
   matches the commitment.
3. Both screens show a **short code** derived from the handshake hash
   (:func:`short_code`).  An attacker in the middle holds two handshakes;
   because each side's last key was fixed before the other key was known
   (the client's ephemeral is sent after the server committed to its own),
   the attacker cannot search for keys that make the two codes match: they
   agree by chance only, one time in a million.  The people compare the
   codes before the server approves anything.
3. The client sends its request (:class:`EnrolRequest` or
   :class:`LinkRequest`); the server, once a person has approved, answers with
   a certificate (:class:`Issued`), a device bundle (:class:`Linked`), or
   :class:`Refused`.

Framing is the secure channel's (2-byte length, then a Noise message), and
after the handshake each Noise transport message carries one CBOR message.
This module is pure; :mod:`p2ptchap.net.pairing` runs it over TCP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import N_, DecodeError, RemoteError, UsageError
from p2ptchap.core.keys import KEY_SIZE, SIGNATURE_SIZE, DeviceKey, DeviceSecret, ExchangeKey, Rng
from p2ptchap.core.noise import HandshakeState, NoiseTransport, X25519KeyPair

PROLOGUE: Final = b"p2ptchap/1 pairing"
LINK_CONTEXT: Final = b"p2ptchap/1 device link\x00"
LENGTH_PREFIX: Final = 2
DEFAULT_PORT: Final = 7756
_LIMITS: Final = Limits(max_bytes=4 << 20, max_items=1 << 14, max_depth=3)
COMMITMENT_SIZE: Final = 32


class PairingError(RemoteError):
    """The other side broke the pairing exchange (for example, a false commitment)."""

    default_message = N_(
        "The pairing failed: the other side did not follow the protocol; someone may be "
        "interfering. Try again."
    )


class PairingUsageError(UsageError):
    """The pairing exchange was driven out of order (a bug in the caller)."""


# --- messages ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    """What the server shows of itself in handshake message 2.

    ``kind`` is ``"authority"`` (``trust`` holds its one trust file) or
    ``"account"`` (``account`` is the account certificate and ``trust`` the
    trust files of the first device).
    """

    kind: str
    trust: tuple[bytes, ...]
    account: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class EnrolRequest:
    """An enrolment request (the COSE bytes made by ``init``)."""

    request: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRequest:
    """A new device's keys and name, with proof that it holds the signing key."""

    device: DeviceKey
    exchange: ExchangeKey
    name: str
    signature: bytes

    def verify(self, handshake_hash: bytes) -> None:
        """Raise ``VerificationError(BAD_SIGNATURE)`` unless signed for this session."""
        self.device.verify(link_message(handshake_hash, self.exchange, self.name), self.signature)


@dataclasses.dataclass(frozen=True, slots=True)
class Issued:
    """The authority's answer: the account certificate."""

    certificate: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Linked:
    """The first device's answer: everything the new device needs but its own keys."""

    account: bytes
    device: bytes
    trust: tuple[bytes, ...]
    revocations: tuple[bytes, ...]
    devices: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """The server (a person) said no."""

    reason: str


Message = Offer | EnrolRequest | LinkRequest | Issued | Linked | Refused


def link_message(handshake_hash: bytes, exchange: ExchangeKey, name: str) -> bytes:
    """What a new device signs: bound to this pairing session and its keys."""
    return LINK_CONTEXT + handshake_hash + bytes(exchange) + name.encode("utf-8")


def sign_link(
    secret: DeviceSecret, exchange: ExchangeKey, name: str, handshake_hash: bytes
) -> LinkRequest:
    message = link_message(handshake_hash, exchange, name)
    return LinkRequest(secret.public_key(), exchange, name, secret.sign(message))


def _bytes_list(body: dict[codec.Key, codec.Value], key: str) -> tuple[bytes, ...]:
    items = codec.expect_list(codec.field(body, key, "pairing"), key)
    if not all(isinstance(item, bytes) for item in items):
        raise DecodeError(f"pairing: {key} must hold byte strings")
    return tuple(item for item in items if isinstance(item, bytes))


def encode(message: Message) -> bytes:
    """The CBOR form of a pairing message."""
    body: dict[codec.Key, codec.Value]
    if isinstance(message, Offer):
        body = {
            "t": "offer",
            "kind": message.kind,
            "trust": list(message.trust),
            "account": message.account,
        }
    elif isinstance(message, EnrolRequest):
        body = {"t": "enrol", "request": message.request}
    elif isinstance(message, LinkRequest):
        body = {
            "t": "link",
            "device": bytes(message.device),
            "exchange": bytes(message.exchange),
            "name": message.name,
            "sig": message.signature,
        }
    elif isinstance(message, Issued):
        body = {"t": "issued", "certificate": message.certificate}
    elif isinstance(message, Linked):
        body = {
            "t": "linked",
            "account": message.account,
            "device": message.device,
            "trust": list(message.trust),
            "revocations": list(message.revocations),
            "devices": list(message.devices),
        }
    else:
        body = {"t": "refused", "reason": message.reason}
    return codec.encode(body)


def decode(data: bytes) -> Message:
    """Parse a pairing message; raise :class:`DecodeError`."""
    body = codec.expect_map(codec.decode(data, _LIMITS), "pairing")
    kind = codec.get_text(body, "t", "pairing", 16)
    if kind == "offer":
        codec.only_keys(body, ("t", "kind", "trust", "account"), "offer")
        offer_kind = codec.get_text(body, "kind", "offer", 16)
        if offer_kind not in {"authority", "account"}:
            raise DecodeError("offer: unknown kind")
        return Offer(
            offer_kind, _bytes_list(body, "trust"), codec.get_bytes(body, "account", "offer")
        )
    if kind == "enrol":
        codec.only_keys(body, ("t", "request"), "enrol")
        return EnrolRequest(codec.get_bytes(body, "request", "enrol"))
    if kind == "link":
        codec.only_keys(body, ("t", "device", "exchange", "name", "sig"), "link")
        return LinkRequest(
            DeviceKey(codec.get_bytes(body, "device", "link", size=KEY_SIZE)),
            ExchangeKey(codec.get_bytes(body, "exchange", "link", size=KEY_SIZE)),
            codec.get_text(body, "name", "link", 64),
            codec.get_bytes(body, "sig", "link", size=SIGNATURE_SIZE),
        )
    if kind == "issued":
        codec.only_keys(body, ("t", "certificate"), "issued")
        return Issued(codec.get_bytes(body, "certificate", "issued"))
    if kind == "linked":
        codec.only_keys(
            body, ("t", "account", "device", "trust", "revocations", "devices"), "linked"
        )
        return Linked(
            codec.get_bytes(body, "account", "linked"),
            codec.get_bytes(body, "device", "linked"),
            _bytes_list(body, "trust"),
            _bytes_list(body, "revocations"),
            _bytes_list(body, "devices"),
        )
    if kind == "refused":
        codec.only_keys(body, ("t", "reason"), "refused")
        return Refused(codec.get_text(body, "reason", "refused", 200))
    raise DecodeError(f"pairing: unknown message {kind!r}")


# --- the session -------------------------------------------------------------------


def short_code(handshake_hash: bytes) -> str:
    """Six digits both people compare, e.g. ``"042 917"``."""
    digest = hashlib.blake2b(handshake_hash, digest_size=8, person=b"p2ptchap-pairing").digest()
    number = int.from_bytes(digest, "big") % 1_000_000
    return f"{number // 1000:03d} {number % 1000:03d}"


def commitment(ephemeral_public: bytes, offer: Offer) -> bytes:
    """The server's commitment to its ephemeral key and offer (32 bytes)."""
    return hashlib.blake2b(
        ephemeral_public + encode(offer), digest_size=COMMITMENT_SIZE, person=b"p2ptchap-commit"
    ).digest()


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(LENGTH_PREFIX, "big") + message


class PairingSession:
    """One side of the pairing handshake and the encrypted messages after it.

    Every method takes or returns one Noise message *without* its length
    prefix (use :func:`frame`); the caller reads frames off the stream.
    """

    def __init__(self, *, client: bool, rng: Rng, offer: Offer | None = None) -> None:
        """A client, or a server that will send ``offer``."""
        self.client = client
        if client == (offer is not None):
            raise PairingUsageError("a server needs an offer, a client none")
        # The server's ephemeral key is drawn now, so that it can commit to
        # it before seeing the client's.
        self._ephemeral = None if client else X25519KeyPair.generate(rng)
        self._offer = offer
        self._commitment = b""
        self._handshake: HandshakeState | None = HandshakeState(
            "NN", initiator=client, prologue=PROLOGUE, e=self._ephemeral, rng=rng
        )
        self._transport: NoiseTransport | None = None
        self.handshake_hash = b""

    def commit(self) -> bytes:
        """Server: the commitment, sent before anything else."""
        if self._ephemeral is None or self._offer is None:
            raise PairingUsageError("only a server commits")
        return commitment(bytes(self._ephemeral.public), self._offer)

    def receive_commitment(self, data: bytes) -> None:
        """Client: keep the server's commitment."""
        if not self.client or self._commitment:
            raise PairingUsageError("only a client receives one commitment")
        if len(data) != COMMITMENT_SIZE:
            raise PairingError("pairing: bad commitment")
        self._commitment = data

    def hello(self) -> bytes:
        """Client: handshake message 1 (after the commitment)."""
        if not self.client or self._handshake is None or not self._commitment:
            raise PairingUsageError("a client says hello once, after the commitment")
        return self._handshake.write_message(b"")

    def answer(self, hello: bytes) -> bytes:
        """Server: read message 1, return message 2 carrying the offer."""
        handshake = self._require_handshake(client=False)
        assert self._offer is not None
        if handshake.read_message(hello):
            raise DecodeError("pairing: message 1 carries a payload")
        reply = handshake.write_message(encode(self._offer))
        self._complete(handshake)
        return reply

    def receive_offer(self, reply: bytes) -> Offer:
        """Client: read message 2; return the server's offer if it matches the commitment."""
        handshake = self._require_handshake(client=True)
        offer = decode(handshake.read_message(reply))
        remote = handshake.remote_ephemeral
        self._complete(handshake)
        if not isinstance(offer, Offer):
            raise DecodeError("pairing: message 2 is not an offer")
        if remote is None or not hmac.compare_digest(
            commitment(bytes(remote), offer), self._commitment
        ):
            raise PairingError("pairing: the offer does not match the commitment")
        return offer

    @property
    def code(self) -> str:
        if not self.handshake_hash:
            raise PairingUsageError("no code before the handshake")
        return short_code(self.handshake_hash)

    def seal(self, message: Message) -> bytes:
        return self._require_transport().encrypt(encode(message))

    def open(self, ciphertext: bytes) -> Message:
        return decode(self._require_transport().decrypt(ciphertext))

    def _require_handshake(self, *, client: bool) -> HandshakeState:
        if self._handshake is None or self.client is not client:
            raise PairingUsageError("pairing handshake out of order")
        return self._handshake

    def _complete(self, handshake: HandshakeState) -> None:
        self._transport = handshake.to_transport()
        self.handshake_hash = handshake.handshake_hash
        self._handshake = None

    def _require_transport(self) -> NoiseTransport:
        if self._transport is None:
            raise PairingUsageError("pairing handshake not finished")
        return self._transport

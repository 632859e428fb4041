"""The secure channel between two devices: Noise XX with certificates, then framed records.

Sans-I/O, in the h11 shape: feed received bytes to :meth:`SecureChannel.
receive_data`, pull :class:`Event` objects from :meth:`SecureChannel.
next_event` until it returns :data:`NEED_DATA`, and send whatever
:meth:`SecureChannel.data_to_send` returns.  The same class plays both
roles; only the handshake order differs.

Handshake (``Noise_XX_25519_ChaChaPoly_BLAKE2b``, prologue ``p2ptchap/1``;
``Noise_XXpsk3_…`` when the organisation uses a network key):

=====  ==================  =================================================
msg    direction           payload
=====  ==================  =================================================
1      initiator → resp.   empty (it travels in clear)
2      responder → init.   responder's credentials; empty with a network key
3      initiator → resp.   initiator's credentials
(4)    responder → init.   with a network key only: a CREDENTIALS record
=====  ==================  =================================================

Credentials are the account and device certificates and the device's
signature over the Noise static key.  Without a network key the initiator
checks the responder's credentials *before* sending its own, so it reveals
its identity only to a certified device.  With a network key the responder
keeps its certificates until message 3 has proven the initiator knows the
key, so a foreign device is turned away before it sees any certificate.

A peer whose credentials do not verify gets nothing more: the channel fails
with :class:`PeerRejected` (carrying the precise reason) and the shell closes
the connection without a word.

Wire: every Noise message is preceded by its length, 2 bytes big-endian.
After the handshake each Noise message carries one *record*: a type byte and
a body.  Application messages larger than a record are split into
``MORE`` records ending with one ``DATA`` record and reassembled up to
``max_message``.  ``CLOSE`` ends the channel explicitly, so a connection
cut by an attacker is told apart from a finished one.  ``REKEY`` announces
that the sender's following records use the next key (Noise ``REKEY()``),
sent every ``rekey_after`` records.  ``PING``/``PONG`` carry heartbeats.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Callable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import (
    DecodeError,
    RemoteError,
    UsageError,
    VerificationError,
    VerificationFailure,
)
from p2ptchap.core.identity import VerifiedDevice
from p2ptchap.core.keys import SIGNATURE_SIZE, DeviceSecret, Rng
from p2ptchap.core.noise import (
    MAX_MESSAGE_LEN,
    HandshakeState,
    NoiseTransport,
    X25519KeyPair,
    X25519PublicKey,
)
from p2ptchap.core.noise_patterns import TAGLEN

PROLOGUE: Final = b"p2ptchap/1"
STATIC_KEY_CONTEXT: Final = b"p2ptchap/1 noise static key\x00"
LENGTH_PREFIX: Final = 2
#: The largest record body: a Noise message minus its tag and the type byte.
MAX_RECORD_BODY: Final = MAX_MESSAGE_LEN - TAGLEN - 1
MAX_PING_BODY: Final = 64
_CREDENTIALS_LIMITS: Final = Limits(max_bytes=32 * 1024, max_items=16, max_depth=2)

#: Checks a peer's certificates: ``verify(account, device) -> VerifiedDevice``.
#: The shell binds it to the current trust store, revocations and clock, and
#: it raises :class:`VerificationError` with the reason.
Verifier = Callable[[bytes, bytes], VerifiedDevice]


class RecordType(enum.IntEnum):
    """The first byte of every record after the handshake."""

    DATA = 0
    MORE = 1
    CLOSE = 2
    REKEY = 3
    PING = 4
    PONG = 5
    CREDENTIALS = 6


# --- errors ------------------------------------------------------------------


class ChannelUsageError(UsageError):
    """The channel was used out of order (a bug in the caller)."""


class ProtocolViolation(RemoteError):
    """The peer broke the channel protocol: bad framing, record or size."""

    default_message = "The other device broke the protocol; the connection was closed."


class PeerRejected(RemoteError):
    """The peer's credentials did not verify; ``reason`` says why."""

    default_message = "A device with invalid credentials was refused."

    def __init__(self, reason: VerificationFailure, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason


class ConnectionTruncated(RemoteError):
    """The byte stream ended without a CLOSE record."""

    default_message = "The connection was cut before it was closed."


# --- credentials ---------------------------------------------------------------


def make_credentials(
    account_certificate: bytes,
    device_certificate: bytes,
    device_secret: DeviceSecret,
    static_public: X25519PublicKey,
) -> bytes:
    """Our handshake credentials: certificates and a signature over our static key."""
    signature = device_secret.sign(STATIC_KEY_CONTEXT + bytes(static_public))
    return codec.encode(
        {"account": account_certificate, "device": device_certificate, "sig": signature}
    )


def verify_credentials(
    payload: bytes, static_public: X25519PublicKey, verify: Verifier
) -> VerifiedDevice:
    """Check credentials received for the peer's Noise static key.

    Raises :class:`PeerRejected` with the first failing reason.
    """
    try:
        body = codec.expect_map(codec.decode(payload, _CREDENTIALS_LIMITS), "credentials")
        codec.only_keys(body, ("account", "device", "sig"), "credentials")
        account = codec.get_bytes(body, "account", "credentials")
        device = codec.get_bytes(body, "device", "credentials")
        signature = codec.get_bytes(body, "sig", "credentials", size=SIGNATURE_SIZE)
    except DecodeError as exc:
        raise PeerRejected(VerificationFailure.MALFORMED, f"credentials: {exc}") from exc
    try:
        verified = verify(account, device)
        verified.device.device_key.verify(STATIC_KEY_CONTEXT + bytes(static_public), signature)
    except VerificationError as exc:
        raise PeerRejected(exc.reason, str(exc)) from exc
    return verified


# --- events --------------------------------------------------------------------


class Event:
    """Something the channel has to tell its owner."""


@dataclasses.dataclass(frozen=True, slots=True)
class Established(Event):
    """The handshake finished and the peer's credentials verified."""

    peer: VerifiedDevice
    handshake_hash: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Message(Event):
    """One application message, reassembled."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Pong(Event):
    """The answer to one of our pings, with the body we sent."""

    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Closed(Event):
    """The peer closed the channel cleanly."""


class _NeedData(Event):
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`SecureChannel.next_event` when more bytes are needed.
NEED_DATA: Final = _NeedData()


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Limits and options of a channel; the defaults suit a LAN messenger.

    ``network_key`` (32 bytes) selects ``XXpsk3``; both sides must have the
    same.  ``max_message`` bounds a reassembled application message and
    ``max_buffered`` the received bytes not yet turned into events, so a
    flooding peer costs us at most that much memory.
    """

    network_key: bytes | None = None
    max_message: int = 4 << 20
    max_buffered: int = 8 << 20
    rekey_after: int = 1 << 16

    def __post_init__(self) -> None:
        if self.network_key is not None and len(self.network_key) != 32:
            raise ChannelUsageError("a network key is 32 bytes")


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    AWAIT_CREDENTIALS = "await-credentials"  # initiator with a network key
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class SecureChannel:
    """One end of a secure channel (see the module documentation).

    ``static`` is our Noise static key pair and ``credentials`` the payload
    made by :func:`make_credentials` for it.  ``verify`` checks the peer's
    certificates.  Once any method raises a :class:`RemoteError` the channel
    is failed for good: the owner must drop the connection.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static: X25519KeyPair,
        credentials: bytes,
        verify: Verifier,
        rng: Rng,
        config: ChannelConfig = ChannelConfig(),
    ) -> None:
        self.initiator = initiator
        self.config = config
        self._credentials = credentials
        self._verify = verify
        self._psk = config.network_key is not None
        self._handshake: HandshakeState | None = HandshakeState(
            "XXpsk3" if self._psk else "XX",
            initiator=initiator,
            prologue=PROLOGUE,
            s=static,
            psks=(config.network_key,) if config.network_key is not None else (),
            rng=rng,
        )
        self._transport: NoiseTransport | None = None
        self._state = _State.HANDSHAKE
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._events: deque[Event] = deque()
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._sent_since_rekey = 0
        self._eof = False
        self.peer: VerifiedDevice | None = None
        self.handshake_hash: bytes | None = None
        if initiator:
            self._write_handshake(b"")

    # --- state -------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether application messages may be sent and received."""
        return self._state is _State.OPEN

    @property
    def is_closed(self) -> bool:
        return self._state in {_State.CLOSED, _State.FAILED}

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer now (and forget)."""
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    # --- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` means the stream ended."""
        if self._state in {_State.FAILED, _State.CLOSED}:
            return  # nothing more is read after a CLOSE or a failure
        if not data:
            self._eof = True
            return
        if len(self._inbox) + len(data) > self.config.max_buffered:
            self._fail()
            raise ProtocolViolation("peer sends more than we buffer")
        self._inbox += data

    def next_event(self) -> Event:
        """The next event, or :data:`NEED_DATA`.

        Raises :class:`PeerRejected`, :class:`ProtocolViolation`,
        :class:`ConnectionTruncated` or a Noise error (all
        :class:`RemoteError`) when the peer misbehaves; the channel is then
        failed.
        """
        try:
            while not self._events:
                if self._state in {_State.CLOSED, _State.FAILED}:
                    return NEED_DATA
                message = self._take_message()
                if message is None:
                    if self._eof:
                        raise ConnectionTruncated("stream ended mid-channel")
                    return NEED_DATA
                if self._state is _State.HANDSHAKE:
                    self._read_handshake(message)
                else:
                    self._read_record(message)
        except RemoteError:
            self._fail()
            raise
        return self._events.popleft()

    def _take_message(self) -> bytes | None:
        if len(self._inbox) < LENGTH_PREFIX:
            return None
        length = int.from_bytes(self._inbox[:LENGTH_PREFIX], "big")
        if length == 0:
            raise ProtocolViolation("empty Noise message")
        end = LENGTH_PREFIX + length
        if len(self._inbox) < end:
            return None
        message = bytes(self._inbox[LENGTH_PREFIX:end])
        del self._inbox[:end]
        return message

    def _read_handshake(self, message: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None  # in HANDSHAKE state
        payload = handshake.read_message(message)
        remote = handshake.remote_static
        if self.initiator:
            # Message 2: the responder's credentials, unless a network key
            # is in use (they come after message 3 then).
            if self._psk:
                if payload:
                    raise ProtocolViolation("message 2 carries a payload")
            else:
                assert remote is not None  # XX message 2 carries s
                self.peer = verify_credentials(payload, remote, self._verify)
            self._write_handshake(self._credentials)
            self._finish_handshake()
            if self.peer is not None:
                self._open()
            else:
                self._state = _State.AWAIT_CREDENTIALS
        elif handshake.is_our_turn:
            # Message 1 has no payload: it travels in clear.
            if payload:
                raise ProtocolViolation("message 1 carries a payload")
            self._write_handshake(b"" if self._psk else self._credentials)
        else:
            assert remote is not None  # XX message 3 carries s
            self.peer = verify_credentials(payload, remote, self._verify)
            self._finish_handshake()
            if self._psk:
                self._send_record(RecordType.CREDENTIALS, self._credentials)
            self._open()

    def _write_handshake(self, payload: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None
        self._frame(handshake.write_message(payload))

    def _finish_handshake(self) -> None:
        handshake = self._handshake
        assert handshake is not None and handshake.is_complete
        self._transport = handshake.to_transport()
        self.handshake_hash = handshake.handshake_hash
        self._handshake = None

    def _open(self) -> None:
        assert self.peer is not None and self.handshake_hash is not None
        self._state = _State.OPEN
        self._events.append(Established(self.peer, self.handshake_hash))

    def _read_record(self, message: bytes) -> None:  # noqa: PLR0912 - one branch per type
        transport = self._transport
        assert transport is not None
        plaintext = transport.decrypt(message)
        if not plaintext:
            raise ProtocolViolation("empty record")
        kind, body = plaintext[0], plaintext[1:]
        if self._state is _State.AWAIT_CREDENTIALS:
            if kind != RecordType.CREDENTIALS:
                raise ProtocolViolation("expected the responder's credentials")
            remote = transport.remote_static
            assert remote is not None
            self.peer = verify_credentials(body, remote, self._verify)
            self._open()
            return
        if kind in (RecordType.DATA, RecordType.MORE):
            self._fragment_size += len(body)
            if self._fragment_size > self.config.max_message:
                raise ProtocolViolation("message larger than the configured maximum")
            self._fragments.append(body)
            if kind == RecordType.DATA:
                self._events.append(Message(b"".join(self._fragments)))
                self._fragments, self._fragment_size = [], 0
        elif kind == RecordType.PING:
            if len(body) > MAX_PING_BODY:
                raise ProtocolViolation("ping body too large")
            self._send_record(RecordType.PONG, body)
        elif kind == RecordType.PONG:
            self._events.append(Pong(body))
        elif kind == RecordType.REKEY:
            if body:
                raise ProtocolViolation("rekey record with a body")
            transport.rekey_receive()
        elif kind == RecordType.CLOSE:
            if self._fragments:
                raise ProtocolViolation("close in the middle of a message")
            self._state = _State.CLOSED
            self._events.append(Closed())
        else:
            raise ProtocolViolation(f"unknown record type {kind}")

    # --- sending ---------------------------------------------------------------

    def send_message(self, data: bytes) -> None:
        """Queue one application message (split into records as needed)."""
        self._require_open()
        if len(data) > self.config.max_message:
            raise ChannelUsageError(f"message of {len(data)} bytes over the maximum")
        view = memoryview(data)
        while len(view) > MAX_RECORD_BODY:
            self._send_record(RecordType.MORE, bytes(view[:MAX_RECORD_BODY]))
            view = view[MAX_RECORD_BODY:]
        self._send_record(RecordType.DATA, bytes(view))

    def send_ping(self, body: bytes) -> None:
        """Queue a heartbeat; the peer answers with a :class:`Pong` carrying ``body``."""
        self._require_open()
        if len(body) > MAX_PING_BODY:
            raise ChannelUsageError("ping body too large")
        self._send_record(RecordType.PING, body)

    def rekey(self) -> None:
        """Move our sending direction to the next key now (also done every ``rekey_after``)."""
        self._require_open()
        self._rekey()

    def close(self) -> None:
        """Queue a CLOSE record; nothing more can be sent afterwards."""
        if self._state is _State.OPEN:
            self._send_record(RecordType.CLOSE, b"")
        self._state = _State.CLOSED

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise ChannelUsageError(f"channel is {self._state.value}, not open")

    def _send_record(self, kind: RecordType, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._sent_since_rekey >= self.config.rekey_after:
            self._rekey()
        self._frame(transport.encrypt(bytes((kind,)) + body))
        self._sent_since_rekey += 1

    def _rekey(self) -> None:
        transport = self._transport
        assert transport is not None
        self._frame(transport.encrypt(bytes((RecordType.REKEY,))))
        transport.rekey_send()
        self._sent_since_rekey = 0

    def _frame(self, message: bytes) -> None:
        self._outbox += len(message).to_bytes(LENGTH_PREFIX, "big") + message

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._handshake = None
        self._outbox.clear()
        self._inbox.clear()

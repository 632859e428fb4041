"""The Noise Protocol Framework, revision 34, for the suite 25519_ChaChaPoly_BLAKE2b.

This module follows the specification's own structure — :class:`CipherState`,
:class:`SymmetricState`, :class:`HandshakeState` — so each method can be read
against the section that defines it.  The handshake engine is generic: it
interprets the pattern tables of :mod:`p2ptchap.core.noise_patterns`, which
hold every fundamental, one-way and deferred pattern of the specification with
any PSK modifiers.  p2ptchap uses ``XX`` (optionally ``XXpsk3``) for
connections and the one-way ``K`` and ``X`` for room-key delivery.

The module is sans-I/O: it takes bytes and returns bytes.  It never reads a
clock or the operating system's random source; the ephemeral key comes either
from the caller or from the ``rng`` callable the caller passes in.  Framing
(the 2-byte length prefix) belongs to the network layer.

Errors are split by blame (see :mod:`p2ptchap.core.errors`): the peer's
fault is :class:`HandshakeError`, :class:`DecryptionError` or
:class:`MalformedNoiseMessage`; ours is :class:`NoiseUsageError` or
:class:`NonceExhausted`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import nacl.bindings
import nacl.exceptions

from p2ptchap.core.errors import DecodeError, LocalError, RemoteError, UsageError
from p2ptchap.core.noise_patterns import (
    DH_TOKENS,
    DHLEN,
    TAGLEN,
    Token,
    resolve_pattern,
)

#: Sizes fixed by the suite (DHLEN and TAGLEN come with the pattern tables).
HASHLEN: Final = 64
KEYLEN: Final = 32
#: Every Noise message, handshake or transport, is at most this long (§3).
MAX_MESSAGE_LEN: Final = 65535
#: The largest nonce value; it is reserved for REKEY and never used by EncryptWithAd (§5.1).
MAX_NONCE: Final = 2**64 - 1
SUITE: Final = "25519_ChaChaPoly_BLAKE2b"

#: ``rng(n)`` returns ``n`` uniformly random bytes.  Supplied by the shell.
Rng = Callable[[int], bytes]
#: What message-level functions accept: trio's receive_some() returns bytearray.
BytesLike = bytes | bytearray | memoryview


class NoiseUsageError(UsageError):
    """The Noise API was used in a way that cannot work (our fault, not the peer's)."""

    default_message = "Internal error: the secure channel was used incorrectly."


class NonceExhausted(LocalError):
    """A cipher state has no nonce left; the session must be rekeyed or replaced."""

    default_message = "The secure connection has used all its keys; reconnect to continue."


class MalformedNoiseMessage(DecodeError):
    """A received Noise message has an impossible length."""

    default_message = "The peer sent a malformed message; the connection was closed."


class HandshakeError(RemoteError):
    """The peer's handshake failed authentication or carried an unusable key."""

    default_message = (
        "The secure connection could not be set up: the other device is not who it "
        "claims to be, does not share the network key, or the data was altered on the way."
    )


class DecryptionError(RemoteError):
    """A message failed its integrity check: it was forged, altered or replayed."""

    default_message = (
        "A message from the other device failed its integrity check and was rejected; "
        "if this repeats, someone may be interfering with the network."
    )


class X25519PublicKey:
    """An X25519 public key: 32 bytes, compared in constant time."""

    SIZE: Final = DHLEN
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Wrap ``key``; raises :class:`NoiseUsageError` unless it is 32 bytes.

        No point validation happens here: X25519 accepts any 32 bytes, and
        low-order points are rejected when a Diffie-Hellman uses them.
        """
        key = bytes(key)
        if len(key) != self.SIZE:
            raise NoiseUsageError(f"an X25519 public key is {self.SIZE} bytes, not {len(key)}")
        self._key = key

    def __bytes__(self) -> bytes:
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519PublicKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"X25519PublicKey({self._key.hex()})"


class X25519KeyPair:
    """An X25519 private key with its public key.

    The private key is readable through :attr:`private` (the core needs it),
    but ``repr`` and ``str`` show only the public key so that logs and
    tracebacks never leak it.
    """

    __slots__ = ("_private", "public")

    def __init__(self, private: bytes) -> None:
        """Derive the public key; raises :class:`NoiseUsageError` unless 32 bytes."""
        private = bytes(private)
        if len(private) != DHLEN:
            raise NoiseUsageError(f"an X25519 private key is {DHLEN} bytes, not {len(private)}")
        self._private = private
        self.public = X25519PublicKey(nacl.bindings.crypto_scalarmult_base(private))

    @classmethod
    def generate(cls, rng: Rng) -> X25519KeyPair:
        """A new key pair from 32 bytes of ``rng``."""
        return cls(rng(DHLEN))

    @property
    def private(self) -> bytes:
        """The 32 private-key bytes (the scalar, before clamping)."""
        return self._private

    def __repr__(self) -> str:
        return f"X25519KeyPair(public={self.public._key.hex()})"


def _dh(pair: X25519KeyPair, public: X25519PublicKey) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(pair.private, bytes(public))
    except nacl.exceptions.RuntimeError as exc:
        # libsodium refuses when the result is all zero, i.e. the public key is
        # a low-order point: such a DH contributes no secret, so a handshake
        # that accepted it would be authenticated by nothing.
        raise HandshakeError("the peer's public key is a low-order point") from exc


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASHLEN).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    # hashlib.blake2b has block_size 128, which is what the spec's HMAC uses.
    return hmac.digest(key, data, hashlib.blake2b)


def _hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """HKDF of §4.3: ``outputs`` (2 or 3) values of HASHLEN bytes."""
    temp_key = _hmac(chaining_key, ikm)
    results: list[bytes] = []
    previous = b""
    for counter in range(1, outputs + 1):
        previous = _hmac(temp_key, previous + bytes([counter]))
        results.append(previous)
    return results


def _nonce_bytes(n: int) -> bytes:
    # ChaChaPoly's 96-bit nonce: 32 zero bits, then n as 64-bit little-endian.
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


class CipherState:
    """A key ``k`` (possibly empty) and a 64-bit nonce counter ``n``.

    Guarantees: through this object a nonce is never used twice with one key,
    and ``n`` advances only on success, so a forged message does not shift the
    nonces of the genuine messages that follow it.
    """

    __slots__ = ("_k", "_n")

    def __init__(self, key: bytes | None = None) -> None:
        """InitializeKey(key): ``None`` means the empty key (plaintext passes through)."""
        self._k: bytes | None = None
        self._n = 0
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        """Set ``k`` (32 bytes or ``None``) and reset ``n`` to zero."""
        if key is not None and len(key) != KEYLEN:
            raise NoiseUsageError(f"a ChaChaPoly key is {KEYLEN} bytes, not {len(key)}")
        self._k = None if key is None else bytes(key)
        self._n = 0

    def has_key(self) -> bool:
        """True when ``k`` is non-empty."""
        return self._k is not None

    @property
    def nonce(self) -> int:
        """The next nonce to be used."""
        return self._n

    def set_nonce(self, nonce: int) -> None:
        """SetNonce: for out-of-order transports; reusing a nonce breaks security."""
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseUsageError("a Noise nonce is a 64-bit unsigned integer")
        self._n = nonce

    def _check_nonce(self) -> None:
        if self._n >= MAX_NONCE:
            raise NonceExhausted("the cipher state has used all 2^64-1 nonces")

    def encrypt_with_ad(self, ad: BytesLike, plaintext: BytesLike) -> bytes:
        """ENCRYPT(k, n++, ad, plaintext), or ``plaintext`` unchanged if ``k`` is empty.

        Raises :class:`NonceExhausted` when ``n`` has reached 2^64-1.
        """
        if self._k is None:
            return bytes(plaintext)
        self._check_nonce()
        ciphertext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes(plaintext), bytes(ad), _nonce_bytes(self._n), self._k
        )
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: BytesLike, ciphertext: BytesLike) -> bytes:
        """DECRYPT(k, n++, ad, ciphertext), or ``ciphertext`` unchanged if ``k`` is empty.

        Raises :class:`DecryptionError` on authentication failure (``n`` is
        then left unchanged) and :class:`NonceExhausted` at ``n = 2^64-1``.
        """
        if self._k is None:
            return bytes(ciphertext)
        self._check_nonce()
        try:
            plaintext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                bytes(ciphertext), bytes(ad), _nonce_bytes(self._n), self._k
            )
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionError("authentication tag mismatch") from exc
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """Rekey (§4.2, §11.3): ``k`` = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros).

        ``n`` is unchanged, as the specification says.  Both parties must
        rekey at the same point in the message stream.
        """
        if self._k is None:
            raise NoiseUsageError("cannot rekey a cipher state that has no key")
        self._k = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes(KEYLEN), b"", _nonce_bytes(MAX_NONCE), self._k
        )[:KEYLEN]


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and a :class:`CipherState`."""

    __slots__ = ("_cipher", "_ck", "_h")

    def __init__(self, protocol_name: bytes) -> None:
        """InitializeSymmetric(protocol_name)."""
        if len(protocol_name) <= HASHLEN:
            self._h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self._h = _hash(protocol_name)
        self._ck = self._h
        self._cipher = CipherState()

    def has_key(self) -> bool:
        """True once some key material has been mixed into the cipher state."""
        return self._cipher.has_key()

    def mix_key(self, ikm: bytes) -> None:
        """MixKey: fold ``ikm`` into ``ck`` and derive a fresh cipher key."""
        self._ck, temp_k = _hkdf(self._ck, ikm, 2)
        # HASHLEN is 64, so the key is truncated to 32 bytes (§5.2).
        self._cipher.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        """MixHash: ``h = HASH(h || data)``."""
        self._h = _hash(self._h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """MixKeyAndHash, used for ``psk`` tokens."""
        self._ck, temp_h, temp_k = _hkdf(self._ck, ikm, 3)
        self.mix_hash(temp_h)
        self._cipher.initialize_key(temp_k[:KEYLEN])

    def get_handshake_hash(self) -> bytes:
        """The current ``h`` (64 bytes)."""
        return self._h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with ``h`` as associated data, then mix the ciphertext into ``h``."""
        ciphertext = self._cipher.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with ``h`` as associated data, then mix the ciphertext into ``h``.

        Raises :class:`DecryptionError` when authentication fails.
        """
        plaintext = self._cipher.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split: the initiator-to-responder and responder-to-initiator cipher states."""
        temp_k1, temp_k2 = _hkdf(self._ck, b"", 2)
        return CipherState(temp_k1[:KEYLEN]), CipherState(temp_k2[:KEYLEN])


class HandshakeState:
    """One party's side of a Noise handshake.

    Call :meth:`write_message` and :meth:`read_message` in the order the
    pattern dictates (:attr:`is_our_turn` says which).  When
    :attr:`is_complete` is true, :meth:`split` (or :meth:`to_transport`)
    yields the transport keys.

    Guarantees: after any error from :meth:`write_message` or
    :meth:`read_message` the handshake is dead — every later call raises
    :class:`NoiseUsageError` — so a half-authenticated state can never be
    split into transport keys.  A payload returned by :meth:`read_message` is
    authenticated whenever a key was already established (always, in p2ptchap's
    patterns, except the first ``XX`` message).
    """

    def __init__(
        self,
        pattern: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: X25519KeyPair | None = None,
        e: X25519KeyPair | None = None,
        rs: X25519PublicKey | None = None,
        psks: Sequence[bytes] = (),
        rng: Rng | None = None,
    ) -> None:
        """Initialize (§5.3).

        ``pattern`` is a pattern name with modifiers (``"XX"``, ``"XXpsk3"``).
        ``s`` is our static key pair, ``rs`` the responder's or initiator's
        static key known in advance; each must be given exactly when the
        pattern needs it.  ``e`` fixes our ephemeral key (test vectors only);
        otherwise it is generated from ``rng`` when first needed.  ``psks``
        holds one 32-byte key per ``psk`` token.

        Raises :class:`NoiseUsageError` when these arguments cannot work with
        the pattern, and ``UnknownPattern`` (a ``UsageError``) for an unknown
        pattern name.
        """
        self._pattern = resolved = resolve_pattern(pattern)
        self._initiator = initiator
        # Refuse keys the pattern does not use as firmly as missing ones: a
        # key given to the wrong pattern means the caller misunderstands what
        # the handshake authenticates.
        sends_e = Token.E in resolved.sent_tokens(initiator)
        for name, given, needed in (
            ("s", s, resolved.needs_static(initiator)),
            ("rs", rs, resolved.needs_remote_static(initiator)),
        ):
            if (given is not None) != needed:
                verb = "needs" if needed else "does not use"
                raise NoiseUsageError(f"{resolved.name} {verb} {name!r} for this role")
        if e is not None and not sends_e:
            raise NoiseUsageError(f"{resolved.name}: this role sends no ephemeral key")
        if e is None and sends_e and rng is None:
            raise NoiseUsageError("give either an ephemeral key pair or an rng")
        if len(psks) != resolved.psk_count or any(len(psk) != KEYLEN for psk in psks):
            raise NoiseUsageError(f"{resolved.name} takes {resolved.psk_count} 32-byte PSKs")
        self._s = s
        self._e = e
        self._rs = rs
        self._re: X25519PublicKey | None = None
        self._psks = [bytes(psk) for psk in psks]
        self._rng = rng
        self._psk_mode = self._pattern.psk_count > 0
        self._message_index = 0
        self._failed = False
        self._split_done = False
        self._symmetric = SymmetricState(self.protocol_name.encode("ascii"))
        self._symmetric.mix_hash(bytes(prologue))
        # Pre-message keys are hashed initiator's first (§7.1), whichever side
        # we are; the pattern table only ever puts "s" in a pre-message.
        for owner in (True, False):
            if self._pattern.premessage(owner):
                static = (s.public if s else None) if owner == initiator else rs
                assert static is not None  # checked above
                self._symmetric.mix_hash(bytes(static))

    @property
    def protocol_name(self) -> str:
        """The full protocol name, e.g. ``Noise_XX_25519_ChaChaPoly_BLAKE2b``."""
        return f"Noise_{self._pattern.name}_{SUITE}"

    @property
    def initiator(self) -> bool:
        """Our role."""
        return self._initiator

    @property
    def is_complete(self) -> bool:
        """True once every handshake message has been written or read successfully."""
        return not self._failed and self._message_index == len(self._pattern.messages)

    @property
    def is_our_turn(self) -> bool:
        """True when the next call must be :meth:`write_message`."""
        if self._failed or self.is_complete:
            return False
        return (self._message_index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """The final ``h`` (64 bytes), for channel binding; only once complete."""
        self._require_complete()
        return self._symmetric.get_handshake_hash()

    @property
    def remote_ephemeral(self) -> X25519PublicKey | None:
        """The peer's ephemeral public key, once received (``None`` before)."""
        return self._re

    @property
    def remote_static(self) -> X25519PublicKey | None:
        """The peer's static key, known in advance or received and authenticated.

        ``None`` until known, and after a failure (a key read from a message
        whose payload then failed authentication must not be trusted).
        """
        return None if self._failed else self._rs

    def write_message(self, payload: BytesLike = b"") -> bytes:
        """WriteMessage: the next handshake message, carrying ``payload``.

        Raises :class:`NoiseUsageError` when it is not our turn, the handshake
        is finished or dead, or the message would exceed 65535 bytes (the
        state is then unchanged).  Raises :class:`HandshakeError` when a
        Diffie-Hellman with the peer's key fails (low-order point).
        """
        tokens = self._next_message(writing=True)
        data = bytes(payload)
        length = self._pattern.message_size(self._message_index, len(data))
        if length > MAX_MESSAGE_LEN:
            raise NoiseUsageError(f"handshake message would be {length} bytes, over the limit")
        sym = self._symmetric
        out: list[bytes] = []
        with self._fail_on_error():
            for token in tokens:
                if token is Token.E:
                    if self._e is None:
                        assert self._rng is not None  # checked in __init__
                        self._e = X25519KeyPair.generate(self._rng)
                    public = bytes(self._e.public)
                    out.append(public)
                    sym.mix_hash(public)
                    if self._psk_mode:
                        sym.mix_key(public)
                elif token is Token.S:
                    assert self._s is not None  # checked in __init__
                    out.append(sym.encrypt_and_hash(bytes(self._s.public)))
                else:
                    self._process_key_token(token)
            out.append(sym.encrypt_and_hash(data))
            self._message_index += 1
        return b"".join(out)

    def read_message(self, message: BytesLike) -> bytes:
        """ReadMessage: process the peer's next handshake message, return its payload.

        Raises :class:`MalformedNoiseMessage` for a message too short for the
        pattern or over 65535 bytes, and :class:`HandshakeError` when it fails
        authentication or carries a low-order key; the handshake is then dead.
        Raises :class:`NoiseUsageError` when it is our turn to write or the
        handshake is finished or dead.
        """
        tokens = self._next_message(writing=False)
        data = bytes(message)
        sym = self._symmetric
        with self._fail_on_error():
            minimum = self._pattern.message_size(self._message_index, 0)
            if not minimum <= len(data) <= MAX_MESSAGE_LEN:
                raise MalformedNoiseMessage(
                    f"handshake message of {len(data)} bytes; expected "
                    f"{minimum} to {MAX_MESSAGE_LEN}"
                )
            view = memoryview(data)
            try:
                for token in tokens:
                    if token is Token.E:
                        public = bytes(view[:DHLEN])
                        view = view[DHLEN:]
                        self._re = X25519PublicKey(public)
                        sym.mix_hash(public)
                        if self._psk_mode:
                            sym.mix_key(public)
                    elif token is Token.S:
                        size = DHLEN + TAGLEN if sym.has_key() else DHLEN
                        static = sym.decrypt_and_hash(bytes(view[:size]))
                        view = view[size:]
                        self._rs = X25519PublicKey(static)
                    else:
                        self._process_key_token(token)
                payload = sym.decrypt_and_hash(bytes(view))
            except DecryptionError as exc:
                index = self._message_index
                raise HandshakeError(f"message {index} failed authentication") from exc
            self._message_index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Split, oriented for our role: ``(send, receive)``.

        May be called once, after completion; a second call raises
        :class:`NoiseUsageError`, because two copies of a cipher state would
        reuse nonces.  In one-way patterns the responder must not send: use
        :meth:`to_transport`, which enforces it.
        """
        self._require_complete()
        if self._split_done:
            raise NoiseUsageError("the handshake was already split into transport keys")
        self._split_done = True
        initiator_to_responder, responder_to_initiator = self._symmetric.split()
        if self._initiator:
            return initiator_to_responder, responder_to_initiator
        return responder_to_initiator, initiator_to_responder

    def to_transport(self) -> NoiseTransport:
        """Split into a :class:`NoiseTransport` (one-way patterns: one direction only)."""
        send: CipherState | None
        receive: CipherState | None
        send, receive = self.split()
        if self._pattern.one_way:
            # §7.4: after a one-way handshake only the initiator sends.
            send, receive = (send, None) if self._initiator else (None, receive)
        return NoiseTransport(send, receive, self.handshake_hash, self._rs)

    def _require_complete(self) -> None:
        if not self.is_complete:
            raise NoiseUsageError("the handshake is not complete")

    def _next_message(self, *, writing: bool) -> tuple[Token, ...]:
        if self._failed:
            raise NoiseUsageError("the handshake failed earlier and cannot be used")
        if self.is_complete:
            raise NoiseUsageError("the handshake is already complete")
        if self.is_our_turn != writing:
            action = "write" if writing else "read"
            raise NoiseUsageError(f"cannot {action} handshake message {self._message_index} now")
        return self._pattern.messages[self._message_index]

    def _process_key_token(self, token: Token) -> None:
        sym = self._symmetric
        if token is Token.PSK:
            sym.mix_key_and_hash(self._psks.pop(0))
            return
        assert token in DH_TOKENS
        # In "es" the initiator's ephemeral meets the responder's static, and
        # so on: which of our keys is used depends on our role.
        ours, theirs = token.value if self._initiator else token.value[::-1]
        pair = self._e if ours == "e" else self._s
        public = self._re if theirs == "e" else self._rs
        assert pair is not None and public is not None  # guaranteed by the pattern
        sym.mix_key(_dh(pair, public))

    @contextlib.contextmanager
    def _fail_on_error(self) -> Iterator[None]:
        # A handshake interrupted half-way has mixed some, not all, of a
        # message into its state: it can never again agree with the peer, and
        # finishing it could only produce keys nobody else holds.
        try:
            yield
        except BaseException:
            self._failed = True
            self._e = None
            raise


class NoiseTransport:
    """The two transport cipher states of a finished handshake.

    Messages in each direction must be decrypted in the order they were
    encrypted (the nonce is implicit).  A :class:`DecryptionError` leaves the
    receive state unchanged; on a reliable stream the caller should close the
    connection, since a genuine message can no longer be expected to match.
    """

    __slots__ = ("_receive", "_send", "handshake_hash", "remote_static")

    def __init__(
        self,
        send: CipherState | None,
        receive: CipherState | None,
        handshake_hash: bytes,
        remote_static: X25519PublicKey | None,
    ) -> None:
        """Wrap the cipher states; ``None`` disables a direction (one-way patterns)."""
        self._send = send
        self._receive = receive
        self.handshake_hash = handshake_hash
        self.remote_static = remote_static

    @property
    def send_cipher(self) -> CipherState:
        """The sending cipher state; raises :class:`NoiseUsageError` if we may not send."""
        if self._send is None:
            raise NoiseUsageError("this side of a one-way handshake may not send")
        return self._send

    @property
    def receive_cipher(self) -> CipherState:
        """The receiving cipher state; raises :class:`NoiseUsageError` if we cannot receive."""
        if self._receive is None:
            raise NoiseUsageError("this side of a one-way handshake cannot receive")
        return self._receive

    def encrypt(self, plaintext: BytesLike, ad: BytesLike = b"") -> bytes:
        """One transport message, at most 65535 bytes.

        Raises :class:`NoiseUsageError` for a plaintext over 65519 bytes
        (before using a nonce) and :class:`NonceExhausted`.
        """
        data = bytes(plaintext)
        if len(data) + TAGLEN > MAX_MESSAGE_LEN:
            raise NoiseUsageError(f"plaintext of {len(data)} bytes exceeds the Noise limit")
        return self.send_cipher.encrypt_with_ad(ad, data)

    def decrypt(self, ciphertext: BytesLike, ad: BytesLike = b"") -> bytes:
        """The plaintext of the next transport message from the peer.

        Raises :class:`MalformedNoiseMessage` for a message shorter than a tag
        or over 65535 bytes, :class:`DecryptionError` when it fails
        authentication, and :class:`NonceExhausted`.
        """
        data = bytes(ciphertext)
        if not TAGLEN <= len(data) <= MAX_MESSAGE_LEN:
            raise MalformedNoiseMessage(f"transport message of {len(data)} bytes")
        return self.receive_cipher.decrypt_with_ad(ad, data)

    def rekey_send(self) -> None:
        """Rekey the sending key; the peer must call :meth:`rekey_receive` at the same point."""
        self.send_cipher.rekey()

    def rekey_receive(self) -> None:
        """Rekey the receiving key, matching the peer's :meth:`rekey_send`."""
        self.receive_cipher.rekey()

    def __repr__(self) -> str:
        return f"NoiseTransport(remote_static={self.remote_static!r})"

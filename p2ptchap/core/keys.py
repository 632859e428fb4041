"""Typed key value objects.

Each role has its own public and secret key class — authority, account
(master), device signing, device key exchange — so an account key can never
be passed where a device key is expected, and a key of one role never equals
a key of another even when the bytes are the same.  Fingerprints include the
role, so the same bytes used in two roles would not even look alike.

Secret keys never appear in ``repr`` and compare in constant time.  Signing
here is raw Ed25519 over the given bytes: callers sign structures that carry
their own purpose (COSE ``Sig_structure`` with a content type, or a context
string), never bare application data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import ClassVar, Final, Self

import nacl.bindings
import nacl.exceptions
import nacl.signing

from p2ptchap.core.errors import DecodeError, VerificationError, VerificationFailure

#: A source of random bytes: ``rng(n)`` returns ``n`` bytes.  The core never
#: reads the system's randomness itself; the shell passes ``os.urandom``.
Rng = Callable[[int], bytes]

KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
_FINGERPRINT_PERSON: Final = b"p2ptchap-fpr-v1"
_FINGERPRINT_BYTES: Final = 20


class PublicKey:
    """A 32-byte public key in one role; equal only to the same key in the same role."""

    __slots__ = ("_raw",)
    ROLE: ClassVar[bytes] = b""

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes | bytearray) or len(raw) != KEY_SIZE:
            raise DecodeError(f"{type(self).__name__} must be {KEY_SIZE} bytes")
        self._raw = bytes(raw)

    def __bytes__(self) -> bytes:
        return self._raw

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and hmac.compare_digest(
            self._raw,
            other._raw,
        )

    def __hash__(self) -> int:
        return hash((type(self), self._raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint()})"

    def _digest(self) -> bytes:
        return hashlib.blake2b(
            self.ROLE + b"\x00" + self._raw, digest_size=32, person=_FINGERPRINT_PERSON
        ).digest()

    @property
    def key_id(self) -> bytes:
        """16 bytes naming this key in its role (used as COSE ``kid``)."""
        return self._digest()[:16]

    def fingerprint(self) -> str:
        """The key's fingerprint for people: 32 base-32 characters in groups of 4.

        160 bits of a role-separated BLAKE2b hash; comparing it in full rules
        out a substituted key.
        """
        text = base64.b32encode(self._digest()[:_FINGERPRINT_BYTES]).decode("ascii")
        return " ".join(text[i : i + 4] for i in range(0, len(text), 4))

    def short_id(self) -> str:
        """The first 16 characters of the fingerprint, lower case, no spaces."""
        return self.fingerprint().replace(" ", "")[:16].lower()


class SigningPublicKey(PublicKey):
    """An Ed25519 verification key."""

    __slots__ = ()

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature; raise ``VerificationError(BAD_SIGNATURE)``."""
        if len(signature) != SIGNATURE_SIZE:
            raise VerificationError(VerificationFailure.BAD_SIGNATURE, "signature size")
        try:
            nacl.signing.VerifyKey(self._raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
            raise VerificationError(
                VerificationFailure.BAD_SIGNATURE, f"{type(self).__name__} signature"
            ) from exc


class AuthorityKey(SigningPublicKey):
    """An organisation authority's public key: the root of trust."""

    __slots__ = ()
    ROLE = b"authority"


class AccountKey(SigningPublicKey):
    """An account's master public key, bound to an e-mail by an authority."""

    __slots__ = ()
    ROLE = b"account"


class DeviceKey(SigningPublicKey):
    """A device's signing public key, certified by its account key."""

    __slots__ = ()
    ROLE = b"device"


class ExchangeKey(PublicKey):
    """A device's X25519 public key, used for Noise and key delivery."""

    __slots__ = ()
    ROLE = b"exchange"


class SecretKey:
    """A 32-byte secret; never printed, compared in constant time."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) != KEY_SIZE:
            raise DecodeError(f"{type(self).__name__} must be {KEY_SIZE} bytes")
        self._seed = bytes(seed)

    @classmethod
    def generate(cls, rng: Rng) -> Self:
        """A fresh key from ``rng``."""
        return cls(rng(KEY_SIZE))

    def secret_bytes(self) -> bytes:
        """The raw secret, for sealing at rest only."""
        return self._seed

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and hmac.compare_digest(
            self._seed,
            other._seed,
        )

    def __hash__(self) -> int:
        # Secrets are not meant as dictionary keys; hashing the type only
        # keeps them hashable without leaking anything through hash().
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"


class SigningSecretKey(SecretKey):
    """An Ed25519 signing key (seed form)."""

    __slots__ = ()

    def _public_raw(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self._seed).verify_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(nacl.signing.SigningKey(self._seed).sign(message).signature)


class AuthoritySecret(SigningSecretKey):
    """An authority's signing key; kept offline by the administrator."""

    __slots__ = ()

    def public_key(self) -> AuthorityKey:
        return AuthorityKey(self._public_raw())


class AccountSecret(SigningSecretKey):
    """An account master signing key; signs device certificates."""

    __slots__ = ()

    def public_key(self) -> AccountKey:
        return AccountKey(self._public_raw())


class DeviceSecret(SigningSecretKey):
    """A device's signing key; signs what the device says."""

    __slots__ = ()

    def public_key(self) -> DeviceKey:
        return DeviceKey(self._public_raw())


class ExchangeSecret(SecretKey):
    """A device's X25519 secret key."""

    __slots__ = ()

    def public_key(self) -> ExchangeKey:
        return ExchangeKey(nacl.bindings.crypto_scalarmult_base(self._seed))

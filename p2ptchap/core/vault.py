"""Secrets sealed under a passphrase, for storage at rest.

A sealed box is the deterministic CBOR map::

    {"v": 1, "kdf": "argon2id", "ops": int, "mem": int,
     "salt": bstr(16), "nonce": bstr(24), "ct": bstr}

The key is argon2id(passphrase, salt, ops, mem) (libsodium's argon2id13),
and ``ct`` is XChaCha20-Poly1305 of the plaintext with the encoding of the
map *without* ``ct`` as associated data, so the cost parameters cannot be
changed without the box failing to open.  A wrong passphrase and a tampered
box are indistinguishable by design; both raise :class:`WrongPassphrase`
(whose message tells the user to retype the passphrase; the detail says the
file may also be damaged).

Opening refuses cost parameters above a ceiling, so a crafted file cannot
make us allocate gigabytes.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.pwhash

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import DecodeError, UsageError, WrongPassphrase
from p2ptchap.core.keys import Rng

SALT_SIZE: Final = nacl.pwhash.argon2id.SALTBYTES
NONCE_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
KEY_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
TAG_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
_MAX_MEMLIMIT: Final = 1 << 30
_MAX_OPSLIMIT: Final = 16
_LIMITS: Final = Limits(max_bytes=1 << 20, max_items=32, max_depth=2)


@dataclasses.dataclass(frozen=True, slots=True)
class KdfCost:
    """argon2id cost: ``ops`` passes over ``mem`` bytes."""

    ops: int
    mem: int


#: For keys on disk.  About half a second and 256 MiB on a laptop: slow
#: enough to make guessing a stolen file's passphrase expensive, fast enough
#: to unlock at start-up.
MODERATE: Final = KdfCost(
    nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE
)
#: The libsodium minimum; for tests only.
MINIMUM: Final = KdfCost(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


def _header(cost: KdfCost, salt: bytes, nonce: bytes) -> dict[codec.Key, codec.Value]:
    return {
        "v": 1,
        "kdf": "argon2id",
        "ops": cost.ops,
        "mem": cost.mem,
        "salt": salt,
        "nonce": nonce,
    }


def _derive(passphrase: str, salt: bytes, cost: KdfCost) -> bytes:
    # NFC, so that "é" typed as one character or as e + combining accent
    # (keyboards and terminals differ) is the same passphrase.
    try:
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        # A passphrase read from an environment in another encoding arrives
        # with undecodable bytes escaped as lone surrogates.
        raise UsageError(
            "passphrase is not valid text",
            user_message="The passphrase contains characters that are not valid text.",
        ) from None
    return bytes(
        nacl.pwhash.argon2id.kdf(KEY_SIZE, secret, salt, opslimit=cost.ops, memlimit=cost.mem)
    )


def seal(plaintext: bytes, passphrase: str, rng: Rng, cost: KdfCost = MODERATE) -> bytes:
    """Seal ``plaintext`` under ``passphrase``; raise :class:`UsageError` if it is empty."""
    if not passphrase:
        raise UsageError("empty passphrase", user_message="The passphrase must not be empty.")
    salt, nonce = rng(SALT_SIZE), rng(NONCE_SIZE)
    header = _header(cost, salt, nonce)
    key = _derive(passphrase, salt, cost)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, codec.encode(header), nonce, key
    )
    return codec.encode({**header, "ct": ciphertext})


def open_sealed(box: bytes, passphrase: str) -> bytes:
    """Open a sealed box.

    Raises :class:`WrongPassphrase` if the passphrase is wrong or the box was
    altered, and :class:`DecodeError` if the bytes are not a sealed box at all.
    """
    body = codec.expect_map(codec.decode(box, _LIMITS), "sealed box")
    codec.only_keys(body, ("v", "kdf", "ops", "mem", "salt", "nonce", "ct"), "sealed box")
    if codec.get_int(body, "v", "sealed box") != 1:
        raise DecodeError("sealed box: unknown version")
    if codec.get_text(body, "kdf", "sealed box") != "argon2id":
        raise DecodeError("sealed box: unknown key derivation")
    cost = KdfCost(
        codec.get_int(body, "ops", "sealed box", minimum=MINIMUM.ops, maximum=_MAX_OPSLIMIT),
        codec.get_int(body, "mem", "sealed box", minimum=MINIMUM.mem, maximum=_MAX_MEMLIMIT),
    )
    salt = codec.get_bytes(body, "salt", "sealed box", size=SALT_SIZE)
    nonce = codec.get_bytes(body, "nonce", "sealed box", size=NONCE_SIZE)
    ciphertext = codec.get_bytes(body, "ct", "sealed box")
    if len(ciphertext) < TAG_SIZE:
        raise DecodeError("sealed box: ciphertext shorter than its tag")
    key = _derive(passphrase, salt, cost)
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, codec.encode(_header(cost, salt, nonce)), nonce, key
            )
        )
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase("the passphrase is wrong or the file was altered") from None

"""COSE_Sign1 with EdDSA (RFC 9052 §4.2, §4.4; RFC 9053 §2.2).

Only the narrow profile p2ptchap needs, strictly checked:

* the message is ``18([protected, unprotected, payload, signature])``
  (tag 18 required, not optional);
* ``protected`` is the deterministic encoding of exactly
  ``{1: -8, 3: content_type, 4: kid}`` — algorithm EdDSA, a text content
  type, and the signer's key id; nothing in the unprotected map;
* the signature is Ed25519 over the deterministic encoding of
  ``["Signature1", protected, h'', payload]`` (no external AAD).

The content type is signed, so a signature made for one kind of record
(say, a device certificate) can never be presented as another (a
revocation): every kind has its own content type, listed in
``docs/identity.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits, Tag
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.keys import SIGNATURE_SIZE, SigningPublicKey, SigningSecretKey

COSE_SIGN1_TAG: Final = 18
ALG_EDDSA: Final = -8
HEADER_ALG: Final = 1
HEADER_CONTENT_TYPE: Final = 3
HEADER_KID: Final = 4

#: Limits for decoding a COSE_Sign1 message holding a certificate or record.
SIGN1_LIMITS: Final = Limits(max_bytes=16 * 1024, max_items=256, max_depth=8, tags=frozenset())
_OUTER_LIMITS: Final = dataclasses.replace(SIGN1_LIMITS, tags=frozenset({COSE_SIGN1_TAG}))


@dataclasses.dataclass(frozen=True, slots=True)
class Sign1:
    """A parsed, *not yet verified* COSE_Sign1 message."""

    content_type: str
    kid: bytes
    payload: bytes
    signature: bytes
    protected: bytes

    def to_be_signed(self) -> bytes:
        """The ``Sig_structure`` bytes the signature covers."""
        return _sig_structure(self.protected, self.payload)

    def verify(self, key: SigningPublicKey) -> None:
        """Check the signature with ``key``; raise ``VerificationError(BAD_SIGNATURE)``."""
        key.verify(self.to_be_signed(), self.signature)


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return codec.encode(["Signature1", protected, b"", payload])


def _protected(content_type: str, kid: bytes) -> bytes:
    return codec.encode({HEADER_ALG: ALG_EDDSA, HEADER_CONTENT_TYPE: content_type, HEADER_KID: kid})


def sign(payload: bytes, content_type: str, kid: bytes, secret: SigningSecretKey) -> bytes:
    """Return the encoded, tagged COSE_Sign1 of ``payload`` signed by ``secret``."""
    protected = _protected(content_type, kid)
    signature = secret.sign(_sig_structure(protected, payload))
    return codec.encode(Tag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def parse(data: bytes, content_type: str) -> Sign1:
    """Parse a COSE_Sign1 message of the given content type, without verifying it.

    Raises :class:`DecodeError` if the bytes are not a message of our profile
    or carry another content type.
    """
    outer = codec.decode(data, _OUTER_LIMITS)
    if not isinstance(outer, Tag) or outer.number != COSE_SIGN1_TAG:
        raise DecodeError("COSE_Sign1: missing tag 18")
    parts = codec.expect_list(outer.value, "COSE_Sign1")
    if len(parts) != 4:
        raise DecodeError("COSE_Sign1: expected 4 elements")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise DecodeError("COSE_Sign1: protected header and payload must be bytes")
    if unprotected != {}:
        raise DecodeError("COSE_Sign1: unprotected header must be empty")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise DecodeError("COSE_Sign1: bad signature size")
    header = codec.expect_map(codec.decode(protected, SIGN1_LIMITS), "protected header")
    codec.only_keys(header, (HEADER_ALG, HEADER_CONTENT_TYPE, HEADER_KID), "protected header")
    if codec.get_int(header, HEADER_ALG, "protected header", minimum=-(2**63)) != ALG_EDDSA:
        raise DecodeError("COSE_Sign1: algorithm is not EdDSA")
    found_type = codec.get_text(header, HEADER_CONTENT_TYPE, "protected header")
    if found_type != content_type:
        raise DecodeError(f"COSE_Sign1: content type {found_type!r}, expected {content_type!r}")
    kid = codec.get_bytes(header, HEADER_KID, "protected header", size=16)
    return Sign1(found_type, kid, payload, signature, protected)


def peek_content_type(data: bytes) -> str:
    """The content type of a COSE_Sign1 message, to route it; raise :class:`DecodeError`."""
    outer = codec.decode(data, _OUTER_LIMITS)
    if not isinstance(outer, Tag) or outer.number != COSE_SIGN1_TAG:
        raise DecodeError("COSE_Sign1: missing tag 18")
    parts = codec.expect_list(outer.value, "COSE_Sign1")
    if not parts or not isinstance(parts[0], bytes):
        raise DecodeError("COSE_Sign1: malformed")
    header = codec.expect_map(codec.decode(parts[0], SIGN1_LIMITS), "protected header")
    return codec.get_text(header, HEADER_CONTENT_TYPE, "protected header")

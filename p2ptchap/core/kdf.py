"""HKDF with SHA-256 (RFC 5869), which pynacl does not provide.

Used for the keys derived from a Megolm ratchet (:mod:`p2ptchap.core.megolm`)
and, later, for file payload keys.  Tested against the RFC's vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

HASH_SIZE: Final = 32


def hkdf_sha256(ikm: bytes, *, salt: bytes = b"", info: bytes = b"", length: int = 32) -> bytes:
    """``length`` bytes of HKDF-SHA-256 (extract then expand, RFC 5869 §2)."""
    if not 0 < length <= 255 * HASH_SIZE:
        raise ValueError("HKDF-SHA-256 gives 1 to 8160 bytes")
    prk = hmac.new(salt or bytes(HASH_SIZE), ikm, hashlib.sha256).digest()
    output, block = b"", b""
    counter = 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]

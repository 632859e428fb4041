"""Signed envelopes: what a device says, with its signature beside it.

Room events, public-room summaries and receipts travel as the CBOR map::

    {"body": bstr, "sig": bstr(64)}

``body`` is the deterministic CBOR encoding of a map whose ``"v"`` is 1;
``sig`` is the device's Ed25519 signature over ``context || body``, the
context naming the kind of object (``"p2ptchap/1 event" || 0x00``…), so
that a signature made for one kind can never be passed off as another.
This module seals and opens the envelope; each kind checks its own body
and says which key must have signed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.keys import SIGNATURE_SIZE, SigningSecretKey


def seal(secret: SigningSecretKey, context: bytes, body: bytes) -> bytes:
    """The envelope of an encoded ``body``, signed by ``secret`` under ``context``."""
    return codec.encode({"body": body, "sig": secret.sign(context + body)})


def open_envelope(
    raw: bytes,
    decode: Callable[[bytes], codec.Value],
    what: str,
    fields: Iterable[str],
) -> tuple[bytes, dict[codec.Key, codec.Value], bytes]:
    """``(body bytes, body map, signature)`` of an envelope; the signature is *not* checked.

    ``decode`` decodes one CBOR item with the caller's limits; the body may
    hold only ``fields`` and must be version 1.  Raises :class:`DecodeError`.
    """
    outer = codec.expect_map(decode(raw), what)
    codec.only_keys(outer, ("body", "sig"), what)
    body_bytes = codec.get_bytes(outer, "body", what)
    signature = codec.get_bytes(outer, "sig", what, size=SIGNATURE_SIZE)
    body = codec.expect_map(decode(body_bytes), f"{what} body")
    codec.only_keys(body, tuple(fields), f"{what} body")
    if codec.get_int(body, "v", what) != 1:
        raise DecodeError(f"unknown {what} version")
    return body_bytes, body, signature

"""Every decoder of untrusted bytes, with what it may raise and how its output re-encodes.

One :class:`Format` per decoder: the function that reads bytes, the typed
errors its documentation allows, the seeds it accepts (from
:mod:`tests.fuzz.world`), how an accepted value is encoded back (the
decoders are strict: an accepted input is the one encoding of its value),
and, for signed formats, how to sign a mutated body so that mutations reach
the checks behind the signature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final

from p2ptchap.accounts import DeviceSecrets
from p2ptchap.core import (
    codec,
    cose,
    identity,
    pairing,
    peerwire,
    revocation,
    roomkeys,
    sync,
    transfer,
    vault,
)
from p2ptchap.core.authority import TRUST_CONTENT_TYPE, _payload, parse_trust_file
from p2ptchap.core.channel import PeerRejected, verify_credentials
from p2ptchap.core.codec import Tag, Value
from p2ptchap.core.directory import SUMMARY_CONTEXT, InvalidSummary, parse_summary
from p2ptchap.core.envelope import seal
from p2ptchap.core.errors import DecodeError, VerificationError, WrongPassphrase
from p2ptchap.core.events import EVENT_CONTEXT, InvalidEvent, event_id, parse_event, reload_event
from p2ptchap.core.files import (
    ChunkError,
    Descriptor,
    check_leaves,
    open_chunk,
    parse_clear_reference,
    payload_key,
)
from p2ptchap.core.keys import SigningSecretKey
from p2ptchap.core.megolm import InboundSession, OutboundSession
from p2ptchap.core.room import decode_state, encode_state
from p2ptchap.core.sync import RECEIPT_CONTEXT
from tests.conftest import NOW, PASSPHRASE
from tests.fuzz.world import FILE_DATA, FILE_KEY, World, world

_ANY_TAG: Final = codec.Limits(tags=frozenset({cose.COSE_SIGN1_TAG}))


@dataclasses.dataclass(frozen=True)
class Format:
    """One decoder under test (see the module documentation).

    ``parse`` reads bytes; it may raise only ``errors``.  ``encode`` turns
    an accepted value back into bytes (``None``: the value keeps no
    encoding, e.g. a decrypted payload).  ``unwrap`` gives the value
    structural mutations work on (the signed body for signed formats) and
    ``wrap`` turns mutated bytes of it back into an input (signing them);
    ``signed`` formats accept, of byte-level mutations, only the seed itself.
    ``admissible`` excludes inputs too costly to try (a sealed box asking
    for a gigabyte of argon2 memory is legitimate, just slow).
    """

    name: str
    parse: Callable[[bytes], object]
    errors: tuple[type[BaseException], ...]
    encode: Callable[[object], bytes] | None = None
    unwrap: Callable[[bytes], Value] = lambda data: codec.decode(data, _ANY_TAG)
    wrap: Callable[[bytes], bytes] = lambda data: data
    signed: bool = False
    #: Whether the input is CBOR, so that structural mutations apply.
    structured: bool = True
    admissible: Callable[[bytes], bool] = lambda data: True

    def seeds(self) -> list[bytes]:
        return world().seeds[self.name]


def _raw(value: object) -> bytes:
    raw = value.raw  # type: ignore[attr-defined]
    assert isinstance(raw, bytes)
    return raw


# --- COSE ------------------------------------------------------------------------------------


def _cose_body(data: bytes) -> Value:
    return codec.decode(cose.parse(data, cose.peek_content_type(data)).payload, cose.SIGN1_LIMITS)


def _cose_signer(
    content_type: str, secret: Callable[[World], SigningSecretKey]
) -> Callable[[bytes], bytes]:
    def wrap(payload: bytes) -> bytes:
        key = secret(world())
        public = key.public_key()  # type: ignore[attr-defined]
        return cose.sign(payload, content_type, public.key_id, key)

    return wrap


def _parse_cose(data: bytes) -> cose.Sign1:
    return cose.parse(data, cose.peek_content_type(data))


def _signed_cose(
    name: str,
    parse: Callable[[bytes], object],
    content_type: str,
    secret: Callable[[World], SigningSecretKey],
    encode: Callable[[object], bytes] | None = None,
) -> Format:
    """A COSE_Sign1 format: mutated bodies are signed again by ``secret``."""
    return Format(
        name,
        parse,
        (VerificationError,),
        encode or _raw,
        _cose_body,
        _cose_signer(content_type, secret),
        signed=True,
    )


def _encode_cose(value: object) -> bytes:
    assert isinstance(value, cose.Sign1)
    return codec.encode(
        Tag(cose.COSE_SIGN1_TAG, [value.protected, {}, value.payload, value.signature])
    )


def _encode_authority(value: object) -> bytes:
    # The trust file is not kept: re-sign the description (Ed25519 is
    # deterministic) and compare with the input.
    w = world()
    assert value is not None
    authority = value
    payload = _payload(authority.name, authority.domains, authority.key, authority.created)  # type: ignore[attr-defined]
    return cose.sign(payload, TRUST_CONTENT_TYPE, authority.key.key_id, w.org.secret)  # type: ignore[attr-defined]


# --- envelopes ---------------------------------------------------------------------------------


def _envelope_body(data: bytes) -> Value:
    outer = codec.expect_map(codec.decode(data), "envelope")
    body = outer["body"]
    assert isinstance(body, bytes)
    return codec.decode(body)


def _sealer(
    context: bytes, secret: Callable[[World], SigningSecretKey]
) -> Callable[[bytes], bytes]:
    def wrap(body: bytes) -> bytes:
        return seal(secret(world()), context, body)

    return wrap


def _alice_device(w: World) -> SigningSecretKey:
    return w.alice.device_secret


def _parse_event(data: bytes) -> object:
    event = parse_event(data)
    # What the store does with it later must agree with what was checked.
    assert event.id == event_id(data)
    assert reload_event(data) == event
    return event


# --- unsigned messages -------------------------------------------------------------------------


def parse_transfer(data: bytes) -> transfer.FileMessage:
    return transfer.decode(codec.expect_map(codec.decode(data, transfer.LIMITS), "message"))


def encode_peerwire(value: object) -> bytes:
    if isinstance(value, peerwire.Hello):
        return peerwire.encode_hello(value.port)
    if isinstance(value, peerwire.Peers):
        # The literal encoding: the protocol leaves the order of a peers
        # list free (encode_peers sorts and deduplicates what it sends).
        return codec.encode({"t": "peers", "addrs": [list(a) for a in value.addresses]})
    assert isinstance(value, peerwire.Other)
    return codec.encode(value.body)


def _parse_share(data: bytes) -> bytes:
    w = world()
    return roomkeys.open_share(
        roomkeys.ShareKind.ROOM_KEY,
        data,
        room=w.room,
        session=bytes(32),
        sender=w.alice.device_secret.public_key(),
        sender_exchange=w.alice.exchange_secret.public_key(),
        recipient=w.bob.device_secret.public_key(),
        recipient_secret=w.prekey_secret.secret_bytes(),
    )


def _parse_credentials(data: bytes) -> identity.VerifiedDevice:
    w = world()

    def verify(account: bytes, device: bytes) -> identity.VerifiedDevice:
        return identity.verify_chain(account, device, w.org.trust, revocation.RevocationSet(), NOW)

    return verify_credentials(data, w.static.public, verify)


def _affordable_box(data: bytes) -> bool:
    try:
        box = codec.decode(data)
    except DecodeError:
        return True
    if not isinstance(box, dict):
        return True
    ops, mem = box.get("ops"), box.get("mem")
    too_slow = isinstance(ops, int) and ops > 2 * vault.MINIMUM.ops
    too_big = isinstance(mem, int) and mem > 64 * vault.MINIMUM.mem
    return not (too_slow or too_big)


def _parse_chunk(data: bytes) -> bytes:
    return open_chunk(payload_key(FILE_KEY), 1, True, data)


def _parse_leaves(data: bytes) -> list[bytes]:
    w = world()
    root = transfer.decode(codec.decode(w.seeds["transfer"][0]))  # type: ignore[arg-type]
    return check_leaves(root.root, len(FILE_DATA), data)


def _reencode_value(method: str) -> Callable[[object], bytes]:
    def encode(value: object) -> bytes:
        return codec.encode(getattr(value, method)())

    return encode


FORMATS: Final = (
    Format("cbor", lambda data: codec.decode(data, _ANY_TAG), (DecodeError,), codec.encode),  # type: ignore[arg-type]
    Format("cose", _parse_cose, (DecodeError,), _encode_cose),
    _signed_cose(
        "trust-file",
        parse_trust_file,
        TRUST_CONTENT_TYPE,
        lambda w: w.org.secret,
        encode=_encode_authority,
    ),
    _signed_cose(
        "request", identity.parse_request, identity.REQUEST_CONTENT_TYPE, lambda w: w.alice.secret
    ),
    _signed_cose(
        "account-certificate",
        lambda data: identity.read_account_certificate(data, world().org.trust),
        identity.ACCOUNT_CONTENT_TYPE,
        lambda w: w.org.secret,
    ),
    _signed_cose(
        "device-certificate",
        identity.parse_device_certificate,
        identity.DEVICE_CONTENT_TYPE,
        lambda w: w.alice.secret,
    ),
    _signed_cose(
        "revocation-authority",
        lambda data: revocation.parse_revocation(data, world().org.trust),
        revocation.REVOCATION_CONTENT_TYPE,
        lambda w: w.org.secret,
    ),
    _signed_cose(
        "revocation-device",
        lambda data: revocation.parse_revocation(data, world().org.trust),
        revocation.REVOCATION_CONTENT_TYPE,
        lambda w: w.alice.secret,
    ),
    Format(
        "event",
        _parse_event,
        (InvalidEvent,),
        _raw,
        _envelope_body,
        _sealer(EVENT_CONTEXT, _alice_device),
        signed=True,
    ),
    Format("room-state", decode_state, (DecodeError,), encode_state),  # type: ignore[arg-type]
    Format(
        "prekey",
        roomkeys.parse_prekey,
        (roomkeys.InvalidPrekey,),
        _raw,
        _envelope_body,
        _sealer(roomkeys.PREKEY_CONTEXT, _alice_device),
        signed=True,
    ),
    Format(
        "room-key",
        roomkeys.decode_room_key,
        (roomkeys.InvalidShare,),
        roomkeys.encode_room_key,  # type: ignore[arg-type]
    ),
    Format(
        "history-bundle",
        roomkeys.decode_history,
        (roomkeys.InvalidShare,),
        roomkeys.encode_history,  # type: ignore[arg-type]
    ),
    Format("share", _parse_share, (roomkeys.InvalidShare,), signed=True, structured=False),
    Format("sync", sync.decode_bytes, (DecodeError,), sync.encode),  # type: ignore[arg-type]
    Format(
        "receipt",
        sync.parse_receipt,
        (sync.InvalidReceipt,),
        _raw,
        _envelope_body,
        _sealer(RECEIPT_CONTEXT, _alice_device),
        signed=True,
    ),
    Format(
        "summary",
        parse_summary,
        (InvalidSummary,),
        _raw,
        _envelope_body,
        _sealer(SUMMARY_CONTEXT, _alice_device),
        signed=True,
    ),
    Format("transfer", parse_transfer, (DecodeError,), transfer.encode),  # type: ignore[arg-type]
    Format("peerwire", peerwire.decode, (DecodeError,), encode_peerwire),
    Format("pairing", pairing.decode, (DecodeError,), pairing.encode),  # type: ignore[arg-type]
    Format(
        "descriptor",
        lambda data: Descriptor.from_value(codec.decode(data)),
        (DecodeError,),
        _reencode_value("to_value"),
    ),
    Format(
        "clear-reference",
        lambda data: parse_clear_reference(codec.decode(data)),
        (DecodeError,),
        lambda value: codec.encode({"root": value[0], "size": value[1]}),  # type: ignore[index]
    ),
    Format(
        "vault",
        lambda data: vault.open_sealed(data, PASSPHRASE),
        (DecodeError, WrongPassphrase),
        signed=True,
        admissible=_affordable_box,
    ),
    Format("credentials", _parse_credentials, (PeerRejected,)),
    Format(
        "inbound-session",
        lambda data: InboundSession.from_value(codec.decode(data)),
        (DecodeError,),
        _reencode_value("to_value"),
    ),
    Format(
        "outbound-session",
        lambda data: OutboundSession.from_value(codec.decode(data)),
        (DecodeError,),
        _reencode_value("to_value"),
    ),
    Format("chunk", _parse_chunk, (ChunkError,), signed=True, structured=False),
    Format("leaves", _parse_leaves, (ChunkError,), signed=True, structured=False),
    # Outside the core (p2ptchap/accounts.py): typed errors only are
    # checked; it accepts fields it ignores (reported, not fixed here).
    Format("device-secrets", DeviceSecrets.decode, (DecodeError,)),
)

BY_NAME: Final = {f.name: f for f in FORMATS}

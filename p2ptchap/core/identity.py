"""Who speaks for whom: device certificates, full chains, safety numbers.

The chain of trust has three links:

1. an **authority** (trusted by configuration, see :mod:`.authority`) signs
2. an **account certificate** (see :mod:`.account`) binding a normalised
   professional e-mail, a display name and a kind (agent or external) to the
   account's master Ed25519 key;
3. the account master key signs **device certificates**, each naming a
   device's Ed25519 signing key and X25519 key.

Every verification takes the time ``now`` (seconds since the epoch) from the
caller and a clock-skew allowance, and raises :class:`VerificationError`
with a specific :class:`VerificationFailure`.  It checks, in this order:
well-formedness, authority, signature, claims, kind against the authority's
domains, validity period, revocation.

This module re-exports the names of :mod:`.account`, so callers need one
import for the whole identity layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Final

from p2ptchap.core import codec, cose
from p2ptchap.core.account import (
    ACCOUNT_CONTENT_TYPE,
    CLAIM_CNF,
    CLAIM_CTI,
    CLAIM_EXP,
    CLAIM_IAT,
    CLAIM_ISS,
    CLAIM_KIND,
    CLAIM_NAME,
    CLAIM_NBF,
    CLAIM_SUB,
    CNF_COSE_KEY,
    COSE_KEY_CRV,
    COSE_KEY_KTY,
    COSE_KEY_X,
    CRV_ED25519,
    DEFAULT_CLOCK_SKEW,
    KTY_OKP,
    MAX_DEVICE_NAME,
    MAX_VALIDITY_DAYS,
    REQUEST_CONTENT_TYPE,
    SERIAL_SIZE,
    AccountCertificate,
    EnrollmentRequest,
    IssuanceRefused,
    Kind,
    as_malformed,
    check_validity,
    issue_account_certificate,
    issuer_name,
    make_request,
    parse_request,
    read_account_certificate,
)
from p2ptchap.core.addresses import MAX_DISPLAY_NAME, normalise_display_name
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.errors import DecodeError, UsageError, VerificationError, VerificationFailure
from p2ptchap.core.keys import KEY_SIZE, AccountKey, AccountSecret, DeviceKey, ExchangeKey
from p2ptchap.core.revocation import RevocationSet

DEVICE_CONTENT_TYPE: Final = "application/p2ptchap-device+cbor"


# --- account certificates, in time and against revocations --------------------


def verify_account_certificate(
    data: bytes,
    trust: TrustStore,
    revocations: RevocationSet,
    now: int,
    *,
    clock_skew: int = DEFAULT_CLOCK_SKEW,
) -> AccountCertificate:
    """Verify an account certificate at time ``now``; raise :class:`VerificationError`.

    In order: :func:`read_account_certificate`'s checks, the validity period
    (widened by ``clock_skew`` seconds on both sides), then revocation.
    """
    certificate = read_account_certificate(data, trust)
    check_validity(certificate, now, clock_skew)
    if is_revoked(certificate, revocations):
        raise VerificationError(VerificationFailure.REVOKED, f"account {certificate.email}")
    return certificate


def is_revoked(certificate: AccountCertificate, revocations: RevocationSet) -> bool:
    """Whether ``revocations`` revoke this account certificate (by serial or address)."""
    return revocations.account_revoked(
        certificate.issuer.key_id, certificate.serial, certificate.email, certificate.issued_at
    )


# --- device certificates ---------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """A verified device certificate."""

    account_key: AccountKey
    device_key: DeviceKey
    exchange_key: ExchangeKey
    name: str
    created: int
    raw: bytes

    @property
    def device_id(self) -> str:
        return self.device_key.short_id()


def issue_device_certificate(
    secret: AccountSecret, device: DeviceKey, exchange: ExchangeKey, name: str, now: int
) -> bytes:
    """A device certificate signed by the account master key."""
    account = secret.public_key()
    body = codec.encode(
        {
            "account": bytes(account),
            "device": bytes(device),
            "exchange": bytes(exchange),
            "name": normalise_display_name(name, MAX_DEVICE_NAME),
            "created": now,
        }
    )
    return cose.sign(body, DEVICE_CONTENT_TYPE, account.key_id, secret)


def parse_device_certificate(data: bytes) -> DeviceCertificate:
    """Parse and check the self-consistency and signature of a device certificate.

    This proves only that the named account key signed it; use
    :func:`verify_device_certificate` to tie it to a verified account.
    """
    what = "device certificate"
    try:
        message = cose.parse(data, DEVICE_CONTENT_TYPE)
        body = codec.expect_map(codec.decode(message.payload, cose.SIGN1_LIMITS), what)
        codec.only_keys(body, ("account", "device", "exchange", "name", "created"), what)
        name = codec.get_text(body, "name", what)
        if normalise_display_name(name, MAX_DEVICE_NAME) != name:
            raise DecodeError("device name is not normalised")
        certificate = DeviceCertificate(
            account_key=AccountKey(codec.get_bytes(body, "account", what, size=KEY_SIZE)),
            device_key=DeviceKey(codec.get_bytes(body, "device", what, size=KEY_SIZE)),
            exchange_key=ExchangeKey(codec.get_bytes(body, "exchange", what, size=KEY_SIZE)),
            name=name,
            created=codec.get_time(body, "created", what),
            raw=data,
        )
    except (DecodeError, UsageError) as exc:
        raise as_malformed(exc, what) from exc
    if message.kid != certificate.account_key.key_id:
        raise VerificationError(VerificationFailure.MISMATCH, "device certificate: kid")
    message.verify(certificate.account_key)
    return certificate


def verify_device_certificate(
    data: bytes, account: AccountCertificate, revocations: RevocationSet
) -> DeviceCertificate:
    """Verify that ``account`` certified this device and has not revoked it."""
    device = parse_device_certificate(data)
    if device.account_key != account.account_key:
        raise VerificationError(
            VerificationFailure.MISMATCH, f"device is not certified by {account.email}"
        )
    if revocations.device_revoked(account.account_key, device.device_key):
        raise VerificationError(VerificationFailure.REVOKED, f"device {device.device_id}")
    return device


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedDevice:
    """A device whose whole chain verified: authority → account → device."""

    account: AccountCertificate
    device: DeviceCertificate


def verify_chain(
    account_data: bytes,
    device_data: bytes,
    trust: TrustStore,
    revocations: RevocationSet,
    now: int,
    *,
    clock_skew: int = DEFAULT_CLOCK_SKEW,
) -> VerifiedDevice:
    """Verify a device's full chain; raise :class:`VerificationError`."""
    account = verify_account_certificate(
        account_data, trust, revocations, now, clock_skew=clock_skew
    )
    return VerifiedDevice(account, verify_device_certificate(device_data, account, revocations))


# --- safety numbers --------------------------------------------------------

_SAFETY_ITERATIONS: Final = 5200
_SAFETY_PERSON: Final = b"p2ptchap-safety1"


def _safety_half(email: str, key: AccountKey) -> str:
    # Iterating the hash makes it costly to search for another key whose
    # digits match a target's: each try costs thousands of hashes.
    identity = email.encode("utf-8")
    digest = hashlib.blake2b(bytes(key) + identity, digest_size=64, person=_SAFETY_PERSON).digest()
    for _ in range(_SAFETY_ITERATIONS):
        digest = hashlib.blake2b(digest + bytes(key), digest_size=64).digest()
    groups = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
    return "".join(f"{g:05d}" for g in groups)


def safety_number(first: AccountCertificate, second: AccountCertificate) -> str:
    """The safety number of two accounts: 12 groups of 5 digits.

    Both sides compute the same number (the halves are sorted), and it
    changes if either account's key changes.  Two people compare it aloud or
    on screen to rule out a substituted key.
    """
    halves = sorted(
        (
            _safety_half(first.email, first.account_key),
            _safety_half(second.email, second.account_key),
        )
    )
    digits = "".join(halves)
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def validate_serial(text: str) -> bytes:
    """Parse a serial as printed (32 hex digits); raise :class:`UsageError`."""
    try:
        serial = bytes.fromhex(text.strip())
    except ValueError:
        serial = b""
    if len(serial) != SERIAL_SIZE:
        raise UsageError(
            "bad serial",
            user_message="A certificate serial is 32 hexadecimal digits, as 'whoami' prints it.",
        )
    return serial


__all__ = [
    "ACCOUNT_CONTENT_TYPE",
    "CLAIM_CNF",
    "CLAIM_CTI",
    "CLAIM_EXP",
    "CLAIM_IAT",
    "CLAIM_ISS",
    "CLAIM_KIND",
    "CLAIM_NAME",
    "CLAIM_NBF",
    "CLAIM_SUB",
    "CNF_COSE_KEY",
    "COSE_KEY_CRV",
    "COSE_KEY_KTY",
    "COSE_KEY_X",
    "CRV_ED25519",
    "DEFAULT_CLOCK_SKEW",
    "DEVICE_CONTENT_TYPE",
    "KTY_OKP",
    "MAX_DEVICE_NAME",
    "MAX_DISPLAY_NAME",
    "MAX_VALIDITY_DAYS",
    "REQUEST_CONTENT_TYPE",
    "SERIAL_SIZE",
    "AccountCertificate",
    "DeviceCertificate",
    "EnrollmentRequest",
    "IssuanceRefused",
    "Kind",
    "VerifiedDevice",
    "check_validity",
    "is_revoked",
    "issue_account_certificate",
    "issue_device_certificate",
    "issuer_name",
    "make_request",
    "normalise_display_name",
    "parse_device_certificate",
    "parse_request",
    "read_account_certificate",
    "safety_number",
    "validate_serial",
    "verify_account_certificate",
    "verify_chain",
    "verify_device_certificate",
]

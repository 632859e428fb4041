"""Accounts and devices: who is an agent, who is external, which devices speak for whom.

The chain of trust has three links:

1. an **authority** (trusted by configuration, see :mod:`.authority`) signs
2. an **account certificate** — a CWT (RFC 8392) in a COSE_Sign1 — binding a
   normalised professional e-mail, a display name and a kind (agent or
   external) to the account's master Ed25519 key (``cnf``, RFC 8747);
3. the account master key signs **device certificates**, each naming a
   device's Ed25519 signing key and X25519 key.

Enrolment: the future account holder makes an **enrolment request** signed
by the new master key (proof of possession); the authority's administrator
checks it and issues the certificate; the holder imports it.

Every verification takes the time ``now`` (seconds since the epoch) from the
caller and a clock-skew allowance, and raises :class:`VerificationError`
with a specific :class:`VerificationFailure`.  It checks, in this order:
well-formedness, authority, signature, claims, kind against the authority's
domains, validity period, revocation.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import unicodedata
from typing import Final

from p2ptchap.core import codec, cose
from p2ptchap.core.addresses import InvalidAddress, normalise_email
from p2ptchap.core.authority import Authority, TrustStore
from p2ptchap.core.errors import (
    DecodeError,
    UsageError,
    VerificationError,
    VerificationFailure,
)
from p2ptchap.core.keys import (
    KEY_SIZE,
    AccountKey,
    AccountSecret,
    AuthoritySecret,
    DeviceKey,
    ExchangeKey,
    Rng,
)
from p2ptchap.core.revocation import SERIAL_SIZE, RevocationSet

ACCOUNT_CONTENT_TYPE: Final = "application/cwt"
DEVICE_CONTENT_TYPE: Final = "application/p2ptchap-device+cbor"
REQUEST_CONTENT_TYPE: Final = "application/p2ptchap-request+cbor"

DEFAULT_CLOCK_SKEW: Final = 300
MAX_VALIDITY_DAYS: Final = 3650
MAX_DISPLAY_NAME: Final = 100
MAX_DEVICE_NAME: Final = 64

# CWT claim keys (RFC 8392 §4) and the confirmation method (RFC 8747 §3.1).
CLAIM_ISS: Final = 1
CLAIM_SUB: Final = 2
CLAIM_EXP: Final = 4
CLAIM_NBF: Final = 5
CLAIM_IAT: Final = 6
CLAIM_CTI: Final = 7
CLAIM_CNF: Final = 8
CLAIM_NAME: Final = "name"
CLAIM_KIND: Final = "kind"
CNF_COSE_KEY: Final = 1
# COSE_Key for an Ed25519 public key (RFC 9053 §7.2): kty OKP, crv Ed25519.
COSE_KEY_KTY: Final = 1
COSE_KEY_CRV: Final = -1
COSE_KEY_X: Final = -2
KTY_OKP: Final = 1
CRV_ED25519: Final = 6


class Kind(enum.Enum):
    """Agents belong to an authority's domains; externals are everyone else."""

    AGENT = "agent"
    EXTERNAL = "external"


class IssuanceRefused(UsageError):
    """The authority will not issue the certificate asked for."""


def normalise_display_name(name: str, max_length: int = MAX_DISPLAY_NAME) -> str:
    """NFC-normalised, stripped name; raise :class:`UsageError` if unusable.

    Accents are kept.  Control and format characters (including bidirectional
    overrides, which can make one name look like another) are refused.
    """
    if not isinstance(name, str):
        raise UsageError("name is not text")
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > max_length:
        raise UsageError(
            f"name must be 1 to {max_length} characters",
            user_message="The name must be between 1 and {max_length} characters long.",
            max_length=max_length,
        )
    if any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co", "Cn"} for c in name):
        raise UsageError(
            "name contains control or invisible characters",
            user_message="The name contains invisible or control characters.",
        )
    return name


def _as_malformed(exc: Exception, what: str) -> VerificationError:
    return VerificationError(VerificationFailure.MALFORMED, f"{what}: {exc}")


# --- enrolment requests ----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    """A verified request: the holder of ``account_key`` asks for ``email``."""

    email: str
    display_name: str
    account_key: AccountKey
    created: int
    raw: bytes


def make_request(secret: AccountSecret, email: str, display_name: str, now: int) -> bytes:
    """An enrolment request signed by the new account master key."""
    key = secret.public_key()
    body = codec.encode(
        {
            "email": normalise_email(email),
            "name": normalise_display_name(display_name),
            "key": bytes(key),
            "created": now,
        }
    )
    return cose.sign(body, REQUEST_CONTENT_TYPE, key.key_id, secret)


def parse_request(data: bytes) -> EnrollmentRequest:
    """Verify a request's proof of possession; raise :class:`VerificationError`."""
    try:
        message = cose.parse(data, REQUEST_CONTENT_TYPE)
        body = codec.expect_map(codec.decode(message.payload, cose.SIGN1_LIMITS), "request")
        codec.only_keys(body, ("email", "name", "key", "created"), "request")
        email = codec.get_text(body, "email", "request")
        if normalise_email(email) != email:
            raise DecodeError("request: address is not normalised")
        name = codec.get_text(body, "name", "request")
        if normalise_display_name(name) != name:
            raise DecodeError("request: name is not normalised")
        key = AccountKey(codec.get_bytes(body, "key", "request", size=KEY_SIZE))
        created = codec.get_int(body, "created", "request")
    except (DecodeError, UsageError) as exc:
        raise _as_malformed(exc, "request") from exc
    if message.kid != key.key_id:
        raise VerificationError(VerificationFailure.MISMATCH, "request: kid is not the key's")
    message.verify(key)
    return EnrollmentRequest(email, name, key, created, data)


# --- account certificates --------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AccountCertificate:
    """A verified account certificate."""

    email: str
    display_name: str
    kind: Kind
    account_key: AccountKey
    issuer: Authority
    serial: bytes
    issued_at: int
    not_before: int
    expires: int
    raw: bytes

    @property
    def is_external(self) -> bool:
        return self.kind is Kind.EXTERNAL


def issuer_name(authority: Authority) -> str:
    """The CWT ``iss`` claim for an authority: its fingerprint without spaces."""
    return authority.fingerprint().replace(" ", "")


def issue_account_certificate(
    secret: AuthoritySecret,
    authority: Authority,
    request: EnrollmentRequest,
    *,
    kind: Kind,
    now: int,
    days: int,
    rng: Rng,
) -> bytes:
    """Issue a certificate for a verified request.

    Raises :class:`IssuanceRefused` for an agent certificate outside the
    authority's domains, or a validity outside 1..3650 days.
    """
    if secret.public_key() != authority.key:
        raise UsageError("the secret key is not this authority's")
    if kind is Kind.AGENT and not authority.covers(request.email):
        raise IssuanceRefused(
            f"{request.email} is outside the agent domains",
            user_message=(
                "The address {email} is not in this authority's agent domains ({domains}); "
                "use --external to certify this person as an external."
            ),
            email=request.email,
            domains=", ".join(str(d) for d in authority.domains),
        )
    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise IssuanceRefused(
            "validity out of range",
            user_message="The validity must be between 1 and {max_days} days.",
            max_days=MAX_VALIDITY_DAYS,
        )
    claims: dict[codec.Key, codec.Value] = {
        CLAIM_ISS: issuer_name(authority),
        CLAIM_SUB: request.email,
        CLAIM_EXP: now + days * 86400,
        CLAIM_NBF: now,
        CLAIM_IAT: now,
        CLAIM_CTI: rng(SERIAL_SIZE),
        CLAIM_CNF: {
            CNF_COSE_KEY: {
                COSE_KEY_KTY: KTY_OKP,
                COSE_KEY_CRV: CRV_ED25519,
                COSE_KEY_X: bytes(request.account_key),
            }
        },
        CLAIM_NAME: request.display_name,
        CLAIM_KIND: kind.value,
    }
    return cose.sign(codec.encode(claims), ACCOUNT_CONTENT_TYPE, authority.key_id, secret)


def _parse_cnf(claims: dict[codec.Key, codec.Value]) -> AccountKey:
    cnf = codec.expect_map(codec.field(claims, CLAIM_CNF, "cnf"), "cnf")
    codec.only_keys(cnf, (CNF_COSE_KEY,), "cnf")
    key = codec.expect_map(codec.field(cnf, CNF_COSE_KEY, "cnf"), "COSE_Key")
    codec.only_keys(key, (COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X), "COSE_Key")
    if codec.get_int(key, COSE_KEY_KTY, "COSE_Key") != KTY_OKP:
        raise DecodeError("COSE_Key: kty is not OKP")
    if codec.get_int(key, COSE_KEY_CRV, "COSE_Key") != CRV_ED25519:
        raise DecodeError("COSE_Key: crv is not Ed25519")
    return AccountKey(codec.get_bytes(key, COSE_KEY_X, "COSE_Key", size=KEY_SIZE))


def verify_account_certificate(
    data: bytes,
    trust: TrustStore,
    revocations: RevocationSet,
    now: int,
    *,
    clock_skew: int = DEFAULT_CLOCK_SKEW,
) -> AccountCertificate:
    """Verify an account certificate at time ``now``; raise :class:`VerificationError`."""
    try:
        message = cose.parse(data, ACCOUNT_CONTENT_TYPE)
    except DecodeError as exc:
        raise _as_malformed(exc, "account certificate") from exc
    authority = trust.get(message.kid)
    message.verify(authority.key)
    what = "account certificate"
    try:
        claims = codec.expect_map(codec.decode(message.payload, cose.SIGN1_LIMITS), what)
        codec.only_keys(
            claims,
            (
                CLAIM_ISS,
                CLAIM_SUB,
                CLAIM_EXP,
                CLAIM_NBF,
                CLAIM_IAT,
                CLAIM_CTI,
                CLAIM_CNF,
                CLAIM_NAME,
                CLAIM_KIND,
            ),
            what,
        )
        email = codec.get_text(claims, CLAIM_SUB, what)
        if normalise_email(email) != email:
            raise DecodeError("address is not normalised")
        name = codec.get_text(claims, CLAIM_NAME, what)
        if normalise_display_name(name) != name:
            raise DecodeError("name is not normalised")
        kind = Kind(codec.get_text(claims, CLAIM_KIND, what))
        certificate = AccountCertificate(
            email=email,
            display_name=name,
            kind=kind,
            account_key=_parse_cnf(claims),
            issuer=authority,
            serial=codec.get_bytes(claims, CLAIM_CTI, what, size=SERIAL_SIZE),
            issued_at=codec.get_int(claims, CLAIM_IAT, what),
            not_before=codec.get_int(claims, CLAIM_NBF, what),
            expires=codec.get_int(claims, CLAIM_EXP, what),
            raw=data,
        )
        if codec.get_text(claims, CLAIM_ISS, what) != issuer_name(authority):
            raise DecodeError("iss does not name the signing authority")
    except (DecodeError, UsageError, ValueError) as exc:
        raise _as_malformed(exc, what) from exc
    if certificate.kind is Kind.AGENT and not authority.covers(email):
        raise VerificationError(VerificationFailure.EXTERNAL_CLAIMS_AGENT, email)
    check_validity(certificate, now, clock_skew)
    if revocations.account_revoked(
        authority.key_id, certificate.serial, email, certificate.issued_at
    ):
        raise VerificationError(VerificationFailure.REVOKED, f"account {email}")
    return certificate


def check_validity(certificate: AccountCertificate, now: int, clock_skew: int) -> None:
    """Raise ``NOT_YET_VALID`` or ``EXPIRED`` unless ``now`` is in the validity period.

    The allowance ``clock_skew`` (seconds) widens the period on both sides,
    because the clocks of machines on an isolated network drift.
    """
    if now + clock_skew < certificate.not_before:
        raise VerificationError(VerificationFailure.NOT_YET_VALID, certificate.email)
    if now - clock_skew >= certificate.expires:
        raise VerificationError(VerificationFailure.EXPIRED, certificate.email)


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
            created=codec.get_int(body, "created", what),
            raw=data,
        )
    except (DecodeError, UsageError) as exc:
        raise _as_malformed(exc, what) from exc
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
    "AccountCertificate",
    "DeviceCertificate",
    "EnrollmentRequest",
    "InvalidAddress",
    "IssuanceRefused",
    "Kind",
    "VerifiedDevice",
    "issue_account_certificate",
    "issue_device_certificate",
    "make_request",
    "parse_request",
    "safety_number",
    "verify_account_certificate",
    "verify_chain",
    "verify_device_certificate",
]

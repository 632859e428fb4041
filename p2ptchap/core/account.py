"""Account certificates: a professional e-mail bound to an account key by an authority.

An account certificate is a CWT (RFC 8392) in a COSE_Sign1 signed by an
authority: the normalised e-mail address (``sub``), a display name, a kind
(agent or external), the account's master Ed25519 key as a confirmation key
(``cnf``, RFC 8747), a validity period and a random serial.  The claim keys
are listed in ``docs/identity.md``.

:func:`read_account_certificate` checks everything that does not depend on
time or on revocations; :mod:`.identity` adds those.  Revocation records use
it too, to check that a device revocation comes from a certified account.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

from p2ptchap.core import codec, cose
from p2ptchap.core.addresses import normalise_display_name, normalise_email
from p2ptchap.core.authority import Authority, TrustStore
from p2ptchap.core.errors import DecodeError, UsageError, VerificationError, VerificationFailure
from p2ptchap.core.keys import KEY_SIZE, AccountKey, AccountSecret, AuthoritySecret, Rng

SERIAL_SIZE: Final = 16
REQUEST_CONTENT_TYPE: Final = "application/p2ptchap-request+cbor"
ACCOUNT_CONTENT_TYPE: Final = "application/cwt"

DEFAULT_CLOCK_SKEW: Final = 300
MAX_VALIDITY_DAYS: Final = 3650
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


def as_malformed(exc: Exception, what: str) -> VerificationError:
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
        created = codec.get_time(body, "created", "request")
    except (DecodeError, UsageError) as exc:
        raise as_malformed(exc, "request") from exc
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


def read_account_certificate(data: bytes, trust: TrustStore) -> AccountCertificate:
    """Check an account certificate, except its validity period and revocation.

    Checks structure, authority, signature, claims, and that an agent's
    address is in the authority's domains; raises :class:`VerificationError`.
    """
    try:
        message = cose.parse(data, ACCOUNT_CONTENT_TYPE)
    except DecodeError as exc:
        raise as_malformed(exc, "account certificate") from exc
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
            issued_at=codec.get_time(claims, CLAIM_IAT, what),
            not_before=codec.get_time(claims, CLAIM_NBF, what),
            expires=codec.get_time(claims, CLAIM_EXP, what),
            raw=data,
        )
        if codec.get_text(claims, CLAIM_ISS, what) != issuer_name(authority):
            raise DecodeError("iss does not name the signing authority")
    except (DecodeError, UsageError, ValueError) as exc:
        raise as_malformed(exc, what) from exc
    owner = trust.owner_of(email)
    if owner is not None and owner.key != authority.key:
        raise VerificationError(
            VerificationFailure.FOREIGN_DOMAIN, f"{email} belongs to {owner.name}"
        )
    if certificate.kind is Kind.AGENT and not authority.covers(email):
        raise VerificationError(VerificationFailure.EXTERNAL_CLAIMS_AGENT, email)
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

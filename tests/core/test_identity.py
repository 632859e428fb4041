"""Authorities, enrolment requests, account and device certificates, chains, safety numbers."""

from __future__ import annotations

import re
import unicodedata

import pytest

from p2ptchap.core import codec, cose, identity
from p2ptchap.core.addresses import DomainRule, InvalidAddress
from p2ptchap.core.authority import (
    TRUST_CONTENT_TYPE,
    Authority,
    TrustConflict,
    TrustStore,
    create_trust_file,
    parse_trust_file,
)
from p2ptchap.core.errors import UsageError, VerificationError, VerificationFailure
from p2ptchap.core.identity import (
    DEFAULT_CLOCK_SKEW,
    DEVICE_CONTENT_TYPE,
    REQUEST_CONTENT_TYPE,
    AccountCertificate,
    IssuanceRefused,
    Kind,
    normalise_display_name,
    parse_device_certificate,
    parse_request,
    safety_number,
    validate_serial,
    verify_account_certificate,
    verify_chain,
    verify_device_certificate,
)
from p2ptchap.core.keys import (
    AccountSecret,
    AuthoritySecret,
    DeviceSecret,
    ExchangeSecret,
    Rng,
)
from p2ptchap.core.revocation import RevocationSet, revoke_device, revoke_email, revoke_serial
from tests.conftest import (
    DAY,
    NOW,
    Org,
    account_claims,
    assert_every_flip_rejected,
    make_org,
)

F = VerificationFailure


def failure(reason: VerificationFailure) -> pytest.RaisesExc[VerificationError]:
    """``pytest.raises`` for a VerificationError, with the reason checked afterwards."""
    return pytest.raises(VerificationError, check=lambda exc: exc.reason is reason)


def revocations(org: Org, *records: bytes) -> RevocationSet:
    result = RevocationSet()
    for record in records:
        assert result.add(record, org.trust)
    return result


def verify(
    data: bytes, org: Org, revoked: RevocationSet | None = None, now: int = NOW, **kw: int
) -> AccountCertificate:
    return verify_account_certificate(data, org.trust, revoked or RevocationSet(), now, **kw)


# --- display names -------------------------------------------------------------


def test_display_name_is_nfc_normalised_and_stripped() -> None:
    decomposed = "  Jose\u0301 Gonzalez  "
    name = normalise_display_name(decomposed)
    assert name == "José Gonzalez"
    assert name == unicodedata.normalize("NFC", name)
    assert len(name) == 13


def test_display_name_keeps_accents() -> None:
    name = "Élodie Müller-Çağlar d'Ørsted"
    assert normalise_display_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Alice\u202eecilA",  # RIGHT-TO-LEFT OVERRIDE
        "Alice\u202d",  # LEFT-TO-RIGHT OVERRIDE (inside, after strip would not remove it)
        "Al\u2066ice",  # LEFT-TO-RIGHT ISOLATE
        "Al\u200bice",  # ZERO WIDTH SPACE
        "Al\u200dice",  # ZERO WIDTH JOINER
        "Al\x00ice",
        "Al\tice",
        "Al\nice",
        "Al\x7fice",
        "Al\x9bice",
        "Al\ue000ice",  # private use
        "Al\U000e0001ice",  # LANGUAGE TAG
        "Al\u2028ice",  # LINE SEPARATOR
        "Al\u2029ice",  # PARAGRAPH SEPARATOR
    ],
)
def test_display_name_rejects_control_and_format_characters(name: str) -> None:
    with pytest.raises(UsageError) as info:
        normalise_display_name(name)
    assert "invisible or control" in info.value.render()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_display_name_length(name: str) -> None:
    with pytest.raises(UsageError) as info:
        normalise_display_name(name)
    assert "100" in info.value.render()


def test_display_name_limits() -> None:
    assert normalise_display_name("x" * 100) == "x" * 100
    with pytest.raises(UsageError):
        normalise_display_name("x" * 65, identity.MAX_DEVICE_NAME)
    with pytest.raises(UsageError):
        normalise_display_name(None)  # type: ignore[arg-type]


# --- authorities and trust files -------------------------------------------------


def test_trust_file_round_trip(org: Org) -> None:
    parsed = parse_trust_file(org.trust_file)
    assert parsed == org.authority
    assert parsed.name == "Ministère de l'Intérieur"
    assert parsed.domains == (DomainRule("gouv.fr", True), DomainRule("mairie-exemple.fr", False))
    assert parsed.key == org.secret.public_key()
    assert parsed.created == NOW
    assert parsed.fingerprint() == org.secret.public_key().fingerprint()
    assert parsed.key_id == org.secret.public_key().key_id


def test_trust_file_domains_are_normalised_and_deduplicated(rng: Rng) -> None:
    authority, data = create_trust_file(
        AuthoritySecret.generate(rng), "  X  ", ["*.GOUV.fr", "*.gouv.fr", "Élysée.fr"], NOW
    )
    assert authority.name == "X"
    assert [str(d) for d in authority.domains] == ["*.gouv.fr", "xn--lyse-9oad.fr"]
    assert parse_trust_file(data) == authority


def test_authority_covers(org: Org) -> None:
    assert org.authority.covers("a@x.gouv.fr")
    assert org.authority.covers("a@a.b.gouv.fr")
    assert org.authority.covers("a@mairie-exemple.fr")
    assert not org.authority.covers("a@gouv.fr")
    assert not org.authority.covers("a@evilgouv.fr")
    assert not org.authority.covers("a@x.mairie-exemple.fr")


@pytest.mark.parametrize(
    ("name", "domains", "error"),
    [
        ("", ["gouv.fr"], UsageError),
        ("   ", ["gouv.fr"], UsageError),
        ("x" * 201, ["gouv.fr"], UsageError),
        ("X", [], UsageError),
        ("X", [f"d{i}.fr" for i in range(65)], UsageError),
        ("X", ["a*.gouv.fr"], InvalidAddress),
        ("X", ["localhost"], InvalidAddress),
    ],
)
def test_create_trust_file_refuses(
    rng: Rng, name: str, domains: list[str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        create_trust_file(AuthoritySecret.generate(rng), name, domains, NOW)


def test_create_trust_file_limits(rng: Rng) -> None:
    _, data = create_trust_file(
        AuthoritySecret.generate(rng), "x" * 200, [f"d{i}.fr" for i in range(64)], NOW
    )
    assert len(parse_trust_file(data).domains) == 64


def _trust_payload(authority_key: bytes, **override: codec.Value) -> bytes:
    body: dict[codec.Key, codec.Value] = {
        "name": "Ministère",
        "domains": ["*.gouv.fr"],
        "key": authority_key,
        "created": NOW,
    }
    body.update(override)
    return codec.encode({k: v for k, v in body.items() if v is not None})


def test_hand_made_trust_file_verifies(rng: Rng) -> None:
    """The crafting helper itself is sound, so the refusals below are meaningful."""
    secret = AuthoritySecret.generate(rng)
    key = secret.public_key()
    data = cose.sign(_trust_payload(bytes(key)), TRUST_CONTENT_TYPE, key.key_id, secret)
    assert parse_trust_file(data).key == key


def test_trust_file_signed_by_another_key(rng: Rng) -> None:
    named = AuthoritySecret.generate(rng).public_key()
    other = AuthoritySecret.generate(rng)
    data = cose.sign(_trust_payload(bytes(named)), TRUST_CONTENT_TYPE, named.key_id, other)
    with failure(F.BAD_SIGNATURE):
        parse_trust_file(data)


def test_trust_file_kid_not_the_key(rng: Rng) -> None:
    named = AuthoritySecret.generate(rng).public_key()
    other = AuthoritySecret.generate(rng)
    data = cose.sign(
        _trust_payload(bytes(named)), TRUST_CONTENT_TYPE, other.public_key().key_id, other
    )
    with failure(F.MISMATCH):
        parse_trust_file(data)


@pytest.mark.parametrize(
    "override",
    [
        {"domains": ["*.GOUV.fr"]},
        {"domains": ["gouv.fr."]},
        {"domains": []},
        {"domains": [f"d{i}.fr" for i in range(65)]},
        {"domains": [1]},
        {"domains": ["a*.fr"]},
        {"name": "x" * 201},
        {"name": None},
        {"created": -1},
        {"extra": 1},
    ],
)
def test_malformed_trust_file(rng: Rng, override: dict[str, codec.Value]) -> None:
    secret = AuthoritySecret.generate(rng)
    key = secret.public_key()
    data = cose.sign(_trust_payload(bytes(key), **override), TRUST_CONTENT_TYPE, key.key_id, secret)
    with failure(F.MALFORMED):
        parse_trust_file(data)


def test_trust_file_garbage_and_wrong_content_type(org: Org) -> None:
    for data in (b"", b"\x00", b"not cbor at all", codec.encode([1, 2])):
        with failure(F.MALFORMED):
            parse_trust_file(data)
    member = org.member("a@x.gouv.fr")
    for data in (member.certificate, member.request, member.device):
        with failure(F.MALFORMED):
            parse_trust_file(data)


def test_trust_file_tamper(org: Org) -> None:
    assert_every_flip_rejected(org.trust_file, parse_trust_file, (VerificationError,))


def test_trust_store(org: Org, other_org: Org) -> None:
    store = TrustStore([org.authority])
    assert len(store) == 1
    assert store.get(org.authority.key_id) is org.authority
    with failure(F.UNKNOWN_AUTHORITY):
        store.get(other_org.authority.key_id)
    store.add(other_org.authority)
    store.add(other_org.authority)
    assert len(store) == 2
    assert set(store) == {org.authority, other_org.authority}


# --- enrolment requests ----------------------------------------------------------


def test_request_round_trip(rng: Rng) -> None:
    secret = AccountSecret.generate(rng)
    data = identity.make_request(secret, " Camille@Interieur.GOUV.fr ", " Jose\u0301 ", NOW)
    request = parse_request(data)
    assert request.email == "camille@interieur.gouv.fr"
    assert request.display_name == "José"
    assert request.account_key == secret.public_key()
    assert request.created == NOW
    assert request.raw == data


def test_make_request_refuses_bad_input(rng: Rng) -> None:
    secret = AccountSecret.generate(rng)
    with pytest.raises(InvalidAddress):
        identity.make_request(secret, "not an address", "Camille", NOW)
    with pytest.raises(UsageError):
        identity.make_request(secret, "a@gouv.fr", "Cam\u202eille", NOW)


def _request_payload(account_key: bytes, **override: codec.Value) -> bytes:
    body: dict[codec.Key, codec.Value] = {
        "email": "camille@x.gouv.fr",
        "name": "Camille",
        "key": account_key,
        "created": NOW,
    }
    body.update(override)
    return codec.encode(body)


def test_hand_made_request_verifies(rng: Rng) -> None:
    secret = AccountSecret.generate(rng)
    key = secret.public_key()
    data = cose.sign(_request_payload(bytes(key)), REQUEST_CONTENT_TYPE, key.key_id, secret)
    assert parse_request(data).account_key == key


def test_request_signed_by_another_key(rng: Rng) -> None:
    key = AccountSecret.generate(rng).public_key()
    other = AccountSecret.generate(rng)
    data = cose.sign(_request_payload(bytes(key)), REQUEST_CONTENT_TYPE, key.key_id, other)
    with failure(F.BAD_SIGNATURE):
        parse_request(data)


def test_request_kid_not_the_key(rng: Rng) -> None:
    key = AccountSecret.generate(rng).public_key()
    other = AccountSecret.generate(rng)
    data = cose.sign(
        _request_payload(bytes(key)), REQUEST_CONTENT_TYPE, other.public_key().key_id, other
    )
    with failure(F.MISMATCH):
        parse_request(data)


@pytest.mark.parametrize(
    "override",
    [
        {"email": "Camille@x.gouv.fr"},
        {"email": "camille@élysée.fr"},
        {"email": "nope"},
        {"name": " Camille"},
        {"name": "Jose\u0301"},
        {"name": "Cam\u202eille"},
        {"key": b"\x01" * 31},
        {"created": "now"},
        {"extra": True},
    ],
)
def test_malformed_request(rng: Rng, override: dict[str, codec.Value]) -> None:
    secret = AccountSecret.generate(rng)
    key = secret.public_key()
    data = cose.sign(
        _request_payload(bytes(key), **override), REQUEST_CONTENT_TYPE, key.key_id, secret
    )
    with failure(F.MALFORMED):
        parse_request(data)


def test_request_garbage_and_wrong_content_type(org: Org) -> None:
    for data in (b"", b"\xff", b"garbage", org.trust_file, org.member("a@x.gouv.fr").device):
        with failure(F.MALFORMED):
            parse_request(data)


def test_request_tamper(org: Org) -> None:
    _, data = org.request("camille@x.gouv.fr", "Camille Dupont")
    assert_every_flip_rejected(data, parse_request, (VerificationError,))


# --- issuance ------------------------------------------------------------------


def test_issued_certificate_contents(org: Org) -> None:
    secret, request = org.request("Camille@X.Gouv.FR", "Camille Dupont", NOW)
    data = identity.issue_account_certificate(
        org.secret,
        org.authority,
        parse_request(request),
        kind=Kind.AGENT,
        now=NOW,
        days=30,
        rng=lambda n: b"\x07" * n,
    )
    certificate = verify(data, org)
    assert certificate.email == "camille@x.gouv.fr"
    assert certificate.display_name == "Camille Dupont"
    assert certificate.kind is Kind.AGENT
    assert not certificate.is_external
    assert certificate.account_key == secret.public_key()
    assert certificate.issuer == org.authority
    assert certificate.serial == b"\x07" * 16
    assert certificate.issued_at == NOW
    assert certificate.not_before == NOW
    assert certificate.expires == NOW + 30 * DAY
    assert certificate.raw == data


def test_issued_serials_are_random(org: Org) -> None:
    _, request = org.request("a@x.gouv.fr")
    first = verify(org.issue(request), org)
    second = verify(org.issue(request), org)
    assert first.serial != second.serial


def test_agent_outside_domains_is_refused(org: Org) -> None:
    _, request = org.request("camille@justice.fr")
    with pytest.raises(IssuanceRefused) as info:
        org.issue(request, kind=Kind.AGENT)
    message = info.value.render()
    assert "--external" in message
    assert "camille@justice.fr" in message
    assert "*.gouv.fr" in message


def test_external_outside_domains_is_allowed(org: Org) -> None:
    _, request = org.request("camille@justice.fr")
    certificate = verify(org.issue(request, kind=Kind.EXTERNAL), org)
    assert certificate.kind is Kind.EXTERNAL
    assert certificate.is_external


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("a@x.gouv.fr", True),
        ("a@a.b.gouv.fr", True),
        ("a@mairie-exemple.fr", True),
        ("a@gouv.fr", False),
        ("a@evilgouv.fr", False),
        ("a@x.mairie-exemple.fr", False),
    ],
)
def test_agent_suffix_rules(org: Org, email: str, allowed: bool) -> None:
    _, request = org.request(email)
    if allowed:
        assert verify(org.issue(request), org).kind is Kind.AGENT
    else:
        with pytest.raises(IssuanceRefused):
            org.issue(request)


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_validity_out_of_range_is_refused(org: Org, days: int) -> None:
    _, request = org.request("a@x.gouv.fr")
    with pytest.raises(IssuanceRefused) as info:
        org.issue(request, days=days)
    assert "3650" in info.value.render()


def test_validity_limits(org: Org) -> None:
    _, request = org.request("a@x.gouv.fr")
    assert verify(org.issue(request, days=1), org).expires == NOW + DAY
    assert verify(org.issue(request, days=3650), org).expires == NOW + 3650 * DAY


def test_issue_with_a_secret_that_is_not_the_authoritys(org: Org, other_org: Org) -> None:
    _, request = org.request("a@x.gouv.fr")
    with pytest.raises(UsageError) as info:
        identity.issue_account_certificate(
            other_org.secret,
            org.authority,
            parse_request(request),
            kind=Kind.AGENT,
            now=NOW,
            days=1,
            rng=org.rng,
        )
    assert not isinstance(info.value, IssuanceRefused)


# --- account certificate verification --------------------------------------------


def test_hand_made_certificate_verifies(org: Org, rng: Rng) -> None:
    """The crafting helper is sound, so the refusals below are meaningful."""
    secret = AccountSecret.generate(rng)
    certificate = verify(org.sign_claims(account_claims(org, secret, "a@x.gouv.fr")), org)
    assert certificate.account_key == secret.public_key()
    assert certificate.serial == b"\x42" * 16


def test_bad_signature_claiming_the_trusted_kid(org: Org, rng: Rng) -> None:
    impostor = AuthoritySecret.generate(rng)
    claims = account_claims(org, AccountSecret.generate(rng), "a@x.gouv.fr")
    data = cose.sign(
        codec.encode(claims), identity.ACCOUNT_CONTENT_TYPE, org.authority.key_id, impostor
    )
    with failure(F.BAD_SIGNATURE):
        verify(data, org)


def test_unknown_authority(org: Org, other_org: Org) -> None:
    member = other_org.member("a@justice.fr")
    with failure(F.UNKNOWN_AUTHORITY):
        verify(member.certificate, org)
    # The same certificate verifies once its authority is trusted.
    trust = TrustStore([org.authority, other_org.authority])
    assert verify_account_certificate(member.certificate, trust, RevocationSet(), NOW)


def test_validity_boundaries_with_default_skew(org: Org) -> None:
    certificate = org.member("a@x.gouv.fr", days=1).certificate
    expires = NOW + DAY
    skew = DEFAULT_CLOCK_SKEW
    assert skew > 0
    # Not yet valid: the allowance extends the period `skew` seconds before nbf.
    verify(certificate, org, now=NOW - skew)
    with failure(F.NOT_YET_VALID):
        verify(certificate, org, now=NOW - skew - 1)
    # Expired: the allowance extends the period `skew` seconds past exp.
    verify(certificate, org, now=expires - skew)
    verify(certificate, org, now=expires)
    verify(certificate, org, now=expires + skew - 1)
    with failure(F.EXPIRED):
        verify(certificate, org, now=expires + skew)


def test_validity_boundaries_with_explicit_skew(org: Org) -> None:
    certificate = org.member("a@x.gouv.fr", days=1).certificate
    expires = NOW + DAY
    verify(certificate, org, now=NOW, clock_skew=0)
    verify(certificate, org, now=expires - 1, clock_skew=0)
    with failure(F.NOT_YET_VALID):
        verify(certificate, org, now=NOW - 1, clock_skew=0)
    with failure(F.EXPIRED):
        verify(certificate, org, now=expires, clock_skew=0)
    verify(certificate, org, now=NOW - 3600, clock_skew=3600)
    with failure(F.NOT_YET_VALID):
        verify(certificate, org, now=NOW - 3601, clock_skew=3600)
    verify(certificate, org, now=expires + 3599, clock_skew=3600)
    with failure(F.EXPIRED):
        verify(certificate, org, now=expires + 3600, clock_skew=3600)


def test_revoked_by_serial(org: Org) -> None:
    first = org.member("a@x.gouv.fr")
    second = org.member("a@x.gouv.fr")
    revoked = revocations(org, revoke_serial(org.secret, first.account.serial, NOW + 10))
    with failure(F.REVOKED):
        verify(first.certificate, org, revoked, now=NOW + 20)
    # Another certificate of the same address is untouched.
    assert verify(second.certificate, org, revoked, now=NOW + 20).serial == second.account.serial


def test_revoked_by_email_up_to_the_revocation_time(org: Org) -> None:
    at = NOW + 1000
    before = org.member("a@x.gouv.fr", now=NOW)
    same_second = org.member("a@x.gouv.fr", now=at)
    after = org.member("a@x.gouv.fr", now=at + 1)
    other_address = org.member("b@x.gouv.fr", now=NOW)
    revoked = revocations(org, revoke_email(org.secret, "A@X.Gouv.FR", at))
    later = at + 100
    with failure(F.REVOKED):
        verify(before.certificate, org, revoked, now=later)
    with failure(F.REVOKED):
        verify(same_second.certificate, org, revoked, now=later)
    assert verify(after.certificate, org, revoked, now=later).issued_at == at + 1
    assert verify(other_address.certificate, org, revoked, now=later)


def test_email_revocation_of_another_authority_does_not_apply(org: Org, rng: Rng) -> None:
    second = make_org(rng, "Autre", ["justice.fr"])
    member = org.member("a@x.gouv.fr")
    trust = TrustStore([org.authority, second.authority])
    revoked = RevocationSet()
    assert revoked.add(revoke_email(second.secret, "a@x.gouv.fr", NOW + 10), trust)
    assert revoked.add(revoke_serial(second.secret, member.account.serial, NOW + 10), trust)
    assert verify_account_certificate(member.certificate, trust, revoked, NOW + 20)


def test_only_the_domain_owner_may_certify_its_addresses(org: Org, rng: Rng) -> None:
    # A second, federated authority certifies an "external" with an address
    # of the first authority's domain: a node trusting both refuses it,
    # whatever the kind, so no administration can speak for another's people.
    second = make_org(rng, "Croix-Rouge", ["croix-rouge.fr"])
    secret = AccountSecret.generate(rng)
    both = TrustStore([org.authority, second.authority])
    for kind in ("external", "agent"):
        forged = second.sign_claims(account_claims(second, secret, "a@x.gouv.fr", kind=kind))
        with failure(F.FOREIGN_DOMAIN):
            verify_account_certificate(forged, both, RevocationSet(), NOW)
    # Addresses no trusted authority owns may be certified as externals by any.
    external = second.sign_claims(account_claims(second, secret, "b@laposte.net", kind="external"))
    assert verify_account_certificate(external, both, RevocationSet(), NOW).is_external


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("*.gouv.fr", "interieur.gouv.fr"),
        ("*.gouv.fr", "*.interieur.gouv.fr"),
        ("*.interieur.gouv.fr", "*.gouv.fr"),
        ("interieur.gouv.fr", "interieur.gouv.fr"),
        ("*.gouv.fr", "*.gouv.fr"),
    ],
)
def test_trust_store_refuses_authorities_with_overlapping_domains(
    rng: Rng, first: str, second: str
) -> None:
    one, two = make_org(rng, "Un", [first]), make_org(rng, "Deux", [second])
    with pytest.raises(TrustConflict) as info:
        TrustStore([one.authority, two.authority])
    assert "Un" in info.value.render() and "Deux" in info.value.render()


@pytest.mark.parametrize(
    ("first", "second"),
    [("*.gouv.fr", "gouv.fr"), ("*.gouv.fr", "xgouv.fr"), ("a.fr", "b.fr"), ("*.a.fr", "*.b.fr")],
)
def test_disjoint_domains_can_be_trusted_together(rng: Rng, first: str, second: str) -> None:
    assert (
        len(
            TrustStore(
                [make_org(rng, "Un", [first]).authority, make_org(rng, "Deux", [second]).authority]
            )
        )
        == 2
    )


def test_external_claims_agent(org: Org, rng: Rng) -> None:
    secret = AccountSecret.generate(rng)
    data = org.sign_claims(account_claims(org, secret, "a@justice.fr", kind="agent"))
    with failure(F.EXTERNAL_CLAIMS_AGENT):
        verify(data, org)
    external = org.sign_claims(account_claims(org, secret, "a@justice.fr", kind="external"))
    assert verify(external, org).kind is Kind.EXTERNAL


def _tweak(claims: dict[codec.Key, codec.Value], key: codec.Key, value: object) -> None:
    if value is None:
        del claims[key]
    else:
        claims[key] = value  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (99, "extra"),
        ("extra", 1),
        (identity.CLAIM_SUB, "A@x.gouv.fr"),
        (identity.CLAIM_SUB, "a@ÉLYSÉE.fr"),
        (identity.CLAIM_SUB, " a@x.gouv.fr"),
        (identity.CLAIM_SUB, "nope"),
        (identity.CLAIM_SUB, None),
        (identity.CLAIM_NAME, " Camille"),
        (identity.CLAIM_NAME, "Cam\u202eille"),
        (identity.CLAIM_NAME, "Jose\u0301"),
        (identity.CLAIM_KIND, "admin"),
        (identity.CLAIM_KIND, None),
        (identity.CLAIM_ISS, "someone else"),
        (identity.CLAIM_ISS, None),
        (identity.CLAIM_CTI, b"\x01" * 15),
        (identity.CLAIM_EXP, -5),
        (identity.CLAIM_IAT, "yesterday"),
        (identity.CLAIM_NBF, None),
        (identity.CLAIM_CNF, {1: {1: 2, -1: 6, -2: b"\x00" * 32}}),
        (identity.CLAIM_CNF, {1: {1: 1, -1: 7, -2: b"\x00" * 32}}),
        (identity.CLAIM_CNF, {1: {1: 1, -1: 6, -2: b"\x00" * 31}}),
        (identity.CLAIM_CNF, {1: {1: 1, -1: 6, -2: b"\x00" * 32, 3: -8}}),
        (identity.CLAIM_CNF, {2: b"\x00" * 32}),
        (identity.CLAIM_CNF, None),
    ],
)
def test_malformed_claims(org: Org, rng: Rng, key: codec.Key, value: object) -> None:
    claims = account_claims(org, AccountSecret.generate(rng), "a@x.gouv.fr")
    _tweak(claims, key, value)
    with failure(F.MALFORMED):
        verify(org.sign_claims(claims), org)


def test_malformed_payload_not_a_map(org: Org) -> None:
    for payload in (codec.encode([1, 2]), b"\xff", codec.encode("claims")):
        data = cose.sign(payload, identity.ACCOUNT_CONTENT_TYPE, org.authority.key_id, org.secret)
        with failure(F.MALFORMED):
            verify(data, org)


def test_malformed_garbage_and_wrong_content_type(org: Org) -> None:
    member = org.member("a@x.gouv.fr")
    for data in (b"", b"\x00", b"\xd2\x84", b"garbage" * 10, codec.encode({1: 2})):
        with failure(F.MALFORMED):
            verify(data, org)
    for data in (member.device, member.request, org.trust_file):
        with failure(F.MALFORMED):
            verify(data, org)
    record = revoke_serial(org.secret, member.account.serial, NOW)
    with failure(F.MALFORMED):
        verify(record, org)


def test_account_certificate_tamper(org: Org) -> None:
    member = org.member("camille@x.gouv.fr", "Camille Dupont")
    assert_every_flip_rejected(member.certificate, lambda d: verify(d, org), (VerificationError,))


# --- device certificates ---------------------------------------------------------


def test_device_certificate_round_trip(org: Org) -> None:
    member = org.member("a@x.gouv.fr", device_name="  Poste de travail  ")
    device = parse_device_certificate(member.device)
    assert device.account_key == member.secret.public_key()
    assert device.device_key == member.device_secret.public_key()
    assert device.exchange_key == member.exchange_secret.public_key()
    assert device.name == "Poste de travail"
    assert device.created == NOW
    assert device.raw == member.device
    assert device.device_id == member.device_secret.public_key().short_id()
    assert verify_device_certificate(member.device, member.account, RevocationSet()) == device


def _device_payload(account: bytes, rng: Rng, **override: codec.Value) -> bytes:
    body: dict[codec.Key, codec.Value] = {
        "account": account,
        "device": bytes(DeviceSecret.generate(rng).public_key()),
        "exchange": bytes(ExchangeSecret.generate(rng).public_key()),
        "name": "laptop",
        "created": NOW,
    }
    body.update(override)
    return codec.encode(body)


def test_device_certificate_signed_by_another_account_key(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    other = AccountSecret.generate(rng)
    account = member.secret.public_key()
    data = cose.sign(
        _device_payload(bytes(account), rng), DEVICE_CONTENT_TYPE, account.key_id, other
    )
    with failure(F.BAD_SIGNATURE):
        parse_device_certificate(data)
    with failure(F.BAD_SIGNATURE):
        verify_device_certificate(data, member.account, RevocationSet())


def test_device_certificate_kid_not_the_account(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    other = AccountSecret.generate(rng)
    data = cose.sign(
        _device_payload(bytes(member.secret.public_key()), rng),
        DEVICE_CONTENT_TYPE,
        other.public_key().key_id,
        other,
    )
    with failure(F.MISMATCH):
        parse_device_certificate(data)


def test_device_of_another_account(org: Org) -> None:
    alice = org.member("alice@x.gouv.fr")
    bob = org.member("bob@x.gouv.fr")
    with failure(F.MISMATCH):
        verify_device_certificate(alice.device, bob.account, RevocationSet())
    with failure(F.MISMATCH):
        verify_chain(bob.certificate, alice.device, org.trust, RevocationSet(), NOW)


def test_revoked_device(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    _, second = member.add_device("phone", rng)
    record = revoke_device(
        member.secret, member.certificate, member.device_secret.public_key(), NOW + 5
    )
    revoked = revocations(org, record)
    with failure(F.REVOKED):
        verify_device_certificate(member.device, member.account, revoked)
    with failure(F.REVOKED):
        verify_chain(member.certificate, member.device, org.trust, revoked, NOW + 10)
    # The account and its other devices are unaffected.
    assert verify_device_certificate(second, member.account, revoked).name == "phone"
    assert verify_chain(member.certificate, second, org.trust, revoked, NOW + 10)


def test_device_revoked_by_another_account_is_not_revoked(org: Org) -> None:
    alice = org.member("alice@x.gouv.fr")
    mallory = org.member("mallory@x.gouv.fr")
    record = revoke_device(
        mallory.secret, mallory.certificate, alice.device_secret.public_key(), NOW
    )
    revoked = revocations(org, record)
    assert verify_device_certificate(alice.device, alice.account, revoked)


@pytest.mark.parametrize(
    "override",
    [
        {"name": " laptop"},
        {"name": "x" * 65},
        {"name": "lap\u202etop"},
        {"device": b"\x00" * 31},
        {"exchange": None},
        {"created": -1},
        {"extra": 0},
    ],
)
def test_malformed_device_certificate(org: Org, rng: Rng, override: dict[str, object]) -> None:
    member = org.member("a@x.gouv.fr")
    account = member.secret.public_key()
    payload_fields = {k: v for k, v in override.items() if v is not None}
    payload = codec.expect_map(codec.decode(_device_payload(bytes(account), rng)), "p")
    payload.update(payload_fields)  # type: ignore[arg-type]
    for k, v in override.items():
        if v is None:
            del payload[k]
    data = cose.sign(codec.encode(payload), DEVICE_CONTENT_TYPE, account.key_id, member.secret)
    with failure(F.MALFORMED):
        parse_device_certificate(data)


def test_device_certificate_garbage_and_wrong_content_type(org: Org) -> None:
    member = org.member("a@x.gouv.fr")
    for data in (b"", b"\x01", member.certificate, member.request, org.trust_file):
        with failure(F.MALFORMED):
            parse_device_certificate(data)


def test_issue_device_certificate_refuses_bad_name(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    device = DeviceSecret.generate(rng).public_key()
    exchange = ExchangeSecret.generate(rng).public_key()
    for name in ("", "x" * 65, "a\u202eb"):
        with pytest.raises(UsageError):
            identity.issue_device_certificate(member.secret, device, exchange, name, NOW)


def test_device_certificate_tamper(org: Org) -> None:
    member = org.member("a@x.gouv.fr")
    assert_every_flip_rejected(
        member.device,
        lambda d: verify_device_certificate(d, member.account, RevocationSet()),
        (VerificationError,),
    )


# --- chains ----------------------------------------------------------------------


def test_verify_chain(org: Org) -> None:
    member = org.member("a@x.gouv.fr")
    chain = verify_chain(member.certificate, member.device, org.trust, RevocationSet(), NOW)
    assert chain.account.email == "a@x.gouv.fr"
    assert chain.device.device_key == member.device_secret.public_key()


def test_verify_chain_reports_the_account_failure(org: Org, other_org: Org) -> None:
    member = org.member("a@x.gouv.fr", days=1)
    with failure(F.EXPIRED):
        verify_chain(member.certificate, member.device, org.trust, RevocationSet(), NOW + 2 * DAY)
    with failure(F.UNKNOWN_AUTHORITY):
        verify_chain(member.certificate, member.device, other_org.trust, RevocationSet(), NOW)
    revoked = revocations(org, revoke_serial(org.secret, member.account.serial, NOW))
    with failure(F.REVOKED):
        verify_chain(member.certificate, member.device, org.trust, revoked, NOW)


# --- safety numbers --------------------------------------------------------------

SAFETY_FORMAT = re.compile(r"\d{5}( \d{5}){11}")


def test_safety_number_is_symmetric_and_well_formed(org: Org) -> None:
    alice = org.member("alice@x.gouv.fr").account
    bob = org.member("bob@x.gouv.fr").account
    number = safety_number(alice, bob)
    assert number == safety_number(bob, alice)
    assert SAFETY_FORMAT.fullmatch(number)
    assert len(number.split(" ")) == 12


def test_safety_number_changes_when_either_key_changes(org: Org) -> None:
    alice = org.member("alice@x.gouv.fr").account
    bob = org.member("bob@x.gouv.fr").account
    alice2 = org.member("alice@x.gouv.fr").account
    bob2 = org.member("bob@x.gouv.fr").account
    assert alice.account_key != alice2.account_key
    number = safety_number(alice, bob)
    assert safety_number(alice2, bob) != number
    assert safety_number(alice, bob2) != number
    assert safety_number(bob2, alice) != number
    assert len({number, safety_number(alice2, bob), safety_number(alice, bob2)}) == 3


def test_safety_number_does_not_depend_on_the_certificate_instance(org: Org) -> None:
    alice = org.member("alice@x.gouv.fr")
    bob = org.member("bob@x.gouv.fr").account
    # A renewed certificate for the same key gives the same number.
    renewed = verify(org.issue(alice.request, now=NOW + DAY), org, now=NOW + DAY)
    assert renewed.serial != alice.account.serial
    assert safety_number(renewed, bob) == safety_number(alice.account, bob)


# --- serials ---------------------------------------------------------------------


def test_validate_serial() -> None:
    assert validate_serial(" " + "ab" * 16 + "\n") == b"\xab" * 16
    assert validate_serial("AB" * 16) == b"\xab" * 16
    for text in ("", "ab" * 15, "ab" * 17, "zz" * 16, "a@b.fr"):
        with pytest.raises(UsageError) as info:
            validate_serial(text)
        assert "32 hexadecimal digits" in info.value.render()


def test_authority_dataclass_is_frozen(org: Org) -> None:
    with pytest.raises(AttributeError):
        org.authority.name = "x"  # type: ignore[misc]
    assert isinstance(org.authority, Authority)


def test_authority_names_follow_the_display_name_rules(rng: Rng) -> None:
    with pytest.raises(UsageError):
        create_trust_file(AuthoritySecret.generate(rng), "Pr\u202eéfecture", ["x.fr"], NOW)
    secret = AuthoritySecret.generate(rng)
    payload = codec.encode(
        {
            "name": "Pr\u202eéfecture",
            "domains": ["x.fr"],
            "key": bytes(secret.public_key()),
            "created": NOW,
        }
    )
    forged = cose.sign(payload, TRUST_CONTENT_TYPE, secret.public_key().key_id, secret)
    with failure(F.MALFORMED):
        parse_trust_file(forged)

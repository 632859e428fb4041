"""Revocation records and the grow-only set they form."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import codec, cose
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.errors import VerificationError, VerificationFailure
from p2ptchap.core.keys import (
    AccountKey,
    AccountSecret,
    AuthoritySecret,
    DeviceKey,
    DeviceSecret,
    Rng,
)
from p2ptchap.core.revocation import (
    MAX_DEVICE_REVOCATIONS,
    MAX_REASON_LENGTH,
    REVOCATION_CONTENT_TYPE,
    RevocationLimit,
    RevocationSet,
    parse_revocation,
    revoke_device,
    revoke_email,
    revoke_serial,
)
from tests.conftest import DAY, NOW, Org, assert_every_flip_rejected, make_org, make_rng

F = VerificationFailure
SERIAL = bytes(range(16))


def failure(reason: VerificationFailure) -> pytest.RaisesExc[VerificationError]:
    return pytest.raises(VerificationError, check=lambda exc: exc.reason is reason)


_SERIALS = (SERIAL, b"\x01" * 16, b"\x02" * 16)
_EMAILS = ("a@x.gouv.fr", "b@x.gouv.fr", "a@justice.fr")
_TIMES = (NOW - 1, NOW, NOW + 1, NOW + 5, NOW + 6, NOW + 10, NOW + 11, NOW + 50, NOW + 51)


def state(
    revocations: RevocationSet,
    issuers: tuple[bytes, ...],
    devices: tuple[tuple[AccountKey, DeviceKey], ...] = (),
) -> tuple[object, ...]:
    """Everything observable through the public interface, to compare two sets."""
    return (
        len(revocations),
        frozenset(r.record_id for r in revocations),
        tuple(
            revocations.account_revoked(issuer, serial, email, at)
            for issuer in issuers
            for serial in _SERIALS
            for email in _EMAILS
            for at in _TIMES
        ),
        tuple(revocations.device_revoked(account, device) for account, device in devices),
    )


# --- records ---------------------------------------------------------------------


def test_serial_record(org: Org) -> None:
    data = revoke_serial(org.secret, SERIAL, NOW, "lost")
    record = parse_revocation(data, org.trust)
    assert record.kind == "serial"
    assert record.serial == SERIAL
    assert record.signer_id == org.authority.key_id
    assert record.at == NOW
    assert record.reason == "lost"
    assert record.raw == data
    assert record.record_id == hashlib.blake2b(data, digest_size=32).digest()


def test_email_record_is_normalised(org: Org) -> None:
    record = parse_revocation(revoke_email(org.secret, " A@X.Gouv.FR ", NOW), org.trust)
    assert record.kind == "email"
    assert record.email == "a@x.gouv.fr"
    assert record.signer_id == org.authority.key_id


def test_device_record(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    account = member.secret
    device = DeviceSecret.generate(rng).public_key()
    data = revoke_device(account, member.certificate, device, NOW, "stolen")
    record = parse_revocation(data, org.trust)
    assert record.kind == "device"
    assert record.account == account.public_key()
    assert record.device == device
    assert record.signer_id == account.public_key().key_id
    # The record carries the account's certificate: a node that does not
    # trust its authority refuses it, so strangers cannot fill the set.
    with failure(F.UNKNOWN_AUTHORITY):
        parse_revocation(data, TrustStore())


def test_device_record_of_an_uncertified_account_is_refused(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    stranger = AccountSecret.generate(rng)
    device = DeviceSecret.generate(rng).public_key()
    # Signed by a key that is not the one the borrowed certificate names.
    with failure(F.MISMATCH):
        parse_revocation(revoke_device(stranger, member.certificate, device, NOW), org.trust)
    revocations = RevocationSet()
    with failure(F.MISMATCH):
        revocations.add(revoke_device(stranger, member.certificate, device, NOW), org.trust)
    assert len(revocations) == 0


def test_device_record_from_an_expired_account_still_counts(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr", days=1)
    device = member.device_secret.public_key()
    record = revoke_device(member.secret, member.certificate, device, NOW + 400 * DAY)
    assert parse_revocation(record, org.trust).device == device


def test_long_reason_is_truncated(org: Org) -> None:
    record = parse_revocation(revoke_serial(org.secret, SERIAL, NOW, "x" * 500), org.trust)
    assert record.reason == "x" * MAX_REASON_LENGTH


def test_unknown_authority(org: Org, other_org: Org) -> None:
    for data in (
        revoke_serial(other_org.secret, SERIAL, NOW),
        revoke_email(other_org.secret, "a@justice.fr", NOW),
    ):
        with failure(F.UNKNOWN_AUTHORITY):
            parse_revocation(data, org.trust)


def test_authority_record_signed_by_another_key_with_the_trusted_kid(org: Org, rng: Rng) -> None:
    body = codec.encode({"kind": "serial", "at": NOW, "reason": "", "serial": SERIAL})
    data = cose.sign(
        body, REVOCATION_CONTENT_TYPE, org.authority.key_id, AuthoritySecret.generate(rng)
    )
    with failure(F.BAD_SIGNATURE):
        parse_revocation(data, org.trust)


def test_device_record_signed_by_another_account(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    account = member.secret.public_key()
    other = AccountSecret.generate(rng)
    device = DeviceSecret.generate(rng).public_key()
    body = codec.encode(
        {
            "kind": "device",
            "at": NOW,
            "reason": "",
            "account": bytes(account),
            "device": bytes(device),
            "certificate": member.certificate,
        }
    )
    forged = cose.sign(body, REVOCATION_CONTENT_TYPE, account.key_id, other)
    with failure(F.BAD_SIGNATURE):
        parse_revocation(forged, org.trust)
    wrong_kid = cose.sign(body, REVOCATION_CONTENT_TYPE, other.public_key().key_id, other)
    with failure(F.MISMATCH):
        parse_revocation(wrong_kid, org.trust)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "everything", "at": NOW, "reason": ""},
        {"kind": "serial", "at": NOW, "reason": "", "serial": b"\x00" * 15},
        {"kind": "serial", "at": NOW, "reason": "", "serial": SERIAL, "email": "a@x.gouv.fr"},
        {"kind": "serial", "at": -1, "reason": "", "serial": SERIAL},
        {"kind": "serial", "at": NOW, "serial": SERIAL},
        {"kind": "serial", "at": NOW, "reason": "x" * 201, "serial": SERIAL},
        {"kind": "email", "at": NOW, "reason": "", "email": "A@x.gouv.fr"},
        {"kind": "email", "at": NOW, "reason": "", "email": "not an address"},
        {"kind": "email", "at": NOW, "reason": ""},
        {"kind": 1, "at": NOW, "reason": ""},
        ["kind", "serial"],
    ],
)
def test_malformed_records(org: Org, body: codec.Value) -> None:
    data = cose.sign(codec.encode(body), REVOCATION_CONTENT_TYPE, org.authority.key_id, org.secret)
    with failure(F.MALFORMED):
        parse_revocation(data, org.trust)


def test_garbage_and_wrong_content_type(org: Org) -> None:
    member = org.member("a@x.gouv.fr")
    for data in (b"", b"\xd2", b"garbage", org.trust_file, member.certificate, member.device):
        with failure(F.MALFORMED):
            parse_revocation(data, org.trust)


@pytest.mark.parametrize("kind", ["serial", "email", "device"])
def test_tamper(org: Org, rng: Rng, kind: str) -> None:
    if kind == "serial":
        data = revoke_serial(org.secret, SERIAL, NOW, "left")
    elif kind == "email":
        data = revoke_email(org.secret, "a@x.gouv.fr", NOW, "left")
    else:
        member = org.member("a@x.gouv.fr")
        data = revoke_device(
            member.secret, member.certificate, DeviceSecret.generate(rng).public_key(), NOW, "lost"
        )
    assert_every_flip_rejected(data, lambda d: parse_revocation(d, org.trust), (VerificationError,))


# --- the set ---------------------------------------------------------------------


def test_add_is_idempotent(org: Org) -> None:
    revocations = RevocationSet()
    data = revoke_serial(org.secret, SERIAL, NOW)
    assert revocations.add(data, org.trust) is True
    assert revocations.add(data, org.trust) is False
    assert len(revocations) == 1
    assert parse_revocation(data, org.trust).record_id in revocations


def test_set_is_grow_only_and_answers_lookups(org: Org, rng: Rng) -> None:
    member = org.member("d@x.gouv.fr")
    account = member.secret
    device = DeviceSecret.generate(rng).public_key()
    revocations = RevocationSet()
    issuer = org.authority.key_id
    assert not revocations.account_revoked(issuer, SERIAL, "a@x.gouv.fr", NOW)
    revocations.add(revoke_serial(org.secret, SERIAL, NOW), org.trust)
    assert revocations.account_revoked(issuer, SERIAL, "z@x.gouv.fr", NOW)
    ids_before = {r.record_id for r in revocations}
    revocations.add(revoke_email(org.secret, "a@x.gouv.fr", NOW + 10), org.trust)
    revocations.add(revoke_device(account, member.certificate, device, NOW), org.trust)
    assert len(revocations) == 3
    # Nothing known before was lost.
    assert ids_before < {r.record_id for r in revocations}
    assert revocations.account_revoked(issuer, SERIAL, "z@x.gouv.fr", NOW)
    assert revocations.account_revoked(issuer, b"\x01" * 16, "a@x.gouv.fr", NOW + 10)
    assert not revocations.account_revoked(issuer, b"\x01" * 16, "a@x.gouv.fr", NOW + 11)
    assert revocations.device_revoked(account.public_key(), device)
    assert not revocations.device_revoked(
        account.public_key(), DeviceSecret.generate(rng).public_key()
    )


def test_email_records_keep_the_latest_time_in_any_order(org: Org) -> None:
    early = revoke_email(org.secret, "a@x.gouv.fr", NOW)
    late = revoke_email(org.secret, "a@x.gouv.fr", NOW + 100)
    for order in ((early, late), (late, early)):
        revocations = RevocationSet()
        for data in order:
            revocations.add(data, org.trust)
        issuer = org.authority.key_id
        assert revocations.account_revoked(issuer, SERIAL, "a@x.gouv.fr", NOW + 100)
        assert not revocations.account_revoked(issuer, SERIAL, "a@x.gouv.fr", NOW + 101)


def test_record_from_unknown_authority_leaves_the_set_unchanged(org: Org, other_org: Org) -> None:
    revocations = RevocationSet()
    revocations.add(revoke_serial(org.secret, SERIAL, NOW), org.trust)
    issuers = (org.authority.key_id, other_org.authority.key_id)
    before = state(revocations, issuers)
    for stranger in (
        revoke_email(other_org.secret, "a@justice.fr", NOW),
        revoke_serial(other_org.secret, b"\x01" * 16, NOW),
    ):
        with failure(F.UNKNOWN_AUTHORITY):
            revocations.add(stranger, org.trust)
    assert state(revocations, issuers) == before
    assert len(revocations) == 1


def test_add_all_keeps_the_good_and_reports_the_bad(org: Org, other_org: Org) -> None:
    good = revoke_serial(org.secret, SERIAL, NOW)
    stranger = revoke_serial(other_org.secret, SERIAL, NOW)
    revocations = RevocationSet()
    errors = revocations.add_all([stranger, good, b"junk", good], org.trust)
    assert [e.reason for e in errors] == [F.UNKNOWN_AUTHORITY, F.MALFORMED]
    assert len(revocations) == 1


# Built once at import: hypothesis re-runs the test body many times.
_RNG = make_rng(99)
_ORG = make_org(_RNG)
_SECOND = make_org(_RNG, "Second", ["*.justice.fr"])
_TRUST = TrustStore([_ORG.authority, _SECOND.authority])
_MEMBER = _ORG.member("d@x.gouv.fr")
_ACCOUNT = _MEMBER.secret
_DEVICES = [DeviceSecret.generate(_RNG).public_key() for _ in range(2)]
_ISSUERS = (_ORG.authority.key_id, _SECOND.authority.key_id)
_PAIRS = tuple((_ACCOUNT.public_key(), device) for device in _DEVICES)
_RECORDS = [
    revoke_serial(_ORG.secret, b"\x01" * 16, NOW),
    revoke_serial(_SECOND.secret, b"\x01" * 16, NOW),
    revoke_email(_ORG.secret, "a@x.gouv.fr", NOW),
    revoke_email(_ORG.secret, "a@x.gouv.fr", NOW + 50),
    revoke_email(_SECOND.secret, "a@x.gouv.fr", NOW + 10),
    revoke_email(_ORG.secret, "b@x.gouv.fr", NOW + 5),
    revoke_device(_ACCOUNT, _MEMBER.certificate, _DEVICES[0], NOW),
    revoke_device(_ACCOUNT, _MEMBER.certificate, _DEVICES[1], NOW + 1),
]


def _set_of(records: list[bytes]) -> RevocationSet:
    result = RevocationSet()
    assert result.add_all(records, _TRUST) == []
    return result


@given(st.permutations(_RECORDS), st.permutations(_RECORDS))
def test_union_is_order_independent(first: list[bytes], second: list[bytes]) -> None:
    one, two = _set_of(first), _set_of(second)
    assert state(one, _ISSUERS, _PAIRS) == state(two, _ISSUERS, _PAIRS)
    # The latest email revocation wins whatever the order it arrived in.
    issuer = _ORG.authority.key_id
    assert one.account_revoked(issuer, b"\x02" * 16, "a@x.gouv.fr", NOW + 50)
    assert not one.account_revoked(issuer, b"\x02" * 16, "a@x.gouv.fr", NOW + 51)
    assert all(one.device_revoked(account, device) for account, device in _PAIRS)


@given(
    st.lists(st.sampled_from(_RECORDS), max_size=8),
    st.lists(st.sampled_from(_RECORDS), max_size=8),
)
def test_merge_is_a_union(left: list[bytes], right: list[bytes]) -> None:
    merged_lr = _set_of(left)
    merged_lr.add_all(right, _TRUST)
    merged_rl = _set_of(right)
    merged_rl.add_all(left, _TRUST)
    union = _set_of(sorted({*left, *right}))
    assert state(merged_lr, _ISSUERS, _PAIRS) == state(merged_rl, _ISSUERS, _PAIRS)
    assert state(merged_lr, _ISSUERS, _PAIRS) == state(union, _ISSUERS, _PAIRS)
    assert len(merged_lr) == len(set(left) | set(right))


def test_one_account_cannot_flood_the_set_with_device_revocations(org: Org, rng: Rng) -> None:
    member = org.member("a@x.gouv.fr")
    revocations = RevocationSet()
    for _ in range(MAX_DEVICE_REVOCATIONS):
        device = DeviceSecret.generate(rng).public_key()
        revocations.add(revoke_device(member.secret, member.certificate, device, NOW), org.trust)
    one_more = revoke_device(
        member.secret, member.certificate, DeviceSecret.generate(rng).public_key(), NOW
    )
    with pytest.raises(RevocationLimit):
        revocations.add(one_more, org.trust)
    assert len(revocations) == MAX_DEVICE_REVOCATIONS
    # Other accounts and the authority are not affected by that account's quota.
    other = org.member("b@x.gouv.fr")
    assert revocations.add(
        revoke_device(other.secret, other.certificate, other.device_secret.public_key(), NOW),
        org.trust,
    )

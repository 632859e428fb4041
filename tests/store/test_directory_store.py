"""The directories on disk: verified certificates, revocations applied at once, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2ptchap.core import identity, revocation
from p2ptchap.core.directory import InvalidSummary, make_summary
from p2ptchap.core.errors import VerificationError
from p2ptchap.core.events import Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.core.room import Person, RoomState
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from tests.conftest import DAY, NOW, Member, Org, make_org, make_rng


@pytest.fixture
def org() -> Org:
    return make_org(make_rng(3))


def store(tmp_path: Path, org: Org, revoked: RevocationSet | None = None) -> DirectoryStore:
    revocations = RevocationSet() if revoked is None else revoked
    return DirectoryStore(
        Database(tmp_path / "node.db"), org.trust, lambda: revocations, lambda: NOW
    )


def known(directory: DirectoryStore, *members: Member) -> None:
    for member in members:
        directory.add_account(member.certificate)
        directory.add_device(member.device)


def state(room: bytes, member: Member, public: bool) -> RoomState:
    key = member.account.account_key
    return RoomState(
        room=room,
        creator=key,
        name="Forum",
        topic="Crue",
        join_rule="public" if public else "private",
        membership={key: Membership.JOIN},
    )


def test_people_are_verified_kept_and_found_again(tmp_path: Path, org: Org) -> None:
    directory = store(tmp_path, org)
    helene = org.member("helene.dupont@interieur.gouv.fr", "Hélène Dupont")
    known(directory, helene)
    device = identity.parse_device_certificate(helene.device).device_key
    assert directory.sender(helene.account.account_key, device) is not None
    directory.db.close()
    again = store(tmp_path, org)
    assert [e.name for e in again.search("helene")] == ["Hélène Dupont"]
    assert again.sender(helene.account.account_key, device) is not None
    other = make_org(make_rng(4)).member("x@interieur.gouv.fr")
    with pytest.raises(VerificationError):
        again.add_account(other.certificate)  # an authority we do not trust
    with pytest.raises(VerificationError):
        again.add_device(other.device)  # a device of an account we do not know
    expired = org.member("old@interieur.gouv.fr", now=NOW - 400 * DAY, days=30)
    with pytest.raises(VerificationError):
        again.add_account(expired.certificate)


def test_a_revocation_takes_effect_at_once(tmp_path: Path, org: Org) -> None:
    revoked = RevocationSet()
    directory = store(tmp_path, org, revoked)
    bruno = org.member("bruno@interieur.gouv.fr", "Bruno")
    known(directory, bruno)
    device = identity.parse_device_certificate(bruno.device).device_key
    revoked.add(revocation.revoke_device(bruno.secret, bruno.certificate, device, NOW), org.trust)
    assert directory.sender(bruno.account.account_key, device) is None
    assert directory.people(bruno.account.account_key) is not None  # the account stays
    revoked.add(revocation.revoke_email(org.secret, bruno.account.email, NOW + 1), org.trust)
    assert directory.people(bruno.account.account_key) is None
    assert directory.search("bruno") == []


def test_room_rules_still_know_revoked_devices_and_accounts(tmp_path: Path, org: Org) -> None:
    revoked = RevocationSet()
    directory = store(tmp_path, org, revoked)
    bruno = org.member("bruno@interieur.gouv.fr", "Bruno")
    carole = org.member("carole@interieur.gouv.fr", "Carole", kind=Kind.EXTERNAL)
    known(directory, bruno, carole)
    account = bruno.account.account_key
    device = identity.parse_device_certificate(bruno.device).device_key
    other = identity.parse_device_certificate(carole.device).device_key
    valid = Person(Kind.AGENT, "bruno@interieur.gouv.fr")
    assert directory.author(account, device) == directory.sender(account, device) == valid
    assert directory.known_person(account) == directory.people(account) == valid
    assert directory.author(account, other) is None  # a device of another account
    assert directory.known_person(AccountKey(bytes(32))) is None
    revoked.add(revocation.revoke_device(bruno.secret, bruno.certificate, device, NOW), org.trust)
    assert directory.sender(account, device) is None
    assert directory.author(account, device) == Person(valid.kind, valid.email, revoked=True)
    assert directory.known_person(account) == valid  # only the device is revoked
    revoked.add(revocation.revoke_email(org.secret, carole.account.email, NOW + 1), org.trust)
    carole_key = carole.account.account_key
    assert directory.people(carole_key) is None and directory.sender(carole_key, other) is None
    gone = Person(Kind.EXTERNAL, "carole@interieur.gouv.fr", revoked=True)
    assert directory.known_person(carole_key) == directory.author(carole_key, other) == gone


def test_public_room_summaries(tmp_path: Path, org: Org) -> None:
    directory = store(tmp_path, org)
    alice = org.member("alice@interieur.gouv.fr", "Alice")
    eve = org.member("eve@interieur.gouv.fr", "Eve", kind=Kind.EXTERNAL)
    known(directory, alice, eve)
    room = b"\x07" * 32
    older = make_summary(
        alice.device_secret, alice.account.account_key, state(room, alice, True), 5
    )
    newer = make_summary(
        alice.device_secret, alice.account.account_key, state(room, alice, False), 6
    )
    directory.add_summary(older)
    assert [s.name for s in directory.public_rooms("crue")] == ["Forum"]
    directory.add_summary(newer)
    assert directory.public_rooms() == []
    directory.add_summary(older)  # an old summary does not bring a withdrawn room back
    assert directory.public_rooms() == []
    by_external = make_summary(
        eve.device_secret, eve.account.account_key, state(room, eve, True), 9
    )
    with pytest.raises(InvalidSummary):
        directory.add_summary(by_external)
    forged = bytearray(older)
    forged[-70] ^= 1
    with pytest.raises(InvalidSummary):
        directory.add_summary(bytes(forged))
    with pytest.raises(InvalidSummary):
        directory.add_summary(b"\xa0")


def test_summaries_from_the_future_and_withdrawals_that_say_nothing(
    tmp_path: Path, org: Org
) -> None:
    directory = store(tmp_path, org)
    alice = org.member("alice@interieur.gouv.fr", "Alice")
    known(directory, alice)
    key, room = alice.account.account_key, b"\x09" * 32
    ahead = make_summary(alice.device_secret, key, state(room, alice, True), 2**62)
    with pytest.raises(InvalidSummary):
        directory.add_summary(ahead)
    withdrawal = directory.add_summary(
        make_summary(alice.device_secret, key, state(room, alice, False), NOW * 1000)
    )
    assert (withdrawal.name, withdrawal.topic, withdrawal.members) == ("", "", 0)


def test_a_long_lived_reader_takes_in_what_another_connection_stored(
    tmp_path: Path, org: Org
) -> None:
    """The node's operations worker and the app keep a directory open for hours."""
    node = store(tmp_path, org)
    worker = store(tmp_path, org)  # a second connection to the same file
    assert worker.refresh() == 0  # nothing new: three counts, nothing read
    helene = org.member("helene.dupont@interieur.gouv.fr", "Hélène Dupont")
    known(node, helene)
    account = helene.account.account_key
    assert worker.search("helene") == [] and worker.devices_of(account) == []
    assert worker.refresh() == 2  # her account and her device
    assert [e.name for e in worker.search("helene")] == ["Hélène Dupont"]
    assert len(worker.devices_of(account)) == 1  # so a message gives her the key
    assert worker.refresh() == 0
    # Her second device, met later, comes too.
    _, tablet = helene.add_device("tablette", make_rng(9))
    node.add_device(tablet)
    assert worker.refresh() == 1 and len(worker.devices_of(account)) == 2
    # A renewed certificate replaces the old one.
    renewed = org.issue(helene.request, now=NOW + 60)
    node.add_account(renewed)
    assert worker.refresh() == 1
    assert worker.account(account) is not None
    assert worker.account(account).issued_at == NOW + 60  # type: ignore[union-attr]

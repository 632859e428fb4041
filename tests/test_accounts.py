"""Identity operations on real home folders: authority, enrolment, devices, revocation."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from p2ptchap import accounts
from p2ptchap.core import codec
from p2ptchap.core.authority import parse_trust_file
from p2ptchap.core.errors import (
    NotInitialised,
    StorageError,
    UsageError,
    VerificationError,
    VerificationFailure,
    WrongPassphrase,
)
from p2ptchap.core.identity import IssuanceRefused, Kind
from p2ptchap.core.keys import Rng
from p2ptchap.store.home import Home
from tests.conftest import DAY, NOW, PASSPHRASE

F = VerificationFailure
AUTHORITY_PASSPHRASE = "authority passphrase"
AGENT_PASSPHRASE = "agent passphrase"
MakeHome = Callable[[str], Home]


def failure(reason: VerificationFailure) -> pytest.RaisesExc[VerificationError]:
    return pytest.raises(VerificationError, check=lambda exc: exc.reason is reason)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its content."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@dataclasses.dataclass
class World:
    """An authority home, its exported trust file, and helpers to enrol agents."""

    make_home: MakeHome
    files: Path
    rng: Rng
    authority_home: Home
    trust_path: Path

    def init(
        self, home_name: str, email: str, name: str = "Camille Dupont", device: str = "laptop"
    ) -> tuple[Home, Path]:
        home = self.make_home(home_name)
        request_path = self.files / f"{home_name}.request"
        accounts.init_account(
            home,
            email,
            name,
            [self.trust_path],
            request_path,
            device_name=device,
            passphrase=AGENT_PASSPHRASE,
            now=NOW,
            rng=self.rng,
        )
        return home, request_path

    def issue(
        self, request_path: Path, out: Path, *, external: bool = False, now: int = NOW
    ) -> Path:
        accounts.issue(
            self.authority_home,
            accounts.read_request(request_path),
            out,
            external=external,
            days=365,
            passphrase=AUTHORITY_PASSPHRASE,
            now=now,
            rng=self.rng,
        )
        return out

    def enrolled(self, home_name: str, email: str, name: str = "Camille Dupont") -> Agent:
        home, request_path = self.init(home_name, email, name)
        certificate_path = self.issue(request_path, self.files / f"{home_name}.cert")
        accounts.enroll(home, certificate_path, NOW)
        return Agent(home, request_path, certificate_path)


@dataclasses.dataclass
class Agent:
    home: Home
    request_path: Path
    certificate_path: Path


@pytest.fixture
def world(make_home: MakeHome, tmp_path: Path, rng: Rng) -> World:
    files = tmp_path / "files"
    files.mkdir()
    authority_home = make_home("authority")
    accounts.create_authority(
        authority_home,
        "Ministère de l'Intérieur",
        ["*.gouv.fr"],
        AUTHORITY_PASSPHRASE,
        NOW,
        rng,
    )
    trust_path = files / "ministere.trust"
    accounts.export_trust(authority_home, trust_path)
    return World(make_home, files, rng, authority_home, trust_path)


@pytest.fixture
def agent(world: World) -> Agent:
    return world.enrolled("agent", "Camille.Dupont@Interieur.Gouv.FR", "Camille Dupont")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- authority -----------------------------------------------------------------------


def test_create_authority_writes_sealed_key_and_trust(world: World) -> None:
    home = world.authority_home
    assert mode(home.root) == 0o700
    assert mode(home.authority_key) == 0o600
    assert AUTHORITY_PASSPHRASE.encode() not in home.authority_key.read_bytes()
    authority, secret = accounts.load_authority(home, AUTHORITY_PASSPHRASE)
    assert secret.public_key() == authority.key
    assert authority.name == "Ministère de l'Intérieur"
    assert parse_trust_file(world.trust_path.read_bytes()) == authority
    assert len(home.trust_store()) == 1


def test_create_authority_twice_is_refused(world: World) -> None:
    before = snapshot(world.authority_home.root)
    with pytest.raises(UsageError):
        accounts.create_authority(
            world.authority_home, "Other", ["x.fr"], AUTHORITY_PASSPHRASE, NOW, world.rng
        )
    assert snapshot(world.authority_home.root) == before


def test_load_authority_wrong_passphrase(world: World) -> None:
    with pytest.raises(WrongPassphrase):
        accounts.load_authority(world.authority_home, "wrong")


def test_load_authority_from_an_empty_home(make_home: MakeHome) -> None:
    with pytest.raises(NotInitialised) as info:
        accounts.load_authority(make_home("empty"), PASSPHRASE)
    assert "authority init" in info.value.render()


# --- enrolment -----------------------------------------------------------------------


def test_full_flow(world: World) -> None:
    home, request_path = world.init("agent", " Camille.Dupont@Interieur.Gouv.FR ", "Camille Dupont")
    pending = accounts.whoami(home, NOW)
    assert pending["status"] == "pending-enrolment"
    assert pending["email"] == "camille.dupont@interieur.gouv.fr"
    assert home.request.exists()
    assert mode(home.master_key) == 0o600
    assert mode(home.device_key) == 0o600

    certificate_path = world.issue(request_path, world.files / "agent.cert")
    certificate = accounts.enroll(home, certificate_path, NOW)
    assert not home.request.exists()
    assert home.account_certificate.read_bytes() == certificate_path.read_bytes()
    issued = world.authority_home.issued_dir / f"{certificate.serial.hex()}.cose"
    assert issued.read_bytes() == certificate_path.read_bytes()

    info = accounts.whoami(home, NOW)
    (trusted,) = list(world.authority_home.trust_store())
    assert info["status"] == "valid"
    assert info["email"] == "camille.dupont@interieur.gouv.fr"
    assert info["display_email"] == "camille.dupont@interieur.gouv.fr"
    assert info["name"] == "Camille Dupont"
    assert info["kind"] == "agent"
    assert info["authority"] == {
        "name": "Ministère de l'Intérieur",
        "fingerprint": trusted.fingerprint(),
    }
    assert info["account_fingerprint"] == pending["account_fingerprint"]
    assert info["account_fingerprint"] == certificate.account_key.fingerprint()
    assert info["serial"] == certificate.serial.hex()
    assert info["valid_from"] == accounts.iso(NOW)
    assert info["valid_until"] == accounts.iso(NOW + 365 * DAY)
    assert info["this_device"] == pending["this_device"]
    (device,) = info["devices"]
    assert device["id"] == info["this_device"]
    assert device["name"] == "laptop"
    assert device["current"] is True
    assert device["revoked"] is False
    assert device["created"] == accounts.iso(NOW)


def test_whoami_reports_expiry(agent: Agent) -> None:
    assert accounts.whoami(agent.home, NOW + 366 * DAY)["status"] == "expired"


def test_whoami_on_an_empty_home(make_home: MakeHome) -> None:
    with pytest.raises(NotInitialised):
        accounts.whoami(make_home("empty"), NOW)


def test_init_twice_is_refused(world: World) -> None:
    home, _ = world.init("agent", "a@x.gouv.fr")
    before = snapshot(home.root)
    with pytest.raises(UsageError):
        accounts.init_account(
            home,
            "b@x.gouv.fr",
            "B",
            [world.trust_path],
            world.files / "again.request",
            device_name="pc",
            passphrase=AGENT_PASSPHRASE,
            now=NOW,
            rng=world.rng,
        )
    assert snapshot(home.root) == before
    assert not (world.files / "again.request").exists()


def test_init_without_trust_is_refused(make_home: MakeHome, tmp_path: Path, rng: Rng) -> None:
    home = make_home("agent")
    with pytest.raises(UsageError):
        accounts.init_account(
            home,
            "a@x.gouv.fr",
            "A",
            [],
            tmp_path / "req",
            device_name="pc",
            passphrase=AGENT_PASSPHRASE,
            now=NOW,
            rng=rng,
        )
    assert not home.root.exists()


def test_enroll_a_certificate_issued_for_another_request(world: World) -> None:
    alice_home, _ = world.init("alice", "alice@x.gouv.fr")
    _, bob_request = world.init("bob", "bob@x.gouv.fr")
    bob_certificate = world.issue(bob_request, world.files / "bob.cert")
    before = snapshot(alice_home.root)
    with failure(F.MISMATCH):
        accounts.enroll(alice_home, bob_certificate, NOW)
    assert snapshot(alice_home.root) == before
    assert not alice_home.account_certificate.exists()
    assert alice_home.request.exists()


def test_enroll_a_certificate_for_the_same_address_but_another_key(world: World) -> None:
    first_home, _ = world.init("first", "a@x.gouv.fr")
    _, second_request = world.init("second", "a@x.gouv.fr")
    certificate = world.issue(second_request, world.files / "second.cert")
    with failure(F.MISMATCH):
        accounts.enroll(first_home, certificate, NOW)
    assert not first_home.account_certificate.exists()


def test_issue_with_the_wrong_passphrase(world: World) -> None:
    _, request_path = world.init("agent", "a@x.gouv.fr")
    out = world.files / "agent.cert"
    before = snapshot(world.authority_home.root)
    with pytest.raises(WrongPassphrase):
        accounts.issue(
            world.authority_home,
            accounts.read_request(request_path),
            out,
            external=False,
            days=365,
            passphrase="not the passphrase",
            now=NOW,
            rng=world.rng,
        )
    assert not out.exists()
    assert snapshot(world.authority_home.root) == before


def test_issue_agent_outside_domains_needs_external(world: World) -> None:
    _, request_path = world.init("ext", "a@justice.fr")
    out = world.files / "ext.cert"
    with pytest.raises(IssuanceRefused) as info:
        world.issue(request_path, out)
    assert "--external" in info.value.render()
    assert not out.exists()
    certificate = accounts.issue(
        world.authority_home,
        accounts.read_request(request_path),
        out,
        external=True,
        days=30,
        passphrase=AUTHORITY_PASSPHRASE,
        now=NOW,
        rng=world.rng,
    )
    assert certificate.kind is Kind.EXTERNAL
    assert out.exists()


# --- devices -------------------------------------------------------------------------


def test_device_add_and_import(world: World, agent: Agent) -> None:
    first = accounts.whoami(agent.home, NOW)
    device, bundle = accounts.add_device(
        agent.home, "phone", world.files / "phone.bundle", AGENT_PASSPHRASE, NOW + 60, world.rng
    )
    assert bundle == world.files / "phone.bundle"
    assert mode(bundle) == 0o600

    second_home = world.make_home("phone")
    imported = accounts.import_device(second_home, bundle, AGENT_PASSPHRASE, NOW + 120, world.rng)
    assert imported.device_key == device.device_key

    second = accounts.whoami(second_home, NOW + 120)
    assert second["status"] == "valid"
    for key in ("email", "name", "kind", "serial", "account_fingerprint", "authority"):
        assert second[key] == first[key]
    assert second["this_device"] == device.device_id != first["this_device"]
    listed = {d["id"]: d for d in second["devices"]}
    assert set(listed) == {first["this_device"], device.device_id}
    assert listed[device.device_id]["current"] is True
    assert listed[first["this_device"]]["current"] is False
    assert not any(d["revoked"] for d in listed.values())
    # The first device also knows the new one now.
    assert {d["id"] for d in accounts.list_devices(agent.home, NOW)} == set(listed)
    # The second device does not hold the master key.
    assert not second_home.master_key.exists()


def test_device_add_refuses_to_overwrite_a_bundle(world: World, agent: Agent) -> None:
    out = world.files / "phone.bundle"
    out.write_bytes(b"keep me")
    with pytest.raises(StorageError):
        accounts.add_device(agent.home, "phone", out, AGENT_PASSPHRASE, NOW, world.rng)
    assert out.read_bytes() == b"keep me"


def test_import_device_with_the_wrong_passphrase(world: World, agent: Agent) -> None:
    _, bundle = accounts.add_device(agent.home, "phone", None, AGENT_PASSPHRASE, NOW, world.rng)
    second_home = world.make_home("phone")
    with pytest.raises(WrongPassphrase):
        accounts.import_device(second_home, bundle, "wrong", NOW, world.rng)
    assert snapshot(second_home.root) == {}


def test_revoke_device(world: World, agent: Agent) -> None:
    device, bundle = accounts.add_device(
        agent.home, "phone", None, AGENT_PASSPHRASE, NOW, world.rng
    )
    revoked = accounts.revoke_device(
        agent.home, device.device_id[:8], AGENT_PASSPHRASE, NOW + 10, "lost"
    )
    assert revoked.device_key == device.device_key
    listed = {d["id"]: d["revoked"] for d in accounts.list_devices(agent.home, NOW + 10)}
    this = accounts.current_device(agent.home).device_id
    assert listed == {this: False, device.device_id: True}
    # Verifying that device's chain now fails; the first device still verifies.
    device_path = agent.home.devices_dir / f"{device.device_id}.cose"
    with failure(F.REVOKED):
        accounts.verify_files(agent.home, agent.certificate_path, device_path, NOW + 10)
    account, checked = accounts.verify_files(
        agent.home, agent.certificate_path, agent.home.device_certificate, NOW + 10
    )
    assert checked is not None and checked.device_id == this
    assert account.email == "camille.dupont@interieur.gouv.fr"
    # The bundle predates the revocation, so it still installs; once the record
    # reaches that home, it sees its own device as revoked.
    phone = world.make_home("phone")
    accounts.import_device(phone, bundle, AGENT_PASSPHRASE, NOW + 20, world.rng)
    records = world.files / "records.cbor"
    assert accounts.export_revocations(agent.home, records) == 1
    assert accounts.import_revocations(phone, records) == (1, [])
    (mine,) = [d for d in accounts.list_devices(phone, NOW + 20) if d["current"]]
    assert mine["id"] == device.device_id
    assert mine["revoked"] is True
    with failure(F.REVOKED):
        accounts.verify_files(phone, agent.certificate_path, phone.device_certificate, NOW + 20)


def test_revoke_device_with_an_ambiguous_or_short_prefix(agent: Agent) -> None:
    for prefix in ("", "abc", "zzzzzzzz"):
        with pytest.raises(UsageError):
            accounts.revoke_device(agent.home, prefix, AGENT_PASSPHRASE, NOW)


def test_revoke_device_with_the_wrong_passphrase(agent: Agent) -> None:
    this = accounts.current_device(agent.home).device_id
    before = snapshot(agent.home.root)
    with pytest.raises(WrongPassphrase):
        accounts.revoke_device(agent.home, this, "wrong", NOW)
    assert snapshot(agent.home.root) == before


# --- account revocation ----------------------------------------------------------------


@pytest.mark.parametrize("by", ["email", "serial"])
def test_revoke_account_then_import_elsewhere(world: World, agent: Agent, by: str) -> None:
    info = accounts.whoami(agent.home, NOW)
    target = "Camille.Dupont@interieur.gouv.fr" if by == "email" else info["serial"]
    out = world.files / "revocation.cose"
    records = accounts.revoke_account(
        world.authority_home, target, out, AUTHORITY_PASSPHRASE, NOW + 10, "left"
    )
    # Revoking an address also revokes, by serial, what was issued for it,
    # in case the authority's clock was wrong when it issued.
    expected = ["email", "serial"] if by == "email" else ["serial"]
    assert [r.kind for r in records] == expected
    assert all(r.serial == bytes.fromhex(info["serial"]) for r in records if r.kind == "serial")
    assert out.exists()
    assert len(world.authority_home.revocation_records()) == len(expected)

    # Not yet known on the agent's home.
    accounts.verify_files(agent.home, agent.certificate_path, None, NOW + 20)
    assert accounts.import_revocations(agent.home, out) == (len(expected), [])
    assert accounts.import_revocations(agent.home, out) == (0, [])
    with failure(F.REVOKED):
        accounts.verify_files(agent.home, agent.certificate_path, None, NOW + 20)
    with failure(F.REVOKED):
        accounts.verify_files(
            agent.home, agent.certificate_path, agent.home.device_certificate, NOW + 20
        )
    assert accounts.whoami(agent.home, NOW + 20)["status"] == "revoked"


def test_email_revocation_spares_a_later_enrolment(world: World, agent: Agent) -> None:
    out = world.files / "revocation.cose"
    accounts.revoke_account(
        world.authority_home, "camille.dupont@interieur.gouv.fr", out, AUTHORITY_PASSPHRASE, NOW
    )
    _, request_path = world.init("again", "camille.dupont@interieur.gouv.fr")
    later = world.issue(request_path, world.files / "again.cert", now=NOW + 1)
    accounts.import_revocations(agent.home, out)
    with failure(F.REVOKED):
        accounts.verify_files(agent.home, agent.certificate_path, None, NOW + 2)
    account, _ = accounts.verify_files(agent.home, later, None, NOW + 2)
    assert account.issued_at == NOW + 1


def test_export_and_import_revocations(world: World, agent: Agent) -> None:
    accounts.revoke_account(
        world.authority_home, "a@x.gouv.fr", world.files / "r1", AUTHORITY_PASSPHRASE, NOW
    )
    accounts.revoke_account(
        world.authority_home, "b@x.gouv.fr", world.files / "r2", AUTHORITY_PASSPHRASE, NOW
    )
    exported = world.files / "all.cbor"
    assert accounts.export_revocations(world.authority_home, exported) == 2
    assert accounts.import_revocations(agent.home, exported) == (2, [])
    assert accounts.import_revocations(agent.home, exported) == (0, [])
    assert agent.home.revocation_records() == world.authority_home.revocation_records()


def _tampered(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def test_import_tampered_revocations(world: World, agent: Agent) -> None:
    first = world.files / "first.cose"
    accounts.revoke_account(world.authority_home, "a@x.gouv.fr", first, AUTHORITY_PASSPHRASE, NOW)
    accounts.import_revocations(agent.home, first)
    stored = agent.home.revocations_file.read_bytes()

    good = world.files / "good.cose"
    serial = accounts.whoami(agent.home, NOW)["serial"]
    accounts.revoke_account(world.authority_home, serial, good, AUTHORITY_PASSPHRASE, NOW)
    bad = world.files / "bad.cose"
    bad.write_bytes(_tampered(good.read_bytes()))
    with failure(F.BAD_SIGNATURE):
        accounts.import_revocations(agent.home, bad)
    assert agent.home.revocations_file.read_bytes() == stored

    for junk in (b"", b"garbage", codec.encode([1, 2]), codec.encode({"a": 1})):
        bad.write_bytes(junk)
        with failure(F.MALFORMED):
            accounts.import_revocations(agent.home, bad)
    assert agent.home.revocations_file.read_bytes() == stored

    # A list mixing a new, valid record with a tampered one keeps the good
    # one: a bad record must never keep a revocation from taking effect.
    mixed = world.files / "mixed.cbor"
    mixed.write_bytes(codec.encode([good.read_bytes(), _tampered(good.read_bytes())]))
    added, refused = accounts.import_revocations(agent.home, mixed)
    assert added == 1
    assert [e.reason for e in refused] == [F.BAD_SIGNATURE]  # type: ignore[attr-defined]
    with failure(F.REVOKED):
        accounts.verify_files(agent.home, agent.certificate_path, None, NOW)


def test_import_tampered_revocations_into_an_empty_set(world: World, agent: Agent) -> None:
    good = world.files / "good.cose"
    serial = accounts.whoami(agent.home, NOW)["serial"]
    accounts.revoke_account(world.authority_home, serial, good, AUTHORITY_PASSPHRASE, NOW)
    bad = world.files / "bad.cose"
    bad.write_bytes(_tampered(good.read_bytes()))
    with pytest.raises(VerificationError):
        accounts.import_revocations(agent.home, bad)
    assert not agent.home.revocations_file.exists()


def test_revocation_from_an_unknown_authority_is_refused(
    world: World, agent: Agent, make_home: MakeHome, rng: Rng
) -> None:
    stranger = make_home("stranger")
    accounts.create_authority(stranger, "Stranger", ["*.gouv.fr"], AUTHORITY_PASSPHRASE, NOW, rng)
    out = world.files / "stranger.cose"
    accounts.revoke_account(
        stranger, "camille.dupont@interieur.gouv.fr", out, AUTHORITY_PASSPHRASE, NOW
    )
    with failure(F.UNKNOWN_AUTHORITY):
        accounts.import_revocations(agent.home, out)
    assert not agent.home.revocations_file.exists()


# --- files altered on disk ---------------------------------------------------------------


def test_trust_file_altered_on_disk(agent: Agent) -> None:
    (path,) = sorted(agent.home.trust_dir.glob("*.cose"))
    data = path.read_bytes()
    index = data.index("Ministère".encode())
    path.write_bytes(data[:index] + b"N" + data[index + 1 :])
    with pytest.raises(StorageError) as info:
        agent.home.trust_store()
    assert str(path) in info.value.render()
    with pytest.raises(StorageError):
        accounts.whoami(agent.home, NOW)


def test_account_certificate_altered_on_disk(agent: Agent) -> None:
    path = agent.home.account_certificate
    path.write_bytes(_tampered(path.read_bytes()))
    with failure(F.BAD_SIGNATURE):
        accounts.whoami(agent.home, NOW)


def test_sealed_key_damaged_on_disk(world: World, agent: Agent) -> None:
    agent.home.master_key.write_bytes(b"not a sealed box")
    with pytest.raises(StorageError) as info:
        accounts.add_device(agent.home, "phone", None, AGENT_PASSPHRASE, NOW, world.rng)
    assert "damaged" in info.value.render()


def test_trust_files_never_roll_back_and_never_overlap(
    world: World, agent: Agent, make_home: MakeHome, rng: Rng
) -> None:
    from p2ptchap.core.authority import TrustConflict, create_trust_file  # noqa: PLC0415
    from p2ptchap.core.keys import AuthoritySecret  # noqa: PLC0415

    authority, secret = accounts.load_authority(world.authority_home, AUTHORITY_PASSPHRASE)
    # An older trust file of the same authority, with wider domains, is ignored.
    _, older = create_trust_file(
        secret, authority.name, ["*.gouv.fr", "justice.fr"], authority.created - 1
    )
    assert agent.home.add_trust(older).created == authority.created
    assert [a.domains for a in agent.home.trust_store()] == [authority.domains]
    # A newer one replaces it.
    _, newer = create_trust_file(secret, authority.name, ["*.gouv.fr"], authority.created + 1)
    assert agent.home.add_trust(newer).created == authority.created + 1
    # Another authority claiming an overlapping domain is refused.
    _, rival = create_trust_file(AuthoritySecret.generate(rng), "Rival", ["x.gouv.fr"], NOW)
    with pytest.raises(TrustConflict):
        agent.home.add_trust(rival)
    assert len(agent.home.trust_store()) == 1


def test_home_writable_by_others_is_refused(agent: Agent) -> None:
    from p2ptchap.core.errors import StorageError  # noqa: PLC0415

    agent.home.root.chmod(0o777)
    try:
        with pytest.raises(StorageError) as info:
            accounts.whoami(agent.home, NOW)
        assert "other users" in info.value.render()
    finally:
        agent.home.root.chmod(0o700)
    assert accounts.whoami(agent.home, NOW)["status"] == "valid"

"""Identity operations on a home folder: the authority's and the agent's.

This is the shell around :mod:`p2ptchap.core.identity`: it reads and writes
the home folder, and takes the time and the randomness as arguments (the
CLI passes the clock and ``os.urandom``; tests pass fixed values).  Every
function either completes or raises a :class:`P2PTchapError` having changed
nothing that was already stored.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

from p2ptchap.core import codec, identity, revocation, vault
from p2ptchap.core.addresses import display_email, normalise_email
from p2ptchap.core.authority import Authority, TrustStore, create_trust_file, parse_trust_file
from p2ptchap.core.codec import Limits, Tag
from p2ptchap.core.errors import (
    N_,
    DecodeError,
    NotInitialised,
    RemoteError,
    StorageError,
    UsageError,
    VerificationError,
    VerificationFailure,
)
from p2ptchap.core.identity import (
    AccountCertificate,
    DeviceCertificate,
    EnrollmentRequest,
    Kind,
)
from p2ptchap.core.keys import (
    AccountSecret,
    AuthoritySecret,
    DeviceKey,
    DeviceSecret,
    ExchangeKey,
    ExchangeSecret,
    Rng,
)
from p2ptchap.store.files import read_file, remove_file, write_atomic, write_new
from p2ptchap.store.home import Home

NO_AUTHORITY = N_("This home folder holds no authority; run 'p2ptchap authority init' first.")
NO_ACCOUNT = N_("This home folder has no account yet; run 'p2ptchap init' first.")
NO_CERTIFICATE = N_(
    "This account is not enrolled yet: have the authority issue a certificate, "
    "then run 'p2ptchap enroll CERT'."
)
NO_MASTER_KEY = N_(
    "This device does not hold the account master key; manage devices from the "
    "first device of the account."
)
_BUNDLE_LIMITS = Limits(max_bytes=8 << 20, max_items=1 << 16, max_depth=4)
_RECORDS_LIMITS = Limits(max_bytes=64 << 20, max_items=1 << 20, max_depth=3, tags=frozenset({18}))


def iso(timestamp: int) -> str:
    """A UTC timestamp as ISO 8601 text."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- authority ---------------------------------------------------------------


def create_authority(
    home: Home, name: str, domains: list[str], passphrase: str, now: int, rng: Rng
) -> Authority:
    """Create the authority of this home; refuse if there already is one."""
    if home.authority_key.exists():
        raise UsageError(
            "authority exists",
            user_message="An authority already exists in {home}; use another --home.",
            home=home.root,
        )
    secret = AuthoritySecret.generate(rng)
    authority, trust = create_trust_file(secret, name, domains, now)
    home.create()
    home.write_secret(home.authority_key, secret.secret_bytes(), passphrase, rng)
    home.write(home.authority_trust, trust)
    home.add_trust(trust)
    return authority


def load_authority(home: Home, passphrase: str) -> tuple[Authority, AuthoritySecret]:
    """The authority of this home and its secret key."""
    trust = home.read(home.authority_trust, NO_AUTHORITY)
    authority = parse_trust_file(trust)
    secret = AuthoritySecret(home.read_secret(home.authority_key, passphrase, NO_AUTHORITY))
    if secret.public_key() != authority.key:
        raise StorageError(
            "authority key and trust file disagree",
            user_message="The authority files in {home} do not belong together.",
            home=home.root,
        )
    return authority, secret


def export_trust(home: Home, out: Path) -> Authority:
    """Write the authority's public trust file to ``out``."""
    data = home.read(home.authority_trust, NO_AUTHORITY)
    authority = parse_trust_file(data)
    write_atomic(out, data, mode=0o644)
    return authority


def read_request(path: Path) -> EnrollmentRequest:
    """The verified enrolment request in ``path``."""
    return identity.parse_request(read_file(path))


def read_trust(path: Path) -> Authority:
    """The authority described by the trust file ``path`` (verified)."""
    return parse_trust_file(read_file(path))


def issue(
    home: Home,
    request: EnrollmentRequest,
    out: Path | None,
    *,
    external: bool,
    days: int,
    passphrase: str,
    now: int,
    rng: Rng,
) -> AccountCertificate:
    """Issue an account certificate for a verified request (see :func:`read_request`).

    Taking the request already read lets the caller show it, and have its
    fingerprint checked, before the authority's key signs anything.
    """
    authority, secret = load_authority(home, passphrase)
    kind = Kind.EXTERNAL if external else Kind.AGENT
    data = identity.issue_account_certificate(
        secret, authority, request, kind=kind, now=now, days=days, rng=rng
    )
    # Check our own output as any node will, before anyone relies on it.
    certificate = identity.verify_account_certificate(
        data, TrustStore([authority]), revocation.RevocationSet(), now
    )
    write_atomic(home.issued_dir / f"{certificate.serial.hex()}.cose", data)
    if out is not None:
        write_atomic(out, data, mode=0o644)
    return certificate


def revoke_account(
    home: Home, target: str, out: Path, passphrase: str, now: int, reason: str = ""
) -> list[revocation.Revocation]:
    """Revoke a certificate by serial, or every certificate of an address up to now.

    Revoking an address also revokes, by serial, every certificate this
    authority issued for it: the address record compares issue times, which
    an authority machine with a wrong clock could get wrong.  ``out`` holds
    one record, or an array of them.
    """
    authority, secret = load_authority(home, passphrase)
    if "@" in target:
        email = normalise_email(target)
        records = [revocation.revoke_email(secret, email, now, reason)]
        records += [
            revocation.revoke_serial(secret, issued.serial, now, reason)
            for issued in issued_certificates(home, authority)
            if issued.email == email
        ]
    else:
        records = [revocation.revoke_serial(secret, identity.validate_serial(target), now, reason)]
    trust = TrustStore([authority])
    parsed = [revocation.parse_revocation(data, trust) for data in records]
    _, refused = home.add_revocations(records, home.trust_store())
    if refused:
        raise refused[0]
    write_atomic(out, records[0] if len(records) == 1 else codec.encode(list(records)), 0o644)
    return parsed


def issued_certificates(home: Home, authority: Authority) -> list[AccountCertificate]:
    """Every certificate this authority issued (kept in ``authority/issued``)."""
    trust = TrustStore([authority])
    if not home.issued_dir.is_dir():
        return []
    return [
        identity.read_account_certificate(read_file(path), trust)
        for path in sorted(home.issued_dir.glob("*.cose"))
    ]


# --- revocation files --------------------------------------------------------


def read_revocation_file(path: Path) -> list[bytes]:
    """The records in a file: one COSE_Sign1 record, or an array of them."""
    data = read_file(path, 64 << 20)
    try:
        value = codec.decode(data, _RECORDS_LIMITS)
    except DecodeError as exc:
        raise VerificationError(VerificationFailure.MALFORMED, f"{path}: {exc}") from exc
    if isinstance(value, Tag):
        return [data]
    if isinstance(value, list) and all(isinstance(item, bytes) for item in value):
        return [item for item in value if isinstance(item, bytes)]
    raise VerificationError(VerificationFailure.MALFORMED, f"{path}: not revocation records")


def import_revocations(home: Home, path: Path) -> tuple[int, list[RemoteError]]:
    """Merge the records of ``path`` that verify; return how many were new and the refusals.

    Raises the first refusal if no record at all could be used.
    """
    records = read_revocation_file(path)
    added, refused = home.add_revocations(records, home.trust_store())
    if refused and len(refused) == len(records):
        raise refused[0]
    return added, refused


def export_revocations(home: Home, out: Path) -> int:
    """Write every stored record to ``out`` (an array); return the count."""
    records = home.revocation_records()
    write_atomic(out, codec.encode(list(records)), mode=0o644)
    return len(records)


# --- account and devices -----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSecrets:
    """The secrets a device holds."""

    signing: DeviceSecret
    exchange: ExchangeSecret

    def encode(self) -> bytes:
        return codec.encode(
            {"sign": self.signing.secret_bytes(), "exchange": self.exchange.secret_bytes()}
        )

    @classmethod
    def decode(cls, data: bytes) -> DeviceSecrets:
        body = codec.expect_map(codec.decode(data), "device secrets")
        codec.only_keys(body, ("sign", "exchange"), "device secrets")  # exactly what encode writes
        return cls(
            DeviceSecret(codec.get_bytes(body, "sign", "device secrets", size=32)),
            ExchangeSecret(codec.get_bytes(body, "exchange", "device secrets", size=32)),
        )

    @classmethod
    def generate(cls, rng: Rng) -> DeviceSecrets:
        return cls(DeviceSecret.generate(rng), ExchangeSecret.generate(rng))


def _new_device(
    master: AccountSecret, name: str, now: int, rng: Rng
) -> tuple[DeviceSecrets, DeviceCertificate]:
    secrets = DeviceSecrets.generate(rng)
    data = identity.issue_device_certificate(
        master, secrets.signing.public_key(), secrets.exchange.public_key(), name, now
    )
    return secrets, identity.parse_device_certificate(data)


def init_account(
    home: Home,
    email: str,
    name: str,
    trust_files: list[Path],
    request_out: Path,
    *,
    device_name: str,
    passphrase: str,
    now: int,
    rng: Rng,
) -> tuple[EnrollmentRequest, list[Authority]]:
    """Create the account master key, a first device, and an enrolment request."""
    if home.master_key.exists() or home.device_key.exists():
        raise UsageError(
            "account exists",
            user_message="An account already exists in {home}; use another --home.",
            home=home.root,
        )
    if not trust_files:
        raise UsageError(
            "no trust file", user_message="Give at least one authority trust file with --trust."
        )
    authorities = [parse_trust_file(read_file(path)) for path in trust_files]
    master = AccountSecret.generate(rng)
    request_data = identity.make_request(master, email, name, now)
    request = identity.parse_request(request_data)
    secrets, device = _new_device(master, device_name, now, rng)
    home.create()
    for path in trust_files:
        home.add_trust(read_file(path))
    home.write_secret(home.master_key, master.secret_bytes(), passphrase, rng)
    home.write_secret(home.device_key, secrets.encode(), passphrase, rng)
    home.write(home.device_certificate, device.raw)
    home.write(home.devices_dir / f"{device.device_id}.cose", device.raw)
    home.write(home.request, request_data)
    write_atomic(request_out, request_data, mode=0o644)
    return request, authorities


def enroll(home: Home, certificate_path: Path, now: int) -> AccountCertificate:
    """Import the account certificate (a file) issued for our pending request."""
    return enroll_certificate(home, read_file(certificate_path), now)


def pending_request(home: Home) -> EnrollmentRequest:
    """The enrolment request made by ``init`` and not yet answered."""
    if home.account_certificate.exists():
        raise UsageError(
            "already enrolled",
            user_message="This account is already enrolled; see 'p2ptchap whoami'.",
        )
    return identity.parse_request(home.read(home.request, NO_ACCOUNT))


def enroll_certificate(home: Home, data: bytes, now: int) -> AccountCertificate:
    """Import the account certificate issued for our pending request."""
    if home.account_certificate.exists():
        raise UsageError(
            "already enrolled",
            user_message="This account is already enrolled; see 'p2ptchap whoami'.",
        )
    request = identity.parse_request(home.read(home.request, NO_ACCOUNT))
    trust = home.trust_store()
    certificate = identity.verify_account_certificate(data, trust, home.revocations(trust), now)
    if certificate.account_key != request.account_key or certificate.email != request.email:
        raise VerificationError(VerificationFailure.MISMATCH, "certificate is for another request")
    home.write(home.account_certificate, data)
    remove_file(home.request)
    return certificate


def load_account(
    home: Home, now: int, *, check: bool = True
) -> tuple[AccountCertificate, TrustStore, revocation.RevocationSet]:
    """Our verified account certificate.

    With ``check=False`` the certificate may be expired or revoked (for status
    displays); its signature and contents are still verified.
    """
    trust = home.trust_store()
    revocations = home.revocations(trust)
    data = home.read(home.account_certificate, NO_CERTIFICATE)
    if check:
        return (
            identity.verify_account_certificate(data, trust, revocations, now),
            trust,
            revocations,
        )
    return identity.read_account_certificate(data, trust), trust, revocations


def _account_devices(home: Home, account: AccountCertificate) -> list[DeviceCertificate]:
    devices = []
    for path in sorted(home.devices_dir.glob("*.cose")) if home.devices_dir.is_dir() else []:
        device = identity.parse_device_certificate(read_file(path))
        if device.account_key == account.account_key:
            devices.append(device)
    return sorted(devices, key=lambda d: (d.created, d.device_id))


def current_device(home: Home) -> DeviceCertificate:
    return identity.parse_device_certificate(home.read(home.device_certificate, NO_ACCOUNT))


def certify_device(
    home: Home, device: DeviceKey, exchange: ExchangeKey, name: str, passphrase: str, now: int
) -> tuple[AccountCertificate, DeviceCertificate]:
    """On the first device: certify another device's keys (``device link``)."""
    account, _, _ = load_account(home, now)
    master = _master_key(home, account, passphrase)
    data = identity.issue_device_certificate(master, device, exchange, name, now)
    certificate = identity.parse_device_certificate(data)
    home.write(home.devices_dir / f"{certificate.device_id}.cose", data)
    return account, certificate


def device_bundle_parts(
    home: Home, account: AccountCertificate
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Trust files, revocation records and device certificates a new device needs."""
    trust = [read_file(p) for p in sorted(home.trust_dir.glob("*.cose"))]
    return trust, home.revocation_records(), [d.raw for d in _account_devices(home, account)]


def _master_key(home: Home, account: AccountCertificate, passphrase: str) -> AccountSecret:
    """The account master key of this home, checked against the certificate."""
    master = AccountSecret(home.read_secret(home.master_key, passphrase, NO_MASTER_KEY))
    if master.public_key() != account.account_key:
        raise StorageError("master key mismatch", user_message=NO_MASTER_KEY)
    return master


def add_device(
    home: Home, name: str, out: Path | None, passphrase: str, now: int, rng: Rng
) -> tuple[DeviceCertificate, Path]:
    """Certify a new device and write its installation bundle (sealed with the passphrase)."""
    account, _, _ = load_account(home, now)
    master = _master_key(home, account, passphrase)
    secrets, device = _new_device(master, name, now, rng)
    bundle = codec.encode(
        {
            "v": 1,
            "account": account.raw,
            "device": device.raw,
            "secrets": secrets.encode(),
            "trust": [read_file(p) for p in sorted(home.trust_dir.glob("*.cose"))],
            "revocations": list[codec.Value](home.revocation_records()),
            "devices": [d.raw for d in _account_devices(home, account)],
        }
    )
    target = out or home.exports_dir / f"device-{device.device_id}.p2ptchap-device"
    write_new(target, vault.seal(bundle, passphrase, rng, home.kdf))
    home.write(home.devices_dir / f"{device.device_id}.cose", device.raw)
    return device, target


def require_no_device(home: Home) -> None:
    """Refuse to make a device of a home that already is one."""
    if home.device_key.exists():
        raise UsageError(
            "device exists",
            user_message="{home} already holds a device; use an empty --home.",
            home=home.root,
        )


def import_device(
    home: Home, bundle_path: Path, passphrase: str, now: int, rng: Rng
) -> DeviceCertificate:
    """Install on this (new) home a device made by ``device add`` on the first device."""
    require_no_device(home)
    try:
        bundle = codec.expect_map(
            codec.decode(
                vault.open_sealed(read_file(bundle_path, 8 << 20), passphrase), _BUNDLE_LIMITS
            ),
            "device bundle",
        )
        account_data = codec.get_bytes(bundle, "account", "device bundle")
        device_data = codec.get_bytes(bundle, "device", "device bundle")
        secrets = DeviceSecrets.decode(codec.get_bytes(bundle, "secrets", "device bundle"))
        trust_files = codec.expect_list(codec.field(bundle, "trust", "device bundle"), "trust")
        records = codec.expect_list(
            codec.field(bundle, "revocations", "device bundle"), "revocations"
        )
        siblings = codec.expect_list(codec.field(bundle, "devices", "device bundle"), "devices")
    except DecodeError as exc:
        raise VerificationError(VerificationFailure.MALFORMED, f"device bundle: {exc}") from exc
    return install_device(
        home,
        account_data,
        device_data,
        secrets,
        [t for t in trust_files if isinstance(t, bytes)],
        [r for r in records if isinstance(r, bytes)],
        [d for d in siblings if isinstance(d, bytes)],
        passphrase=passphrase,
        now=now,
        rng=rng,
    )


def install_device(
    home: Home,
    account_data: bytes,
    device_data: bytes,
    secrets: DeviceSecrets,
    trust_files: list[bytes],
    records: list[bytes],
    siblings: list[bytes],
    *,
    passphrase: str,
    now: int,
    rng: Rng,
) -> DeviceCertificate:
    """Make this empty home a device of an account, after checking everything.

    The certificate chain must verify against the given trust files, the
    certificate must be for ``secrets``' keys, and every sibling device must
    belong to the same account; nothing is written before all of that holds.
    """
    require_no_device(home)
    trust = TrustStore(parse_trust_file(t) for t in trust_files)
    revocations = revocation.RevocationSet()
    revocations.add_all(records, trust)
    verified = identity.verify_chain(account_data, device_data, trust, revocations, now)
    if verified.device.device_key != secrets.signing.public_key() or (
        verified.device.exchange_key != secrets.exchange.public_key()
    ):
        raise VerificationError(VerificationFailure.MISMATCH, "bundle secrets do not match")
    # The account's other devices, so this one knows its siblings; each is
    # checked against the account like any device certificate, before
    # anything is written.
    others = [identity.parse_device_certificate(sibling) for sibling in siblings]
    if any(other.account_key != verified.account.account_key for other in others):
        raise VerificationError(VerificationFailure.MISMATCH, "bundle device of another account")
    home.create()
    for data in trust_files:
        home.add_trust(data)
    # Records that do not verify here are left out, as on any import.
    home.add_revocations(records, trust)
    for other in others:
        home.write(home.devices_dir / f"{other.device_id}.cose", other.raw)
    home.write(home.devices_dir / f"{verified.device.device_id}.cose", device_data)
    home.write(home.account_certificate, account_data)
    home.write(home.device_certificate, device_data)
    # Last, so that an interrupted import can simply be run again.
    home.write_secret(home.device_key, secrets.encode(), passphrase, rng)
    return verified.device


def find_device(home: Home, account: AccountCertificate, prefix: str) -> DeviceCertificate:
    """The account's device whose id starts with ``prefix`` (at least 4 characters)."""
    prefix = prefix.strip().lower()
    matches = [d for d in _account_devices(home, account) if d.device_id.startswith(prefix)]
    if len(prefix) < 4 or len(matches) != 1:
        raise UsageError(
            f"device {prefix!r}: {len(matches)} matches",
            user_message=(
                "No single device matches '{prefix}'; "
                "give more characters of an id listed by 'p2ptchap device list'."
            ),
            prefix=prefix,
        )
    return matches[0]


def revoke_device(
    home: Home, device_id: str, passphrase: str, now: int, reason: str = ""
) -> DeviceCertificate:
    """Revoke one of the account's devices with the master key."""
    account, trust, _ = load_account(home, now, check=False)
    device = find_device(home, account, device_id)
    master = _master_key(home, account, passphrase)
    record = revocation.revoke_device(master, account.raw, device.device_key, now, reason)
    _, refused = home.add_revocations([record], trust)
    if refused:
        raise refused[0]
    return device


def list_devices(home: Home, now: int) -> list[dict[str, Any]]:
    """The account's devices as JSON-ready dictionaries."""
    account, _, revocations = load_account(home, now, check=False)
    this = current_device(home)
    return [
        {
            "id": device.device_id,
            "name": device.name,
            "created": iso(device.created),
            "fingerprint": device.device_key.fingerprint(),
            "current": device.device_key == this.device_key,
            "revoked": revocations.device_revoked(account.account_key, device.device_key),
        }
        for device in _account_devices(home, account)
    ]


def account_status(
    certificate: AccountCertificate,
    trust: TrustStore,
    revocations: revocation.RevocationSet,
    now: int,
) -> str:
    """``valid``, or the :class:`VerificationFailure` value that applies now."""
    try:
        identity.verify_account_certificate(certificate.raw, trust, revocations, now)
    except VerificationError as exc:
        return exc.reason.value
    return "valid"


def whoami(home: Home, now: int) -> dict[str, Any]:
    """Who this home is, as a JSON-ready dictionary."""
    if not home.device_certificate.exists():
        raise NotInitialised(str(home.root), user_message=NO_ACCOUNT)
    if not home.account_certificate.exists():
        request = identity.parse_request(home.read(home.request, NO_ACCOUNT))
        return {
            "status": "pending-enrolment",
            "email": request.email,
            "name": request.display_name,
            "account_fingerprint": request.account_key.fingerprint(),
            "this_device": current_device(home).device_id,
        }
    account, trust, revocations = load_account(home, now, check=False)
    return {
        "status": account_status(account, trust, revocations, now),
        "email": account.email,
        "display_email": display_email(account.email),
        "name": account.display_name,
        "kind": account.kind.value,
        "authority": {"name": account.issuer.name, "fingerprint": account.issuer.fingerprint()},
        "account_fingerprint": account.account_key.fingerprint(),
        "serial": account.serial.hex(),
        "valid_from": iso(account.not_before),
        "valid_until": iso(account.expires),
        "this_device": current_device(home).device_id,
        "devices": list_devices(home, now),
    }


def verify_files(
    home: Home, certificate_path: Path, device_path: Path | None, now: int
) -> tuple[AccountCertificate, DeviceCertificate | None]:
    """Verify a certificate (and optionally a device certificate) at ``now``."""
    trust = home.trust_store()
    revocations = home.revocations(trust)
    account_data = read_file(certificate_path)
    if device_path is None:
        return identity.verify_account_certificate(account_data, trust, revocations, now), None
    chain = identity.verify_chain(account_data, read_file(device_path), trust, revocations, now)
    return chain.account, chain.device

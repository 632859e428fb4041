"""Signed revocation records and the grow-only set they form.

Three kinds of record, each a COSE_Sign1 with content type
``application/p2ptchap-revocation+cbor``:

* ``serial`` — an authority revokes one account certificate by its serial;
* ``email`` — an authority revokes every certificate it issued for an
  address up to a moment (an agent who left; a later re-enrolment, issued
  after that moment, is valid again);
* ``device`` — an account revokes one of its devices (lost laptop).  The
  record carries the account's master public key and its account
  certificate, so anyone can check it without having seen the account
  before, and only accounts certified by a trusted authority can add one.

Records are never removed: the set only grows, and merging two sets is their
union, so the order in which records spread does not matter.  Records whose
signer is unknown are refused rather than kept, so the set cannot be filled
with junk by strangers.  (An enrolled account could still revoke made-up
device keys of its own; bounding that is the gossip layer's job, which
counts records per signer.)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from typing import Final, Literal

from p2ptchap.core import codec, cose
from p2ptchap.core.account import SERIAL_SIZE, read_account_certificate
from p2ptchap.core.addresses import InvalidAddress, normalise_email
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.errors import DecodeError, RemoteError, VerificationError, VerificationFailure
from p2ptchap.core.keys import KEY_SIZE, AccountKey, AccountSecret, AuthoritySecret, DeviceKey

REVOCATION_CONTENT_TYPE: Final = "application/p2ptchap-revocation+cbor"
MAX_REASON_LENGTH: Final = 200

#: An account may revoke at most this many devices.  Far more than any
#: person owns, and it bounds what one enrolled account can add to every
#: node's set by revoking made-up devices.
MAX_DEVICE_REVOCATIONS: Final = 256

RecordKind = Literal["serial", "email", "device"]


class RevocationLimit(RemoteError):
    """An account has revoked more devices than any person could own."""

    default_message = "A revocation was refused: its account has revoked too many devices."


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    """One verified revocation record."""

    kind: RecordKind
    signer_id: bytes  # authority key id, or account key id for "device"
    at: int
    reason: str
    serial: bytes = b""
    email: str = ""
    account: AccountKey | None = None
    device: DeviceKey | None = None
    raw: bytes = b""

    @property
    def record_id(self) -> bytes:
        """BLAKE2b-256 of the record's bytes: its identity in the set."""
        return hashlib.blake2b(self.raw, digest_size=32).digest()


def _body(kind: RecordKind, at: int, reason: str, **fields: codec.Value) -> bytes:
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[:MAX_REASON_LENGTH]
    body: dict[codec.Key, codec.Value] = {"kind": kind, "at": at, "reason": reason}
    body.update(fields)
    return codec.encode(body)


def revoke_serial(secret: AuthoritySecret, serial: bytes, at: int, reason: str = "") -> bytes:
    """An authority's record revoking the certificate with ``serial``."""
    body = _body("serial", at, reason, serial=serial)
    return cose.sign(body, REVOCATION_CONTENT_TYPE, secret.public_key().key_id, secret)


def revoke_email(secret: AuthoritySecret, email: str, at: int, reason: str = "") -> bytes:
    """An authority's record revoking every certificate for ``email`` issued up to ``at``."""
    body = _body("email", at, reason, email=normalise_email(email))
    return cose.sign(body, REVOCATION_CONTENT_TYPE, secret.public_key().key_id, secret)


def revoke_device(
    secret: AccountSecret, certificate: bytes, device: DeviceKey, at: int, reason: str = ""
) -> bytes:
    """An account's record revoking one of its devices.

    ``certificate`` is the account certificate of ``secret``'s key; it travels
    in the record so that any node can check the account is certified.
    """
    account = secret.public_key()
    body = _body(
        "device", at, reason, account=bytes(account), device=bytes(device), certificate=certificate
    )
    return cose.sign(body, REVOCATION_CONTENT_TYPE, account.key_id, secret)


def parse_revocation(data: bytes, trust: TrustStore) -> Revocation:
    """Verify a record; raise :class:`VerificationError`.

    Authority records must come from a trusted authority; device records must
    be signed by the account key they name.
    """
    try:
        message = cose.parse(data, REVOCATION_CONTENT_TYPE)
        body = codec.expect_map(codec.decode(message.payload, cose.SIGN1_LIMITS), "revocation")
        kind = codec.get_text(body, "kind", "revocation")
        at = codec.get_time(body, "at", "revocation")
        reason = codec.get_text(body, "reason", "revocation", MAX_REASON_LENGTH)
        common = ("kind", "at", "reason")
        if kind == "serial":
            codec.only_keys(body, (*common, "serial"), "revocation")
            serial = codec.get_bytes(body, "serial", "revocation", size=SERIAL_SIZE)
            record = Revocation("serial", message.kid, at, reason, serial=serial, raw=data)
        elif kind == "email":
            codec.only_keys(body, (*common, "email"), "revocation")
            email = codec.get_text(body, "email", "revocation")
            if normalise_email(email) != email:
                raise DecodeError("revocation: address is not normalised")
            record = Revocation("email", message.kid, at, reason, email=email, raw=data)
        elif kind == "device":
            codec.only_keys(body, (*common, "account", "device", "certificate"), "revocation")
            account = AccountKey(codec.get_bytes(body, "account", "revocation", size=KEY_SIZE))
            device = DeviceKey(codec.get_bytes(body, "device", "revocation", size=KEY_SIZE))
            certificate = codec.get_bytes(body, "certificate", "revocation")
            record = Revocation(
                "device", message.kid, at, reason, account=account, device=device, raw=data
            )
        else:
            raise DecodeError(f"revocation: unknown kind {kind!r}")
    except (DecodeError, InvalidAddress) as exc:
        raise VerificationError(VerificationFailure.MALFORMED, f"revocation: {exc}") from exc
    if record.account is not None:
        if message.kid != record.account.key_id:
            raise VerificationError(VerificationFailure.MISMATCH, "revocation: kid mismatch")
        message.verify(record.account)
        # The account must be certified by an authority we trust — at any
        # time: an account whose certificate has expired may still revoke
        # its devices, and that must stay possible.
        if read_account_certificate(certificate, trust).account_key != record.account:
            raise VerificationError(VerificationFailure.MISMATCH, "revocation: certificate")
    else:
        message.verify(trust.get(message.kid).key)
    return record


class RevocationSet:
    """A grow-only set of verified revocation records, indexed for look-ups."""

    def __init__(self) -> None:
        self._records: dict[bytes, Revocation] = {}
        self._serials: set[tuple[bytes, bytes]] = set()
        self._emails: dict[tuple[bytes, str], int] = {}
        self._devices: set[tuple[AccountKey, DeviceKey]] = set()
        self._per_account: dict[AccountKey, int] = {}

    def add(self, data: bytes, trust: TrustStore) -> bool:
        """Verify and add a record; return whether it was new.

        Raises :class:`VerificationError` and leaves the set unchanged if the
        record does not verify.
        """
        record = parse_revocation(data, trust)
        if record.record_id in self._records:
            return False
        if record.account is not None:
            count = self._per_account.get(record.account, 0)
            if count >= MAX_DEVICE_REVOCATIONS:
                raise RevocationLimit(
                    f"account {record.account.short_id()} has {count} device revocations"
                )
            self._per_account[record.account] = count + 1
        self._records[record.record_id] = record
        if record.kind == "serial":
            self._serials.add((record.signer_id, record.serial))
        elif record.kind == "email":
            key = (record.signer_id, record.email)
            self._emails[key] = max(record.at, self._emails.get(key, record.at))
        elif record.account is not None and record.device is not None:
            self._devices.add((record.account, record.device))
        return True

    def add_all(self, records: Iterable[bytes], trust: TrustStore) -> list[RemoteError]:
        """Add every record that verifies; return the errors of those that did not."""
        errors: list[RemoteError] = []
        for data in records:
            try:
                self.add(data, trust)
            except RemoteError as exc:
                errors.append(exc)
        return errors

    def account_revoked(self, issuer_id: bytes, serial: bytes, email: str, issued_at: int) -> bool:
        """Whether the account certificate so described is revoked."""
        if (issuer_id, serial) in self._serials:
            return True
        revoked_until = self._emails.get((issuer_id, email))
        return revoked_until is not None and issued_at <= revoked_until

    def device_revoked(self, account: AccountKey, device: DeviceKey) -> bool:
        """Whether the account has revoked this device."""
        return (account, device) in self._devices

    def __iter__(self) -> Iterator[Revocation]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

"""The directories on disk: people (account and device certificates) and public rooms.

Every certificate is verified before it is stored (:meth:`DirectoryStore.
add_account`, :meth:`~DirectoryStore.add_device`) and looked up through the
revocations current at each call, so a revocation that arrives later takes
effect at once.  :meth:`DirectoryStore.sender` and :meth:`~DirectoryStore.
people` answer "valid now": the account's stored certificate not revoked,
and the device certified by it and not revoked.  Room resolution asks
:meth:`~DirectoryStore.author` and :meth:`~DirectoryStore.known_person`
instead, which also answer for a revoked certificate held, marked
``revoked``: the room rules keep counting what others built on before the
revocation (``docs/protocol.md`` §10).  *Expiry* does not undo events
already written either — a certificate is checked for expiry when it is
stored and when its device connects, not again for every past message.

Public-room summaries are stored when signed by a valid agent's device; the
newest per room wins, and a summary saying the room is no longer public
keeps older ones from bringing it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from p2ptchap.core import identity
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.directory import (
    Entry,
    InvalidSummary,
    PeopleDirectory,
    RoomSummary,
    parse_summary,
)
from p2ptchap.core.errors import VerificationError, VerificationFailure
from p2ptchap.core.identity import AccountCertificate, DeviceCertificate, Kind, VerifiedDevice
from p2ptchap.core.keys import AccountKey, DeviceKey
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.core.room import Person
from p2ptchap.store.db import Database

#: How far ahead of our clock a summary may be dated (seconds).
MAX_SUMMARY_SKEW = 600

_UPSERT_PERSON = (
    "INSERT INTO people (account, email, name, kind, expires, certificate)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
    " email = excluded.email, name = excluded.name, kind = excluded.kind,"
    " expires = excluded.expires, certificate = excluded.certificate"
)


def _person_row(certificate: AccountCertificate) -> tuple[object, ...]:
    return (
        bytes(certificate.account_key),
        certificate.email,
        certificate.display_name,
        certificate.kind.value,
        certificate.expires,
        certificate.raw,
    )


class DirectoryStore:
    """People and public rooms, in a :class:`Database`, with an in-memory index."""

    def __init__(
        self,
        db: Database,
        trust: TrustStore,
        revocations: Callable[[], RevocationSet],
        clock: Callable[[], int],
    ) -> None:
        self.db = db
        self.trust = trust
        self.revocations = revocations
        self.clock = clock
        self._people = PeopleDirectory()
        self._accounts: dict[AccountKey, AccountCertificate] = {}
        self._devices: dict[DeviceKey, DeviceCertificate] = {}
        #: The same certificates by account: a room's recipients are looked up
        #: per member, and scanning every device each time made a 1 000-device
        #: key rotation quadratic.
        self._by_account: dict[AccountKey, list[DeviceCertificate]] = {}
        self._basis_key: tuple[int, ...] = ()
        self._basis = b""
        for (raw,) in db.query("SELECT certificate FROM people"):
            try:  # trust may have changed since: keep only what still reads
                self._remember(identity.read_account_certificate(_bytes(raw), trust))
            except VerificationError:
                continue
        for (raw,) in db.query("SELECT certificate FROM devices"):
            device = identity.parse_device_certificate(_bytes(raw))
            self._keep_device(device)
        self._stored = self._signature()

    def _signature(self) -> tuple[object, ...]:
        """Cheap, and changing when another connection stores a certificate."""
        rows = self.db.query(
            "SELECT (SELECT count(*) FROM people), (SELECT total(expires) FROM people),"
            " (SELECT count(*) FROM devices)"
        )
        return tuple(rows[0]) if rows else ()

    def refresh(self) -> int:
        """Take in the certificates another connection stored since; how many.

        A long-lived reader (the node's operations worker, the terminal app)
        calls it before acting, so that a colleague the node met meanwhile
        can be found and is given the room keys.  It costs three counts when
        nothing changed; otherwise only the new or renewed certificates are
        read again.
        """
        signature = self._signature()
        if signature == self._stored:
            return 0
        self._stored = signature
        added = 0
        for account, raw in self.db.query("SELECT account, certificate FROM people"):
            key = AccountKey(_bytes(account))
            known = self._accounts.get(key)
            if known is not None and known.raw == raw:
                continue
            try:
                self._remember(identity.read_account_certificate(_bytes(raw), self.trust))
            except VerificationError:
                continue
            added += self._accounts.get(key) is not known
        for device, raw in self.db.query("SELECT device, certificate FROM devices"):
            if DeviceKey(_bytes(device)) in self._devices:
                continue
            self._keep_device(identity.parse_device_certificate(_bytes(raw)))
            added += 1
        return added

    # --- people ----------------------------------------------------------------

    def _remember(self, certificate: AccountCertificate) -> None:
        known = self._accounts.get(certificate.account_key)
        if known is None or known.issued_at <= certificate.issued_at:
            self._accounts[certificate.account_key] = certificate
            self._people.add(certificate)

    def add_account(self, data: bytes) -> AccountCertificate:
        """Verify an account certificate and keep it; raise :class:`VerificationError`.

        A certificate for an address already bound to another account key is
        kept too (an agent re-enrolled after losing every device): both keys
        are searchable, the newer first.

        A *revoked* certificate that verifies otherwise is kept as well: the
        look-ups below leave it out, but the room rules still need it to
        count the events its devices made before the revocation (a node
        that learns the revocation first would otherwise see them as from
        an unknown sender, and a room they built would collapse there).
        """
        certificate = identity.verify_account_certificate(
            data, self.trust, RevocationSet(), self.clock()
        )
        known = self._accounts.get(certificate.account_key)
        if known is not None and known.issued_at >= certificate.issued_at:
            return known
        with self.db.transaction() as cursor:
            cursor.execute(_UPSERT_PERSON, _person_row(certificate))
        self._remember(certificate)
        return certificate

    def add_device(self, data: bytes) -> DeviceCertificate:
        """Verify a device certificate against its (known) account and keep it."""
        device = identity.parse_device_certificate(data)
        account = self._accounts.get(device.account_key)
        if account is None:
            raise VerificationError(VerificationFailure.MISMATCH, "device of an unknown account")
        # Revoked or not (see add_account): the look-ups apply revocations.
        identity.verify_device_certificate(data, account, RevocationSet())
        if device.device_key not in self._devices:
            with self.db.transaction() as cursor:
                cursor.execute(
                    "INSERT OR IGNORE INTO devices (device, account, certificate) VALUES (?, ?, ?)",
                    (bytes(device.device_key), bytes(device.account_key), data),
                )
            self._keep_device(device)
        return device

    def remember(self, verified: VerifiedDevice) -> bool:
        """Keep a device whose whole chain was just verified (a peer's, at handshake).

        Returns whether anything was new; known certificates cost nothing.
        """
        account, device = verified.account, verified.device
        known = self._accounts.get(account.account_key)
        new_account = known is None or known.issued_at < account.issued_at
        new_device = device.device_key not in self._devices
        if not (new_account or new_device):
            return False
        with self.db.transaction() as cursor:
            if new_account:
                cursor.execute(_UPSERT_PERSON, _person_row(account))
            if new_device:
                cursor.execute(
                    "INSERT OR IGNORE INTO devices (device, account, certificate) VALUES (?, ?, ?)",
                    (bytes(device.device_key), bytes(device.account_key), device.raw),
                )
        if new_account:
            self._remember(account)
        self._keep_device(device)
        return True

    def account(self, account: AccountKey) -> AccountCertificate | None:
        """The account's certificate if known and not revoked."""
        certificate = self._accounts.get(account)
        if certificate is None or identity.is_revoked(certificate, self.revocations()):
            return None
        return certificate

    def account_ever(self, account: AccountKey) -> AccountCertificate | None:
        """The account's certificate if held, revoked or not: names in a room's history."""
        return self._accounts.get(account)

    def people(self, account: AccountKey) -> Person | None:
        """The room model's ``people`` look-up."""
        certificate = self.account(account)
        return None if certificate is None else Person(certificate.kind, certificate.email)

    def sender(self, account: AccountKey, device: DeviceKey) -> Person | None:
        """The room model's ``directory`` look-up: a valid device of a valid account."""
        known = self._devices.get(device)
        if known is None or known.account_key != account:
            return None
        if self.revocations().device_revoked(account, device):
            return None
        return self.people(account)

    def known_person(self, account: AccountKey) -> Person | None:
        """The room rules' ``people`` look-up: any account whose certificate is held.

        Marked ``revoked`` if it was revoked since: an invitation made before
        the revocation still counts.  Whether this node may invite it now is
        :meth:`people`'s (valid now) question, not this one.
        """
        certificate = self._accounts.get(account)
        if certificate is None:
            return None
        revoked = identity.is_revoked(certificate, self.revocations())
        return Person(certificate.kind, certificate.email, revoked=revoked)

    def author(self, account: AccountKey, device: DeviceKey) -> Person | None:
        """The room rules' ``directory`` look-up: a device of that account, ever certified.

        ``None`` for a device unknown here or certified by another account;
        marked ``revoked`` if the device or the account was revoked since
        (its events count only where valid devices built on them).
        """
        known = self._devices.get(device)
        if known is None or known.account_key != account:
            return None
        person = self.known_person(account)
        if person is None or person.revoked:
            return person
        if self.revocations().device_revoked(account, device):
            return Person(person.kind, person.email, revoked=True)
        return person

    def search(self, query: str, limit: int = 50) -> list[Entry]:
        """People matching ``query`` (see :mod:`p2ptchap.core.directory`); revoked left out."""
        return [e for e in self._people.search(query, limit) if self.account(e.account)]

    def by_email(self, email: str) -> list[AccountCertificate]:
        """Valid accounts bound to a normalised address, newest first."""
        found = [c for c in self._accounts.values() if c.email == email]
        return sorted(
            (c for c in found if self.account(c.account_key)),
            key=lambda c: -c.issued_at,
        )

    def __len__(self) -> int:
        return len(self._accounts)

    def certificates(self) -> tuple[list[AccountCertificate], list[DeviceCertificate]]:
        """Every account and device certificate held (revoked ones too: the
        revocation travels with them, and a node must not fetch them again)."""
        return list(self._accounts.values()), list(self._devices.values())

    def devices_of(self, account: AccountKey) -> list[DeviceCertificate]:
        """The account's devices that are not revoked (none if the account is)."""
        if self.account(account) is None:
            return []
        revocations = self.revocations()
        return [
            d
            for d in self._by_account.get(account, ())
            if not revocations.device_revoked(account, d.device_key)
        ]

    def _keep_device(self, device: DeviceCertificate) -> None:
        old = self._devices.get(device.device_key)
        if old is not None:
            self._by_account[old.account_key].remove(old)
        self._by_account.setdefault(device.account_key, []).append(device)
        self._devices[device.device_key] = device

    def device_certificate(self, device: bytes) -> DeviceCertificate | None:
        """The certificate of a device key, if held (revoked or not)."""
        return self._devices.get(DeviceKey(device))

    def count_devices(self, account: AccountKey) -> int:
        """How many device certificates of ``account`` are held, revoked or not."""
        return len(self._by_account.get(account, ()))

    def basis(self) -> bytes:
        """A digest of what room resolution reads here: certificates and revocations.

        It changes when a certificate or a revocation arrives, so stored room
        states computed before are resolved again (``RoomStore``).
        """
        revocations = self.revocations()
        key = (len(self._accounts), len(self._devices), id(revocations), len(revocations))
        if key != self._basis_key:
            digest = hashlib.blake2b(digest_size=16, person=b"p2ptchap-basis")
            for account in sorted(self._accounts.values(), key=lambda c: bytes(c.account_key)):
                digest.update(bytes(account.account_key) + account.serial)
            for device in sorted(bytes(d) for d in self._devices):
                digest.update(device)
            for record in sorted(r.record_id for r in revocations):
                digest.update(record)
            self._basis_key, self._basis = key, digest.digest()
        return self._basis

    # --- public rooms -------------------------------------------------------------------

    def add_summary(self, raw: bytes) -> RoomSummary:
        """Keep a public-room summary if it is signed by a valid agent and is the newest.

        Raises :class:`InvalidSummary` for a forged one, or one signed by a
        device this node cannot vouch for, or by an external.
        """
        summary = parse_summary(raw)
        person = self.sender(summary.account, summary.device)
        if person is None or person.kind is not Kind.AGENT:
            raise InvalidSummary("signed by an unknown device or an external")
        if summary.ts > (self.clock() + MAX_SUMMARY_SKEW) * 1000:
            # Else a summary dated far ahead would win over every later one.
            raise InvalidSummary("dated in the future")
        known = self.summary(summary.room)
        # Newest wins; equal times are settled by the bytes, the same everywhere.
        if known is not None and (known.ts, known.raw) >= (summary.ts, summary.raw):
            return known
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO public_rooms (room, public, name, topic, members, ts, summary)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room) DO UPDATE SET"
                " public = excluded.public, name = excluded.name, topic = excluded.topic,"
                " members = excluded.members, ts = excluded.ts, summary = excluded.summary",
                (
                    summary.room,
                    int(summary.public),
                    summary.name,
                    summary.topic,
                    summary.members,
                    summary.ts,
                    raw,
                ),
            )
        return summary

    def summary(self, room: bytes) -> RoomSummary | None:
        """The newest summary stored for ``room`` (public or withdrawn)."""
        rows = self.db.query("SELECT summary FROM public_rooms WHERE room = ?", (room,))
        return parse_summary(_bytes(rows[0][0])) if rows else None

    def summaries(self) -> list[bytes]:
        """Every stored summary (the newest per room, withdrawals included)."""
        return [_bytes(row[0]) for row in self.db.query("SELECT summary FROM public_rooms")]

    def public_rooms(self, query: str = "") -> list[RoomSummary]:
        """Public rooms whose name or topic match ``query`` (all if empty), by name."""
        rows = self.db.query("SELECT summary FROM public_rooms WHERE public = 1")
        found = [parse_summary(_bytes(row[0])) for row in rows]
        found = [s for s in found if self.sender(s.account, s.device) is not None]
        if query.strip():
            found = [s for s in found if s.matches(query)]
        return sorted(found, key=lambda s: (s.name.casefold(), s.room))


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected a BLOB column")
    return value

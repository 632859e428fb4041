"""The home folder of one node: its keys, certificates, trust and revocations.

Layout (every folder 0700, every file 0600)::

    HOME/
      authority/key.sealed      authority secret (only on the authority's machine)
      authority/trust.cose      its self-signed trust file
      authority/issued/S.cose   every certificate it issued, by serial
      account/master.sealed     account master secret (only on the first device)
      account/request.cose      pending enrolment request
      account/account.cose      the account certificate
      device/device.sealed      this device's signing and X25519 secrets
      device/device.cose        this device's certificate
      devices/ID.cose           certificates of the account's devices
      trust/ID.cose             trust files of the trusted authorities
      revocations.cbor          the grow-only set of revocation records

Secrets are sealed with :mod:`p2ptchap.core.vault`; everything else is
public.  Nothing here decides trust: files are verified by the core each
time they are loaded, so a file altered on disk is refused, not believed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from p2ptchap.core import codec, vault
from p2ptchap.core.authority import Authority, TrustStore, parse_trust_file
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import (
    DecodeError,
    NotInitialised,
    RemoteError,
    StorageError,
    VerificationError,
)
from p2ptchap.core.keys import Rng
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.store.files import check_private_dir, ensure_dir, read_file, write_atomic

_REVOCATIONS_LIMITS: Final = Limits(max_bytes=64 << 20, max_items=1 << 20, max_depth=2)


def default_home() -> Path:
    """``$P2PTCHAP_HOME``, else ``$XDG_DATA_HOME/p2ptchap``, else ``~/.local/share/p2ptchap``."""
    explicit = os.environ.get("P2PTCHAP_HOME")
    if explicit:
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "p2ptchap"


class Home:
    """Typed access to the files of one home folder."""

    def __init__(self, root: Path, kdf: vault.KdfCost = vault.MODERATE) -> None:
        self.root = root.expanduser().absolute()
        #: The cost of sealing new secrets; tests lower it, nothing else should.
        self.kdf = kdf

    # --- paths -------------------------------------------------------------

    @property
    def authority_dir(self) -> Path:
        return self.root / "authority"

    @property
    def authority_key(self) -> Path:
        return self.authority_dir / "key.sealed"

    @property
    def authority_trust(self) -> Path:
        return self.authority_dir / "trust.cose"

    @property
    def issued_dir(self) -> Path:
        return self.authority_dir / "issued"

    @property
    def master_key(self) -> Path:
        return self.root / "account" / "master.sealed"

    @property
    def request(self) -> Path:
        return self.root / "account" / "request.cose"

    @property
    def account_certificate(self) -> Path:
        return self.root / "account" / "account.cose"

    @property
    def device_key(self) -> Path:
        return self.root / "device" / "device.sealed"

    @property
    def device_certificate(self) -> Path:
        return self.root / "device" / "device.cose"

    @property
    def devices_dir(self) -> Path:
        return self.root / "devices"

    @property
    def trust_dir(self) -> Path:
        return self.root / "trust"

    @property
    def revocations_file(self) -> Path:
        return self.root / "revocations.cbor"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    # --- generic -----------------------------------------------------------

    def create(self) -> None:
        """Create the home folder (mode 0700), or check an existing one is private."""
        ensure_dir(self.root)
        check_private_dir(self.root)

    def read(self, path: Path, missing: str) -> bytes:
        """Read ``path``; if it does not exist raise :class:`NotInitialised` saying ``missing``."""
        if not path.exists():
            raise NotInitialised(str(path), user_message=missing)
        return read_file(path)

    def write(self, path: Path, data: bytes) -> None:
        write_atomic(path, data)

    def read_secret(self, path: Path, passphrase: str, missing: str) -> bytes:
        """Open a sealed file; raise :class:`WrongPassphrase` or :class:`StorageError`."""
        box = self.read(path, missing)
        try:
            return vault.open_sealed(box, passphrase)
        except DecodeError as exc:
            raise StorageError(
                f"{path}: {exc}",
                user_message="The key file {path} is damaged; restore it from a backup.",
                path=path,
            ) from exc

    def write_secret(self, path: Path, secret: bytes, passphrase: str, rng: Rng) -> None:
        self.write(path, vault.seal(secret, passphrase, rng, self.kdf))

    # --- trust -------------------------------------------------------------

    def trust_store(self) -> TrustStore:
        """Every trusted authority; a trust file that fails to verify is an error."""
        store = TrustStore()
        if not self.trust_dir.is_dir():
            return store
        check_private_dir(self.root)
        for path in sorted(self.trust_dir.glob("*.cose")):
            try:
                store.add(parse_trust_file(read_file(path)))
            except VerificationError as exc:
                raise StorageError(
                    f"{path}: {exc}",
                    user_message="The trust file {path} is damaged or altered; import it again.",
                    path=path,
                ) from exc
        return store

    def add_trust(self, data: bytes) -> Authority:
        """Verify a trust file and keep it; return the authority it describes.

        Refuses an authority whose domains overlap a trusted one's, and never
        replaces a trust file by an older one of the same authority (which
        could bring back domains the authority has since given up).
        """
        authority = parse_trust_file(data)
        current = {a.key: a for a in self.trust_store()}
        others = [a for key, a in current.items() if key != authority.key]
        TrustStore([*others, authority])  # raises TrustConflict
        known = current.get(authority.key)
        if known is not None and known.created >= authority.created:
            return known
        self.write(self.trust_dir / f"{authority.key.short_id()}.cose", data)
        return authority

    # --- revocations ---------------------------------------------------------

    def revocation_records(self) -> list[bytes]:
        """The raw records stored, in the order they were added."""
        if not self.revocations_file.exists():
            return []
        try:
            items = codec.expect_list(
                codec.decode(read_file(self.revocations_file, 64 << 20), _REVOCATIONS_LIMITS),
                "revocations",
            )
        except DecodeError as exc:
            raise StorageError(
                f"{self.revocations_file}: {exc}",
                user_message="The revocation list {path} is damaged.",
                path=self.revocations_file,
            ) from exc
        return [item for item in items if isinstance(item, bytes)]

    def revocations(self, trust: TrustStore) -> RevocationSet:
        """The verified revocation set (records that no longer verify are skipped)."""
        revocations = RevocationSet()
        revocations.add_all(self.revocation_records(), trust)
        return revocations

    def add_revocations(
        self, records: list[bytes], trust: TrustStore
    ) -> tuple[int, list[RemoteError]]:
        """Merge the records that verify into the stored set.

        Returns how many were new and the errors of those refused.  A bad
        record never keeps the good ones out: a file exported by a node that
        trusts more authorities than we do must still revoke what we know.
        """
        revocations = self.revocations(trust)
        known = self.revocation_records()
        added: list[bytes] = []
        refused: list[RemoteError] = []
        for record in records:
            try:
                if revocations.add(record, trust):
                    added.append(record)
            except RemoteError as exc:
                refused.append(exc)
        if added:
            self.write(self.revocations_file, codec.encode([*known, *added]))
        return len(added), refused

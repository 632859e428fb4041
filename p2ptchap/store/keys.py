"""End-to-end encryption state on disk, sealed at rest.

Tables of migration 6 (``store/db.py``).  Everything secret — our prekey
secrets, Megolm session states, decrypted message contents — is stored
*sealed*: XChaCha20-Poly1305 under the device's **storage key**, with a
random nonce, and the table name and row key as associated data (so a
sealed value cannot be moved to another row).  The storage key is derived
from the device's secrets (:func:`storage_key`), which are themselves kept
in a file sealed under the passphrase with argon2id
(:mod:`p2ptchap.core.vault`): the SQLite file alone reveals no message text
and no key.

Without the passphrase (a read-only open), sealed values cannot be read:
:class:`KeysLocked` says so in one sentence.
"""

from __future__ import annotations

from typing import Final

import nacl.bindings
import nacl.exceptions

from p2ptchap.core import codec
from p2ptchap.core.errors import N_, LocalError, StorageError
from p2ptchap.core.kdf import hkdf_sha256
from p2ptchap.core.keys import Rng
from p2ptchap.core.megolm import InboundSession, OutboundSession
from p2ptchap.core.roomkeys import PREKEY_GRACE, Prekey, parse_prekey
from p2ptchap.store.db import Database

_AD: Final = b"p2ptchap/1 at-rest\x00"
_NONCE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class KeysLocked(LocalError):
    """Encrypted content was asked for without the passphrase."""

    default_message = N_("Messages are encrypted on disk: give the passphrase to read them.")


class SealedDataDamaged(StorageError):
    default_message = N_(
        "Part of the encrypted data on disk could not be read: the file is damaged"
        " or belongs to another device."
    )


def storage_key(signing_seed: bytes, exchange_seed: bytes) -> bytes:
    """The key sealing this device's database content, from its two secret seeds."""
    return hkdf_sha256(signing_seed + exchange_seed, info=b"p2ptchap/1 storage key")


class KeyStore:
    """Our prekeys, others' prekeys, Megolm sessions and decrypted contents."""

    def __init__(self, db: Database, key: bytes | None, rng: Rng) -> None:
        self.db = db
        self._key = key
        self.rng = rng

    @property
    def unlocked(self) -> bool:
        return self._key is not None

    # --- sealing --------------------------------------------------------------------------

    def _seal(self, table: str, row: bytes, value: codec.Value) -> bytes:
        if self._key is None:
            raise KeysLocked("no storage key")
        nonce = self.rng(_NONCE)
        ad = _AD + table.encode() + b"\x00" + row
        return nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            codec.encode(value), ad, nonce, self._key
        )

    def _open(self, table: str, row: bytes, sealed: object) -> codec.Value:
        if self._key is None:
            raise KeysLocked("no storage key")
        if not isinstance(sealed, bytes) or len(sealed) < _NONCE:
            raise SealedDataDamaged(f"{table}: not a sealed value")
        ad = _AD + table.encode() + b"\x00" + row
        try:
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed[_NONCE:], ad, sealed[:_NONCE], self._key
            )
        except nacl.exceptions.CryptoError as exc:
            raise SealedDataDamaged(f"{table}: does not open") from exc
        return codec.decode_trusted(plain)

    # --- our prekeys ----------------------------------------------------------------------

    def own_prekey(self) -> tuple[Prekey, int] | None:
        """Our current prekey and when it was made (None before the first)."""
        rows = self.db.query(
            "SELECT raw, created FROM own_prekeys WHERE replaced IS NULL"
            " ORDER BY created DESC LIMIT 1"
        )
        if not rows:
            return None
        raw, created = rows[0]
        assert isinstance(raw, bytes) and isinstance(created, int)
        return parse_prekey(raw, verify=False), created

    def add_own_prekey(self, prekey: Prekey, secret: bytes) -> None:
        """Keep a new prekey of ours; the one it replaces is marked (its secret kept a while)."""
        key = bytes(prekey.key)
        with self.db.transaction() as cursor:
            cursor.execute(
                "UPDATE own_prekeys SET replaced = ? WHERE replaced IS NULL", (prekey.created,)
            )
            cursor.execute(
                "INSERT INTO own_prekeys (key, raw, sealed, created) VALUES (?, ?, ?, ?)",
                (key, prekey.raw, self._seal("own_prekeys", key, secret), prekey.created),
            )

    def own_prekey_secret(self, identifier: bytes) -> bytes | None:
        """The secret of our prekey whose id (first bytes) is ``identifier``, if still held."""
        for key, sealed in self.db.query("SELECT key, sealed FROM own_prekeys"):
            assert isinstance(key, bytes)
            if key[: len(identifier)] == identifier and identifier:
                secret = self._open("own_prekeys", key, sealed)
                return secret if isinstance(secret, bytes) else None
        return None

    def forget_old_prekeys(self, now: int) -> int:
        """Delete the secrets of prekeys replaced more than the grace period ago."""
        with self.db.transaction() as cursor:
            cursor.execute(
                "DELETE FROM own_prekeys WHERE replaced IS NOT NULL AND replaced <= ?",
                (now - PREKEY_GRACE,),
            )
            return cursor.rowcount

    # --- others' prekeys ------------------------------------------------------------------

    def add_prekey(self, prekey: Prekey) -> bool:
        """Keep ``prekey`` if it is the newest known for its device (caller checked the device)."""
        with self.db.transaction() as cursor:
            row = cursor.execute(
                "SELECT created, raw FROM prekeys WHERE device = ?", (bytes(prekey.device),)
            ).fetchone()
            if row is not None and (row[0], row[1]) >= (prekey.created, prekey.raw):
                return False
            cursor.execute(
                "INSERT INTO prekeys (device, account, created, raw) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (device) DO UPDATE SET account = excluded.account,"
                " created = excluded.created, raw = excluded.raw",
                (bytes(prekey.device), bytes(prekey.account), prekey.created, prekey.raw),
            )
        return True

    def prekey_of(self, device: bytes) -> Prekey | None:
        rows = self.db.query("SELECT raw FROM prekeys WHERE device = ?", (device,))
        if not rows:
            return None
        raw = rows[0][0]
        assert isinstance(raw, bytes)
        return parse_prekey(raw, verify=False)  # verified when stored

    def prekey_records(self) -> list[tuple[bytes, bytes]]:
        """``(account, raw)`` of every prekey record held, ours included (for gossip)."""
        found = [
            (a, r)
            for a, r in self.db.query("SELECT account, raw FROM prekeys ORDER BY device")
            if isinstance(a, bytes) and isinstance(r, bytes)
        ]
        own = self.own_prekey()
        if own is not None:
            found.append((bytes(own[0].account), own[0].raw))
        return found

    # --- sessions -------------------------------------------------------------------------

    def outbound(self, room: bytes) -> OutboundSession | None:
        """Our current sending session in ``room``."""
        rows = self.db.query(
            "SELECT session, sealed FROM outbound_sessions WHERE room = ? AND current = 1",
            (room,),
        )
        if not rows:
            return None
        session, sealed = rows[0]
        assert isinstance(session, bytes)
        return OutboundSession.from_value(self._open("outbound_sessions", session, sealed))

    def outbound_session(self, session: bytes) -> OutboundSession | None:
        """One of our sessions, current or past."""
        rows = self.db.query("SELECT sealed FROM outbound_sessions WHERE session = ?", (session,))
        if not rows:
            return None
        return OutboundSession.from_value(self._open("outbound_sessions", session, rows[0][0]))

    def outbound_sessions(self, room: bytes) -> list[OutboundSession]:
        rows = self.db.query(
            "SELECT session, sealed FROM outbound_sessions WHERE room = ? ORDER BY created",
            (room,),
        )
        return [
            OutboundSession.from_value(self._open("outbound_sessions", s, v))
            for s, v in rows
            if isinstance(s, bytes)
        ]

    def put_outbound(self, session: OutboundSession, *, current: bool = True) -> None:
        with self.db.transaction() as cursor:
            if current:
                cursor.execute(
                    "UPDATE outbound_sessions SET current = 0 WHERE room = ? AND session != ?",
                    (session.room, session.session_id),
                )
            cursor.execute(
                "INSERT INTO outbound_sessions (session, room, current, created, sealed)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session) DO UPDATE SET"
                " current = excluded.current, sealed = excluded.sealed",
                (
                    session.session_id,
                    session.room,
                    int(current),
                    session.created,
                    self._seal("outbound_sessions", session.session_id, session.to_value()),
                ),
            )

    def inbound(self, owner: bytes, session: bytes) -> InboundSession | None:
        rows = self.db.query(
            "SELECT sealed FROM inbound_sessions WHERE owner = ? AND session = ?",
            (owner, session),
        )
        if not rows:
            return None
        return InboundSession.from_value(
            self._open("inbound_sessions", owner + session, rows[0][0])
        )

    def inbound_of_room(self, room: bytes) -> list[InboundSession]:
        rows = self.db.query(
            "SELECT owner, session, sealed FROM inbound_sessions WHERE room = ?", (room,)
        )
        return [
            InboundSession.from_value(self._open("inbound_sessions", o + s, v))
            for o, s, v in rows
            if isinstance(o, bytes) and isinstance(s, bytes)
        ]

    def put_inbound(self, session: InboundSession) -> None:
        row = session.owner + session.session_id
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO inbound_sessions (owner, session, room, sealed) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (owner, session) DO UPDATE SET sealed = excluded.sealed",
                (
                    session.owner,
                    session.session_id,
                    session.room,
                    self._seal("inbound_sessions", row, session.to_value()),
                ),
            )

    # --- key events and decrypted contents --------------------------------------------------

    def processed(self, room: bytes) -> set[bytes]:
        """Ids of the key events of ``room`` already taken into account."""
        return {i for (i,) in self.db.query("SELECT id FROM key_events WHERE room = ?", (room,))}  # type: ignore[misc]

    def mark_processed(self, room: bytes, identifier: bytes) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT OR IGNORE INTO key_events (id, room) VALUES (?, ?)", (identifier, room)
            )

    def plaintext(self, identifier: bytes) -> dict[codec.Key, codec.Value] | None:
        rows = self.db.query("SELECT sealed FROM plaintexts WHERE id = ?", (identifier,))
        if not rows:
            return None
        value = self._open("plaintexts", identifier, rows[0][0])
        return value if isinstance(value, dict) else None

    def decrypted(self, room: bytes) -> set[bytes]:
        """Ids of the events of ``room`` whose content is held decrypted."""
        return {i for (i,) in self.db.query("SELECT id FROM plaintexts WHERE room = ?", (room,))}  # type: ignore[misc]

    def put_plaintext(
        self, room: bytes, identifier: bytes, value: dict[codec.Key, codec.Value]
    ) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO plaintexts (id, room, sealed) VALUES (?, ?, ?)",
                (identifier, room, self._seal("plaintexts", identifier, value)),
            )
            cursor.execute("DELETE FROM undecrypted WHERE id = ?", (identifier,))

    def set_undecrypted(
        self, room: bytes, identifier: bytes, owner: bytes, session: bytes, reason: str, now: int
    ) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO undecrypted (id, room, owner, session, reason, since)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason",
                (identifier, room, owner, session, reason, now),
            )

    def undecrypted(
        self, room: bytes | None = None
    ) -> list[tuple[bytes, bytes, bytes, bytes, str]]:
        """``(room, event id, owner device, session, reason)`` of messages we cannot read yet."""
        sql = "SELECT room, id, owner, session, reason FROM undecrypted"
        rows = self.db.query(sql + " WHERE room = ?", (room,)) if room else self.db.query(sql)
        return [tuple(r) for r in rows]  # type: ignore[misc]

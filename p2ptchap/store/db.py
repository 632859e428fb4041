"""The node's SQLite database: WAL mode, one writer, versioned migrations.

One file, ``HOME/node.db``.  Every change happens in one ``BEGIN IMMEDIATE``
transaction, so a process killed at any moment leaves the file as it was
before or after the transaction, never in between (SQLite's WAL guarantees
it; ``tests/store/test_db.py`` kills writers with SIGKILL to check).

Migrations are numbered SQL scripts applied in order, each in its own
transaction together with the new ``user_version``; a database made by a
newer version of p2ptchap is refused rather than misread.

SQLite errors are translated here, once: a full disk, a damaged file or a
locked database become :class:`~p2ptchap.core.errors.StorageError` with one
sentence for the user.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from p2ptchap.core.errors import N_, StorageError

DB_NAME: Final = "node.db"

#: Migration n brings the schema from version n - 1 to n.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: room events, as received, with what resolution decided about them.
    """
    CREATE TABLE events (
        id       BLOB PRIMARY KEY,
        room     BLOB NOT NULL,
        depth    INTEGER NOT NULL,
        type     TEXT NOT NULL,
        account  BLOB NOT NULL,
        device   BLOB NOT NULL,
        seq      INTEGER NOT NULL,
        raw      BLOB NOT NULL,
        status   TEXT NOT NULL DEFAULT 'new'
                 CHECK (status IN ('new', 'accepted', 'rejected', 'pending')),
        reason   TEXT
    ) WITHOUT ROWID;
    CREATE INDEX events_by_room ON events (room, depth, id);
    CREATE TABLE rooms (
        room     BLOB PRIMARY KEY,
        name     TEXT NOT NULL DEFAULT '',
        accepted INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    # 2: what opening a large room needs without decoding every event, and
    # the room's state after all its events (a snapshot, written in the
    # same transaction as the statuses it sums up).
    """
    ALTER TABLE events ADD COLUMN prev_seq BLOB;
    ALTER TABLE events ADD COLUMN prev BLOB;
    ALTER TABLE events ADD COLUMN state_key TEXT;
    ALTER TABLE events ADD COLUMN ts INTEGER;
    ALTER TABLE events ADD COLUMN content_at INTEGER;
    ALTER TABLE events ADD COLUMN content_len INTEGER;
    ALTER TABLE rooms ADD COLUMN state BLOB;
    ALTER TABLE rooms ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the directories: people (account certificates and their devices)
    # and public-room summaries.
    """
    CREATE INDEX events_by_device ON events (room, device, seq);
    CREATE TABLE people (
        account     BLOB PRIMARY KEY,
        email       TEXT NOT NULL,
        name        TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('agent', 'external')),
        expires     INTEGER NOT NULL,
        certificate BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX people_by_email ON people (email);
    CREATE TABLE devices (
        device      BLOB PRIMARY KEY,
        account     BLOB NOT NULL,
        certificate BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX devices_by_account ON devices (account);
    CREATE TABLE public_rooms (
        room        BLOB PRIMARY KEY,
        public      INTEGER NOT NULL,
        name        TEXT NOT NULL,
        topic       TEXT NOT NULL,
        members     INTEGER NOT NULL,
        ts          INTEGER NOT NULL,
        summary     BLOB NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: what a snapshot was computed under (rules version, directory and
    # revocations): a snapshot is only reused under the same basis.
    """
    ALTER TABLE rooms ADD COLUMN basis BLOB;
    """,
    # 5: replication.  ``arrivals`` journals every event stored, in order,
    # whichever process stored it, so the node pushes what the CLI wrote;
    # ``receipts`` keeps each device's latest signed receipt per room;
    # ``wanted_rooms`` the rooms asked for (by their public summary) that
    # no peer has brought yet.
    """
    CREATE TABLE arrivals (
        n        INTEGER PRIMARY KEY AUTOINCREMENT,
        room     BLOB NOT NULL,
        id       BLOB NOT NULL
    );
    CREATE TABLE receipts (
        room     BLOB NOT NULL,
        device   BLOB NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('received', 'read')),
        account  BLOB NOT NULL,
        ts       INTEGER NOT NULL,
        raw      BLOB NOT NULL,
        PRIMARY KEY (room, device, kind)
    ) WITHOUT ROWID;
    CREATE TABLE wanted_rooms (
        room     BLOB PRIMARY KEY,
        since    INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: end-to-end encryption (store/keys.py).  Every ``sealed`` column is
    # XChaCha20-Poly1305 under the device's storage key (derived from the
    # device secrets, which only the passphrase opens): session states,
    # prekey secrets and decrypted contents never reach the file in clear.
    """
    CREATE TABLE own_prekeys (
        key      BLOB PRIMARY KEY,
        raw      BLOB NOT NULL,
        sealed   BLOB NOT NULL,
        created  INTEGER NOT NULL,
        replaced INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE prekeys (
        device   BLOB PRIMARY KEY,
        account  BLOB NOT NULL,
        created  INTEGER NOT NULL,
        raw      BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbound_sessions (
        session  BLOB PRIMARY KEY,
        room     BLOB NOT NULL,
        current  INTEGER NOT NULL,
        created  INTEGER NOT NULL,
        sealed   BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX outbound_by_room ON outbound_sessions (room, current);
    CREATE TABLE inbound_sessions (
        owner    BLOB NOT NULL,
        session  BLOB NOT NULL,
        room     BLOB NOT NULL,
        sealed   BLOB NOT NULL,
        PRIMARY KEY (owner, session)
    ) WITHOUT ROWID;
    CREATE TABLE key_events (
        id       BLOB PRIMARY KEY,
        room     BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE plaintexts (
        id       BLOB PRIMARY KEY,
        room     BLOB NOT NULL,
        sealed   BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE undecrypted (
        id       BLOB PRIMARY KEY,
        room     BLOB NOT NULL,
        owner    BLOB NOT NULL,
        session  BLOB NOT NULL,
        reason   TEXT NOT NULL,
        since    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX undecrypted_by_session ON undecrypted (owner, session);
    """,
    # 7: files — the blobs held (sealed chunks live in HOME/blobs/), and the
    # messages that name them (what decides who may fetch and what is kept).
    """
    CREATE TABLE blobs (
        root     BLOB PRIMARY KEY,
        size     INTEGER NOT NULL,
        leaves   BLOB,
        have     BLOB NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0,
        wanted   INTEGER NOT NULL DEFAULT 0,
        created  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE file_refs (
        n        INTEGER PRIMARY KEY,
        root     BLOB NOT NULL,
        event    BLOB NOT NULL,
        room     BLOB NOT NULL,
        size     INTEGER NOT NULL,
        UNIQUE (root, event)
    );
    CREATE INDEX file_refs_by_room ON file_refs (room);
    CREATE INDEX file_refs_by_event ON file_refs (event);
    """,
)


def _storage_error(path: Path, exc: sqlite3.Error) -> StorageError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        message = N_("The disk is full: {path} could not be written; free some space and retry.")
    elif code in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}:
        message = N_("The database {path} is in use by another program; close it and retry.")
    elif code in {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}:
        message = N_("The database {path} is damaged; restore it from a backup.")
    else:
        message = N_("The database {path} could not be used: {reason}.")
    return StorageError(f"{path}: {exc}", user_message=message, path=path, reason=str(exc))


class Database:
    """An open node database (see the module documentation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cursor: sqlite3.Cursor | None = None
        try:
            self.connection = sqlite3.connect(path, isolation_level=None, timeout=5)
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = NORMAL")
            self.connection.execute("PRAGMA foreign_keys = ON")
            # 64 MiB of page cache at most: opening a 100 000-event room reads
            # 100 MiB; with the default 8 MiB that takes half as long again.
            self.connection.execute("PRAGMA cache_size = -65536")
            self._migrate()
        except sqlite3.Error as exc:
            raise _storage_error(path, exc) from exc

    @property
    def version(self) -> int:
        row = self.connection.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StorageError(
                f"schema {current} is newer than {len(MIGRATIONS)}",
                user_message=N_(
                    "The database {path} was made by a newer p2ptchap; update this one."
                ),
                path=self.path,
            )
        for number in range(current + 1, len(MIGRATIONS) + 1):
            # executescript() commits first; run the script and the version
            # bump as one explicit transaction instead.
            with self.transaction() as cursor:
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        cursor.execute(statement)
                cursor.execute(f"PRAGMA user_version = {number}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction: all of it happens, or none of it.

        Transactions nest: an inner one joins the outer (its failure rolls
        back the whole).  Holding one also keeps every other process from
        writing — what making an event on top of the latest state needs.
        """
        if self._cursor is not None:
            yield self._cursor
            return
        cursor = self.connection.cursor()
        self._cursor = cursor
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK")
            raise _storage_error(self.path, exc) from exc
        finally:
            self._cursor = None
            cursor.close()

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Rows of a read-only query."""
        try:
            return list(self.connection.execute(sql, parameters))
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from exc

    def check(self) -> bool:
        """SQLite's own integrity check."""
        return self.query("PRAGMA integrity_check") == [("ok",)]

    def close(self) -> None:
        self.connection.close()

"""The blob store: files' sealed chunks on disk, addressed by their root.

A file's blob (its sealed chunks, see :mod:`p2ptchap.core.files`) is one
file ``HOME/blobs/<root in hex>``, chunk ``i`` at offset ``i × 65 552``; a
download in progress writes chunks where they belong, in any order.  The
database (table ``blobs``) records for each blob its size, its checked leaf
hashes, and a bitmap of the chunks *durably* written: a chunk's bit is set
only after the data was flushed to disk (``fdatasync``), so after a crash
or a ``kill -9`` every chunk marked held is really there and a download
resumes with what it had.  Only sealed chunks are stored: a blob is as
unreadable at rest as on the wire.  Plaintext leaves the store only through
:meth:`BlobStore.export`, to a path the user chose.

Blobs that no kept message names any more (redacted, or of a room we left)
are deleted by :meth:`BlobStore.collect`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from p2ptchap.core.errors import N_, LocalError, StorageError
from p2ptchap.core.files import (
    CHUNK_SIZE,
    HASH_SIZE,
    SEALED_CHUNK,
    Descriptor,
    Encryptor,
    chunk_count,
    chunk_plain_size,
    decrypt_chunks,
    sealed_size,
)
from p2ptchap.core.keys import Rng
from p2ptchap.core.transfer import bitmap, from_bitmap
from p2ptchap.store.db import Database
from p2ptchap.store.files import FILE_MODE, ensure_dir

BLOBS_DIR: Final = "blobs"
#: Space kept free on the disk beyond what a download needs.
DISK_RESERVE: Final = 64 << 20

Progress = Callable[[int, int], None]


class FileTooLarge(LocalError):
    default_message = N_("The file is {size} MiB; this node accepts files up to {limit} MiB.")


class NotEnoughSpace(LocalError):
    default_message = N_(
        "Not enough free disk space for this file: {needed} MiB needed, {free} free."
    )


def mib(size: int) -> str:
    """A size in MiB with one decimal, for messages."""
    return f"{size / (1 << 20):.1f}"


class WrongSize(LocalError):
    default_message = N_("This file's size does not match its address; the message is wrong.")


class NotDownloaded(LocalError):
    default_message = N_("The file is not fully downloaded yet; run 'p2ptchap download' first.")


@dataclasses.dataclass(frozen=True, slots=True)
class BlobInfo:
    root: bytes
    size: int
    leaves: list[bytes] | None
    have: set[int]
    complete: bool
    wanted: bool

    @property
    def held_bytes(self) -> int:
        count = chunk_count(self.size)
        return sum(chunk_plain_size(self.size, i) for i in self.have if i < count)


def _os_error(action: str, path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"{action} {path}: {exc}",
            user_message=N_("The disk is full: {path} could not be written; free some space."),
            path=path,
        )
    return StorageError(
        f"{action} {path}: {exc}",
        user_message=N_("The file {path} could not be used: {reason}."),
        path=path,
        reason=exc.strerror,
    )


class BlobStore:
    """Blobs in ``folder``, their records in ``db`` (see the module documentation)."""

    def __init__(self, db: Database, folder: Path, clock: Callable[[], float]) -> None:
        self.db = db
        self.folder = folder
        self.clock = clock
        self._open: dict[bytes, int] = {}
        self._readers: dict[bytes, int] = {}
        self._complete: dict[bytes, BlobInfo] = {}
        #: Chunks taken by a flush in progress (written, being made durable).
        self._syncing: dict[bytes, set[int]] = {}
        #: Chunks written but not yet flushed and recorded, per blob.
        self._pending: dict[bytes, set[int]] = {}

    def path(self, root: bytes) -> Path:
        return self.folder / root.hex()

    def forget_cached(self) -> None:
        """Drop the cached records (another connection may have collected blobs)."""
        self._complete.clear()

    # --- records ------------------------------------------------------------------------

    def info(self, root: bytes) -> BlobInfo | None:
        """The record of ``root`` (complete blobs' records, which never change, kept in memory)."""
        cached = self._complete.get(root)
        if cached is not None:
            return cached
        rows = self.db.query(
            "SELECT size, leaves, have, complete, wanted FROM blobs WHERE root = ?", (root,)
        )
        if not rows:
            return None
        size, leaves, have, complete, wanted = rows[0]
        assert isinstance(size, int) and isinstance(have, bytes)
        split = None
        if isinstance(leaves, bytes):
            split = [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)]
        held = (
            from_bitmap(have, chunk_count(size))
            | self._pending.get(root, set())
            | self._syncing.get(root, set())
        )
        info = BlobInfo(root, size, split, held, bool(complete), bool(wanted))
        if info.complete:
            if len(self._complete) >= 256:
                self._complete.pop(next(iter(self._complete)))
            self._complete[root] = info
        return info

    def want(self, root: bytes, size: int, limit: int) -> BlobInfo:
        """Mark ``root`` to be downloaded (checking size and disk space); return its record."""
        if size > limit:
            raise FileTooLarge(f"{size} > {limit}", size=mib(size), limit=mib(limit))
        info = self.info(root)
        if info is not None and info.size != size:
            if info.leaves is not None:
                # The leaves were checked against the root, which binds the
                # size: the recorded size is proven, the other one is wrong.
                raise WrongSize(f"{size} != {info.size}")
            # Unproven (a message gave it): start again with this one.
            self.remove([root])
            info = None
        if info is not None and info.complete:
            return info
        held = info.held_bytes if info is not None else 0
        # Every download in progress will need its space too.
        others = sum(sealed_size(s) for r, s in self.wanted() if r != root and isinstance(s, int))
        self.check_space(sealed_size(size) - held + others)
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO blobs (root, size, have, wanted, created) VALUES (?, ?, x'', 1, ?)"
                " ON CONFLICT (root) DO UPDATE SET wanted = 1",
                (root, size, int(self.clock())),
            )
        found = self.info(root)
        assert found is not None
        return found

    def unwant(self, root: bytes) -> None:
        """Stop downloading ``root`` (what is held stays, for a later resume or for others)."""
        self._complete.pop(root, None)
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE blobs SET wanted = 0 WHERE root = ?", (root,))

    def wanted(self) -> list[tuple[bytes, int]]:
        """Downloads asked for and not finished: ``(root, size)``."""
        rows = self.db.query("SELECT root, size FROM blobs WHERE wanted = 1 AND complete = 0")
        return [(r, s) for r, s in rows if isinstance(r, bytes) and isinstance(s, int)]

    def check_space(self, needed: int) -> None:
        ensure_dir(self.folder)
        free = shutil.disk_usage(self.folder).free
        if needed + DISK_RESERVE > free:
            raise NotEnoughSpace(
                f"{needed} > {free}", needed=mib(needed + DISK_RESERVE), free=mib(free)
            )

    # --- a download's chunks ------------------------------------------------------------

    def set_leaves(self, root: bytes, leaves: list[bytes]) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE blobs SET leaves = ? WHERE root = ?", (b"".join(leaves), root))

    def _fd(self, root: bytes) -> int:
        fd = self._open.get(root)
        if fd is None:
            path = self.path(root)
            ensure_dir(self.folder)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
                # The new file's entry must survive a power cut too.
                _sync_dir(self.folder)
            except OSError as exc:
                raise _os_error("open", path, exc) from exc
            self._open[root] = fd
        return fd

    def write_chunk(self, root: bytes, index: int, data: bytes) -> None:
        """Write a checked chunk; it counts as held once :meth:`flush` recorded it."""
        try:
            os.pwrite(self._fd(root), data, index * SEALED_CHUNK)
        except OSError as exc:
            raise _os_error("write", self.path(root), exc) from exc
        self._pending.setdefault(root, set()).add(index)

    def pending(self, root: bytes) -> int:
        return len(self._pending.get(root, ()))

    def flush(self, root: bytes) -> bool:
        """Make the chunks written so far durable, then record them; return whether complete."""
        taken = self.take_pending(root)
        try:
            self.sync(root)
        except StorageError:
            self.give_back(root, taken)
            raise
        return self.record(root, taken)

    # A flush in three steps, so that a node can run the slow middle one
    # (fdatasync) in a thread while it goes on receiving.

    def take_pending(self, root: bytes) -> set[int]:
        """The chunks written since the last flush (still counted held until recorded)."""
        taken = self._pending.pop(root, set())
        self._syncing.setdefault(root, set()).update(taken)
        return taken

    def sync(self, root: bytes) -> None:
        """``fdatasync`` the blob (safe to call from a worker thread)."""
        fd = self._open.get(root)
        if fd is None:
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise _os_error("flush", self.path(root), exc) from exc

    def give_back(self, root: bytes, taken: set[int]) -> None:
        """A failed sync: the chunks wait for the next flush."""
        self._syncing.get(root, set()).difference_update(taken)
        self._pending.setdefault(root, set()).update(taken)

    def record(self, root: bytes, taken: set[int]) -> bool:
        """Record ``taken`` (synced) as held; return whether the blob is now complete."""
        syncing = self._syncing.get(root, set())
        syncing.difference_update(taken)
        if not syncing:
            self._syncing.pop(root, None)
        rows = self.db.query("SELECT size, leaves, have FROM blobs WHERE root = ?", (root,))
        if not rows:
            return False
        size, leaves, have = rows[0]
        assert isinstance(size, int) and isinstance(have, bytes)
        count = chunk_count(size)
        held = from_bitmap(have, count) | taken
        complete = len(held) == count and leaves is not None
        with self.db.transaction() as cursor:
            cursor.execute(
                "UPDATE blobs SET have = ?, complete = ? WHERE root = ?",
                (bitmap(held, count), int(complete), root),
            )
        if complete:
            self.close(root)
        return complete

    def close(self, root: bytes | None = None) -> None:
        """Close the descriptors of ``root`` (or of every blob)."""
        for table in (self._open, self._readers):
            for key in [root] if root is not None else list(table):
                fd = table.pop(key, None)
                if fd is not None:
                    os.close(fd)

    def read_chunk(self, root: bytes, index: int, size: int) -> bytes:
        """Chunk ``index`` as stored (the caller checked it is held)."""
        offset = index * SEALED_CHUNK
        length = min(SEALED_CHUNK, sealed_size(size) - offset)
        path = self.path(root)
        try:
            fd = self._open.get(root) or self._reader(root)
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise _os_error("read", path, exc) from exc
        if len(data) != length:
            raise StorageError(f"{path}: chunk {index} is short", path=path)
        return data

    def _reader(self, root: bytes) -> int:
        """A read-only descriptor of a blob, kept open (a few dozen at most)."""
        fd = self._readers.pop(root, None)
        if fd is None:
            fd = os.open(self.path(root), os.O_RDONLY | os.O_NOFOLLOW)
            if len(self._readers) >= 32:
                oldest = next(iter(self._readers))
                os.close(self._readers.pop(oldest))
        self._readers[root] = fd  # most recently used last
        return fd

    # --- whole files --------------------------------------------------------------------

    def import_file(
        self, source: Path, rng: Rng, limit: int, progress: Progress = lambda _d, _t: None
    ) -> tuple[bytes, int, bytes, bytes]:
        """Encrypt the file at ``source`` into the store: ``(root, size, key, first bytes)``.

        Streams: memory use does not depend on the file's size.
        """
        try:
            # Non-blocking open: a FIFO or a device named by mistake (or by a
            # hostile client of the node's socket) must not block forever.
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise _os_error("read", source, exc) from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise StorageError(
                f"{source} is not a file", user_message=N_("{path} is not a file."), path=source
            )
        os.set_blocking(fd, True)
        handle: BinaryIO = os.fdopen(fd, "rb")
        with handle:
            size = info.st_size
            if size > limit:
                raise FileTooLarge(f"{size} > {limit}", size=mib(size), limit=mib(limit))
            self.check_space(sealed_size(size))
            key = rng(32)
            encryptor = Encryptor(key, size)
            head = b""
            temporary = self.folder / f".{secrets.token_hex(8)}.tmp"
            try:
                with _exclusive(temporary) as out:
                    for index in range(encryptor.count):
                        plaintext = handle.read(chunk_plain_size(size, index))
                        if len(plaintext) != chunk_plain_size(size, index):
                            raise StorageError(
                                f"{source} changed while read",
                                user_message=N_("The file {path} changed while it was being sent."),
                                path=source,
                            )
                        if not index:
                            head = plaintext[:64]
                        out.write(encryptor.seal(index, plaintext))
                        progress(min(size, (index + 1) * CHUNK_SIZE), size)
                    out.flush()
                    os.fsync(out.fileno())
                root = encryptor.root
                os.replace(temporary, self.path(root))
                _sync_dir(self.folder)
            except OSError as exc:
                raise _os_error("write", temporary, exc) from exc
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink()
        count = encryptor.count
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO blobs (root, size, leaves, have, complete, wanted, created)"
                " VALUES (?, ?, ?, ?, 1, 0, ?)",
                (
                    root,
                    size,
                    b"".join(encryptor.leaves),
                    bitmap(range(count), count),
                    int(self.clock()),
                ),
            )
        return root, size, key, head

    def sealed_chunks(self, root: bytes) -> Iterator[bytes]:
        info = self.info(root)
        if info is None or not info.complete:
            raise NotDownloaded(root.hex())
        path = self.path(root)
        try:
            with path.open("rb") as handle:
                for index in range(chunk_count(info.size)):
                    length = min(SEALED_CHUNK, sealed_size(info.size) - index * SEALED_CHUNK)
                    yield handle.read(length)
        except OSError as exc:
            raise _os_error("read", path, exc) from exc

    def export(
        self,
        descriptor: Descriptor,
        out: Path,
        progress: Progress = lambda _d, _t: None,
        *,
        replace: bool = False,
    ) -> Path:
        """Decrypt a complete blob to ``out`` (a folder: the file's own safe name inside it).

        Written to a temporary file beside the target, then renamed: the
        target never holds a partial or unverified file.  An existing
        target is replaced only with ``replace``.  Raises
        :class:`~p2ptchap.core.files.ChunkError` if the blob does not open.
        """
        target = out / descriptor.name if out.is_dir() else out
        if target.is_symlink() or (target.exists() and not target.is_file()):
            # Renaming over /dev/null, a FIFO or a link would replace it, not write to it.
            raise StorageError(
                f"{target} is not a regular file",
                user_message=N_("{path} is not a regular file; choose a file name to save to."),
                path=target,
            )
        if target.exists() and not replace:
            raise StorageError(
                f"{target} exists",
                user_message=N_("The file {path} already exists; choose another name."),
                path=target,
            )
        # A short name: the target's own may already be as long as allowed.
        temporary = target.with_name(f".p2ptchap-{secrets.token_hex(8)}.part")
        done = 0
        try:
            with _exclusive(temporary) as handle:
                for plaintext in decrypt_chunks(
                    descriptor.key, descriptor.size, self.sealed_chunks(descriptor.root)
                ):
                    handle.write(plaintext)
                    done += len(plaintext)
                    progress(done, descriptor.size)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            raise _os_error("write", target, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return target

    # --- what to keep -------------------------------------------------------------------

    def roots(self) -> list[bytes]:
        return [r[0] for r in self.db.query("SELECT root FROM blobs") if isinstance(r[0], bytes)]

    def strays(self) -> list[Path]:
        """Files of the blob folder that no record names, oldest name first.

        What a process killed at the wrong moment leaves: an import cut
        short (its ``.*.tmp``, which :meth:`import_file` removes only if it
        lives to), or a blob put in place by an import killed before it
        recorded it.
        """
        known = {root.hex() for root in self.roots()}
        try:
            found = [
                path
                for path in self.folder.iterdir()
                if path.name not in known and path.is_file() and not path.is_symlink()
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _os_error("read", self.folder, exc) from exc
        return sorted(found)

    def remove_strays(self, older_than: float) -> int:
        """Delete the :meth:`strays` nobody wrote to for ``older_than`` seconds; how many.

        An import in progress writes its temporary file all along, and a blob
        put in place is recorded a moment later: neither is taken for a
        stray that old, even while another process runs them.
        """
        limit = self.clock() - older_than
        removed = 0
        for path in self.strays():
            try:
                if path.lstat().st_mtime >= limit:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # gone meanwhile: its import finished, or failed
            except OSError as exc:
                raise _os_error("remove", path, exc) from exc
            removed += 1
        return removed

    def remove(self, roots: Iterable[bytes]) -> int:
        removed = 0
        for root in roots:
            self.close(root)
            self._pending.pop(root, None)
            self._complete.pop(root, None)
            with self.db.transaction() as cursor:
                cursor.execute("DELETE FROM blobs WHERE root = ?", (root,))
            try:
                self.path(root).unlink(missing_ok=True)
            except OSError as exc:
                raise _os_error("remove", self.path(root), exc) from exc
            removed += 1
        return removed


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[BinaryIO]:
    """A new file only we can read, created exclusively (never a planted link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        yield handle

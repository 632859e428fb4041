"""Small files written atomically, readable only by their owner.

Used for keys, certificates and trust files.  A write goes to a temporary
file in the same folder, is flushed to disk, then renamed over the target
and the folder entry is flushed too: after a crash or a full disk the target
holds either the old content or the new, never a mix, and the temporary file
is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from p2ptchap.core.errors import N_, StorageError

FILE_MODE = 0o600
DIR_MODE = 0o700


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        message = N_("The disk is full: {path} could not be written; free some space and retry.")
    elif exc.errno in {errno.EACCES, errno.EPERM}:
        message = N_("Permission denied on {path}.")
    elif exc.errno == errno.ENOENT:
        message = N_("The file {path} does not exist.")
    elif exc.errno == errno.EISDIR:
        message = N_("{path} is a folder, not a file.")
    else:
        message = N_("The file {path} could not be used: {reason}.")
    return StorageError(
        f"{action} {path}: {exc}", user_message=message, path=path, reason=exc.strerror
    )


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents, each with mode 0700; return it.

    Folders that already exist keep their mode.
    """
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise _storage_error("create folder", folder, exc) from exc
    if not path.is_dir():
        raise StorageError(
            f"{path} is not a folder", user_message="{path} is a file, not a folder.", path=path
        )
    return path


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically, with permissions ``mode``."""
    ensure_dir(path.parent)
    # An unpredictable name created exclusively: nobody can have prepared
    # it (with looser permissions, or as a link) in a shared folder.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise _storage_error("write", path, exc) from exc


def check_private_dir(path: Path) -> None:
    """Refuse a folder that another user owns or may write into.

    A home folder others can write to would let them plant a trust file or
    replace a key file; better to stop with a clear sentence.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise _storage_error("inspect", path, exc) from exc
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StorageError(
            f"{path} is not private (uid {info.st_uid}, mode {oct(info.st_mode)})",
            user_message=(
                "The folder {path} can be written by other users; "
                "use a folder of your own (chmod 700)."
            ),
            path=path,
        )


def remove_file(path: Path) -> None:
    """Delete ``path`` if it exists; raise :class:`StorageError` if that fails."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise _storage_error("remove", path, exc) from exc


def write_new(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Like :func:`write_atomic`, but refuse to replace an existing file."""
    if path.exists():
        raise StorageError(
            f"{path} exists",
            user_message="The file {path} already exists; move it away or choose another name.",
            path=path,
        )
    write_atomic(path, data, mode)


def read_file(path: Path, max_bytes: int = 1 << 20) -> bytes:
    """Read a small file; raise :class:`StorageError` if missing, unreadable or too big."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise _storage_error("read", path, exc) from exc
    if len(data) > max_bytes:
        raise StorageError(
            f"{path} is larger than {max_bytes} bytes",
            user_message="The file {path} is too large to be what was expected.",
            path=path,
        )
    return data

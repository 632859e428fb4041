"""Atomic, owner-only small files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2ptchap.core.errors import LocalError, StorageError
from p2ptchap.store.files import DIR_MODE, FILE_MODE, ensure_dir, read_file, write_atomic, write_new


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def current_umask() -> int:
    """The process umask, read without changing it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    pytest.skip("cannot read the umask from /proc/self/status")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_creates_owner_only_file_and_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "key.sealed"
    write_atomic(target, b"secret")
    assert target.read_bytes() == b"secret"
    assert FILE_MODE == 0o600 and DIR_MODE == 0o700
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert leftovers(target.parent) == []


def test_write_atomic_replaces_and_tightens(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old content that is longer")
    target.chmod(0o644)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600
    assert leftovers(tmp_path) == []


def test_write_atomic_with_explicit_mode(tmp_path: Path) -> None:
    target = tmp_path / "trust.cose"
    write_atomic(target, b"public", mode=0o644)
    assert mode(target) == 0o644 & ~current_umask()


def test_write_atomic_large_data(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    write_atomic(tmp_path / "big", data)
    assert (tmp_path / "big").read_bytes() == data


def test_ensure_dir(tmp_path: Path) -> None:
    folder = ensure_dir(tmp_path / "d")
    assert folder == tmp_path / "d"
    assert mode(folder) == 0o700
    assert ensure_dir(folder) == folder  # existing: fine


def test_ensure_dir_parents_are_owner_only(tmp_path: Path) -> None:
    ensure_dir(tmp_path / "a" / "b" / "c")
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


def test_ensure_dir_over_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StorageError):
        ensure_dir(tmp_path / "f")
    with pytest.raises(StorageError):
        write_atomic(tmp_path / "f" / "child", b"x")


def test_write_new_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    write_new(target, b"first")
    assert mode(target) == 0o600
    with pytest.raises(StorageError) as info:
        write_new(target, b"second")
    assert "already exists" in info.value.render()
    assert str(target) in info.value.render()
    assert target.read_bytes() == b"first"


def test_read_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"abc")
    assert read_file(target) == b"abc"
    assert read_file(target, max_bytes=3) == b"abc"


def test_read_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.cose"
    with pytest.raises(StorageError) as info:
        read_file(missing)
    error = info.value
    assert isinstance(error, LocalError)
    text = error.render()
    assert str(missing) in text
    assert "does not exist" in text
    # One sentence: a single full stop, at the end.
    assert text.endswith(".")
    assert text.replace(str(missing), "PATH").count(".") == 1
    assert "\n" not in text


def test_read_too_large(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x" * 11)
    with pytest.raises(StorageError) as info:
        read_file(target, max_bytes=10)
    assert "too large" in info.value.render()


def test_read_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        read_file(tmp_path)
    assert "folder" in info.value.render()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted under ``tmp_path``; needs root (CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to simulate a full disk needs root")
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("mount/umount not available to simulate a full disk")
    folder = tmp_path / "tiny"
    folder.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a full disk: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run([umount, str(folder)], check=False).returncode != 0:
            subprocess.run([umount, "-l", str(folder)], check=False)


def test_full_disk_keeps_the_previous_content(tiny_disk: Path) -> None:
    target = tiny_disk / "account.cose"
    write_atomic(target, b"previous content")
    with pytest.raises(StorageError) as info:
        write_atomic(target, b"x" * (256 * 1024))
    text = info.value.render()
    assert "disk is full" in text
    assert str(target) in text
    assert target.read_bytes() == b"previous content"
    assert leftovers(tiny_disk) == []
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["account.cose"]


def test_full_disk_on_write_new_leaves_nothing(tiny_disk: Path) -> None:
    target = tiny_disk / "bundle"
    with pytest.raises(StorageError) as info:
        write_new(target, b"x" * (256 * 1024))
    assert "disk is full" in info.value.render()
    assert list(tiny_disk.iterdir()) == []

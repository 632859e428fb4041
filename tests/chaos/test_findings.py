"""Deterministic tests of what the chaos runs found (one per finding, on one machine, no root).

Each test names the chaos action that exposed the problem; the chaos run
itself (``test_chaos.py``) keeps exercising the same paths with real
processes.  Protocol findings have their deterministic test on the
in-memory network in ``tests/sync/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from p2ptchap.files import IMPORT_GRACE, Files, FileSettings
from p2ptchap.store.blobs import BlobStore
from tests.conftest import NOW
from tests.test_rooms import World


def test_what_a_send_file_killed_midway_leaves_in_the_blob_folder_is_swept(
    tmp_path: Path,
) -> None:
    """Found by ``kill-writer``: SIGKILL of ``send-file`` while it encrypts the file.

    The import's temporary file (removed by a ``finally`` the process never
    reaches), or a blob put in place but never recorded, stayed for ever:
    the collector only looked at recorded blobs.  Now a file nobody records
    goes an hour after it was last written; a running import (written a
    moment ago) and recorded blobs stay.
    """
    world = World(tmp_path)
    alice = world.node("alice")
    room = alice.create("Salon").room
    blobs = BlobStore(alice.db, tmp_path / "blobs", alice.clock)
    files = Files(alice, blobs, FileSettings())
    data = os.urandom(150_000)
    source = tmp_path / "rapport.pdf"
    source.write_bytes(data)
    _, descriptor = files.send(room, source)
    kept = blobs.path(descriptor.root)

    cut_short = blobs.folder / ".0123456789abcdef.tmp"
    unrecorded = blobs.folder / ("ab" * 32)
    running = blobs.folder / ".fedcba9876543210.tmp"
    for path in (cut_short, unrecorded, running):
        path.write_bytes(os.urandom(1000))
    abandoned = NOW - IMPORT_GRACE - 1
    for path in (cut_short, unrecorded, kept):
        os.utime(path, (abandoned, abandoned))
    os.utime(running, (NOW - 5, NOW - 5))
    assert blobs.strays() == sorted([cut_short, unrecorded, running])

    assert files.collect() == 2
    assert not cut_short.exists() and not unrecorded.exists()
    assert running.exists(), "an import still writing is never taken for a stray"
    assert kept.exists(), "a recorded blob its message names stays, however old"
    [entry] = files.entries(room)
    assert files.export(entry, tmp_path / "copie.pdf").read_bytes() == data
    assert blobs.strays() == [running]

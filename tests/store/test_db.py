"""The SQLite store: migrations, damaged files, full disks, and SIGKILL mid-write."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2ptchap.core.errors import StorageError
from p2ptchap.core.events import EventType
from p2ptchap.store.db import MIGRATIONS, Database
from p2ptchap.store.rooms import RoomStore
from tests.room_cell import Cell, scenario
from tests.store.room_writer import cell_for


def test_migrations_run_once_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    assert db.version == len(MIGRATIONS)
    db.close()
    again = Database(tmp_path / "node.db")
    assert again.version == len(MIGRATIONS) and again.check()
    again.connection.execute("PRAGMA user_version = 99")
    again.close()
    with pytest.raises(StorageError) as info:
        Database(tmp_path / "node.db")
    assert "newer p2ptchap" in info.value.render()


def test_a_damaged_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "node.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as info:
        Database(tmp_path / "node.db")
    assert "damaged" in info.value.render()


def test_room_store_records_resolution_and_ignores_duplicates(tmp_path: Path) -> None:
    cell = Cell(3)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    outsider = cell.emit(bruno, view, EventType.MESSAGE, {"body": b"x"})
    store = RoomStore(Database(tmp_path / "node.db"), cell.directory, cell.people)
    added, resolution = store.add(cell.room, [e.raw for e in view] + [b"garbage"])
    assert added.stored == 2 and list(added.invalid.values()) == ["malformed"]
    statuses = store.statuses(cell.room)
    assert statuses[outsider.id] == ("rejected", "not-a-member")
    assert statuses[view[0].id] == ("accepted", None)
    again, _ = store.add(cell.room, [e.raw for e in view])
    assert again.stored == 0
    assert store.load(cell.room).state == resolution.state


def test_a_full_disk_is_one_sentence_and_loses_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        db = Database(mount / "node.db")
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE filler (x BLOB)")
        with pytest.raises(StorageError) as info:
            for _ in range(1000):
                with db.transaction() as cursor:
                    cursor.execute("INSERT INTO filler VALUES (?)", (os.urandom(64 * 1024),))
        assert "disk is full" in info.value.render()
        assert db.check()
        db.close()
        reopened = Database(mount / "node.db")
        assert reopened.check()
        reopened.close()
    finally:
        # Lazy, so that a connection left open by a failed assertion cannot
        # keep the mount (and the test's temporary folder) alive.
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sigkill_during_writes_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    script = Path(__file__).parent / "room_writer.py"
    for attempt in range(3):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(path), "7"], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.2 * attempt)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        # Reopen: intact, and every stored event has the status a fresh
        # resolution of the stored set gives it (batches are atomic).
        cell, _ = cell_for(7)
        db = Database(path)
        assert db.check()
        store = RoomStore(db, cell.directory, cell.people)
        resolution = store.load(cell.room)
        statuses = store.statuses(cell.room)
        assert {i for i, (s, _) in statuses.items() if s == "accepted"} == {
            e.id for e in resolution.accepted
        }
        assert all(s != "new" for s, _ in statuses.values())
        # The snapshot written with them is the state that resolution gives.
        restored = store.live(cell.room)
        assert restored.full == 0 and restored.resolution.state == resolution.state
        count = db.query("SELECT count(*) FROM events")[0][0]
        assert isinstance(count, int) and count >= 3
        db.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_statuses_on_disk_follow_resolution_batch_after_batch(tmp_path: Path) -> None:
    for seed in range(5):
        cell, events = scenario(seed)
        random.Random(seed).shuffle(events)
        store = RoomStore(Database(tmp_path / f"{seed}.db"), cell.directory, cell.people)
        for start in range(0, len(events), 7):
            store.add(cell.room, [e.raw for e in events[start : start + 7]])
            expected = store.load(cell.room)
            statuses = store.statuses(cell.room)
            assert {i for i, (s, _) in statuses.items() if s == "accepted"} == {
                e.id for e in expected.accepted
            }
            assert {i: r for i, (s, r) in statuses.items() if s == "rejected"} == {
                i: r.value for i, r in expected.rejected.items()
            }
        # A fresh store on the same file (as after a restart) agrees too.
        again = RoomStore(Database(tmp_path / f"{seed}.db"), cell.directory, cell.people)
        assert again.live(cell.room).resolution.state == store.live(cell.room).resolution.state

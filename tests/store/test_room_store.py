"""The room store reopens rooms from their snapshot, and falls back to resolving them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2ptchap.core.errors import StorageError
from p2ptchap.core.room import encode_state
from p2ptchap.store.db import MIGRATIONS, Database
from p2ptchap.store.rooms import RoomStore
from tests.room_cell import Cell, scenario


def stored(tmp_path: Path, seed: int = 21) -> tuple[Cell, RoomStore, bytes]:
    cell, events = scenario(seed)
    store = RoomStore(Database(tmp_path / "node.db"), cell.directory, cell.people)
    half = len(events) // 2
    store.add(cell.room, [e.raw for e in events[:half]])
    _, resolution = store.add(cell.room, [e.raw for e in events[half:]])
    assert resolution.state is not None
    return cell, store, encode_state(resolution.state)


def reopen(cell: Cell, store: RoomStore) -> RoomStore:
    store.db.close()
    return RoomStore(Database(store.db.path), cell.directory, cell.people)


def test_a_reopened_room_is_restored_from_its_snapshot(tmp_path: Path) -> None:
    cell, store, state = stored(tmp_path)
    expected = store.live(cell.room).resolution
    again = reopen(cell, store)
    live = again.live(cell.room)
    assert live.full == 0  # restored, not resolved
    assert encode_state(live.resolution.state) == state  # type: ignore[arg-type]
    assert live.resolution.accepted == expected.accepted
    assert live.resolution.rejected == expected.rejected
    assert again.load(cell.room).accepted == expected.accepted


def test_a_missing_or_damaged_snapshot_means_resolving_again(tmp_path: Path) -> None:
    cell, store, state = stored(tmp_path)
    for damage in (None, b"\xa0", state[:-3]):
        store.db.connection.execute("UPDATE rooms SET state = ?", (damage,))
        again = reopen(cell, store)
        live = again.live(cell.room)
        assert live.full == 1
        assert encode_state(live.resolution.state) == state  # type: ignore[arg-type]
        store = again


def test_a_snapshot_not_covering_every_event_is_not_trusted(tmp_path: Path) -> None:
    cell, store, state = stored(tmp_path)
    store.db.connection.execute("UPDATE rooms SET events = events - 1")
    live = reopen(cell, store).live(cell.room)
    assert live.full == 1
    assert encode_state(live.resolution.state) == state  # type: ignore[arg-type]


def test_rows_from_schema_1_are_read_from_their_bytes(tmp_path: Path) -> None:
    cell, store, state = stored(tmp_path)
    store.db.connection.execute("UPDATE events SET content_at = NULL, content_len = NULL")
    live = reopen(cell, store).live(cell.room)
    assert encode_state(live.resolution.state) == state  # type: ignore[arg-type]


def test_a_database_of_schema_1_is_migrated_with_its_events(tmp_path: Path) -> None:
    cell, events = scenario(5)
    path = tmp_path / "node.db"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    old.executemany(
        "INSERT INTO events (id, room, depth, type, account, device, seq, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.id,
                cell.room,
                e.depth,
                e.type.value,
                bytes(e.account),
                bytes(e.device),
                e.seq,
                e.raw,
            )
            for e in events
        ],
    )
    old.commit()
    old.close()
    store = RoomStore(Database(path), cell.directory, cell.people)
    assert store.db.version == len(MIGRATIONS)
    assert store.live(cell.room).resolution.state == cell.resolve(events).state


def test_damaged_rows_are_one_sentence(tmp_path: Path) -> None:
    cell, store, _ = stored(tmp_path)
    store.db.connection.execute("UPDATE events SET type = 'nonsense'")
    with pytest.raises(StorageError) as info:
        reopen(cell, store).live(cell.room)
    assert "damaged" in info.value.render()


def test_resolving_again_after_a_directory_change(tmp_path: Path) -> None:
    cell, store, _ = stored(tmp_path)
    before = store.live(cell.room).resolution
    assert len(before.accepted) > 1
    gone = cell.authors.pop("bruno")  # as if bruno's authority were no longer trusted
    after = store.resolve_again(cell.room)
    assert all(e.account != gone.key for e in after.accepted)
    assert reopen(cell, store).live(cell.room).resolution.accepted == after.accepted


def test_statuses_written_under_another_basis_are_all_rewritten(tmp_path: Path) -> None:
    """The CLI, knowing a certificate the node did not, must not leave stale statuses.

    One process stores a room while a sender is unknown to it (its events are
    refused); another, whose directory knows that sender, opens the room
    (resolving it afresh), stores one more event and writes its snapshot: a
    third opening restores that snapshot, so every status on disk must match.
    """
    cell, events = scenario(21)
    author = next(e.account for e in events if e.account != events[0].account)

    def partial(account, device):  # type: ignore[no-untyped-def]
        return None if account == author else cell.directory(account, device)

    path = tmp_path / "node.db"
    first = RoomStore(Database(path), partial, cell.people, lambda: b"without")
    first.add(cell.room, [e.raw for e in events[:-1]])
    assert ("rejected", "unknown-sender") in first.statuses(cell.room).values()
    second = RoomStore(Database(path), cell.directory, cell.people, lambda: b"with")
    second.add(cell.room, [events[-1].raw])
    third = RoomStore(Database(path), cell.directory, cell.people, lambda: b"with")
    live = third.live(cell.room)
    assert live.full == 0  # restored from the snapshot
    expected = third.load(cell.room)
    assert live.resolution.accepted == expected.accepted
    assert live.resolution.rejected == expected.rejected

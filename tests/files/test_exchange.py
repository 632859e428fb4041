"""Files through real replication and transfers (in-memory network, SQLite files, blobs on disk).

What the issue asks: every member gets a file intact; chunks come from
every peer holding them; a peer that sends a bad chunk is dropped and the
chunk fetched elsewhere; a download resumes after a cut or a restart
without fetching verified chunks again; only members fetch; forwarding
sends no data again; files of redacted messages and of rooms left are
collected.  Real processes are in ``tests/net/test_file_processes.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from p2ptchap.core import peerwire
from p2ptchap.core.files import CHUNK_SIZE, chunk_count
from p2ptchap.core.transfer import ChunkRequest, FetchSettings, LeavesRequest, Query
from p2ptchap.files import FileEntry, Files, FileSettings
from p2ptchap.replication import Replicator
from p2ptchap.services import Services
from p2ptchap.store.blobs import BlobStore
from p2ptchap.transfers import FileExchange, TransferSettings
from tests.conftest import Org
from tests.sync.netcell import SyncCell, SyncNode
from tests.sync.test_e2e import _holds, _known, _meshed, _room

#: Nothing fetched by itself unless a test says so.
EXPLICIT = FileSettings(max_size=64 << 20, auto_download=0)
#: Small windows and frequent flushes, so that a cut falls mid-download.
SLOW = TransferSettings(FetchSettings(window=4), flush_every=8, interval=0.5, requery=2.0)


@pytest.fixture
def cell(tmp_path: Path, org: Org) -> SyncCell:
    return SyncCell(tmp_path, org, files=EXPLICIT)


def _files(node: SyncNode) -> Files:
    assert node.files is not None
    return node.files


def _exchange(node: SyncNode) -> FileExchange:
    assert node.exchange is not None
    return node.exchange


def _send(node: SyncNode, room: bytes, tmp_path: Path, data: bytes, name: str = "doc.bin") -> str:
    path = tmp_path / f"{node.name}-{name}"
    path.write_bytes(data)
    done, _descriptor = _files(node).send(room, path, name=name)
    return done.events[-1].hex()


async def _entry(node: SyncNode, room: bytes, file_id: str) -> FileEntry:
    for _ in range(100):
        found = [e for e in _files(node).entries(room) if e.id == file_id]
        if found and found[0].descriptor is not None:
            return found[0]
        await trio.sleep(0.2)
    raise AssertionError(f"{node.name} never got file {file_id[:12]}")


async def _fetch(node: SyncNode, room: bytes, file_id: str, seconds: float = 60) -> FileEntry:
    entry = await _entry(node, room, file_id)
    _exchange(node).download(entry.root, entry.size)
    with trio.fail_after(seconds):
        await _exchange(node).wait(entry.root)
    return entry


def _saved(node: SyncNode, entry: FileEntry, tmp_path: Path) -> bytes:
    out = tmp_path / f"out-{node.name}-{entry.id[:8]}"
    return _files(node).export(entry, out).read_bytes()


async def test_a_file_reaches_every_member_intact_and_never_travels_in_clear(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = b"SECRET-FILE" + os.urandom(3 * CHUNK_SIZE + 123)
    async with cell.running():
        (a, b, c), room = await _meshed(cell, "a", "b", "c")
        file_id = _send(a, room, tmp_path, data, "Compte rendu été.pdf")
        for node in (b, c):
            entry = await _fetch(node, room, file_id)
            assert entry.descriptor is not None
            assert entry.descriptor.name == "Compte rendu été.pdf"
            assert _saved(node, entry, tmp_path) == data
        listed = {e.id: e for e in _files(c).entries(room)}
        assert listed[file_id].state == "complete"
    assert b"SECRET-FILE" not in b"".join(s.data for s in cell.net.sent)
    for folder in tmp_path.iterdir():
        files = folder.iterdir() if folder.is_dir() else [folder]
        for path in files:
            if not path.name.startswith(("out-", "a-")):
                assert b"SECRET-FILE" not in path.read_bytes(), path


async def test_small_files_are_fetched_by_themselves_and_passed_on_to_the_absent(
    tmp_path: Path, org: Org, autojump_clock: trio.testing.MockClock
) -> None:
    cell = SyncCell(tmp_path, org, files=FileSettings(auto_download=1 << 20))
    data = os.urandom(200_000)
    async with cell.running():
        a, b, c = await cell.add_many("a", "b", "c")
        cell.net.connect("a", "b")
        cell.net.connect("b", "c")  # c never meets a
        room = await _room(cell, a, b)
        await _known(b, c)
        b.rooms.invite(room, c.account.account_key)
        await _holds(c, room)
        c.rooms.join(room)
        await trio.sleep(5)
        file_id = _send(a, room, tmp_path, data)
        big_id = _send(a, room, tmp_path, os.urandom((1 << 20) + 1), "big.bin")
        await trio.sleep(30)
        entries = {e.id: e for e in _files(c).entries(room)}
        assert entries[file_id].state == "complete"
        assert entries[big_id].state == "remote"  # above the threshold: only when asked
        assert _saved(c, entries[file_id], tmp_path) == data


async def test_three_sources_share_the_work(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(40 * CHUNK_SIZE)
    async with cell.running():
        (a, b, c, d), room = await _meshed(cell, "a", "b", "c", "d")
        file_id = _send(a, room, tmp_path, data)
        for node in (b, c):
            await _fetch(node, room, file_id)
        before = {n.name: _exchange(n).counters["chunks-sent"] for n in (a, b, c)}
        entry = await _fetch(d, room, file_id)
        served = {n.name: _exchange(n).counters["chunks-sent"] - before[n.name] for n in (a, b, c)}
        assert all(count > 0 for count in served.values()), served
        assert sum(served.values()) >= chunk_count(len(data))
        assert _exchange(d).counters["chunks-received"] == chunk_count(len(data))
        assert _saved(d, entry, tmp_path) == data


async def test_a_peer_sending_bad_chunks_is_dropped_and_the_chunks_fetched_elsewhere(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(24 * CHUNK_SIZE)
    async with cell.running():
        (a, b, liar, d), room = await _meshed(cell, "a", "b", "liar", "d")
        file_id = _send(a, room, tmp_path, data)
        await _fetch(liar, room, file_id)
        await _fetch(b, room, file_id)
        honest_read = _files(liar).blobs.read_chunk

        def tampered(root: bytes, index: int, size: int) -> bytes:
            chunk = bytearray(honest_read(root, index, size))
            chunk[len(chunk) // 2] ^= 1
            return bytes(chunk)

        _files(liar).blobs.read_chunk = tampered  # type: ignore[method-assign]
        entry = await _fetch(d, room, file_id)
        assert _exchange(d).counters["bad-chunk"] >= 1
        assert _saved(d, entry, tmp_path) == data


async def test_only_readers_of_a_room_naming_the_file_can_fetch_it(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b, eve), room = await _meshed(cell, "a", "b", "eve")
        a.rooms.kick(room, eve.account.account_key)
        await trio.sleep(3)
        file_id = _send(a, room, tmp_path, os.urandom(5 * CHUNK_SIZE))
        entry = await _fetch(b, room, file_id)
        # Eve knows the address (say, from a colleague's screen) and asks;
        # her node asks nobody (no room it reads names the file), so her
        # modified client asks everyone for everything.
        _exchange(eve).download(entry.root, entry.size)
        for peer in list(_exchange(eve)._peers.values()):
            for message in (
                Query(entry.root),
                LeavesRequest(entry.root, 0, 5),
                ChunkRequest(entry.root, (0, 1, 2)),
            ):
                _exchange(eve)._queue(peer, message)
        await trio.sleep(20)
        assert _files(eve).blobs.info(entry.root).have == set()  # type: ignore[union-attr]
        assert _exchange(a).counters["refused-file"] >= 1
        # Nothing of the file went to Eve: no chunk message at all.
        for sent in cell.net.sent:
            if sent.target == "eve":
                message = peerwire.decode(sent.data)
                assert not (isinstance(message, peerwire.Other) and message.type == "fc")


async def test_a_download_cut_off_resumes_without_fetching_verified_chunks_again(
    tmp_path: Path, org: Org, autojump_clock: trio.testing.MockClock
) -> None:
    cell = SyncCell(tmp_path, org, files=EXPLICIT, transfers=SLOW)
    data = os.urandom(300 * CHUNK_SIZE + 7)
    count = chunk_count(len(data))
    async with cell.running():
        (a, b), room = await _meshed(cell, "a", "b")
        file_id = _send(a, room, tmp_path, data)
        entry = await _entry(b, room, file_id)
        _exchange(b).download(entry.root, entry.size)
        while _held(b, entry) < 50:
            await trio.sleep(0.01)
        cell.net.partition(["a"], ["b"])
        await trio.sleep(5)
        held = _held(b, entry)
        assert 0 < held < count
        cell.net.heal()
        with trio.fail_after(120):
            await _exchange(b).wait(entry.root)
        assert _exchange(b).counters["chunks-received"] == count
        assert _saved(b, entry, tmp_path) == data


def _held(node: SyncNode, entry: FileEntry) -> int:
    """Chunks recorded as held in the database (what a new process would find)."""
    recorded = BlobStore(node.rooms.db, _files(node).blobs.folder, node.rooms.clock)
    info = recorded.info(entry.root)
    return len(info.have) if info is not None else 0


async def test_a_restarted_node_resumes_its_downloads_from_what_it_recorded(
    tmp_path: Path, org: Org, autojump_clock: trio.testing.MockClock
) -> None:
    cell = SyncCell(tmp_path, org, files=EXPLICIT, transfers=SLOW)
    data = os.urandom(200 * CHUNK_SIZE)
    count = chunk_count(len(data))
    async with cell.running():
        (a, b), room = await _meshed(cell, "a", "b")
        file_id = _send(a, room, tmp_path, data)
        entry = await _entry(b, room, file_id)
        _exchange(b).download(entry.root, entry.size)
        while _held(b, entry) < 60:  # chunks recorded (flushed) so far
            await trio.sleep(0.01)
        # The process dies: cut off, and nothing more it writes gets recorded.
        cell.net.isolate("b")
        _files(b).blobs.flush = lambda root: False  # type: ignore[method-assign]
        _files(b).blobs.record = lambda root, taken: False  # type: ignore[method-assign]
        recorded = _held(b, entry)
        assert recorded < count
        # A new process on the same database and blob folder.
        files = Files(
            b.rooms, BlobStore(b.rooms.db, _files(b).blobs.folder, b.rooms.clock), EXPLICIT
        )
        exchange = FileExchange(files, SLOW)
        replicator = Replicator(b.rooms, b.book, settings=cell.settings)
        await cell.net.add("b-again", Services(replicator, exchange), b.verified)
        cell.net.connect("a", "b-again")
        with trio.fail_after(120):
            while files.blobs.info(entry.root) is None or not files.blobs.info(entry.root).complete:  # type: ignore[union-attr]
                await trio.sleep(0.5)
        assert exchange.counters["chunks-received"] == count - recorded
        assert files.export(entry, tmp_path / "out-again").read_bytes() == data


async def test_forwarding_sends_the_descriptor_not_the_data_again(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(10 * CHUNK_SIZE)
    async with cell.running():
        a, b, d = await cell.add_many("a", "b", "d")
        cell.net.mesh()
        room = await _room(cell, a, b)
        other = await _room(cell, a, d)
        file_id = _send(a, room, tmp_path, data)
        entry = await _entry(a, room, file_id)
        done = _files(a).forward(entry, other)
        forwarded = await _fetch(d, other, done.events[-1].hex())
        assert forwarded.root == entry.root
        assert _saved(d, forwarded, tmp_path) == data
        # D is not in the first room: it could fetch only because the second names the file.
        assert room not in d.rooms.store.rooms() or not d.rooms.state(room).is_member(
            d.account.account_key
        )


async def test_files_of_redacted_messages_and_of_rooms_left_are_collected(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b), room = await _meshed(cell, "a", "b")
        other = await _room(cell, a, b)
        kept_id = _send(a, room, tmp_path, os.urandom(1000), "kept.bin")
        redacted_id = _send(a, room, tmp_path, os.urandom(1000), "redacted.bin")
        left_id = _send(a, other, tmp_path, os.urandom(1000), "left.bin")
        entries = {}
        for file_id, where in ((kept_id, room), (redacted_id, room), (left_id, other)):
            entries[file_id] = await _fetch(b, where, file_id)
        a.rooms.redact(room, bytes.fromhex(redacted_id))
        b.rooms.leave(other)
        await trio.sleep(5)
        autojump_clock.jump(2 * 3600)  # past the grace of files being sent
        assert _files(b).collect() == 2
        blobs = _files(b).blobs
        assert blobs.info(entries[kept_id].root) is not None
        assert blobs.info(entries[redacted_id].root) is None
        assert not blobs.path(entries[left_id].root).exists()

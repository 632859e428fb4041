"""Whom a fetcher asks for a file, on the in-memory network (SQLite files, blobs on disk).

Found by the chaos run (seed 22): a member posted a file and was removed
from the room a few seconds later, before anyone had fetched it.  The
others could read the message, and the author's node would have served
them (they are members in its state), but they never asked it: a fetcher
asked only the peers its own state counts as readers of the room, and the
author no longer was.  The file was lost to the room, for good once the
author's node collected the blob an hour later.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from p2ptchap.core.files import CHUNK_SIZE
from p2ptchap.files import FileSettings
from tests.conftest import Org
from tests.sync.netcell import SyncCell, SyncNode
from tests.sync.test_e2e import _meshed

#: Nothing fetched by itself: the test says when.
EXPLICIT = FileSettings(max_size=64 << 20, auto_download=0)


@pytest.fixture
def cell(tmp_path: Path, org: Org) -> SyncCell:
    return SyncCell(tmp_path, org, files=EXPLICIT)


def _sent(node: SyncNode, room: bytes, tmp_path: Path, data: bytes) -> tuple[str, bytes]:
    assert node.files is not None
    path = tmp_path / f"{node.name}.bin"
    path.write_bytes(data)
    done, descriptor = node.files.send(room, path)
    return done.events[-1].hex(), descriptor.root


async def test_a_file_whose_author_was_removed_before_anyone_fetched_it_is_fetched_from_it(
    cell: SyncCell, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cell.running():
        (a, b, c), room = await _meshed(cell, "a", "b", "c")
        data = os.urandom(3 * CHUNK_SIZE + 7)
        file_id, root = _sent(c, room, tmp_path, data)
        _, b_root = _sent(b, room, tmp_path, os.urandom(CHUNK_SIZE))
        await trio.sleep(3)  # the messages reach everyone; nobody fetches yet
        a.rooms.kick(room, c.account.account_key)
        await trio.sleep(3)
        assert not b.rooms.state(room).is_member(c.account.account_key)
        assert b.files is not None and b.exchange is not None
        [entry] = [e for e in b.files.entries(room) if e.id == file_id]
        assert entry.descriptor is not None, "b reads the message: it was sent before the kick"
        b.exchange.download(root, entry.size)
        with trio.fail_after(60):
            await b.exchange.wait(root)
        assert b.files.export(entry, tmp_path / "copy.bin").read_bytes() == data
        # Asking is not serving: c may ask b for the file b posted before
        # the kick, but b serves only readers of the room — c no longer is.
        assert c.exchange is not None and b.exchange.counters["refused-file"] == 0
        c.exchange.download(b_root, CHUNK_SIZE)
        await trio.sleep(20)
        assert c.exchange.progress(b_root)["held"] == 0
        assert b.exchange.counters["refused-file"] > 0

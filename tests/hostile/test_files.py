"""Attacks on file transfer: asking for files one may not have, pushing chunks nobody asked for.

Bruno posts a file in the private room (so Alice holds it).  A certified
stranger who learnt its address asks Alice for it every way the protocol
allows, and pushes chunks of its own — wrong hash, wrong size, for files
Alice does not fetch.  It must get no chunk, no leaf, no bitmap; Alice must
store none of its bytes.
"""

from __future__ import annotations

import os

import pytest
import trio

from p2ptchap.api import control
from p2ptchap.core import codec
from p2ptchap.core import transfer as filewire
from p2ptchap.core.files import SEALED_CHUNK
from p2ptchap.files import open_files
from p2ptchap.store.home import Home
from tests.hostile.arena import Arena, scale
from tests.hostile.toolkit import close_all, insider

pytestmark = pytest.mark.slow


def post_file(arena: Arena, size: int) -> tuple[bytes, int]:
    """Bruno sends a file of ``size`` random bytes to the room; its root and size."""
    path = arena.root / "rapport.bin"
    path.write_bytes(os.urandom(size))
    files = open_files(arena.rooms("bruno"), Home(arena.root / "bruno"))
    _done, descriptor = files.send(arena.room, path)
    return descriptor.root, descriptor.size


async def test_a_stranger_gets_no_byte_of_a_file_and_its_chunks_are_not_stored(
    arena: Arena,
) -> None:
    root, size = post_file(arena, 300_000)
    # Alice fetches it (a small file: by herself; asked here so as not to wait).
    await trio.to_thread.run_sync(
        lambda: control.call(arena.root / "alice", "file-download", root=root.hex(), size=size)
    )
    mallory = arena.mint.person("receleur@x.gouv.fr")
    unknown = os.urandom(32)
    asks = int(scale(200, 5000))
    before = (await arena.status_async())["files"]
    async with trio.open_nursery() as nursery:
        async with arena.attack("file requests and bad chunks") as window:
            peer = await insider(mallory, arena.trust, arena.port, nursery)
            for n in range(asks):
                await peer.send_file_message(filewire.Query(root))
                await peer.send_file_message(filewire.LeavesRequest(root, 0, 8))
                await peer.send_file_message(filewire.ChunkRequest(root, tuple(range(5))))
                # Chunks nobody asked for: wrong data for Alice's file, for an unknown one.
                await peer.send_file_message(filewire.Chunk(root, n % 5, os.urandom(SEALED_CHUNK)))
                await peer.send_file_message(filewire.Chunk(unknown, 0, os.urandom(100)))
            # An ``fh`` answers each ``fq`` and each ``fl``; an ``fn`` each ``fg``.
            done = await peer.wait_for(
                lambda r: r.types["fh"] >= 2 * asks and r.types["fn"] >= asks, timeout=30
            )
            window.figures["requests"] = asks * 3
            # Last, a chunk larger than any chunk: malformed, the connection ends.
            big = codec.encode({"t": "fc", "root": root, "i": 0, "data": bytes(SEALED_CHUNK + 1)})
            await peer.send_message(big)
            assert await peer.wait_hung_up(10)
        nursery.cancel_scope.cancel()
    await close_all([peer])
    assert done, peer.received.types
    assert all(m["have"] == b"" for m in peer.received.of_type("fh"))
    assert not peer.received.of_type("fc") and not peer.received.of_type("fv")
    assert peer.received.types["fn"] >= asks
    after = (await arena.status_async())["files"]
    assert after.get("refused-file", 0) > before.get("refused-file", 0)
    assert after.get("chunks-unasked", 0) - before.get("chunks-unasked", 0) >= asks
    assert after.get("malformed-message", 0) > before.get("malformed-message", 0)
    assert after.get("bad-chunk", 0) == before.get("bad-chunk", 0)  # never asked: no strike
    # Nothing of the stranger's was stored: the blob of the unknown root does not exist.
    assert not (arena.root / "alice" / "blobs" / unknown.hex()).exists()

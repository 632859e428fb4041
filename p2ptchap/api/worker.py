"""Where a running node carries out the control socket's operations.

One thread (:class:`~p2ptchap.store.dbthread.DatabaseThread`) owns a
database connection of its own and the rooms and files opened on it, with
the node's unlocked device keys.  Operations run there one at a time, in
the order they came; the node's trio loop only awaits them, so a client
reading a long room or sending a large file does not hold the network loop
(though while an operation holds the database's write lock, the node's own
writes wait for it: SQLite has one writer).  What an operation writes
reaches the node's replication through the database's arrivals journal,
exactly as what another process writes.

A long operation reports its progress from the thread; the reports are
handed to the trio loop (at most five a second, and the last one always)
and sent to the client as progress lines.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from p2ptchap.api import operations
from p2ptchap.api.control import Encoded, Report
from p2ptchap.store.dbthread import DatabaseThread

#: Seconds between two progress reports of one operation.
REPORT_EVERY = 0.2


class OperationsWorker:
    """Runs :data:`operations.OPERATIONS` on the worker thread (see the module doc)."""

    def __init__(self, open_workspace: Callable[[], operations.Workspace]) -> None:
        self._open = open_workspace
        self._workspace: operations.Workspace | None = None
        self._thread = DatabaseThread()

    def _run(self, name: str, arguments: dict[str, Any], progress: operations.Progress) -> Encoded:
        """On the thread."""
        if self._workspace is None:
            self._workspace = self._open()
        else:
            # The node meets people meanwhile (on its own connection): an
            # invitation must find them, a message must give them the keys.
            self._workspace.rooms.directory.refresh()
            self._workspace.files.blobs.forget_cached()  # the node may have collected some
        # Encoded here: a long room's history is megabytes of JSON.
        return Encoded(operations.run(self._workspace, name, arguments, progress))

    async def run(self, name: str, arguments: dict[str, Any], report: Report) -> Any:
        """Run operation ``name``; its progress goes to ``report``."""
        send, receive = trio.open_memory_channel[tuple[int, int]](math.inf)
        token = trio.lowlevel.current_trio_token()
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if done < total and now - last < REPORT_EVERY:
                return
            last = now
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(hand_over, (done, total))

        def hand_over(item: tuple[int, int]) -> None:
            # Closed when the client went away while the thread went on.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                send.send_nowait(item)

        async def relay() -> None:
            async with receive:
                async for done, total in receive:
                    try:
                        await report({"done": done, "total": total})
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return  # the client went away; the operation still ends

        result: Any = None
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay)
            try:
                result = await self._thread.run(self._run, name, arguments, progress)
            except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                # Kept, not raised here: the nursery would wrap the
                # operation's refusal in an exception group.
                failure = exc
            finally:
                # Every report the thread made was queued before its result
                # came back; this close is queued after them, so the last
                # report is sent before the answer.
                token.run_sync_soon(send.close)
        if failure is not None:
            raise failure
        return result

    def close(self) -> None:
        """After the node stops: drop the queued operations, let the running one end, close."""
        self._thread.close(last=self._close_workspace, drop_queued=True)

    def _close_workspace(self) -> None:
        """On the thread (a connection is closed where it was opened)."""
        if self._workspace is not None:
            self._workspace.rooms.db.close()
            self._workspace = None

"""One thread owns a database connection; trio awaits its answers.

SQLite connections belong to the thread that opened them, and a read of a
large room, a file import or an FTS index build can take a while: the
terminal app must keep drawing meanwhile, and a node must keep serving its
peers while it runs a client's operation (:mod:`p2ptchap.api.worker`).  Every call that touches the
database or the disk goes through :meth:`DatabaseThread.run`, which queues
it on a single worker thread (calls run one at a time, in order) and
suspends the calling trio task until it is done.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class DatabaseThread:
    """A single worker thread; :meth:`run` is awaitable from trio."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="p2ptchap-db"
        )
        self._queued: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()  # _queued changes on the worker thread too

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function(*args)`` on the database thread; its result or its exception."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = self._executor.submit(function, *args)
        with self._lock:
            self._queued.add(future)
        future.add_done_callback(self._forget)

        def wake(_future: object) -> None:
            # The trio run may have ended meanwhile (the app quit): nothing to wake.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        await done.wait()
        return future.result()

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._queued.discard(future)

    def close(self, last: Callable[[], object] | None = None, *, drop_queued: bool = False) -> None:
        """Let queued calls finish (or drop them), run ``last`` on the thread, stop the thread."""
        if drop_queued:
            # Their callers are gone (the node is stopping): only the running one ends.
            with self._lock:
                queued = list(self._queued)
            for future in queued:
                future.cancel()
        if last is not None:
            self._executor.submit(last)
        self._executor.shutdown(wait=True)

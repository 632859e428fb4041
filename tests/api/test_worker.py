"""The node's operations worker: its own thread, refusals intact, progress in order."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import trio

from p2ptchap.api import operations
from p2ptchap.api.operations import Arguments, Operation, Progress, Workspace
from p2ptchap.api.worker import OperationsWorker
from p2ptchap.core.errors import UsageError


class _Db:
    def __init__(self) -> None:
        self.closed_on: str | None = None

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


class _Directory:
    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> int:
        self.refreshed += 1
        return 0


class _Blobs:
    def forget_cached(self) -> None:
        return None


class _Files:
    blobs = _Blobs()


class _Rooms:
    def __init__(self) -> None:
        self.db = _Db()
        self.directory = _Directory()


def counting(_w: Workspace, a: Arguments, progress: Progress) -> dict[str, Any]:
    to = a.number("to", 0, 0, 10_000)
    for done in range(1, to + 1):
        progress(done, to)
    return {"to": to, "thread": threading.current_thread().name}


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> OperationsWorker:
    monkeypatch.setitem(
        operations.OPERATIONS, "count", Operation(counting, writes=False, secret=False)
    )
    opened: list[Workspace] = []

    def open_workspace() -> Workspace:
        workspace = Workspace(_Rooms(), _Files())  # type: ignore[arg-type]
        opened.append(workspace)
        return workspace

    made = OperationsWorker(open_workspace)
    made.opened = opened  # type: ignore[attr-defined]
    return made


async def test_operations_run_on_the_worker_thread_with_their_progress(
    worker: OperationsWorker,
) -> None:
    reports: list[dict[str, Any]] = []

    async def report(progress: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        reports.append(progress)

    result = json.loads((await worker.run("count", {"to": 5000}, report)).data)
    assert result["to"] == 5000
    assert result["thread"] != threading.current_thread().name
    # Throttled (not 5000 lines), in order, and the last one always comes.
    assert 1 <= len(reports) < 100
    assert reports[-1] == {"done": 5000, "total": 5000}
    assert [r["done"] for r in reports] == sorted(r["done"] for r in reports)
    # The workspace is opened once, on first use, and reused.
    await worker.run("count", {"to": 1}, report)
    assert len(worker.opened) == 1  # type: ignore[attr-defined]
    # Before each later operation, what the node learnt meanwhile is taken in.
    assert worker.opened[0].rooms.directory.refreshed == 1  # type: ignore[attr-defined]
    worker.close()
    rooms = worker.opened[0].rooms  # type: ignore[attr-defined]
    assert rooms.db.closed_on == result["thread"]  # closed where it was opened


async def test_a_refusal_comes_back_as_itself(worker: OperationsWorker) -> None:
    async def report(_progress: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(UsageError) as info:
        await worker.run("count", {"to": -1}, report)
    assert "from 0 to 10000" in info.value.render()
    worker.close()


async def test_a_client_gone_mid_way_does_not_stop_the_operation(
    worker: OperationsWorker,
) -> None:
    async def gone(_progress: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError

    result = json.loads((await worker.run("count", {"to": 3000}, gone)).data)
    assert result["to"] == 3000
    worker.close()

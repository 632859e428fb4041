"""Real ``p2ptchap up`` processes on loopback for the benchmarks, and what they hold.

A cell is made by ``tests.net.cell.make_cell`` (keys sealed at the minimum
argon2id cost); :class:`NodeProcesses` starts nodes in it (``--no-mdns``,
static peers), times each start until its control socket answers, reads
their memory from ``/proc``, and stops them all on exit.  Rooms are formed
the way the CLI does it: the bench process writes into each node's
database, and the node notices through its arrival journal.
"""

from __future__ import annotations

import collections
import contextlib
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import common
from p2ptchap.api import control
from p2ptchap.core import vault
from p2ptchap.core.events import Membership
from p2ptchap.rooms import Rooms, open_rooms
from p2ptchap.store.db import DB_NAME
from p2ptchap.store.home import Home
from p2ptchap.testing.netns import Host
from tests.net.cell import PASSPHRASE, cli_env

DOMAIN = "x.gouv.fr"  # make_cell's
#: Seconds a control request may take: a node starved of CPU (20 on 2 cores) answers late.
CONTROL_TIMEOUT = 60.0


def memory(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from ``/proc/PID/status``, in bytes (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_answering(home: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Block until the node of ``home`` answers ``status`` on its control socket."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            control.call(home, "status", timeout=timeout)
            return
        except control.NodeNotRunning:
            if process.poll() is not None:
                raise RuntimeError(f"the node in {home} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"the node in {home} did not answer in {timeout} s") from None
            time.sleep(0.005)


class NodeProcesses:
    """``p2ptchap up`` processes in the cell ``root``, each logging to ``ROOT/NAME.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, subprocess.Popen[str]] = {}
        #: Seconds from spawning each node until its control socket answered.
        self.started: dict[str, float] = {}

    def __enter__(self) -> NodeProcesses:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def up(
        self,
        name: str,
        *peers: int | str,
        extra: tuple[str, ...] = (),
        host: Host | None = None,
        timeout: float = 120.0,
    ) -> int:
        """Start the node of home ``name``; return its port once it answers.

        ``peers`` are ports on 127.0.0.1 or ``HOST:PORT`` strings; with
        ``host`` the node runs in that network namespace, on its address.
        Raises :class:`TimeoutError` if it does not answer within ``timeout``.
        """
        args = [sys.executable, "-m", "p2ptchap", "--home", name, "up", "--port", "0", "--no-mdns"]
        args += extra
        if host is not None:
            args += ["--interface", host.address]
        for peer in peers:
            args += ["--peer", f"127.0.0.1:{peer}" if isinstance(peer, int) else peer]
        with (self.root / f"{name}.log").open("w") as log:
            start = time.perf_counter()
            options: dict[str, Any] = {
                "cwd": self.root,
                "env": cli_env(),
                "stdout": subprocess.PIPE,
                "stderr": log,
                "text": True,
            }
            process = host.run(args, **options) if host else subprocess.Popen(args, **options)
        self.running[name] = process
        wait_answering(self.root / name, process, timeout)
        self.started[name] = time.perf_counter() - start
        assert process.stdout is not None
        line = process.stdout.readline()  # "Node running on port N; Ctrl-C to stop."
        found = re.search(r"port (\d+)", line)
        if not found:
            raise RuntimeError(f"{name} did not start: {(self.root / f'{name}.log').read_text()}")
        return int(found.group(1))

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def rss(self, name: str) -> int:
        """The node's resident memory now (VmRSS), in bytes."""
        return memory(self.pid(name))

    def peers(self, name: str) -> int:
        return len(control.call(self.root / name, "peers", timeout=CONTROL_TIMEOUT))

    def stop(self, name: str) -> None:
        """Stop one node cleanly (SIGTERM), killing it if it does not exit."""
        process = self.running.pop(name)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        for process in self.running.values():
            process.terminate()  # all at once: they stop in parallel
        for name in list(self.running):
            self.stop(name)


def cli(root: Path, *args: str) -> str:
    """Run a ``p2ptchap`` command in the cell ``root``; its standard output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "p2ptchap", *args],
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"p2ptchap {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def open_home(root: Path, name: str) -> Rooms:
    """The rooms of home ``name`` opened by this process, as the CLI opens them."""
    return open_rooms(Home(root / name, kdf=vault.MINIMUM), PASSPHRASE, time.time)


def holds(rooms: Rooms, room: bytes) -> bool:
    return room in rooms.store.rooms()


def form_room(root: Path, owner: Rooms, name: str, members: list[str], timeout: float) -> bytes:
    """A room made by ``owner``, the homes ``members`` invited and joined; wait until all see it.

    The owner must know the members' certificates (its node met theirs).
    """
    room = owner.create(name).room
    everyone = [owner.me.account.account_key]
    for member in members:
        account = owner.account_by_email(f"{member}@{DOMAIN}")
        if account is None:
            raise RuntimeError(f"{member} is unknown to the owner's node")
        owner.invite(room, account)
        everyone.append(account)
    for member in members:
        rooms = open_home(root, member)
        common.wait_blocking(partial(holds, rooms, room), timeout)
        rooms.join(room)
        rooms.db.close()
    common.wait_blocking(
        lambda: all(
            owner.state(room).membership.get(account) is Membership.JOIN for account in everyone
        ),
        timeout,
    )
    return room


def reader(root: Path, name: str) -> sqlite3.Connection:
    """A read-only connection to a node's database; each query sees the latest commit."""
    return sqlite3.connect(f"file:{root / name / DB_NAME}?mode=ro", uri=True, isolation_level=None)


def status_in(db: sqlite3.Connection, event: bytes) -> str | None:
    row = db.execute("SELECT status FROM events WHERE id = ?", (event,)).fetchone()
    return None if row is None else str(row[0])


def accepted_in(db: sqlite3.Connection, room: bytes) -> int:
    """How many events of ``room`` the database holds as accepted."""
    query = "SELECT count(*) FROM events WHERE room = ? AND status = 'accepted'"
    return int(db.execute(query, (room,)).fetchone()[0])


def sync_counters(home: Path) -> collections.Counter[str]:
    """The replication counters of the node running in ``home``."""
    status = control.call(home, "status", timeout=CONTROL_TIMEOUT)
    return collections.Counter({str(k): int(v) for k, v in status["sync"].items()})


def counters_since(
    root: Path, names: list[str], before: list[collections.Counter[str]]
) -> collections.Counter[str]:
    """The nodes' replication counters added up, minus ``before`` (same order)."""
    total: collections.Counter[str] = collections.Counter()
    for name, was in zip(names, before, strict=True):
        total.update(sync_counters(root / name))
        total.subtract(was)
    return total


@contextlib.contextmanager
def readers(root: Path, names: list[str]) -> Iterator[list[sqlite3.Connection]]:
    """Read-only connections to the nodes' databases, closed on exit."""
    opened = [reader(root, name) for name in names]
    try:
        yield opened
    finally:
        for db in opened:
            db.close()

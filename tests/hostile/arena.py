"""The arena: an attacked node, its honest peer, their traffic measured, the attacker's figures.

:class:`Arena` starts two real ``p2ptchap up`` processes on loopback — Alice,
the node under attack, and Bruno, her honest peer — in a cell made on disk
(:func:`tests.net.cell.make_cell`), puts them in a private room, and runs
the honest prober (:mod:`tests.hostile.honest`) for the whole session: a
message each way every :data:`PROBE_INTERVAL` seconds.  A sampler thread
reads Alice's resident memory (``VmRSS`` in ``/proc/PID/status``) every
tenth of a second.

Each attack runs inside :meth:`Arena.attack`, which records the honest
messages sent and the memory seen meanwhile, then asserts what the suite
promises — every honest message sent during the attack delivered within
:data:`LIVENESS` seconds, Alice's memory under :data:`RSS_ALLOWANCE` above
what she used before the first attack — and prints the figures (run pytest
with ``-s`` to see them).

``P2PTCHAP_HOSTILE=long`` makes every attack longer and wider (see
:data:`LONG` and ``README.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from p2ptchap.api import control
from p2ptchap.core.authority import TrustStore
from p2ptchap.rooms import Rooms, open_rooms
from p2ptchap.store.home import Home
from tests.hostile.toolkit import Mint
from tests.net.cell import PASSPHRASE, cli_env, make_cell
from tests.net.test_node_processes import Nodes

#: Long mode, by hand: ``P2PTCHAP_HOSTILE=long pytest tests/hostile -s``.
LONG = os.environ.get("P2PTCHAP_HOSTILE", "") == "long"
#: Seconds between honest messages (each way in turn).
PROBE_INTERVAL = 0.25
#: The liveness bound: every honest message sent while an attack runs is
#: stored by its receiver within this many seconds.  Generous on purpose
#: (a loaded 2-core CI machine); without attack it takes tens of milliseconds.
LIVENESS = 10.0
#: How much more resident memory than before the first attack the attacked
#: node may use while an attack runs.  The quotas bound it per peer; this
#: is what the suite's attacks, at their width, may cost together.
RSS_ALLOWANCE = 128 << 20
MIB = 1 << 20
#: Seconds an attack window lasts at least.
MIN_ATTACK = 1.5
T = TypeVar("T")


def scale(short: T, long: T) -> T:
    """``short`` in CI, ``long`` with ``P2PTCHAP_HOSTILE=long``."""
    return long if LONG else short


@dataclasses.dataclass
class Window:
    """What happened while one attack ran."""

    name: str
    start: float
    end: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    honest: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    figures: dict[str, object] = dataclasses.field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [float(m["latency"]) for m in self.honest if "latency" in m]

    def report(self) -> str:
        lat = sorted(self.latencies())
        median = lat[len(lat) // 2] if lat else float("nan")
        worst = lat[-1] if lat else float("nan")
        extra = "".join(f", {k} {v}" for k, v in self.figures.items())
        return (
            f"[hostile] {self.name}: {self.end - self.start:.1f} s; honest messages "
            f"{len(lat)}, latency median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms; "
            f"RSS before {self.rss_before / MIB:.1f} MiB, peak {self.rss_peak / MIB:.1f} MiB, "
            f"after {self.rss_after / MIB:.1f} MiB{extra}"
        )


def rss(pid: int) -> int:
    """The resident memory of process ``pid`` now, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Arena:
    """See the module documentation."""

    def __init__(self, root: Path) -> None:
        self.root = make_cell(root, ["alice", "bruno"])
        self.nodes = Nodes(self.root)
        self.mint = Mint.from_home(self.root / "auth", PASSPHRASE)
        self.trust: TrustStore = self.mint.trust
        self.port = 0
        self.room = b""
        self.baseline_rss = 0
        self.baseline = Window("no attack", 0.0)
        self._honest: list[dict[str, Any]] = []
        self._rss: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._prober: subprocess.Popen[str] | None = None
        self._rooms: dict[str, Rooms] = {}
        self.log_lines: Counter[str] = Counter()
        self.log_tail: dict[str, deque[str]] = {n: deque(maxlen=50) for n in ("alice", "bruno")}

    # --- setting up ---------------------------------------------------------------------

    def start(self) -> None:
        self.port = self.nodes.up("alice")
        self.nodes.up("bruno", self.port)
        for name in ("alice", "bruno"):
            self._spawn(partial(self._drain_log, name))
        self.nodes.wait_for(lambda: self.status("alice")["peers"] == 1)
        alice, bruno = self.rooms("alice"), self.rooms("bruno")
        self.room = alice.create("Cellule de crise").room
        alice.invite(self.room, bruno.me.account.account_key)
        self.nodes.wait_for(lambda: self.room in bruno.store.rooms())
        bruno.join(self.room)
        self.nodes.wait_for(lambda: self.member("alice", bruno.me.account.account_key))
        self._start_prober()
        self._spawn(self._sample_rss)
        # Settle (the first messages carry room keys), then measure the
        # honest traffic without attack, for comparison in every report.
        self.nodes.wait_for(lambda: len(self._honest) >= 4, timeout=30)
        self.baseline = Window("no attack", time.time(), rss_before=rss(self.pid))
        time.sleep(scale(3, 10))
        self.baseline.end = time.time()
        self.nodes.wait_for(lambda: float(self._honest[-1]["sent"]) >= self.baseline.end)
        self._close_window(self.baseline)
        self.baseline_rss = self.baseline.rss_peak
        print(self.baseline.report())
        assert self.baseline.latencies(), "no honest traffic without attack"

    def rooms(self, name: str) -> Rooms:
        """The ``Rooms`` of a home, as the CLI beside the node opens them."""
        if name not in self._rooms:
            self._rooms[name] = open_rooms(Home(self.root / name), PASSPHRASE, time.time)
        return self._rooms[name]

    def member(self, name: str, account: object) -> bool:
        state = self.rooms(name).state(self.room)
        return state is not None and state.is_member(account)  # type: ignore[arg-type]

    def _start_prober(self) -> None:
        self._prober = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.honest", str(self.root), self.room.hex(),
             "alice", "bruno", str(PROBE_INTERVAL)],
            cwd=Path(__file__).resolve().parents[2],
            env=cli_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._spawn(self._read_prober)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read_prober(self) -> None:
        assert self._prober is not None and self._prober.stdout is not None
        for line in self._prober.stdout:
            self._honest.append(json.loads(line))

    def _drain_log(self, name: str) -> None:
        # A node blocked on a full stderr pipe would freeze: read it all,
        # keep the tail (shown when a test fails) and count the lines.
        stderr = self.nodes.processes[name].stderr
        assert stderr is not None
        for line in stderr:
            self.log_lines[name] += 1
            self.log_tail[name].append(line.rstrip())

    def _sample_rss(self) -> None:
        pid = self.pid
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError, AssertionError):
                self._rss.append((time.time(), rss(pid)))

    def close(self) -> None:
        self._stop.set()
        if self._prober is not None:
            assert self._prober.stdin is not None
            self._prober.stdin.close()
            try:
                self._prober.wait(timeout=70)
            except subprocess.TimeoutExpired:
                self._prober.kill()
        for process in self.nodes.processes.values():
            process.kill()
            process.wait(timeout=10)

    # --- looking at the node ---------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.nodes.processes["alice"].pid

    def alive(self) -> bool:
        return self.nodes.processes["alice"].poll() is None

    def status(self, name: str = "alice") -> dict[str, Any]:
        """The node's ``status`` over its control socket (counters, peers)."""
        result: dict[str, Any] = control.call(self.root / name, "status", timeout=20)
        return result

    async def status_async(self, name: str = "alice") -> dict[str, Any]:
        return await trio.to_thread.run_sync(self.status, name)

    def _close_window(self, window: Window) -> None:
        window.rss_after = rss(self.pid)
        window.honest = [m for m in self._honest if window.start <= float(m["sent"]) < window.end]
        window.rss_peak = max(
            [r for t, r in self._rss if window.start <= t <= window.end] + [window.rss_after]
        )

    # --- one attack --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attack(self, name: str) -> AsyncIterator[Window]:
        """Run the body as an attack; then check liveness and memory, and print the figures."""
        assert self.alive(), "the attacked node is not running"
        window = Window(name, time.time(), rss_before=rss(self.pid))
        yield window
        # A short attack still spans a few honest messages, sent while the
        # node digests what it was sent.
        await trio.sleep(max(0.0, window.start + MIN_ATTACK - time.time()))
        window.end = time.time()
        # The prober sends one message at a time: once a message sent after
        # the attack is reported, every one sent during it has been too.
        with trio.move_on_after(LIVENESS + PROBE_INTERVAL + 5):
            while not any(float(m["sent"]) >= window.end for m in self._honest[-3:]):
                await trio.sleep(0.1)
        assert any(float(m["sent"]) >= window.end for m in self._honest[-3:]), (
            f"{name}: an honest message sent during the attack was not delivered "
            f"within {LIVENESS} s"
        )
        self._close_window(window)
        print(window.report())
        assert self.alive(), f"{name}: the attacked node died"
        assert window.honest, f"{name}: no honest message was sent during the attack"
        late = [m for m in window.honest if m.get("latency", math.inf) > LIVENESS]
        assert not late, f"{name}: honest messages late or lost: {late}"
        limit = self.baseline_rss + RSS_ALLOWANCE
        assert window.rss_peak < limit, (
            f"{name}: the node used {window.rss_peak / MIB:.0f} MiB, "
            f"over {limit / MIB:.0f} MiB ({self.baseline_rss / MIB:.0f} MiB before the attacks "
            f"+ {RSS_ALLOWANCE / MIB:.0f} MiB)"
        )

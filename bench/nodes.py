"""Node process benchmark: start-up time, idle and loaded memory of real ``p2ptchap up`` nodes.

Measured in one run, each next to its reference:

* **start-up**: from spawning ``p2ptchap up`` until its control socket
  answers ``status`` (what the CLI and the terminal app wait for), p50 and
  slowest of several starts; with keys sealed at the minimum argon2id cost
  (as in test cells) and at the default cost (MODERATE: what a user's home
  has); against the same interpreter importing the node's modules and
  exiting (the floor no node start can go below);
* **memory**: VmRSS (``/proc/PID/status``) of two linked nodes sharing a
  room, idle, against that importing interpreter's; the highest VmRSS
  sampled (every 20 ms) while messages are written into one node's
  database by another process and replicated to the other, and the VmRSS
  once idle again, against each node's idle size.

Run:  python bench/nodes.py [--short]
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.processes import (
    NodeProcesses,
    accepted_in,
    form_room,
    open_home,
    readers,
)
from p2ptchap import accounts
from p2ptchap.core import vault
from p2ptchap.store.home import Home
from tests.net.cell import PASSPHRASE, cli_env, make_cell

MIB = common.MIB
BODY = b"x" * 200
#: What the interpreter of the reference imports: the CLI and the node, as `p2ptchap up` does.
IMPORTS = "import p2ptchap.ui.cli, p2ptchap.node"
PRINT_RSS = (
    "import pathlib; print([l.split()[1] for l in pathlib.Path('/proc/self/status')"
    ".read_text().splitlines() if l.startswith('VmRSS:')][0])"
)


@dataclasses.dataclass(frozen=True)
class Params:
    starts: int  # of each kind of node start timed
    messages: int  # written while memory is sampled
    idle_seconds: float  # before reading the idle memory


FULL = Params(starts=10, messages=3_000, idle_seconds=3.0)
SHORT = Params(starts=2, messages=150, idle_seconds=0.5)


def import_floor(runs: int) -> tuple[list[float], int]:
    """Wall seconds of ``python -c IMPORTS`` runs, and the RSS (bytes) such an interpreter has."""
    times: list[float] = []
    rss = 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", f"{IMPORTS}; {PRINT_RSS}"],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        times.append(time.perf_counter() - start)
        rss = max(rss, int(done.stdout.strip()) * 1024)
    return times, rss


def seal_at_default_cost(home: Path) -> None:
    """Seal the device key of ``home`` again at the default argon2id cost (a user's home)."""
    minimum = Home(home, kdf=vault.MINIMUM)
    secret = minimum.read_secret(minimum.device_key, PASSPHRASE, accounts.NO_ACCOUNT)
    Home(home).write_secret(minimum.device_key, secret, PASSPHRASE, os.urandom)


def start_times(root: Path, name: str, runs: int) -> list[float]:
    """Seconds until the node of ``name`` answers, over ``runs`` starts (stopped in between)."""
    times: list[float] = []
    for _ in range(runs):
        with NodeProcesses(root) as nodes:
            nodes.up(name)
            times.append(nodes.started[name])
    return times


class Sampler:
    """The highest VmRSS of some processes, sampled every 20 ms in a thread."""

    def __init__(self, nodes: NodeProcesses, names: list[str]) -> None:
        self._nodes = nodes
        self._names = names
        self.highest = dict.fromkeys(names, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self._names:
                self.highest[name] = max(self.highest[name], self._nodes.rss(name))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass
class Memory:
    idle: dict[str, int]
    loaded: dict[str, int]
    after: dict[str, int]
    load_seconds: float


def memory_under_load(root: Path, params: Params, progress: common.Progress) -> Memory:
    """Alice and Bruno linked in a room: their RSS idle, while Alice writes, and after."""
    names = ["alice", "bruno"]
    with NodeProcesses(root) as nodes:
        port = nodes.up("alice")
        nodes.up("bruno", port)
        common.wait_blocking(lambda: nodes.peers("alice") == 1, 20)
        owner = open_home(root, "alice")
        room = form_room(root, owner, "Mémoire", ["bruno"], 20)
        time.sleep(params.idle_seconds)
        idle = {name: nodes.rss(name) for name in names}
        progress(f"writing {params.messages} messages while sampling memory")
        with readers(root, ["bruno"]) as (bruno,), Sampler(nodes, names) as sampler:
            target = accepted_in(bruno, room)
            start = time.perf_counter()
            for _ in range(params.messages):
                target += len(owner.send(room, BODY).events)
            common.wait_blocking(lambda: accepted_in(bruno, room) >= target, 600, 0.02)
            load_seconds = time.perf_counter() - start
        loaded = dict(sampler.highest)
        owner.db.close()
        time.sleep(params.idle_seconds)
        after = {name: nodes.rss(name) for name in names}
    return Memory(idle, loaded, after, load_seconds)


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "nodes",
        "Node processes",
        f"`p2ptchap up --no-mdns` on loopback; {params.starts} starts of each kind; "
        f"{params.messages} messages written into one node of a linked pair.",
    )
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as folder:
        root = make_cell(Path(folder), ["alice", "bruno", "dora"])
        seal_at_default_cost(root / "dora")
        progress("reference: the interpreter importing the node's modules")
        floor, floor_rss = import_floor(params.starts)
        progress("start-up, keys at the minimum cost")
        minimum = start_times(root, "alice", params.starts)
        progress("start-up, keys at the default cost")
        default = start_times(root, "dora", params.starts)
        progress("memory, idle and loaded")
        used = memory_under_load(root, params, progress)

    floor_p50 = common.percentile(floor, 0.5) * 1000
    for key, label, times in (
        ("startup", "default argon2id cost (a user's home)", default),
        ("startup.minimum_cost", "minimum argon2id cost (test cells)", minimum),
    ):
        section.add(
            key,
            f"start-up until the control socket answers, {label}, p50",
            common.percentile(times, 0.5) * 1000,
            "ms",
            floor_p50,
            "`python -c 'import p2ptchap.ui.cli, p2ptchap.node'`, p50",
        )
        section.add(
            f"{key}.slowest",
            "… slowest",
            max(times) * 1000,
            "ms",
            max(floor) * 1000,
            "the import's slowest",
        )
    for name, role in (("alice", "writing"), ("bruno", "receiving")):
        section.add(
            f"rss.idle.{role}",
            f"RSS of the {role} node, idle (linked, one room)",
            used.idle[name] / MIB,
            "MiB",
            floor_rss / MIB,
            "the interpreter with the node's modules",
        )
        section.add(
            f"rss.loaded.{role}",
            f"… highest while {params.messages} messages are written and synced",
            used.loaded[name] / MIB,
            "MiB",
            used.idle[name] / MIB,
            "idle",
        )
        section.add(
            f"rss.after.{role}",
            "… idle again afterwards",
            used.after[name] / MIB,
            "MiB",
            used.idle[name] / MIB,
            "idle before",
        )
    section.notes.append(
        f"the {params.messages} messages took {used.load_seconds:.1f} s to write and replicate"
    )
    return section


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL)

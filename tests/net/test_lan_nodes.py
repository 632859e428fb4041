"""Real nodes on three or four "hosts" (network namespaces on a bridge), mDNS included.

This is the acceptance test of the network layer: nodes started with only
`p2ptchap up` find and authenticate each other over real mDNS and TCP;
a partition is noticed and healed; a node that only knows one peer reaches
the rest; an uncertified node is refused.  Root only (skipped otherwise).
Timings are printed for docs/performance.md; bounds are generous because CI
machines are noisy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2ptchap.testing.netns import Host, lan, netns_available
from tests.net.cell import cli_env, make_cell

pytestmark = pytest.mark.skipif(
    netns_available() is not None, reason=f"network namespaces: {netns_available()}"
)


class Cell:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def up(self, name: str, host: Host, *extra: str) -> None:
        process = host.run(
            [
                sys.executable,
                "-m",
                "p2ptchap",
                "--home",
                str(self.root / name),
                "up",
                "--interface",
                host.address,
                *extra,
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert "port" in process.stdout.readline()
        self.processes[name] = process

    def control(self, name: str, command: str) -> object:
        done = subprocess.run(
            [sys.executable, "-m", "p2ptchap", "--home", str(self.root / name), command, "--json"],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def peers(self, name: str) -> set[str]:
        peers = self.control(name, "peers")
        assert isinstance(peers, list)
        return {str(p["email"]) for p in peers}


def wait(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.2)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_cell(tmp_path_factory.mktemp("lan"), ["alice", "bruno", "carole", "denis"])
    # Mallory is certified by an authority nobody in the cell trusts.
    return make_cell(root, ["mallory"], authority="foreign", domain="ailleurs.fr")


@pytest.fixture
def cell(root: Path) -> Iterator[Cell]:
    running = Cell(root)
    yield running
    for process in running.processes.values():
        process.kill()
        process.wait(timeout=10)


def test_three_hosts_find_each_other_heal_and_gossip(cell: Cell) -> None:
    emails = {n: f"{n}@x.gouv.fr" for n in ("alice", "bruno", "carole", "denis")}
    with lan(4) as net:
        a, b, c, d = net.hosts
        started = time.monotonic()
        cell.up("alice", a)
        cell.up("bruno", b)
        cell.up("carole", c)
        three = {"alice", "bruno", "carole"}
        found = wait(
            lambda: all(cell.peers(n) == {emails[m] for m in three - {n}} for n in three), 20
        )
        print(f"\n3 nodes discovered and authenticated each other in {found:.1f} s")
        assert time.monotonic() - started < 30

        c.partition()
        lost = wait(lambda: emails["carole"] not in cell.peers("alice"), 20)
        print(f"partition noticed by heartbeats in {lost:.1f} s")
        c.heal()
        healed = wait(lambda: emails["carole"] in cell.peers("alice"), 15)
        print(f"reconnected {healed:.1f} s after the partition healed")
        assert healed < 15

        # Denis does not use mDNS and knows only Alice: gossip does the rest.
        cell.up("denis", d, "--no-mdns", "--peer", f"{a.address}:7755")
        gossip = wait(lambda: cell.peers("denis") == {emails[m] for m in three}, 20)
        print(f"--peer-only node reached all others through gossip in {gossip:.1f} s")


def test_an_uncertified_node_is_refused(cell: Cell) -> None:
    with lan(2) as net:
        a, m = net.hosts
        cell.up("alice", a)
        cell.up("mallory", m)
        wait(lambda: bool(cell.control("alice", "status")["rejected"]), 20)  # type: ignore[index]
        status = cell.control("alice", "status")
        assert isinstance(status, dict)
        assert status["rejected"].get("unknown-authority", 0) >= 1
        assert cell.peers("alice") == set()
        # Mallory's node does not trust the cell's authority either.
        theirs = cell.control("mallory", "status")
        assert isinstance(theirs, dict)
        assert theirs["rejected"].get("unknown-authority", 0) >= 1

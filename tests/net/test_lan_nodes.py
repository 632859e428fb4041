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


def test_rooms_replicate_across_a_lossy_link_and_a_partition(cell: Cell) -> None:
    """Room sync over real mDNS and TCP, 20 % of frames lost on one host, one host cut off."""
    names = ("alice", "bruno", "carole")
    with lan(3) as net:
        hosts = dict(zip(names, net.hosts, strict=True))
        for name in names:
            cell.up(name, hosts[name])
        wait(lambda: all(len(cell.peers(n)) == 2 for n in names), 30)

        def cli(name: str, *args: str) -> object:
            done = subprocess.run(
                [sys.executable, "-m", "p2ptchap", "--home", str(cell.root / name), *args],
                env=cli_env(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, (args, done.stderr)
            return json.loads(done.stdout) if "--json" in args else done.stdout

        created = cli("alice", "room", "create", "Crue", "--json")
        assert isinstance(created, dict)
        room = str(created["room"])
        for name in ("bruno", "carole"):
            cli("alice", "room", "invite", room, f"{name}@x.gouv.fr")

        def holds(name: str) -> bool:
            listed = cli(name, "room", "list", "--json")
            assert isinstance(listed, list)
            return any(r["room"] == room for r in listed)

        for name in ("bruno", "carole"):
            wait(lambda n=name: holds(n), 30)  # type: ignore[misc]
            cli(name, "room", "join", room)

        def topic(name: str) -> str:
            shown = cli(name, "room", "show", room, "--json")
            assert isinstance(shown, dict)
            return str(shown["topic"])

        hosts["bruno"].drop(20)
        hosts["carole"].partition()
        cli("alice", "room", "set", room, "--topic", "Niveau 3 : évacuation")
        took = wait(lambda: topic("bruno") == "Niveau 3 : évacuation", 30)
        print(f"\nan event crossed a link losing 20 % of frames in {took:.1f} s")
        assert topic("carole") == ""
        hosts["carole"].heal()
        took = wait(lambda: topic("carole") == "Niveau 3 : évacuation", 60)
        print(f"the partitioned host caught up {took:.1f} s after the partition healed")
        shown = [cli(n, "room", "show", room, "--json") for n in names]
        assert all(s == shown[0] for s in shown)

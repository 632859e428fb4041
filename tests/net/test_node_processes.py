"""Several `p2ptchap up` processes on loopback: the CLI contract, gossip, live revocation."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.net.cell import cli_env, make_cell


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2ptchap", *args],
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno", "carole", "denis"])


class Nodes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def up(self, name: str, *peers: int, extra: tuple[str, ...] = ()) -> int:
        args = [sys.executable, "-m", "p2ptchap", "--home", name, "up", "--port", "0", "--no-mdns"]
        args += extra
        for port in peers:
            args += ["--peer", f"127.0.0.1:{port}"]
        process = subprocess.Popen(
            args,
            cwd=self.root,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes[name] = process
        assert process.stdout is not None
        line = process.stdout.readline()  # "Node running on port N; ..."
        match = re.search(r"port (\d+)", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        return int(match.group(1))

    def peers(self, name: str) -> list[dict[str, object]]:
        done = cli(self.root, "--home", name, "peers", "--json")
        assert done.returncode == 0, done.stderr
        result: list[dict[str, object]] = json.loads(done.stdout)
        return result

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.2)

    def stop(self, name: str) -> tuple[int, str, str]:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
        return process.returncode, out, err


def test_three_nodes_reach_each_other_through_one_static_peer_each(nodes: Nodes) -> None:
    port_a = nodes.up("alice")
    port_b = nodes.up("bruno", port_a)
    nodes.up("carole", port_b)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 2 and len(nodes.peers("carole")) == 2)
    peers = {p["email"]: p for p in nodes.peers("carole")}
    assert set(peers) == {"alice@x.gouv.fr", "bruno@x.gouv.fr"}
    for peer in peers.values():
        assert set(peer) >= {"email", "device", "address", "via", "since", "rtt_ms"}
    assert peers["bruno@x.gouv.fr"]["via"] == "static"
    # Every certificate seen at a handshake is in the people directory, which
    # the CLI searches next to the running node (same SQLite file).
    found = cli(nodes.root, "--home", "carole", "directory", "search", "alice", "--json")
    assert [p["email"] for p in json.loads(found.stdout)] == ["alice@x.gouv.fr"], found.stderr
    # A clean stop: exit code 0, and the others see the peer leave.
    code, out, _ = nodes.stop("carole")
    assert code == 0 and "Node stopped." in out
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)


def test_a_device_revoked_while_running_is_cut_off_and_refused(nodes: Nodes, cell: Path) -> None:
    port_a = nodes.up("alice")
    nodes.up("denis", port_a)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    revoked = cli(
        cell, "--home", "auth", "authority", "revoke", "denis@x.gouv.fr", "--out", "denis.rev"
    )
    assert revoked.returncode == 0, revoked.stderr
    imported = cli(cell, "--home", "alice", "revocations", "import", "denis.rev")
    assert imported.returncode == 0, imported.stderr
    nodes.wait_for(lambda: nodes.peers("alice") == [], timeout=10)
    time.sleep(2)  # Denis keeps trying: every attempt is refused
    assert nodes.peers("alice") == []
    code, _, err = nodes.stop("alice")
    assert code == 0
    assert "refused" in err and "revoked" in err


def test_a_network_key_turns_away_devices_without_it(nodes: Nodes, cell: Path) -> None:
    for key in ("k1", "k2"):
        made = cli(cell, "network-key", "--out", f"{key}.key")
        assert made.returncode == 0, made.stderr
        assert len(bytes.fromhex((cell / f"{key}.key").read_text().strip())) == 32
    port_a = nodes.up("alice", extra=("--network-key", "k1.key"))
    nodes.up("bruno", port_a, extra=("--network-key", "k2.key"))
    time.sleep(3)
    assert nodes.peers("alice") == [] and nodes.peers("bruno") == []
    nodes.stop("bruno")
    nodes.up("bruno", port_a, extra=("--network-key", "k1.key"))
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    bad = cli(cell, "--home", "carole", "up", "--network-key", "alice.cert")
    assert bad.returncode == 2 and "64 hexadecimal digits" in bad.stderr


def test_peers_without_a_running_node_says_so(cell: Path) -> None:
    done = cli(cell, "--home", "bruno", "peers")
    assert done.returncode == 1
    assert "No node is running" in done.stderr
    assert "Traceback" not in done.stderr

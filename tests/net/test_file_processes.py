"""Files between real `p2ptchap up` processes on loopback: the CLI, kills, memory.

The in-memory network (``tests/files/test_exchange.py``) checks the
protocol's cases deterministically; here the same with real processes,
sockets, SQLite files and blob folders: ``send-file`` / ``files`` /
``download`` from the command line, a download that survives a SIGKILL of
the receiver and then of the sender without fetching verified chunks again,
and a 256 MiB file moved by nodes whose memory never holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from p2ptchap.core.files import chunk_count
from tests.net.cell import cli_env, make_cell
from tests.net.test_node_processes import Nodes, cli
from tests.net.test_sync_processes import alice_and_bruno_in_a_room, members, ok

MIB = 1 << 20


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno", "carole"])


def _write_random(path: Path, size: int) -> str:
    """A file of ``size`` random bytes, written by pieces; its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, 4 * MIB):
            piece = os.urandom(min(4 * MIB, size - start))
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(4 * MIB):
            digest.update(piece)
    return digest.hexdigest()


def _listed(root: Path, name: str, room: str) -> dict[str, dict[str, object]]:
    found = json.loads(ok(root, "--home", name, "files", room, "--json"))
    return {str(f["id"]): f for f in found}


def _recorded(root: Path, name: str, file_root: str) -> int:
    """Chunks the node recorded as held (bits set in its bitmap)."""
    with sqlite3.connect(f"file:{root / name / 'node.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT have FROM blobs WHERE root = ?", (bytes.fromhex(file_root),))
        found = row.fetchone()
    return sum(bin(byte).count("1") for byte in found[0]) if found else 0


def _status(root: Path, name: str) -> dict[str, object]:
    return dict(json.loads(ok(root, "--home", name, "status", "--json")))


def _peak_rss(process: subprocess.Popen[str]) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _send(root: Path, name: str, room: str, path: Path) -> dict[str, object]:
    return dict(json.loads(ok(root, "--home", name, "send-file", room, str(path), "--json")))


def test_a_file_sent_from_the_cli_is_listed_and_downloaded_intact(nodes: Nodes, cell: Path) -> None:
    room, _ = alice_and_bruno_in_a_room(nodes, cell, "Fichiers")
    nodes.wait_for(lambda: members(cell, "alice", room).get("bruno@x.gouv.fr") == "join")
    source = cell / "Relevé été 2026.pdf"
    digest = _write_random(source, 3 * MIB + 5)
    sent = _send(cell, "alice", room, source)
    assert sent["name"] == "Relevé été 2026.pdf" and sent["size"] == 3 * MIB + 5
    nodes.wait_for(lambda: bool(_listed(cell, "bruno", room).get(str(sent["id"]), {}).get("name")))
    listed = _listed(cell, "bruno", room)[str(sent["id"])]
    assert listed["mime"] == "application/pdf" and listed["size"] == 3 * MIB + 5
    assert listed["sender_name"]
    out = cell / "bruno-downloads"
    out.mkdir()
    done = cli(cell, "--home", "bruno", "download", room, str(sent["id"])[:12], "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _sha256(out / "Relevé été 2026.pdf") == digest
    # A second time, to the same place: refused, nothing overwritten.
    again = cli(cell, "--home", "bruno", "download", room, str(sent["id"]), "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert again.stderr.count("\n") == 1
    assert _listed(cell, "bruno", room)[str(sent["id"])]["state"] == "complete"


def test_a_name_with_a_path_in_it_is_saved_where_asked_and_nowhere_else(
    nodes: Nodes, cell: Path
) -> None:
    room, _ = alice_and_bruno_in_a_room(nodes, cell, "Traversée")
    nodes.wait_for(lambda: members(cell, "alice", room).get("bruno@x.gouv.fr") == "join")
    source = cell / "innocent.txt"
    source.write_bytes(b"root::0:0::/root:/bin/sh\n")
    sent = json.loads(
        ok(cell, "--home", "alice", "send-file", room, str(source), "--name",
           "../../etc/passwd", "--json")
    )  # fmt: skip
    assert sent["name"] == "passwd"
    out = cell / "bruno-traversal" / "inbox"
    out.mkdir(parents=True)
    nodes.wait_for(lambda: str(sent["id"]) in _listed(cell, "bruno", room))
    done = cli(cell, "--home", "bruno", "download", room, str(sent["id"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["passwd"]
    assert not (cell / "bruno-traversal" / "etc").exists()


def test_a_file_above_the_size_limit_is_refused_with_one_sentence(nodes: Nodes, cell: Path) -> None:
    (cell / "carole" / "config.toml").write_text("[files]\nmax_size = 1000\n")
    try:
        room = json.loads(ok(cell, "--home", "carole", "room", "create", "Limite", "--json"))
        source = cell / "big.bin"
        source.write_bytes(os.urandom(5000))
        done = cli(cell, "--home", "carole", "send-file", room["room"], str(source))
        assert done.returncode == 1
        assert "accepts files up to" in done.stderr and done.stderr.count("\n") == 1
        missing = cli(cell, "--home", "carole", "send-file", room["room"], str(cell / "nope"))
        assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    finally:
        (cell / "carole" / "config.toml").unlink()


def test_a_download_survives_sigkill_of_the_receiver_then_of_the_sender(
    nodes: Nodes, cell: Path
) -> None:
    """256 MiB: far more than either node's memory ever holds (checked at the end)."""
    room, port_a = alice_and_bruno_in_a_room(nodes, cell, "Vidéo")
    nodes.wait_for(lambda: members(cell, "alice", room).get("bruno@x.gouv.fr") == "join")
    size = 256 * MIB
    source = cell / "intervention.mp4"
    digest = _write_random(source, size)
    sent = _send(cell, "alice", room, source)
    source.unlink()
    file_id, file_root = str(sent["id"]), str(sent["root"])
    count = chunk_count(size)
    nodes.wait_for(lambda: file_id in _listed(cell, "bruno", room))

    def download() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "p2ptchap", "--home", "bruno", "download", room, file_id],
            cwd=cell,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # The receiver is killed while fetching.
    client = download()
    nodes.wait_for(lambda: _recorded(cell, "bruno", file_root) > 0, timeout=60)
    nodes.processes.pop("bruno").send_signal(signal.SIGKILL)
    _out, err = client.communicate(timeout=30)
    assert client.returncode == 1 and "No node is running" in err, err
    kept = _recorded(cell, "bruno", file_root)
    assert 0 < kept < count
    port_b = nodes.up("bruno", port_a)
    # The sender is killed while the restarted receiver fetches.
    client = download()
    nodes.wait_for(lambda: _recorded(cell, "bruno", file_root) > kept, timeout=60)
    nodes.processes.pop("alice").send_signal(signal.SIGKILL)
    assert _recorded(cell, "bruno", file_root) < count
    nodes.up("alice", port_b)
    _out, err = client.communicate(timeout=240)
    assert client.returncode == 0, err
    assert "Downloading" in err or "Téléchargement" in err
    # The restarted receiver fetched only what it had not recorded before.
    files = _status(cell, "bruno")["files"]
    assert isinstance(files, dict)
    assert files["chunks-received"] == count - kept, (files, count, kept)
    assert files.get("bad-chunk", 0) == 0
    out = cell / "bruno-video.mp4"
    ok(cell, "--home", "bruno", "download", room, file_id, "--out", str(out))
    assert _sha256(out) == digest
    # Neither node ever held the file in memory.
    peaks = {name: _peak_rss(nodes.processes[name]) for name in ("alice", "bruno")}
    print(f"receiver killed at {kept}/{count} chunks; peak RSS {peaks}")
    for name, peak in peaks.items():
        assert peak < 160 * MIB, name
    out.unlink()

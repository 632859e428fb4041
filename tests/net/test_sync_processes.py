"""Replication between real `p2ptchap up` processes on loopback TCP.

What the in-memory network tests deterministically, checked once more with
real sockets, real SQLite files and real processes: an invitation crosses
to an invitee that was offline when it was made (carried by a third node),
and a node killed with SIGKILL in the middle of a sync restarts and ends up
with every event, its database intact.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.net.cell import cli_env, make_cell
from tests.net.test_node_processes import Nodes, cli


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno", "carole"])


def ok(root: Path, *args: str) -> str:
    done = cli(root, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def rooms(root: Path, name: str) -> dict[str, dict[str, object]]:
    listed = json.loads(ok(root, "--home", name, "room", "list", "--json"))
    return {str(r["room"]): r for r in listed}


def members(root: Path, name: str, room: str) -> dict[str, str]:
    shown = json.loads(ok(root, "--home", name, "room", "show", room, "--json"))
    return {str(m["email"]): str(m["membership"]) for m in shown["members"]}


def count_events(root: Path, name: str, room: str) -> int:
    with sqlite3.connect(f"file:{root / name / 'node.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT count(*) FROM events WHERE room = ?", (bytes.fromhex(room),))
        return int(row.fetchone()[0])


def test_an_invitation_reaches_an_invitee_through_a_member_while_its_author_is_away(
    nodes: Nodes, cell: Path
) -> None:
    port_a = nodes.up("alice")
    port_b = nodes.up("bruno", port_a)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    room = json.loads(ok(cell, "--home", "alice", "room", "create", "Crise", "--json"))["room"]
    ok(cell, "--home", "alice", "room", "invite", room, "bruno@x.gouv.fr")
    # Carole has never been seen by Alice's node: an invitation by address.
    ok(cell, "--home", "alice", "room", "invite", room, "carole@x.gouv.fr")
    nodes.wait_for(lambda: room in rooms(cell, "bruno"))
    ok(cell, "--home", "bruno", "room", "join", room)
    nodes.wait_for(lambda: members(cell, "alice", room).get("bruno@x.gouv.fr") == "join")
    code, _, _ = nodes.stop("alice")
    assert code == 0
    # Alice is away; Carole only ever meets Bruno.
    nodes.up("carole", port_b)
    nodes.wait_for(lambda: room in rooms(cell, "carole"))
    ok(cell, "--home", "carole", "room", "join", room)
    nodes.wait_for(lambda: members(cell, "bruno", room).get("carole@x.gouv.fr") == "join")
    # Alice comes back and learns it all from whoever she meets.
    nodes.up("alice", port_b)
    nodes.wait_for(lambda: members(cell, "alice", room).get("carole@x.gouv.fr") == "join")
    assert members(cell, "alice", room) == members(cell, "carole", room)
    status = json.loads(ok(cell, "--home", "bruno", "status", "--json"))
    assert status["rooms"] >= 1 and status["sync"]["events-received"] > 0


def alice_and_bruno_in_a_room(nodes: Nodes, cell: Path, name: str) -> tuple[str, int]:
    """Both nodes running and linked; Alice's room, which Bruno has joined (on his node).

    Returns the room and Alice's port."""
    port_a = nodes.up("alice")
    nodes.up("bruno", port_a)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    room = str(json.loads(ok(cell, "--home", "alice", "room", "create", name, "--json"))["room"])
    ok(cell, "--home", "alice", "room", "invite", room, "bruno@x.gouv.fr")
    nodes.wait_for(lambda: room in rooms(cell, "bruno"))
    ok(cell, "--home", "bruno", "room", "join", room)
    return room, port_a


def test_messages_sent_from_the_cli_reach_a_member_encrypted_and_never_rest_in_clear(
    nodes: Nodes, cell: Path
) -> None:
    room, _ = alice_and_bruno_in_a_room(nodes, cell, "Chiffré")
    nodes.wait_for(lambda: members(cell, "alice", room).get("bruno@x.gouv.fr") == "join")
    secret = "Point de ralliement : gymnase Jean-Moulin, 3 h 40"
    sent = json.loads(ok(cell, "--home", "alice", "room", "send", room, secret, "--json"))

    def bruno_reads() -> list[dict[str, object]]:
        return list(json.loads(ok(cell, "--home", "bruno", "room", "read", room, "--json")))

    nodes.wait_for(lambda: any(m["text"] == secret for m in bruno_reads()))
    [message] = [m for m in bruno_reads() if m["id"] == sent["event"]]
    assert message["name"] and message["waiting"] is None
    # Neither database (nor its WAL) holds the text, though both nodes show it.
    for name in ("alice", "bruno"):
        for path in (cell / name).glob("node.db*"):
            assert secret.encode() not in path.read_bytes(), path


BULK = """
import os, sys, time
from pathlib import Path
from p2ptchap.rooms import open_rooms
from p2ptchap.store.home import Home
rooms = open_rooms(Home(Path(sys.argv[1])), os.environ["P2PTCHAP_PASSPHRASE"], time.time)
room = bytes.fromhex(sys.argv[2])
for n in range(int(sys.argv[3])):
    rooms.send(room, os.urandom(200))
"""


def test_a_node_killed_mid_sync_restarts_and_converges_with_nothing_lost(
    nodes: Nodes, cell: Path
) -> None:
    room, port_a = alice_and_bruno_in_a_room(nodes, cell, "Bulk")
    nodes.wait_for(lambda: count_events(cell, "alice", room) == 4)
    nodes.stop("bruno")
    subprocess.run(
        [sys.executable, "-c", BULK, str(cell / "alice"), room, "3000"],
        env=cli_env(),
        check=True,
        timeout=300,
    )
    total = count_events(cell, "alice", room)
    # 4 to set the room up, 3 000 messages, and one room-key event per
    # session of 100 messages (the session rotates every 100).
    assert total == 3004 + 3000 // 100
    # Bruno comes back, starts catching up, and is killed without warning.
    nodes.up("bruno", port_a)
    nodes.wait_for(lambda: count_events(cell, "bruno", room) > 100, timeout=30)
    process = nodes.processes.pop("bruno")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    partial = count_events(cell, "bruno", room)
    with sqlite3.connect(cell / "bruno" / "node.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    nodes.up("bruno", port_a)
    nodes.wait_for(lambda: count_events(cell, "bruno", room) == total, timeout=60)
    assert members(cell, "bruno", room) == members(cell, "alice", room)
    shown = json.loads(ok(cell, "--home", "bruno", "room", "show", room, "--json"))
    assert shown["name"] == "Bulk"
    print(f"killed with {partial}/{total} events; converged after restart")

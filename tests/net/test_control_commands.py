"""The CLI and bots against running nodes, through the control socket (real processes).

With a node running, a room or file command is one request to it: it needs
no passphrase (the node holds the unlocked keys) and what it signs goes
out at once.  Without one, the command does the same work on the database
and says that no node runs and how to start one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.net.cell import make_cell
from tests.net.test_node_processes import Nodes, cli
from tests.ui.process import run_p2ptchap


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno", "claire"])


def bare(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI without any passphrase (and no terminal to ask one on)."""
    return run_p2ptchap(root, *args, passphrase=None, timeout=60, stdin=stdin)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def test_cli_commands_go_through_the_running_node(nodes: Nodes, cell: Path) -> None:
    port = nodes.up("alice")
    nodes.up("bruno", port)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)

    # No passphrase anywhere: only the running node can sign and decrypt.
    room = json.loads(ok(bare(cell, "--home", "alice", "room", "create", "Salle", "--json")))[
        "room"
    ]
    made = bare(cell, "--home", "alice", "room", "invite", "Salle", "Bruno")
    assert "Invitation sent." in ok(made)
    assert "No node is running" not in made.stderr

    def bruno_holds() -> bool:
        listed = json.loads(ok(bare(cell, "--home", "bruno", "room", "list", "--json")))
        return any(r["room"] == room for r in listed)

    nodes.wait_for(bruno_holds, 30)
    ok(bare(cell, "--home", "bruno", "room", "join", room))
    ok(bare(cell, "--home", "alice", "room", "send", "Salle", "-", stdin="Point à 18 h\n"))

    def bruno_reads() -> bool:
        found = json.loads(ok(bare(cell, "--home", "bruno", "room", "read", room, "--json")))
        return any(m["text"] == "Point à 18 h\n" for m in found)

    nodes.wait_for(bruno_reads, 30)

    # A file by a relative path: the CLI makes it absolute for the node.
    (cell / "carte.txt").write_text("carte des secteurs\n")
    sent = json.loads(ok(bare(cell, "--home", "alice", "send-file", room, "carte.txt", "--json")))
    assert sent["name"] == "carte.txt" and sent["warnings"] == []

    def bruno_sees_the_file() -> bool:
        files = json.loads(ok(bare(cell, "--home", "bruno", "files", room, "--json")))
        return any(f["id"] == sent["id"] for f in files)

    nodes.wait_for(bruno_sees_the_file, 30)
    saved = bare(
        cell, "--home", "bruno", "download", room, sent["id"][:12], "--out", "recu-carte.txt"
    )
    assert "Saved to" in ok(saved)
    assert (cell / "recu-carte.txt").read_text() == "carte des secteurs\n"

    # The node's refusals come back as one sentence, with the CLI's exit codes.
    refused = bare(cell, "--home", "bruno", "room", "kick", room, "alice@x.gouv.fr")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "p2ptchap:" in refused.stderr
    unknown = bare(cell, "--home", "bruno", "room", "send", "nulle-part", "x")
    assert unknown.returncode == 1 and "no such room" in unknown.stderr
    # …in the user's language, though the node speaks English.
    french = bare(cell, "--home", "bruno", "--lang", "fr", "room", "send", "nulle-part", "x")
    assert french.returncode == 1 and "salon" in french.stderr


def test_without_a_node_commands_say_so_and_what_they_wrote_goes_out_later(
    nodes: Nodes, cell: Path
) -> None:
    created = cli(cell, "--home", "claire", "room", "create", "Hors ligne", "--json")
    room = json.loads(ok(created))["room"]
    assert "No node is running" in created.stderr and "p2ptchap up" in created.stderr
    invited = cli(cell, "--home", "claire", "room", "invite", room, "bruno@x.gouv.fr")
    ok(invited)
    assert "goes out when you start one" in invited.stderr
    listed = cli(cell, "--home", "claire", "room", "list")
    assert "Hors ligne" in ok(listed) and "what this computer holds" in listed.stderr
    # Without a node and without a passphrase, a command that signs says how to give one.
    locked = bare(cell, "--home", "claire", "room", "send", room, "x")
    assert locked.returncode == 2 and "P2PTCHAP_PASSPHRASE" in locked.stderr
    # Once the nodes run, the invitation written offline reaches Bruno.
    port = nodes.up("claire")
    nodes.up("bruno", port)

    def bruno_invited() -> bool:
        listed = json.loads(ok(bare(cell, "--home", "bruno", "room", "list", "--json")))
        return any(r["room"] == room for r in listed)

    nodes.wait_for(bruno_invited, 30)
    shown = json.loads(ok(bare(cell, "--home", "bruno", "room", "show", room, "--json")))
    assert shown["name"] == "Hors ligne"


class Bot:
    """A client of the control socket written from docs/protocol.md §7 alone."""

    def __init__(self, home: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.settimeout(30)
        self.socket.connect(str(home / "control.sock"))
        self.buffer = b""

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.socket.recv(65536)
            assert chunk, "the node hung up"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The progress lines, then the answer."""
        self.socket.sendall(json.dumps(request).encode() + b"\n")
        progress = []
        while "ok" not in (answer := self.line()):
            progress.append(answer["progress"])
        return progress, answer


def test_a_bot_speaks_the_documented_protocol(nodes: Nodes, cell: Path) -> None:
    port = nodes.up("alice")
    bot = Bot(cell / "alice")
    _, made = bot.ask({"cmd": "room-create", "name": "Robot", "topic": "alertes"})
    assert made["ok"] is True and made["result"]["warnings"] == []
    room = made["result"]["room"]
    _, sent = bot.ask({"cmd": "room-send", "room": room, "text": "Vigilance rouge"})
    assert sent["ok"] is True and sent["result"]["event"] in sent["result"]["events"]
    _, read = bot.ask({"cmd": "room-read", "room": room, "limit": 5})
    assert [m["text"] for m in read["result"]] == ["Vigilance rouge"]
    assert read["result"][0]["mine"] is True
    # A large file, with progress lines before the answer.
    big = cell / "releve.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    progress, filed = bot.ask(
        {"cmd": "file-send", "room": room, "path": str(big), "progress": True}
    )
    assert filed["ok"] is True and filed["result"]["size"] == big.stat().st_size
    assert progress and progress[-1] == {"done": big.stat().st_size, "total": big.stat().st_size}
    # Refusals: a sentence, its template and values, and a kind.
    _, relative = bot.ask({"cmd": "file-send", "room": room, "path": "releve.bin"})
    assert relative["ok"] is False and relative["kind"] == "usage"
    assert relative["message"] == "The argument '{name}' must be an absolute path."
    assert relative["values"] == {"name": "path"}
    _, nowhere = bot.ask({"cmd": "room-send", "room": "nulle-part", "text": "x"})
    assert nowhere["ok"] is False and nowhere["kind"] == "local"
    _, wrong = bot.ask({"cmd": "room-read", "room": room, "limit": "beaucoup"})
    assert wrong["ok"] is False and "from 1 to 100000" in wrong["error"]
    # A FIFO (or a device) named as the file: refused at once, never waited on.
    fifo = cell / "tube"
    os.mkfifo(fifo)
    _, piped = bot.ask({"cmd": "file-send", "room": room, "path": str(fifo)})
    assert piped["ok"] is False and piped["message"] == "{path} is not a file."
    _, odd = bot.ask({"cmd": "room-send", "room": room, "text": "caf\udce9"})
    assert odd["ok"] is False and odd["values"] == {"name": "text"}
    _, typo = bot.ask({"cmd": "room-sned"})
    assert typo["ok"] is False and typo["values"] == {"command": "room-sned"}
    # Still serving after all that, on the same connection.
    _, listed = bot.ask({"cmd": "room-list"})
    assert any(r["room"] == room for r in listed["result"])
    # Someone the node meets after the operations began can be found and
    # invited (the worker's directory takes in what the node learnt).
    _, before = bot.ask({"cmd": "directory-search", "query": "claire"})
    assert before["result"] == []  # Alice's node never met Claire's before
    nodes.up("claire", port)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    _, after = bot.ask({"cmd": "directory-search", "query": "claire"})
    assert [p["email"] for p in after["result"]] == ["claire@x.gouv.fr"]
    _, invited = bot.ask({"cmd": "room-invite", "room": room, "who": "claire@x.gouv.fr"})
    assert invited["ok"] is True and invited["result"]["account"] == after["result"][0]["account"]
    bot.socket.close()

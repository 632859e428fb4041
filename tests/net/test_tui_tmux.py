"""Two real ``p2ptchap chat`` sessions in real terminals (tmux), keys in, screens out.

Alice and Bruno each run the app in a tmux pane of their own, over their
own node processes: Alice creates a room and invites Bruno by name, Bruno
joins from his keyboard, they exchange a message each, Alice sends a file
and Bruno saves it from his app.  What each screen shows is read with
``capture-pane``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2ptchap.i18n import Translator
from p2ptchap.ui import colleagues
from tests.net.cell import cli_env, make_cell
from tests.net.test_node_processes import Nodes

TR = Translator("en")

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno"])


class Terminals:
    """tmux sessions on a private server socket, killed at the end."""

    def __init__(self, root: Path) -> None:
        self.socket = str(root / "tmux.sock")
        self.root = root

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def open(self, name: str, *args: str) -> None:
        """``p2ptchap ARGS`` (by default ``--home NAME chat``) in a new session ``name``."""
        env = cli_env()
        exports = " ".join(f"{k}='{v}'" for k, v in env.items() if k.startswith("P2PTCHAP_"))
        command = " ".join(args or ("--home", name, "chat"))
        line = f"cd {self.root} && env {exports} {sys.executable} -m p2ptchap {command}"
        self.tmux("new-session", "-d", "-s", name, "-x", "130", "-y", "36", line + "; sleep 60")

    def keys(self, name: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", name, *keys)

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", name)

    def wait(self, name: str, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen(name)
            if predicate(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}'s screen never matched:\n{shown}")
            time.sleep(0.2)

    def type(self, name: str, text: str) -> None:
        self.keys(name, "-l", text)
        self.keys(name, "Enter")


@pytest.fixture
def terminals(cell: Path) -> Iterator[Terminals]:
    running = Terminals(cell)
    try:
        yield running
    finally:
        running.tmux("kill-server")


def test_two_agents_chat_and_share_a_file_in_real_terminals(
    nodes: Nodes, cell: Path, terminals: Terminals, tmp_path: Path
) -> None:
    port = nodes.up("alice")
    nodes.up("bruno", port)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    report = tmp_path / "bilan.txt"
    report.write_text("Bilan de la nuit : 3 interventions.\n" * 50)
    inbox = tmp_path / "recus"
    inbox.mkdir()

    terminals.open("alice")
    terminals.open("bruno")
    terminals.wait("alice", lambda s: "1 peer(s) connected" in s)
    terminals.wait("bruno", lambda s: "1 peer(s) connected" in s)

    terminals.type("alice", "/create Cellule nuit")
    terminals.wait("alice", lambda s: "Cellule nuit (private)" in s)
    terminals.type("alice", "/invite Bruno")
    terminals.wait("alice", lambda s: "Invitation sent." in s)

    # Bruno's rooms list shows the invitation; he accepts it from the keyboard.
    terminals.wait("bruno", lambda s: "✉ Cellule nuit" in s)
    terminals.type("bruno", "/join Cellule nuit")
    terminals.wait("bruno", lambda s: "You joined the room." in s)

    terminals.type("bruno", "Bruno en ligne, @Alice")
    terminals.wait("alice", lambda s: "Bruno en ligne, @Alice" in s)
    terminals.type("alice", "Bien reçu Bruno")
    shown = terminals.wait("bruno", lambda s: "Bien reçu Bruno" in s)
    assert "[unverified device]" in shown  # Bruno has not compared safety numbers yet

    terminals.type("alice", f"/file {report}")
    terminals.wait("alice", lambda s: "Sent: bilan.txt" in s)
    shown = terminals.wait("bruno", lambda s: "bilan.txt" in s and "/save" in s)
    number = _file_number(shown)
    terminals.type("bruno", f"/save {number} {inbox}")
    terminals.wait("bruno", lambda s: "Saved:" in s, 60)
    assert (inbox / "bilan.txt").read_bytes() == report.read_bytes()

    terminals.keys("alice", "C-q")
    terminals.keys("bruno", "C-q")
    for name in ("alice", "bruno"):
        terminals.wait(name, lambda s: "Rooms" not in s, 15)


def _file_number(screen: str) -> str:
    """The message number the file card tells to use with /save."""
    for line in screen.splitlines():
        if "bilan.txt" in line and "/save" in line:
            return line.rsplit("/save", 1)[1].split()[0]
    raise AssertionError(screen)


def test_the_app_in_demo_mode_with_colleagues_who_answer(terminals: Terminals) -> None:
    terminals.open("demo", "chat", "--demo")
    # The cell is prepared (about half a minute here), then Bruno invites Alice.
    terminals.wait("demo", lambda s: "✉ Cellule de crise" in s, 180)
    terminals.type("demo", "/join Cellule de crise")
    terminals.wait("demo", lambda s: "Welcome Alice!" in s, 60)
    shown = terminals.screen("demo")
    assert "[external]" in shown  # Éric of the Red Cross, who spoke before Alice came
    terminals.type("demo", "@Claire la D1 est-elle rouverte ?")
    answers = [TR(a) for a in colleagues.ANSWERS]
    shown = terminals.wait("demo", lambda s: any(a[:40] in s for a in answers), 60)
    assert "in reply to Alice" in shown
    terminals.keys("demo", "C-q")
    terminals.wait("demo", lambda s: "Demo over" in s, 30)

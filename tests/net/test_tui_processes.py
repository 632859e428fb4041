"""The terminal app, headless (pipe input, dummy output), against real node processes.

Alice drives ``p2ptchap chat``'s application in this process, keystroke by
keystroke; Bruno is a real ``p2ptchap`` node and the real CLI in other
processes.  Each test checks what the app shows (its snapshot and the
text its windows draw) and what reached the other side.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from p2ptchap.i18n import Translator
from p2ptchap.store.home import Home
from p2ptchap.ui.tui.app import ChatApp
from p2ptchap.ui.tui.session import ChatSession
from tests.net.cell import PASSPHRASE, make_cell
from tests.net.test_node_processes import Nodes, cli

ENTER = "\r"
ALT_ENTER = "\x1b\r"
CTRL_Q = "\x11"
CTRL_N = "\x0e"


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("cell"), ["alice", "bruno"])


def ok(root: Path, *args: str) -> str:
    done = cli(root, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


class Driver:
    """Alice's app, run on this thread's asyncio loop, fed keystrokes."""

    def __init__(self, app: ChatApp, session: ChatSession, send: Callable[[str], None]) -> None:
        self.app, self.session, self.send = app, session, send
        self.bells = 0

    async def type(self, text: str, until: Callable[[], bool], timeout: float = 20) -> None:
        self.send(text)
        await self.until(until, timeout)

    async def until(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; notices: {self.notices()}; panel: {self.panel()}")
            await asyncio.sleep(0.05)

    def notices(self) -> list[str]:
        return [n.text for n in self.session.notices]

    def said(self, fragment: str) -> bool:
        return any(fragment in text for text in self.notices())

    def panel(self) -> str:
        shown = self.session.shown
        return "\n".join(n.text for n in shown[1]) if shown else ""

    def screen(self) -> str:
        """The text the timeline window draws."""
        return "".join(text for _style, text, *_ in self.app._timeline_text())

    def rooms_pane(self) -> str:
        return "".join(text for _style, text, *_ in self.app._rooms_text())


def drive(cell: Path, scenario: Callable[[Driver], Awaitable[None]], lang: str = "en") -> None:
    """Run Alice's app headless around ``scenario``; it must quit cleanly."""

    async def main() -> None:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            session = ChatSession(Home(cell / "alice"), Translator(lang), PASSPHRASE)
            app = ChatApp(session, Translator(lang), input=pipe, output=DummyOutput())
            driver = Driver(app, session, pipe.send_text)
            app._bell = lambda: setattr(driver, "bells", driver.bells + 1)
            running = asyncio.ensure_future(app.run_async())
            try:
                await driver.until(lambda: session.rooms is not None and app.nursery is not None)
                await scenario(driver)
                pipe.send_text(CTRL_Q)
                assert await asyncio.wait_for(running, 20) == 0
            finally:
                if not running.done():
                    running.cancel()

    asyncio.run(main())


def test_rooms_messages_and_settings_from_the_keyboard(cell: Path) -> None:
    async def scenario(d: Driver) -> None:
        s = d.session
        await d.type("/create Cellule de crise" + ENTER, lambda: s.snapshot.room is not None)
        assert s.snapshot.room is not None and s.snapshot.room.name == "Cellule de crise"
        assert not s.snapshot.room.public  # private by default
        await d.type(
            "Point de situation" + ALT_ENTER + "à 6 h" + ENTER,
            lambda: len(s.snapshot.timeline) == 1,
        )
        assert s.snapshot.timeline[0].text == "Point de situation\nà 6 h"
        assert "#1" in d.screen() and "Point de situation" in d.screen()
        await d.type("/edit 1 Point à 7 h" + ENTER, lambda: s.snapshot.timeline[0].edited)
        assert s.snapshot.timeline[0].text == "Point à 7 h" and "(edited)" in d.screen()
        await d.type(
            "/react 1 👍" + ENTER, lambda: s.snapshot.timeline[0].reactions == (("👍", 1),)
        )
        await d.type("/reply 1 Bien noté" + ENTER, lambda: len(s.snapshot.timeline) == 2)
        assert s.snapshot.timeline[1].reply == "Alice: Point à 7 h"
        await d.type("//help is not a command" + ENTER, lambda: len(s.snapshot.timeline) == 3)
        assert s.snapshot.timeline[2].text == "/help is not a command"
        await d.type("/delete 3" + ENTER, lambda: len(s.snapshot.timeline) == 2)

        # Settings: name, topic, externals, history; making it public asks first.
        await d.type("/topic Tempête" + ENTER, lambda: s.snapshot.room.topic == "Tempête")
        await d.type("/public on" + ENTER, lambda: s.pending is not None)
        assert d.said("Every agent will be able to find it")
        await d.type("no" + ENTER, lambda: d.said("Cancelled."))
        assert not s.snapshot.room.public
        await d.type("/public on" + ENTER, lambda: s.pending is not None)
        await d.type("yes" + ENTER, lambda: s.snapshot.room.public)
        await d.type("/externals on" + ENTER, lambda: s.snapshot.room.allow_externals)
        await d.type("/history shared" + ENTER, lambda: s.snapshot.room.history == "shared")
        await d.type("/info" + ENTER, lambda: "Externals allowed: yes" in d.panel())
        await d.type("/members" + ENTER, lambda: "Alice <alice@x.gouv.fr>" in d.panel())
        assert "admin" in d.panel()
        d.send("\x1b")
        await d.until(lambda: s.shown is None)

        # Search runs over decrypted text, in memory.
        await d.type("/search tempete noté" + ENTER, lambda: s.shown is not None)
        await d.type("/search noté" + ENTER, lambda: "Bien noté" in d.panel())
        await d.type("/search introuvable" + ENTER, lambda: "Nothing found" in d.panel())

        # Mistakes get one sentence, and the app goes on.
        await d.type("/frobnicate" + ENTER, lambda: d.said("Unknown command /frobnicate"))
        await d.type("/kick Personne Inconnue" + ENTER, lambda: d.said("Nobody in the directory"))
        await d.type("/edit 99 x" + ENTER, lambda: d.said("No message #99 on screen."))
        await d.type("/go nowhere" + ENTER, lambda: d.said("No room named 'nowhere'."))
        await d.type("/help" + ENTER, lambda: "/invite PERSON" in d.panel())
        assert s.notices[-1].kind != "error" or "Traceback" not in s.notices[-1].text

    drive(cell, scenario)


def test_two_agents_exchange_messages_and_a_file_through_real_nodes(
    nodes: Nodes, cell: Path, tmp_path: Path
) -> None:
    port_a = nodes.up("alice")
    nodes.up("bruno", port_a)
    nodes.wait_for(lambda: len(nodes.peers("alice")) == 1)
    document = tmp_path / "rapport.pdf"
    document.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 300)
    saved = tmp_path / "recu"
    saved.mkdir()

    async def scenario(d: Driver) -> None:
        s = d.session
        await d.until(lambda: s.peers is not None and len(s.peers) == 1)
        await d.type("/peers" + ENTER, lambda: "Bruno <bruno@x.gouv.fr>" in d.panel())
        await d.type(
            "/create Crise" + ENTER,
            lambda: s.snapshot.room is not None and s.snapshot.room.name == "Crise",
        )
        room = s.snapshot.room
        assert room is not None
        # Invite by directory search on the name.
        await d.type("/invite Bruno" + ENTER, lambda: d.said("Invitation sent."))

        def bruno_holds() -> bool:
            listed = json.loads(ok(cell, "--home", "bruno", "room", "list", "--json"))
            return any(r["room"] == room.room.hex() for r in listed)

        await d.until(bruno_holds, 30)
        ok(cell, "--home", "bruno", "room", "join", room.room.hex())
        await d.until(lambda: s.snapshot.room is not None and s.snapshot.room.members == 2, 30)
        await d.type("Bonjour Bruno" + ENTER, lambda: len(s.snapshot.timeline) == 1)
        # Delivery: Bruno's node acknowledges Alice's message.  Nothing else
        # arrives meanwhile: the app follows the receipts themselves.
        await d.until(lambda: s.snapshot.timeline[0].delivery == (1, 1), 30)
        assert "received by 1/1" in d.screen()
        # Bruno answers from the CLI, naming Alice: a mention, so a bell.
        ok(cell, "--home", "bruno", "room", "send", room.room.hex(), "Reçu, @Alice")
        await d.until(lambda: any(i.text == "Reçu, @Alice" for i in s.snapshot.timeline), 30)
        mention = next(i for i in s.snapshot.timeline if i.text == "Reçu, @Alice")
        assert mention.mention and not mention.mine and not mention.verified
        await d.until(lambda: d.bells >= 1)

        # A file, sent from the composer; Bruno downloads it with the CLI.
        await d.type(f"/file {document}" + ENTER, lambda: any(i.file for i in s.snapshot.timeline))
        card = next(i for i in s.snapshot.timeline if i.file is not None)
        assert card.file is not None and card.file.name == "rapport.pdf"
        assert "rapport.pdf" in d.screen() and "/save" in d.screen()
        files = json.loads(ok(cell, "--home", "bruno", "files", room.room.hex(), "--json"))

        def bruno_downloads() -> bool:
            done = cli(
                cell,
                "--home",
                "bruno",
                "download",
                room.room.hex(),
                files[0]["id"],
                "--out",
                str(saved / "copie.pdf"),
            )
            return done.returncode == 0

        await d.until(lambda: len(files) == 1 and bruno_downloads(), 60)
        assert (saved / "copie.pdf").read_bytes() == document.read_bytes()

        # Bruno sends one back; Alice saves it from the app (through her node).
        back = tmp_path / "photo.txt"
        back.write_text("retour de Bruno\n")
        ok(cell, "--home", "bruno", "send-file", room.room.hex(), str(back))
        await d.until(lambda: sum(1 for i in s.snapshot.timeline if i.file) == 2, 30)
        number = next(
            i.number for i in s.snapshot.timeline if i.file and i.file.name == "photo.txt"
        )
        await d.type(f"/save {number} {saved}" + ENTER, lambda: d.said("Saved:"), 60)
        assert (saved / "photo.txt").read_text() == "retour de Bruno\n"

        # Verify Bruno: the safety number, then the mark on his messages goes.
        await d.type("/verify bruno@x.gouv.fr" + ENTER, lambda: s.pending is not None)
        assert any(len(t.split()) >= 6 for t in d.notices())  # the number, in groups
        await d.type("yes" + ENTER, lambda: d.said("is verified on this device"))
        await d.until(lambda: all(i.verified for i in s.snapshot.timeline), 10)
        assert "[unverified device]" not in d.screen()

    drive(cell, scenario)


def test_french_by_default_and_a_wrong_passphrase_is_one_sentence(cell: Path) -> None:
    async def scenario(d: Driver) -> None:
        await d.type("/aide" + ENTER, lambda: "/inviter" in d.panel() or "inviter" in d.panel())
        assert "Commandes" in d.session.shown[0] if d.session.shown else False
        await d.type("/inconnue" + ENTER, lambda: d.said("Commande inconnue"))

    drive(cell, scenario, lang="fr")

    async def wrong() -> int:
        with create_pipe_input() as pipe:
            session = ChatSession(Home(cell / "alice"), Translator("fr"), "pas la bonne")
            app = ChatApp(session, Translator("fr"), input=pipe, output=DummyOutput())
            return await app.run_async()

    assert asyncio.run(wrong()) == 1


PAGE_UP = "\x1b[5~"
PAGE_DOWN = "\x1b[6~"
ARROW_UP = "\x1b[A"
CTRL_P = "\x10"
ESCAPE = "\x1b"
TAB = "\t"


def test_keys_switch_rooms_scroll_recall_complete_and_close(cell: Path) -> None:
    async def scenario(d: Driver) -> None:
        s = d.session

        def shown(name: str) -> bool:
            return s.snapshot.room is not None and s.snapshot.room.name == name

        await d.type("/create Alpha" + ENTER, lambda: shown("Alpha"))
        alpha = s.current
        await d.type("/create Beta" + ENTER, lambda: shown("Beta"))
        beta = s.current
        # The rooms list is by name: Ctrl-P goes up to Alpha, Ctrl-N back to Beta.
        await d.type(CTRL_P, lambda: s.current == alpha)
        await d.type(CTRL_N, lambda: s.current == beta)
        await d.type(CTRL_N, lambda: s.current != beta)  # and round the list
        await d.type(CTRL_P, lambda: s.current == beta)

        for n in range(1, 31):
            await d.type(f"ligne {n}" + ENTER, lambda n=n: len(s.snapshot.timeline) == n)
        bottom = d.app._timeline_cursor().y
        await d.type(PAGE_UP, lambda: d.app.scroll == 10)
        assert d.app._timeline_cursor().y == bottom - 10
        await d.type(PAGE_UP, lambda: d.app.scroll == 20)
        await d.type(PAGE_DOWN, lambda: d.app.scroll == 10)
        await d.type(PAGE_DOWN + PAGE_DOWN, lambda: d.app.scroll == 0)
        assert d.app._timeline_cursor().y == bottom

        # ↑ recalls what was sent; the recalled line is not sent again by itself.
        await d.type(ARROW_UP, lambda: d.app.composer.buffer.text == "ligne 30")
        d.app.composer.buffer.reset()

        # Tab completes a /command.
        composer = d.app.composer.buffer
        await d.type("/hel" + TAB, lambda: composer.text == "/help")
        composer.reset()
        # …room names after /go, and @names of the room's people.
        await d.type("/go Alp" + TAB, lambda: composer.text == "/go Alpha")
        composer.reset()
        await d.type("merci @ali" + TAB, lambda: composer.text == "merci @Alice")
        composer.reset()

        # A listing opens over the timeline; Escape closes it.
        await d.type("/help" + ENTER, lambda: s.shown is not None)
        await d.type(ESCAPE, lambda: s.shown is None, timeout=5)
        assert len(s.snapshot.timeline) == 30

    drive(cell, scenario)

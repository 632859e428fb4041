"""``p2ptchap chat --demo``: the demo cell and its simulated colleagues, for real.

The app itself is driven under tmux in tests/net/test_tui_tmux.py; here the
cell the app opens on is checked with the CLI as Alice would act: her
invitation arrives, she joins, writes, and the colleagues answer over the
real nodes.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2ptchap.i18n import Translator
from p2ptchap.ui import colleagues
from p2ptchap.ui.chat_demo import demo_cell
from p2ptchap.ui.demo import DEMO_PASSPHRASE, FORUM, ROOM
from tests.ui.process import run_p2ptchap

TR = Translator("en")


def test_a_colleague_answers_a_question_in_reply_and_names_a_file() -> None:
    rng = random.Random(1)
    text, threaded = colleagues.answer_for("La digue tient ?", None, "Alice", rng, TR)
    assert threaded and text in {TR(a) for a in colleagues.ANSWERS}
    text, threaded = colleagues.answer_for("", "carte.pdf", "Alice", rng, TR)
    assert threaded and "carte.pdf" in text
    text, threaded = colleagues.answer_for("Bonjour à tous", None, "Alice", rng, TR)
    assert not threaded and "Alice" in text


def test_a_colleague_is_named_with_or_without_at_sign_or_accent() -> None:
    names = ["Bruno", "Claire", "Éric"]
    assert colleagues.addressed("@bruno tu confirmes ?", names) == ["Bruno"]
    assert colleagues.addressed("Eric, Claire: merci", names) == ["Claire", "Éric"]
    assert colleagues.addressed("rien pour personne (brunoise)", names) == []


def _alice(root: Path) -> Callable[..., object]:
    def run(*args: str) -> object:
        data = args[-1] != "!"
        args = (*args, "--json") if data else args[:-1]
        done = run_p2ptchap(root, "--home", "alice", *args, passphrase=DEMO_PASSPHRASE)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if data else done.stdout

    return run


def _wait(predicate: Callable[[], object], what: str, limit: float = 60) -> object:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_the_demo_cell_invites_alice_and_her_colleagues_answer() -> None:
    out = io.StringIO()
    with demo_cell(TR, out) as home:
        root = home.parent
        alice = _alice(root)

        def invited() -> bool:
            rooms = alice("room", "list")
            assert isinstance(rooms, list)
            return any(r["name"] == ROOM and r["membership"] == "invite" for r in rooms)

        _wait(invited, "Bruno's invitation")
        rooms = alice("room", "list")
        assert isinstance(rooms, list)
        # Claire's direct conversation is there too, and the forum is in the directory.
        assert any(r["direct"] for r in rooms)
        forums = alice("directory", "rooms")
        assert isinstance(forums, list) and [f["name"] for f in forums] == [FORUM]
        alice("room", "join", ROOM, "!")

        def said(room: str, needle: str) -> list[dict[str, object]]:
            found = alice("room", "read", room)
            assert isinstance(found, list)
            return [m for m in found if needle in str(m.get("text"))]

        # The room's history is shared: what was said before Alice came is readable.
        _wait(lambda: said(ROOM, "Red Cross"), "Éric's opening message")
        _wait(lambda: said(ROOM, "Welcome Alice"), "Bruno's welcome")
        alice("room", "send", ROOM, "@Claire la D1 est-elle rouverte ?", "!")
        question = said(ROOM, "la D1 est-elle")[0]
        answers = _wait(
            lambda: [m for m in said(ROOM, "") if m.get("reply_to") == question["id"]],
            "Claire's answer",
        )
        assert isinstance(answers, list)
        assert [a["name"] for a in answers] == ["Claire Durand"]
    assert not root.exists()
    assert "Preparing the demo cell" in out.getvalue()

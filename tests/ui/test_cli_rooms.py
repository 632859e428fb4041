"""The room and directory commands, as real processes on a real node folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.net.cell import PASSPHRASE, make_cell
from tests.ui.process import run_p2ptchap


def run(
    root: Path, home: str, *args: str, lang: str = "en", passphrase: bool = True
) -> subprocess.CompletedProcess[str]:
    secret = PASSPHRASE if passphrase else None
    return run_p2ptchap(root, "--home", home, *args, passphrase=secret, lang=lang)


def one_sentence(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cell(tmp_path_factory.mktemp("rooms"), ["alice"])


def test_create_list_show_and_set_a_room(cell: Path) -> None:
    created = run(cell, "alice", "room", "create", "Cellule de crise", "--topic", "Crue")
    assert created.returncode == 0, created.stderr
    assert "Room 'Cellule de crise' created" in created.stdout
    listed = json.loads(run(cell, "alice", "room", "list", "--json", passphrase=False).stdout)
    assert [(r["name"], r["public"], r["role"]) for r in listed] == [
        ("Cellule de crise", False, "admin")
    ]
    public = run(cell, "alice", "room", "set", "Cellule de crise", "--access", "public", lang="fr")
    assert public.returncode == 0, public.stderr
    assert "accessible à tous les agents" in public.stdout
    rooms = json.loads(run(cell, "alice", "directory", "rooms", "crue", "--json").stdout)
    assert [r["name"] for r in rooms] == ["Cellule de crise"]
    shown = json.loads(run(cell, "alice", "room", "show", "Cellule de crise", "--json").stdout)
    assert shown["public"] and shown["topic"] == "Crue"
    assert [(m["email"], m["role"]) for m in shown["members"]] == [("alice@x.gouv.fr", "admin")]
    text = run(cell, "alice", "room", "show", listed[0]["room"][:10], lang="fr")
    assert "administrateur" in text.stdout


def test_invite_by_email_and_directory_search(cell: Path) -> None:
    run(cell, "alice", "room", "create", "Salon privé")
    invited = run(cell, "alice", "room", "invite", "Salon privé", "Chloe.Martin@X.gouv.fr")
    assert invited.returncode == 0, invited.stderr
    assert "chloe.martin@x.gouv.fr is invited" in invited.stdout
    found = json.loads(run(cell, "alice", "directory", "search", "ALICE", "--json").stdout)
    assert [p["email"] for p in found] == ["alice@x.gouv.fr"]
    nobody = run(cell, "alice", "room", "invite", "Salon privé", "Jean Inconnu")
    assert "Nobody in the directory matches" in one_sentence(nobody, 2)


def test_refusals_are_one_sentence(cell: Path) -> None:
    assert "no such room" in one_sentence(run(cell, "alice", "room", "join", "Nulle part"))
    run(cell, "alice", "room", "create", "Solo")
    refused = run(cell, "alice", "room", "kick", "Solo", "alice@x.gouv.fr")
    assert "does not apply" in one_sentence(refused)
    wrong = run(cell, "alice", "room", "create", "Encore", lang="en", passphrase=False)
    assert "passphrase" in one_sentence(wrong, 2).lower()
    nothing = run(cell, "alice", "room", "set", "Solo")
    assert "Say what to change" in one_sentence(nothing, 2)

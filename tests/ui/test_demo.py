"""``p2ptchap demo``: the crisis cell on one machine, run for real, and its failure paths."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from p2ptchap.i18n import Translator
from p2ptchap.ui import demo
from p2ptchap.ui.demo import DemoFailed, Person
from tests.ui.process import run_p2ptchap


def _processes_in(folder: Path) -> list[str]:
    """Processes whose working directory is ``folder`` (Linux), as "pid command"."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd == str(folder):
            found.append(f"{entry.name} {command}")
    return found


@pytest.mark.slow
def test_the_crisis_cell_demo_runs_end_to_end(tmp_path: Path) -> None:
    # The demo runs about a minute here; the helper's default limit is for one command.
    done = run_p2ptchap(tmp_path, "demo", passphrase=None, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "every check held" in out
    assert "FAILED" not in out
    # Four node processes, on loopback, told where Alice's is.
    assert out.count(" up --port 0 --no-mdns") == 5  # four starts and one restart
    assert out.count("--peer 127.0.0.1:") == 4
    # The external is marked, let in where externals are allowed, kept out elsewhere.
    assert "Éric Roux <eric.roux@croix-rouge.fr> (external) — member, join" in out
    assert "This room does not accept external participants" in out
    assert "External accounts cannot browse the agents' directory or the public rooms." in out
    # The file, the delivery counts, the catch-up.
    assert "byte-for-byte identical to Alice's" in out
    assert "Alice's first message: received by 3/3 devices" in out
    assert "Alice's message of 6 h: received by 2/3 devices (not yet: Bruno Lefèvre)" in out
    assert "Alice's message of 6 h: received by 3/3 devices" in out
    assert re.search(r"caught up \d+\.\d s after its restart", out)
    # The account: every step timed, in the summary too.
    summary = out.split("== What happened", 1)[1]
    assert len(re.findall(r"^ +\d+\. .+ — \d+\.\d s$", summary, re.MULTILINE)) == 14
    # Nothing left behind: no folder, no process.
    found = re.search(r"^Crisis-cell demo in (\S+)$", out, re.MULTILINE)
    assert found, out
    folder = Path(found.group(1))
    assert not folder.exists()
    if Path("/proc/self/cwd").exists():
        assert _processes_in(folder) == []


def _fake_node() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.mark.parametrize(
    ("problem", "code", "says"),
    [
        (DemoFailed("the invitation was lost."), 1, "FAILED at step 1 ("),
        (KeyboardInterrupt(), 130, "interrupted at step 1 ("),
        (RuntimeError("a bug"), 1, "RuntimeError: a bug"),
    ],
)
def test_a_failing_step_is_named_and_every_process_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: BaseException, code: int, says: str
) -> None:
    node = _fake_node()

    def first_step(self: demo._Demo) -> None:
        self.nodes["alice"] = node
        raise problem

    monkeypatch.setattr(demo._Demo, "authority", first_step)
    monkeypatch.setattr(demo.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "demo"))
    (tmp_path / "demo").mkdir()
    out = io.StringIO()
    assert demo.run(Translator("en"), out) == code
    assert says in out.getvalue()
    assert node.wait(timeout=5) is not None
    assert not (tmp_path / "demo").exists()


def test_an_unexpected_answer_fails_in_one_sentence_naming_the_command(tmp_path: Path) -> None:
    walk = demo._Demo(tmp_path, Translator("en"), io.StringIO(), "en")
    with pytest.raises(DemoFailed) as failure:
        walk.run(Person("nobody", "nobody@interieur.gouv.fr", "Nobody"), "whoami")
    command = "'p2ptchap --home nobody whoami'"
    assert str(failure.value) == f"{command} ended with exit code 1 instead of 0."


def test_the_report_is_a_well_formed_pdf() -> None:
    pdf = demo._report_pdf()
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.endswith(b"%%EOF\n")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    assert pdf[xref:].startswith(b"xref\n0 7\n")
    offsets = [int(line[:10]) for line in pdf[xref:].split(b"\n")[3:9]]
    for number, offset in enumerate(offsets, 1):
        assert pdf[offset:].startswith(b"%d 0 obj\n" % number)
    assert demo._report_pdf() == pdf

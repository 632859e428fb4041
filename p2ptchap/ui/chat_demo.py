"""``p2ptchap chat --demo``: the app as Alice, in a demo cell whose colleagues answer.

:func:`demo_cell` prepares what the app needs, for real and in a temporary
folder: the demo's authority and its four people enrolled with the same
commands as ``p2ptchap demo`` (:class:`p2ptchap.ui.demo._Demo`), one node
process each on loopback (Alice's first, the others given her address),
and the simulated colleagues of :mod:`p2ptchap.ui.colleagues` in a child
process.  What the preparation commands printed goes to a file in the
folder, not to the screen the app is about to take.  Everything is stopped
and the folder deleted on the way out, whatever happens; the kernel stops
the children too if this process is killed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from p2ptchap.core.errors import N_, LocalError
from p2ptchap.i18n import choose_language
from p2ptchap.ui.cli_chat import stop_child
from p2ptchap.ui.demo import ALICE, CELL, DemoFailed, _Demo, _die_with_the_demo

#: What the preparation printed, kept in the demo's folder while it runs.
PREPARATION_LOG = "preparation.txt"


class DemoUnavailable(LocalError):
    """The demo cell could not be prepared (a step failed: the message says which)."""

    default_message = N_("The demo cell could not be prepared: {reason}")


@contextlib.contextmanager
def demo_cell(tr: Callable[[str], str], out: TextIO) -> Iterator[Path]:
    """Prepare and run the cell (see the module documentation); yield Alice's home."""
    language = getattr(tr, "language", None) or choose_language()
    root = Path(tempfile.mkdtemp(prefix="p2ptchap-chat-demo-"))
    logs = root / "logs"
    logs.mkdir()
    colleagues: subprocess.Popen[bytes] | None = None
    with (root / PREPARATION_LOG).open("w", encoding="utf-8") as account:
        demo = _Demo(root, tr, account, language)
        try:
            print(tr("Preparing the demo cell in {folder}…").format(folder=root), file=out)
            try:
                demo.authority()
                demo.enrol()
                demo.start(ALICE)
                demo.start(*(who for who in CELL if who is not ALICE))
            except DemoFailed as failure:
                raise DemoUnavailable(str(failure), reason=str(failure)) from None
            with (logs / "colleagues.log").open("ab") as log:
                colleagues = subprocess.Popen(  # noqa: S603 - our own program
                    [sys.executable, "-m", "p2ptchap.ui.colleagues", str(root), "--lang", language],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=_die_with_the_demo,  # noqa: PLW1509 - no thread started yet
                )
            yield root / ALICE.home
        finally:
            if colleagues is not None:
                stop_child(colleagues)
            demo.stop_everything()
    shutil.rmtree(root, ignore_errors=True)

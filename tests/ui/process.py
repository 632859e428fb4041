"""Running the ``p2ptchap`` command as a real process, as scripts and people do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_p2ptchap(
    cwd: Path,
    *args: str,
    passphrase: str | None,
    lang: str = "en",
    timeout: float = 120,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m p2ptchap ARGS`` in ``cwd`` with a clean environment.

    No inherited ``P2PTCHAP_*`` or locale variables; ``lang`` chosen; the
    passphrase in ``$P2PTCHAP_PASSPHRASE`` unless ``None``; ``env`` added; no terminal
    (``stdin``, if given, is what the command reads).
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("P2PTCHAP_", "LC_", "LANG"))}
    clean["P2PTCHAP_LANG"] = lang
    if passphrase is not None:
        clean["P2PTCHAP_PASSPHRASE"] = passphrase
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "p2ptchap", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        timeout=timeout,
        check=False,
    )

"""How a CLI command reaches the rooms: through the running node, or alone.

With a node running in the home, every room, directory and file command is
one request on its control socket (:mod:`p2ptchap.api.control`): the node
carries it out with its unlocked keys (no passphrase asked again, no key
derivation per command) and sends what it signed at once.  With no node,
the command runs the same operation (:mod:`p2ptchap.api.operations`) on the
home's database itself — asking for the passphrase when it needs the keys —
and says on standard error that no node is running and how to start one:
what it wrote goes out when a node starts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from p2ptchap.api import control, operations
from p2ptchap.core.errors import N_
from p2ptchap.files import FileSettings, open_files
from p2ptchap.node import load_config
from p2ptchap.rooms import open_rooms
from p2ptchap.ui.context import Context

#: Seconds to wait for each line of the node's answer (a progress line counts).
ANSWER_TIMEOUT = 120.0

#: ``progress(done, total)``.
Progress = Callable[[int, int], None]

OFFLINE_WRITE = N_(
    "No node is running in {home}: this is saved on this computer and goes out "
    "when you start one ('p2ptchap up' or 'p2ptchap chat')."
)
OFFLINE_READ = N_(
    "No node is running in {home}: this is what this computer holds; start one "
    "('p2ptchap up' or 'p2ptchap chat') to receive what is new."
)


def execute(ctx: Context, name: str, progress: Progress | None = None, /, **arguments: Any) -> Any:
    """Run operation ``name`` through the node, or here if none runs; its result."""
    operation = operations.OPERATIONS[name]

    def relay(report: dict[str, Any]) -> None:
        done, total = report.get("done"), report.get("total")
        if progress is not None and isinstance(done, int) and isinstance(total, int):
            progress(done, total)

    try:
        return control.call(
            ctx.home.root,
            name,
            timeout=ANSWER_TIMEOUT,
            progress=relay if progress is not None else None,
            **arguments,
        )
    except control.NodeNotRunning:
        pass  # nothing was asked: do it here
    workspace = local_workspace(ctx, secret=operation.secret)
    result = operations.run(workspace, name, arguments, progress or _ignore)
    # Said once it worked: a refusal stays the one sentence the user reads.
    if not ctx.offline_said or operation.writes:
        template = OFFLINE_WRITE if operation.writes else OFFLINE_READ
        print(ctx.tr(template).format(home=ctx.home.root), file=sys.stderr)
        ctx.offline_said = True
    return result


def local_workspace(ctx: Context, *, secret: bool) -> operations.Workspace:
    """The home's rooms and files, opened by this process (keys only if ``secret``)."""
    rooms = open_rooms(ctx.home, ctx.passphrase() if secret else None, time.time, ctx.rng)
    files = open_files(rooms, ctx.home, FileSettings.from_config(load_config(ctx.home, "files")))
    return operations.Workspace(rooms, files)


def _ignore(_done: int, _total: int) -> None:
    return None

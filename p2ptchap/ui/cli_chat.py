"""``p2ptchap chat``: open the terminal app (starting this home's node if none runs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from typing import Any

from p2ptchap.core.errors import N_, UsageError
from p2ptchap.i18n import Translator
from p2ptchap.store.home import Home
from p2ptchap.ui.context import EXIT_FAILURE, Context

NODE_LOG = "chat-node.log"


def cmd_chat(ctx: Context, args: argparse.Namespace) -> int:
    from p2ptchap.ui.tui.app import ChatApp, node_running, start_node  # noqa: PLC0415
    from p2ptchap.ui.tui.session import ChatSession  # noqa: PLC0415

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "not a terminal",
            user_message=N_(
                "'p2ptchap chat' needs a terminal; for scripts use the other commands "
                "(room send, room read --json…)."
            ),
        )
    if args.demo:
        return _chat_demo(ctx)
    passphrase = ctx.passphrase()
    node: subprocess.Popen[bytes] | None = None
    if not args.no_node and not node_running(ctx.home.root):
        node = start_node(ctx.home.root, passphrase, ctx.home.root / NODE_LOG)
    session = ChatSession(ctx.home, ctx.tr, passphrase)
    app = ChatApp(session, ctx.tr)
    app.node_started = node is not None
    try:
        result = asyncio.run(app.run_async())
    finally:
        if node is not None:
            stop_child(node)
            ctx.say("Node stopped.")
    return result if result == 0 else EXIT_FAILURE


def _chat_demo(ctx: Context) -> int:
    """The app as Alice in the demo cell, with colleagues who answer (see ``ui/chat_demo``)."""
    from p2ptchap.ui.chat_demo import demo_cell  # noqa: PLC0415
    from p2ptchap.ui.demo import DEMO_PASSPHRASE  # noqa: PLC0415
    from p2ptchap.ui.tui.app import ChatApp  # noqa: PLC0415
    from p2ptchap.ui.tui.session import ChatSession  # noqa: PLC0415

    with demo_cell(ctx.tr, ctx.out) as alice:
        session = ChatSession(Home(alice), ctx.tr, DEMO_PASSPHRASE)
        result = asyncio.run(ChatApp(session, ctx.tr).run_async())
    ctx.say("Demo over: its nodes are stopped and its folder deleted.")
    return result if result == 0 else EXIT_FAILURE


def stop_child(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within 10 s."""
    node.terminate()
    try:
        node.wait(timeout=10)
    except subprocess.TimeoutExpired:
        node.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=5)


def add_commands(commands: Any, command: Any, tr: Translator) -> None:
    sub = command(commands, "chat", cmd_chat, "open the terminal app (starts the node if needed)")
    sub.add_argument(
        "--no-node",
        action="store_true",
        help=tr("do not start a node: only show what this home holds"),
    )
    sub.add_argument(
        "--demo",
        action="store_true",
        help=tr(
            "try the app as Alice in a demo crisis cell (temporary folder, colleagues "
            "who answer); --home is not used"
        ),
    )

"""Network commands of the CLI: ``up``, ``peers``, ``network-key``.

``up`` runs the node in the foreground and logs, in the user's language,
peers found, connected, refused (with the reason) and lost.  ``peers`` asks
the running node through the control socket.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from p2ptchap import accounts
from p2ptchap.api import control
from p2ptchap.core.errors import N_, UsageError
from p2ptchap.core.pairing import DEFAULT_PORT as PAIRING_PORT
from p2ptchap.files import FileSettings
from p2ptchap.i18n import Translator
from p2ptchap.net import pairing as pairing_net
from p2ptchap.net.peers import PeerSettings
from p2ptchap.node import (
    DEFAULT_PORT,
    Node,
    NodeConfig,
    check_interface,
    load_config,
    parse_peer,
    read_network_key,
)
from p2ptchap.store.files import write_new
from p2ptchap.ui.context import Context, emit_json


class TranslatingFormatter(logging.Formatter):
    """Formats log records in the user's language: ``%``-templates are msgids."""

    def __init__(self, tr: Translator) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        self.tr = tr

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, str):
            record.msg = self.tr(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(self.tr(a) if isinstance(a, str) else a for a in record.args)
        return super().format(record)


def _node_config(ctx: Context, args: argparse.Namespace) -> NodeConfig:
    """Command-line options over ``HOME/config.toml`` over defaults."""
    file = load_config(ctx.home)
    peers = [parse_peer(str(p)) for p in file.get("peers", [])]
    peers += [parse_peer(p) for p in args.peer]
    interface = args.interface or file.get("interface")
    key_path = args.network_key or file.get("network_key_file")
    port = args.port if args.port is not None else int(file.get("port", DEFAULT_PORT))
    read_receipts = load_config(ctx.home, "rooms").get("read_receipts", False)
    if not isinstance(read_receipts, bool):
        raise UsageError(
            "read_receipts",
            user_message=N_("In config.toml, [rooms] read_receipts must be true or false."),
        )
    per_address = file.get("max_peers_per_address", PeerSettings().max_peers_per_host)
    if not isinstance(per_address, int) or isinstance(per_address, bool) or per_address < 1:
        raise UsageError(
            "max_peers_per_address",
            user_message=N_(
                "In config.toml, [network] max_peers_per_address must be a whole number of 1 "
                "or more."
            ),
        )
    return NodeConfig(
        port=port,
        settings=PeerSettings(max_peers_per_host=per_address),
        interface=check_interface(str(interface)) if interface else None,
        peers=tuple(peers),
        mdns=not args.no_mdns and bool(file.get("mdns", True)),
        network_key=read_network_key(Path(key_path)) if key_path else None,
        read_receipts=read_receipts,
        files=FileSettings.from_config(load_config(ctx.home, "files")),
    )


def _log_to_stderr(ctx: Context, *, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TranslatingFormatter(ctx.tr))
    root = logging.getLogger("p2ptchap")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def cmd_up(ctx: Context, args: argparse.Namespace) -> int:
    config = _node_config(ctx, args)
    node = Node(ctx.home, ctx.passphrase(), config)
    _log_to_stderr(ctx, verbose=args.verbose)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(node.run)
                ctx.say("Node running on port {port}; Ctrl-C to stop.", port=port)
                ctx.out.flush()
                async for _ in signals:
                    await node.stop()
                    break

    try:
        trio.run(main)
    finally:
        node.close()
    ctx.say("Node stopped.")
    return 0


def cmd_peers(ctx: Context, args: argparse.Namespace) -> int:
    peers: list[dict[str, Any]] = control.call(ctx.home.root, "peers")
    if args.json:
        emit_json(ctx, peers)
        return 0
    if not peers:
        ctx.say(
            "No peer connected. If other nodes run on this network, multicast may be "
            "blocked: give a reachable node with --peer HOST:PORT."
        )
        return 0
    for peer in peers:
        rtt = "—" if peer["rtt_ms"] is None else f"{peer['rtt_ms']:.1f} ms"
        ctx.say(
            "{name} <{email}>  {device}  {address}  {via}  {since}  {rtt}",
            name=peer["name"],
            email=peer["email"],
            device=peer["device"],
            address=peer["address"],
            via=ctx.tr(peer["via"]),
            since=peer["since"],
            rtt=rtt,
        )
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    status: dict[str, Any] = control.call(ctx.home.root, "status")
    if args.json:
        emit_json(ctx, status)
        return 0
    ctx.say(
        "Node of {email}, device {device}, port {port}: {peers} peer(s) connected.",
        email=status["email"],
        device=status["device"],
        port=status["port"],
        peers=status["peers"],
    )
    for reason, count in sorted(status["rejected"].items()):
        ctx.say("Refused {count} time(s): {reason}", count=count, reason=ctx.tr(reason))
    waiting = status.get("waiting_for_keys", 0)
    if waiting:
        ctx.say(
            N_("{count} message(s) waiting for their key (asked of their senders' devices)."),
            count=waiting,
        )
    return 0


def cmd_network_key(ctx: Context, args: argparse.Namespace) -> int:
    write_new(args.out, (os.urandom(32).hex() + "\n").encode("ascii"))
    ctx.say(
        "Network key written to {path}; give it to every node (--network-key) "
        "over a trusted channel.",
        path=args.out,
    )
    return 0


# How each peer was found, shown through ctx.tr.
VIA_WORDS = (N_("mdns"), N_("static"), N_("gossip"), N_("incoming"))


def add_commands(commands: Any, command: Callable[..., Any], tr: Translator) -> None:
    """Add the network commands to the CLI's parser."""
    sub = command(commands, "up", cmd_up, "run this node on the network until Ctrl-C")
    sub.add_argument(
        "--port", type=int, default=None, help=tr("TCP port to listen on (0 = any; default 7755)")
    )
    sub.add_argument(
        "--interface", default=None, help=tr("IPv4 address of the network to use (default: all)")
    )
    sub.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=tr("a node to connect to where multicast does not pass (repeat for several)"),
    )
    sub.add_argument("--no-mdns", action="store_true", help=tr("do not use mDNS discovery"))
    sub.add_argument(
        "--network-key", type=Path, default=None, help=tr("the organisation's network key file")
    )
    sub.add_argument("--verbose", action="store_true", help=tr("log more details"))

    sub = command(commands, "peers", cmd_peers, "list the peers of the running node")
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(commands, "status", cmd_status, "show the running node's state")
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(commands, "network-key", cmd_network_key, "create an organisation network key")
    sub.add_argument("--out", type=Path, required=True, help=tr("file to write"))


# --- pairing over the LAN ------------------------------------------------------------


async def _ask_approval(ctx: Context, request: pairing_net.Request) -> bool:
    if request.kind == "device":
        ctx.say(
            "New device '{name}' for {email}, fingerprint {fingerprint}.",
            name=request.name,
            email=request.email,
            fingerprint=request.fingerprint,
        )
    else:
        ctx.say(
            "Enrolment request: {name} <{email}> as {kind}, account fingerprint {fingerprint}.",
            name=request.name,
            email=request.email,
            kind=ctx.tr(request.kind),
            fingerprint=request.fingerprint,
        )
    ctx.say("Code: {code}", code=request.code)
    ctx.out.write(ctx.tr("Is the same code shown on the other screen? Approve? [y/N] "))
    ctx.out.flush()
    answer = await trio.to_thread.run_sync(sys.stdin.readline)
    approved = answer.strip().lower()[:1] in {"y", "o"}
    ctx.say("Approved." if approved else "Refused.")
    return approved


async def _show_code(ctx: Context, code: str, other: str) -> None:
    await trio.lowlevel.checkpoint()
    ctx.say(
        "Code: {code} — check that '{other}' shows the same code, then wait for approval.",
        code=code,
        other=other,
    )
    ctx.out.flush()


def _serve_until_done(ctx: Context, args: argparse.Namespace, run: Any) -> int:
    """Run a pairing server until Ctrl-C (or, with --once, one approved pairing)."""
    host = check_interface(args.interface) if args.interface else None
    _log_to_stderr(ctx)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def serve_then_stop(
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    await run(host, args.port, task_status=task_status)
                    nursery.cancel_scope.cancel()  # --once: one pairing done

                port = await nursery.start(serve_then_stop)
                ctx.say("Waiting for requests on port {port}; Ctrl-C to stop.", port=port)
                ctx.out.flush()
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


def _now() -> int:
    return int(time.time())


def cmd_authority_serve(ctx: Context, args: argparse.Namespace) -> int:
    passphrase = ctx.passphrase()

    async def run(host: str | None, port: int, task_status: Any) -> None:
        await pairing_net.serve_authority(
            ctx.home,
            passphrase,
            host,
            port,
            lambda request: _ask_approval(ctx, request),
            days=args.days,
            now=_now,
            rng=os.urandom,
            once=args.once,
            task_status=task_status,
        )

    return _serve_until_done(ctx, args, run)


def cmd_device_serve(ctx: Context, args: argparse.Namespace) -> int:
    passphrase = ctx.passphrase()

    async def run(host: str | None, port: int, task_status: Any) -> None:
        await pairing_net.serve_device_link(
            ctx.home,
            passphrase,
            host,
            port,
            lambda request: _ask_approval(ctx, request),
            now=_now,
            rng=os.urandom,
            once=args.once,
            task_status=task_status,
        )

    return _serve_until_done(ctx, args, run)


def enroll_from(ctx: Context, address: str) -> int:
    """``enroll --from HOST:PORT``."""
    certificate = trio.run(
        partial(
            pairing_net.enrol_from,
            ctx.home,
            parse_peer(address),
            lambda code, other: _show_code(ctx, code, other),
            now=_now,
            rng=os.urandom,
        )
    )
    ctx.say(
        "Enrolled: {name} <{email}>, {kind}, certified by '{authority}' until {until}.",
        name=certificate.display_name,
        email=certificate.email,
        kind=ctx.tr(certificate.kind.value),
        authority=certificate.issuer.name,
        until=accounts.iso(certificate.expires),
    )
    return 0


def cmd_device_link(ctx: Context, args: argparse.Namespace) -> int:
    passphrase = ctx.passphrase(confirm=True)
    device = trio.run(
        partial(
            pairing_net.link_device,
            ctx.home,
            parse_peer(args.source),
            args.name,
            passphrase,
            lambda code, other: _show_code(ctx, code, other),
            now=_now,
            rng=os.urandom,
        )
    )
    ctx.say(
        "This computer is now the device '{name}' ({id}).", name=device.name, id=device.device_id
    )
    return 0


def add_pairing_arguments(sub: Any, tr: Translator) -> None:
    """Options shared by the two pairing servers."""
    sub.add_argument(
        "--port", type=int, default=PAIRING_PORT, help=tr("TCP port to listen on (default 7756)")
    )
    sub.add_argument(
        "--interface", default=None, help=tr("IPv4 address of the network to use (default: all)")
    )
    sub.add_argument("--once", action="store_true", help=tr("stop after one approved request"))

"""The file commands: ``send-file``, ``files``, ``download``, ``forward``.

Like the room commands, each is carried out by the running node through
its control socket, or on the home's database when no node runs
(:mod:`p2ptchap.ui.backend`).  Sending encrypts the file into the blob
store and posts its message; the node serves it to the members who fetch
it.  Downloading asks the running node to fetch the file from every peer
that holds it, shows the progress, and then has it decrypted to the path
given; a download interrupted (Ctrl-C, a node restarted, a peer gone)
resumes where it was.  Paths are sent to the node made absolute: it does
not share the command's working folder.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from p2ptchap.api.control import call
from p2ptchap.core.errors import N_, LocalError
from p2ptchap.i18n import Translator
from p2ptchap.store.blobs import mib
from p2ptchap.ui.backend import execute
from p2ptchap.ui.context import Context, emit_json

#: Seconds between two looks at a download's progress.
POLL = 0.25

FILE_STATES = (
    N_("complete"),
    N_("partial"),
    N_("wanted"),
    N_("remote"),
    N_("locked"),
)


class DownloadStopped(LocalError):
    default_message = N_("The download was cancelled; run the command again to resume it.")


class ProgressLine:
    """A progress bar on standard error: redrawn in place on a terminal, every 10 % elsewhere."""

    def __init__(self, tr: Translator, label: str, stream: TextIO | None = None) -> None:
        self.tr = tr
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_step = -1
        self._last_draw = 0.0

    def __call__(self, done: int, total: int, rate: float | None = None) -> None:
        fraction = done / total if total else 1.0
        now = time.monotonic()
        if rate is None:
            elapsed = now - self.started
            rate = done / elapsed if elapsed > 0 else 0.0
        step = int(fraction * 10)
        if self.tty:
            if now - self._last_draw < 0.1 and done < total:
                return
        elif step == self._last_step and done < total:
            return
        self._last_draw, self._last_step = now, step
        filled = int(fraction * 24)
        line = self.tr("{label} [{bar}] {percent:3d} % {done}/{total} MiB, {rate} MiB/s").format(
            label=self.tr(self.label),
            bar="#" * filled + "." * (24 - filled),
            percent=int(fraction * 100),
            done=mib(done),
            total=mib(total),
            rate=mib(int(rate)),
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def cmd_send_file(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser().absolute()
    result = execute(
        ctx,
        "file-send",
        None if args.json else ProgressLine(ctx.tr, N_("Encrypting")),
        room=args.room,
        path=str(path),
        name=args.name,
        caption=args.caption,
    )
    if args.json:
        emit_json(ctx, {**result, "warnings": [ctx.tr(w) for w in result["warnings"]]})
        return 0
    ctx.say(
        N_("File sent (end-to-end encrypted): {name}, {size} MiB, {mime}; id {id}."),
        name=result["name"],
        size=mib(result["size"]),
        mime=result["mime"],
        id=result["id"][:12],
    )
    for warning in result["warnings"]:
        ctx.say("Warning: {warning}", warning=ctx.tr(warning))
    return 0


def cmd_files(ctx: Context, args: argparse.Namespace) -> int:
    entries = execute(ctx, "file-list", room=args.room)
    if args.json:
        emit_json(ctx, entries)
        return 0
    if not entries:
        ctx.say(N_("No files in this room."))
    for entry in entries:
        when = datetime.datetime.fromtimestamp(entry["ts"] / 1000).strftime("%d/%m %H:%M")
        ctx.say(
            N_("{id}  {when}  {sender}: {name} ({size} MiB, {mime}) — {state}"),
            id=entry["id"][:12],
            when=when,
            sender=entry["sender_name"],
            name=entry["name"] or ctx.tr(N_("[name encrypted, key not arrived]")),
            size=mib(entry["size"]),
            mime=entry["mime"] or "?",
            state=ctx.tr(str(entry["state"])),
        )
    return 0


def _wait_for(entry: dict[str, Any], fetch: Callable[..., Any], progress: ProgressLine) -> None:
    """Ask the node for the file and follow its progress until it is complete."""
    root, size = entry["root"], entry["size"]
    report = fetch("file-download", root=root, size=size)
    while report.get("state") != "complete":
        if report.get("state") in ("cancelled", "unknown"):
            raise DownloadStopped(root)
        rate = report.get("rate")
        progress(int(report.get("held") or 0), size, rate if isinstance(rate, float) else 0.0)
        time.sleep(POLL)
        report = fetch("file-progress", root=root)
    progress(size, size)


def cmd_download(ctx: Context, args: argparse.Namespace) -> int:
    entry = execute(ctx, "file-find", room=args.room, file=args.file)

    def fetch(cmd: str, **arguments: Any) -> Any:
        return call(ctx.home.root, cmd, **arguments)

    if args.cancel:
        fetch("file-cancel", root=entry["root"])
        ctx.say(N_("Download cancelled; what was received is kept for a later resume."))
        return 0
    if not entry["complete"]:
        _wait_for(entry, fetch, ProgressLine(ctx.tr, N_("Downloading")))
    if args.out is None:
        ctx.say(N_("File downloaded; give --out PATH to save it."))
        return 0
    saved = execute(
        ctx,
        "file-save",
        ProgressLine(ctx.tr, N_("Decrypting")),
        room=args.room,
        file=entry["id"],
        out=str(Path(args.out).expanduser().absolute()),
        replace=args.replace,
    )
    if args.json:
        emit_json(ctx, saved)
        return 0
    ctx.say(N_("Saved to {path}."), path=saved["path"])
    return 0


def cmd_forward(ctx: Context, args: argparse.Namespace) -> int:
    result = execute(ctx, "file-forward", room=args.room, file=args.file, to=args.to)
    ctx.say(N_("File forwarded (not uploaded again); id {id}."), id=result["id"][:12])
    return 0


def add_commands(commands: Any, command: Callable[..., Any], tr: Translator) -> None:
    """Add the file commands to the CLI's parser."""
    sub = command(commands, "send-file", cmd_send_file, "send a file to a room (encrypted)")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("path", help=tr("the file to send"))
    sub.add_argument("--name", default=None, help=tr("the name the others see"))
    sub.add_argument("--caption", default=None, help=tr("a message to go with it"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(commands, "files", cmd_files, "list a room's files")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(commands, "download", cmd_download, "download a file and save it (resumes)")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("file", help=tr("the file's id (see 'p2ptchap files')"))
    sub.add_argument("--out", default=None, help=tr("where to save it (a file or a folder)"))
    sub.add_argument("--replace", action="store_true", help=tr("replace an existing file"))
    sub.add_argument("--cancel", action="store_true", help=tr("stop a download in progress"))
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(commands, "forward", cmd_forward, "send a room's file to another room")
    sub.add_argument("room", help=tr("room name or id"))
    sub.add_argument("file", help=tr("the file's id (see 'p2ptchap files')"))
    sub.add_argument("to", help=tr("the room to send it to"))

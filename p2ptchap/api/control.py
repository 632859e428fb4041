"""The local control socket: how the CLI (and later the terminal app) talks to a running node.

A Unix socket ``HOME/control.sock``, mode 0600 inside the 0700 home folder,
so only the node's owner can use it.  The protocol is JSON lines: one
request object per line, ``{"cmd": NAME, ...}``, answered by one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": SENTENCE}``.
Requests are at most 64 KiB; a client that sends more, or garbage, gets an
error line and is disconnected.  Commands are registered by the node; later
issues add theirs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from p2ptchap.core.errors import N_, LocalError, StorageError

log = logging.getLogger("p2ptchap.control")

MAX_REQUEST = 64 * 1024
SOCKET_NAME = "control.sock"
LOCK_NAME = "node.lock"

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class NodeNotRunning(LocalError):
    """No node answers on this home's control socket."""

    default_message = N_("No node is running in {home}; start one with 'p2ptchap up'.")


class NodeAlreadyRunning(LocalError):
    """Another node already serves this home."""

    default_message = N_("A node is already running in {home}; stop it first.")


class ControlError(LocalError):
    """The node answered a control request with an error."""


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


class ControlServer:
    """Serves registered commands on the control socket of ``home``."""

    def __init__(self, home: Path) -> None:
        self.path = socket_path(home)
        self.home = home
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket (refusing if a live node already has it) and serve until cancelled."""
        # An exclusive lock on HOME/node.lock, held while we run, is what
        # tells a second node on the same home to stop (no check-then-act race).
        lock = _lock(self.home / LOCK_NAME)
        if lock is None:
            raise NodeAlreadyRunning(str(self.path), home=self.home)
        try:
            await self._serve_locked(task_status)
        finally:
            os.close(lock)

    async def _serve_locked(self, task_status: trio.TaskStatus[None]) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left behind by a node that was killed
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(str(self.path))
            # The home folder is 0700 already; the socket is made 0600 too.
            os.chmod(self.path, 0o600)
        except OSError as exc:
            sock.close()
            message = (
                N_("The home folder path is too long for the control socket: {path}.")
                if exc.errno in {errno.ENAMETOOLONG, errno.EINVAL}
                else N_("The control socket {path} could not be created.")
            )
            raise StorageError(str(exc), user_message=message, path=self.path) from exc
        sock.listen(16)
        listener = trio.SocketListener(sock)
        try:
            task_status.started()
            await trio.serve_listeners(self._serve_client, [listener])
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        # A client that hangs up early (Ctrl-C on 'p2ptchap peers') is normal;
        # it must never take the node down.
        try:
            async with stream:
                await self._converse(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("control client went away: %s", exc)

    async def _converse(self, stream: trio.SocketStream) -> None:
        buffer = b""
        while True:
            data = await stream.receive_some(MAX_REQUEST)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                await stream.send_all(await self._answer(line))
            if len(buffer) > MAX_REQUEST:
                await stream.send_all(_error_line("request too large"))
                return

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # deep nesting exhausts the parser's stack
            return _error_line("request is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error_line("request needs a 'cmd' string")
        handler = self._handlers.get(request["cmd"])
        if handler is None:
            return _error_line(f"unknown command {request['cmd']!r}")
        try:
            result = await handler(request)
        except LocalError as exc:
            return _error_line(exc.render())
        return (json.dumps({"ok": True, "result": result}, ensure_ascii=False) + "\n").encode()


def _error_line(message: str) -> bytes:
    return (json.dumps({"ok": False, "error": message}, ensure_ascii=False) + "\n").encode()


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``path``: its descriptor, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def call(home: Path, cmd: str, timeout: float = 5.0, **arguments: Any) -> Any:
    """Send one command to the node running in ``home``; return its result.

    Blocking (for the CLI).  Raises :class:`NodeNotRunning` or
    :class:`ControlError`.
    """
    path = socket_path(home)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
            client.sendall((json.dumps({"cmd": cmd, **arguments}) + "\n").encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError as exc:
            raise NodeNotRunning(str(exc), home=home) from exc
    try:
        answer = json.loads(reply)
    except ValueError as exc:
        raise NodeNotRunning("garbled answer", home=home) from exc
    if not answer.get("ok"):
        raise ControlError(
            str(answer.get("error")), user_message="{error}", error=answer.get("error")
        )
    return answer.get("result")

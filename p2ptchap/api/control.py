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
        if self.path.exists():
            if _answers(self.path):
                raise NodeAlreadyRunning(str(self.path), home=self.home)
            self.path.unlink()  # left behind by a node that was killed
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is created 0600
        try:
            await sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            message = (
                N_("The home folder path is too long for the control socket: {path}.")
                if exc.errno in {errno.ENAMETOOLONG, errno.EINVAL}
                else N_("The control socket {path} could not be created.")
            )
            raise StorageError(str(exc), user_message=message, path=self.path) from exc
        finally:
            os.umask(old_umask)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        try:
            task_status.started()
            await trio.serve_listeners(self._serve_client, [listener])
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(MAX_REQUEST)
                except trio.BrokenResourceError:
                    return
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
        except ValueError:
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


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


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

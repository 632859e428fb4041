"""The local control socket: how the CLI, the terminal app and bots talk to a running node.

A Unix socket ``HOME/control.sock``, created 0600 in the home folder, and
clients of another user turned away (``SO_PEERCRED``): only the node's owner
can use it.  The protocol is JSON lines: one
request object per line, ``{"cmd": NAME, ...arguments}``, answered by one
line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": SENTENCE,
"message": TEMPLATE, "values": {...}, "kind": "usage"|"local"|"remote"|"internal"}``
(the template and values let a client show the sentence in its own
language).  A request with ``"progress": true`` to a long command may first
get lines ``{"progress": {"done": N, "total": M}}``.  Requests are at most
64 KiB; a client that sends more, or garbage, gets an error line and is
disconnected.  No request, however wrong, and no bug in a command stops
the node.  The full list of commands is in ``docs/protocol.md`` §7.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from p2ptchap.core.errors import N_, LocalError, P2PTchapError, StorageError, UsageError

log = logging.getLogger("p2ptchap.control")

MAX_REQUEST = 64 * 1024
SOCKET_NAME = "control.sock"
LOCK_NAME = "node.lock"

#: A command: the request, and a function that sends a progress line (a
#: no-op unless the client asked for them with ``"progress": true``).
Report = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Report], Awaitable[Any]]


class NodeNotRunning(LocalError):
    """No node answers on this home's control socket."""

    default_message = N_("No node is running in {home}; start one with 'p2ptchap up'.")


class NodeAlreadyRunning(LocalError):
    """Another node already serves this home."""

    default_message = N_("A node is already running in {home}; stop it first.")


class ControlError(LocalError):
    """The node answered a control request with an error."""


class NodeUnresponsive(LocalError):
    """A node took the request but did not answer it in time (or hung up)."""

    default_message = N_(
        "The node running in {home} did not answer in time; it may be busy and may "
        "still carry the command out: look (room read, files) before trying again."
    )


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
        # Created 0600 (not made so after binding: no moment when others
        # could connect), inside the home folder; peers are checked too.
        previous = os.umask(0o177)
        try:
            await sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError as exc:
            sock.close()
            message = (
                N_("The home folder path is too long for the control socket: {path}.")
                if exc.errno in {errno.ENAMETOOLONG, errno.EINVAL}
                else N_("The control socket {path} could not be created.")
            )
            raise StorageError(str(exc), user_message=message, path=self.path) from exc
        finally:
            os.umask(previous)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        try:
            task_status.started()
            await trio.serve_listeners(self._serve_client, [listener])
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        # A client that hangs up early (Ctrl-C on 'p2ptchap peers') is normal;
        # it must never take the node down, and neither may anything else.
        try:
            async with stream:
                if not _same_user(stream):
                    log.warning(N_("control socket: a process of another user was turned away"))
                    return
                await self._converse(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("control client went away: %s", exc)
        except Exception:  # a bug: said in the log, this client dropped, the node goes on
            log.exception("control socket: a client's conversation failed")

    async def _converse(self, stream: trio.SocketStream) -> None:
        buffer = b""
        while True:
            data = await stream.receive_some(MAX_REQUEST)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if len(line) > MAX_REQUEST:
                    await stream.send_all(_error_line("request too large"))
                    return
                await stream.send_all(await self._answer(line, stream))
            if len(buffer) > MAX_REQUEST:
                await stream.send_all(_error_line("request too large"))
                return

    async def _answer(self, line: bytes, stream: trio.SocketStream) -> bytes:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # deep nesting exhausts the parser's stack
            return _error_line("request is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error_line("request needs a 'cmd' string")
        handler = self._handlers.get(request["cmd"])
        if handler is None:
            return _error_line(
                f"unknown command {request['cmd']!r}",
                N_("This node does not know the command '{command}'."),
                {"command": request["cmd"]},
            )

        async def report(progress: dict[str, Any]) -> None:
            if request.get("progress") is True:
                await stream.send_all(_line({"progress": progress}))

        try:
            result = await handler(request, report)
        except P2PTchapError as exc:
            return _error_line(_sentence(exc), exc.user_message, exc.params, _kind(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise  # the client went away while we reported progress
        except Exception:  # a bug in a command: said in the log, never fatal to the node
            log.exception("control command %r failed", request["cmd"])
            return _error_line(
                "internal error",
                N_("The node failed on this command (an internal error); its log says more."),
                {},
                "internal",
            )
        return _success(result)


class Encoded:
    """A command's result already encoded as ASCII JSON (a large one, encoded on a worker)."""

    __slots__ = ("data",)

    def __init__(self, value: object) -> None:
        self.data = json.dumps(value, ensure_ascii=True).encode()


def _success(result: object) -> bytes:
    if isinstance(result, Encoded):  # encoded already, off the network loop
        return b'{"ok": true, "result": ' + result.data + b"}\n"
    return _line({"ok": True, "result": result})


def _same_user(stream: trio.SocketStream) -> bool:
    """Whether the client runs as the node's user (``SO_PEERCRED``; root too)."""
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (OSError, AttributeError):  # not Linux: the 0600 socket alone keeps others out
        return True
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid in (os.getuid(), 0)


def _sentence(error: P2PTchapError) -> str:
    try:
        return error.render()
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return error.user_message


def _kind(error: P2PTchapError) -> str:
    if isinstance(error, UsageError):
        return "usage"
    return "local" if isinstance(error, LocalError) else "remote"


def _line(value: object) -> bytes:
    # ASCII-only JSON: a lone surrogate (legal in JSON text, not in UTF-8)
    # travels as its escape instead of failing to encode.
    return (json.dumps(value, ensure_ascii=True) + "\n").encode()


def _plain(value: object) -> object:
    """A message value as JSON has it: numbers and text as they are, the rest as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _error_line(
    message: str,
    template: str | None = None,
    values: dict[str, object] | None = None,
    kind: str = "usage",
) -> bytes:
    return _line(
        {
            "ok": False,
            "error": message,
            "message": template or message,
            "values": {k: _plain(v) for k, v in (values or {}).items()},
            "kind": kind,
        }
    )


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``path``: its descriptor, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def call(
    home: Path,
    cmd: str,
    timeout: float = 5.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **arguments: Any,
) -> Any:
    """Send one command to the node running in ``home``; return its result.

    Blocking (for the CLI).  ``timeout`` bounds each wait for a line (a
    progress line counts).  Raises :class:`NodeNotRunning` when no node
    takes the connection (nothing was asked: the caller may do the work
    itself), :class:`NodeUnresponsive` when the request went out but no
    answer came (it may have been carried out: never do it again
    blindly), and :class:`ControlError` (or :class:`UsageError`) with the
    node's sentence when it refused.
    """
    path = socket_path(home)
    request = {**arguments, "cmd": cmd}
    if progress is not None:
        request["progress"] = True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NodeNotRunning(str(exc), home=home) from exc  # nothing listens
        except OSError as exc:  # a node is there but cannot take us now (backlog full)
            raise NodeUnresponsive(str(exc), home=home) from exc
        try:
            client.sendall(_line(request))
            answer = _read_answer(client, progress)
        except (OSError, ValueError) as exc:
            raise NodeUnresponsive(str(exc), home=home) from exc
    if not isinstance(answer, dict):
        raise NodeUnresponsive("garbled answer", home=home)
    if answer.get("ok") is True:
        return answer.get("result")
    error = str(answer.get("error"))
    template = answer.get("message")
    values = answer.get("values")
    if not isinstance(template, str) or not isinstance(values, dict):
        template, values = N_("{error}"), {"error": error}
    values = {k: v for k, v in values.items() if k not in ("detail", "user_message")}
    if not _renders(template, values):  # a node of another version, or a broken one
        template, values = N_("{error}"), {"error": error}
    if answer.get("kind") == "usage":
        raise UsageError(error, user_message=template, **values)
    raise ControlError(error, user_message=template, **values)


def _renders(template: str, values: dict[str, Any]) -> bool:
    """Whether the node's template fills in with its values (else its sentence is shown)."""
    try:
        template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return False
    return True


def _read_answer(
    client: socket.socket, progress: Callable[[dict[str, Any]], None] | None
) -> object:
    """Lines until the answer (progress lines go to ``progress``)."""
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            answer = json.loads(line)
            if isinstance(answer, dict) and "progress" in answer and "ok" not in answer:
                if progress is not None and isinstance(answer["progress"], dict):
                    progress(answer["progress"])
                continue
            return answer
        chunk = client.recv(65536)
        if not chunk:
            raise ValueError("the node hung up before answering")
        buffer += chunk

"""The control socket: private, JSON lines, robust to clients that misbehave."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from p2ptchap.api.control import (
    ControlError,
    ControlServer,
    NodeAlreadyRunning,
    NodeNotRunning,
    NodeUnresponsive,
    Report,
    call,
)
from p2ptchap.core.errors import N_, StorageError, UsageError
from p2ptchap.i18n import Translator


async def answer_peers(request: dict[str, Any], _report: Report) -> list[str]:
    await trio.lowlevel.checkpoint()
    return ["alice"]


async def count_to(request: dict[str, Any], report: Report) -> int:
    """Reports each step; refuses a bad ``to``; has a bug at 13."""
    to = request.get("to")
    if not isinstance(to, int) or to < 0:
        raise UsageError("bad to", user_message=N_("The argument '{name}' is missing."), name="to")
    if to == 13:
        raise ZeroDivisionError("a bug")
    if to == 99:
        raise StorageError("disk full", user_message=N_("The disk is full: {path}."), path="/x")
    if to == 98:  # a template whose value is missing: must not break anyone
        raise StorageError("broken", user_message=N_("The disk is full: {path}."))
    if isinstance(request.get("echo"), str):
        return request["echo"]
    for done in range(1, to + 1):
        await report({"done": done, "total": to})
    return to


async def ask(path: Path, payload: bytes) -> bytes:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
        return data


async def test_commands_errors_and_hostile_clients(tmp_path: Path) -> None:
    server = ControlServer(tmp_path)
    server.register("peers", answer_peers)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        ok = json.loads(await ask(server.path, b'{"cmd": "peers"}\n'))
        assert ok == {"ok": True, "result": ["alice"]}
        unknown = json.loads(await ask(server.path, b'{"cmd": "nope"}\n'))
        assert unknown["ok"] is False and "unknown command" in unknown["error"]
        garbage = json.loads(await ask(server.path, b"not json\n"))
        assert garbage["ok"] is False
        deep = json.loads(await ask(server.path, b"[" * 60_000 + b"\n"))
        assert deep["ok"] is False
        # A client that asks and leaves at once (Ctrl-C): the node shrugs.
        for _ in range(5):
            with socket.socket(socket.AF_UNIX) as rude:
                rude.connect(str(server.path))
                rude.sendall(b'{"cmd": "peers"}\n' * 50)
        await trio.sleep(0.1)
        again = await trio.to_thread.run_sync(call, tmp_path, "peers")
        assert again == ["alice"]
        # A second node on the same home is refused.
        with pytest.raises(NodeAlreadyRunning):
            await ControlServer(tmp_path).run()
        nursery.cancel_scope.cancel()
    assert not server.path.exists()


async def test_errors_travel_as_templates_and_progress_as_lines(tmp_path: Path) -> None:
    """What a client needs: the node's refusal in its own language, and progress."""
    server = ControlServer(tmp_path)
    server.register("count", count_to)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        seen: list[dict[str, Any]] = []
        got = await trio.to_thread.run_sync(
            lambda: call(tmp_path, "count", progress=seen.append, to=3)
        )
        assert got == 3
        assert seen == [{"done": d, "total": 3} for d in (1, 2, 3)]
        # Without asking for progress, no progress lines: the answer only.
        raw = await ask(server.path, b'{"cmd": "count", "to": 2}\n')
        assert json.loads(raw) == {"ok": True, "result": 2}
        # A refusal: the English sentence for bots, the template and values for
        # a client to translate; a usage error stays one (exit code 2 in the CLI).
        with pytest.raises(UsageError) as usage:
            await trio.to_thread.run_sync(lambda: call(tmp_path, "count", to="x"))
        assert usage.value.render() == "The argument 'to' is missing."
        assert usage.value.render(Translator("fr")) == "L'argument « to » manque."
        with pytest.raises(ControlError) as local:
            await trio.to_thread.run_sync(lambda: call(tmp_path, "count", to=99))
        assert local.value.render() == "The disk is full: /x."
        # A bug in a command is one sentence for the client; the node goes on.
        line = json.loads(await ask(server.path, b'{"cmd": "count", "to": 13}\n'))
        assert line["ok"] is False and line["kind"] == "internal"
        assert "internal error" in line["message"]
        assert await trio.to_thread.run_sync(lambda: call(tmp_path, "count", to=1)) == 1
        unknown = json.loads(await ask(server.path, b'{"cmd": "nope"}\n'))
        assert unknown["values"] == {"command": "nope"} and unknown["kind"] == "usage"
        # A broken template: the client still gets one sentence, no exception.
        with pytest.raises(ControlError) as broken:
            await trio.to_thread.run_sync(lambda: call(tmp_path, "count", to=98))
        assert broken.value.render() == "The disk is full: {path}."
        # Lone surrogates (legal JSON, not UTF-8), echoed back: escaped, not fatal.
        odd = json.loads(await ask(server.path, b'{"cmd": "\\ud800"}\n'))
        assert odd["ok"] is False and odd["values"] == {"command": "\ud800"}
        echoed = json.loads(
            await ask(server.path, b'{"cmd": "count", "to": 1, "echo": "\\udcff"}\n')
        )
        assert echoed == {"ok": True, "result": "\udcff"}
        # One line over 64 KiB, even with its newline in the same read: refused.
        huge = json.loads(await ask(server.path, b'{"cmd": "' + b"x" * 70_000 + b'"}\n'))
        assert huge["ok"] is False and "too large" in huge["error"]
        assert await trio.to_thread.run_sync(lambda: call(tmp_path, "count", to=2)) == 2
        nursery.cancel_scope.cancel()


def test_a_node_that_takes_the_request_but_never_answers(tmp_path: Path) -> None:
    """Not 'no node': the request may have been carried out, never redo it blindly."""
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(tmp_path / "control.sock"))
        mute.listen(1)
        with pytest.raises(NodeUnresponsive) as info:
            call(tmp_path, "room-send", timeout=0.3, room="r", text="x")
        assert not isinstance(info.value, NodeNotRunning)
        assert str(tmp_path) in info.value.render()


def test_call_without_a_node(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning) as info:
        call(tmp_path, "peers")
    assert str(tmp_path) in info.value.render()

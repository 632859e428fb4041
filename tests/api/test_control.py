"""The control socket: private, JSON lines, robust to clients that misbehave."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from p2ptchap.api.control import ControlServer, NodeAlreadyRunning, NodeNotRunning, call


async def answer_peers(request: dict[str, Any]) -> list[str]:
    await trio.lowlevel.checkpoint()
    return ["alice"]


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


def test_call_without_a_node(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning) as info:
        call(tmp_path, "peers")
    assert str(tmp_path) in info.value.render()

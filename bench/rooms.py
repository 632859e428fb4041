"""Room benchmark: resolving a room, at once and event by event (issue 4, partial).

Builds a room of N messages from two members and measures ``resolve`` (which
re-checks no signature: events are parsed once, when received) and
``parse_event`` (which verifies the signature), next to the bare Ed25519
verification rate measured in the same run.

Run:  .venv/bin/python bench/rooms.py [N ...]   (default 1000 5000)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2ptchap.core.events import EventType, parse_event
from p2ptchap.core.live_room import LiveRoom
from tests.room_cell import Cell


def room_of(n: int) -> tuple[Cell, list]:  # type: ignore[type-arg]
    cell = Cell(11)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.emit(alice, view, EventType.JOIN_RULE, {"rule": "public"}, "")
    cell.member(bruno, view, bruno, "join")
    for i in range(n):
        cell.emit(alice if i % 2 else bruno, view, EventType.MESSAGE, {"body": b"x" * 200})
    return cell, view


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000]
    key = nacl.signing.SigningKey(os.urandom(32))
    signed = key.sign(b"x" * 400)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 1:
        key.verify_key.verify(signed)
        count += 1
    verify_rate = count / (time.perf_counter() - start)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Ed25519 verify (reference): {verify_rate:.0f}/s")
    for n in sizes:
        cell, view = room_of(n)
        start = time.perf_counter()
        result = cell.resolve(view)
        resolve_s = time.perf_counter() - start
        assert len(result.accepted) == len(view)
        start = time.perf_counter()
        for event in view:
            parse_event(event.raw)
        parse_s = time.perf_counter() - start
        live = LiveRoom(cell.room, cell.directory, cell.people)
        start = time.perf_counter()
        for event in view:
            live.add(event)
        live_s = time.perf_counter() - start
        print(
            f"N={n:6d}: resolve {len(view) / resolve_s:8.0f} events/s (whole room), "
            f"parse+verify {len(view) / parse_s:8.0f} events/s "
            f"({len(view) / parse_s / verify_rate:.2f} of bare verify), "
            f"incremental {len(view) / live_s:8.0f} events/s ({live.full} full resolution)"
        )


if __name__ == "__main__":
    main()

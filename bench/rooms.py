"""Room benchmark (issue 4): apply, store and reopen rooms of N events.

For each N (default 10 000 and 100 000) it builds a room where two members
alternate messages (with a state change every 1 000 events), then measures:

* incremental apply without signature checks: ``LiveRoom.add`` of events
  already parsed (the target is ≥ 5 000 events/s);
* incremental apply with them: ``parse_event`` (Ed25519 verification) then
  ``LiveRoom.add``; next to the bare Ed25519 verification rate measured in
  the same run, the reference this machine sets;
* ``resolve`` of the whole room at once (what a concurrent removal costs);
* storing the room in SQLite in batches of 500, and the time to open it
  again from disk in a fresh store (the target is under 2 s for 100 000),
  with the memory that opening takes (``tracemalloc`` peak).

Run:  .venv/bin/python bench/rooms.py [N ...]
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2ptchap.core.events import Event, EventType, make_event, parse_event
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.store.db import Database
from p2ptchap.store.rooms import RoomStore
from tests.room_cell import Cell


def room_of(n: int) -> tuple[Cell, list[Event]]:
    """A room of ``n`` events after the first three, built in linear time."""
    cell = Cell(11)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    head = view[-1]
    for i in range(n):
        author = alice if i % 2 else bruno
        author.seq += 1
        # An encrypted message's shape (the rules never look inside "ct").
        kind, key = EventType.MESSAGE, None
        content = {"session": bytes(32), "index": i % 100, "ct": b"x" * 216}
        if i % 1000 == 999:
            kind, content, key = EventType.TOPIC, {"topic": f"point {i}"}, ""
        head = make_event(
            author.device,
            author.key,
            kind,
            content,  # type: ignore[arg-type]
            room=cell.room,
            seq=author.seq,
            prev_seq=author.last,
            prev=[head.id],
            depth=head.depth + 1,
            ts=1_700_000_000_000 + i,
            state_key=key,
        )
        author.last = head.id
        view.append(head)
    return cell, view


def verify_rate() -> float:
    key = nacl.signing.SigningKey(os.urandom(32))
    signed = key.sign(b"x" * 400)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 1:
        key.verify_key.verify(signed)
        count += 1
    return count / (time.perf_counter() - start)


def measure(n: int, reference: float) -> None:
    cell, view = room_of(n)
    total = len(view)

    live = LiveRoom(cell.room, cell.directory, cell.people)
    start = time.perf_counter()
    for event in view:
        live.add(event)
    apply_s = time.perf_counter() - start
    assert len(live.resolution.accepted) == total and live.full == 1

    live = LiveRoom(cell.room, cell.directory, cell.people)
    start = time.perf_counter()
    for event in view:
        live.add(parse_event(event.raw))
    signed_s = time.perf_counter() - start

    start = time.perf_counter()
    cell.resolve(view)
    resolve_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "node.db"
        store = RoomStore(Database(path), cell.directory, cell.people)
        start = time.perf_counter()
        for i in range(0, total, 500):
            store.add(cell.room, [e.raw for e in view[i : i + 500]])
        store_s = time.perf_counter() - start
        store.db.close()
        size = path.stat().st_size  # closing checkpoints the WAL into the file
        start = time.perf_counter()
        reopened = RoomStore(Database(path), cell.directory, cell.people)
        opened = reopened.live(cell.room)
        open_s = time.perf_counter() - start
        assert opened.full == 0 and len(opened.resolution.accepted) == total
        reopened.db.close()
        del reopened, opened
        # Memory separately: tracing allocations slows the opening down.
        tracemalloc.start()
        reopened = RoomStore(Database(path), cell.directory, cell.people)
        reopened.live(cell.room)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        reopened.db.close()

    print(f"N = {total}")
    print(f"  apply, no signature check: {total / apply_s:9.0f} events/s")
    print(
        f"  apply with verification:   {total / signed_s:9.0f} events/s"
        f" ({total / signed_s / reference:.2f} × bare Ed25519 verify)"
    )
    print(f"  resolve whole room:        {total / resolve_s:9.0f} events/s ({resolve_s:.2f} s)")
    print(f"  store in batches of 500:   {total / store_s:9.0f} events/s ({size >> 20} MiB)")
    print(f"  open from disk:            {open_s:9.2f} s, peak {peak >> 20} MiB")


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    print(f"date: {datetime.date.today()}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    reference = verify_rate()
    print(f"Ed25519 verify (reference): {reference:.0f}/s")
    for n in sizes:
        measure(n, reference)


if __name__ == "__main__":
    main()

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

Each is read against a reference measured in the same run: the bare Ed25519
verification rate for applying; for storing and opening, SQLite alone
writing (in the same batches) and reading the same events' bytes; for the
database and the memory, the events' bytes themselves.

Run:  python bench/rooms.py [--short] [N ...]
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
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


@dataclasses.dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]  # messages after the room's first three events
    seconds: float  # for the Ed25519 reference


FULL = Params(sizes=(10_000, 100_000), seconds=1.0)
SHORT = Params(sizes=(2_000,), seconds=0.3)


def sqlite_alone(path: Path, view: list[Event]) -> tuple[float, float]:
    """Seconds to write the events' bytes to a bare WAL table in batches of 500, and to read them.

    What SQLite alone costs for the same rows, with the node database's
    settings: the floor under storing and opening a room.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE events (id BLOB PRIMARY KEY, room BLOB NOT NULL, raw BLOB NOT NULL)")
    start = time.perf_counter()
    for i in range(0, len(view), 500):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(e.id, e.room, e.raw) for e in view[i : i + 500]],
        )
        db.execute("COMMIT")
    write_s = time.perf_counter() - start
    db.close()
    db = sqlite3.connect(path)
    start = time.perf_counter()
    rows = db.execute("SELECT id, raw FROM events WHERE room = ?", (view[0].room,)).fetchall()
    read_s = time.perf_counter() - start
    db.close()
    assert len(rows) == len(view)
    return write_s, read_s


def measure(
    n: int, reference: float, section: common.Section, suffix: str, progress: common.Progress
) -> None:
    """Add the rows of a room of ``n`` messages; keys end with ``suffix``."""
    progress(f"building a room of {n:,} messages".replace(",", " "))
    cell, view = room_of(n)
    total = len(view)
    raw_mib = sum(len(e.raw) for e in view) / common.MIB
    label = f"N = {total:,}".replace(",", " ")

    progress(f"{label}: applying")
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
        progress(f"{label}: storing and opening")
        path = Path(folder) / "node.db"
        store = RoomStore(Database(path), cell.directory, cell.people)
        start = time.perf_counter()
        for i in range(0, total, 500):
            store.add(cell.room, [e.raw for e in view[i : i + 500]])
        store_s = time.perf_counter() - start
        store.db.close()
        size = path.stat().st_size / common.MIB  # closing checkpoints the WAL into the file
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
        del reopened
        sqlite_write_s, sqlite_read_s = sqlite_alone(Path(folder) / "bare.db", view)

    verify = "bare Ed25519 verify"
    section.add(
        f"apply{suffix}",
        f"incremental apply (`LiveRoom.add`), no signature check, {label}",
        total / apply_s,
        "events/s",
        reference,
        verify,
        "/s",
    )
    section.add(
        f"apply_verified{suffix}",
        f"incremental apply with `parse_event` (verification), {label}",
        total / signed_s,
        "events/s",
        reference,
        verify,
        "/s",
    )
    section.add(
        f"resolve{suffix}",
        f"`resolve` of the whole room at once, {label}",
        total / resolve_s,
        "events/s",
        reference,
        verify,
        "/s",
    )
    section.add(
        f"store{suffix}",
        f"store (`RoomStore.add`, batches of 500), {label}",
        total / store_s,
        "events/s",
        total / sqlite_write_s,
        "SQLite alone, same rows and batches",
    )
    section.add(
        f"database{suffix}",
        f"database size, {label}",
        size,
        "MiB",
        raw_mib,
        "the events' bytes",
    )
    section.add(
        f"open{suffix}",
        f"open the room from disk (fresh store), {label}",
        open_s,
        "s",
        sqlite_read_s,
        "SQLite alone reading the rows",
    )
    section.add(
        f"open_memory{suffix}",
        f"memory of the open room (`tracemalloc` peak), {label}",
        peak / common.MIB,
        "MiB",
        raw_mib,
        "the events' bytes",
    )


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "rooms",
        "Rooms",
        "Rooms of N messages from two members, a topic change every 1 000 events "
        "(keys without a suffix: the largest room).",
    )
    progress("Ed25519 reference")
    reference = common.ed25519_verify_rate(params.seconds)
    largest = max(params.sizes)
    for n in params.sizes:
        measure(n, reference, section, "" if n == largest else f".n{n + 3}", progress)
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (common.Option("sizes", "sizes", help="messages per room"),)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

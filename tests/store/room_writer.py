"""A process that writes room events to a database until it is killed (for crash tests).

Usage: python room_writer.py DB_PATH SEED
The people (and so the directory) are derived from SEED, so the test can
rebuild the same directory to check what the killed writer left behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from p2ptchap.core.events import EventType
from p2ptchap.store.db import Database
from p2ptchap.store.rooms import RoomStore
from tests.room_cell import Cell


def cell_for(seed: int) -> tuple[Cell, list]:  # type: ignore[type-arg]
    cell = Cell(seed)
    view = cell.public_room(cell.person("alice"), cell.person("bruno"))
    return cell, view


def main() -> None:
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    cell, view = cell_for(seed)
    store = RoomStore(Database(path), cell.directory, cell.people)
    store.add(cell.room, [e.raw for e in view])
    alice, bruno = cell.authors["alice"], cell.authors["bruno"]
    print("ready", flush=True)
    n = 0
    while True:
        batch = [
            cell.emit(alice if i % 2 else bruno, view, EventType.MESSAGE, {"body": b"%d" % n})
            for i in range(20)
        ]
        store.add(cell.room, [e.raw for e in batch])
        n += 1


if __name__ == "__main__":
    main()

"""The honest pair's traffic, measured: ``python -m tests.hostile.honest ROOT ROOM A B INTERVAL``.

Run as its own process beside the nodes, so that neither the attacker in
the test process nor the assertions disturb what it measures.  It posts a
message in ``ROOM`` as ``A``, then as ``B``, turn about — written into the
sender's home database as the CLI does, so the sender's *node* picks it up
and pushes it — and reads the receiver's database (read-only) until the
event is there.  For each message it prints one JSON line: ``{"sent": wall
clock, "from": name, "to": name, "latency": seconds}``, or ``"lost": true``
after :data:`GIVE_UP` seconds.  It stops when its standard input closes.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import sys
import time
from pathlib import Path

from p2ptchap.rooms import open_rooms
from p2ptchap.store.home import Home

#: A message not delivered after this long is reported lost.
GIVE_UP = 60.0


def _stdin_closed() -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and not sys.stdin.read(1)


def _delivered(database: Path, event: bytes) -> bool:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        return db.execute("SELECT 1 FROM events WHERE id = ?", (event,)).fetchone() is not None


def main(root: Path, room_hex: str, names: list[str], interval: float) -> None:
    passphrase = os.environ["P2PTCHAP_PASSPHRASE"]
    rooms = {name: open_rooms(Home(root / name), passphrase, time.time) for name in names}
    room = bytes.fromhex(room_hex)
    turn = 0
    while not _stdin_closed():
        sender, receiver = names[turn % 2], names[(turn + 1) % 2]
        turn += 1
        sent = time.time()
        done = rooms[sender].send(room, f"message honnête {turn}".encode())
        event = done.events[-1]
        line: dict[str, object] = {"sent": sent, "from": sender, "to": receiver}
        while not _delivered(root / receiver / "node.db", event):
            if time.time() - sent > GIVE_UP:
                line["lost"] = True
                break
            time.sleep(0.01)
        else:
            line["latency"] = time.time() - sent
        print(json.dumps(line), flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:5], float(sys.argv[5]))

"""Convergence benchmark: a cell of real node processes all writing into one room at once.

N ``p2ptchap up`` processes (20; 5 with ``--short``), each in its own
network namespace on one bridge when this machine allows it (root), else
on loopback (where the per-address connection quota caps a full mesh at
17 nodes); each knows only the first node's address (gossip completes the
mesh), all are members of one room.  Then every node writes M messages at the same time
(written into each node's database by this process, as the CLI does; each
node notices them at its next read of its arrival journal, every 0.25 s).
Measured:

* **convergence time**: from the first message written until every node
  holds every event of the room as accepted (and the same set of events);
  against the time one node takes to store the same events alone
  (``RoomStore.add``: parse, verify, resolve, SQLite), times N nodes,
  divided by the machine's cores — the CPU floor for the whole cell, since
  every node must verify every event;
* events sent per event delivered (1 if each node received each event once);
* each node's RSS after the burst, against before it.

All nodes share this machine's cores with one another and with the bench:
on 2 cores, a 20-node cell is CPU-bound.

Run:  python bench/convergence.py [--short] [--nodes 20] [--messages 10]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.processes import (
    NodeProcesses,
    accepted_in,
    counters_since,
    form_room,
    open_home,
    readers,
    sync_counters,
)
from p2ptchap.net.peers import PeerSettings
from p2ptchap.rooms import Rooms
from p2ptchap.store.db import DB_NAME
from p2ptchap.testing.netns import Host, lan, netns_available
from tests.net.cell import make_cell

BODY = b"x" * 200
MIB = common.MIB


@dataclasses.dataclass(frozen=True)
class Params:
    nodes: int
    messages: int  # written by each node
    timeout: float = 900.0


FULL = Params(nodes=20, messages=10)
SHORT = Params(nodes=5, messages=3)


@dataclasses.dataclass
class Outcome:
    where: str  # how the nodes are networked
    mesh_seconds: float
    converged_seconds: float
    written: list[bytes]  # ids of the events the burst made, in writing order
    sent: int  # events pushed or served by all nodes during the burst
    duplicates: int
    rss_before: list[int]
    rss_after: list[int]
    #: Every replication counter that moved during the burst, all nodes added up.
    counters: dict[str, int]
    local_seconds: float = 0.0


def snapshot_home(source: Path, target: Path) -> None:
    """A copy of a running node's home: its files, and its database by SQLite's online backup."""
    transient = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "control.sock", "node.lock"}
    shutil.copytree(source, target, ignore=lambda _, names: [n for n in names if n in transient])
    with (
        contextlib.closing(sqlite3.connect(source / DB_NAME)) as origin,
        contextlib.closing(sqlite3.connect(target / DB_NAME)) as copy,
    ):
        origin.backup(copy)


def event_ids(db: sqlite3.Connection, room: bytes) -> set[bytes]:
    rows = db.execute("SELECT id FROM events WHERE room = ? AND status = 'accepted'", (room,))
    return {bytes(row[0]) for row in rows}


def store_alone(
    root: Path, copy: str, source: sqlite3.Connection, room: bytes, ids: list[bytes]
) -> float:
    """Seconds for the node copy ``copy`` to store the events ``ids`` (read from ``source``)."""
    wanted = set(ids)
    rows = source.execute("SELECT id, raw FROM events WHERE room = ? ORDER BY depth", (room,))
    raws = [bytes(raw) for identifier, raw in rows if bytes(identifier) in wanted]
    if len(raws) != len(wanted):
        raise RuntimeError("the events of the burst are not all in the first node's database")
    rooms = open_home(root, copy)
    try:
        start = time.perf_counter()
        for i in range(0, len(raws), 500):
            rooms.store.add(room, raws[i : i + 500])
        elapsed = time.perf_counter() - start
        live = rooms.store.live(room)
        if any(live.status(event)[0] != "accepted" for event in wanted):
            raise RuntimeError("the copy did not accept the events of the burst")
    finally:
        rooms.db.close()
    return elapsed


def burst(
    root: Path, names: list[str], room: bytes, writers: list[Rooms], params: Params
) -> tuple[list[bytes], float]:
    """Every node writes ``params.messages`` messages, interleaved; wait until all hold all."""
    with readers(root, names) as dbs:
        # The set-up's last events may still be on their way somewhere.
        common.wait_blocking(
            lambda: len({accepted_in(db, room) for db in dbs}) == 1, params.timeout, 0.05
        )
        base = accepted_in(dbs[0], room)
        written: list[bytes] = []
        start = time.perf_counter()
        for _ in range(params.messages):
            for rooms in writers:
                written.extend(rooms.send(room, BODY).events)
        target = base + len(written)

        def converged() -> bool:
            counts = [accepted_in(db, room) for db in dbs]
            if min(counts) < target or max(counts) != min(counts):
                return False
            held = [event_ids(db, room) for db in dbs]
            return all(h == held[0] for h in held) and set(written) <= held[0]

        common.wait_blocking(converged, params.timeout, 0.02)
        elapsed = time.perf_counter() - start
    return written, elapsed


@contextlib.contextmanager
def hosts_for(count: int) -> Iterator[tuple[list[Host | None], str]]:
    """Where the nodes run: a network namespace each if this machine allows, else loopback.

    Also says which, for the table.  On loopback every node is on one host
    address, so at most ``max_peers_per_host + 1`` of them can all connect.
    """
    reason = netns_available()
    if reason is None:
        with lan(count, prefix="bench") as net:
            yield list(net.hosts), "one network namespace each, real TCP through a bridge"
        return
    limit = PeerSettings().max_peers_per_host + 1
    if count > limit:
        raise RuntimeError(
            f"{count} nodes cannot all connect on loopback (at most {limit} per host address); "
            f"network namespaces are unavailable: {reason}"
        )
    yield [None] * count, f"loopback TCP (no network namespaces: {reason})"


def run_cell(root: Path, params: Params, progress: common.Progress) -> Outcome:
    names = [f"n{i:02d}" for i in range(params.nodes)]
    with hosts_for(params.nodes) as (hosts, where), NodeProcesses(root) as nodes:
        progress(f"starting {params.nodes} nodes, {where}")
        start = time.perf_counter()
        port = nodes.up(names[0], host=hosts[0])
        first: int | str = port if hosts[0] is None else f"{hosts[0].address}:{port}"
        for name, host in zip(names[1:], hosts[1:], strict=True):
            nodes.up(name, first, host=host)
        common.wait_blocking(
            lambda: all(nodes.peers(n) == params.nodes - 1 for n in names), params.timeout, 0.2
        )
        mesh_seconds = time.perf_counter() - start
        progress("forming the room")
        owner = open_home(root, names[0])
        room = form_room(root, owner, "Convergence", names[1:], params.timeout)
        writers = [owner, *(open_home(root, name) for name in names[1:])]
        time.sleep(2)  # receipts and key requests of the set-up go by
        snapshot_home(root / names[1], root / "copy")
        rss_before = [nodes.rss(name) for name in names]
        before = [sync_counters(root / name) for name in names]
        progress(f"burst: {params.messages} messages from each node")
        written, converged = burst(root, names, room, writers, params)
        time.sleep(1)  # the counters are read from the nodes
        wire = counters_since(root, names, before)
        rss_after = [nodes.rss(name) for name in names]
        for rooms in writers:
            rooms.db.close()
    outcome = Outcome(
        where,
        mesh_seconds,
        converged,
        written,
        wire["events-pushed"] + wire["events-served"],
        wire["events-duplicate"],
        rss_before,
        rss_after,
        {k: v for k, v in sorted(wire.items()) if v},
    )
    progress("reference: one node storing the same events alone")
    with contextlib.closing(sqlite3.connect(root / names[0] / DB_NAME)) as source:
        outcome.local_seconds = store_alone(root, "copy", source, room, written)
    return outcome


def collect(params: Params, progress: common.Progress) -> common.Section:
    cores = os.cpu_count() or 1
    section = common.Section("convergence", "Convergence")
    with tempfile.TemporaryDirectory(prefix="bench-convergence-") as folder:
        root = make_cell(Path(folder), [f"n{i:02d}" for i in range(params.nodes)])
        outcome = run_cell(root, params, progress)
    events = len(outcome.written)
    section.setup = (
        f"{params.nodes} `p2ptchap up` processes, {outcome.where} (real sockets and SQLite "
        f"files; mesh by gossip from one static peer), one room; each node writes "
        f"{params.messages} messages at once."
    )
    section.add(
        "seconds",
        f"convergence of {params.nodes} nodes: {events} events written at once until every "
        "node holds all",
        outcome.converged_seconds,
        "s",
        outcome.local_seconds * params.nodes / cores,
        f"one node storing them alone × {params.nodes} nodes ÷ {cores} cores",
    )
    section.add(
        "sent_per_delivered",
        f"… events sent per event delivered ({outcome.duplicates} duplicates received)",
        outcome.sent / (events * (params.nodes - 1)),
        "",
        1,
        "each node once",
    )
    section.add(
        "rss_per_node",
        "… RSS per node after the burst, mean",
        statistics.mean(outcome.rss_after) / MIB,
        "MiB",
        statistics.mean(outcome.rss_before) / MIB,
        "before it",
    )
    section.notes.append(
        f"{params.nodes} nodes started and fully meshed in {outcome.mesh_seconds:.1f} s; "
        f"one node stored the {events} events alone in {outcome.local_seconds:.2f} s"
    )
    section.notes.append(
        "replication counters of the burst, all nodes: "
        + ", ".join(f"{k} {v}" for k, v in outcome.counters.items())
    )
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (
    common.Option("--nodes", "nodes"),
    common.Option("--messages", "messages", help="written by each node"),
)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

"""Replication benchmark: message latency, throughput into a room, sync efficiency.

Each figure is measured next to a reference taken in the same run:

* **latency** of one message, sent on node A until stored (accepted) on
  node B, p50 and p99, against a raw trio TCP ping-pong round trip on
  loopback.  Twice: with both nodes as in-process :class:`~p2ptchap.node.
  Node` objects in one trio run on real loopback sockets and real SQLite
  files (the sender calls ``Rooms.send`` then ``Replicator.nudge``, as an
  interface inside the node would: the wire path alone), and with real
  ``p2ptchap up`` processes where the message is written into A's database
  by another process (this one), as the CLI does — A notices it at its next read of the
  arrival journal, so that path includes up to one poll interval (0.25 s);
* **throughput** into a three-member room: messages per second stored at
  the sender, against ``Rooms.send`` on one node with no network, and
  delivered (stored at both others), against the bare Ed25519 verification
  rate (each receiver verifies every event: the CPU bound); in-process
  nodes and real processes;
* **sync efficiency**: node A holds a room of 10 000 events (2 000 with
  ``--short``), node B the same room
  without 1 % of them (chosen at random, seeded), or without the last 1 %
  (as after an absence), or nothing missing; they meet on the in-memory
  network, which records every message.  Bytes carried until B holds
  everything, against the bytes of the missing events themselves; requests
  (``want``) sent by B; wall time, against storing the same missing events
  into a copy of B directly (medians of three attempts, one with ``--short``).

Run:  python bench/sync.py [--short] [--seed 5]
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.processes import (
    NodeProcesses,
    counters_since,
    form_room,
    holds,
    open_home,
    readers,
    status_in,
    sync_counters,
)
from p2ptchap import accounts
from p2ptchap.core import codec, peerwire, vault
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.events import Event, EventType, Membership, make_event
from p2ptchap.core.identity import VerifiedDevice
from p2ptchap.node import Node, NodeConfig
from p2ptchap.replication import Replicator, RevocationBook
from p2ptchap.rooms import Me, Rooms, open_rooms
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.home import Home
from p2ptchap.testing.memnet import Faults, MemoryNetwork
from tests.net.cell import PASSPHRASE, make_cell

BODY = b"x" * 200  # an encrypted short message is about this size


@dataclasses.dataclass
class Flow:
    """Latency A → B, and throughput A → B, C, with the events each node sent."""

    latency: list[float]
    #: the part of each latency spent in ``Rooms.send`` on A (signing, checking, storing)
    sending: list[float]
    accepted: float
    delivered: float
    wire: dict[str, int]


@dataclasses.dataclass
class Meeting:
    """Two nodes meeting on the in-memory network until B holds what A holds."""

    seconds: float
    bytes: int
    messages: int
    wants: int
    bytes_settled: int
    messages_settled: int
    by_type: dict[str, tuple[int, int]]
    missing: int = 0
    missing_bytes: int = 0
    pending_before: int = 0
    local_seconds: float = 0.0
    all_seconds: list[float] = dataclasses.field(default_factory=list)
    all_local: list[float] = dataclasses.field(default_factory=list)


# --- set-up -----------------------------------------------------------------------------------


def identity_of(home: Home) -> tuple[Me, TrustStore]:
    """The device of ``home`` with its signing key, and the trust it holds."""
    account, trust, _ = accounts.load_account(home, int(time.time()))
    device = accounts.current_device(home)
    secrets = accounts.DeviceSecrets.decode(
        home.read_secret(home.device_key, PASSPHRASE, accounts.NO_ACCOUNT)
    )
    return Me(account, device, secrets.signing, secrets.exchange), trust


def rooms_at(
    path: Path, me: Me, trust: TrustStore, others: list[Me]
) -> tuple[Rooms, RevocationBook]:
    """Rooms for ``me`` on the database ``path``, knowing the certificates of ``others``."""
    book = RevocationBook(trust)
    db = Database(path)
    directory = DirectoryStore(db, trust, book.revocations, lambda: int(time.time()))
    rooms = Rooms(db, directory, me, time.time)
    for other in others:
        directory.add_account(other.account.raw)
        directory.add_device(other.device.raw)
    return rooms, book


def copy_db(source: Path, target: Path) -> None:
    """A consistent copy of a database, even one open elsewhere (SQLite's online backup)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as origin,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        origin.backup(copy)


def accepted(rooms: Rooms, room: bytes, event: bytes) -> bool:
    live = rooms.store.live(room)
    return event in live.events and live.status(event)[0] == "accepted"


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


# --- reference: raw TCP round trip -------------------------------------------------------------


async def tcp_ping_pong(n: int, size: int = 400) -> list[float]:
    """Round trips of ``size``-byte messages over one loopback trio TCP connection."""
    times: list[float] = []

    async def echo(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        payload = b"p" * size
        for _ in range(n):
            start = time.perf_counter()
            await stream.send_all(payload)
            got = 0
            while got < size:
                got += len(await stream.receive_some(65536))
            times.append(time.perf_counter() - start)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return times


# --- reference: storing messages with no network ----------------------------------------------


def local_send_rate(root: Path, m: int) -> float:
    """``Rooms.send`` calls per second on one node's database, nothing connected."""
    rooms = open_rooms(Home(root / "alone", kdf=vault.MINIMUM), PASSPHRASE, time.time)
    room = rooms.create("Seul").room
    start = time.perf_counter()
    for _ in range(m):
        rooms.send(room, BODY)
    elapsed = time.perf_counter() - start
    rooms.db.close()
    return m / elapsed


# --- in-process nodes on loopback TCP ---------------------------------------------------------


WIRE_COUNTERS = ("events-pushed", "events-served", "events-duplicate")


async def form_room_in_process(nodes: list[Node], name: str) -> bytes:
    """A room made by the first node, every other node invited and joined."""
    owner = nodes[0]
    room = owner.rooms.create(name).room
    for node in nodes[1:]:
        owner.rooms.invite(room, node.account.account_key)
    owner.replicator.nudge()
    for node in nodes[1:]:
        await wait_until(partial(holds, node.rooms, room), 10)
        node.rooms.join(room)
        node.replicator.nudge()

    def everyone_joined() -> bool:
        for node in nodes:
            membership = node.rooms.state(room).membership
            if any(membership.get(n.account.account_key) is not Membership.JOIN for n in nodes):
                return False
        return True

    await wait_until(everyone_joined, 10)
    return room


async def in_process(root: Path, n: int, m: int) -> Flow:
    """Latency (A → B) and throughput (A → B, C) with three in-process nodes."""
    homes = [Home(root / name, kdf=vault.MINIMUM) for name in ("alice", "bruno", "carole")]
    async with trio.open_nursery() as nursery:
        first = Node(homes[0], PASSPHRASE, NodeConfig(port=0, mdns=False))
        port = await nursery.start(first.run)
        nodes = [first]
        for home in homes[1:]:
            node = Node(
                home, PASSPHRASE, NodeConfig(port=0, mdns=False, peers=(("127.0.0.1", port),))
            )
            await nursery.start(node.run)
            nodes.append(node)
        await wait_until(lambda: all(len(x.peers.peers()) == 2 for x in nodes), 15)
        a, b, c = nodes
        pair = await form_room_in_process([a, b], "Latence")
        trio_room = await form_room_in_process([a, b, c], "Débit")
        await trio.sleep(1)  # let the receipts of the set-up go by

        latencies: list[float] = []
        sending: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            event = a.rooms.send(pair, BODY).events[0]
            sending.append(time.perf_counter() - start)
            a.replicator.nudge()
            while not accepted(b.rooms, pair, event):
                await trio.sleep(0)
            latencies.append(time.perf_counter() - start)
        await trio.sleep(1)

        before = [collections.Counter(x.replicator.counters) for x in nodes]
        start = time.perf_counter()
        last = b""
        for _ in range(m):
            last = a.rooms.send(trio_room, BODY).events[0]
            a.replicator.nudge()
            await trio.sleep(0)
        accepted_s = time.perf_counter() - start
        await wait_until(
            lambda: accepted(b.rooms, trio_room, last) and accepted(c.rooms, trio_room, last),
            600,
            0.001,
        )
        delivered_s = time.perf_counter() - start
        wire: collections.Counter[str] = collections.Counter()
        for node, was in zip(nodes, before, strict=True):
            wire.update(node.replicator.counters)
            wire.subtract(was)
        for node in nodes:
            await node.stop()
        nursery.cancel_scope.cancel()
    return Flow(latencies, sending, accepted_s, delivered_s, {k: wire[k] for k in WIRE_COUNTERS})


# --- real processes ---------------------------------------------------------------------------


def processes(root: Path, n: int, m: int, seed: int) -> Flow:
    """The same as :func:`in_process` with ``p2ptchap up`` processes, written into by us."""
    names = ["alice", "bruno", "carole"]
    with NodeProcesses(root) as running:
        port = running.up("alice")
        running.up("bruno", port)
        running.up("carole", port)
        common.wait_blocking(lambda: all(running.peers(x) == 2 for x in names), 20)
        # Opened once the peers are known: their certificates are in the directory.
        owner = open_home(root, "alice")
        pair = form_room(root, owner, "Latence", ["bruno"], 15)
        trio_room = form_room(root, owner, "Débit", ["bruno", "carole"], 15)
        time.sleep(1)

        with readers(root, ["bruno", "carole"]) as (b_db, c_db):
            latencies: list[float] = []
            sending: list[float] = []
            pause = random.Random(seed)
            for _ in range(n):
                # At a random moment over two poll intervals: a message written
                # right after the previous one was pushed would always wait a
                # whole interval.
                time.sleep(pause.uniform(0, 0.5))
                start = time.perf_counter()
                event = owner.send(pair, BODY).events[0]
                sending.append(time.perf_counter() - start)
                while status_in(b_db, event) != "accepted":
                    time.sleep(0.0005)
                latencies.append(time.perf_counter() - start)
            time.sleep(1)

            before = [sync_counters(root / name) for name in names]
            start = time.perf_counter()
            last = b""
            for _ in range(m):
                last = owner.send(trio_room, BODY).events[0]
            accepted_s = time.perf_counter() - start
            common.wait_blocking(
                lambda: status_in(b_db, last) == "accepted" and status_in(c_db, last) == "accepted",
                600,
                0.002,
            )
            delivered_s = time.perf_counter() - start
        time.sleep(0.5)  # the counters are read from the nodes
        wire = counters_since(root, names, before)
        owner.db.close()
    return Flow(latencies, sending, accepted_s, delivered_s, {k: wire[k] for k in WIRE_COUNTERS})


# --- sync efficiency on the in-memory network -------------------------------------------------


def build_room(
    folder: Path, alice: Me, bruno: Me, trust: TrustStore, size: int
) -> tuple[Rooms, bytes, list[Event]]:
    """A room of ``size`` events in Alice's database, two members talking.

    They alternate by ten messages, with a topic change every 1 000 events;
    the last 1 % are all Alice's (Bruno away).  Returns the room's events in
    the order written.
    """
    a, _ = rooms_at(folder / "a.db", alice, trust, [bruno])
    scratch, _ = rooms_at(folder / "scratch.db", bruno, trust, [alice])
    room = a.create("Synchronisation").room
    a.invite(room, bruno.account.account_key)
    scratch.store.add(room, [e.raw for e in a.store.events(room)])
    joined = scratch.join(room).events[0]
    a.store.add(room, [e.raw for e in scratch.store.events(room) if e.id == joined])
    scratch.db.close()

    written = list(a.store.events(room))
    head = a.store.live(room).heads()[-1]
    last: dict[bytes, tuple[int, bytes]] = {}
    for me in (alice, bruno):
        top = a.store.last_of(room, bytes(me.device.device_key))
        assert top is not None
        last[bytes(me.device.device_key)] = (top[0], top[1])
    count = size - len(written)
    away = count - size // 100
    batch: list[bytes] = []
    ts = int(time.time() * 1000)
    for i in range(count):
        me = alice if i >= away or (i // 10) % 2 == 0 else bruno
        kind, key = EventType.MESSAGE, None
        # The shape of an encrypted message (relays never look inside "ct").
        content: dict[codec.Key, codec.Value] = {"session": bytes(32), "index": i, "ct": BODY}
        if i % 1000 == 999:  # only the admin may
            me, kind, key = alice, EventType.TOPIC, ""
            content = {"topic": f"point {i}"}
        device = bytes(me.device.device_key)
        seq, previous = last[device]
        assert me.secret is not None
        head = make_event(
            me.secret,
            me.account.account_key,
            kind,
            content,
            room=room,
            seq=seq + 1,
            prev_seq=previous,
            prev=[head.id],
            depth=head.depth + 1,
            ts=ts + i,
            state_key=key,
        )
        last[device] = (seq + 1, head.id)
        written.append(head)
        batch.append(head.raw)
        if len(batch) == 500:
            a.store.add(room, batch)
            batch = []
    if batch:
        a.store.add(room, batch)
    assert len(a.store.live(room).resolution.accepted) == len(written)
    return a, room, written


def lagging_copy(
    path: Path,
    bruno: Me,
    alice: Me,
    trust: TrustStore,
    room: bytes,
    events: list[Event],
    skip: set[bytes],
) -> float:
    """Bruno's database holding ``events`` but ``skip``; return the seconds it took."""
    b, _ = rooms_at(path, bruno, trust, [alice])
    kept = [e.raw for e in events if e.id not in skip]
    start = time.perf_counter()
    for i in range(0, len(kept), 500):
        b.store.add(room, kept[i : i + 500])
    elapsed = time.perf_counter() - start
    b.db.close()
    return elapsed


async def meet(
    a: Replicator,
    b: Replicator,
    ids: tuple[VerifiedDevice, VerifiedDevice],
    room: bytes,
    settle: float,
) -> Meeting:
    """Connect A and B on the in-memory network; what it took for B to hold everything."""
    net = MemoryNetwork(0, Faults(delay=(0.0, 0.0)))
    target = len(a.store.live(room).events)

    def done() -> bool:
        live = b.store.live(room)
        return len(live.events) == target and not live.resolution.pending

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await net.add("a", a, ids[0])
        await net.add("b", b, ids[1])
        start = time.perf_counter()
        net.connect("a", "b")
        await wait_until(done, 600, 0.001)
        elapsed = time.perf_counter() - start
        at_done = len(net.sent)
        await trio.sleep(settle)
        nursery.cancel_scope.cancel()

    by_type: dict[str, list[int]] = {}
    for record in net.sent:
        key = f"{record.source}→{record.target} {_kind(record.data)}"
        entry = by_type.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += len(record.data)
    until = net.sent[:at_done]
    return Meeting(
        seconds=elapsed,
        bytes=sum(len(s.data) for s in until),
        messages=at_done,
        wants=sum(1 for s in until if s.source == "b" and _kind(s.data) == "want"),
        bytes_settled=sum(len(s.data) for s in net.sent),
        messages_settled=len(net.sent),
        by_type={k: (v[0], v[1]) for k, v in sorted(by_type.items())},
    )


def _kind(data: bytes) -> str:
    message = peerwire.decode(data)
    return message.type if isinstance(message, peerwire.Other) else type(message).__name__


def sync_efficiency(
    root: Path, size: int, seed: int, repeat: int, progress: common.Progress
) -> dict[str, Meeting]:
    """The three cases (nothing, 1 % at random, the last 1 % missing); medians of ``repeat``."""
    alice, trust = identity_of(Home(root / "alice", kdf=vault.MINIMUM))
    bruno, _ = identity_of(Home(root / "bruno", kdf=vault.MINIMUM))
    folder = root / "sync"
    folder.mkdir()
    start = time.perf_counter()
    a, room, events = build_room(folder, alice, bruno, trust, size)
    progress(f"room of {len(events)} events built in {time.perf_counter() - start:.1f} s")
    mine = bytes(alice.device.device_key)
    messages = [e for e in events if e.type is EventType.MESSAGE and bytes(e.device) == mine]
    hundredth = len(events) // 100
    cases = {
        "none": set[bytes](),
        "random": {e.id for e in random.Random(seed).sample(messages, hundredth)},
        "last": {e.id for e in events[-hundredth:]},
    }
    ids = (VerifiedDevice(alice.account, alice.device), VerifiedDevice(bruno.account, bruno.device))
    results: dict[str, Meeting] = {}
    for case, skip in cases.items():
        pristine = folder / f"b-{case}.db"
        if skip:
            built = lagging_copy(pristine, bruno, alice, trust, room, events, skip)
            progress(f"B without {len(skip)} of them built in {built:.1f} s")
        else:
            copy_db(folder / "a.db", pristine)
        missing = [e.raw for e in events if e.id in skip]
        meetings: list[Meeting] = []
        local: list[float] = []
        for attempt in range(repeat):
            # Each attempt from fresh copies of the same two databases.
            copy_db(folder / "a.db", folder / f"a-{case}-{attempt}.db")
            copy_db(pristine, folder / f"b-{case}-{attempt}.db")
            a_rooms, a_book = rooms_at(folder / f"a-{case}-{attempt}.db", alice, trust, [bruno])
            b_rooms, b_book = rooms_at(folder / f"b-{case}-{attempt}.db", bruno, trust, [alice])
            for opened in (a_rooms, b_rooms):
                opened.store.live(room)  # opened from disk, as in a running node
            a_repl, b_repl = Replicator(a_rooms, a_book), Replicator(b_rooms, b_book)
            gc.collect()  # every timing starts from a clean heap
            meetings.append(trio.run(meet, a_repl, b_repl, ids, room, 1.0))
            a_rooms.db.close()
            b_rooms.db.close()
            del a_rooms, b_rooms, a_repl, b_repl
            # The reference: the same events stored into a copy of B, no network.
            copy_db(pristine, folder / f"ref-{case}-{attempt}.db")
            ref_rooms, _ = rooms_at(folder / f"ref-{case}-{attempt}.db", bruno, trust, [alice])
            pending = len(ref_rooms.store.live(room).resolution.pending)
            gc.collect()
            start = time.perf_counter()
            if missing:
                ref_rooms.store.add(room, missing)
            local.append(time.perf_counter() - start)
            assert not ref_rooms.store.live(room).resolution.pending
            ref_rooms.db.close()
            del ref_rooms
        outcome = sorted(meetings, key=lambda x: x.seconds)[len(meetings) // 2]
        outcome.missing = len(missing)
        outcome.missing_bytes = sum(len(raw) for raw in missing)
        outcome.pending_before = pending
        outcome.local_seconds = statistics.median(local)
        outcome.all_seconds = [x.seconds for x in meetings]
        outcome.all_local = local
        results[case] = outcome
    a.db.close()
    return results


# --- the section -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Params:
    latency: int  # messages timed one by one, in-process nodes
    latency_processes: int  # the same with node processes
    burst: int  # messages into the three-member room
    room: int  # events of the room of the sync-efficiency cases
    repeat: int  # attempts of each sync case (median)
    seed: int = 5  # which events B misses; when messages are written


FULL = Params(latency=200, latency_processes=100, burst=2_000, room=10_000, repeat=3)
SHORT = Params(latency=20, latency_processes=6, burst=150, room=2_000, repeat=1)


def _latency_rows(
    section: common.Section, key: str, label: str, flow: Flow, rtt: list[float]
) -> None:
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        section.add(
            f"{key}.{name}",
            f"latency A → B stored, {label}, {name} of {len(flow.latency)}",
            common.percentile(flow.latency, q) * 1000,
            "ms",
            common.percentile(rtt, q) * 1000,
            f"TCP ping-pong round trip, {name}",
        )
    section.add(
        f"{key}.fastest",
        "… fastest",
        min(flow.latency) * 1000,
        "ms",
        common.percentile(rtt, 0.5) * 1000,
        "TCP ping-pong round trip, p50",
    )
    section.add(
        f"{key}.sending",
        "… of which `Rooms.send` on A, p50",
        common.percentile(flow.sending, 0.5) * 1000,
        "ms",
        common.percentile(flow.latency, 0.5) * 1000,
        "the whole latency, p50",
    )


def _throughput_rows(
    section: common.Section,
    key: str,
    label: str,
    flow: Flow,
    burst: int,
    local: float,
    verify: float,
) -> None:
    section.add(
        f"{key}.stored",
        f"3-member room, {label}: {burst} messages stored at A",
        burst / flow.accepted,
        "msg/s",
        local,
        "`Rooms.send` alone, no network",
    )
    section.add(
        f"{key}.delivered",
        f"3-member room, {label}: the same delivered (stored at B and at C)",
        burst / flow.delivered,
        "msg/s",
        verify,
        "bare Ed25519 verify",
        "/s",
    )
    sent = flow.wire["events-pushed"] + flow.wire["events-served"]
    section.add(
        f"{key}.sent_per_delivered",
        f"… events sent per event delivered, {label} "
        f"({flow.wire['events-duplicate']} duplicates received)",
        sent / (2 * burst),
        "",
        1,
        "each recipient once",
    )


def _sync_rows(section: common.Section, size: int, sync: dict[str, Meeting]) -> None:
    for case, label in (("random", "1 % missing at random"), ("last", "the last 1 % missing")):
        out = sync[case]
        section.add(
            f"efficiency.{case}.bytes",
            f"sync of {size} events, {label} ({out.missing}, {out.pending_before} waiting on B): "
            f"bytes both ways until B holds all ({out.messages} messages)",
            out.bytes,
            "B",
            out.missing_bytes,
            "the missing events' bytes",
        )
        section.add(
            f"efficiency.{case}.seconds",
            f"… wall time ({out.wants} `want` by B)",
            out.seconds * 1000,
            "ms",
            out.local_seconds * 1000,
            "storing them into B directly",
        )
    none = sync["none"]
    section.add(
        "efficiency.none.bytes",
        f"sync of {size} events, nothing missing: bytes both ways "
        f"({none.messages_settled} messages)",
        none.bytes_settled,
        "B",
    )
    for case, out in sync.items():
        kinds = ", ".join(f"{k} {n}×{b} B" for k, (n, b) in out.by_type.items())
        section.notes.append(f"messages of the sync '{case}' case: {kinds}")


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "sync",
        "Replication",
        f"Latency over {params.latency} messages (in-process nodes) and "
        f"{params.latency_processes} (node processes); {params.burst} messages into a "
        f"3-member room; sync of a {params.room}-event room on the in-memory network "
        f"(median of {params.repeat}).",
    )
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as folder:
        root = Path(folder)
        progress("references: TCP ping-pong, Ed25519, Rooms.send alone")
        rtt = trio.run(tcp_ping_pong, max(params.latency, 200))
        verify = common.ed25519_verify_rate(1.0)
        make_cell(root / "nodes", ["alice", "bruno", "carole", "alone"])
        local = local_send_rate(root / "nodes", params.burst)
        progress("in-process nodes")
        inproc = trio.run(in_process, root / "nodes", params.latency, params.burst)
        progress("node processes")
        make_cell(root / "processes", ["alice", "bruno", "carole"])
        procs = processes(root / "processes", params.latency_processes, params.burst, params.seed)
        progress("sync efficiency")
        make_cell(root / "memnet", ["alice", "bruno"])
        sync = sync_efficiency(root / "memnet", params.room, params.seed, params.repeat, progress)

    _latency_rows(section, "latency", "in-process nodes", inproc, rtt)
    _latency_rows(
        section,
        "latency_processes",
        "node processes, written by another process (+ A's poll ≤ 0.25 s)",
        procs,
        rtt,
    )
    _throughput_rows(section, "throughput", "in-process nodes", inproc, params.burst, local, verify)
    _throughput_rows(
        section, "throughput_processes", "node processes", procs, params.burst, local, verify
    )
    _sync_rows(section, params.room, sync)
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (
    common.Option("--seed", "seed", help="which events B misses; when messages are written"),
)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

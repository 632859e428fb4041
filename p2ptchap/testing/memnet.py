"""An in-memory network for trio: many nodes' replicators in one process, with faults.

:class:`MemoryNetwork` stands where the peer manager stands in a node: it
tells each :class:`~p2ptchap.replication.Replicator` when a peer comes and
goes and hands it the peer's messages, one at a time per link, as a secure
connection would.  Between the two it can inject, from one seeded random
generator so that a failing run can be replayed:

* **loss** — a message is never delivered (harsher than TCP, which would
  rather break the connection: the protocol must recover by itself);
* **duplication** — a message is delivered twice;
* **delay** and **reordering** — every message waits a random time in
  ``delay``; with probability ``reorder`` up to ten times more, so later
  messages overtake it;
* **partitions** — :meth:`MemoryNetwork.partition` cuts every link between
  groups (both ends see the peer go), :meth:`MemoryNetwork.heal` restores
  the links that were wanted; messages in flight on a cut link are lost.

Every message sent is recorded in :attr:`MemoryNetwork.sent` (time, from,
to, bytes), so tests can check what each node was *sent*, not only what it
stored.  Use it under trio's ``MockClock(autojump_threshold=0)`` to run
minutes of network time in a moment.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from collections.abc import Iterable

import trio

from p2ptchap.core import peerwire
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.identity import VerifiedDevice
from p2ptchap.services import Service

log = logging.getLogger("p2ptchap.testing.memnet")


@dataclasses.dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong on every link (probabilities per message; seconds)."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = (0.001, 0.005)
    reorder: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """One message put on the network (delivered or not)."""

    time: float
    source: str
    target: str
    data: bytes
    delivered: bool


@dataclasses.dataclass
class _Node:
    name: str
    replicator: Service
    verified: VerifiedDevice
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)


class _Link:
    """``source``'s view of its connection to ``target`` (a :class:`PeerLink`)."""

    def __init__(self, network: MemoryNetwork, source: str, target: str, generation: int) -> None:
        self.network = network
        self.source = source
        self.target = target
        self.generation = generation

    @property
    def verified(self) -> VerifiedDevice:
        return self.network.nodes[self.target].verified

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.network._transmit(self, data)


class MemoryNetwork:
    """Nodes and links in memory (see the module documentation)."""

    def __init__(self, seed: int, faults: Faults = Faults()) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - replayable faults, not secrets
        self.faults = faults
        self.nodes: dict[str, _Node] = {}
        self.sent: list[Sent] = []
        #: Pairs that should be linked when not partitioned.
        self.wanted: set[frozenset[str]] = set()
        self._groups: list[set[str]] | None = None
        #: Link objects of the pairs that are up, by (source, target).
        self._links: dict[tuple[str, str], _Link] = {}
        self._generation = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        #: Connections closed because a node sent something malformed.
        self.protocol_errors = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the deliveries (and the replicators added with ``start``) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def add(self, name: str, replicator: Service, verified: VerifiedDevice) -> None:
        """Add a node and start its replicator in the network's nursery."""
        assert self._nursery is not None, "call add() inside run()"
        self.nodes[name] = _Node(name, replicator, verified)
        await self._nursery.start(replicator.run)

    # --- topology ---------------------------------------------------------------------------

    def connect(self, a: str, b: str) -> None:
        """Link ``a`` and ``b`` (now, unless a partition separates them)."""
        self.wanted.add(frozenset((a, b)))
        if self._separated(a, b) or (a, b) in self._links:
            return
        generation = next(self._generation)
        ab, ba = _Link(self, a, b, generation), _Link(self, b, a, generation)
        self._links[(a, b)], self._links[(b, a)] = ab, ba
        self.nodes[a].replicator.connected(ab)
        self.nodes[b].replicator.connected(ba)

    def mesh(self, names: Iterable[str] | None = None) -> None:
        """Link every pair among ``names`` (all nodes by default)."""
        chosen = sorted(names if names is not None else self.nodes)
        for a, b in itertools.combinations(chosen, 2):
            self.connect(a, b)

    def chain(self, *names: str) -> None:
        """Link each node to the next only: ``a–b–c``, where ``a`` and ``c`` never meet."""
        for a, b in itertools.pairwise(names):
            self.connect(a, b)

    def disconnect(self, a: str, b: str, *, forever: bool = True) -> None:
        if forever:
            self.wanted.discard(frozenset((a, b)))
        ab, ba = self._links.pop((a, b), None), self._links.pop((b, a), None)
        if ab is not None:
            self.nodes[a].replicator.disconnected(ab)
        if ba is not None:
            self.nodes[b].replicator.disconnected(ba)

    def isolate(self, name: str) -> None:
        """Cut every link of ``name`` for good (a device thrown out of the network)."""
        for a, b in list(self._links):
            if name in (a, b):
                self.disconnect(a, b)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups (nodes in no group are alone)."""
        self._groups = [set(g) for g in groups]
        for a, b in list(self._links):
            if self._separated(a, b):
                self.disconnect(a, b, forever=False)

    def heal(self) -> None:
        """Restore every wanted link."""
        self._groups = None
        for pair in sorted(self.wanted, key=sorted):
            a, b = sorted(pair)
            self.connect(a, b)

    def _separated(self, a: str, b: str) -> bool:
        if self._groups is None:
            return False
        return not any(a in group and b in group for group in self._groups)

    def linked(self, a: str, b: str) -> bool:
        return (a, b) in self._links

    # --- delivery ---------------------------------------------------------------------------

    def _transmit(self, link: _Link, data: bytes) -> None:
        if self._links.get((link.source, link.target)) is not link:
            return  # the link was cut: the sender's connection is gone
        faults = self.faults
        lost = self.rng.random() < faults.loss
        self.sent.append(Sent(trio.current_time(), link.source, link.target, data, not lost))
        if lost:
            return
        copies = 2 if self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(*faults.delay)
            if self.rng.random() < faults.reorder:
                delay += self.rng.uniform(0, 10 * faults.delay[1])
            assert self._nursery is not None
            self._nursery.start_soon(self._deliver, link, data, delay)

    async def _deliver(self, link: _Link, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        back = self._links.get((link.target, link.source))
        if back is None or back.generation != link.generation:
            return  # cut (or cut and re-made) while in flight
        target = self.nodes[link.target]
        async with target.lock:
            try:
                message = peerwire.decode(data)
                if isinstance(message, peerwire.Other):
                    await target.replicator.received(back, message.body)
            except DecodeError as exc:
                # What the peer manager does: a malformed message ends the connection.
                self.protocol_errors += 1
                log.warning("%s sent %s a malformed message: %s", link.source, link.target, exc)
                self.disconnect(link.source, link.target, forever=False)

"""Several applications on one set of peer connections: room sync and file transfers.

The peer manager (and the in-memory network of the tests) talks to one
application; :class:`Services` is that application for a node that runs
several, each owning some message types (``"t"``): it tells each of them
when a peer comes and goes, and hands each message to the one that owns
its type.

Each application keeps, per connected peer, a queue of what to send and a
task that writes it (:class:`PeerQueue`), in a :class:`PeerTable` keyed by
device: a new connection of a device replaces the old one, and only the
connection a peer was registered with can remove it or be heard from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Set
from typing import Any, Generic, Protocol, TypeVar

import trio

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError, P2PTchapError
from p2ptchap.core.identity import VerifiedDevice


class PeerLink(Protocol):
    """One authenticated peer, as the owner of the connection presents it."""

    @property
    def verified(self) -> VerifiedDevice: ...

    async def send(self, data: bytes) -> None: ...


Item = TypeVar("Item")


@dataclasses.dataclass(eq=False)
class PeerQueue(Generic[Item]):
    """One peer as an application sees it: its link and what waits to be sent to it."""

    link: PeerLink
    key: bytes = dataclasses.field(init=False)
    #: Gone (disconnected, replaced, or its sending failed): nothing more is sent.
    dead: bool = dataclasses.field(default=False, init=False)
    send: trio.MemorySendChannel[Item] = dataclasses.field(init=False, repr=False)
    receive: trio.MemoryReceiveChannel[Item] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = bytes(self.link.verified.device.device_key)
        self.send, self.receive = trio.open_memory_channel[Item](math.inf)

    @property
    def verified(self) -> VerifiedDevice:
        return self.link.verified

    def put(self, item: Item) -> None:
        """Queue ``item`` (the caller bounds the queue: it knows what items weigh)."""
        if self.dead:
            return
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.send.send_nowait(item)

    def close(self) -> None:
        self.dead = True
        self.send.close()

    async def write(self, prepare: Callable[[Item], bytes]) -> None:
        """Send the queue's items, each made bytes by ``prepare``, until the link fails.

        ``prepare`` sees every item, even once the peer is gone, so that the
        caller's accounting of what is queued stays right.
        """
        try:
            async with self.receive:
                async for item in self.receive:
                    data = prepare(item)
                    if self.dead:
                        return  # disconnected (revoked, say): nothing more goes out
                    try:
                        await self.link.send(data)
                    except (P2PTchapError, trio.BrokenResourceError, trio.ClosedResourceError):
                        return  # the connection ended; its owner reports it
        finally:
            self.dead = True


Peer = TypeVar("Peer", bound="PeerQueue[Any]")


class PeerTable(dict[bytes, Peer]):
    """The connected peers of one application, by device key."""

    def add(self, peer: Peer) -> None:
        """Register ``peer``; a previous connection of the same device is closed."""
        old = self.pop(peer.key, None)
        if old is not None:
            old.close()
        self[peer.key] = peer

    def find(self, link: PeerLink) -> Peer | None:
        """The peer registered with exactly this link (messages on an old link are ignored)."""
        peer = self.get(bytes(link.verified.device.device_key))
        return peer if peer is not None and peer.link is link else None

    def drop(self, link: PeerLink) -> Peer | None:
        """Unregister and close the peer of ``link`` (if that link is still the current one)."""
        peer = self.find(link)
        if peer is not None:
            del self[peer.key]
            peer.close()
        return peer

    def forget(self, peer: Peer) -> None:
        """Unregister ``peer`` if it is still the registered one (its sending ended)."""
        if self.get(peer.key) is peer:
            del self[peer.key]


class Service(Protocol):
    """One application: the message types it owns, and the peer manager's callbacks."""

    @property
    def types(self) -> Set[str]: ...

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def connected(self, link: PeerLink) -> None: ...

    def disconnected(self, link: PeerLink) -> None: ...

    async def received(self, link: PeerLink, body: dict[codec.Key, codec.Value]) -> None: ...


class Services:
    """Dispatches to ``services`` by message type (see the module documentation)."""

    def __init__(self, *services: Service) -> None:
        self.services = services
        self._by_type: dict[str, Service] = {}
        for service in services:
            for kind in service.types:
                if kind in self._by_type:
                    raise ValueError(f"message type {kind!r} owned twice")
                self._by_type[kind] = service

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._by_type)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for service in self.services:
                await nursery.start(service.run)
            task_status.started()

    def connected(self, link: PeerLink) -> None:
        for service in self.services:
            service.connected(link)

    def disconnected(self, link: PeerLink) -> None:
        for service in self.services:
            service.disconnected(link)

    async def received(self, link: PeerLink, body: dict[codec.Key, codec.Value]) -> None:
        kind = body.get("t")
        service = self._by_type.get(kind) if isinstance(kind, str) else None
        if service is None:
            raise DecodeError(f"no service for message type {kind!r}")
        await service.received(link, body)

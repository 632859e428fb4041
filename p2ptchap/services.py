"""Several applications on one set of peer connections: room sync and file transfers.

The peer manager (and the in-memory network of the tests) talks to one
application; :class:`Services` is that application for a node that runs
several, each owning some message types (``"t"``): it tells each of them
when a peer comes and goes, and hands each message to the one that owns
its type.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

import trio

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.replication import PeerLink


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

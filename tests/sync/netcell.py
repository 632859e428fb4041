"""Nodes on the in-memory network, each with its own SQLite file, for sync tests.

Every node starts knowing only its own certificates: what it learns of the
others comes through trust gossip, as on a real network.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from p2ptchap.core import identity, peerwire, sync
from p2ptchap.core.events import Event, parse_event
from p2ptchap.core.identity import Kind, VerifiedDevice
from p2ptchap.files import Files, FileSettings
from p2ptchap.replication import Replicator, RevocationBook, SyncSettings
from p2ptchap.rooms import Me, Rooms
from p2ptchap.services import Services
from p2ptchap.store.blobs import BlobStore
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.testing.memnet import Faults, MemoryNetwork
from p2ptchap.transfers import FileExchange, TransferSettings
from tests.conftest import NOW, Member, Org, make_rng

#: Faster rounds than a LAN node's, in virtual time.
FAST = SyncSettings(interval=1.0, want_timeout=3.0, receipt_delay=0.2, poll=0.05)
FAST_TRANSFERS = TransferSettings(interval=0.5, requery=2.0)


@dataclasses.dataclass
class SyncNode:
    name: str
    member: Member
    rooms: Rooms
    replicator: Replicator
    book: RevocationBook
    verified: VerifiedDevice
    #: With ``SyncCell(files=True)``: the node's files and its transfer service.
    files: Files | None = None
    exchange: FileExchange | None = None

    @property
    def account(self) -> identity.AccountCertificate:
        return self.member.account


class SyncCell:
    """A :class:`MemoryNetwork` and the nodes on it."""

    def __init__(
        self,
        tmp_path: Path,
        org: Org,
        seed: int = 0,
        faults: Faults | None = None,
        settings: SyncSettings = FAST,
        *,
        files: FileSettings | None = None,
        transfers: TransferSettings = FAST_TRANSFERS,
    ) -> None:
        self.tmp_path = tmp_path
        self.org = org
        self.seed = seed
        self.net = MemoryNetwork(seed, faults or Faults())
        self.settings = settings
        self.file_settings = files
        self.transfers = transfers
        self.nodes: dict[str, SyncNode] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the network (and the nodes added meanwhile) for the ``async with`` block."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.net.run)
            yield
            nursery.cancel_scope.cancel()

    async def add_many(self, *names: str) -> list[SyncNode]:
        return [await self.add(name) for name in names]

    async def add(
        self, name: str, kind: Kind = Kind.AGENT, member: Member | None = None
    ) -> SyncNode:
        member = member or self.org.member(
            f"{name}@interieur.gouv.fr", name.title(), kind=kind, device_name=name
        )
        book = RevocationBook(self.org.trust)
        db = Database(self.tmp_path / f"{name}.db")
        directory = DirectoryStore(db, self.org.trust, book.revocations, lambda: NOW)
        device = identity.parse_device_certificate(member.device)
        clock: Callable[[], float] = lambda: NOW + trio.current_time()  # noqa: E731
        me = Me(member.account, device, member.device_secret, member.exchange_secret)
        rooms = Rooms(db, directory, me, clock, make_rng(self.seed * 1000 + len(self.nodes)))
        replicator = Replicator(rooms, book, settings=self.settings)
        verified = VerifiedDevice(member.account, device)
        node = SyncNode(name, member, rooms, replicator, book, verified)
        self.nodes[name] = node
        if self.file_settings is None:
            await self.net.add(name, replicator, verified)
            return node
        blobs = BlobStore(db, self.tmp_path / f"{name}-blobs", clock)
        node.files = Files(rooms, blobs, self.file_settings)
        node.exchange = FileExchange(node.files, self.transfers)
        await self.net.add(name, Services(replicator, node.exchange), verified)
        return node

    def other_process(self, name: str) -> Rooms:
        """A second :class:`Rooms` on ``name``'s database, as the CLI next to its node."""
        node = self.nodes[name]
        db = Database(self.tmp_path / f"{name}.db")
        directory = DirectoryStore(db, self.org.trust, node.book.revocations, lambda: NOW)
        clock: Callable[[], float] = lambda: NOW + trio.current_time()  # noqa: E731
        return Rooms(db, directory, node.rooms.me, clock, make_rng(self.seed * 1000 + 999))

    def received_events(self) -> dict[str, list[Event]]:
        """Per node, every event carried to it in an ``events`` message (delivered or not)."""
        found: dict[str, list[Event]] = {name: [] for name in self.nodes}
        for sent in self.net.sent:
            message = peerwire.decode(sent.data)
            assert isinstance(message, peerwire.Other)
            if message.type != "events":
                continue
            decoded = sync.decode(message.body)
            assert isinstance(decoded, sync.Events)
            found[sent.target].extend(parse_event(raw) for raw in decoded.events)
        return found


async def settle(cell: SyncCell, seconds: float = 30.0) -> None:
    """Let the network run ``seconds`` of (virtual) time."""
    await trio.sleep(seconds)

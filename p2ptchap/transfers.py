"""File transfers between peers: fetching from all who hold a file, serving those entitled.

:class:`FileExchange` is, like the :class:`~p2ptchap.replication.Replicator`,
an application of the peer connections (the node hands it the ``f*``
messages of :mod:`p2ptchap.core.transfer`).  For every download it keeps a
:class:`~p2ptchap.core.transfer.Fetch` — the pure scheduler — asks every
connected peer what it holds, sends the requests the scheduler plans,
checks and stores what arrives (:mod:`p2ptchap.store.blobs`), and reports
progress: bytes, rate, time left, sources.  A download survives the loss of
any source and a restart of either side: verified chunks are recorded
durably and never fetched twice; downloads asked for are resumed when the
node starts.

It serves a file to a peer only if our state of some room naming the file
lets that peer's account read the room in full (a member, or any agent in
a public room); a peer that may not have it is told, as one that asks for a
file nobody has, that we hold nothing.  It asks for a file only those same
peers, and the author of a message naming it (who may have been removed
from the room before anyone fetched the file, and who still serves those
its own state counts as members).  Chunks are read from disk by a per-peer
sender task, a bounded number queued at a time, so neither a fast
downloader nor many of them can make us hold much memory; a peer that
sends a chunk or leaves that fail their check is dropped as a source of
that file, and after :data:`MAX_STRIKES` such lies, of every file for an
hour.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Final

import trio

from p2ptchap.core import codec
from p2ptchap.core.errors import N_, DecodeError, LocalError, StorageError
from p2ptchap.core.files import chunk_count
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey
from p2ptchap.core.transfer import (
    Chunk,
    ChunkRequest,
    Fetch,
    FetchSettings,
    FileMessage,
    Have,
    Leaves,
    LeavesRequest,
    NotHere,
    Query,
    Verdict,
    bitmap,
)
from p2ptchap.core.transfer import decode as decode_message
from p2ptchap.core.transfer import encode as encode_message
from p2ptchap.files import Files
from p2ptchap.services import PeerLink, PeerQueue, PeerTable
from p2ptchap.store.blobs import WrongSize

log = logging.getLogger("p2ptchap.transfers")

#: Lies (bad chunks or leaves) before a peer is no longer asked for any file.
MAX_STRIKES: Final = 3
STRIKE_PENALTY: Final = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class TransferSettings:
    fetch: FetchSettings = dataclasses.field(default_factory=FetchSettings)
    #: Chunks written before they are flushed to disk and recorded (16 MiB).
    flush_every: int = 256
    #: Seconds between rounds: flushing, asking again who holds what.
    interval: float = 1.0
    #: Seconds before peers are asked again what they hold of a download.
    requery: float = 5.0
    #: Chunk requests of one peer queued at most (the rest is refused with ``fn``).
    max_queued_chunks: int = 256
    #: Bytes of other messages (leaves, answers) queued for one peer at most;
    #: beyond, answers are dropped (the asker times out and asks again).
    max_queued_bytes: int = 8 << 20
    #: Downloads started by themselves (small files) in progress at most.
    max_auto_downloads: int = 16
    #: Seconds between collections of unreferenced blobs.
    collect_every: float = 600.0


#: What waits to go to a peer: a message's bytes, or a chunk to read from
#: disk when its turn comes: (root, index, file size).
_Outgoing = bytes | tuple[bytes, int, int]


@dataclasses.dataclass(eq=False)
class _Peer(PeerQueue[_Outgoing]):
    queued_chunks: int = 0
    queued_bytes: int = 0
    #: root → (trio time, allowed): the access decision, cached a little
    allowed: dict[bytes, tuple[float, bool]] = dataclasses.field(default_factory=dict)
    #: root → (trio time, askable): whether we may ask it for the file, likewise
    askable: dict[bytes, tuple[float, bool]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Download:
    fetch: Fetch
    started: float
    #: (trio time, bytes held) samples of the last seconds, for the rate
    samples: collections.deque[tuple[float, int]]
    queried: dict[bytes, float] = dataclasses.field(default_factory=dict)
    done: trio.Event = dataclasses.field(default_factory=trio.Event)


class FileExchange:
    """Fetches and serves files for one node (see the module documentation)."""

    types: Final = frozenset({"fq", "fh", "fl", "fv", "fg", "fc", "fn"})

    def __init__(
        self,
        files: Files,
        settings: TransferSettings = TransferSettings(),
        *,
        auto_download: bool = True,
    ) -> None:
        self.files = files
        self.blobs = files.blobs
        self.settings = settings
        self.auto_download = auto_download
        self.counters: collections.Counter[str] = collections.Counter()
        self._peers: PeerTable[_Peer] = PeerTable()
        self._downloads: dict[bytes, _Download] = {}
        self._finished: dict[bytes, float] = {}
        self._flushing: set[bytes] = set()
        self._strikes: dict[bytes, tuple[int, float]] = {}
        self._nursery: trio.Nursery | None = None
        self._rounds_done = 0

    # --- the owner's interface -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume the downloads asked for, then serve and fetch until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for root, size in self.blobs.wanted():
                    self._start(root, size)
            except (StorageError, LocalError) as exc:
                log.error(N_("could not resume the downloads: %s"), exc.detail)
            nursery.start_soon(self._rounds)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.blobs.close()

    def download(self, root: bytes, size: int) -> dict[str, object]:
        """Fetch ``root`` (checked against the size limit and free space); its progress."""
        current = self._downloads.get(root)
        if current is not None and current.fetch.size != size:
            if current.fetch.leaves is not None:
                raise WrongSize(f"{size} != {current.fetch.size}")
            del self._downloads[root]  # started with an unproven size: start again
            current.done.set()
        self.blobs.want(root, size, self.files.settings.max_size)
        self._start(root, size)
        return self.progress(root)

    def cancel(self, root: bytes) -> bool:
        """Stop fetching ``root``; what was verified is kept for a later resume."""
        download = self._downloads.pop(root, None)
        self.blobs.unwant(root)
        if download is None:
            return False
        with contextlib.suppress(StorageError):
            self.blobs.flush(root)
        download.done.set()
        return True

    async def wait(self, root: bytes) -> None:
        """Until the download of ``root`` ends (complete or cancelled)."""
        download = self._downloads.get(root)
        if download is not None:
            await download.done.wait()

    def progress(self, root: bytes | None = None) -> dict[str, object]:
        """One download's progress, or every one's (``{root hex: …}``)."""
        if root is None:
            return {r.hex(): self._report(r) for r in self._downloads}
        return self._report(root)

    def _report(self, root: bytes) -> dict[str, object]:
        download = self._downloads.get(root)
        if download is None:
            info = self.blobs.info(root)
            if info is None:
                return {"root": root.hex(), "state": "unknown"}
            state = "complete" if info.complete else ("cancelled" if not info.wanted else "queued")
            return {
                "root": root.hex(),
                "state": state,
                "size": info.size,
                "held": info.size if info.complete else info.held_bytes,
            }
        fetch = download.fetch
        held = fetch.held_bytes
        rate = self._rate(download)
        remaining = fetch.size - held
        sources = [
            {
                "device": source.hex(),
                "email": self._peers[source].link.verified.account.email
                if source in self._peers
                else None,
                "chunks": state.received,
                "banned": state.banned,
            }
            for source, state in fetch.sources.items()
            if state.has
        ]
        return {
            "root": root.hex(),
            "state": "fetching" if fetch.leaves is not None or held else "searching",
            "size": fetch.size,
            "held": held,
            "rate": rate,
            "eta": remaining / rate if rate > 0 else None,
            "sources": sources,
        }

    def _rate(self, download: _Download) -> float:
        samples = download.samples
        if len(samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = samples[0], samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def health(self) -> dict[str, int]:
        return {"downloads": len(self._downloads), **dict(sorted(self.counters.items()))}

    # --- peers -----------------------------------------------------------------------

    def connected(self, link: PeerLink) -> None:
        peer = _Peer(link)
        self._peers.add(peer)
        if self._nursery is not None:
            self._nursery.start_soon(self._sender, peer)
        for root in self._downloads:
            self._query(peer, root)

    def disconnected(self, link: PeerLink) -> None:
        peer = self._peers.drop(link)
        if peer is not None:
            for root, download in self._downloads.items():
                download.fetch.gone(peer.key)
                self._pump(root)

    async def received(self, link: PeerLink, body: dict[codec.Key, codec.Value]) -> None:
        """Handle one file message; raise ``DecodeError`` if malformed."""
        await trio.lowlevel.checkpoint()
        peer = self._peers.find(link)
        if peer is None:
            return
        try:
            message = decode_message(body)
        except DecodeError:
            self.counters["malformed-message"] += 1
            raise
        try:
            self._handle(peer, message)
        except StorageError as exc:
            self.counters["storage-error"] += 1
            log.error(N_("a file transfer could not use the disk: %s"), exc.detail)

    def _handle(self, peer: _Peer, message: FileMessage) -> None:
        match message:
            case Query(root):
                self._answer_query(peer, root)
            case LeavesRequest(root, start, count):
                self._answer_leaves(peer, root, start, count)
            case ChunkRequest(root, chunks):
                self._answer_chunks(peer, root, chunks)
            case Have(root, have):
                download = self._downloads.get(root)
                # Only answers to our own question count: an unsolicited
                # claim could otherwise keep a liar first in line.
                if download is not None and download.queried.pop(peer.key, None) is not None:
                    download.fetch.has(peer.key, have)
                    self._pump(root)
            case Leaves(root, start, leaves):
                self._on_leaves(peer, root, start, leaves)
            case Chunk(root, index, data):
                self._on_chunk(peer, root, index, data)
            case NotHere(root, chunks):
                if (download := self._downloads.get(root)) is not None:
                    download.fetch.not_here(peer.key, chunks)
                    self._pump(root)

    # --- serving -----------------------------------------------------------------------

    def _allowed(self, peer: _Peer, root: bytes) -> bool:
        """Whether ``peer`` may be served ``root`` (see :meth:`Files.may_serve`)."""
        return self._judged(peer, root, peer.allowed, self.files.may_serve, "refused-file")

    def _askable(self, peer: _Peer, root: bytes) -> bool:
        """Whether we may ask ``peer`` for ``root`` (see :meth:`Files.may_ask`)."""
        return self._judged(peer, root, peer.askable, self.files.may_ask, None)

    def _judged(
        self,
        peer: _Peer,
        root: bytes,
        cache: dict[bytes, tuple[float, bool]],
        rule: Callable[[AccountKey, Kind, str, bytes], bool],
        refusal: str | None,
    ) -> bool:
        """``rule`` for a valid peer's account and ``root``, cached a little in ``cache``."""
        now = trio.current_time()
        cached = cache.get(root)
        if cached is not None and now - cached[0] < 10.0:
            return cached[1]
        verified = peer.link.verified
        account, device = verified.account, verified.device
        decided = self.files.rooms.directory.sender(
            account.account_key, device.device_key
        ) is not None and rule(account.account_key, account.kind, account.email, root)
        if len(cache) > 1024:
            cache.clear()
        cache[root] = (now, decided)
        if not decided and refusal is not None:
            self.counters[refusal] += 1
        return decided

    def _answer_query(self, peer: _Peer, root: bytes) -> None:
        info = self.blobs.info(root)
        have = b""
        if info is not None and info.have and self._allowed(peer, root):
            count = chunk_count(info.size)
            # Without leaves we cannot prove what we hold: offer nothing.
            have = bitmap(info.have, count) if info.leaves is not None else b""
        self._queue(peer, Have(root, have))

    def _answer_leaves(self, peer: _Peer, root: bytes, start: int, count: int) -> None:
        info = self.blobs.info(root)
        if info is None or info.leaves is None or not self._allowed(peer, root):
            self._queue(peer, Have(root, b""))
            return
        part = info.leaves[start : start + count]
        if part:
            self._queue(peer, Leaves(root, start, b"".join(part)))

    def _answer_chunks(self, peer: _Peer, root: bytes, chunks: tuple[int, ...]) -> None:
        info = self.blobs.info(root)
        allowed = info is not None and self._allowed(peer, root)
        refused = []
        for index in chunks:
            if (
                not allowed
                or info is None
                or index not in info.have
                or peer.queued_chunks >= self.settings.max_queued_chunks
            ):
                refused.append(index)
                continue
            peer.queued_chunks += 1
            peer.put((root, index, info.size))
        if refused:
            self._queue(peer, NotHere(root, tuple(refused)))

    def _queue(self, peer: _Peer, message: FileMessage) -> None:
        if peer.dead:
            return
        data = encode_message(message)
        if peer.queued_bytes + len(data) > self.settings.max_queued_bytes:
            self.counters["dropped-outgoing"] += 1
            return
        peer.queued_bytes += len(data)
        peer.put(data)

    async def _sender(self, peer: _Peer) -> None:
        """Write this peer's messages; chunks are read from disk only when their turn comes."""
        try:
            await peer.write(lambda item: self._outgoing(peer, item))
        finally:
            self._peers.forget(peer)

    def _outgoing(self, peer: _Peer, item: _Outgoing) -> bytes:
        """The bytes of a queued message; a queued chunk is read from disk now."""
        if not isinstance(item, tuple):
            peer.queued_bytes -= len(item)
            return item
        peer.queued_chunks -= 1
        if peer.dead:
            return b""  # not sent: no need to read it
        root, index, size = item
        try:
            data = self.blobs.read_chunk(root, index, size)
        except StorageError as exc:
            self.counters["storage-error"] += 1
            log.error(N_("could not read a file to send: %s"), exc.detail)
            return encode_message(NotHere(root, (index,)))
        self.counters["chunks-sent"] += 1
        return encode_message(Chunk(root, index, data))

    # --- fetching ----------------------------------------------------------------------

    def _start(self, root: bytes, size: int) -> None:
        if root in self._downloads:
            return
        info = self.blobs.info(root)
        if info is not None and info.complete:
            return
        fetch = Fetch(
            root,
            size,
            held=info.have if info is not None else (),
            leaves=info.leaves if info is not None else None,
            settings=self.settings.fetch,
        )
        now = trio.current_time()
        download = _Download(fetch, now, collections.deque([(now, fetch.held_bytes)], maxlen=64))
        self._downloads[root] = download
        log.info(N_("fetching file %s (%d bytes)"), root.hex()[:12], size)
        for peer in list(self._peers.values()):
            self._query(peer, root)

    def _query(self, peer: _Peer, root: bytes) -> None:
        download = self._downloads.get(root)
        # Asked only of peers that may hold it by our rules (readers of a
        # room naming it, or its author): the question tells what we fetch.
        if download is None or self._struck(peer.key) or not self._askable(peer, root):
            return
        download.queried[peer.key] = trio.current_time()
        self._queue(peer, Query(root))

    def _struck(self, key: bytes) -> bool:
        strikes, since = self._strikes.get(key, (0, 0.0))
        return strikes >= MAX_STRIKES and trio.current_time() - since < STRIKE_PENALTY

    def _strike(self, peer: _Peer, what: str) -> None:
        strikes, _since = self._strikes.get(peer.key, (0, 0.0))
        self._strikes[peer.key] = (strikes + 1, trio.current_time())
        self.counters[what] += 1
        account = peer.link.verified.account
        log.warning(
            N_("%s <%s> sent file data that failed its check (%s); asking others"),
            account.display_name,
            account.email,
            what,
        )

    def _pump(self, root: bytes) -> None:
        download = self._downloads.get(root)
        if download is None:
            return

        def rank(source: bytes) -> float:
            state = download.fetch.sources[source]
            return -state.received

        for source, request in download.fetch.plan(trio.current_time(), rank):
            peer = self._peers.get(source)
            if peer is None or self._struck(source):
                download.fetch.gone(source)
                continue
            self._queue(peer, request)

    def _on_leaves(self, peer: _Peer, root: bytes, start: int, leaves: bytes) -> None:
        download = self._downloads.get(root)
        if download is None:
            return
        fetch = download.fetch
        had = fetch.leaves is not None
        if not fetch.leaves_arrived(peer.key, start, leaves):
            # Dropped for this file, not struck: leaves that do not fit may
            # mean that the size we were given (by a message) is wrong.
            self.counters["bad-leaves"] += 1
        elif not had and fetch.leaves is not None:
            self.blobs.set_leaves(root, fetch.leaves)
        self._pump(root)

    def _on_chunk(self, peer: _Peer, root: bytes, index: int, data: bytes) -> None:
        download = self._downloads.get(root)
        if download is None:
            return
        fetch = download.fetch
        verdict = fetch.chunk_arrived(peer.key, index, data)
        if verdict is Verdict.BAD:
            self._strike(peer, "bad-chunk")
        elif verdict is Verdict.KEEP:
            try:
                self.blobs.write_chunk(root, index, data)
            except StorageError:
                fetch.requeue(index)
                raise
            fetch.stored(index)
            self.counters["chunks-received"] += 1
            if fetch.done:
                self._flush_soon(root)
                return
            if self.blobs.pending(root) >= self.settings.flush_every:
                self._flush_soon(root)
            if not fetch.wants_more(peer.key):
                return
        else:
            self.counters["chunks-unasked"] += 1
        self._pump(root)

    def _flush_soon(self, root: bytes) -> None:
        """Make the chunks written durable (in a thread) and record them; finish if done."""
        if root in self._flushing or self._nursery is None:
            return
        self._flushing.add(root)
        self._nursery.start_soon(self._flush, root)

    async def _flush(self, root: bytes) -> None:
        try:
            taken = self.blobs.take_pending(root)
            try:
                await trio.to_thread.run_sync(self.blobs.sync, root)
            except StorageError:
                self.blobs.give_back(root, taken)
                raise
            complete = self.blobs.record(root, taken)
        except StorageError as exc:
            self.counters["storage-error"] += 1
            log.error(N_("a file transfer could not use the disk: %s"), exc.detail)
            return
        finally:
            self._flushing.discard(root)
        download = self._downloads.get(root)
        if complete and download is not None:
            self._finish(root, download)
        elif download is not None and download.fetch.done:
            self._flush_soon(root)  # chunks written meanwhile

    def _finish(self, root: bytes, download: _Download) -> None:
        del self._downloads[root]
        self.blobs.unwant(root)
        elapsed = trio.current_time() - download.started
        self._finished[root] = elapsed
        self.counters["files-fetched"] += 1
        log.info(
            N_("file %s fetched: %d bytes in %.1f s"), root.hex()[:12], download.fetch.size, elapsed
        )
        download.done.set()

    # --- the rounds --------------------------------------------------------------------

    async def _rounds(self) -> None:
        last_collect = -math.inf
        while True:
            await trio.sleep(self.settings.interval)
            try:
                self._round()
                if trio.current_time() - last_collect >= self.settings.collect_every:
                    last_collect = trio.current_time()
                    self.files.collect(busy=set(self._downloads))
            except (StorageError, LocalError) as exc:
                self.counters["storage-error"] += 1
                log.error(N_("file transfers: %s"), exc.detail)
            except Exception:  # a bug here must not stop the node: say it, go on
                self.counters["internal-error"] += 1
                log.exception("file transfers: a round failed")

    def _round(self) -> None:
        now = trio.current_time()
        if self.auto_download and self._rounds_done % 10 == 0:
            self._auto_download()
        self._rounds_done += 1
        for root, download in list(self._downloads.items()):
            fetch = download.fetch
            if self.blobs.pending(root) or fetch.done:
                self._flush_soon(root)
            download.samples.append((now, fetch.held_bytes))
            while len(download.samples) > 2 and now - download.samples[0][0] > 10:
                download.samples.popleft()
            if fetch.done:
                continue
            for peer in list(self._peers.values()):
                source = fetch.sources.get(peer.key)
                asked = download.queried.get(peer.key, -math.inf)
                complete = source is not None and len(source.has) == fetch.count
                stale = not complete or fetch.stalled()
                if stale and now - asked >= self.settings.requery:
                    self._query(peer, root)
            self._pump(root)

    def _auto_download(self) -> None:
        """Fetch the small files of kept messages in our rooms that we have never held."""
        budget = self.settings.max_auto_downloads - len(self._downloads)
        if budget <= 0:
            return
        for root, size in self.files.auto_candidates(self.files.settings.auto_download):
            if root in self._downloads:
                continue
            try:
                self.download(root, size)
            except LocalError as exc:
                log.warning(N_("not fetching a file automatically: %s"), exc.render())
                return
            budget -= 1
            if budget <= 0:
                return

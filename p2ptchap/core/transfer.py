"""File transfer, the pure part: the wire messages and a download's scheduler.

A node fetching a file (its ``root`` and ``size`` come from a room message,
see :mod:`p2ptchap.core.files`) asks every connected peer what it holds of
it, gets the list of leaf hashes from one of them (checked against the
root), then asks each peer holding chunks for a window of them, checks each
chunk on arrival against its leaf, and asks elsewhere what a peer did not
deliver in time or delivered wrong.  :class:`Fetch` makes those decisions
without any I/O; the node (:mod:`p2ptchap.transfers`) sends what it says
and reports what arrives.  The wire format is in ``docs/protocol.md`` §15:

``fq``  ``{t, root}`` — what do you hold of this file?
``fh``  ``{t, root, have}`` — a bitmap of the chunks held (bit ``i`` is
        bit ``i % 8`` of byte ``i // 8``); empty if none, or if the asker
        may not have the file (the two are not told apart).
``fl``  ``{t, root, start, n}`` — send ``n`` leaf hashes from ``start``.
``fv``  ``{t, root, start, leaves}`` — the leaf hashes, concatenated.
``fg``  ``{t, root, chunks: [index, …]}`` — send these sealed chunks.
``fc``  ``{t, root, i, data}`` — one sealed chunk.
``fn``  ``{t, root, chunks: [index, …]}`` — these will not come (ask elsewhere).
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
from collections.abc import Callable, Iterable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.files import (
    CHUNK_SIZE,
    HASH_SIZE,
    MAX_CHUNKS,
    SEALED_CHUNK,
    ChunkError,
    check_leaves,
    chunk_count,
    chunk_plain_size,
    leaf_hash,
)

#: Leaf hashes per ``fv`` message (1 MiB of them).
MAX_LEAVES: Final = 32 * 1024
#: Chunks per ``fg`` and ``fn`` message.
MAX_ASK: Final = 64
MAX_BITMAP: Final = MAX_CHUNKS // 8

LIMITS: Final = Limits(max_bytes=2 << 20, max_items=1024, max_depth=4)


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    root: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Have:
    root: bytes
    have: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LeavesRequest:
    root: bytes
    start: int
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Leaves:
    root: bytes
    start: int
    leaves: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkRequest:
    root: bytes
    chunks: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    root: bytes
    index: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class NotHere:
    root: bytes
    chunks: tuple[int, ...]


FileMessage = Query | Have | LeavesRequest | Leaves | ChunkRequest | Chunk | NotHere


def encode(message: FileMessage) -> bytes:  # noqa: PLR0911 - one branch per type
    match message:
        case Query(root):
            return codec.encode({"t": "fq", "root": root})
        case Have(root, have):
            return codec.encode({"t": "fh", "root": root, "have": have})
        case LeavesRequest(root, start, count):
            return codec.encode({"t": "fl", "root": root, "start": start, "n": count})
        case Leaves(root, start, leaves):
            return codec.encode({"t": "fv", "root": root, "start": start, "leaves": leaves})
        case ChunkRequest(root, chunks):
            return codec.encode({"t": "fg", "root": root, "chunks": list[codec.Value](chunks)})
        case Chunk(root, index, data):
            return codec.encode({"t": "fc", "root": root, "i": index, "data": data})
        case NotHere(root, chunks):
            return codec.encode({"t": "fn", "root": root, "chunks": list[codec.Value](chunks)})
    raise TypeError(f"not a file message: {message!r}")


def _indexes(body: dict[codec.Key, codec.Value], what: str) -> tuple[int, ...]:
    items = codec.expect_list(codec.field(body, "chunks", what), what)
    if not 0 < len(items) <= MAX_ASK:
        raise DecodeError(f"{what}: 1 to {MAX_ASK} chunks")
    found = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < MAX_CHUNKS:
            raise DecodeError(f"{what}: a chunk index is an integer below {MAX_CHUNKS}")
        found.append(item)
    return tuple(found)


_FIELDS: Final = {
    "fq": ("root",),
    "fh": ("root", "have"),
    "fl": ("root", "start", "n"),
    "fv": ("root", "start", "leaves"),
    "fg": ("root", "chunks"),
    "fc": ("root", "i", "data"),
    "fn": ("root", "chunks"),
}
TYPES: Final = frozenset(_FIELDS)


def decode(body: dict[codec.Key, codec.Value]) -> FileMessage:  # noqa: PLR0911
    """Check one file message (envelope already decoded); raise :class:`DecodeError`."""
    kind = codec.get_text(body, "t", "message", 32)
    fields = _FIELDS.get(kind)
    if fields is None:
        raise DecodeError(f"not a file message type: {kind!r}")
    codec.only_keys(body, ("t", *fields), kind)
    root = codec.get_bytes(body, "root", kind, HASH_SIZE)
    match kind:
        case "fq":
            return Query(root)
        case "fh":
            have = codec.get_bytes(body, "have", kind)
            if len(have) > MAX_BITMAP:
                raise DecodeError("fh: bitmap too long")
            return Have(root, have)
        case "fl":
            start = codec.get_int(body, "start", kind, maximum=MAX_CHUNKS - 1)
            return LeavesRequest(root, start, codec.get_int(body, "n", kind, 1, MAX_LEAVES))
        case "fv":
            leaves = codec.get_bytes(body, "leaves", kind)
            if not leaves or len(leaves) % HASH_SIZE or len(leaves) > MAX_LEAVES * HASH_SIZE:
                raise DecodeError("fv: leaves are 1 to 32768 hashes")
            return Leaves(root, codec.get_int(body, "start", kind, maximum=MAX_CHUNKS - 1), leaves)
        case "fg":
            return ChunkRequest(root, _indexes(body, kind))
        case "fc":
            data = codec.get_bytes(body, "data", kind)
            if len(data) > SEALED_CHUNK:
                raise DecodeError("fc: chunk too large")
            return Chunk(root, codec.get_int(body, "i", kind, maximum=MAX_CHUNKS - 1), data)
        case _:
            return NotHere(root, _indexes(body, kind))


# --- bitmaps ----------------------------------------------------------------------------------


def bitmap(indexes: Iterable[int], count: int) -> bytes:
    """The ``fh`` bitmap of ``indexes`` among ``count`` chunks (empty if none)."""
    bits = bytearray((count + 7) // 8)
    any_set = False
    for index in indexes:
        bits[index // 8] |= 1 << (index % 8)
        any_set = True
    return bytes(bits) if any_set else b""


#: For each byte value, the positions of its set bits.
_BITS: Final = tuple(tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256))


def from_bitmap(bits: bytes, count: int) -> set[int]:
    """The chunk indexes set in ``bits``, ignoring bits past ``count``."""
    found = {
        byte_index * 8 + bit
        for byte_index, byte in enumerate(bits[: (count + 7) // 8])
        if byte
        for bit in _BITS[byte]
    }
    if count % 8 and (count + 7) // 8 <= len(bits):
        found = {index for index in found if index < count}
    return found


# --- one download -----------------------------------------------------------------------------


class Verdict(enum.Enum):
    """What to do with a chunk that arrived."""

    KEEP = "keep"  # checked: store it
    BAD = "bad"  # fails its leaf: the source lied (it is dropped for this file)
    UNASKED = "unasked"  # not asked of this source, or already held: ignore


@dataclasses.dataclass
class Source:
    """What one peer holds of the file and what we asked it."""

    has: set[int] = dataclasses.field(default_factory=set)
    #: chunk index → deadline
    asked: dict[int, float] = dataclasses.field(default_factory=dict)
    leaves_asked: float | None = None
    received: int = 0
    timeouts: int = 0
    #: When it last let a request time out.
    last_timeout: float = 0.0
    banned: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FetchSettings:
    #: Chunks in flight per source (64 KiB each): a window of 2 MiB keeps a
    #: LAN link busy without holding much memory.
    window: int = 128
    #: Seconds before an unanswered chunk is asked elsewhere.
    timeout: float = 10.0
    #: Unanswered requests in a row before a source is left alone ...
    max_timeouts: int = 3
    #: ... for this long; then it gets one more chance (a slow honest peer
    #: comes back, a peer that claims chunks it never sends costs one
    #: timeout per period).
    cooldown: float = 60.0


class Fetch:
    """The decisions of one download (see the module documentation).

    ``held`` are the chunks already verified and stored (a resumed
    download); ``leaves`` the checked leaf hashes if known.  Chunks neither
    held nor asked wait in a heap, so the next one to ask is found in
    logarithmic time and a download of a million chunks stays linear.
    """

    def __init__(
        self,
        root: bytes,
        size: int,
        held: Iterable[int] = (),
        leaves: list[bytes] | None = None,
        settings: FetchSettings = FetchSettings(),
    ) -> None:
        self.root = root
        self.size = size
        self.count = chunk_count(size)
        self.settings = settings
        self.held: set[int] = set(held)
        self.leaves = leaves
        self.sources: dict[bytes, Source] = {}
        self._pool = [i for i in range(self.count) if i not in self.held]
        heapq.heapify(self._pool)
        self._pooled = set(self._pool)
        self._leaf_parts: dict[int, bytes] = {}
        self._leaves_from: bytes | None = None

    # --- what peers tell us ---------------------------------------------------------------

    @property
    def done(self) -> bool:
        return len(self.held) == self.count and self.leaves is not None

    @property
    def held_bytes(self) -> int:
        if self.count - 1 in self.held:
            return (len(self.held) - 1) * CHUNK_SIZE + chunk_plain_size(self.size, self.count - 1)
        return len(self.held) * CHUNK_SIZE

    def _back(self, indexes: Iterable[int]) -> None:
        """Put chunks asked of someone back in the pool (unless held or asked elsewhere)."""
        for index in indexes:
            if index in self.held or index in self._pooled:
                continue
            if any(index in state.asked for state in self.sources.values()):
                continue
            heapq.heappush(self._pool, index)
            self._pooled.add(index)

    def _drop_asks(self, state: Source, indexes: Iterable[int] | None = None) -> None:
        chosen = list(state.asked if indexes is None else indexes)
        for index in chosen:
            state.asked.pop(index, None)
        self._back(chosen)

    def has(self, source: bytes, bits: bytes) -> None:
        """``source`` answered ``fh``: it holds these chunks."""
        state = self.sources.setdefault(source, Source())
        state.has = from_bitmap(bits, self.count)

    def gone(self, source: bytes) -> None:
        """``source`` disconnected: what we asked of it is to be asked elsewhere."""
        state = self.sources.pop(source, None)
        if state is None:
            return
        self._back(state.asked)
        if source == self._leaves_from:
            self._leaves_from, self._leaf_parts = None, {}

    def not_here(self, source: bytes, chunks: Iterable[int]) -> None:
        state = self.sources.get(source)
        if state is None:
            return
        chunks = list(chunks)
        state.has.difference_update(chunks)
        self._drop_asks(state, [i for i in chunks if i in state.asked])

    def leaves_arrived(self, source: bytes, start: int, leaves: bytes) -> bool:
        """Leaf hashes from ``source``; return False if they were bad (the source is banned)."""
        state = self.sources.get(source)
        if self.leaves is not None or state is None or source != self._leaves_from:
            return True
        self._leaf_parts[start] = leaves
        if len(self._leaf_parts) < -(-self.count // MAX_LEAVES):
            return True
        joined = b"".join(part for _start, part in sorted(self._leaf_parts.items()))
        self._leaves_from, self._leaf_parts = None, {}
        state.leaves_asked = None
        try:
            self.leaves = check_leaves(self.root, self.size, joined)
        except ChunkError:
            self._ban(state)
            return False
        return True

    def _ban(self, state: Source) -> None:
        state.banned = True
        self._drop_asks(state)

    def chunk_arrived(self, source: bytes, index: int, data: bytes) -> Verdict:
        state = self.sources.get(source)
        if state is None or index not in state.asked:
            return Verdict.UNASKED
        del state.asked[index]
        state.timeouts = 0
        if index in self.held or self.leaves is None:
            return Verdict.UNASKED
        if leaf_hash(data) != self.leaves[index]:
            self._back([index])
            self._ban(state)
            return Verdict.BAD
        state.received += 1
        return Verdict.KEEP

    def wants_more(self, source: bytes) -> bool:
        """Whether planning now may ask ``source`` for more (its window is half empty)."""
        state = self.sources.get(source)
        return state is None or len(state.asked) <= self.settings.window // 2

    def stored(self, index: int) -> None:
        """The caller stored chunk ``index`` (after :attr:`Verdict.KEEP`)."""
        self.held.add(index)
        for state in self.sources.values():
            state.asked.pop(index, None)

    # --- what to ask ----------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Requests past their deadline go back to the pool."""
        for state in self.sources.values():
            late = [i for i, deadline in state.asked.items() if deadline <= now]
            if late:
                state.timeouts += 1
                state.last_timeout = now
                self._drop_asks(state, late)
            if state.leaves_asked is not None and state.leaves_asked <= now:
                state.leaves_asked = None
                state.timeouts += 1
                state.last_timeout = now
                self._leaves_from, self._leaf_parts = None, {}
            if (
                state.timeouts >= self.settings.max_timeouts
                and now - state.last_timeout >= self.settings.cooldown
            ):
                state.timeouts = self.settings.max_timeouts - 1  # one more chance

    def _usable(self, state: Source) -> bool:
        return not state.banned and state.timeouts < self.settings.max_timeouts

    def requeue(self, index: int) -> None:
        """A chunk accepted could not be stored after all: fetch it again."""
        self.held.discard(index)
        self._back([index])

    def plan(
        self, now: float, rank: Callable[[bytes], float] = lambda _s: 0.0
    ) -> list[tuple[bytes, LeavesRequest | ChunkRequest]]:
        """What to ask of whom now: leaf hashes first, then chunks, spread over the sources.

        ``rank`` orders the sources (lower first: say, by past rate).  When
        every missing chunk is already asked somewhere, a source with room
        in its window asks for one again (the end game), so one slow
        source does not hold back the end of a download.
        """
        self.expire(now)
        deadline = now + self.settings.timeout
        usable = sorted(
            (s for s, state in self.sources.items() if self._usable(state) and state.has),
            key=rank,
        )
        if self.leaves is None:
            return self._plan_leaves(usable, deadline)
        wanted: dict[bytes, list[int]] = {s: [] for s in usable}
        room = {s: self.settings.window - len(self.sources[s].asked) for s in usable}
        # Round robin: each source in turn takes the lowest pooled chunk it
        # has.  A window is refilled once half empty, not chunk by chunk:
        # one request then asks for many chunks.
        batch = max(1, self.settings.window // 2)
        active = [
            s for s in usable if room[s] > 0 and (room[s] >= batch or len(self._pooled) < batch)
        ]
        while active and self._pooled:
            still = []
            for source in active:
                index = self._take(self.sources[source].has)
                if index is None:
                    continue
                wanted[source].append(index)
                room[source] -= 1
                if room[source] > 0:
                    still.append(source)
            active = still
        if not self._pooled:
            self._end_game(usable, room, wanted)
        requests: list[tuple[bytes, LeavesRequest | ChunkRequest]] = []
        for source, indexes in wanted.items():
            state = self.sources[source]
            for start in range(0, len(indexes), MAX_ASK):
                part = tuple(indexes[start : start + MAX_ASK])
                for index in part:
                    state.asked[index] = deadline
                requests.append((source, ChunkRequest(self.root, part)))
        return requests

    def _take(self, has: set[int]) -> int | None:
        """Take the lowest pooled chunk in ``has`` (None if it has none of them).

        ``_pooled`` is the truth; heap entries no longer in it are stale
        and skipped.  A source holding everything pops the heap (log n); a
        partial one takes the least of its chunks still pooled (no scan of
        the whole pool, whatever the file's size).
        """
        if len(has) == self.count:
            while self._pool:
                index = heapq.heappop(self._pool)
                if index in self._pooled:
                    self._pooled.discard(index)
                    return index
            return None
        candidates = has & self._pooled
        if not candidates:
            return None
        index = min(candidates)
        self._pooled.discard(index)
        return index

    def _plan_leaves(
        self, usable: list[bytes], deadline: float
    ) -> list[tuple[bytes, LeavesRequest | ChunkRequest]]:
        if self._leaves_from is not None or not usable:
            return []
        # Holders of everything first, then the sources that failed us least:
        # after a peer lets a leaves request time out, another is asked.
        source = min(
            usable,
            key=lambda s: (len(self.sources[s].has) != self.count, self.sources[s].timeouts),
        )
        self._leaves_from = source
        self.sources[source].leaves_asked = deadline
        return [
            (source, LeavesRequest(self.root, start, min(MAX_LEAVES, self.count - start)))
            for start in range(0, self.count, MAX_LEAVES)
        ]

    def _end_game(
        self, usable: list[bytes], room: dict[bytes, int], wanted: dict[bytes, list[int]]
    ) -> None:
        in_flight = sorted({i for state in self.sources.values() for i in state.asked})
        for source in usable:
            state = self.sources[source]
            extra = [i for i in in_flight if i in state.has and i not in state.asked]
            wanted[source].extend(extra[: min(4, max(0, room[source]))])

    def stalled(self) -> bool:
        """No usable source holds a chunk still to fetch (time to ask everyone again)."""
        if self.done:
            return False
        return not any(
            self._usable(state)
            and (
                state.asked
                or (self.leaves is None and state.has)
                or not state.has.isdisjoint(self._pooled)
            )
            for state in self.sources.values()
        )

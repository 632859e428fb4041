"""File transfer: the wire messages, bitmaps, and the download scheduler.

:class:`Fetch` only checks chunks against their leaf hashes, so the files
here are stand-ins: each "sealed chunk" is a few distinctive bytes, the
leaves and root computed from them as :mod:`p2ptchap.core.files` does.
The last test drives the scheduler against random swarms (honest, lying,
silent, flaky, refusing and disconnecting peers) until the download ends.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.files import (
    CHUNK_SIZE,
    HASH_SIZE,
    MAX_CHUNKS,
    SEALED_CHUNK,
    content_root,
    leaf_hash,
)
from p2ptchap.core.transfer import (
    LIMITS,
    MAX_ASK,
    MAX_BITMAP,
    MAX_LEAVES,
    TYPES,
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
    decode,
    encode,
    from_bitmap,
)

ROOT = bytes(range(32))
A, B, C, D = b"peer-a", b"peer-b", b"peer-c", b"peer-d"


# --- wire messages --------------------------------------------------------------------------


def wire(message: FileMessage) -> FileMessage:
    """Encode, decode as CBOR under the transfer limits, then as a file message."""
    body = codec.decode(encode(message), LIMITS)
    assert isinstance(body, dict)
    return decode(body)


roots = st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)
indexes = st.integers(0, MAX_CHUNKS - 1)
index_lists = st.lists(indexes, min_size=1, max_size=MAX_ASK).map(tuple)
leaf_runs = st.integers(1, 8).flatmap(
    lambda n: st.binary(min_size=n * HASH_SIZE, max_size=n * HASH_SIZE)
)
messages: st.SearchStrategy[FileMessage] = st.one_of(
    st.builds(Query, roots),
    st.builds(Have, roots, st.binary(max_size=300)),
    st.builds(LeavesRequest, roots, indexes, st.integers(1, MAX_LEAVES)),
    st.builds(Leaves, roots, indexes, leaf_runs),
    st.builds(ChunkRequest, roots, index_lists),
    st.builds(Chunk, roots, indexes, st.binary(max_size=300)),
    st.builds(NotHere, roots, index_lists),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(message: FileMessage) -> None:
    assert wire(message) == message
    body = codec.decode(encode(message))
    assert isinstance(body, dict) and body["t"] in TYPES


def test_message_types_and_fields() -> None:
    examples: list[tuple[FileMessage, dict[codec.Key, codec.Value]]] = [
        (Query(ROOT), {"t": "fq", "root": ROOT}),
        (Have(ROOT, b"\x05"), {"t": "fh", "root": ROOT, "have": b"\x05"}),
        (LeavesRequest(ROOT, 3, 9), {"t": "fl", "root": ROOT, "start": 3, "n": 9}),
        (Leaves(ROOT, 3, bytes(32)), {"t": "fv", "root": ROOT, "start": 3, "leaves": bytes(32)}),
        (ChunkRequest(ROOT, (1, 2)), {"t": "fg", "root": ROOT, "chunks": [1, 2]}),
        (Chunk(ROOT, 7, b"data"), {"t": "fc", "root": ROOT, "i": 7, "data": b"data"}),
        (NotHere(ROOT, (4,)), {"t": "fn", "root": ROOT, "chunks": [4]}),
    ]
    assert {body["t"] for _message, body in examples} == TYPES
    for message, body in examples:
        assert encode(message) == codec.encode(body)
        assert decode(body) == message


def test_largest_messages_fit_the_limits() -> None:
    for message in (
        Have(ROOT, b"\xff" * MAX_BITMAP),
        Leaves(ROOT, MAX_CHUNKS - MAX_LEAVES, bytes(MAX_LEAVES * HASH_SIZE)),
        Chunk(ROOT, MAX_CHUNKS - 1, bytes(SEALED_CHUNK)),
        ChunkRequest(ROOT, tuple(range(MAX_CHUNKS - MAX_ASK, MAX_CHUNKS))),
        LeavesRequest(ROOT, MAX_CHUNKS - 1, MAX_LEAVES),
    ):
        assert wire(message) == message


def test_encode_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        encode("fq")  # type: ignore[arg-type]


def body(kind: str, **fields: codec.Value) -> dict[codec.Key, codec.Value]:
    value: dict[codec.Key, codec.Value] = {"t": kind, "root": ROOT}
    value.update(fields)
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"root": ROOT},  # no type
        {"t": 1, "root": ROOT},
        body("fx"),
        body("FQ"),
        body("fq", extra=1),
        {"t": "fq"},
        {"t": "fq", "root": bytes(31)},
        {"t": "fq", "root": "root"},
        body("fh"),
        body("fh", have="bits"),
        body("fh", have=bytes(MAX_BITMAP + 1)),
        body("fl", start=0),
        body("fl", start=0, n=0),
        body("fl", start=0, n=MAX_LEAVES + 1),
        body("fl", start=MAX_CHUNKS, n=1),
        body("fl", start=-1, n=1),
        body("fl", start=True, n=1),
        body("fv", start=0, leaves=b""),
        body("fv", start=0, leaves=bytes(HASH_SIZE + 1)),
        body("fv", start=0, leaves=bytes((MAX_LEAVES + 1) * HASH_SIZE)),
        body("fv", start=MAX_CHUNKS, leaves=bytes(HASH_SIZE)),
        body("fv", leaves=bytes(HASH_SIZE)),
        body("fg", chunks=[]),
        body("fg", chunks=list(range(MAX_ASK + 1))),
        body("fg", chunks=[MAX_CHUNKS]),
        body("fg", chunks=[-1]),
        body("fg", chunks=[True]),
        body("fg", chunks=["1"]),
        body("fg", chunks=[[1]]),
        body("fg", chunks=1),
        body("fg", chunks={1: 1}),
        body("fg"),
        body("fc", i=0),
        body("fc", i=MAX_CHUNKS, data=b""),
        body("fc", i=0, data=bytes(SEALED_CHUNK + 1)),
        body("fc", i=0, data="text"),
        body("fc", i=None, data=b""),
        body("fn", chunks=[]),
        body("fn", chunks=list(range(MAX_ASK + 1))),
        body("fn", chunks=[1 << 20]),
        body("fn", chunks=[0], i=0),
        {**body("fq"), 1: 2},
    ],
)
def test_malformed_messages_are_decode_errors(value: dict[codec.Key, codec.Value]) -> None:
    with pytest.raises(DecodeError):
        decode(value)


scalars: st.SearchStrategy[codec.Value] = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.sampled_from([0, 1, MAX_CHUNKS - 1, MAX_CHUNKS, MAX_LEAVES, MAX_LEAVES + 1])
    | st.binary(max_size=70)
    | st.sampled_from([ROOT, bytes(HASH_SIZE * 2)])
    | st.text(max_size=10)
    | st.sampled_from(sorted(TYPES))
)
values = cast(
    st.SearchStrategy[codec.Value],
    scalars
    | st.lists(st.integers(-2, MAX_CHUNKS + 1), max_size=70)
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.text(max_size=3), scalars, max_size=3),
)
field_names = st.sampled_from(["t", "root", "have", "start", "n", "leaves", "chunks", "i", "data"])


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(sorted(TYPES)) | values,
    fields=st.dictionaries(field_names | st.text(max_size=4) | st.integers(), values),
)
def test_random_bodies_raise_only_decode_error(
    kind: codec.Value, fields: dict[codec.Key, codec.Value]
) -> None:
    value: dict[codec.Key, codec.Value] = {**fields, "t": kind}
    try:
        message = decode(value)
    except DecodeError:
        return
    # What is accepted is exactly what its encoding says.
    assert codec.encode(value) == encode(message)


@settings(max_examples=300, deadline=None)
@given(
    message=messages,
    field=field_names | st.just("extra"),
    value=st.none() | values,
)
def test_mutated_bodies_raise_only_decode_error(
    message: FileMessage, field: str, value: codec.Value
) -> None:
    """One field of a valid body replaced (None: removed) or added."""
    original = codec.decode(encode(message))
    assert isinstance(original, dict)
    mutant = dict(original)
    if value is None:
        mutant.pop(field, None)
    else:
        mutant[field] = value
    try:
        decoded = decode(mutant)
    except DecodeError:
        return
    assert codec.encode(mutant) == encode(decoded)


# --- bitmaps --------------------------------------------------------------------------------


def test_bitmap_layout() -> None:
    assert bitmap([], 100) == b""
    assert bitmap([0], 1) == b"\x01"
    assert bitmap([7], 8) == b"\x80"
    assert bitmap([8], 9) == b"\x00\x01"
    assert bitmap([0, 9, 15], 16) == b"\x01\x82"
    assert bitmap(range(10), 10) == b"\xff\x03"
    assert from_bitmap(b"\x01\x82", 16) == {0, 9, 15}
    assert from_bitmap(b"", 16) == set()
    # Bits and bytes past the count are ignored.
    assert from_bitmap(b"\xff", 3) == {0, 1, 2}
    assert from_bitmap(b"\x01\xff\xff", 8) == {0}
    assert from_bitmap(b"\x01", 0) == set()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3000).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1))))
)
def test_bitmap_round_trip(case: tuple[int, set[int]]) -> None:
    count, held = case
    bits = bitmap(held, count)
    assert from_bitmap(bits, count) == held
    assert len(bits) == ((count + 7) // 8 if held else 0)
    assert wire(Have(ROOT, bits)) == Have(ROOT, bits)


# --- the scheduler --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FakeFile:
    """Stand-in sealed chunks with their real leaves and root."""

    size: int
    chunks: list[bytes]
    leaves: list[bytes]
    root: bytes

    @property
    def count(self) -> int:
        return len(self.chunks)

    def leaf_bytes(self, start: int = 0, count: int | None = None) -> bytes:
        end = self.count if count is None else start + count
        return b"".join(self.leaves[start:end])


def make_file(count: int, last: int = 100, tag: bytes = b"") -> FakeFile:
    chunks = [b"chunk %d %s" % (i, tag) for i in range(count)]
    leaves = [leaf_hash(chunk) for chunk in chunks]
    size = (count - 1) * CHUNK_SIZE + last
    return FakeFile(size, chunks, leaves, content_root(size, leaves))


Plan = list[tuple[bytes, LeavesRequest | ChunkRequest]]


def chunks_asked(plan: Plan) -> dict[bytes, list[int]]:
    asked: dict[bytes, list[int]] = collections.defaultdict(list)
    for source, request in plan:
        assert isinstance(request, ChunkRequest), request
        asked[source].extend(request.chunks)
    return dict(asked)


def all_of(file: FakeFile) -> bytes:
    return bitmap(range(file.count), file.count)


def started(
    file: FakeFile, sources: dict[bytes, set[int] | None], window: int = 4, now: float = 0.0
) -> Fetch:
    """A fetch told what each source holds (None: everything) and given the leaves."""
    fetch = Fetch(file.root, file.size, settings=FetchSettings(window=window))
    for source, held in sources.items():
        fetch.has(source, all_of(file) if held is None else bitmap(held, file.count))
    plan = fetch.plan(now)
    assert len(plan) == 1
    source, request = plan[0]
    assert request == LeavesRequest(file.root, 0, file.count)
    assert fetch.leaves_arrived(source, 0, file.leaf_bytes())
    assert fetch.leaves == file.leaves
    return fetch


def deliver(fetch: Fetch, file: FakeFile, source: bytes, indexes: list[int]) -> None:
    for index in indexes:
        assert fetch.chunk_arrived(source, index, file.chunks[index]) is Verdict.KEEP
        fetch.stored(index)


def test_leaves_first_from_one_source_then_chunks_spread_over_all() -> None:
    file = make_file(20)
    fetch = Fetch(file.root, file.size, settings=FetchSettings(window=4))
    assert fetch.plan(0.0) == []  # nobody to ask yet
    for source in (A, B, C):
        fetch.has(source, all_of(file))
    assert fetch.plan(0.0) == [(A, LeavesRequest(file.root, 0, 20))]
    assert fetch.plan(1.0) == []  # the leaves are on their way
    assert not fetch.done
    assert fetch.leaves_arrived(A, 0, file.leaf_bytes())
    plan = fetch.plan(2.0)
    assert all(isinstance(r, ChunkRequest) and len(r.chunks) <= MAX_ASK for _s, r in plan)
    # Round robin, lowest chunks first, a window each.
    assert chunks_asked(plan) == {A: [0, 3, 6, 9], B: [1, 4, 7, 10], C: [2, 5, 8, 11]}
    assert fetch.plan(3.0) == []  # every window is full
    deliver(fetch, file, B, [1, 4])
    assert chunks_asked(fetch.plan(4.0)) == {B: [12, 13]}
    for source in (A, B, C):
        deliver(fetch, file, source, sorted(fetch.sources[source].asked))
    while not fetch.done:
        plan = fetch.plan(5.0)
        assert plan
        for source, indexes in chunks_asked(plan).items():
            deliver(fetch, file, source, indexes)
    assert fetch.held == set(range(20))
    assert fetch.held_bytes == file.size
    assert fetch.plan(6.0) == []
    assert not fetch.stalled()


def test_rank_orders_the_sources() -> None:
    file = make_file(6)
    fetch = started(file, {A: None, B: None, C: None}, window=2)
    order = {A: 2.0, B: 0.0, C: 1.0}
    assert chunks_asked(fetch.plan(1.0, order.__getitem__)) == {B: [0, 3], C: [1, 4], A: [2, 5]}


def test_leaves_come_from_a_complete_source_and_in_parts() -> None:
    file = make_file(4)
    fetch = Fetch(file.root, file.size)
    fetch.has(A, bitmap([0, 1], 4))
    fetch.has(B, all_of(file))
    assert fetch.plan(0.0) == [(B, LeavesRequest(file.root, 0, 4))]
    # A source nobody asked cannot slip leaves in.
    assert fetch.leaves_arrived(A, 0, file.leaf_bytes())
    assert fetch.leaves is None

    big = make_file(MAX_LEAVES + 10)
    fetch = Fetch(big.root, big.size)
    fetch.has(C, all_of(big))
    assert fetch.plan(0.0) == [
        (C, LeavesRequest(big.root, 0, MAX_LEAVES)),
        (C, LeavesRequest(big.root, MAX_LEAVES, 10)),
    ]
    assert fetch.leaves_arrived(C, MAX_LEAVES, big.leaf_bytes(MAX_LEAVES, 10))
    assert fetch.leaves is None
    assert fetch.leaves_arrived(C, 0, big.leaf_bytes(0, MAX_LEAVES))
    assert fetch.leaves == big.leaves


def test_without_a_complete_source_leaves_come_from_a_partial_one() -> None:
    file = make_file(4)
    fetch = Fetch(file.root, file.size)
    fetch.has(A, bitmap([], 4))  # holds nothing: never asked
    fetch.has(B, bitmap([2, 3], 4))
    assert fetch.plan(0.0) == [(B, LeavesRequest(file.root, 0, 4))]


def test_bad_leaves_ban_the_source_and_are_asked_elsewhere() -> None:
    file = make_file(5)
    fetch = Fetch(file.root, file.size)
    fetch.has(A, all_of(file))
    fetch.has(B, all_of(file))
    assert fetch.plan(0.0) == [(A, LeavesRequest(file.root, 0, 5))]
    swapped = file.leaves[1] + file.leaves[0] + file.leaf_bytes(2)
    assert not fetch.leaves_arrived(A, 0, swapped)
    assert fetch.sources[A].banned and fetch.leaves is None
    assert fetch.plan(1.0) == [(B, LeavesRequest(file.root, 0, 5))]
    assert not fetch.leaves_arrived(B, 0, file.leaf_bytes()[:-1])  # a byte short
    assert fetch.plan(2.0) == []
    assert fetch.stalled()
    # Leaves of another file, for the right count, are refused too.
    other = make_file(5, tag=b"other")
    fetch = Fetch(file.root, file.size)
    fetch.has(C, all_of(file))
    fetch.plan(0.0)
    assert not fetch.leaves_arrived(C, 0, other.leaf_bytes())
    assert fetch.sources[C].banned


def test_a_leaves_request_that_times_out_is_asked_of_another_source() -> None:
    file = make_file(3)
    fetch = Fetch(file.root, file.size, settings=FetchSettings(timeout=10.0))
    fetch.has(A, all_of(file))
    fetch.has(B, all_of(file))
    assert fetch.plan(0.0) == [(A, LeavesRequest(file.root, 0, 3))]
    assert fetch.plan(9.0) == []
    assert fetch.plan(10.0) == [(B, LeavesRequest(file.root, 0, 3))]
    assert fetch.sources[A].timeouts == 1
    # A's late answer is not taken.
    assert fetch.leaves_arrived(A, 0, file.leaf_bytes())
    assert fetch.leaves is None
    assert fetch.leaves_arrived(B, 0, file.leaf_bytes())
    assert fetch.leaves == file.leaves


def test_a_source_refusing_the_leaves_does_not_block_the_download() -> None:
    """A peer answers "fl" with an empty "fh", and the next "fq" with a full one.

    The node queries again (every 5 s) a source it no longer knows to hold
    everything; the honest complete source must still be asked.
    """
    file = make_file(3)
    fetch = Fetch(file.root, file.size, settings=FetchSettings(timeout=10.0, max_timeouts=3))
    fetch.has(A, all_of(file))  # the refuser, first to answer the query
    fetch.has(B, all_of(file))  # honest
    now = 0.0
    while fetch.leaves is None and now < 200.0:
        for source, request in fetch.plan(now):
            assert isinstance(request, LeavesRequest)
            if source == B:
                assert fetch.leaves_arrived(B, request.start, file.leaf_bytes())
            else:
                fetch.has(A, b"")  # its answer to "fl"
        fetch.has(A, all_of(file))
        now += 10.0
    assert fetch.leaves == file.leaves


def test_a_bad_chunk_bans_its_source_and_is_asked_elsewhere() -> None:
    file = make_file(6)
    fetch = started(file, {A: None, B: None, C: None}, window=8)
    assert chunks_asked(fetch.plan(1.0)) == {A: [0, 3], B: [1, 4], C: [2, 5]}
    assert fetch.chunk_arrived(A, 0, file.chunks[1]) is Verdict.BAD
    assert fetch.sources[A].banned
    assert fetch.sources[A].asked == {}
    assert fetch.chunk_arrived(A, 3, file.chunks[3]) is Verdict.UNASKED  # banned: dropped
    assert 3 not in fetch.held
    # B and C share A's chunks; the pool then empty, each also takes the other's (end game).
    assert chunks_asked(fetch.plan(2.0)) == {B: [0, 2, 5], C: [3, 1, 4]}
    for source in (B, C):
        deliver(fetch, file, source, sorted(fetch.sources[source].asked))
    assert fetch.done
    assert fetch.sources[B].received + fetch.sources[C].received == 6


def test_a_gone_source_has_its_chunks_asked_elsewhere() -> None:
    file = make_file(6)
    fetch = started(file, {A: None, B: None, C: None}, window=8)
    fetch.plan(1.0)
    deliver(fetch, file, B, [1, 4])
    fetch.gone(A)
    fetch.gone(D)  # unknown: nothing happens
    assert A not in fetch.sources
    assert chunks_asked(fetch.plan(2.0)) == {B: [0, 2, 5], C: [3]}
    assert fetch.chunk_arrived(A, 0, file.chunks[0]) is Verdict.UNASKED
    for source in (B, C):
        deliver(fetch, file, source, sorted(fetch.sources[source].asked))
    assert fetch.done


def test_timeouts_return_chunks_to_the_pool() -> None:
    file = make_file(4)
    fetch = started(file, {A: None}, window=3)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 1, 2]}
    assert fetch.plan(9.9) == []
    # At the deadline the chunks go back to the pool, and are asked again.
    for now in (10.0, 20.0):
        assert chunks_asked(fetch.plan(now)) == {A: [0, 1, 2]}
        assert set(fetch.sources[A].asked.values()) == {now + 10.0}
    assert fetch.sources[A].timeouts == 2
    # The third timeout in a row: A is left alone.
    assert fetch.plan(30.0) == []
    assert fetch.sources[A].timeouts == 3 and fetch.sources[A].asked == {}
    assert fetch.stalled()
    assert fetch.chunk_arrived(A, 0, file.chunks[0]) is Verdict.UNASKED  # too late
    # Another source gets the chunks the pool got back.
    fetch.has(B, all_of(file))
    assert not fetch.stalled()
    assert chunks_asked(fetch.plan(31.0)) == {B: [0, 1, 2]}
    deliver(fetch, file, B, [0, 1, 2])
    assert chunks_asked(fetch.plan(32.0)) == {B: [3]}
    deliver(fetch, file, B, [3])
    assert fetch.done


def test_a_source_left_alone_gets_another_chance_after_the_cooldown() -> None:
    file = make_file(2)
    settings = FetchSettings(window=2, timeout=10.0, max_timeouts=2, cooldown=60.0)
    fetch = Fetch(file.root, file.size, leaves=file.leaves, settings=settings)
    fetch.has(A, all_of(file))
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 1]}
    assert chunks_asked(fetch.plan(10.0)) == {A: [0, 1]}
    assert fetch.plan(20.0) == []  # two timeouts: left alone
    fetch.has(A, all_of(file))  # saying what it holds again is not an answer
    assert fetch.plan(79.0) == []
    assert chunks_asked(fetch.plan(80.0)) == {A: [0, 1]}  # one more chance
    assert fetch.plan(90.0) == []  # ... and it is left alone again at once
    deliver_at = chunks_asked(fetch.plan(150.0))
    assert deliver_at == {A: [0, 1]}
    deliver(fetch, file, A, [0])
    assert fetch.sources[A].timeouts == 0  # an answer: trusted again


def test_an_answer_resets_the_timeouts() -> None:
    file = make_file(4)
    fetch = started(file, {A: None}, window=2)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 1]}
    assert chunks_asked(fetch.plan(10.0)) == {A: [0, 1]}
    assert fetch.sources[A].timeouts == 1
    deliver(fetch, file, A, [0])
    assert fetch.sources[A].timeouts == 0


def test_not_here_moves_chunks_elsewhere_for_good() -> None:
    file = make_file(4)
    fetch = started(file, {A: None, B: None}, window=4)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 2], B: [1, 3]}
    fetch.not_here(B, [1, 3])
    fetch.not_here(D, [0])  # unknown source: ignored
    assert fetch.sources[B].has == {0, 2}
    # A takes B's chunks; the pool then empty, B is also asked for A's (end game).
    assert chunks_asked(fetch.plan(1.0)) == {A: [1, 3], B: [0, 2]}
    deliver(fetch, file, A, [0, 1, 2])
    assert fetch.sources[B].asked == {}
    for now in (11.0, 21.0):  # chunk 3 only A holds: B is never asked for it
        assert chunks_asked(fetch.plan(now)) == {A: [3]}
    deliver(fetch, file, A, [3])
    assert fetch.done


def test_a_resumed_fetch_never_asks_for_held_chunks() -> None:
    file = make_file(10)
    held = {0, 1, 2, 5, 9}
    fetch = Fetch(
        file.root, file.size, held=held, leaves=file.leaves, settings=FetchSettings(window=8)
    )
    assert fetch.held_bytes == 4 * CHUNK_SIZE + 100
    fetch.has(A, all_of(file))
    fetch.has(B, all_of(file))
    asked = chunks_asked(fetch.plan(0.0))
    assert asked == {A: [3, 6, 8], B: [4, 7]}
    for source, indexes in asked.items():
        deliver(fetch, file, source, indexes)
    assert fetch.done
    # Held chunks arriving anyway are ignored.
    assert fetch.chunk_arrived(A, 0, file.chunks[0]) is Verdict.UNASKED

    complete = Fetch(file.root, file.size, held=range(10), leaves=file.leaves)
    assert complete.done
    complete.has(A, all_of(file))
    assert complete.plan(0.0) == []
    # Held chunks without leaves: the leaves are still fetched, nothing else.
    leafless = Fetch(file.root, file.size, held=range(10))
    leafless.has(A, all_of(file))
    assert leafless.plan(0.0) == [(A, LeavesRequest(file.root, 0, 10))]
    assert leafless.leaves_arrived(A, 0, file.leaf_bytes())
    assert leafless.done and leafless.plan(1.0) == []


def test_a_partial_source_is_only_asked_for_what_it_holds() -> None:
    file = make_file(8)
    fetch = started(file, {A: {0, 1, 2}, B: {5}, C: None}, window=8)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 2], B: [5], C: [1, 3, 4, 6, 7]}
    # Bits past the count are ignored.
    fetch.has(D, b"\x00\xff")
    assert fetch.sources[D].has == set()


def test_end_game_asks_in_flight_chunks_of_a_second_source() -> None:
    file = make_file(4)
    fetch = started(file, {A: None, B: None}, window=8)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 2], B: [1, 3]}
    # Nothing left in the pool: each source is also asked what the other has in flight.
    assert chunks_asked(fetch.plan(1.0)) == {A: [1, 3], B: [0, 2]}
    assert fetch.plan(2.0) == []  # no chunk is asked of a source twice
    deliver(fetch, file, A, [0, 1, 2, 3])
    assert fetch.done
    assert fetch.sources[B].asked == {}
    assert fetch.chunk_arrived(B, 1, file.chunks[1]) is Verdict.UNASKED


def test_end_game_is_bounded_and_respects_the_window() -> None:
    file = make_file(12)
    fetch = started(file, {A: None, B: None}, window=8)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 2, 4, 6, 8, 10], B: [1, 3, 5, 7, 9, 11]}
    assert chunks_asked(fetch.plan(1.0)) == {A: [1, 3], B: [0, 2]}  # room for two each
    assert fetch.plan(2.0) == []
    assert all(len(state.asked) == 8 for state in fetch.sources.values())
    fetch = started(file, {A: None, B: None}, window=16)
    fetch.plan(0.0)
    assert chunks_asked(fetch.plan(1.0)) == {A: [1, 3, 5, 7], B: [0, 2, 4, 6]}


def test_end_game_with_a_bad_copy_keeps_the_other_ask() -> None:
    file = make_file(2)
    fetch = started(file, {A: None, B: None}, window=8)
    fetch.plan(0.0)
    fetch.plan(1.0)  # end game: both chunks asked of both
    assert fetch.chunk_arrived(A, 1, b"forged") is Verdict.BAD
    assert fetch.plan(2.0) == []  # B still has both in flight
    deliver(fetch, file, B, [0, 1])
    assert fetch.done


def test_windows_are_refilled_by_halves() -> None:
    file = make_file(20)
    fetch = started(file, {A: None}, window=8)
    assert chunks_asked(fetch.plan(0.0)) == {A: list(range(8))}
    assert not fetch.wants_more(A)
    deliver(fetch, file, A, [0, 1, 2])
    assert not fetch.wants_more(A)
    assert fetch.plan(1.0) == []  # five in flight: not half empty yet
    deliver(fetch, file, A, [3])
    assert fetch.wants_more(A)
    assert chunks_asked(fetch.plan(2.0)) == {A: [8, 9, 10, 11]}
    assert fetch.wants_more(D)  # unknown source


def test_the_window_is_never_exceeded_near_the_end() -> None:
    file = make_file(9)
    fetch = started(file, {A: None, B: None}, window=4)
    assert chunks_asked(fetch.plan(0.0)) == {A: [0, 2, 4, 6], B: [1, 3, 5, 7]}
    assert fetch.plan(1.0) == []  # chunk 8 is left, both windows are full
    deliver(fetch, file, B, [1])
    assert chunks_asked(fetch.plan(2.0)) == {B: [8]}  # less than half a window left
    assert all(len(state.asked) <= 4 for state in fetch.sources.values())


def test_large_windows_are_split_into_requests_of_max_ask() -> None:
    file = make_file(150)
    fetch = started(file, {A: None}, window=100)
    plan = fetch.plan(0.0)
    assert chunks_asked(plan) == {A: list(range(100))}
    assert [len(request.chunks) for _s, request in plan if isinstance(request, ChunkRequest)] == [
        64,
        36,
    ]


def test_chunks_before_leaves_or_unasked_are_ignored() -> None:
    file = make_file(3)
    fetch = Fetch(file.root, file.size)
    fetch.has(A, all_of(file))
    assert fetch.chunk_arrived(A, 0, file.chunks[0]) is Verdict.UNASKED
    assert fetch.chunk_arrived(D, 0, file.chunks[0]) is Verdict.UNASKED
    fetch.plan(0.0)
    fetch.leaves_arrived(A, 0, file.leaf_bytes())
    fetch.plan(1.0)
    assert fetch.chunk_arrived(A, 7, b"x") is Verdict.UNASKED
    assert fetch.chunk_arrived(A, -1, b"x") is Verdict.UNASKED
    assert not fetch.sources[A].banned


def test_stalled() -> None:
    file = make_file(3)
    fetch = Fetch(file.root, file.size)
    assert fetch.stalled()
    fetch.has(A, b"")
    assert fetch.stalled()
    fetch.has(A, bitmap([1], 3))
    assert not fetch.stalled()  # it may give the leaves
    fetch.plan(0.0)
    fetch.leaves_arrived(A, 0, file.leaf_bytes())
    assert chunks_asked(fetch.plan(1.0)) == {A: [1]}
    deliver(fetch, file, A, [1])
    assert fetch.held == {1}
    assert fetch.stalled()  # nobody holds 0 or 2
    fetch.has(B, bitmap([2], 3))
    assert not fetch.stalled()


# --- random swarms ------------------------------------------------------------------------

BEHAVIOURS = ("honest", "liar", "silent", "flaky", "refuser", "partial")


@dataclasses.dataclass
class SimPeer:
    key: bytes
    behaviour: str
    holds: set[int]
    anchor: bool = False
    connected: bool = True


Message = Leaves | Chunk | NotHere | Have


def simulate(
    file: FakeFile,
    peers: list[SimPeer],
    window: int,
    rnd: random.Random,
) -> Fetch:
    """Drive a fetch until done, checking its promises on the way."""
    count = file.count
    fetch = Fetch(file.root, file.size, settings=FetchSettings(window=window, timeout=10.0))
    by_key = {peer.key: peer for peer in peers}
    queried: dict[bytes, float] = {}
    inbox: list[tuple[float, bytes, Message]] = []
    stores: collections.Counter[int] = collections.Counter()
    caught: set[bytes] = set()  # sources that sent a bad chunk or bad leaves on this link
    now = 0.0

    def query(peer: SimPeer) -> None:
        fetch.has(peer.key, bitmap(peer.holds, count))
        queried[peer.key] = now

    def answer(peer: SimPeer, request: LeavesRequest | ChunkRequest) -> list[Message]:
        behaviour = peer.behaviour
        if behaviour == "silent" or (behaviour == "flaky" and rnd.random() < 0.4):
            return []
        if isinstance(request, LeavesRequest):
            leaves = file.leaf_bytes(request.start, request.count)
            if behaviour == "liar":
                leaves = bytes(len(leaves))
            return [Leaves(file.root, request.start, leaves)]
        if behaviour == "refuser":
            return [NotHere(file.root, request.chunks)]
        return [
            Chunk(file.root, i, b"lie %d" % i if behaviour == "liar" else file.chunks[i])
            for i in request.chunks
        ]

    for peer in peers:
        query(peer)
    for _step in range(3000):
        if fetch.done:
            assert set(stores) == set(range(count))
            assert all(n == 1 for n in stores.values())
            assert fetch.leaves == file.leaves
            return fetch
        # Deliver what has arrived, in any order; links that went down lose theirs.
        arrived = [item for item in inbox if item[0] <= now]
        inbox = [item for item in inbox if item[0] > now]
        rnd.shuffle(arrived)
        for _at, key, message in arrived:
            peer = by_key[key]
            if not peer.connected:
                continue
            match message:
                case Leaves(_root, start, leaves):
                    if not fetch.leaves_arrived(key, start, leaves):
                        assert peer.behaviour == "liar"
                        caught.add(key)
                case Chunk(_root, index, data):
                    verdict = fetch.chunk_arrived(key, index, data)
                    if verdict is Verdict.KEEP:
                        assert data == file.chunks[index]
                        assert index not in fetch.held
                        fetch.stored(index)
                        stores[index] += 1
                    elif verdict is Verdict.BAD:
                        assert peer.behaviour == "liar"
                        caught.add(key)
                case NotHere(_root, chunks):
                    fetch.not_here(key, chunks)
        # Peers come and go (never the anchor); the node queries again as it does.
        for peer in peers:
            if peer.anchor:
                continue
            if peer.connected and rnd.random() < 0.02:
                peer.connected = False
                fetch.gone(peer.key)
            elif not peer.connected and rnd.random() < 0.05:
                # A new link: the scheduler starts afresh with this source (the
                # node keeps its own strikes against it).
                peer.connected = True
                caught.discard(peer.key)
                query(peer)
            elif peer.connected and now - queried[peer.key] >= 5.0:
                state = fetch.sources.get(peer.key)
                if state is None or len(state.has) < count:
                    query(peer)
        for key, request in fetch.plan(now):
            peer = by_key[key]
            state = fetch.sources[key]
            assert peer.connected and not state.banned and key not in caught
            assert len(state.asked) <= window
            if isinstance(request, ChunkRequest):
                assert 0 < len(request.chunks) <= MAX_ASK
                for index in request.chunks:
                    assert index in peer.holds, "asked a chunk the source does not hold"
                    assert index not in fetch.held
            # The anchor answers within the deadline; the others whenever.
            delay = rnd.uniform(0.0, 1.0) if peer.anchor else rnd.uniform(0.0, 15.0)
            inbox.extend((now + delay, key, message) for message in answer(peer, request))
        now += rnd.choice((0.5, 1.0, 3.0, 6.0))
    pytest.fail(f"no end after 3000 steps: {len(fetch.held)} of {count} chunks held")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(1, 40),
    window=st.integers(1, 8),
    behaviours=st.lists(st.sampled_from(BEHAVIOURS), max_size=5),
    anchor_at=st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_swarms_end_with_every_chunk_stored_once(
    count: int, window: int, behaviours: list[str], anchor_at: int, seed: int
) -> None:
    run_swarm(count, window, behaviours, anchor_at, seed)


def run_swarm(count: int, window: int, behaviours: list[str], anchor_at: int, seed: int) -> None:
    rnd = random.Random(seed)
    file = make_file(count, last=rnd.randint(1, CHUNK_SIZE))
    peers = []
    for n, behaviour in enumerate(behaviours):
        holds = set(range(count))
        if behaviour == "partial" or rnd.random() < 0.3:
            holds = {i for i in holds if rnd.random() < 0.5}
        peers.append(SimPeer(b"peer %d" % n, behaviour, holds))
    anchor = SimPeer(b"anchor", "honest", set(range(count)), anchor=True)
    peers.insert(min(anchor_at, len(peers)), anchor)
    fetch = simulate(file, peers, window, rnd)
    assert not fetch.sources[anchor.key].banned
    for peer in peers:
        state = fetch.sources.get(peer.key)
        if state is not None and state.banned:
            assert peer.behaviour == "liar"

"""A download's scheduler (:class:`~p2ptchap.core.transfer.Fetch`) among lying peers.

One honest source holds the whole file; others lie in every way a peer can
through the decoded ``fh``/``fv``/``fc``/``fn`` messages: bitmaps claiming
chunks they do not have (and bits past the end), wrong or partial leaf
lists, damaged, foreign or unsolicited chunks, indexes past the file's end,
"not here" for anything, silence, and disconnection — interleaved at random
with planning at arbitrary times.  After every step:

* only genuine chunks were ever kept, and the leaf list, once set, is the
  file's;
* what the scheduler asks is within the file and within each source's
  window, and never a chunk it holds;
* the honest source is never banned;

and once the liars have had their say, the honest source alone finishes
the download.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core.files import encrypt_bytes, leaf_hash
from p2ptchap.core.transfer import (
    MAX_ASK,
    ChunkRequest,
    Fetch,
    FetchSettings,
    LeavesRequest,
    Verdict,
    bitmap,
)
from tests.fuzz.support import fuzz

KEY = bytes(range(32))
DATA = bytes(range(256)) * 1100  # 281 600 bytes: 5 chunks, the last one short
ROOT, SEALED, LEAVES = encrypt_bytes(KEY, DATA)
COUNT = len(SEALED)
HONEST = b"honest"
LIARS = (b"liar-1", b"liar-2")
SETTINGS = FetchSettings(window=4, timeout=5.0, max_timeouts=2, cooldown=20.0)

actions = st.one_of(
    st.tuples(st.just("has"), st.sampled_from(LIARS), st.binary(max_size=3)),
    st.tuples(st.just("plan"), st.floats(0, 30)),
    st.tuples(st.just("answer"), st.integers(0, 20)),
    st.tuples(
        st.just("chunk"),
        st.sampled_from((*LIARS, HONEST)),
        st.integers(0, COUNT + 3),
        st.sampled_from(["other", "damaged", "empty"]),
    ),
    st.tuples(
        st.just("leaves"),
        st.sampled_from((*LIARS, HONEST)),
        st.integers(0, COUNT + 3),
        st.sampled_from(["wrong", "short", "long"]),
    ),
    st.tuples(st.just("not-here"), st.sampled_from(LIARS), st.lists(st.integers(0, COUNT + 3))),
    st.tuples(st.just("gone"), st.sampled_from(LIARS)),
)


class Download:
    """The node's side: it sends what the scheduler plans and reports what arrives."""

    def __init__(self) -> None:
        self.fetch = Fetch(ROOT, len(DATA), settings=SETTINGS)
        self.now = 0.0
        self.stored: dict[int, bytes] = {}
        self.honest_queue: list[LeavesRequest | ChunkRequest] = []

    def plan(self, delay: float) -> None:
        self.now += delay
        held = set(self.fetch.held)
        for source, request in self.fetch.plan(self.now):
            assert self.fetch.sources[source].banned is False
            if isinstance(request, LeavesRequest):
                assert 0 <= request.start < COUNT and 1 <= request.count <= COUNT - request.start
            else:
                assert 0 < len(request.chunks) <= MAX_ASK
                assert all(0 <= i < COUNT and i not in held for i in request.chunks)
            if source == HONEST:
                self.honest_queue.append(request)
        for state in self.fetch.sources.values():
            assert len(state.asked) <= SETTINGS.window + 4  # the end game may add four

    def arrive(self, source: bytes, index: int, data: bytes) -> None:
        if self.fetch.chunk_arrived(source, index, data) is Verdict.KEEP:
            self.stored[index] = data
            self.fetch.stored(index)

    def answer(self, which: int) -> None:
        """The honest source answers one request it was sent."""
        if not self.honest_queue:
            return
        request = self.honest_queue.pop(which % len(self.honest_queue))
        if isinstance(request, LeavesRequest):
            part = b"".join(LEAVES[request.start : request.start + request.count])
            assert self.fetch.leaves_arrived(HONEST, request.start, part)
        else:
            for index in request.chunks:
                self.arrive(HONEST, index, SEALED[index])

    def check(self) -> None:
        for index in self.fetch.held:
            assert leaf_hash(self.stored[index]) == LEAVES[index], "a bad chunk was kept"
            assert self.stored[index] == SEALED[index]
        assert self.fetch.leaves in (None, LEAVES)
        honest = self.fetch.sources.get(HONEST)
        assert honest is None or not honest.banned, "the honest source was banned"


def forged_chunk(index: int, how: str) -> bytes:
    genuine = SEALED[index % COUNT]
    if how == "other":
        return SEALED[(index + 1) % COUNT]
    if how == "damaged":
        return bytes([genuine[0] ^ 1]) + genuine[1:]
    return b""


def forged_leaves(how: str) -> bytes:
    joined = b"".join(LEAVES)
    if how == "wrong":
        return joined[32:] + joined[:32]
    if how == "short":
        return joined[:-32]
    return joined + bytes(32)


@fuzz(100)
@given(script=st.lists(actions, max_size=40))
def test_lying_sources_cannot_spoil_a_download(script: list[tuple]) -> None:  # type: ignore[type-arg]
    download = Download()
    fetch = download.fetch
    fetch.has(HONEST, bitmap(range(COUNT), COUNT))
    for action in script:
        kind = action[0]
        if kind == "has":
            fetch.has(action[1], action[2])
        elif kind == "plan":
            download.plan(action[1])
        elif kind == "answer":
            download.answer(action[1])
        elif kind == "chunk":
            # The honest source never sends damaged data: an attacker
            # spoofing it cannot (the channel is authenticated), so
            # "honest" here only sends a genuine chunk, perhaps unasked.
            _, source, index, how = action
            data = SEALED[index % COUNT] if source == HONEST else forged_chunk(index, how)
            download.arrive(source, index, data)
        elif kind == "leaves":
            _, source, start, how = action
            if source != HONEST:
                fetch.leaves_arrived(source, start, forged_leaves(how))
        elif kind == "not-here":
            fetch.not_here(action[1], action[2])
        else:
            fetch.gone(action[1])
        download.check()
    # The liars are gone; the honest source alone must finish the job.
    for liar in LIARS:
        fetch.gone(liar)
    for _ in range(60):
        if fetch.done:
            break
        download.plan(SETTINGS.timeout + 1)
        while download.honest_queue:
            download.answer(0)
        download.check()
    assert fetch.done, "the download did not finish with an honest source"
    assert b"".join(download.stored[i] for i in range(COUNT)) == b"".join(SEALED)

"""The atheris targets in CI, without atheris: every corpus and crash file replayed.

``tests/fuzz/corpus/<target>/`` holds the seed corpus (``make_corpus.py``)
and whatever a run by hand added to it; ``tests/fuzz/crashes/<target>/``
holds the inputs that once crashed a target (kept after the fix, as
regression tests).  Each must now run through its target function without
an exception: the same function libFuzzer calls.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from p2ptchap.core import sync
from p2ptchap.core.channel import NEED_DATA, Message
from p2ptchap.core.events import parse_event
from tests.fuzz.atheris_targets import TARGETS, _open_pair
from tests.fuzz.make_corpus import corpus

HERE = Path(__file__).resolve().parent


def _files(kind: str) -> list[tuple[str, Path]]:
    return [
        (target, path)
        for target in TARGETS
        if (HERE / kind / target).is_dir()
        for path in sorted((HERE / kind / target).iterdir())
        if path.is_file()
    ]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_has_a_committed_corpus(target: str) -> None:
    assert any(t == target for t, _ in _files("corpus")), f"run make_corpus.py for {target}"


@pytest.mark.parametrize(
    ("target", "path"), _files("corpus") + _files("crashes"), ids=lambda v: getattr(v, "name", v)
)
def test_replay(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_generated_seeds_run(target: str) -> None:
    for data in corpus()[target]:
        TARGETS[target](data)


def test_the_seeds_are_valid_inputs() -> None:
    # Seeds that a target refuses would start the fuzzer in the wrong place.
    seeds = corpus()
    for data in seeds["events"]:
        if data[0] == 0:
            parse_event(data[1:])
    for data in seeds["sync"]:
        sync.decode_bytes(data)
    _, b = _open_pair()
    record = next(d for d in seeds["frames"] if d[0] == 1)
    # The first mode-1 seed is one DATA record: it must arrive as a message.
    a_copy, b_copy = copy.deepcopy(_open_pair())
    transport = a_copy._transport
    assert transport is not None
    body = record[3:]
    framed = transport.encrypt(body)
    b_copy.receive_data(len(framed).to_bytes(2, "big") + framed)
    assert b_copy.next_event() == Message(b"bonjour")
    assert b_copy.next_event() is NEED_DATA
    assert b.is_open  # the template pair itself is never used up

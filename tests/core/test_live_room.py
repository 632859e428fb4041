"""LiveRoom gives exactly what resolve gives, after every event, in any arrival order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.events import Event, EventType
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import resolve
from tests.room_cell import Cell, scenario

T = EventType


def same(live: LiveRoom, events: list[Event], cell: Cell) -> None:
    expected = resolve(events, cell.room, cell.directory, cell.people)
    got = live.resolution
    assert [e.id for e in got.accepted] == [e.id for e in expected.accepted]
    assert got.rejected == expected.rejected
    assert {e.id for e in got.pending} == {e.id for e in expected.pending}
    assert got.state == expected.state


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**32), st.booleans())
def test_live_room_matches_resolve_after_every_event(
    seed: int, arrival_seed: int, in_order: bool
) -> None:
    cell, events = scenario(seed)
    arrival = sorted(events, key=lambda e: (e.depth, e.id))
    if not in_order:
        random.Random(arrival_seed).shuffle(arrival)
    live = LiveRoom(cell.room, cell.directory, cell.people)
    for n, event in enumerate(arrival, 1):
        live.add(event)
        live.add(event)  # duplicates change nothing
        same(live, arrival[:n], cell)


def test_the_common_case_takes_the_fast_path() -> None:
    cell = Cell(5)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.emit(alice, view, T.JOIN_RULE, {"rule": "public"}, "")
    cell.member(bruno, view, bruno, "join")
    for i in range(200):
        cell.emit(alice if i % 2 else bruno, view, T.MESSAGE, {"body": b"m"})
    live = LiveRoom(cell.room, cell.directory, cell.people)
    for event in view:
        live.add(event)
    assert live.full <= 1  # only the create event resolves from scratch
    assert live.fast >= len(view) - 1
    same(live, view, cell)

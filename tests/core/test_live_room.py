"""LiveRoom gives exactly what resolve gives, after every event, in any arrival order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.events import Event, EventType
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import Rejection, resolve
from tests.core.room_reference import Revocations, revoking_some
from tests.room_cell import Cell, scenario

T = EventType


def live_room(cell: Cell, events: list[Event]) -> LiveRoom:
    """A LiveRoom fed ``events`` one by one."""
    live = LiveRoom(cell.room, cell.directory, cell.people)
    for event in events:
        live.add(event)
    return live


def same(
    live: LiveRoom, events: list[Event], cell: Cell, revoked: Revocations | None = None
) -> None:
    directory, people = (cell.directory, cell.people) if revoked is None else revoked.lookups()
    expected = resolve(events, cell.room, directory, people)
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
    view = cell.public_room(alice, bruno)
    for i in range(200):
        cell.emit(alice if i % 2 else bruno, view, T.MESSAGE, {"body": b"m"})
    live = live_room(cell, view)
    assert live.full <= 1  # only the create event resolves from scratch
    assert live.fast >= len(view) - 1
    same(live, view, cell)


def test_a_removal_by_someone_who_saw_everything_takes_the_fast_path() -> None:
    cell = Cell(6)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    cell.emit(bruno, view, T.MESSAGE, {"body": b"m"})
    live = live_room(cell, view)
    full = live.full
    kick = cell.member(alice, view, bruno, "ban")
    live.add(kick)
    assert live.full == full  # no replay of the room
    assert live.resolution.accepted[-1] == kick
    # Bruno's device had not seen the ban: its next event is dropped, also on the fast path.
    late = cell.emit(bruno, [*view[:-1]], T.MESSAGE, {"body": b"late"})
    live.add(late)
    same(live, [*view, late], cell)
    assert live.status(late.id) == ("rejected", "removed-concurrently")


def test_a_concurrent_removal_resolves_the_room_again() -> None:
    cell = Cell(7)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    alice_view = list(view)
    message = cell.emit(bruno, view, T.MESSAGE, {"body": b"m"})
    kick = cell.member(alice, alice_view, bruno, "leave")  # has not seen the message
    live = live_room(cell, view)
    full = live.full
    live.add(kick)
    assert live.full == full + 1
    same(live, [*view, kick], cell)
    assert live.status(message.id) == ("rejected", "removed-concurrently")


def test_restore_gives_the_same_room_as_a_resolution() -> None:
    cell, events = scenario(12)
    live = LiveRoom(cell.room, cell.directory, cell.people)
    live.load(events)
    status = {e.id: live.status(e.id) for e in events}
    assert live.resolution.state is not None
    restored = LiveRoom(cell.room, cell.directory, cell.people)
    ordered = sorted(events, key=lambda e: (e.depth, e.id))
    restored.restore(ordered, status, live.resolution.state)
    assert restored.resolution.accepted == live.resolution.accepted
    assert restored.resolution.rejected == live.resolution.rejected
    assert restored.heads() == live.heads()
    with pytest.raises(ValueError):
        restored.restore(ordered, {}, live.resolution.state)


def test_a_batch_costs_at_most_one_full_resolution() -> None:
    cell = Cell(8)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    live = LiveRoom(cell.room, cell.directory, cell.people)
    live.add_all(view)
    stale = list(view)
    # Fifty kicks by a non-member, each on an old view: each would force a resolution.
    outsider = cell.person("mallory")
    kicks = [cell.member(outsider, list(stale), bruno, "leave") for _ in range(50)]
    for _ in range(20):
        cell.emit(alice, view, T.MESSAGE, {"body": b"m"})
    full = live.full
    live.add_all([*view, *kicks])
    assert live.full <= full + 1
    same(live, [*view, *kicks], cell)


def test_a_child_claiming_a_small_depth_waits_with_its_parent() -> None:
    cell = Cell(9)
    alice = cell.person("alice")
    view = [cell.create(alice)]
    missing = cell.emit(alice, view, T.NAME, {"name": "a"}, "")
    waiting = cell.emit(alice, view, T.NAME, {"name": "b"}, "")
    liar = cell.forge(
        alice,
        T.TOPIC,
        {"topic": "t"},
        seq=alice.seq + 1,
        prev_seq=waiting.id,
        prev=[waiting.id],
        depth=1,  # claims to be shallower than its parent
        state_key="",
    )
    events = [view[0], waiting, liar]  # `missing` never arrives
    result = cell.resolve(events)
    assert {e.id for e in result.pending} == {waiting.id, liar.id}
    live = LiveRoom(cell.room, cell.directory, cell.people)
    for event in reversed(events):
        live.add(event)
    same(live, events, cell)
    assert missing not in events


# --- revoked senders -----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**32), st.integers(0, 2**32))
def test_live_room_matches_resolve_with_revoked_senders(
    seed: int, arrival_seed: int, revoking: int
) -> None:
    cell, events = scenario(seed)
    senders = [(a.key, a.device.public_key()) for a in cell.authors.values()]
    revoked = revoking_some(cell.directory, cell.people, senders, revoking)
    arrival = list(events)
    random.Random(arrival_seed).shuffle(arrival)
    live = LiveRoom(cell.room, revoked.directory, revoked.people)
    for n, event in enumerate(arrival, 1):
        live.add(event)
        same(live, arrival[:n], cell, revoked)


def test_an_unwitnessed_event_is_no_head_until_a_valid_one_builds_on_it() -> None:
    cell = Cell(10)
    alice, bruno, carole = cell.person("alice"), cell.person("bruno"), cell.person("carole")
    view = cell.public_room(alice, bruno, carole)
    cell.emit(bruno, view, T.MESSAGE, {"body": b"avant"})
    revoked = Revocations(cell.directory, cell.people)
    revoked.devices.add(bytes(bruno.device.public_key()))
    live = LiveRoom(cell.room, revoked.directory, revoked.people)
    live.load(view)
    heads = live.heads()
    # Bruno's stolen key writes on: not on the fast path, rejected, not a head.
    stolen = cell.emit(bruno, view, T.MESSAGE, {"body": b"vole"})
    full = live.full
    live.add(stolen)
    assert live.full == full + 1
    assert live.status(stolen.id) == ("rejected", Rejection.REVOKED_SENDER.value)
    assert live.heads() == heads
    # An honest node builds on its heads: the fast path, and nothing changes.
    honest = cell.emit(alice, list(live.heads()), T.MESSAGE, {"body": b"m"})
    assert stolen.id not in honest.prev
    live.add(honest)
    assert live.full == full + 1 and live.status(honest.id) == ("accepted", None)
    # Carole's node had not heard of the revocation and built on it: it counts.
    unaware = cell.emit(carole, [*view, honest], T.MESSAGE, {"body": b"vu"})
    assert stolen.id in unaware.prev
    live.add(unaware)
    assert live.full == full + 2
    assert live.status(stolen.id) == ("accepted", None)
    same(live, [*view, honest, unaware], cell, revoked)


def test_check_defers_revoked_senders_and_refuses_to_invite_a_revoked_account() -> None:
    cell = Cell(11)
    alice, bruno = cell.person("alice"), cell.person("bruno")
    carole, dora = cell.person("carole"), cell.person("dora")
    view = cell.public_room(alice, bruno)
    revoked = Revocations(cell.directory, cell.people)
    revoked.devices.add(bytes(bruno.device.public_key()))
    revoked.accounts.add(bytes(carole.key))
    live = LiveRoom(cell.room, revoked.directory, revoked.people)
    live.load(view)
    assert live.check(cell.emit(bruno, list(view), T.MESSAGE, {"body": b"m"})) is None
    invite = cell.member(alice, list(view), carole, "invite")
    assert live.check(invite) is Rejection.UNKNOWN_INVITEE
    assert live.check(cell.member(alice, list(view), dora, "invite")) is None
    # An invitation made before the revocation still counts.
    live.add(invite)
    assert live.status(invite.id) == ("accepted", None)

"""Room state against signed but hostile events.

An honest history of a private room (three agents inviting, joining,
writing, renaming, promoting and kicking each other on diverging
replicas) is mixed with hostile events, all validly signed:

* by **Mallory**, an enrolled agent who was never invited: every kind of
  event, including granting herself power, banning the creator, joining;
* by an **outsider** whose device no directory knows;
* by the **members themselves**, but each with a lie the rules must catch:
  another room's id, a parent nobody has (a forged id), a depth that does
  not follow from the parents, a ``prev_seq`` pointing at another device's
  event;

with absurd timestamps, parents chosen anywhere in the history, chains of
hostile events, and duplicates.  Whatever the mix and the arrival order:
the resolved state is byte-for-byte the honest history's, every honest
event keeps its fate, no hostile event is accepted, and a
:class:`~p2ptchap.core.live_room.LiveRoom` fed the events one by one in
any order agrees with :func:`~p2ptchap.core.room.resolve`.
"""

from __future__ import annotations

import random

from hypothesis import event as note_event
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core.events import Event, EventType, make_event
from p2ptchap.core.keys import AccountSecret, DeviceSecret
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import Person, Resolution, encode_state
from tests.fuzz.support import fuzz
from tests.room_cell import Author, Cell, Move, diverge, encrypted_shape

T = EventType
ABSURD_TIMES = (0, 1, 2**31, 2**53, 2**63 - 1)


def honest_history(seed: int) -> tuple[Cell, list[Event], dict[str, Author]]:
    """A private room written by three agents on diverging replicas."""
    cell = Cell(seed)
    chooser = random.Random(seed)
    people = [cell.person(name) for name in ("alice", "bruno", "carole")]
    common = [cell.create(people[0])]
    cell.emit(people[0], common, T.NAME, {"name": "cellule"}, "")
    for person in people[1:]:
        cell.member(people[0], common, person, "invite")

    def power(author: Author, view: list[Event], other: Author) -> None:
        users = {bytes(author.key): 100, bytes(other.key): 50}
        cell.emit(author, view, T.POWER, {"users": users, **_LEVELS}, "")

    moves: list[tuple[float, Move]] = [
        (0.3, lambda a, view, _o: cell.emit(a, view, T.MESSAGE, {"body": b"m"})),
        (0.5, lambda a, view, _o: cell.member(a, view, a, "join")),
        (
            0.6,
            lambda a, view, o: cell.member(a, view, o, chooser.choice(["leave", "ban", "invite"])),
        ),
        (
            0.7,
            lambda a, view, _o: cell.emit(a, view, T.NAME, {"name": chooser.choice("xyz")}, ""),
        ),
        (0.75, power),
    ]
    events = diverge(people, common, chooser, 18, moves)
    mallory = cell.person("mallory")  # enrolled, never invited
    outsider = Author(
        "outsider",
        AccountSecret.generate(cell.rng),
        DeviceSecret.generate(cell.rng),
        Person(mallory.person.kind, "outsider@x.gouv.fr"),
    )  # not in cell.authors: no directory knows it
    cast = {p.name: p for p in people} | {"mallory": mallory, "outsider": outsider}
    return cell, events, cast


_LEVELS = {"invite": 0, "kick": 50, "ban": 50, "redact": 50, "state": 50, "post": 0}
_FAULTS = ("wrong-room", "missing-parent", "lying-depth", "broken-chain")


def _content(draw: st.DrawFn, cast: dict[str, Author], author: Author, history: list[Event]):  # type: ignore[no-untyped-def]
    target = draw(st.sampled_from(sorted(cast)))
    victim = cast[target].hex
    choices = [
        (T.NAME, {"name": "pirate"}, ""),
        (T.TOPIC, {"topic": "à vendre"}, ""),
        (T.JOIN_RULE, {"rule": "public"}, ""),
        (T.EXTERNALS, {"allow": True}, ""),
        (T.HISTORY, {"visibility": "shared"}, ""),
        (T.POWER, {"users": {bytes(author.key): 100}, **_LEVELS}, ""),
        (T.MEMBER, {"membership": "join"}, author.hex),
        (T.MEMBER, {"membership": draw(st.sampled_from(["invite", "ban", "leave"]))}, victim),
        (T.EMAIL_INVITE, {"invited": True}, "mallory@x.gouv.fr"),
        (T.MESSAGE, {"body": b"spam"}, None),
        (T.REDACTION, {"target": draw(st.sampled_from(history)).id}, None),
        (T.EDIT, {"body": b"edit", "target": draw(st.sampled_from(history)).id}, None),
    ]
    return draw(st.sampled_from(choices))


@st.composite
def hostile_events(
    draw: st.DrawFn, cell: Cell, history: list[Event], cast: dict[str, Author]
) -> list[Event]:
    made: list[Event] = []
    last: dict[str, Event] = {}
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(sorted(cast)))
        author = cast[name]
        member = name not in ("mallory", "outsider")
        kind, content, state_key = _content(draw, cast, author, history)
        pool = history + made
        prev = draw(
            st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique_by=lambda e: e.id)
        )
        own = [e for e in history if e.device == author.device.public_key()]
        previous: Event | None = last.get(name) or (max(own, key=lambda e: e.seq) if own else None)
        if previous is not None and draw(st.booleans()):
            prev_seq: Event | None = previous
            seq = previous.seq + 1
        else:
            prev_seq, seq = None, 1
        fault = (
            draw(st.sampled_from(_FAULTS)) if member else draw(st.sampled_from((None, *_FAULTS)))
        )
        if member and seq == 1 and own:
            # A member's event at seq 1 would fork its own create/first
            # event: make it a chain lie instead, always rejected.
            fault = "broken-chain"
        room = (
            cell.room
            if fault != "wrong-room"
            else draw(st.sampled_from([bytes(32), history[-1].id]))
        )
        prev_ids = [e.id for e in prev]
        if fault == "missing-parent":
            prev_ids.append(draw(st.binary(min_size=32, max_size=32)))
        if fault == "broken-chain":
            others = [e for e in pool if e.device != author.device.public_key()]
            prev_seq = draw(st.sampled_from(others))
            seq = prev_seq.seq + 1
        parents = [*prev, *([prev_seq] if prev_seq else [])]
        right = depth = 1 + max(e.depth for e in parents)
        if fault == "lying-depth":
            lies = [d for d in (right - 1, right + 1, right + 1000, 1) if d >= 1 and d != right]
            depth = draw(st.sampled_from(lies))
        event = make_event(
            author.device,
            author.key,
            kind,
            encrypted_shape(kind, content),
            room=room,
            seq=seq,
            prev_seq=None if prev_seq is None else prev_seq.id,
            prev=prev_ids,
            depth=depth,
            ts=draw(st.sampled_from(ABSURD_TIMES)),
            state_key=state_key,
        )
        made.append(event)
        last[name] = event
    return made


def fates(result: Resolution) -> dict[bytes, str]:
    out = {e.id: "accepted" for e in result.accepted}
    out.update({e.id: "pending" for e in result.pending})
    out.update({i: f"rejected:{r.value}" for i, r in result.rejected.items()})
    return out


@fuzz(40)
@given(seed=st.integers(0, 2**32), data=st.data())
def test_hostile_events_change_nothing(seed: int, data: st.DataObject) -> None:
    cell, history, cast = honest_history(seed)
    honest = cell.resolve(history)
    assert honest.state is not None
    hostile = data.draw(hostile_events(cell, history, cast))
    duplicates = data.draw(st.lists(st.sampled_from(history + hostile), max_size=5))
    everything = history + hostile + duplicates
    mixed = cell.resolve(everything)
    assert mixed.state is not None
    assert encode_state(mixed.state) == encode_state(honest.state), (
        "a hostile event changed the room"
    )
    before, after = fates(honest), fates(mixed)
    for event in history:
        assert after[event.id] == before[event.id], "an honest event changed fate"
    for event in hostile:
        assert after[event.id] != "accepted", "a hostile event was accepted"
        note_event(after[event.id])
    # Arrival order does not matter, one event at a time or in batches.
    order = list(everything)
    random.Random(seed).shuffle(order)
    live = LiveRoom(cell.room, cell.directory, cell.people)
    for event in order:
        live.add(event)
    assert live.resolution.state is not None
    assert encode_state(live.resolution.state) == encode_state(honest.state)
    assert fates(live.resolution) == after

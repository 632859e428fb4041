"""Room rules and resolution: every rule, every rejection, concurrency, order independence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import Event, EventType, make_event
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import DeviceSecret
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.room import (
    Person,
    Rejection,
    Resolution,
    _admit,
    _before,
    decode_state,
    encode_state,
    resolve,
)
from tests.core.room_reference import Revocations
from tests.room_cell import Author, Cell, encrypted_shape, scenario

T = EventType
R = Rejection


def roles(cell: Cell, result: Resolution) -> dict[str, str]:
    assert result.state is not None
    return {
        a.name: m.value
        for a in cell.authors.values()
        if (m := result.state.membership.get(a.key)) is not None
    }


def reason(result: Resolution, event: Event) -> Rejection | None:
    return result.rejected.get(event.id)


@pytest.fixture
def cell() -> Cell:
    return Cell()


def test_creator_is_admin_and_the_room_is_private_by_default(cell: Cell) -> None:
    alice = cell.person("alice")
    view = [cell.create(alice)]
    result = cell.resolve(view)
    assert result.state is not None
    assert result.state.level(alice.key) == 100 and result.state.is_member(alice.key)
    assert result.state.join_rule == "private" and not result.state.allow_externals


def test_invitation_and_joining(cell: Cell) -> None:
    alice, bruno, carole = cell.person("alice"), cell.person("bruno"), cell.person("carole")
    view = [cell.create(alice)]
    uninvited = cell.member(carole, view, carole, "join")
    cell.member(alice, view, bruno, "invite")
    cell.member(bruno, view, bruno, "join")
    result = cell.resolve(view)
    assert reason(result, uninvited) is R.NOT_INVITED
    assert roles(cell, result) == {"alice": "join", "bruno": "join"}


def test_public_rooms_admit_agents_not_externals(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    eve = cell.person("eve", Kind.EXTERNAL)
    view = cell.public_room(alice, bruno)
    external = cell.member(eve, view, eve, "join")
    invite_external = cell.member(alice, view, eve, "invite")
    result = cell.resolve(view)
    assert result.state is not None and result.state.is_member(bruno.key)
    assert reason(result, external) is R.EXTERNALS_NOT_ALLOWED
    assert reason(result, invite_external) is R.EXTERNALS_NOT_ALLOWED
    cell.emit(alice, view, T.EXTERNALS, {"allow": True}, "")
    cell.member(alice, view, eve, "invite")
    cell.member(eve, view, eve, "join")
    assert cell.resolve(view).state.is_member(eve.key)  # type: ignore[union-attr]


def test_power_rules(cell: Cell) -> None:
    alice, bruno, carole = cell.person("alice"), cell.person("bruno"), cell.person("carole")
    view = [cell.create(alice)]
    for someone in (bruno, carole):
        cell.member(alice, view, someone, "invite")
        cell.member(someone, view, someone, "join")
    base = {"invite": 0, "kick": 50, "ban": 50, "redact": 50, "state": 50, "post": 0}
    grab = cell.emit(bruno, view, T.POWER, {"users": {bytes(bruno.key): 100}, **base}, "")
    cell.emit(
        alice, view, T.POWER, {"users": {bytes(alice.key): 100, bytes(bruno.key): 50}, **base}, ""
    )
    over = cell.emit(
        bruno,
        view,
        T.POWER,
        {"users": {bytes(alice.key): 100, bytes(bruno.key): 50, bytes(carole.key): 100}, **base},
        "",
    )
    kick_admin = cell.member(bruno, view, alice, "leave")
    name = cell.emit(carole, view, T.NAME, {"name": "x"}, "")
    kick = cell.member(bruno, view, carole, "leave")
    result = cell.resolve(view)
    assert reason(result, grab) is R.INSUFFICIENT_POWER
    assert reason(result, over) is R.INSUFFICIENT_POWER  # nobody grants more than they hold
    assert reason(result, kick_admin) is R.INSUFFICIENT_POWER
    assert reason(result, name) is R.INSUFFICIENT_POWER
    assert kick in result.accepted
    assert roles(cell, result)["carole"] == "leave"


def test_bans_unbans_and_rejoining(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    cell.member(alice, view, bruno, "ban")
    rejoin = cell.member(bruno, view, bruno, "join")
    message = cell.emit(bruno, view, T.MESSAGE, {"body": b"still here?"})
    result = cell.resolve(view)
    assert reason(result, rejoin) is R.BANNED
    assert reason(result, message) is R.NOT_A_MEMBER
    cell.member(alice, view, bruno, "leave")  # unban
    cell.member(bruno, view, bruno, "join")
    assert cell.resolve(view).state.is_member(bruno.key)  # type: ignore[union-attr]


def test_direct_rooms(cell: Cell) -> None:
    alice, bruno, carole = cell.person("alice"), cell.person("bruno"), cell.person("carole")
    eve = cell.person("eve", Kind.EXTERNAL)
    view = [cell.create(alice, direct=True)]
    cell.member(alice, view, bruno, "invite")
    third = cell.member(alice, view, carole, "invite")
    public = cell.emit(alice, view, T.JOIN_RULE, {"rule": "public"}, "")
    result = cell.resolve(view)
    assert reason(result, third) is R.DIRECT_ROOM
    assert reason(result, public) is R.DIRECT_ROOM
    # An external cannot open a direct conversation with an agent.
    view2 = [cell.create(eve, direct=True)]
    cell.emit(eve, view2, T.EXTERNALS, {"allow": True}, "")
    to_agent = cell.member(eve, view2, alice, "invite")
    assert reason(cell.resolve(view2), to_agent) is R.DIRECT_ROOM


def test_messages_edits_reactions_redactions(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.member(alice, view, bruno, "invite")
    outsider = cell.emit(bruno, view, T.MESSAGE, {"body": b"hello?"})
    cell.member(bruno, view, bruno, "join")
    first = cell.emit(alice, view, T.MESSAGE, {"body": b"bonjour"})
    edit_other = cell.emit(bruno, view, T.EDIT, {"target": first.id, "body": b"x"})
    redact_other = cell.emit(bruno, view, T.REDACTION, {"target": first.id})
    react = cell.emit(bruno, view, T.REACTION, {"target": first.id, "key": "👍"})
    edit_own = cell.emit(alice, view, T.EDIT, {"target": first.id, "body": b"bonjour !"})
    dangling = cell.emit(alice, view, T.REACTION, {"target": b"\x00" * 32, "key": "?"})
    result = cell.resolve(view)
    assert reason(result, outsider) is R.NOT_A_MEMBER
    assert reason(result, edit_other) is R.BAD_TARGET
    assert reason(result, redact_other) is R.INSUFFICIENT_POWER
    assert reason(result, dangling) is R.BAD_TARGET
    assert react in result.accepted and edit_own in result.accepted


def _fork(view: list[Event]) -> list[Event]:
    return list(view)


def test_a_ban_racing_messages_drops_the_concurrent_ones(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.member(alice, view, bruno, "invite")
    cell.member(bruno, view, bruno, "join")
    seen = cell.emit(bruno, view, T.MESSAGE, {"body": b"before"})
    alice_view, bruno_view = _fork(view), _fork(view)
    ban = cell.member(alice, alice_view, bruno, "ban")
    racing = [cell.emit(bruno, bruno_view, T.MESSAGE, {"body": b"%d" % i}) for i in range(3)]
    result = cell.resolve(alice_view + bruno_view)
    assert ban in result.accepted and seen in result.accepted
    assert all(reason(result, e) is R.REMOVED_CONCURRENTLY for e in racing)


def test_a_moderator_and_an_admin_kicking_each_other(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.member(alice, view, bruno, "invite")
    cell.member(bruno, view, bruno, "join")
    base = {"invite": 0, "kick": 50, "ban": 50, "redact": 50, "state": 50, "post": 0}
    cell.emit(
        alice, view, T.POWER, {"users": {bytes(alice.key): 100, bytes(bruno.key): 50}, **base}, ""
    )
    alice_view, bruno_view = _fork(view), _fork(view)
    by_alice = cell.member(alice, alice_view, bruno, "leave")
    by_bruno = cell.member(bruno, bruno_view, alice, "leave")
    result = cell.resolve(alice_view + bruno_view)
    assert by_alice in result.accepted
    assert reason(result, by_bruno) is not None
    assert roles(cell, result) == {"alice": "join", "bruno": "leave"}


def test_mutual_removal_removes_both(cell: Cell) -> None:
    # Two admins promote, concurrently, one of two members each; each promoted
    # member kicks the other in their own view. Judged by what each could
    # see, both kicks are allowed: both are removed.
    alice, dora = cell.person("alice"), cell.person("dora")
    bruno, carole = cell.person("bruno"), cell.person("carole")
    view = [cell.create(alice)]
    for someone in (dora, bruno, carole):
        cell.member(alice, view, someone, "invite")
        cell.member(someone, view, someone, "join")
    base = {"invite": 0, "kick": 0, "ban": 50, "redact": 50, "state": 50, "post": 0}
    admins = {bytes(alice.key): 100, bytes(dora.key): 100}
    cell.emit(
        alice,
        view,
        T.POWER,
        {"users": {**admins, bytes(bruno.key): 10, bytes(carole.key): 10}, **base},
        "",
    )
    bruno_side, carole_side = _fork(view), _fork(view)
    cell.emit(
        alice,
        bruno_side,
        T.POWER,
        {"users": {**admins, bytes(bruno.key): 20, bytes(carole.key): 10}, **base},
        "",
    )
    cell.emit(
        dora,
        carole_side,
        T.POWER,
        {"users": {**admins, bytes(bruno.key): 10, bytes(carole.key): 20}, **base},
        "",
    )
    kick_carole = cell.member(bruno, bruno_side, carole, "leave")
    kick_bruno = cell.member(carole, carole_side, bruno, "leave")
    after_bruno = cell.emit(bruno, bruno_side, T.MESSAGE, {"body": b"gone?"})
    result = cell.resolve(bruno_side + carole_side)
    assert kick_carole in result.accepted and kick_bruno in result.accepted
    membership = roles(cell, result)
    assert membership["bruno"] == membership["carole"] == "leave"
    assert reason(result, after_bruno) is R.REMOVED_CONCURRENTLY


def test_an_external_joining_as_externals_are_switched_off(cell: Cell) -> None:
    alice, eve = cell.person("alice"), cell.person("eve", Kind.EXTERNAL)
    view = [cell.create(alice)]
    cell.emit(alice, view, T.EXTERNALS, {"allow": True}, "")
    cell.member(alice, view, eve, "invite")
    alice_view, eve_view = _fork(view), _fork(view)
    switch = cell.emit(alice, alice_view, T.EXTERNALS, {"allow": False}, "")
    join = cell.member(eve, eve_view, eve, "join")
    result = cell.resolve(alice_view + eve_view)
    assert switch in result.accepted
    assert reason(result, join) in {R.REMOVED_CONCURRENTLY, R.EXTERNALS_NOT_ALLOWED}
    assert not result.state.is_member(eve.key)  # type: ignore[union-attr]


def test_admission_rejections(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    good = cell.emit(alice, view, T.NAME, {"name": "a"}, "")
    # A fork: another event with the same device and sequence number.
    alice.seq -= 1
    alice.last = view[0].id
    fork = cell.emit(alice, view, T.NAME, {"name": "b"}, "")
    # A lying depth.
    liar = cell.forge(
        bruno,
        T.TOPIC,
        {"topic": "t"},
        seq=1,
        prev_seq=None,
        prev=[view[0].id],
        depth=7,
        state_key="",
    )
    # An unknown device for a known account.
    stranger_device = DeviceSecret.generate(cell.rng)
    unknown = make_event(
        stranger_device,
        bruno.key,
        T.MESSAGE,
        encrypted_shape(T.MESSAGE, {"body": b"x"}),
        room=cell.room,
        seq=1,
        prev_seq=None,
        prev=[good.id],
        depth=2,
        ts=0,
    )
    orphan = cell.forge(
        alice,
        T.TOPIC,
        {"topic": "t"},
        seq=9,
        prev_seq=b"\x01" * 32,
        prev=[b"\x02" * 32],
        depth=3,
        state_key="",
    )
    result = cell.resolve([*view, liar, unknown, orphan])
    forked = good if reason(result, good) else fork
    assert reason(result, forked) is R.DEVICE_FORK
    assert reason(result, liar) is R.LYING_DEPTH
    assert reason(result, unknown) is R.UNKNOWN_SENDER
    assert orphan in result.pending


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**32))
def test_state_is_a_function_of_the_set_of_events(seed: int, shuffle_seed: int) -> None:
    # Three replicas make random operations on diverging views, then the
    # union is resolved in any order, with duplicates: same result, and the
    # same as resolving each replica's set after a full exchange.
    cell = Cell(seed)
    chooser = random.Random(seed)
    people = [cell.person(n) for n in ("alice", "bruno", "carole")]
    common = [cell.create(people[0])]
    cell.emit(people[0], common, T.JOIN_RULE, {"rule": "public"}, "")
    for p in people[1:]:
        cell.member(p, common, p, "join")
    views = {p.name: list(common) for p in people}
    for _ in range(12):
        author = chooser.choice(people)
        view = views[author.name]
        action = chooser.randrange(5)
        other = chooser.choice(people)
        if action == 0:
            cell.emit(author, view, T.MESSAGE, {"body": b"m"})
        elif action == 1:
            cell.member(author, view, other, chooser.choice(["leave", "ban", "invite"]))
        elif action == 2:
            cell.emit(author, view, T.NAME, {"name": chooser.choice("abc")}, "")
        elif action == 3:  # a sync between two replicas
            merged = {e.id: e for e in view + views[other.name]}
            views[author.name] = views[other.name] = list(merged.values())
        else:
            cell.member(author, view, author, "join")
    union = list({e.id: e for v in views.values() for e in v}.values())
    shuffled = union + union[: len(union) // 2]
    random.Random(shuffle_seed).shuffle(shuffled)
    first, second = cell.resolve(union), cell.resolve(shuffled)
    assert [e.id for e in first.accepted] == [e.id for e in second.accepted]
    assert first.rejected == second.rejected
    assert first.state == second.state


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32))
def test_vector_clocks_agree_with_explicit_ancestry(seed: int) -> None:
    # The reference: ancestry by walking parent links.
    cell = Cell(seed)
    chooser = random.Random(seed)
    people = [cell.person(n) for n in ("alice", "bruno", "carole")]
    common = [cell.create(people[0])]
    views = {p.name: list(common) for p in people}
    for _ in range(25):
        author = chooser.choice(people)
        if chooser.random() < 0.3:
            other = chooser.choice(people)
            merged = {e.id: e for e in views[author.name] + views[other.name]}
            views[author.name] = list(merged.values())
        cell.emit(author, views[author.name], T.MESSAGE, {"body": b"x"})
    events = {e.id: e for v in views.values() for e in v}
    admitted, _, _, clocks = _admit(events.values(), cell.room, lambda a, d: Person(Kind.AGENT, ""))

    def ancestors(event: Event) -> set[bytes]:
        seen, stack = {event.id}, [event]
        while stack:
            current = stack.pop()
            for parent in (*current.prev, *([current.prev_seq] if current.prev_seq else [])):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(events[parent])
        return seen

    for y in admitted:
        past = ancestors(y)
        for x in admitted:
            assert _before(x, y, clocks) == (x.id in past)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32))
def test_state_encoding_round_trips_and_is_canonical(seed: int) -> None:
    cell, events = scenario(seed)
    state = cell.resolve(events).state
    assert state is not None
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data


def test_damaged_state_snapshots_are_refused() -> None:
    cell, events = scenario(3)
    state = cell.resolve(events).state
    assert state is not None
    data = encode_state(state)
    for bad in (data[:-1], b"\xa0", codec.encode({"v": 2}), data.replace(b"joined", b"xoined")):
        with pytest.raises(DecodeError):
            decode_state(bad)


def test_inviting_an_unknown_account_is_its_own_reason_and_does_not_block_the_inviter() -> None:
    cell = Cell(31)
    alice, ghost = cell.person("alice"), cell.person("ghost")
    view = [cell.create(alice)]
    invite = cell.member(alice, view, ghost, "invite")
    after = cell.emit(alice, view, T.NAME, {"name": "n"}, "")
    del cell.authors["ghost"]  # nobody has seen ghost's certificate
    result = cell.resolve(view)
    assert result.rejected == {invite.id: Rejection.UNKNOWN_INVITEE}
    assert after in result.accepted  # a refused invite is still a valid parent
    live = LiveRoom(cell.room, cell.directory, cell.people)
    live.load(view)
    assert live.heads() == [after]


# --- revoked senders: witnessed events keep counting ----------------------------------


def revoked(cell: Cell, *devices: Author, accounts: tuple[Author, ...] = ()) -> Revocations:
    """The cell's directory once ``devices`` and ``accounts`` are revoked."""
    revocations = Revocations(cell.directory, cell.people)
    revocations.devices = {bytes(a.device.public_key()) for a in devices}
    revocations.accounts = {bytes(a.key) for a in accounts}
    return revocations


def resolve_with(cell: Cell, events: list[Event], revocations: Revocations) -> Resolution:
    return resolve(events, cell.room, revocations.directory, revocations.people)


def second_device(cell: Cell, author: Author, name: str) -> Author:
    """Another device of ``author``'s account, certified too."""
    device = Author(name, author.account, DeviceSecret.generate(cell.rng), author.person)
    cell.authors[name] = device
    return device


def test_revoking_the_creator_keeps_the_room_as_it_was(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = [cell.create(alice)]
    cell.emit(alice, view, T.NAME, {"name": "Crue"}, "")
    cell.member(alice, view, bruno, "invite")
    cell.member(bruno, view, bruno, "join")
    cell.emit(alice, view, T.MESSAGE, {"body": b"bonjour"})
    cell.emit(bruno, view, T.MESSAGE, {"body": b"salut"})  # bruno saw everything
    before = cell.resolve(view)
    assert before.state is not None and not before.rejected
    for revocations in (revoked(cell, alice), revoked(cell, accounts=(alice,))):
        after = resolve_with(cell, view, revocations)
        assert after.accepted == before.accepted and not after.rejected
        assert after.state is not None
        assert encode_state(after.state) == encode_state(before.state)
    # A room only its revoked creator ever wrote in: nothing of it was witnessed.
    alone = [cell.create(alice)]
    cell.emit(alice, alone, T.NAME, {"name": "Seul"}, "")
    result = resolve_with(cell, alone, revoked(cell, alice))
    assert result.state is None
    assert set(result.rejected.values()) == {R.REVOKED_SENDER}


def test_a_revoked_device_counts_where_a_valid_device_built_on_it(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    early = cell.emit(bruno, view, T.MESSAGE, {"body": b"avant"})
    seen = cell.emit(alice, view, T.MESSAGE, {"body": b"lu"})
    late = cell.emit(bruno, view, T.MESSAGE, {"body": b"vole"})
    after_late = list(view)
    later = cell.emit(bruno, view, T.EDIT, {"target": late.id, "body": b"vole !"})
    revocations = revoked(cell, bruno)
    result = resolve_with(cell, view, revocations)
    assert early in result.accepted and seen in result.accepted
    assert reason(result, late) is R.REVOKED_SENDER
    assert reason(result, later) is R.REVOKED_SENDER  # its descendant, same device
    assert result.state is not None and result.state.is_member(bruno.key)
    # A valid device that had not heard of the revocation builds on the
    # first one: it counts, and only it.
    unaware = cell.emit(alice, after_late, T.MESSAGE, {"body": b"vu"})
    result = resolve_with(cell, [*view, unaware], revocations)
    assert late in result.accepted and unaware in result.accepted
    assert reason(result, later) is R.REVOKED_SENDER


def test_unknown_senders_witness_nothing_and_stay_unknown(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    cell.emit(alice, view, T.MESSAGE, {"body": b"lu"})
    before_late = list(view)
    late = cell.emit(bruno, view, T.MESSAGE, {"body": b"vole"})
    # Two devices of bruno's (revoked) account that were never certified.
    stranger, ghost = (
        Author(name, bruno.account, DeviceSecret.generate(cell.rng), bruno.person)
        for name in ("stranger", "ghost")
    )
    citing = cell.emit(stranger, view, T.MESSAGE, {"body": b"x"})
    unknown = cell.emit(ghost, before_late, T.MESSAGE, {"body": b"y"})
    result = resolve_with(cell, [*view, unknown], revoked(cell, accounts=(bruno,)))
    assert reason(result, late) is R.REVOKED_SENDER
    assert reason(result, citing) is R.REJECTED_PARENT
    assert reason(result, unknown) is R.UNKNOWN_SENDER


def test_a_revoked_account_keeps_what_was_built_on_and_its_invitation(cell: Cell) -> None:
    alice, bruno, carole = cell.person("alice"), cell.person("bruno"), cell.person("carole")
    phone = second_device(cell, alice, "phone")
    view = [cell.create(bruno)]
    invitation = cell.member(bruno, view, alice, "invite")
    invite_carole = cell.member(bruno, view, carole, "invite")
    joined = cell.member(alice, view, alice, "join")
    laptop_message = cell.emit(alice, view, T.MESSAGE, {"body": b"portable"})
    phone_message = cell.emit(phone, view, T.MESSAGE, {"body": b"telephone"})
    cell.emit(bruno, view, T.MESSAGE, {"body": b"recu"})
    stolen = cell.emit(phone, view, T.MESSAGE, {"body": b"vole"})
    after = cell.emit(alice, view, T.MESSAGE, {"body": b"encore"})
    # The account revoked: both devices; the invitations stand.
    result = resolve_with(cell, view, revoked(cell, accounts=(alice, carole)))
    for event in (invitation, invite_carole, joined, laptop_message, phone_message):
        assert event in result.accepted
    # ``after`` cites ``stolen``: neither has a valid descendant.
    assert reason(result, stolen) is R.REVOKED_SENDER
    assert reason(result, after) is R.REVOKED_SENDER
    joined_and_invited = {"alice": "join", "phone": "join", "bruno": "join", "carole": "invite"}
    assert roles(cell, result) == joined_and_invited  # the phone is alice's account
    # Only the phone revoked: the laptop is valid, and its event witnesses the phone's.
    result = resolve_with(cell, view, revoked(cell, phone))
    assert stolen in result.accepted and after in result.accepted


def test_a_stolen_key_cannot_fork_away_a_witnessed_event(cell: Cell) -> None:
    alice, bruno = cell.person("alice"), cell.person("bruno")
    view = cell.public_room(alice, bruno)
    named = cell.emit(alice, view, T.NAME, {"name": "Crue"}, "")
    built_on = cell.emit(bruno, view, T.MESSAGE, {"body": b"ok"})
    # The thief signs another event with the same seq, sorting first.
    fork = cell.fork_first(alice, named, {"name": "Volé"})
    events = [*view, fork]
    # A fork by a valid device: the first in the order wins (a cloned device).
    assert reason(cell.resolve(events), named) is R.DEVICE_FORK
    result = resolve_with(cell, events, revoked(cell, alice))
    assert reason(result, fork) is R.REVOKED_SENDER
    assert named in result.accepted and built_on in result.accepted
    assert result.state is not None and result.state.name == "Crue"

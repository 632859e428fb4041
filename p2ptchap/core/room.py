"""Room state: which events count, and what the room looks like after them.

The state is a **pure function of the set of events**: two nodes holding the
same events compute the same state, whatever order the events arrived in.
:func:`resolve` does it in four steps, documented in ``docs/protocol.md``
§10:

1. **Order.**  Events are sorted by ``(depth, id)``.  Because a valid
   ``depth`` is one more than the largest parent depth (``prev`` and
   ``prev_seq`` alike), this is a topological
   order: parents always come first.
2. **Admission.**  In that order, an event is admitted if its parents and its
   device's previous event are known and admitted, its ``depth`` is right,
   its ``prev_seq`` is its device's event ``seq − 1``, no earlier event of the
   device has the same ``seq`` (a fork), and the directory knows its sender
   (device of that account, certificates verified).  Events whose parents
   are missing wait (*pending*); the others not admitted are rejected with a
   reason.  An event whose sender the directory knows but has revoked since
   is first of all rejected unless *witnessed*: in the causal past of an
   event by a sender not revoked (:func:`_unwitnessed`).
3. **Authorization** (replay).  Admitted events are applied in order to a
   running state, each checked against it by the rules in :func:`_authorize`.
4. **Strong remove** (Kleppmann, PaPoC 2022).  A removal (kick or ban) also
   drops the removed member's events that are *concurrent* with it — not in
   its causal past — and a switch that disallows externals drops external
   joins concurrent with it.  Removals themselves are exempt, so a mutual
   removal removes both.  Steps 3–4 repeat, the dropped set only growing,
   until nothing changes.

Causality is tracked with per-device vector clocks (each device's events
form a chain through ``prev_seq``), so "is x in the causal past of y" costs
one dictionary look-up.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import (
    ADMIN,
    MEMBER,
    MODERATOR,
    Event,
    EventType,
    Membership,
)
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey, DeviceKey

DEFAULT_POWER: Final = {
    "invite": MEMBER,
    "kick": MODERATOR,
    "ban": MODERATOR,
    "redact": MODERATOR,
    "state": MODERATOR,
    "post": MEMBER,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Person:
    """What the directory says about an account: kind and normalised address.

    ``revoked``: the certificate (the account's, or the device's when the
    person comes from a :data:`Directory` look-up) was revoked since.  The
    person stays known: a revocation must not undo, on every node, what
    others built on before it reached them.
    """

    kind: Kind
    email: str
    revoked: bool = False


#: ``directory(account, device)``: the person behind an account if ``device``
#: is one of its devices and both certificates verified — with ``revoked`` set
#: if either has been revoked since — else ``None`` (unknown: never certified,
#: or a device of another account).
Directory = Callable[[AccountKey, DeviceKey], Person | None]
#: ``people(account)``: the person behind an account key (``revoked`` set if
#: its certificate has been revoked since), or ``None`` if unknown.
People = Callable[[AccountKey], Person | None]


class Rejection(enum.Enum):
    """Why an event does not count (stable strings, for logs and the API)."""

    REJECTED_PARENT = "rejected-parent"
    WRONG_ROOM = "wrong-room"
    LYING_DEPTH = "lying-depth"
    BROKEN_CHAIN = "broken-chain"
    DEVICE_FORK = "device-fork"
    UNKNOWN_SENDER = "unknown-sender"
    REVOKED_SENDER = "revoked-sender"
    UNKNOWN_INVITEE = "unknown-invitee"
    NOT_A_MEMBER = "not-a-member"
    INSUFFICIENT_POWER = "insufficient-power"
    BANNED = "banned"
    NOT_INVITED = "not-invited"
    EXTERNALS_NOT_ALLOWED = "externals-not-allowed"
    DIRECT_ROOM = "direct-room"
    BAD_TARGET = "bad-target"
    REMOVED_CONCURRENTLY = "removed-concurrently"


@dataclasses.dataclass
class RoomState:
    """The state after the accepted events (a snapshot; do not mutate)."""

    room: bytes
    creator: AccountKey
    direct: bool = False
    name: str = ""
    topic: str = ""
    join_rule: str = "private"
    allow_externals: bool = False
    history: str = "joined"
    power: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_POWER))
    levels: dict[AccountKey, int] = dataclasses.field(default_factory=dict)
    membership: dict[AccountKey, Membership] = dataclasses.field(default_factory=dict)
    email_invites: set[str] = dataclasses.field(default_factory=set)

    def level(self, account: AccountKey) -> int:
        return self.levels.get(account, MEMBER)

    def members(self) -> list[AccountKey]:
        return sorted((a for a, m in self.membership.items() if m is Membership.JOIN), key=bytes)

    def is_member(self, account: AccountKey) -> bool:
        return self.membership.get(account) is Membership.JOIN


@dataclasses.dataclass
class Resolution:
    """The outcome of :func:`resolve`."""

    state: RoomState | None
    accepted: list[Event]
    rejected: dict[bytes, Rejection]
    pending: list[Event]


#: Per device (raw key bytes: hashing those is much cheaper than key objects),
#: the highest ``seq`` in an event's causal past.
Clock = dict[bytes, int]


def _admit(
    events: Iterable[Event], room: bytes, directory: Directory
) -> tuple[list[Event], dict[bytes, Rejection], list[Event], dict[bytes, Clock]]:
    # Duplicates are harmless: one event per id.
    ordered = sorted({e.id: e for e in events}.values(), key=lambda e: (e.depth, e.id))
    admitted: dict[bytes, Event] = {}
    clocks: dict[bytes, Clock] = {}
    rejected: dict[bytes, Rejection] = {}
    pending: list[Event] = []
    seqs: set[tuple[bytes, int]] = set()
    known = {e.id: e for e in ordered}
    waiting = _waiting(ordered, known)
    senders = {e.id: directory(e.account, e.device) for e in ordered if e.id not in waiting}
    unwitnessed = _unwitnessed(known, senders)
    for event in ordered:
        parents = [*event.prev, *([event.prev_seq] if event.prev_seq else [])]
        if event.id in waiting:
            pending.append(event)
            continue
        reason = None
        if event.id in unwitnessed:
            reason = Rejection.REVOKED_SENDER
        # Parents' depths as they claim them: so every parent of an event with
        # the right depth comes before it in the order, and is judged first.
        elif parents and event.depth != 1 + max(known[p].depth for p in parents):
            reason = Rejection.LYING_DEPTH
        elif any(p not in admitted for p in parents):
            reason = Rejection.REJECTED_PARENT
        elif event.room != room:
            reason = Rejection.WRONG_ROOM
        elif event.prev_seq is not None and (
            admitted[event.prev_seq].device != event.device
            or admitted[event.prev_seq].seq != event.seq - 1
        ):
            reason = Rejection.BROKEN_CHAIN
        elif (bytes(event.device), event.seq) in seqs:
            reason = Rejection.DEVICE_FORK
        elif senders[event.id] is None:
            reason = Rejection.UNKNOWN_SENDER
        if reason is not None:
            rejected[event.id] = reason
            continue
        clocks[event.id] = merge_clocks(event, clocks)
        admitted[event.id] = event
        seqs.add((bytes(event.device), event.seq))
    return list(admitted.values()), rejected, pending, clocks


def _unwitnessed(known: dict[bytes, Event], senders: dict[bytes, Person | None]) -> set[bytes]:
    """Events of senders revoked since that no event of a valid sender descends from.

    Until a revocation reaches them, honest nodes take the device for valid
    and build on its events: those are *witnessed* — in the causal past of
    an event whose sender is known and not revoked — and keep counting, or
    the revocation would undo, retroactively and everywhere, what others
    wrote (the whole room, if the device created it).  Events a stolen key
    makes that no valid device builds on do not count.

    ``senders`` has every event that does not wait (so whose ancestors are
    all here); waiting events witness nothing yet.  Only the links are read:
    an unwitnessed event must take no part in admission, or a stolen key
    could sign, after its revocation, another event with the ``seq`` of a
    witnessed one, sorting before it, and make that one a ``device-fork``
    — stranding everything built on it.  Whoever witnesses an event
    witnesses its ancestors too, so an unwitnessed event's descendants are
    all unwitnessed, or rejected for their parent, or waiting.
    """
    revoked = {i for i, person in senders.items() if person is not None and person.revoked}
    if not revoked:
        return set()
    # From every valid sender's event up, through the others only: a valid
    # event met on the way is a starting point of its own.
    stack = [
        parent
        for identifier, person in senders.items()
        if person is not None and not person.revoked
        for parent in _parents(known[identifier])
    ]
    witnessed: set[bytes] = set()
    while stack:
        identifier = stack.pop()
        if identifier not in witnessed:
            witnessed.add(identifier)
            person = senders[identifier]
            if person is None or person.revoked:
                stack.extend(_parents(known[identifier]))
    return revoked - witnessed


def _parents(event: Event) -> tuple[bytes, ...]:
    return (*event.prev, *([event.prev_seq] if event.prev_seq else []))


def _waiting(ordered: list[Event], known: dict[bytes, Event]) -> set[bytes]:
    """Events with an ancestor missing: they wait, whatever depth they claim."""
    children: dict[bytes, list[bytes]] = {}
    stack: list[bytes] = []
    for event in ordered:
        for parent in (*event.prev, *([event.prev_seq] if event.prev_seq else [])):
            if parent in known:
                children.setdefault(parent, []).append(event.id)
            else:
                stack.append(event.id)
    waiting: set[bytes] = set()
    while stack:
        identifier = stack.pop()
        if identifier not in waiting:
            waiting.add(identifier)
            stack.extend(children.get(identifier, ()))
    return waiting


def merge_clocks(event: Event, clocks: dict[bytes, Clock]) -> Clock:
    """The clock of ``event``, from its parents' clocks (all present in ``clocks``)."""
    parents = [*event.prev, *([event.prev_seq] if event.prev_seq else [])]
    clock = dict(clocks[parents[0]]) if parents else {}
    for parent in parents[1:]:
        for device, seq in clocks[parent].items():
            if clock.get(device, 0) < seq:
                clock[device] = seq
    clock[bytes(event.device)] = event.seq
    return clock


def _before(x: Event, y: Event, clocks: dict[bytes, Clock]) -> bool:
    """Whether ``x`` is in the causal past of ``y`` (or is ``y``)."""
    return clocks[y.id].get(bytes(x.device), 0) >= x.seq


def _target(event: Event) -> AccountKey:
    assert event.state_key is not None
    return AccountKey(bytes.fromhex(event.state_key))


def _is_removal(event: Event) -> bool:
    if event.type is not EventType.MEMBER:
        return False
    membership = Membership(str(event.content["membership"]))
    return membership is Membership.BAN or (
        membership is Membership.LEAVE and _target(event) != event.account
    )


def _int(event: Event, key: str) -> int:
    value = event.content[key]
    assert isinstance(value, int)  # checked by the content schema
    return value


def _levels(event: Event) -> dict[AccountKey, int]:
    users = event.content["users"]
    assert isinstance(users, dict)  # checked by the content schema
    return {
        AccountKey(k): v for k, v in users.items() if isinstance(k, bytes) and isinstance(v, int)
    }


def _authorize(  # noqa: PLR0911 - the rules, one after the other
    state: RoomState, event: Event, person: Person, people: People, by_id: dict[bytes, Event]
) -> Rejection | None:
    """The authorization rules; ``None`` means the event is allowed."""
    sender = event.account
    level = state.level(sender)
    kind = event.type
    if kind is EventType.MEMBER:
        return _authorize_member(state, event, person, people)
    if not state.is_member(sender):
        return Rejection.NOT_A_MEMBER
    if kind is EventType.EMAIL_INVITE:
        return None if level >= state.power["invite"] else Rejection.INSUFFICIENT_POWER
    if kind in _SETTINGS:
        return _authorize_setting(state, event, person, level)
    if kind is EventType.POWER:
        if level < state.power["state"]:
            return Rejection.INSUFFICIENT_POWER
        return _authorize_power(state, event, level)
    if kind in (EventType.MESSAGE, EventType.ROOM_KEY, EventType.HISTORY_KEYS):
        return None if level >= state.power["post"] else Rejection.INSUFFICIENT_POWER
    target_id = event.content["target"]
    target = by_id.get(target_id) if isinstance(target_id, bytes) else None
    if target is None or target.room != state.room:
        return Rejection.BAD_TARGET
    if kind is EventType.EDIT:
        ok = target.type is EventType.MESSAGE and target.account == sender
        return None if ok else Rejection.BAD_TARGET
    if kind is EventType.REACTION:
        return None if level >= state.power["post"] else Rejection.INSUFFICIENT_POWER
    # Redaction: one's own events, or with the power to redact.
    ok = target.account == sender or level >= state.power["redact"]
    return None if ok else Rejection.INSUFFICIENT_POWER


_SETTINGS: Final = frozenset(
    {EventType.NAME, EventType.TOPIC, EventType.HISTORY, EventType.EXTERNALS, EventType.JOIN_RULE}
)


def _authorize_setting(
    state: RoomState, event: Event, person: Person, level: int
) -> Rejection | None:
    if event.type is EventType.JOIN_RULE:
        if state.direct:
            return Rejection.DIRECT_ROOM
        if person.kind is Kind.EXTERNAL and event.content["rule"] == "public":
            return Rejection.EXTERNALS_NOT_ALLOWED  # externals see no public rooms
    return None if level >= state.power["state"] else Rejection.INSUFFICIENT_POWER


def _authorize_power(state: RoomState, event: Event, level: int) -> Rejection | None:
    new_levels = _levels(event)
    # Nobody grants more than they hold, nor changes someone at or above them
    # (except lowering themselves).
    for account in set(new_levels) | set(state.levels):
        old, new = state.level(account), new_levels.get(account, MEMBER)
        if old == new:
            continue
        if new > level or (old >= level and account != event.account):
            return Rejection.INSUFFICIENT_POWER
    for action in DEFAULT_POWER:
        old, new = state.power[action], _int(event, action)
        if old != new and (old > level or new > level):
            return Rejection.INSUFFICIENT_POWER
    return None


def _authorize_member(  # noqa: PLR0911, PLR0912 - membership transitions, each explicit
    state: RoomState, event: Event, person: Person, people: People
) -> Rejection | None:
    sender, target = event.account, _target(event)
    membership = Membership(str(event.content["membership"]))
    current = state.membership.get(target)
    level = state.level(sender)
    if membership is Membership.JOIN:
        if sender != target:
            return Rejection.BAD_TARGET
        if current is Membership.BAN:
            return Rejection.BANNED
        if person.kind is Kind.EXTERNAL and not state.allow_externals:
            return Rejection.EXTERNALS_NOT_ALLOWED
        invited = current is Membership.INVITE or person.email in state.email_invites
        public = state.join_rule == "public" and person.kind is Kind.AGENT
        return None if invited or public or current is Membership.JOIN else Rejection.NOT_INVITED
    if membership is Membership.LEAVE and sender == target:
        ok = current in {Membership.JOIN, Membership.INVITE}
        return None if ok else Rejection.NOT_A_MEMBER
    # Someone acting on someone else: invite, kick, ban, unban.
    if not state.is_member(sender):
        return Rejection.NOT_A_MEMBER
    if membership is Membership.INVITE:
        if level < state.power["invite"]:
            return Rejection.INSUFFICIENT_POWER
        if current in {Membership.BAN, Membership.JOIN}:
            return Rejection.BANNED if current is Membership.BAN else Rejection.BAD_TARGET
        invitee = people(target)
        if invitee is None:
            return Rejection.UNKNOWN_INVITEE
        if invitee.kind is Kind.EXTERNAL and not state.allow_externals:
            return Rejection.EXTERNALS_NOT_ALLOWED
        if state.direct:
            others = sum(
                1
                for account, m in state.membership.items()
                if account != target and m in {Membership.JOIN, Membership.INVITE}
            )
            if others >= 2:  # the invitee would be a third person
                return Rejection.DIRECT_ROOM
            # Tchap's rule: an external cannot open a conversation with an agent.
            if person.kind is Kind.EXTERNAL and invitee.kind is Kind.AGENT:
                return Rejection.DIRECT_ROOM
        return None
    needed = (
        state.power["ban"]
        if membership is Membership.BAN or current is Membership.BAN
        else (state.power["kick"])
    )
    if membership is Membership.LEAVE and current not in {
        Membership.JOIN,
        Membership.INVITE,
        Membership.BAN,
    }:
        return Rejection.BAD_TARGET
    if level < needed or level <= state.level(target):
        return Rejection.INSUFFICIENT_POWER
    return None


def _apply(state: RoomState, event: Event) -> None:
    kind, content = event.type, event.content
    if kind is EventType.NAME:
        state.name = str(content["name"])
    elif kind is EventType.TOPIC:
        state.topic = str(content["topic"])
    elif kind is EventType.JOIN_RULE:
        state.join_rule = str(content["rule"])
    elif kind is EventType.EXTERNALS:
        state.allow_externals = bool(content["allow"])
    elif kind is EventType.HISTORY:
        state.history = str(content["visibility"])
    elif kind is EventType.POWER:
        state.levels = _levels(event)
        state.power = {action: _int(event, action) for action in DEFAULT_POWER}
    elif kind is EventType.EMAIL_INVITE:
        assert event.state_key is not None
        if content["invited"]:
            state.email_invites.add(event.state_key)
        else:
            state.email_invites.discard(event.state_key)
    elif kind is EventType.MEMBER:
        target = _target(event)
        membership = Membership(str(content["membership"]))
        state.membership[target] = membership


@dataclasses.dataclass
class _Replay:
    """One authorization pass over the admitted events (steps 3 and 4)."""

    admitted: list[Event]
    clocks: dict[bytes, Clock]
    dropped: set[bytes]
    directory: Directory
    people: People
    #: Causal state before each removal, computed once per pass.
    causal: dict[bytes, RoomState | None] = dataclasses.field(default_factory=dict)

    def causal_state(self, removal: Event) -> RoomState | None:
        """The state made by the removal's causal past alone.

        A removal is judged by what its author could see: a concurrent
        demotion or removal of its author does not cancel it.  That is what
        makes a mutual removal remove both.
        """
        if removal.id not in self.causal:
            past = [
                e for e in self.admitted if e.id != removal.id and _before(e, removal, self.clocks)
            ]
            self.causal[removal.id] = self.run(past)[0]
        return self.causal[removal.id]

    def run(
        self, admitted: list[Event]
    ) -> tuple[RoomState | None, list[Event], dict[bytes, Rejection]]:
        return _replay(admitted, self)


def _replay(
    admitted: list[Event], context: _Replay
) -> tuple[RoomState | None, list[Event], dict[bytes, Rejection]]:
    dropped, directory, people = context.dropped, context.directory, context.people
    state: RoomState | None = None
    accepted: list[Event] = []
    rejected: dict[bytes, Rejection] = {}
    by_id: dict[bytes, Event] = {}
    for index, event in enumerate(admitted):
        if event.id in dropped:
            rejected[event.id] = Rejection.REMOVED_CONCURRENTLY
            continue
        if event.type is EventType.CREATE:
            state = RoomState(
                room=event.id,
                creator=event.account,
                direct=bool(event.content["direct"]),
                levels={event.account: ADMIN},
                membership={event.account: Membership.JOIN},
            )
            accepted.append(event)
            by_id[event.id] = event
            continue
        assert state is not None  # the create event is first in order
        person = directory(event.account, event.device)
        assert person is not None  # checked at admission
        judged_by = state
        if _is_removal(event) and not _saw_all_before(event, index, context.clocks):
            judged_by = context.causal_state(event) or state
        reason = _authorize(judged_by, event, person, people, by_id)
        if reason is not None:
            rejected[event.id] = reason
            continue
        _apply(state, event)
        accepted.append(event)
        by_id[event.id] = event
    return state, accepted, rejected


def _saw_all_before(event: Event, index: int, clocks: dict[bytes, Clock]) -> bool:
    """Whether the ``index`` events before ``event`` in the order are all in its causal past.

    Its causal past (itself included) has ``sum(clock)`` events — each
    device's admitted events form one chain from ``seq`` 1 — and all of them
    come before it in the order; so they are all the preceding events exactly
    when the counts agree.  Then the state of its causal past is simply the
    running state, and replaying the past again is not needed: the common
    case, a removal by someone who had seen everything.
    """
    return sum(clocks[event.id].values()) - 1 == index


def _strong_remove(
    admitted: list[Event], accepted: list[Event], clocks: dict[bytes, Clock], directory: Directory
) -> set[bytes]:
    """Events to drop because an accepted removal (or externals switch) is concurrent.

    All admitted events are considered, accepted or not, so that such an
    event is reported as ``removed-concurrently`` wherever it falls in the
    order.
    """
    removals = [e for e in accepted if _is_removal(e)]
    closing = [e for e in accepted if e.type is EventType.EXTERNALS and not e.content["allow"]]
    dropped = set()
    for event in admitted:
        if event.type is EventType.CREATE or _is_removal(event):
            continue
        for removal in removals:
            if (
                _target(removal) == event.account
                and not _before(event, removal, clocks)
                and (not _before(removal, event, clocks))
            ):
                dropped.add(event.id)
        if event.type is EventType.MEMBER and event.content["membership"] == "join":
            person = directory(event.account, event.device)
            if (
                person is not None
                and person.kind is Kind.EXTERNAL
                and any(
                    not _before(event, c, clocks) and not _before(c, event, clocks) for c in closing
                )
            ):
                dropped.add(event.id)
    return dropped


def resolve(
    events: Iterable[Event], room: bytes, directory: Directory, people: People
) -> Resolution:
    """The room's state from a set of events (see the module documentation)."""
    admitted, rejected, pending, clocks = _admit(events, room, directory)
    dropped: set[bytes] = set()
    while True:
        context = _Replay(admitted, clocks, dropped, directory, people)
        state, accepted, refused = context.run(admitted)
        more = _strong_remove(admitted, accepted, clocks, directory) - dropped
        if not more:
            break
        dropped |= more
    rejected.update(refused)
    return Resolution(state, accepted, rejected, pending)


# --- the state as bytes (snapshots, and "byte-identical" comparisons) ------------------

STATE_VERSION: Final = 1
#: Changes whenever a rule changes what resolution gives: stored statuses and
#: snapshots made under other rules are resolved again (see store/rooms.py).
RULES_VERSION: Final = 4


def encode_state(state: RoomState) -> bytes:
    """The state as deterministic CBOR: equal states give equal bytes.

    Members and levels are maps keyed by account key; e-mail invites a sorted
    list.  ``docs/protocol.md`` §10 gives the layout.
    """
    return codec.encode(
        {
            "v": STATE_VERSION,
            "room": state.room,
            "creator": bytes(state.creator),
            "direct": state.direct,
            "name": state.name,
            "topic": state.topic,
            "join_rule": state.join_rule,
            "externals": state.allow_externals,
            "history": state.history,
            "power": {k: v for k, v in state.power.items()},
            "levels": {bytes(a): level for a, level in state.levels.items()},
            "members": {bytes(a): m.value for a, m in state.membership.items()},
            "email_invites": list[codec.Value](sorted(state.email_invites)),
        }
    )


def decode_state(data: bytes) -> RoomState:
    """The inverse of :func:`encode_state`; :class:`DecodeError` if it is not one."""
    body = codec.expect_map(codec.decode(data, _STATE_LIMITS), "room state")
    if codec.get_int(body, "v", "room state") != STATE_VERSION:
        raise DecodeError("room state: unknown version")
    power = codec.expect_map(codec.field(body, "power", "room state"), "power")
    levels = codec.expect_map(codec.field(body, "levels", "room state"), "levels")
    members = codec.expect_map(codec.field(body, "members", "room state"), "members")
    invites = codec.expect_list(codec.field(body, "email_invites", "room state"), "invites")
    try:
        state = RoomState(
            room=codec.get_bytes(body, "room", "room state", size=32),
            creator=AccountKey(codec.get_bytes(body, "creator", "room state", size=32)),
            direct=bool(codec.field(body, "direct", "room state")),
            name=codec.get_text(body, "name", "room state", 255),
            topic=codec.get_text(body, "topic", "room state", 4000),
            join_rule=codec.get_text(body, "join_rule", "room state", 16),
            allow_externals=bool(codec.field(body, "externals", "room state")),
            history=codec.get_text(body, "history", "room state", 16),
            power={str(k): codec.get_int(power, k, "power") for k in DEFAULT_POWER},
            levels={AccountKey(_key(k)): int(_level(v)) for k, v in levels.items()},
            membership={AccountKey(_key(k)): Membership(v) for k, v in members.items()},
            email_invites={str(i) for i in invites},
        )
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"room state: {exc}") from exc
    if state.join_rule not in {"private", "public"} or state.history not in {"joined", "shared"}:
        raise DecodeError("room state: unknown join rule or history visibility")
    if encode_state(state) != data:
        raise DecodeError("room state: not in canonical form")
    return state


_STATE_LIMITS: Final = codec.Limits(max_bytes=16 << 20, max_items=1 << 20, max_depth=4)


def _key(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise TypeError("an account key is 32 bytes")
    return value


def _level(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MEMBER <= value <= ADMIN:
        raise TypeError("a level is 0 … 100")
    return value

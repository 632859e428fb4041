"""A brute-force reference model of room state resolution (tests only).

Written from ``docs/protocol.md`` §9-§10 alone, without looking at
``p2ptchap/core/room.py`` or ``live_room.py``, so that it can disagree with
them.  It is meant to be obviously right, not fast:

- the causal past of an event is found by walking ``prev`` and ``prev_seq``
  links (no vector clocks);
- the state a removal is judged against is the state of its causal past,
  found by running this whole algorithm again on that subset of events;
- strong remove is an explicit fixed point over sets of event ids.

Where the specification leaves a choice open, this model decides as follows
(each is a place where an implementation may legitimately differ, and where
the specification should say more):

1. *Pending is transitive*: an event waits if a parent is missing **or
   waiting** (a child of a waiting event cannot be judged yet; calling it
   ``rejected-parent`` would make it flip when the grandparent arrives).
2. *Parents* are ``prev`` and ``prev_seq`` everywhere (§10 says so), including
   for ``lying-depth``: depth must be 1 + the largest depth among both.
3. Admission checks run in the order §10 lists them; the first failing one
   names the rejection.  A parent later in the order than its child (only
   possible with a lying depth) is "not admitted" yet: ``rejected-parent``.
4. Authorization checks run in the order §10 lists them: a joined sender
   first (``not-a-member``), then levels (``insufficient-power``), then the
   type's own rules.  ``direct-room`` for a join rule comes after the
   ``state`` level check.
5. Changing levels: only *changed* entries count.  A user's level changes if
   it differs (absent = 0) between the running state and the new ``users``
   map; such a change needs the new level ≤ the sender's, and the old one <
   the sender's unless the user is the sender.  A changed action level needs
   the new value ≤ the sender's level.  (Counting unchanged entries would
   forbid a moderator from ever sending a ``power`` event in a room with an
   admin.)  A ``power`` event replaces ``levels`` by its ``users`` map as is.
6. ``email_invite`` is not in §10's list; it is an invitation, so it needs the
   ``invite`` level (and a joined sender), nothing more.  Neither it nor a
   join is limited by the direct-room "two people" rule (only invites are).
7. A join of someone else is ``bad-target``; inviting a joined account is
   ``bad-target``; inviting a banned one is ``banned``.
8. A joined member joining again must satisfy the join rule like anyone
   (invited or public room for agents), else ``not-invited``.
9. A self-leave needs no joined sender (it declines an invitation), but a
   banned person's self-leave is ``banned``: it would lift the ban, which
   needs the ``ban`` level and a level above the target's.
10. A *removal* is structural: a ``member`` event with ``ban``, or with
    ``leave`` on someone else (a kick, or an unban).  Removals are judged
    against their causal past only, so their fate never depends on the
    running state nor on what strong remove drops.
11. An account unknown to ``people`` counts as an external (it is not vouched
    for as an agent) when invited.
12. "Known" targets (edit, reaction, redaction) are events accepted earlier in
    the replay.  A reaction needs a ``message`` target; an edit one's own
    ``message``; a redaction any accepted event (its own, or with ``redact``).
    Edits need no ``post`` level (§10 lists only message and reaction).
13. Strong remove drops *admitted* events (whatever their own fate would be)
    and the dropped set only grows (``D ← D ∪ drops(replay(D))``), as §10
    says.  "An external's join" is a join of oneself by an external.  Every
    dropped event is ``removed-concurrently``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from p2ptchap.core.events import (
    ADMIN,
    MODERATOR,
    Event,
    EventType,
    Membership,
)
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey, DeviceKey
from p2ptchap.core.room import Person, Rejection, RoomState

T = EventType
Directory = Callable[[AccountKey, DeviceKey], Person | None]
People = Callable[[AccountKey], Person | None]

DEFAULT_POWER = {
    "invite": 0,
    "kick": MODERATOR,
    "ban": MODERATOR,
    "redact": MODERATOR,
    "state": MODERATOR,
    "post": 0,
}
ACTIONS = tuple(DEFAULT_POWER)
SETTINGS = {T.NAME, T.TOPIC, T.HISTORY, T.EXTERNALS, T.JOIN_RULE}


@dataclasses.dataclass
class Outcome:
    accepted: list[bytes]  # in resolution order
    rejected: dict[bytes, str]  # id -> Rejection value
    pending: set[bytes]
    state: RoomState | None


@dataclasses.dataclass
class _State:
    """The running state, plain and copyable."""

    room: bytes
    creator: AccountKey
    direct: bool
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
        return self.levels.get(account, 0)

    def joined(self, account: AccountKey) -> bool:
        return self.membership.get(account) is Membership.JOIN

    def public(self) -> RoomState:
        return RoomState(
            room=self.room,
            creator=self.creator,
            direct=self.direct,
            name=self.name,
            topic=self.topic,
            join_rule=self.join_rule,
            allow_externals=self.allow_externals,
            history=self.history,
            power=dict(self.power),
            levels=dict(self.levels),
            membership=dict(self.membership),
            email_invites=set(self.email_invites),
        )


def parents(event: Event) -> set[bytes]:
    return set(event.prev) | ({event.prev_seq} if event.prev_seq is not None else set())


def target_of(event: Event) -> AccountKey:
    assert event.state_key is not None
    return AccountKey(bytes.fromhex(event.state_key))


def membership_of(event: Event) -> Membership:
    return Membership(event.content["membership"])


def is_removal(event: Event) -> bool:
    if event.type is not T.MEMBER:
        return False
    change = membership_of(event)
    return change is Membership.BAN or (
        change is Membership.LEAVE and target_of(event) != event.account
    )


class Reference:
    """Resolves sets of events of one room; memoises by the set of ids."""

    def __init__(self, room: bytes, directory: Directory, people: People) -> None:
        self.room = room
        self.directory = directory
        self.people = people
        self._memo: dict[frozenset[bytes], tuple[Outcome, _State | None]] = {}
        self._ancestors: dict[bytes, frozenset[bytes]] = {}

    # --- the causal past, by walking the graph ------------------------------------------

    def ancestors(self, event: Event, events: dict[bytes, Event]) -> frozenset[bytes]:
        """Every event reachable through prev/prev_seq links (not the event itself)."""
        if event.id not in self._ancestors:
            seen: set[bytes] = set()
            stack = list(parents(event))
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                stack.extend(parents(events[current]))
            self._ancestors[event.id] = frozenset(seen)
        return self._ancestors[event.id]

    def concurrent(self, a: Event, b: Event, events: dict[bytes, Event]) -> bool:
        return (
            a.id != b.id
            and a.id not in self.ancestors(b, events)
            and b.id not in self.ancestors(a, events)
        )

    # --- the algorithm ------------------------------------------------------------------

    def resolve(self, events: Iterable[Event]) -> Outcome:
        return self._resolve({e.id: e for e in events})[0]

    def _resolve(self, events: dict[bytes, Event]) -> tuple[Outcome, _State | None]:
        key = frozenset(events)
        if key not in self._memo:
            self._memo[key] = self._compute(events)
        return self._memo[key]

    def _compute(self, events: dict[bytes, Event]) -> tuple[Outcome, _State | None]:
        order = sorted(events.values(), key=lambda e: (e.depth, e.id))

        # Pending: a parent is missing or pending (a fixed point).
        pending: set[bytes] = set()
        changed = True
        while changed:
            changed = False
            for e in order:
                if e.id not in pending and any(p not in events or p in pending for p in parents(e)):
                    pending.add(e.id)
                    changed = True

        # Admission.
        rejected: dict[bytes, str] = {}
        admitted: list[Event] = []
        for e in order:
            if e.id in pending:
                continue
            reason = self._admission(e, events, admitted)
            if reason is None:
                admitted.append(e)
            else:
                rejected[e.id] = reason.value

        # Authorization and strong remove, until the dropped set stops growing.
        dropped: set[bytes] = set()
        while True:
            accepted, refused, state = self._replay(admitted, dropped, events)
            grown = dropped | self._drops(admitted, accepted, events)
            if grown == dropped:
                break
            dropped = grown
        rejected.update(refused)
        for e in admitted:
            if e.id in dropped:
                rejected[e.id] = Rejection.REMOVED_CONCURRENTLY.value
        outcome = Outcome(
            accepted=[e.id for e in admitted if e.id in accepted],
            rejected=rejected,
            pending=pending,
            state=state.public() if state is not None else None,
        )
        return outcome, state

    def _admission(
        self, e: Event, events: dict[bytes, Event], admitted: list[Event]
    ) -> Rejection | None:
        admitted_ids = {a.id for a in admitted}
        if any(p not in admitted_ids for p in parents(e)):
            return Rejection.REJECTED_PARENT
        if e.room != self.room:
            return Rejection.WRONG_ROOM
        expected = 1 + max((events[p].depth for p in parents(e)), default=-1)
        if e.depth != expected:
            return Rejection.LYING_DEPTH
        if e.prev_seq is not None:
            before = events[e.prev_seq]
            if before.device != e.device or before.seq != e.seq - 1:
                return Rejection.BROKEN_CHAIN
        if any(a.device == e.device and a.seq == e.seq for a in admitted):
            return Rejection.DEVICE_FORK
        if self.directory(e.account, e.device) is None:
            return Rejection.UNKNOWN_SENDER
        return None

    def _replay(
        self, admitted: list[Event], dropped: set[bytes], events: dict[bytes, Event]
    ) -> tuple[set[bytes], dict[bytes, str], _State | None]:
        state: _State | None = None
        accepted: dict[bytes, Event] = {}
        refused: dict[bytes, str] = {}
        for e in admitted:
            if e.id in dropped:
                continue
            if e.type is T.CREATE:
                reason = None if state is None else Rejection.BAD_TARGET  # unreachable
            elif is_removal(e):
                causal = {i: events[i] for i in self.ancestors(e, events)}
                _, past = self._resolve(causal)
                reason = Rejection.NOT_A_MEMBER if past is None else self._authorize(e, past, None)
            elif state is None:
                reason = Rejection.NOT_A_MEMBER  # unreachable: create comes first
            else:
                reason = self._authorize(e, state, accepted)
            if reason is not None:
                refused[e.id] = reason.value
                continue
            accepted[e.id] = e
            state = self._apply(e, state)
        return set(accepted), refused, state

    def _drops(
        self, admitted: list[Event], accepted: set[bytes], events: dict[bytes, Event]
    ) -> set[bytes]:
        removals = [r for r in admitted if r.id in accepted and is_removal(r)]
        closings = [
            x
            for x in admitted
            if x.id in accepted and x.type is T.EXTERNALS and x.content["allow"] is False
        ]
        drops: set[bytes] = set()
        for e in admitted:
            if is_removal(e):
                continue
            for r in removals:
                if e.account == target_of(r) and self.concurrent(e, r, events):
                    drops.add(e.id)
            if self._external_join(e):
                for x in closings:
                    if self.concurrent(e, x, events):
                        drops.add(e.id)
        return drops

    def _external_join(self, e: Event) -> bool:
        if e.type is not T.MEMBER or membership_of(e) is not Membership.JOIN:
            return False
        sender = self.directory(e.account, e.device)
        return target_of(e) == e.account and sender is not None and sender.kind is Kind.EXTERNAL

    # --- rules --------------------------------------------------------------------------

    def _authorize(
        self, e: Event, s: _State, accepted: dict[bytes, Event] | None
    ) -> Rejection | None:
        sender = e.account
        person = self.directory(e.account, e.device)
        assert person is not None  # admitted
        change = membership_of(e) if e.type is T.MEMBER else None
        exempt = change is Membership.JOIN or (
            change is Membership.LEAVE and target_of(e) == sender
        )
        if not exempt and not s.joined(sender):
            return Rejection.NOT_A_MEMBER
        level = s.level(sender)

        if e.type in SETTINGS:
            if level < s.power["state"]:
                return Rejection.INSUFFICIENT_POWER
            if e.type is T.JOIN_RULE and s.direct:
                return Rejection.DIRECT_ROOM
            return None

        if e.type is T.POWER:
            if level < s.power["state"]:
                return Rejection.INSUFFICIENT_POWER
            users = {AccountKey(k): v for k, v in e.content["users"].items()}
            for account in set(users) | set(s.levels):
                old, new = s.level(account), users.get(account, 0)
                if old != new and (new > level or (old >= level and account != sender)):
                    return Rejection.INSUFFICIENT_POWER
            for action in ACTIONS:
                new = e.content[action]
                if new != s.power[action] and new > level:
                    return Rejection.INSUFFICIENT_POWER
            return None

        if e.type is T.EMAIL_INVITE:
            return Rejection.INSUFFICIENT_POWER if level < s.power["invite"] else None

        if e.type is T.MEMBER:
            return self._authorize_member(e, s, person)

        assert accepted is not None  # only removals are judged without a replay
        if e.type in {T.MESSAGE, T.REACTION} and level < s.power["post"]:
            return Rejection.INSUFFICIENT_POWER
        if e.type is T.MESSAGE:
            return None
        target = accepted.get(e.content["target"])
        if e.type is T.REACTION:
            ok = target is not None and target.type is T.MESSAGE
            return None if ok else Rejection.BAD_TARGET
        if e.type is T.EDIT:
            ok = target is not None and target.type is T.MESSAGE and target.account == sender
            return None if ok else Rejection.BAD_TARGET
        assert e.type is T.REDACTION
        if target is None:
            return Rejection.BAD_TARGET
        if target.account != sender and level < s.power["redact"]:
            return Rejection.INSUFFICIENT_POWER
        return None

    def _authorize_member(self, e: Event, s: _State, person: Person) -> Rejection | None:
        sender, target, change = e.account, target_of(e), membership_of(e)
        level = s.level(sender)
        current = s.membership.get(target)
        if change is Membership.JOIN:
            if target != sender:
                return Rejection.BAD_TARGET
            if current is Membership.BAN:
                return Rejection.BANNED
            if person.kind is Kind.EXTERNAL and not s.allow_externals:
                return Rejection.EXTERNALS_NOT_ALLOWED
            if current is Membership.INVITE or person.email in s.email_invites:
                return None
            if s.join_rule == "public" and person.kind is Kind.AGENT:
                return None
            return Rejection.NOT_INVITED
        if change is Membership.LEAVE and target == sender:
            return Rejection.BANNED if current is Membership.BAN else None
        if change is Membership.INVITE:
            if level < s.power["invite"]:
                return Rejection.INSUFFICIENT_POWER
            if current is Membership.BAN:
                return Rejection.BANNED
            if current is Membership.JOIN:
                return Rejection.BAD_TARGET
            known = self.people(target)
            kind = known.kind if known is not None else Kind.EXTERNAL
            if kind is Kind.EXTERNAL and not s.allow_externals:
                return Rejection.EXTERNALS_NOT_ALLOWED
            if s.direct:
                present = {
                    a for a, m in s.membership.items() if m in {Membership.JOIN, Membership.INVITE}
                }
                if len(present | {target}) > 2:
                    return Rejection.DIRECT_ROOM
                if person.kind is Kind.EXTERNAL and kind is Kind.AGENT:
                    return Rejection.DIRECT_ROOM
            return None
        # A kick (someone else's leave, lifting a ban too) or a ban.
        lifting = change is Membership.LEAVE and current is Membership.BAN
        needed = s.power["ban"] if change is Membership.BAN or lifting else s.power["kick"]
        if level < needed or level <= s.level(target):
            return Rejection.INSUFFICIENT_POWER
        return None

    def _apply(self, e: Event, s: _State | None) -> _State:
        if e.type is T.CREATE:
            return _State(
                room=self.room,
                creator=e.account,
                direct=bool(e.content["direct"]),
                levels={e.account: ADMIN},
                membership={e.account: Membership.JOIN},
            )
        assert s is not None
        s = dataclasses.replace(
            s,
            power=dict(s.power),
            levels=dict(s.levels),
            membership=dict(s.membership),
            email_invites=set(s.email_invites),
        )
        c = e.content
        if e.type is T.NAME:
            s.name = c["name"]
        elif e.type is T.TOPIC:
            s.topic = c["topic"]
        elif e.type is T.JOIN_RULE:
            s.join_rule = c["rule"]
        elif e.type is T.EXTERNALS:
            s.allow_externals = c["allow"]
        elif e.type is T.HISTORY:
            s.history = c["visibility"]
        elif e.type is T.POWER:
            s.power = {a: c[a] for a in ACTIONS}
            s.levels = {AccountKey(k): v for k, v in c["users"].items()}
        elif e.type is T.MEMBER:
            s.membership[target_of(e)] = membership_of(e)
        elif e.type is T.EMAIL_INVITE:
            assert e.state_key is not None
            if c["invited"]:
                s.email_invites.add(e.state_key)
            else:
                s.email_invites.discard(e.state_key)
        return s


def reference_resolve(
    events: Iterable[Event], room: bytes, directory: Directory, people: People
) -> Outcome:
    """The room's resolution per ``docs/protocol.md`` §10, by brute force."""
    return Reference(room, directory, people).resolve(events)

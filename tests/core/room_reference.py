"""A brute-force reference model of room state resolution (tests only).

Written from ``docs/protocol.md`` §9-§10 alone, without looking at
``p2ptchap/core/room.py`` or ``live_room.py``, so that it can disagree with
them.  It is meant to be obviously right, not fast:

- the causal past of an event is found by walking ``prev`` and ``prev_seq``
  links (no vector clocks);
- the state a removal is judged against is its causal past replayed, in
  order and by the same rules, with the events strong remove drops from the
  *whole* set left out (§10 step 3);
- strong remove is an explicit fixed point over sets of event ids.

§10 now settles most of what used to be open (the order of the admission
checks, ``lying-depth`` counting ``prev_seq``, joining again, self-leave,
kick and unban targets, reaction and redaction targets, ``direct-room``
before the level, a removal's causal state).  How this model reads it, and
what it decides where §10 is still silent (marked *silent*; every such choice
agrees with what ``resolve`` was seen to do from outside, and the orders of
checks and "an external's join" are pinned by small cases in
``test_room_stateful``):

1. *Pending is transitive* (silent): an event waits if a parent is missing
   **or waiting**.  (§10 says "whose parents are not all present"; calling
   the child of a waiting event ``rejected-parent`` would make its fate flip
   when the grandparent arrives.)
2. *Parents* are ``prev`` and ``prev_seq`` everywhere.
3. Admission: the first failing check, in §10's order: ``revoked-sender``
   (the sender is known but revoked, and no event that does not wait and
   whose sender is known and not revoked has the event among its ancestors —
   found by walking the links, whatever becomes of that event), then
   ``lying-depth`` (the depth the parents *claim*, admitted or not),
   ``rejected-parent``, ``wrong-room``, ``broken-chain``, ``device-fork``,
   ``unknown-sender``.  An event of a revoked sender that is witnessed is
   then treated like any other (authorization included).
4. Authorization: a joined sender first (``not-a-member``; joins of anyone
   and self-leaves are exempt), then the type's rules.  A join rule:
   ``direct-room`` (any ``join_rule`` event in a direct room, even one
   repeating the current rule), then ``externals-not-allowed`` for a
   ``public`` rule set by an external (even if the room is public already;
   *silent* on coming before the level), then ``state``.
5. Changing levels (silent on "unchanged"): only *changed* entries count.
   A user's level changes if it differs (absent = 0) between the running
   state and the new ``users`` map; such a change needs the new level ≤ the
   sender's, and the old one < the sender's unless the user is the sender.
   A changed action level needs the old and the new value ≤ the sender's level.  A
   ``power`` event replaces ``levels`` by its ``users`` map as is.
6. ``email_invite`` (silent): an invitation, so it needs the ``invite`` level
   (and a joined sender), nothing more.  Neither it nor a join is limited by
   the direct-room "two people" rule (only invites are).
7. Invite (reasons silent): ``invite`` level, then a banned target is
   ``banned``, a joined one ``bad-target``, then externals, then
   ``direct-room`` (joined or invited accounts plus the target > 2, or an
   external inviting an agent).  An account unknown to ``people`` counts as
   an external.
8. Join: ``bad-target`` (someone else), ``banned``,
   ``externals-not-allowed`` (checked even for an external already joined),
   then allowed if invited (by account, or an ``email_invite`` of one's
   address), public for an agent, or already joined; else ``not-invited``.
9. Self-leave: allowed when joined or invited, else ``not-a-member`` (a
   banned person's included).
10. A *removal* is structural: a ``member`` event with ``ban``, or with
    ``leave`` on someone else (a kick, or an unban).  A kick or unban needs a
    joined, invited or banned target (``bad-target``, *silent* on coming
    before the levels), then ``kick`` (``ban`` for a ban or to lift one) and
    a level strictly above the target's.
11. Edit, reaction and redaction targets are events accepted earlier in the
    replay.  A reaction needs any such event (``bad-target``, *silent* on
    coming before ``post``), then ``post``; an edit one's own ``message`` (no
    ``post`` level: §10 does not ask for it); a redaction any such event
    (``bad-target``), then ``redact`` unless it is one's own.
12. A removal's causal state, for a dropped set D: its admitted ancestors
    minus D, replayed in ``(depth, id)`` order from nothing with these same
    rules (removals among them judged the same way, recursively).
13. Strong remove drops *admitted* non-removals (whatever their own fate
    would be) and the dropped set only grows (``D ← D ∪ drops(replay(D))``),
    as §10 says.  "An external's join" is any ``member`` join an external
    sends, whatever its target (*silent*).  Every dropped event is
    ``removed-concurrently``.
"""

from __future__ import annotations

import dataclasses
import random
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
    """Resolves sets of events of one room."""

    def __init__(self, room: bytes, directory: Directory, people: People) -> None:
        self.room = room
        self.directory = directory
        self.people = people
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
        return _Run(self, {e.id: e for e in events}).outcome()

    def valid_sender(self, e: Event) -> bool:
        person = self.directory(e.account, e.device)
        return person is not None and not person.revoked

    def revoked_sender(self, e: Event) -> bool:
        person = self.directory(e.account, e.device)
        return person is not None and person.revoked

    def admission(
        self, e: Event, events: dict[bytes, Event], admitted: list[Event], witnessed: set[bytes]
    ) -> Rejection | None:
        if self.revoked_sender(e) and e.id not in witnessed:
            return Rejection.REVOKED_SENDER
        expected = 1 + max((events[p].depth for p in parents(e)), default=-1)
        if e.depth != expected:
            return Rejection.LYING_DEPTH
        admitted_ids = {a.id for a in admitted}
        if any(p not in admitted_ids for p in parents(e)):
            return Rejection.REJECTED_PARENT
        if e.room != self.room:
            return Rejection.WRONG_ROOM
        if e.prev_seq is not None:
            before = events[e.prev_seq]
            if before.device != e.device or before.seq != e.seq - 1:
                return Rejection.BROKEN_CHAIN
        if any(a.device == e.device and a.seq == e.seq for a in admitted):
            return Rejection.DEVICE_FORK
        if self.directory(e.account, e.device) is None:
            return Rejection.UNKNOWN_SENDER
        return None

    def external_join(self, e: Event) -> bool:
        if e.type is not T.MEMBER or membership_of(e) is not Membership.JOIN:
            return False
        sender = self.directory(e.account, e.device)
        return sender is not None and sender.kind is Kind.EXTERNAL

    # --- rules --------------------------------------------------------------------------

    def authorize(
        self, e: Event, s: RoomState, accepted: dict[bytes, Event] | None
    ) -> Rejection | None:
        sender = e.account
        person = self.directory(e.account, e.device)
        assert person is not None  # admitted
        change = membership_of(e) if e.type is T.MEMBER else None
        exempt = change is Membership.JOIN or (
            change is Membership.LEAVE and target_of(e) == sender
        )
        if not exempt and not s.is_member(sender):
            return Rejection.NOT_A_MEMBER
        level = s.level(sender)

        if e.type in SETTINGS:
            if e.type is T.JOIN_RULE and s.direct:
                return Rejection.DIRECT_ROOM
            if (
                e.type is T.JOIN_RULE
                and e.content["rule"] == "public"
                and person.kind is Kind.EXTERNAL
            ):
                return Rejection.EXTERNALS_NOT_ALLOWED
            if level < s.power["state"]:
                return Rejection.INSUFFICIENT_POWER
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
                # Matrix's rule too: an action's level above one's own is
                # out of reach, to raise or to lower.
                if new != s.power[action] and (new > level or s.power[action] > level):
                    return Rejection.INSUFFICIENT_POWER
            return None

        if e.type is T.EMAIL_INVITE:
            return Rejection.INSUFFICIENT_POWER if level < s.power["invite"] else None

        if e.type is T.MEMBER:
            return self._authorize_member(e, s, person)

        assert accepted is not None  # only removals are judged without a replay
        if e.type in (T.MESSAGE, T.ROOM_KEY, T.HISTORY_KEYS):  # posting, in the clear or keys
            return Rejection.INSUFFICIENT_POWER if level < s.power["post"] else None
        target = accepted.get(e.content["target"])
        if e.type is T.REACTION:
            if target is None:
                return Rejection.BAD_TARGET
            return Rejection.INSUFFICIENT_POWER if level < s.power["post"] else None
        if e.type is T.EDIT:
            ok = target is not None and target.type is T.MESSAGE and target.account == sender
            return None if ok else Rejection.BAD_TARGET
        assert e.type is T.REDACTION
        if target is None:
            return Rejection.BAD_TARGET
        if target.account != sender and level < s.power["redact"]:
            return Rejection.INSUFFICIENT_POWER
        return None

    def _authorize_member(self, e: Event, s: RoomState, person: Person) -> Rejection | None:
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
            if current in {Membership.INVITE, Membership.JOIN} or person.email in s.email_invites:
                return None
            if s.join_rule == "public" and person.kind is Kind.AGENT:
                return None
            return Rejection.NOT_INVITED
        if change is Membership.LEAVE and target == sender:
            if current in {Membership.JOIN, Membership.INVITE}:
                return None
            return Rejection.NOT_A_MEMBER
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
        # A removal: a kick (someone else's leave, lifting a ban too) or a ban.
        if change is Membership.LEAVE and current not in {
            Membership.JOIN,
            Membership.INVITE,
            Membership.BAN,
        }:
            return Rejection.BAD_TARGET
        lifting = change is Membership.LEAVE and current is Membership.BAN
        needed = s.power["ban"] if change is Membership.BAN or lifting else s.power["kick"]
        if level < needed or level <= s.level(target):
            return Rejection.INSUFFICIENT_POWER
        return None

    def apply(self, e: Event, s: RoomState | None) -> RoomState:
        if e.type is T.CREATE:
            # Every field given: the defaults are the spec's, not room.py's.
            return RoomState(
                room=self.room,
                creator=e.account,
                direct=bool(e.content["direct"]),
                name="",
                topic="",
                join_rule="private",
                allow_externals=False,
                history="joined",
                power=dict(DEFAULT_POWER),
                levels={e.account: ADMIN},
                membership={e.account: Membership.JOIN},
                email_invites=set(),
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


class _Run:
    """One resolution of one set of events."""

    def __init__(self, model: Reference, events: dict[bytes, Event]) -> None:
        self.model = model
        self.events = events
        self.order = sorted(events.values(), key=lambda e: (e.depth, e.id))
        self._replays: dict[
            tuple[frozenset[bytes], frozenset[bytes]],
            tuple[dict[bytes, Event], dict[bytes, str], RoomState | None],
        ] = {}

    def outcome(self) -> Outcome:
        # Pending: a parent is missing or pending (a fixed point).
        pending: set[bytes] = set()
        changed = True
        while changed:
            changed = False
            for e in self.order:
                if e.id not in pending and any(
                    p not in self.events or p in pending for p in parents(e)
                ):
                    pending.add(e.id)
                    changed = True

        # Witnessed: every ancestor of an event that does not wait and whose
        # sender is known and not revoked.
        witnessed: set[bytes] = set()
        for e in self.order:
            if e.id not in pending and self.model.valid_sender(e):
                witnessed |= self.model.ancestors(e, self.events)

        # Admission.
        rejected: dict[bytes, str] = {}
        admitted: list[Event] = []
        for e in self.order:
            if e.id in pending:
                continue
            reason = self.model.admission(e, self.events, admitted, witnessed)
            if reason is None:
                admitted.append(e)
            else:
                rejected[e.id] = reason.value
        self.admitted = admitted

        # Authorization and strong remove, until the dropped set stops growing.
        dropped: frozenset[bytes] = frozenset()
        while True:
            accepted, refused, state = self.replay(admitted, dropped)
            grown = dropped | self.drops(set(accepted))
            if grown == dropped:
                break
            dropped = grown
        rejected.update(refused)
        for e in admitted:
            if e.id in dropped:
                rejected[e.id] = Rejection.REMOVED_CONCURRENTLY.value
        return Outcome(
            accepted=[e.id for e in admitted if e.id in accepted],
            rejected=rejected,
            pending=pending,
            state=state,
        )

    def replay(
        self, admitted: list[Event], dropped: frozenset[bytes]
    ) -> tuple[dict[bytes, Event], dict[bytes, str], RoomState | None]:
        """Replay ``admitted`` (in order) from nothing, leaving ``dropped`` out."""
        key = (frozenset(e.id for e in admitted), dropped)
        if key in self._replays:
            return self._replays[key]
        model = self.model
        state: RoomState | None = None
        accepted: dict[bytes, Event] = {}
        refused: dict[bytes, str] = {}
        for e in admitted:
            if e.id in dropped:
                continue
            if e.type is T.CREATE:
                reason = None if state is None else Rejection.BAD_TARGET  # unreachable
            elif is_removal(e):
                past = self.causal_state(e, dropped)
                reason = Rejection.NOT_A_MEMBER if past is None else model.authorize(e, past, None)
            elif state is None:
                reason = Rejection.NOT_A_MEMBER  # unreachable: create comes first
            else:
                reason = model.authorize(e, state, accepted)
            if reason is not None:
                refused[e.id] = reason.value
                continue
            accepted[e.id] = e
            state = model.apply(e, state)
        self._replays[key] = (accepted, refused, state)
        return accepted, refused, state

    def causal_state(self, removal: Event, dropped: frozenset[bytes]) -> RoomState | None:
        """The state a removal is judged against: its past, without what is dropped."""
        past = self.model.ancestors(removal, self.events)
        return self.replay([a for a in self.admitted if a.id in past], dropped)[2]

    def drops(self, accepted: set[bytes]) -> set[bytes]:
        admitted, events = self.admitted, self.events
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
                if e.account == target_of(r) and self.model.concurrent(e, r, events):
                    drops.add(e.id)
            if self.model.external_join(e):
                for x in closings:
                    if self.model.concurrent(e, x, events):
                        drops.add(e.id)
        return drops


def reference_resolve(
    events: Iterable[Event], room: bytes, directory: Directory, people: People
) -> Outcome:
    """The room's resolution per ``docs/protocol.md`` §10, by brute force."""
    return Reference(room, directory, people).resolve(events)


class Revocations:
    """A directory and a people look-up with devices and accounts revoked since (scenarios).

    Wraps look-ups that know everyone as valid: a revoked device, and every
    device of a revoked account, stay known, marked ``revoked``; so does a
    revoked account for ``people``.
    """

    def __init__(self, directory: Directory, people: People) -> None:
        self._directory = directory
        self._people = people
        self.devices: set[bytes] = set()
        self.accounts: set[bytes] = set()

    def directory(self, account: AccountKey, device: DeviceKey) -> Person | None:
        person = self._directory(account, device)
        if person is None or (bytes(device) not in self.devices and not self._gone(account)):
            return person
        return dataclasses.replace(person, revoked=True)

    def people(self, account: AccountKey) -> Person | None:
        person = self._people(account)
        if person is None or not self._gone(account):
            return person
        return dataclasses.replace(person, revoked=True)

    def lookups(self) -> tuple[Directory, People]:
        return self.directory, self.people

    def _gone(self, account: AccountKey) -> bool:
        return bytes(account) in self.accounts


def revoking_some(
    directory: Directory,
    people: People,
    senders: Iterable[tuple[AccountKey, DeviceKey]],
    seed: int,
) -> Revocations:
    """Revocations of a random few ``(account, device)`` senders: devices, or whole accounts."""
    revocations = Revocations(directory, people)
    chooser = random.Random(seed)
    for account, device in senders:
        roll = chooser.random()
        if roll < 0.2:
            revocations.devices.add(bytes(device))
        elif roll < 0.3:
            revocations.accounts.add(bytes(account))
    return revocations

"""A room kept up to date event by event, without recomputing it in the common case.

:func:`p2ptchap.core.room.resolve` is the definition of a room's state.
:class:`LiveRoom` gives the same answer (tests compare them after every
event, in random arrival orders) but, for the common case, in constant time
per event: a new event that

* has all its parents already admitted,
* comes after every admitted event in the ``(depth, id)`` order,
* is neither a removal (kick, ban) nor a switch that disallows externals, and
* is not by a sender revoked since (whether it counts depends on later
  events: see :func:`p2ptchap.core.room._unwitnessed`)

cannot change the fate of any earlier event, so it is admitted, checked
against the current state and applied on its own.  (A valid sender's event
whose parents are all admitted witnesses nothing new: every revoked
sender's event in its past is admitted, so witnessed already.)  A removal
(or a switch that disallows externals) takes the fast path too when its
author had seen every admitted event: then nothing is concurrent with it,
and the state of its causal past is the current state.  Anything else — a
late event that falls inside the order, a removal concurrent with other
events, an event releasing pending ones that fall inside the order, an
event of a revoked sender — makes the room resolve again from all its
events.

A room can also be restored (:meth:`LiveRoom.restore`) from what a store recorded
(each event's status and the state snapshot) without resolving anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from p2ptchap.core.events import Event, EventType, Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import DeviceKey
from p2ptchap.core.room import (
    Clock,
    Directory,
    People,
    Rejection,
    Resolution,
    RoomState,
    _apply,
    _authorize,
    _before,
    _is_removal,
    _target,
    merge_clocks,
    resolve,
)

#: Rejections at admission (step 2): those events have no clock.
_NOT_ADMITTED: Final = frozenset(
    {
        Rejection.REJECTED_PARENT,
        Rejection.WRONG_ROOM,
        Rejection.LYING_DEPTH,
        Rejection.BROKEN_CHAIN,
        Rejection.DEVICE_FORK,
        Rejection.UNKNOWN_SENDER,
        Rejection.REVOKED_SENDER,
    }
)


def _reaches_back(event: Event) -> bool:
    """Events whose effect can reach back to earlier, concurrent events."""
    closes_externals = event.type is EventType.EXTERNALS and not event.content["allow"]
    return _is_removal(event) or closes_externals


class LiveRoom:
    """The resolution of one room, updated as events arrive."""

    def __init__(self, room: bytes, directory: Directory, people: People) -> None:
        self.room = room
        self.directory = directory
        self.people = people
        self.events: dict[bytes, Event] = {}
        self.resolution = Resolution(None, [], {}, [])
        self._reindex()
        #: How many events took the fast path, and how many full resolutions ran.
        self.fast = 0
        self.full = 0

    def _reindex(self) -> None:
        """Derive the look-up tables of the fast path from :attr:`resolution`."""
        resolution = self.resolution
        self._accepted = {e.id: e for e in resolution.accepted}
        self._pending = {e.id: e for e in resolution.pending}
        not_admitted = {
            i for i, reason in resolution.rejected.items() if reason in _NOT_ADMITTED
        } | set(self._pending)
        admitted = [e for e in self.events.values() if e.id not in not_admitted]
        admitted.sort(key=lambda e: (e.depth, e.id))
        self._admitted = {e.id: e for e in admitted}
        self._last = (admitted[-1].depth, admitted[-1].id) if admitted else None
        self._seqs: set[tuple[bytes, int]] = set()
        #: Each device's highest admitted ``seq``: "has seen everything" is a
        #: clock at least this high everywhere.
        self._top: dict[bytes, int] = {}
        self._clocks: dict[bytes, Clock] = {}
        self._heads: set[bytes] = set()
        for event in admitted:
            self._admit(event)
        self._removals = [e for e in resolution.accepted if _is_removal(e)]

    def _admit(self, event: Event) -> None:
        self._clocks[event.id] = merge_clocks(event, self._clocks)
        self._admitted[event.id] = event
        device = bytes(event.device)
        self._seqs.add((device, event.seq))
        if self._top.get(device, 0) < event.seq:
            self._top[device] = event.seq
        self._heads.difference_update(self._parents(event))
        self._heads.add(event.id)

    def heads(self, limit: int = 16) -> list[Event]:
        """The latest admitted events (no admitted child), for a new event's ``prev``.

        With more than ``limit`` of them, the latest in the order: the rest
        are merged by later events.
        """
        heads = sorted((self._admitted[i] for i in self._heads), key=lambda e: (e.depth, e.id))
        return heads[-limit:]

    def clock(self, event_id: bytes) -> Clock | None:
        """The vector clock of an admitted event: per device, the highest ``seq`` in its past."""
        return self._clocks.get(event_id)

    def last_of(self, device: DeviceKey) -> Event | None:
        """The device's latest admitted event here (a new one chains to it)."""
        top = self._top.get(bytes(device))
        if top is None:
            return None
        return next(
            e for e in reversed(self._admitted.values()) if e.device == device and e.seq == top
        )

    def load(self, events: list[Event]) -> None:
        """Start from a known set of events (one full resolution)."""
        self.events = {e.id: e for e in events}
        self._resolve_all()

    def restore(
        self,
        events: Iterable[Event],
        status: dict[bytes, tuple[str, str | None]],
        state: RoomState,
    ) -> None:
        """Start from what :meth:`status` and the state said after the last batch.

        ``events`` in ``(depth, id)`` order.  Nothing is resolved: the caller
        (the store) vouches that ``status`` and ``state`` were recorded
        together with these very events.  Raises ``ValueError`` if a status
        is missing or unknown, so the caller can fall back to :meth:`load`.
        """
        ordered = list(events)
        accepted, rejected, pending = [], {}, []
        for event in ordered:
            outcome, reason = status.get(event.id, ("", None))
            if outcome == "accepted":
                accepted.append(event)
            elif outcome == "pending":
                pending.append(event)
            elif outcome == "rejected" and reason is not None:
                rejected[event.id] = Rejection(reason)
            else:
                raise ValueError(f"no status for event {event.id.hex()}")
        self.events = {e.id: e for e in ordered}
        self.resolution = Resolution(state, accepted, rejected, pending)
        self._reindex()

    def status(self, event_id: bytes) -> tuple[str, str | None]:
        """``("accepted" | "rejected" | "pending", reason or None)`` of a known event."""
        if event_id in self._pending:
            return "pending", None
        reason = self.resolution.rejected.get(event_id)
        if reason is not None:
            return "rejected", reason.value
        return "accepted", None

    def add_all(self, events: Iterable[Event]) -> None:
        """Take a batch: at most one full resolution, however many events need one.

        Events take the fast path in ``(depth, id)`` order until one cannot;
        then the rest join the room and it is resolved once.  So a peer
        sending many events that each force a resolution costs one
        resolution per batch, not one per event.
        """
        batch = sorted(
            {e.id: e for e in events if e.id not in self.events}.values(),
            key=lambda e: (e.depth, e.id),
        )
        for index, event in enumerate(batch):
            if not self._add(event):
                self.events.update((e.id, e) for e in batch[index + 1 :])
                self._resolve_all()
                return

    def add(self, event: Event) -> None:
        """Take one more event of this room (duplicates are ignored)."""
        if event.id not in self.events and not self._add(event):
            self._resolve_all()

    def _add(self, event: Event) -> bool:
        """Add ``event`` on the fast path; ``False`` if the room must be resolved again."""
        self.events[event.id] = event
        if not self._try_fast(event):
            return False
        # The new event may release pending ones; each must also fit the fast path.
        released = True
        while released:
            released = False
            for waiting in sorted(self._pending.values(), key=lambda e: (e.depth, e.id)):
                if all(
                    p in self._admitted or p in self.resolution.rejected
                    for p in self._parents(waiting)
                ):
                    del self._pending[waiting.id]
                    self.resolution.pending.remove(waiting)
                    if not self._try_fast(waiting):
                        return False
                    released = True
        return True

    def _resolve_all(self) -> None:
        self.full += 1
        self.resolution = resolve(self.events.values(), self.room, self.directory, self.people)
        self._reindex()

    @staticmethod
    def _parents(event: Event) -> set[bytes]:
        return {*event.prev, *([event.prev_seq] if event.prev_seq else [])}

    def _try_fast(self, event: Event) -> bool:
        """Handle ``event`` alone if that gives what a full resolution would."""
        state = self.resolution.state
        if state is None or event.room != self.room:
            return False
        parents = self._parents(event)
        if not all(p in self.events for p in parents):
            self._pending[event.id] = event
            self.resolution.pending.append(event)
            return True  # it waits, as it would in a full resolution
        key = (event.depth, event.id)
        if (
            not all(p in self._admitted for p in parents)  # a rejected parent: rare
            or (self._last is not None and key <= self._last)  # falls inside the order
            or (_reaches_back(event) and not self._saw_everything(event))
            or self._revoked(event)
        ):
            return False
        reason = self._admission(event)
        if reason is not None:
            self.resolution.rejected[event.id] = reason
            self.fast += 1
            return True
        self._admit(event)
        self._last = key
        reason = self._authorization(event)
        if reason is not None:
            self.resolution.rejected[event.id] = reason
        else:
            _apply(state, event)
            self.resolution.accepted.append(event)
            self._accepted[event.id] = event
            if _is_removal(event):
                self._removals.append(event)
        self.fast += 1
        return True

    def check(self, event: Event) -> Rejection | None:
        """What the room would say of ``event``, without taking it.

        For an event made here on top of the current heads (so it comes last
        in the order); ``None`` means accepted — or that only a full
        resolution could tell, which the store then runs.

        One refusal is the author's, not the room's: inviting an account
        revoked now (``unknown-invitee``, as for an account this node never
        saw).  The rules cannot refuse it, since an invitation made before
        the invitee's revocation must keep counting.
        """
        if self._invites_revoked(event):
            return Rejection.UNKNOWN_INVITEE
        state = self.resolution.state
        parents = self._parents(event)
        if (
            state is None
            or event.id in self.events
            or not all(p in self._admitted for p in parents)
            or (self._last is not None and (event.depth, event.id) <= self._last)
            or (_reaches_back(event) and not self._saw_everything(event))
            or self._revoked(event)
        ):
            return None
        reason = self._admission(event)
        if reason is not None:
            return reason
        self._clocks[event.id] = merge_clocks(event, self._clocks)
        try:
            return self._authorization(event)
        finally:
            del self._clocks[event.id]

    def _revoked(self, event: Event) -> bool:
        """Whether the directory knows the sender but has revoked it since."""
        person = self.directory(event.account, event.device)
        return person is not None and person.revoked

    def _invites_revoked(self, event: Event) -> bool:
        if (
            event.type is not EventType.MEMBER
            or event.content["membership"] != Membership.INVITE.value
        ):
            return False
        invitee = self.people(_target(event))
        return invitee is not None and invitee.revoked

    def _saw_everything(self, event: Event) -> bool:
        """Whether every admitted event is in ``event``'s causal past (parents admitted)."""
        clock = merge_clocks(event, self._clocks)
        return all(clock.get(device, 0) >= top for device, top in self._top.items())

    def _admission(self, event: Event) -> Rejection | None:
        if event.depth != 1 + max(self._admitted[p].depth for p in self._parents(event)):
            return Rejection.LYING_DEPTH
        if event.prev_seq is not None:
            previous = self._admitted[event.prev_seq]
            if previous.device != event.device or previous.seq != event.seq - 1:
                return Rejection.BROKEN_CHAIN
        if (bytes(event.device), event.seq) in self._seqs:
            return Rejection.DEVICE_FORK
        if self.directory(event.account, event.device) is None:
            return Rejection.UNKNOWN_SENDER
        return None

    def _authorization(self, event: Event) -> Rejection | None:
        state = self.resolution.state
        assert state is not None
        person = self.directory(event.account, event.device)
        assert person is not None
        # Strong remove: an accepted removal of the sender that it did not see.
        for removal in self._removals:
            if (
                _target(removal) == event.account
                and not _before(removal, event, self._clocks)
                and not _before(event, removal, self._clocks)
            ):
                return Rejection.REMOVED_CONCURRENTLY
        if (
            event.type is EventType.MEMBER
            and event.content["membership"] == Membership.JOIN.value
            and person.kind is Kind.EXTERNAL
        ):
            for switch in self.resolution.accepted:
                if (
                    switch.type is EventType.EXTERNALS
                    and not switch.content["allow"]
                    and not _before(switch, event, self._clocks)
                ):
                    return Rejection.REMOVED_CONCURRENTLY
        return _authorize(state, event, person, self.people, self._accepted)

"""A room kept up to date event by event, without recomputing it in the common case.

:func:`p2ptchap.core.room.resolve` is the definition of a room's state.
:class:`LiveRoom` gives the same answer (tests compare them after every
event, in random arrival orders) but, for the common case, in constant time
per event: a new event that

* has all its parents already admitted,
* comes after every admitted event in the ``(depth, id)`` order, and
* is neither a removal (kick, ban) nor a switch that disallows externals

cannot change the fate of any earlier event, so it is admitted, checked
against the current state and applied on its own.  Anything else — a late
event that falls inside the order, a removal (which may drop concurrent
events already accepted), an event releasing pending ones that fall inside
the order — makes the room resolve again from all its events.
"""

from __future__ import annotations

from p2ptchap.core.events import Event, EventType, Membership
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import DeviceKey
from p2ptchap.core.room import (
    Clock,
    Directory,
    People,
    Rejection,
    Resolution,
    _apply,
    _authorize,
    _before,
    _is_removal,
    _target,
    resolve,
)


def _resolves_everything(event: Event) -> bool:
    """Events whose effect can reach back to earlier events."""
    closes_externals = event.type is EventType.EXTERNALS and not event.content["allow"]
    return _is_removal(event) or closes_externals or event.type is EventType.CREATE


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
        admitted = [
            e
            for e in self.events.values()
            if e.id not in self._pending
            and resolution.rejected.get(e.id)
            not in {
                Rejection.REJECTED_PARENT,
                Rejection.WRONG_ROOM,
                Rejection.LYING_DEPTH,
                Rejection.BROKEN_CHAIN,
                Rejection.DEVICE_FORK,
                Rejection.UNKNOWN_SENDER,
            }
        ]
        admitted.sort(key=lambda e: (e.depth, e.id))
        self._admitted = {e.id: e for e in admitted}
        self._last = (admitted[-1].depth, admitted[-1].id) if admitted else None
        self._seqs = {(e.device, e.seq) for e in admitted}
        self._clocks: dict[bytes, Clock] = {}
        for event in admitted:
            self._clocks[event.id] = self._clock(event)
        self._removals = [e for e in resolution.accepted if _is_removal(e)]

    def _clock(self, event: Event) -> Clock:
        clock: dict[DeviceKey, int] = {}
        for parent in (*event.prev, *([event.prev_seq] if event.prev_seq else [])):
            for device, seq in self._clocks[parent].items():
                if clock.get(device, 0) < seq:
                    clock[device] = seq
        clock[event.device] = event.seq
        return clock

    def load(self, events: list[Event]) -> None:
        """Start from a known set of events (one full resolution)."""
        self.events = {e.id: e for e in events}
        self._resolve_all()

    def status(self, event_id: bytes) -> tuple[str, str | None]:
        """``("accepted" | "rejected" | "pending", reason or None)`` of a known event."""
        if event_id in self._pending:
            return "pending", None
        reason = self.resolution.rejected.get(event_id)
        if reason is not None:
            return "rejected", reason.value
        return "accepted", None

    def add(self, event: Event) -> None:
        """Take one more event of this room (duplicates are ignored)."""
        if event.id in self.events:
            return
        self.events[event.id] = event
        if not self._try_fast(event):
            self._resolve_all()
            return
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
                        self._resolve_all()
                        return
                    released = True

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
        if state is None or _resolves_everything(event) or event.room != self.room:
            return False
        parents = self._parents(event)
        if not all(p in self.events for p in parents):
            self._pending[event.id] = event
            self.resolution.pending.append(event)
            return True  # it waits, as it would in a full resolution
        if not all(p in self._admitted for p in parents):
            return False  # a rejected parent: rare, let the full path decide
        key = (event.depth, event.id)
        if self._last is not None and key <= self._last:
            return False
        reason = self._admission(event)
        if reason is not None:
            self.resolution.rejected[event.id] = reason
            self.fast += 1
            return True
        self._clocks[event.id] = self._clock(event)
        self._admitted[event.id] = event
        self._seqs.add((event.device, event.seq))
        self._last = key
        reason = self._authorization(event)
        if reason is not None:
            self.resolution.rejected[event.id] = reason
        else:
            _apply(state, event)
            self.resolution.accepted.append(event)
            self._accepted[event.id] = event
        self.fast += 1
        return True

    def _admission(self, event: Event) -> Rejection | None:
        if event.depth != 1 + max(self._admitted[p].depth for p in event.prev):
            return Rejection.LYING_DEPTH
        if event.prev_seq is not None:
            previous = self._admitted[event.prev_seq]
            if previous.device != event.device or previous.seq != event.seq - 1:
                return Rejection.BROKEN_CHAIN
        if (event.device, event.seq) in self._seqs:
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

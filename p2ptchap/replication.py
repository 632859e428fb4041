"""Replication: rooms, receipts and trust data, kept up to date with every peer.

:class:`Replicator` is the trio shell around :mod:`p2ptchap.core.sync`.  It
does not know how peers are reached: whoever owns the connections (the
:class:`~p2ptchap.net.peers.PeerManager` of a node, or the in-memory network
of :mod:`p2ptchap.testing.memnet`) calls :meth:`Replicator.connected`,
:meth:`Replicator.disconnected` and :meth:`Replicator.received`, and gives it
a :class:`PeerLink` to send on.  Messages from one peer are handed over one
at a time.

What it does, per connected peer:

* **Rooms.**  For every room the peer may receive (decided by our own
  state of the room: :func:`p2ptchap.core.sync.access`), it sends our
  version vector whenever it differs from the peer's; on a peer's vector it
  asks (``want``) for what it lacks, a bounded batch at a time, and asks
  again when the batch is stored — that is the flow control.  Events still
  waiting for a parent are backfilled by id.  A peer that asks for a room
  it may not receive gets ``refused``, never data.
* **Live push.**  Every event stored — received, or written by this
  process or another one on the same database (the CLI next to the node) —
  is read back from the database's arrival journal and pushed at once to
  connected peers who may receive it and do not have it yet.  So a member
  relays a room's events to the other members: store and forward.
* **Receipts.**  After storing others' events of a room, it signs a
  ``received`` receipt (a version vector: one receipt covers every event up
  to it), stores it and spreads it to the room's members, who relay it.
* **Trust data.**  Certificates, revocations and public-room summaries
  are reconciled with every peer by digest, then ids, then the items
  missing.  A new revocation is announced to every peer at once and the
  owner's ``on_revocation`` hook drops connections it invalidates.

Anything a peer sends may be hostile.  A malformed message raises
:class:`~p2ptchap.core.errors.DecodeError` (the owner closes that
connection); invalid events, certificates and receipts inside a
well-formed message are dropped and counted by reason in :attr:`counters`,
which the node's status shows for a network-health view.  Unsolicited
events are rate-limited per peer; rooms offered by a peer that we did not
know are limited per peer too.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import trio

from p2ptchap.core import codec, sync
from p2ptchap.core.authority import TrustStore
from p2ptchap.core.errors import N_, DecodeError, P2PTchapError, RemoteError, StorageError
from p2ptchap.core.events import (
    Event,
    EventType,
    InvalidEvent,
    Membership,
    event_id,
    parse_event,
)
from p2ptchap.core.identity import Kind, parse_device_certificate
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.core.room import Rejection
from p2ptchap.core.sync import Access, ReceiptKind, TrustKind
from p2ptchap.rooms import Rooms
from p2ptchap.services import PeerLink, PeerQueue, PeerTable

log = logging.getLogger("p2ptchap.sync")

#: Events whose arrival may change who receives a room.
_ACCESS_TYPES = frozenset(
    {EventType.MEMBER, EventType.EMAIL_INVITE, EventType.JOIN_RULE, EventType.EXTERNALS}
)
#: Accepted events that can void a concurrent invitation (see ``_voided_admission``):
#: the inviter's removal, a change of powers, of the join rule, of externals.
_VOIDING_TYPES = frozenset(
    {EventType.MEMBER, EventType.POWER, EventType.JOIN_RULE, EventType.EXTERNALS}
)
#: Statuses of events from devices we cannot vouch for (unknown, or revoked
#: and built on by no valid device): not advertised nor pushed.
_UNVOUCHED = frozenset(
    {("rejected", Rejection.UNKNOWN_SENDER.value), ("rejected", Rejection.REVOKED_SENDER.value)}
)
#: No message is sent above this size (the channel's limit is 4 MiB).
MAX_MESSAGE = 4 << 20
#: Lists (receipts, trust items) are cut into messages of at most this many bytes.
MAX_PART = 1 << 20
MAX_REFUSED_TRUST = 16384
#: Ids a peer did not have, remembered per room so as not to ask it again.
MAX_SKIPPED_IDS = 4096
#: An account may have at most this many device certificates in our directory.
MAX_DEVICES_PER_ACCOUNT = 64
#: A device asking again for a session it was given waits this long (seconds).
KEY_ANSWER_COOLDOWN = 3600.0


class TooManyDevices(RemoteError):
    """An account with more device certificates than anyone owns: the rest are refused."""

    default_message = N_("A device certificate was refused: its account has too many devices.")


class TrustBook(Protocol):
    """Where the revocation set lives (a file for a node, memory in tests)."""

    def revocations(self) -> RevocationSet: ...

    def add_revocations(self, records: list[bytes]) -> int:
        """Merge the records that verify; return how many were new."""
        ...


class RevocationBook:
    """A :class:`TrustBook` in memory (a node keeps its own in its home folder)."""

    def __init__(self, trust: TrustStore, records: Iterable[bytes] = ()) -> None:
        self.trust = trust
        self._set = RevocationSet()
        self._set.add_all(records, trust)

    def revocations(self) -> RevocationSet:
        return self._set

    def add_revocations(self, records: list[bytes]) -> int:
        added = 0
        for record in records:
            with contextlib.suppress(RemoteError):
                added += self._set.add(record, self.trust)
        return added


@dataclasses.dataclass(frozen=True, slots=True)
class SyncSettings:
    """Tunables; the defaults suit a LAN."""

    #: Seconds between anti-entropy rounds (vectors and trust digests sent
    #: again where a peer still differs: this repairs anything lost).
    interval: float = 5.0
    #: How long before an unanswered ``want`` is given up and asked again.
    want_timeout: float = 15.0
    #: Seconds the receipt of a room waits for more events, to batch them.
    receipt_delay: float = 0.5
    #: Unsolicited events accepted from one peer: per second, and burst.
    push_rate: float = 2000.0
    push_burst: float = 20000.0
    #: Rooms we did not know that one peer may make us fetch, per connection.
    max_unknown_rooms: int = 64
    #: Bytes queued for one peer before further messages are dropped (the
    #: anti-entropy rounds send again whatever matters).
    max_queued: int = 16 << 20
    #: How often the arrival journal is read when nothing wakes us (events
    #: written by another process are seen within this delay).
    poll: float = 0.25


@dataclasses.dataclass(eq=False)
class _Peer(PeerQueue[bytes]):
    #: Token bucket of unsolicited events (set when the peer connects).
    tokens: float = 0.0
    refilled: float = 0.0
    queued: int = 0
    #: room → the last vector the peer sent us
    theirs: dict[bytes, sync.Vector] = dataclasses.field(default_factory=dict)
    #: room → fingerprint of the last vector we sent it
    sent: dict[bytes, object] = dataclasses.field(default_factory=dict)
    #: room → (trio time, what we asked) of the ``want`` in flight
    asking: dict[bytes, tuple[float, sync.Want]] = dataclasses.field(default_factory=dict)
    #: room → what we asked for and it did not have (not asked again until its vector changes)
    skip: dict[bytes, tuple[set[tuple[bytes, int]], set[bytes]]] = dataclasses.field(
        default_factory=dict
    )
    unknown_rooms: set[bytes] = dataclasses.field(default_factory=set)
    #: room → the vector of the peer under which a ``want`` brought nothing:
    #: not asked again until that vector changes.
    stalled: dict[bytes, object] = dataclasses.field(default_factory=dict)
    #: room → our receipts digest when we last sent it all our receipts
    receipts_sent: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    trust_sum_sent: bytes | None = None
    trust_ids_sent_for: tuple[bytes, bytes] | None = None
    trust_theirs: bytes | None = None
    #: Sessions of this peer whose keys we asked it for (asked again now and then).
    keys_asked: set[bytes] = dataclasses.field(default_factory=set)


def _fingerprint(vector: sync.Vector) -> object:
    return (tuple(sorted(vector.vector.items())), tuple(sorted(vector.heads)), vector.receipts)


class Replicator:
    """Replication for the node whose rooms are ``rooms`` (see the module documentation)."""

    #: The message types it handles.
    types: Final = sync.TYPES

    def __init__(
        self,
        rooms: Rooms,
        trust: TrustBook,
        *,
        settings: SyncSettings = SyncSettings(),
        on_revocation: Callable[[], None] = lambda: None,
    ) -> None:
        self.rooms = rooms
        self.store = rooms.store
        self.directory = rooms.directory
        self.trust = trust
        self.settings = settings
        self.on_revocation = on_revocation
        self.receipts = rooms.receipts
        self.counters: collections.Counter[str] = collections.Counter()
        self._peers: PeerTable[_Peer] = PeerTable()
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._journal = self.store.last_arrival()
        #: event id → device key of the peer it came from (not pushed back there)
        self._origin: dict[bytes, bytes] = {}
        self._receipt_due: dict[bytes, float] = {}
        self._trust_cache: dict[bytes, tuple[TrustKind, bytes]] | None = None
        self._vectors: dict[bytes, tuple[object, int, sync.Vector]] = {}
        self._memberships: dict[bytes, tuple[object, int, dict[str, list[Event]]]] = {}
        #: Trust items we refused (not asked for again; cleared when too many).
        self._refused_trust: set[bytes] = set()
        #: (device, session) → when we last answered its key request.
        self._keys_answered: dict[tuple[bytes, bytes], float] = {}

    # --- owner's interface ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the background work (push, receipts, anti-entropy) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._outbox)
            nursery.start_soon(self._rounds)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def connected(self, link: PeerLink) -> None:
        """A peer is up (its owner verified its certificates): start talking to it."""
        try:
            account = link.verified.account.account_key
            known = self.directory.count_devices(account)
            if known < MAX_DEVICES_PER_ACCOUNT and self.directory.remember(link.verified):
                self._trust_cache = None
        except StorageError as exc:
            log.warning(N_("could not record a peer in the directory: %s"), exc.detail)
        peer = _Peer(link, tokens=self.settings.push_burst, refilled=trio.current_time())
        self._peers.add(peer)
        if self._nursery is not None:
            self._nursery.start_soon(self._sender, peer)
        self._greet(peer)

    def disconnected(self, link: PeerLink) -> None:
        self._peers.drop(link)

    def nudge(self) -> None:
        """Something was stored: push it now rather than at the next poll."""
        self._wake.set()

    async def received(self, link: PeerLink, body: dict[codec.Key, codec.Value]) -> None:
        """Handle one sync message (envelope already decoded); raise ``DecodeError``."""
        await trio.lowlevel.checkpoint()
        peer = self._peers.find(link)
        if peer is None:
            return
        try:
            message = sync.decode(body)
        except DecodeError:
            self.counters["malformed-message"] += 1
            raise
        if not self._still_valid(peer):
            self.counters["from-revoked-device"] += 1
            return
        try:
            self._handle(peer, message)
        except StorageError as exc:
            self.counters["storage-error"] += 1
            log.error(N_("replication could not store what a peer sent: %s"), exc.detail)

    # --- sending --------------------------------------------------------------------------

    def _send(self, peer: _Peer, message: sync.SyncMessage) -> None:
        if peer.dead:
            return
        data = sync.encode(message)
        if len(data) > MAX_MESSAGE:
            # Every sender cuts by bytes first; this is the last guard.
            self.counters["oversized-outgoing"] += 1
            log.error("not sending a %d-byte %s message", len(data), type(message).__name__)
            return
        if peer.queued + len(data) > self.settings.max_queued:
            self.counters["dropped-outgoing"] += 1
            return
        peer.queued += len(data)
        peer.put(data)

    async def _sender(self, peer: _Peer) -> None:
        def taken(data: bytes) -> bytes:
            peer.queued -= len(data)
            return data

        try:
            await peer.write(taken)
        finally:
            # Whatever ended the sending ends the peer here: no more queueing.
            self._peers.forget(peer)

    def _still_valid(self, peer: _Peer) -> bool:
        verified = peer.verified
        return (
            self.directory.sender(verified.account.account_key, verified.device.device_key)
            is not None
        )

    # --- what a peer may have ----------------------------------------------------------------

    def _access(self, peer: _Peer, room: bytes) -> tuple[Access, Callable[[Event], bool]]:
        """What ``peer`` may receive of ``room``, and a filter for the invited case."""
        if room not in self._room_set():
            return Access.NONE, lambda _e: False
        account = peer.verified.account
        live = self.store.live(room)
        granted = sync.access(
            live.resolution.state, account.account_key, account.kind, account.email
        )
        if granted is Access.OWN:
            explained = self._voided_admission(room, peer)
            if explained is not None:
                return Access.REMOVED, explained
            return granted, self._own_membership
        if granted not in (Access.INVITED, Access.REMOVED):
            return granted, lambda _e: granted is Access.FULL
        found = self._membership_event(room, peer, granted)
        if found is None:
            return Access.NONE, lambda _e: False
        decisive, basis = found
        clock = (live.clock(basis.id) or {}) if basis is not None else {}
        # An invitee gets at least what a stranger gets (our own membership
        # events), so that whichever of us is stale can catch up.
        invited = granted is Access.INVITED

        def allowed(event: Event) -> bool:
            return (
                event.id == decisive.id
                or (basis is not None and event.id == basis.id)
                or clock.get(bytes(event.device), 0) >= event.seq
                or (invited and self._own_membership(event))
            )

        return granted, allowed

    def _voided_admission(self, room: bytes, peer: _Peer) -> Callable[[Event], bool] | None:
        """For an account invited by a member but whose invitation our state rejects: a filter.

        Its node believes it is a member (it may have joined), ours does not
        count it: without help it would ask us for ever and never learn why.
        It gets what its own resolution needs to reach our verdict: its
        rejected invitation(s), and the accepted state changes concurrent
        with them (the removal or demotion of the inviter, a change of the
        join rule or of externals) with their causal past — as a removed
        member gets its removal and its past.  An account never invited by
        someone else (a stranger forging its own join) gets nothing more.
        """
        live = self.store.live(room)
        state = live.resolution.state
        if state is None:
            return None
        key = bytes(peer.verified.account.account_key).hex()
        invites = [
            event
            for event in self._membership_index(room).get(key, ())
            if event.content.get("membership") == "invite"
            and event.account != peer.verified.account.account_key
            and event.account in state.membership  # the inviter was admitted once
            and live.status(event.id)[0] == "rejected"
        ]
        if not invites:
            return None
        causes: list[Event] = []
        for invite in invites:
            invite_clock = live.clock(invite.id) or {}
            inviter = bytes(invite.account).hex()
            for other in live.resolution.accepted:
                if other.type not in _VOIDING_TYPES or (
                    other.type is EventType.MEMBER
                    and (other.state_key != inviter or other.content["membership"] == "join")
                ):
                    continue
                other_clock = live.clock(other.id) or {}
                concurrent = (
                    other_clock.get(bytes(invite.device), 0) < invite.seq
                    and invite_clock.get(bytes(other.device), 0) < other.seq
                )
                if concurrent:
                    causes.append(other)
        clocks = [live.clock(c.id) or {} for c in causes]
        ids = {e.id for e in invites} | {c.id for c in causes}

        def allowed(event: Event) -> bool:
            return event.id in ids or any(
                clock.get(bytes(event.device), 0) >= event.seq for clock in clocks
            )

        return allowed

    def _membership_index(self, room: bytes) -> dict[str, list[Event]]:
        """Membership events of ``room`` by target, whatever their status (cached)."""
        live = self.store.live(room)
        cached = self._memberships.get(room)
        if cached is not None and cached[0] is live and cached[1] == len(live.events):
            return cached[2]
        index: dict[str, list[Event]] = {}
        for event in live.events.values():
            if event.type is EventType.MEMBER and event.state_key is not None:
                index.setdefault(event.state_key, []).append(event)
        self._memberships[room] = (live, len(live.events), index)
        return index

    def _engaged(self, peer: _Peer, room: bytes) -> bool:
        """Whether the peer's account joined (or is invited to) the room, by our state."""
        state = self.store.live(room).resolution.state
        account = peer.verified.account
        if state is None:
            return False
        membership = state.membership.get(account.account_key)
        return membership in (Membership.JOIN, Membership.INVITE) or (
            account.email in state.email_invites
        )

    def _own_membership(self, event: Event) -> bool:
        me = self.rooms.me
        return (
            event.device == me.device.device_key
            and event.type is EventType.MEMBER
            and event.state_key == bytes(me.account.account_key).hex()
        )

    def _membership_event(
        self, room: bytes, peer: _Peer, granted: Access
    ) -> tuple[Event, Event | None] | None:
        """The event that invited (or removed) the peer, and the one whose past it may see.

        Invited: the invitation, and its past.  Removed while joined or
        invited: the removal and its past — without that past it could not
        take the removal into account (an invitee whose join raced its kick
        would believe itself a member for ever); the price is that an
        invitee removed learns which events came between its invitation and
        its removal.  Removed when it was already out (a ban after leaving):
        the removal alone, nothing said since it left.  ``None``: an account
        never admitted (banning a stranger gives it nothing).
        """
        account = peer.verified.account
        key = bytes(account.account_key).hex()
        decisive: Event | None = None
        for event in reversed(self.store.live(room).resolution.accepted):
            about_them = event.type is EventType.MEMBER and event.state_key == key
            if decisive is None:
                if about_them:
                    if granted is Access.INVITED:
                        return event, event
                    decisive = event
                elif (
                    granted is Access.INVITED
                    and event.type is EventType.EMAIL_INVITE
                    and event.state_key == account.email
                ):
                    return event, event
            elif about_them:
                if event.content.get("membership") in ("join", "invite"):
                    return decisive, decisive
                return decisive, None
        return None

    def _room_set(self) -> set[bytes]:
        return set(self.store.rooms())

    def _vector(self, room: bytes, allowed: Callable[[Event], bool] | None = None) -> sync.Vector:
        # ``held`` first: if another process wrote meanwhile, ``live`` is the
        # newer room, and holds every event ``held`` names (events only grow).
        held = self.store.held(room)
        live = self.store.live(room)
        receipts = self.receipts.digest(room)
        if allowed is None:
            cached = self._vectors.get(room)
            if cached and cached[0] is live and cached[1] == len(live.events):
                if cached[2].receipts == receipts:
                    return cached[2]
                return dataclasses.replace(cached[2], receipts=receipts)
        # Events of devices we cannot vouch for are not advertised (nor
        # fetched from us): a peer pushing events of made-up devices cannot
        # grow our vector.  Once the certificate arrives they count again.
        held = {
            device: {
                s: i
                for s, i in seqs.items()
                if live.status(i) not in _UNVOUCHED and (allowed is None or allowed(live.events[i]))
            }
            for device, seqs in held.items()
        }
        entries = sync.version_vector(held)
        if len(entries) > sync.MAX_VECTOR:
            kept = sorted(entries.items(), key=lambda item: -item[1][0])[: sync.MAX_VECTOR]
            entries = dict(kept)
        heads = [e.id for e in live.heads() if allowed is None or allowed(e)]
        vector = sync.Vector(room, entries, tuple(heads), receipts)
        if allowed is None:
            self._vectors[room] = (live, len(live.events), vector)
        return vector

    def _offer(
        self, peer: _Peer, room: bytes, *, again: bool = False, answer: bool = False
    ) -> None:
        """Send our vector of ``room`` if the peer may have it and it tells it something.

        ``answer``: the peer just sent its vector (so it knows the room).
        """
        granted, allowed = self._access(peer, room)
        if granted is Access.NONE or (granted is Access.OWN and not answer):
            return
        if granted is Access.FULL and not answer and not self._engaged(peer, room):
            return  # a public room: any agent may have it, but only if it asks
        if granted is Access.OWN:
            # No vector for a stranger: only our own membership events, if it lacks them.
            theirs = peer.theirs.get(room)
            mine = [
                e
                for e in self.store.live(room).events.values()
                if allowed(e)
                and not (theirs and sync.covers(theirs.vector, bytes(e.device), e.seq))
                and (theirs is None or e.id not in theirs.heads)
            ]
            key = tuple(sorted(e.id for e in mine))
            if mine and (again or peer.sent.get(room) != key):
                peer.sent[room] = key
                self._send(peer, sync.Events(room, tuple(e.raw for e in mine), False))
            return
        ours = self._vector(room, None if granted is Access.FULL else allowed)
        fingerprint = _fingerprint(ours)
        theirs = peer.theirs.get(room)
        if theirs is not None and _fingerprint(theirs) == fingerprint:
            return
        if peer.sent.get(room) == fingerprint and not again:
            return
        peer.sent[room] = fingerprint
        self._send(peer, ours)

    def _greet(self, peer: _Peer) -> None:
        self._send_trust_sum(peer)
        self._ask_keys(peer)
        for room in self._room_set():
            self._offer(peer, room)
        if peer.verified.account.kind is Kind.AGENT:
            for room in self.rooms.wanted():
                if room not in self._room_set():
                    self._send(peer, sync.Vector(room, {}, (), bytes(16)))

    # --- handling ---------------------------------------------------------------------------

    def _handle(self, peer: _Peer, message: sync.SyncMessage) -> None:  # noqa: PLR0911
        match message:
            case sync.Vector():
                return self._on_vector(peer, message)
            case sync.Want():
                return self._on_want(peer, message)
            case sync.Events():
                return self._on_events(peer, message)
            case sync.Refused(room, reason):
                self.counters[f"refused-by-peer:{reason}"] += 1
                peer.asking.pop(room, None)
                return None
            case sync.Receipts():
                return self._on_receipts(peer, message)
            case sync.TrustSum():
                return self._on_trust_sum(peer, message)
            case sync.TrustIds():
                return self._on_trust_ids(peer, message)
            case sync.TrustWant():
                return self._on_trust_want(peer, message)
            case sync.TrustItems():
                return self._on_trust_items(peer, message)
            case sync.KeyRequest():
                return self._on_key_request(peer, message)
        return None

    def _on_vector(self, peer: _Peer, message: sync.Vector) -> None:
        room = message.room
        previous = peer.theirs.get(room)
        if previous is None or previous.vector != message.vector:
            peer.skip.pop(room, None)
            peer.stalled.pop(room, None)
        peer.theirs[room] = message
        known = room in self._room_set()
        if not known and room not in self.rooms.wanted():
            if not message.vector:
                return  # someone looking for a room we do not have
            if room not in peer.unknown_rooms:
                if len(peer.unknown_rooms) >= self.settings.max_unknown_rooms:
                    self.counters["unknown-room-refused"] += 1
                    return
                peer.unknown_rooms.add(room)
        self._ask(peer, room)
        if known:
            self._offer(peer, room, answer=True)
            granted, _ = self._access(peer, room)
            ours = self.receipts.digest(room)
            if (
                granted is Access.FULL
                and message.receipts != ours
                and peer.receipts_sent.get(room) != ours
            ):
                peer.receipts_sent[room] = ours
                self._send_receipts(peer, room, self.receipts.of_room(room))

    def _ask(self, peer: _Peer, room: bytes) -> None:
        """Ask ``peer`` for what we lack of ``room``, unless a request is in flight."""
        in_flight = peer.asking.get(room)
        if (
            in_flight is not None
            and trio.current_time() - in_flight[0] < self.settings.want_timeout
        ):
            return
        theirs = peer.theirs.get(room)
        if theirs is not None and peer.stalled.get(room) == _fingerprint(theirs):
            return
        skip, skip_ids = peer.skip.get(room, (set(), set()))
        if room in self._room_set():
            live = self.store.live(room)
            held, known = self.store.held(room), set(live.events)
            parents = {
                p
                for e in live.resolution.pending
                for p in (*e.prev, *([e.prev_seq] if e.prev_seq else []))
                if p not in live.events
            }
        else:
            held, known, parents = {}, set[bytes](), set[bytes]()
        want = sync.missing(
            held,
            known,
            theirs.vector if theirs else {},
            theirs.heads if theirs else (),
            sorted(parents),
            skip=skip,
            skip_ids=skip_ids,
            room=room,
        )
        if want.empty:
            peer.asking.pop(room, None)
            return
        peer.asking[room] = (trio.current_time(), want)
        self._send(peer, want)

    def _on_want(self, peer: _Peer, message: sync.Want) -> None:
        room = message.room
        granted, allowed = self._access(peer, room)
        if granted in (Access.NONE, Access.OWN):
            self.counters["refused-to-peer"] += 1
            reason = "unknown-room" if room not in self._room_set() else "not-a-member"
            self._send(peer, sync.Refused(room, reason))
            return
        held = self.store.held(room)
        events = self.store.live(room).events
        picked: dict[bytes, Event] = {}
        budget, size = sync.WANT_BATCH, 0
        # One answer, one message: at most a batch of events and of bytes;
        # the asker asks again for the rest.  Work is bounded by the batch
        # and by the sequence numbers we hold, not by the ranges' bounds.
        wanted = [
            seqs[seq]
            for device, low, high in message.ranges
            if (seqs := held.get(device))
            for seq in sorted(s for s in seqs if low <= s <= high)
        ]
        for identifier in [*wanted, *message.ids]:
            event = events.get(identifier)
            if event is None or event.id in picked or not allowed(event):
                continue
            if budget <= 0 or size + len(event.raw) > sync.MAX_BATCH_BYTES:
                break
            picked[event.id] = event
            budget, size = budget - 1, size + len(event.raw)
        chosen = sorted(picked.values(), key=lambda e: (e.depth, e.id))
        self._send(peer, sync.Events(room, tuple(e.raw for e in chosen), True))
        self.counters["events-served"] += len(chosen)

    def _take_tokens(self, peer: _Peer, count: int) -> bool:
        now = trio.current_time()
        peer.tokens = min(
            self.settings.push_burst,
            peer.tokens + (now - peer.refilled) * self.settings.push_rate,
        )
        peer.refilled = now
        if peer.tokens < count:
            return False
        peer.tokens -= count
        return True

    def _on_events(self, peer: _Peer, message: sync.Events) -> None:
        room = message.room
        known = room in self._room_set()
        asked = peer.asking.pop(room, None) if message.reply else None
        if asked is None:
            # Not an answer to a want of ours (whatever ``reply`` says): a push.
            if not known:
                self.counters["unsolicited-unknown-room"] += 1
                return
            if not self._take_tokens(peer, len(message.events)):
                self.counters["rate-limited"] += len(message.events)
                return
            kept = self._from_stranger(peer, room, message.events)
            if not kept:
                return
            message = dataclasses.replace(message, events=kept)
        elif not known and not self._starts_room(room, message.events):
            # A room we did not hold is kept only from its create event on.
            self.counters["unknown-room-without-create"] += 1
            return
        if message.events:
            self._store(peer, room, message.events)
        if asked is not None:
            self._remember_unserved(peer, room, asked[1])
            theirs = peer.theirs.get(room)
            if not message.events and theirs is not None:
                # It had nothing we lack after all: ask again only when its
                # vector changes (no ping-pong of empty answers).
                peer.stalled[room] = _fingerprint(theirs)
            self._ask(peer, room)
            self._join_if_wanted(room)

    def _from_stranger(
        self, peer: _Peer, room: bytes, raws: tuple[bytes, ...]
    ) -> tuple[bytes, ...]:
        """What of a push we keep: all from a member, only its own membership from a stranger.

        A certified device that is not in a private room, but knows its id
        and heads, could otherwise push signed junk into it: stored (as
        rejected), held in memory with the room, and relayed to every member.
        A stranger's own membership events are still taken (it may have
        joined through an invitation we have not seen yet: what it joined
        with is then asked for by id, and the rest follows once it is a
        member).
        """
        granted, _ = self._access(peer, room)
        if granted not in (Access.NONE, Access.OWN):
            return raws
        account = peer.verified.account.account_key
        kept = []
        for raw in raws:
            try:
                event = parse_event(raw)
            except InvalidEvent:
                continue
            if (
                event.type is EventType.MEMBER
                and event.account == account
                and event.state_key == bytes(account).hex()
            ):
                kept.append(raw)
        if len(kept) < len(raws):
            self.counters["push-from-stranger"] += len(raws) - len(kept)
        return tuple(kept)

    @staticmethod
    def _starts_room(room: bytes, raws: tuple[bytes, ...]) -> bool:
        return any(event_id(raw) == room for raw in raws)

    def _store(self, peer: _Peer, room: bytes, raws: tuple[bytes, ...]) -> int:
        """Store a batch; return how many events were new."""
        added, _ = self.store.add(room, raws)
        for reason in added.invalid.values():
            self.counters[f"invalid-event:{reason}"] += 1
        live = self.store.live(room)
        new = added.new
        self.counters["events-received"] += len(new)
        self.counters["events-duplicate"] += max(0, len(raws) - len(new) - len(added.invalid))
        for identifier in new:
            status, why = live.status(identifier)
            if status == "pending":
                self.counters["event-pending"] += 1
            elif status == "rejected":
                self.counters[f"event-rejected:{why}"] += 1
            self._origin[identifier] = peer.key
        if len(self._origin) > 200_000:
            self._origin.clear()
        if new:
            self.nudge()
            # Keys that arrived unlock waiting messages; messages whose key
            # is missing are asked for from their sender's device.
            try:
                if self.rooms.decrypt_room(room) or self.rooms.undecrypted():
                    for other in list(self._peers.values()):
                        self._ask_keys(other)
            except P2PTchapError as exc:  # the events are stored: go on
                self.counters["decrypt-error"] += 1
                log.warning("could not decrypt in a room: %s", exc)
        return len(new)

    # --- room keys ----------------------------------------------------------------------------

    def _ask_keys(self, peer: _Peer) -> None:
        """Ask ``peer`` for the keys of its sessions our waiting messages need.

        Only the session's owner is asked: no one else may give that key.
        """
        wanted: dict[bytes, set[bytes]] = {}
        for room, _event, owner, session, reason in self.rooms.undecrypted():
            if owner == peer.key and reason == "no-key" and session not in peer.keys_asked:
                wanted.setdefault(room, set()).add(session)
        for room, sessions in wanted.items():
            ordered = sorted(sessions)[: sync.MAX_KEY_REQUEST]
            peer.keys_asked.update(ordered)
            self.counters["key-requests-sent"] += 1
            self._send(peer, sync.KeyRequest(room, tuple(ordered)))

    def _on_key_request(self, peer: _Peer, message: sync.KeyRequest) -> None:
        # Once per (device, session) per hour, whatever the connections: each
        # answer is an event every member stores.
        now = trio.current_time()
        fresh = [
            s
            for s in message.sessions
            if now - self._keys_answered.get((peer.key, s), -math.inf) > KEY_ANSWER_COOLDOWN
        ]
        if not fresh or message.room not in self._room_set():
            return
        if len(self._keys_answered) > 65536:
            self._keys_answered.clear()
        verified = peer.verified
        try:
            done = self.rooms.answer_key_request(
                message.room, verified.device.device_key, verified.account.account_key, fresh
            )
        except P2PTchapError as exc:  # e.g. we can no longer write in that room
            self.counters["key-requests-failed"] += 1
            log.info("could not answer a key request: %s", exc)
            return
        self.counters["key-requests-answered" if done else "key-requests-refused"] += 1
        if done:
            # Refused requests may be granted later (the asker's join may not
            # have reached us yet): only answered ones wait for the cooldown.
            self._keys_answered.update(((peer.key, s), now) for s in fresh)
            self.nudge()

    def _remember_unserved(self, peer: _Peer, room: bytes, want: sync.Want) -> None:
        """Ids asked of the peer that it did not send: not asked of it again for a while.

        Ranges are not remembered: below the tops of its vector the peer
        holds every event, so a range it did not fully serve was cut by the
        batch bounds and is asked again.
        """
        known = self.store.live(room).events if room in self._room_set() else {}
        skip_ids = peer.skip.setdefault(room, (set(), set()))[1]
        skip_ids.update(i for i in want.ids if i not in known)
        if len(skip_ids) > MAX_SKIPPED_IDS:
            skip_ids.clear()  # start afresh rather than grow

    def _join_if_wanted(self, room: bytes) -> None:
        if room not in self.rooms.wanted() or room not in self._room_set():
            return
        state = self.store.live(room).resolution.state
        me = self.rooms.me.account.account_key
        if state is None:
            return
        if state.is_member(me):
            self.rooms.unwant(room)
            return
        if self.rooms.me.secret is None:
            return
        try:
            self.rooms.join(room)
        except RemoteError as exc:  # pragma: no cover - join refusals are LocalError
            log.info("could not join %s: %s", room.hex(), exc)
            return
        except Exception as exc:  # noqa: BLE001 - refused by the rules: say so in the log
            log.warning(N_("could not join the room %s asked for: %s"), room.hex()[:12], exc)
        self.rooms.unwant(room)
        self.nudge()

    # --- receipts ---------------------------------------------------------------------------

    def _send_receipts(self, peer: _Peer, room: bytes, receipts: list[sync.Receipt]) -> None:
        for part in sync.batches([r.raw for r in receipts], sync.MAX_RECEIPTS, MAX_PART):
            self._send(peer, sync.Receipts(room, tuple(part)))

    def _on_receipts(self, peer: _Peer, message: sync.Receipts) -> None:
        room = message.room
        if room not in self._room_set():
            return
        state = self.store.live(room).resolution.state
        fresh = []
        for raw in message.items:
            try:
                receipt = sync.parse_receipt(raw)
            except sync.InvalidReceipt:
                self.counters["invalid-receipt"] += 1
                continue
            person = self.directory.sender(receipt.account, receipt.device)
            if receipt.room != room or person is None:
                self.counters["invalid-receipt"] += 1
                continue
            if sync.access(state, receipt.account, person.kind, person.email) is Access.NONE:
                self.counters["receipt-from-non-member"] += 1
                continue
            if self.receipts.add(receipt):
                fresh.append(receipt)
        if fresh:
            self.counters["receipts-received"] += len(fresh)
            self._spread_receipts(room, fresh, but=peer.key)

    def _spread_receipts(
        self, room: bytes, receipts: list[sync.Receipt], but: bytes | None = None
    ) -> None:
        for other in list(self._peers.values()):
            if other.key != but and self._access(other, room)[0] is Access.FULL:
                self._send_receipts(other, room, receipts)

    def _make_receipt(self, room: bytes) -> None:
        receipt = self.rooms.receipt(room, ReceiptKind.RECEIVED)
        if receipt is not None:
            self._spread_receipts(room, [receipt])

    # --- trust data -------------------------------------------------------------------------

    def _trust_items(self) -> dict[bytes, tuple[TrustKind, bytes]]:
        if self._trust_cache is None:
            self._trust_cache = self._stored_trust()
        return self._trust_cache

    def _stored_trust(self) -> dict[bytes, tuple[TrustKind, bytes]]:
        """Every trust item the stores hold, by id (read afresh)."""
        items: dict[bytes, tuple[TrustKind, bytes]] = {}
        accounts, devices = self.directory.certificates()
        for kind, raws in (
            (TrustKind.ACCOUNT, [a.raw for a in accounts]),
            (TrustKind.DEVICE, [d.raw for d in devices]),
            (TrustKind.REVOCATION, [r.raw for r in self.trust.revocations()]),
            (TrustKind.SUMMARY, self.directory.summaries()),
            (TrustKind.PREKEY, [raw for _, raw in self.rooms.prekey_records()]),
        ):
            for raw in raws:
                items[sync.trust_id(kind, raw)] = (kind, raw)
        return items

    def _view(self, peer: _Peer) -> dict[bytes, tuple[TrustKind, bytes]]:
        """The trust items ``peer`` may receive.

        Agents get everything.  An external gets what its rooms need and no
        more: the certificates of the people it shares a room with, their
        revocations — never the agents' directory nor the public rooms.
        """
        items = self._trust_items()
        account = peer.verified.account
        if account.kind is Kind.AGENT:
            return items
        co_members: set[bytes] = {bytes(account.account_key)}
        for room in self._room_set():
            state = self.store.live(room).resolution.state
            # Only rooms it is in (or invited to): a stranger's access to a
            # room that allows externals must not tell it who is inside.
            if state is not None and self._engaged(peer, room):
                co_members.update(bytes(a) for a in state.membership)
        accounts, devices = self.directory.certificates()
        emails = {a.email for a in accounts if bytes(a.account_key) in co_members}
        serials = {a.serial for a in accounts if bytes(a.account_key) in co_members}
        allowed: set[bytes] = set()
        allowed.update(
            sync.trust_id(TrustKind.ACCOUNT, a.raw)
            for a in accounts
            if bytes(a.account_key) in co_members
        )
        allowed.update(
            sync.trust_id(TrustKind.DEVICE, d.raw)
            for d in devices
            if bytes(d.account_key) in co_members
        )
        for record in self.trust.revocations():
            if (
                (record.account is not None and bytes(record.account) in co_members)
                or record.serial in serials
                or record.email in emails
            ):
                allowed.add(sync.trust_id(TrustKind.REVOCATION, record.raw))
        allowed.update(
            sync.trust_id(TrustKind.PREKEY, raw)
            for owner, raw in self.rooms.prekey_records()
            if owner in co_members
        )
        return {i: item for i, item in items.items() if i in allowed}

    def _send_trust_sum(self, peer: _Peer) -> None:
        view = self._view(peer)
        digest = sync.trust_digest(view)
        if digest == peer.trust_sum_sent:
            return
        peer.trust_sum_sent = digest
        self._send(peer, sync.TrustSum(digest, len(view)))

    def _on_trust_sum(self, peer: _Peer, message: sync.TrustSum) -> None:
        peer.trust_theirs = message.digest
        view = self._view(peer)
        ours = sync.trust_digest(view)
        if message.digest == ours or peer.trust_ids_sent_for == (message.digest, ours):
            return
        peer.trust_ids_sent_for = (message.digest, ours)
        ids = sorted(view)
        for start in range(0, len(ids), sync.MAX_TRUST_IDS):
            self._send(peer, sync.TrustIds(tuple(ids[start : start + sync.MAX_TRUST_IDS])))

    def _on_trust_ids(self, peer: _Peer, message: sync.TrustIds) -> None:
        have = self._trust_items()
        # Not what we refused before (another authority's certificate, an
        # expired one...): it would come again every round.
        wanted = tuple(i for i in message.ids if i not in have and i not in self._refused_trust)
        if wanted:
            self._send(peer, sync.TrustWant(wanted))

    def _on_trust_want(self, peer: _Peer, message: sync.TrustWant) -> None:
        view = self._view(peer)
        chosen = [view[i] for i in message.ids if i in view]
        # Certificates before what they vouch for: accounts, devices, then the rest.
        order = list(TrustKind)
        chosen.sort(key=lambda item: order.index(item[0]))
        size, batch = 0, list[tuple[TrustKind, bytes]]()
        for kind, raw in chosen:
            if batch and (
                len(batch) >= sync.MAX_TRUST_ITEMS or size + len(raw) > sync.MAX_TRUST_BYTES
            ):
                self._send(peer, sync.TrustItems(tuple(batch)))
                size, batch = 0, list[tuple[TrustKind, bytes]]()
            batch.append((kind, raw))
            size += len(raw)
        if batch:
            self._send(peer, sync.TrustItems(tuple(batch)))

    def _on_trust_items(self, peer: _Peer, message: sync.TrustItems) -> None:
        order = list(TrustKind)
        items = sorted(message.items, key=lambda item: order.index(item[0]))
        taken: list[tuple[bytes, TrustKind, bytes]] = []
        revoked = False
        for kind, raw in items:
            identifier = sync.trust_id(kind, raw)
            if identifier in self._trust_items():
                continue
            try:
                if kind is TrustKind.ACCOUNT:
                    self.directory.add_account(raw)
                elif kind is TrustKind.DEVICE:
                    self._add_device(raw)
                elif kind is TrustKind.REVOCATION:
                    if not self.trust.add_revocations([raw]):
                        self.counters["invalid-trust:revocation"] += 1
                        self._refused_trust.add(identifier)
                        continue
                    revoked = True
                elif kind is TrustKind.PREKEY:
                    if not self.rooms.add_prekey(raw):
                        self._refused_trust.add(identifier)  # older than one held
                        continue
                else:
                    self.directory.add_summary(raw)
            except RemoteError as exc:
                self.counters[f"invalid-trust:{kind.value}"] += 1
                if len(self._refused_trust) > MAX_REFUSED_TRUST:
                    self._refused_trust.clear()
                self._refused_trust.add(identifier)
                log.debug("refused a %s from %s: %s", kind.value, peer.verified.account.email, exc)
                continue
            taken.append((identifier, kind, raw))
        fresh = self._kept(taken)
        if fresh:
            self.counters["trust-received"] += len(fresh)
            # Passed on at once, not at the next round: a revocation crosses
            # the cell in one message per hop.
            self._spread_trust(fresh, but=peer.key)
            self.trust_changed(revoked)

    def _kept(self, taken: list[tuple[bytes, TrustKind, bytes]]) -> list[tuple[TrustKind, bytes]]:
        """Of the items the stores took without complaint, those they now hold.

        A store keeps only the newest of some items — a room's summary, an
        account's certificate — and takes an older one silently.  Such an
        item is not new here: passed on, it would come back as "new" from
        every peer that does not keep it either, round and round for ever.
        It is refused instead (not asked for again).
        """
        if not taken:
            return []
        held = self._stored_trust()
        fresh = []
        for identifier, kind, raw in taken:
            if identifier in held:
                self._trust_items()[identifier] = (kind, raw)
                fresh.append((kind, raw))
                continue
            self.counters[f"superseded-trust:{kind.value}"] += 1
            if len(self._refused_trust) > MAX_REFUSED_TRUST:
                self._refused_trust.clear()
            self._refused_trust.add(identifier)
        return fresh

    def _add_device(self, raw: bytes) -> None:
        device = parse_device_certificate(raw)
        if self.directory.count_devices(device.account_key) >= MAX_DEVICES_PER_ACCOUNT:
            raise TooManyDevices(bytes(device.account_key).hex())
        self.directory.add_device(raw)

    def trust_changed(self, revoked: bool) -> None:
        """Trust data changed here: pass on what is new, drop peers now revoked.

        Called on items received, and by the owner when it learnt some
        other way (the node re-reads its revocation file, which the CLI
        writes).
        """
        before = self._trust_cache
        self._trust_cache = None
        if before is not None:
            fresh = [item for i, item in self._trust_items().items() if i not in before]
            self._spread_trust(fresh)
        if revoked:
            self.store.forget()
            self.on_revocation()
            for peer in list(self._peers.values()):
                if not self._still_valid(peer):
                    self.disconnected(peer.link)
        for peer in list(self._peers.values()):
            self._send_trust_sum(peer)

    def _spread_trust(self, fresh: list[tuple[TrustKind, bytes]], but: bytes | None = None) -> None:
        if not fresh:
            return
        for peer in list(self._peers.values()):
            if peer.key == but:
                continue
            view = self._view(peer)
            items = [(k, r) for k, r in fresh if sync.trust_id(k, r) in view]
            for start in range(0, len(items), sync.MAX_TRUST_ITEMS):
                self._send(
                    peer, sync.TrustItems(tuple(items[start : start + sync.MAX_TRUST_ITEMS]))
                )

    # --- background -------------------------------------------------------------------------

    async def _outbox(self) -> None:
        """Push every newly stored event to the peers who should have it."""
        while True:
            with trio.move_on_after(self.settings.poll):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                self._push_arrivals()
                self._send_due_receipts()
            except StorageError as exc:
                self.counters["storage-error"] += 1
                log.error(N_("replication could not read the database: %s"), exc.detail)
            except Exception:  # a bug here must not stop the node: say it, go on
                self.counters["internal-error"] += 1
                log.exception("replication: pushing new events failed")

    def _push_arrivals(self) -> None:
        while arrivals := self.store.arrivals(self._journal):
            self._journal = arrivals[-1][0]
            by_room: dict[bytes, list[bytes]] = {}
            for _n, room, identifier in arrivals:
                by_room.setdefault(room, []).append(identifier)
            for room, ids in by_room.items():
                self._push(room, ids)

    def _push(self, room: bytes, ids: list[bytes]) -> None:
        live = self.store.live(room)
        events = sorted(self.store.raws(room, ids), key=lambda e: (e.depth, e.id))
        if not events:
            return
        access_changed = any(e.type in _ACCESS_TYPES for e in events)
        mine = bytes(self.rooms.me.device.device_key)
        if any(bytes(e.device) != mine for e in events):
            self._receipt_due.setdefault(room, trio.current_time() + self.settings.receipt_delay)
        for peer in list(self._peers.values()):
            granted, allowed = self._access(peer, room)
            if granted in (Access.NONE, Access.OWN):
                continue  # a stranger gets our events only when it asks
            if granted is Access.FULL and not self._engaged(peer, room):
                continue  # nor does an agent that is not in this public room
            theirs = peer.theirs.get(room)
            chosen = [
                e
                for e in events
                if allowed(e)
                and live.status(e.id) not in _UNVOUCHED  # from a device we cannot vouch for
                and self._origin.get(e.id) != peer.key
                and not (theirs and sync.covers(theirs.vector, bytes(e.device), e.seq))
            ]
            if chosen:
                for part in sync.batches(
                    [e.raw for e in chosen], sync.MAX_BATCH_EVENTS, sync.MAX_BATCH_BYTES
                ):
                    self._send(peer, sync.Events(room, tuple(part), False))
                self.counters["events-pushed"] += len(chosen)
            if access_changed:
                self._offer(peer, room, again=True)

    def _send_due_receipts(self) -> None:
        now = trio.current_time()
        for room, due in list(self._receipt_due.items()):
            if due <= now:
                del self._receipt_due[room]
                self._make_receipt(room)

    async def _rounds(self) -> None:
        """Anti-entropy: every interval, offer again wherever a peer still differs."""
        rounds = 0
        while True:
            await trio.sleep(self.settings.interval)
            rounds += 1
            try:
                self._round(rounds)
            except StorageError as exc:
                self.counters["storage-error"] += 1
                log.error(N_("replication could not read the database: %s"), exc.detail)
            except Exception:  # a bug here must not stop the node: say it, go on
                self.counters["internal-error"] += 1
                log.exception("replication: an anti-entropy round failed")

    def _round(self, rounds: int) -> None:
        # Another process may have added certificates, summaries or receipts:
        # what it added goes out now (a forum created from the CLI reaches the
        # others' directories within a round), not only with the peers' next
        # digest exchange, which only differing digests trigger.
        self.trust_changed(False)
        self.receipts.refresh()
        rooms = self._room_set()
        wanted = [r for r in self.rooms.wanted() if r not in rooms]
        if rounds % 100 == 0:
            self.store.prune_arrivals()
        if rounds % 60 == 0 and self.rooms.crypto.ensure_prekey() is not None:
            self.trust_changed(False)  # our new prekey goes out
        for peer in list(self._peers.values()):
            if rounds % 5 == 0:
                peer.keys_asked.clear()  # the owner may hold the key, or grant it, now
            self._ask_keys(peer)
            # Our digest, when it changed; and once a minute where we still
            # differ (what was lost is sent again, not every round).
            if rounds % 12 == 0 and peer.trust_theirs != sync.trust_digest(self._view(peer)):
                peer.trust_sum_sent = None
                peer.trust_ids_sent_for = None
            self._send_trust_sum(peer)
            for room in rooms:
                self._offer(peer, room, again=True, answer=room in peer.theirs)
                if room in peer.theirs:
                    self._ask(peer, room)
            if peer.verified.account.kind is Kind.AGENT:
                for room in wanted:
                    self._send(peer, sync.Vector(room, {}, (), bytes(16)))

    # --- reading, for the node API -----------------------------------------------------------

    def health(self) -> dict[str, int]:
        """Counters by reason: events received, refused, pending, invalid…"""
        return dict(sorted(self.counters.items()))

"""Rooms as a node uses them: the typed API under the CLI, the TUI and replication.

:class:`Rooms` acts for one device (:class:`Me`): it writes signed events on
top of the room's current heads, checks each against the room's rules
*before* storing it — an action the rules refuse raises :class:`RoomRefused`
with one sentence for the user and stores nothing — and reads rooms,
members and directories back.  Everything goes through the SQLite store, so
another process (the CLI next to a running node) sees the same rooms.

Warnings the interface must show come back in :class:`Done` (e.g. making a
room public: "accessible à tous les agents").
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Final, TypeVar

from p2ptchap import accounts
from p2ptchap.core import codec
from p2ptchap.core.addresses import InvalidAddress, normalise_email
from p2ptchap.core.directory import (
    Entry,
    InvalidSummary,
    RoomSummary,
    make_summary,
    may_search,
)
from p2ptchap.core.errors import N_, DecodeError, LocalError, StorageError, UsageError
from p2ptchap.core.events import (
    ADMIN,
    MAX_PREV,
    MEMBER,
    MODERATOR,
    Event,
    EventType,
    Membership,
    make_event,
)
from p2ptchap.core.files import Descriptor, clear_reference
from p2ptchap.core.identity import AccountCertificate, DeviceCertificate, Kind
from p2ptchap.core.keys import KEY_SIZE, AccountKey, DeviceKey, DeviceSecret, ExchangeSecret, Rng
from p2ptchap.core.live_room import LiveRoom
from p2ptchap.core.megolm import MegolmError, OutboundSession
from p2ptchap.core.room import DEFAULT_POWER, Rejection, RoomState
from p2ptchap.core.sync import (
    Receipt,
    ReceiptKind,
    make_receipt,
    parse_receipt,
    version_vector,
)
from p2ptchap.e2e import ENCRYPTED_TYPES, KEY_TYPES, RoomCrypto
from p2ptchap.store.db import DB_NAME, Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.home import Home
from p2ptchap.store.keys import KeyStore, storage_key
from p2ptchap.store.receipts import ReceiptStore
from p2ptchap.store.rooms import RoomStore, blob

T = EventType
_T = TypeVar("_T")
log = logging.getLogger(__name__)

#: Shown whenever a room becomes (or is created) public.
PUBLIC_WARNING: Final = N_(
    "This room is now public: accessible to all agents, who can find it and join it."
)

#: Joining a public room this node does not hold yet.
JOIN_REQUESTED: Final = N_(
    "This node does not hold this room yet: it will join as soon as a peer brings it."
)

_REMOVALS: Final = (Membership.LEAVE.value, Membership.BAN.value)

READ_ONLY: Final = N_("This needs the device key: give the passphrase to act in rooms.")

_REFUSALS: Final = {
    Rejection.NOT_A_MEMBER: N_("You are not a member of this room."),
    Rejection.INSUFFICIENT_POWER: N_("Your role in this room does not allow this."),
    Rejection.BANNED: N_("This account is banned from this room."),
    Rejection.NOT_INVITED: N_("This room is private: you need an invitation to join it."),
    Rejection.EXTERNALS_NOT_ALLOWED: N_(
        "This room does not accept external participants (and externals cannot make a room public)."
    ),
    Rejection.DIRECT_ROOM: N_(
        "A direct conversation stays private and between two people; "
        "an external cannot start one with an agent."
    ),
    Rejection.BAD_TARGET: N_("This action does not apply to that person or message."),
    Rejection.UNKNOWN_INVITEE: N_(
        "This person is not in this node's directory yet; invite them by e-mail instead."
    ),
    Rejection.REMOVED_CONCURRENTLY: N_("You were removed from this room."),
}


class RoomRefused(LocalError):
    """The room's rules refuse what this device tried; nothing was stored."""

    def __init__(self, reason: Rejection) -> None:
        super().__init__(
            reason.value,
            user_message=_REFUSALS.get(reason, N_("The room refused this action ({reason}).")),
            reason=reason.value,
        )
        self.reason = reason


class RoomUnknown(LocalError):
    """No room with this id (or name) is stored on this node."""

    default_message = N_(
        "This node has no such room; check its name, or wait until a peer brings it."
    )


class DirectoryRefused(LocalError):
    """Externals may not browse the agents' directory nor the public rooms."""

    default_message = N_(
        "External accounts cannot browse the agents' directory or the public rooms."
    )


class Role(enum.Enum):
    ADMIN = "admin"
    MODERATOR = "moderator"
    MEMBER = "member"


def role(level: int) -> Role:
    if level >= ADMIN:
        return Role.ADMIN
    if level >= MODERATOR:
        return Role.MODERATOR
    return Role.MEMBER


LEVELS: Final = {Role.ADMIN: ADMIN, Role.MODERATOR: MODERATOR, Role.MEMBER: MEMBER}


@dataclasses.dataclass(frozen=True, slots=True)
class Me:
    """The device this API signs for."""

    account: AccountCertificate
    device: DeviceCertificate
    #: ``None`` for reading only (no passphrase asked).
    secret: DeviceSecret | None
    #: The device's X25519 secret: opens room keys sent to it, seals those it sends.
    exchange: ExchangeSecret | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """What an action did: the events written, and warnings the UI must show."""

    room: bytes
    events: tuple[bytes, ...]
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RoomInfo:
    room: bytes
    name: str
    topic: str
    direct: bool
    public: bool
    allow_externals: bool
    history: str
    members: int
    membership: Membership | None
    role: Role


@dataclasses.dataclass(frozen=True, slots=True)
class MemberInfo:
    account: AccountKey
    name: str
    email: str
    external: bool
    membership: Membership
    level: int

    @property
    def role(self) -> Role:
        return role(self.level)


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """Which member devices have a message ("reçu par 7/9"), and which have read it.

    ``expected`` is every valid device of the room's current members but
    the sender's own; ``received`` and ``read`` are those among them whose
    latest receipt covers the message.
    """

    expected: tuple[DeviceKey, ...]
    received: tuple[DeviceKey, ...]
    read: tuple[DeviceKey, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A message as shown: its decrypted body, or why it cannot be shown yet."""

    id: bytes
    sender: AccountKey
    name: str
    ts: int
    #: ``None`` while the key has not arrived (``waiting`` says why).
    body: bytes | None
    reply_to: bytes | None
    waiting: str | None = None
    #: Removed members who may have been able to read it (sent concurrently
    #: with their removal, or by a device that had not seen the removal).
    exposed_to: tuple[AccountKey, ...] = ()
    #: The file it carries (its descriptor, decrypted), if any.
    file: Descriptor | None = None
    #: Whether its author edited it (``body`` is then the latest edit).
    edited: bool = False
    #: Reactions readable so far: ``(key, accounts)``, in the order first seen.
    reactions: tuple[tuple[str, tuple[AccountKey, ...]], ...] = ()
    #: The device that signed it (``None`` only in hand-built values).
    device: DeviceKey | None = None


class Rooms:
    """The rooms of one node, acting for one device (see the module documentation)."""

    def __init__(
        self,
        db: Database,
        directory: DirectoryStore,
        me: Me,
        clock: Callable[[], float],
        rng: Rng = os.urandom,
        *,
        read_receipts: bool = False,
    ) -> None:
        self.db = db
        self.rng = rng
        #: Whether this user lets others see what they have read.
        self.read_receipts = read_receipts
        self.receipts = ReceiptStore(db)
        self.directory = directory
        self.me = me
        self.clock = clock
        self.store = RoomStore(db, directory.author, directory.known_person, directory.basis)
        # Our own certificates are in our directory, or our events would not count.
        directory.add_account(me.account.raw)
        directory.add_device(me.device.raw)
        if (me.secret is None) != (me.exchange is None):
            raise UsageError("the device's two secrets go together")
        key = None
        if me.secret is not None and me.exchange is not None:
            key = storage_key(me.secret.secret_bytes(), me.exchange.secret_bytes())
        self.keys = KeyStore(db, key, rng)
        self.crypto = RoomCrypto(
            self.keys,
            directory,
            me.account.account_key,
            me.device.device_key,
            me.secret,
            me.exchange,
            clock,
            rng,
        )
        #: Per room, the accepted events already looked at for decryption.
        self._decrypted_upto: dict[bytes, tuple[object, int, int]] = {}
        self.crypto.ensure_prekey()

    # --- reading ---------------------------------------------------------------

    def _live(self, room: bytes) -> LiveRoom:
        if room not in self.store.rooms():
            raise RoomUnknown(room.hex())
        return self.store.live(room)

    def state(self, room: bytes) -> RoomState:
        state = self._live(room).resolution.state
        if state is None:
            raise RoomUnknown(room.hex())
        return state

    def find(self, text: str) -> bytes:
        """A room by id (hex, or a unique prefix of 6+ digits) or by exact name."""
        text = text.strip()
        rooms = self.store.rooms()
        lowered = text.lower()
        if len(lowered) >= 6 and all(c in "0123456789abcdef" for c in lowered):
            found = [r for r in rooms if r.hex().startswith(lowered)]
            if len(found) == 1:
                return found[0]
        named = [i.room for i in self.list_rooms() if i.name.casefold() == text.casefold()]
        if not named and may_search(self.me.account.kind):
            # A public room this node does not hold yet, known by its summary.
            summaries = self.directory.public_rooms()
            named = [
                s.room
                for s in summaries
                if s.name.casefold() == text.casefold()
                or (len(lowered) >= 6 and s.room.hex().startswith(lowered))
            ]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise UsageError(
                "ambiguous room name",
                user_message=N_("Several rooms are named '{name}'; give the room's id instead."),
                name=text,
            )
        raise RoomUnknown(text)

    def info(self, room: bytes) -> RoomInfo:
        state = self.state(room)
        me = self.me.account.account_key
        return RoomInfo(
            room=room,
            name=state.name,
            topic=state.topic,
            direct=state.direct,
            public=state.join_rule == "public",
            allow_externals=state.allow_externals,
            history=state.history,
            members=len(state.members()),
            membership=state.membership.get(me),
            role=role(state.level(me)),
        )

    def list_rooms(self) -> list[RoomInfo]:
        """Every room this node holds where we are, were invited, or may join, by name."""
        # A room whose create event has not arrived (or was refused) has no
        # state yet: not listed.
        infos = [
            self.info(room)
            for room in self.store.rooms()
            if self.store.live(room).resolution.state is not None
        ]
        return sorted(infos, key=lambda i: (i.name.casefold(), i.room))

    def members(self, room: bytes, *, everyone: bool = False) -> list[MemberInfo]:
        """Joined members (and, with ``everyone``, the invited, departed and banned)."""
        state = self.state(room)
        found = []
        for account, membership in state.membership.items():
            if membership is not Membership.JOIN and not everyone:
                continue
            certificate = self.directory.account_ever(account)  # a revoked one keeps its name
            found.append(
                MemberInfo(
                    account=account,
                    name=certificate.display_name if certificate else "?",
                    email=certificate.email if certificate else "?",
                    external=bool(certificate and certificate.kind is Kind.EXTERNAL),
                    membership=membership,
                    level=state.level(account),
                )
            )
        return sorted(found, key=lambda m: (-m.level, m.name.casefold(), m.email))

    def messages(self, room: bytes, limit: int = 50) -> list[Message]:
        """The latest accepted messages, oldest first, decrypted where the key is held."""
        self.decrypt_room(room)
        live = self._live(room)
        accepted = live.resolution.accepted
        redacted = {e.content["target"] for e in accepted if e.type is T.REDACTION}
        edits = self._latest_edits(accepted)
        reactions = self._reactions(accepted, redacted)
        waiting = {r[1]: r[4] for r in self.keys.undecrypted(room)} if self.keys.unlocked else {}
        found: list[Message] = []
        for event in reversed(accepted):
            if event.type is not T.MESSAGE or event.id in redacted:
                continue
            certificate = self.directory.account_ever(event.account)
            inner = self.keys.plaintext(event.id) if self.keys.unlocked else None
            body: bytes | None = None
            reply: codec.Value = None
            descriptor = None
            if inner is not None:
                text = edits.get(event.id, inner["body"])
                assert isinstance(text, bytes)  # checked when decrypted
                body, reply = text, inner.get("reply_to")
                if "file" in inner:
                    descriptor = Descriptor.from_value(inner["file"])
            found.append(
                Message(
                    event.id,
                    event.account,
                    certificate.display_name if certificate else "?",
                    event.ts,
                    body,
                    reply if isinstance(reply, bytes) else None,
                    None if inner is not None else waiting.get(event.id, "locked"),
                    self._exposed(live, event),
                    descriptor,
                    edited=event.id in edits,
                    reactions=reactions.get(event.id, ()),
                    device=event.device,
                )
            )
            if len(found) >= limit:
                break
        return found[::-1]

    def _latest_edits(self, accepted: list[Event]) -> dict[bytes, bytes]:
        """Per message id, the body of its latest readable edit (by its author: the rules)."""
        found: dict[bytes, bytes] = {}
        if not self.keys.unlocked:
            return found
        for event in accepted:
            if event.type is T.EDIT:
                inner = self.keys.plaintext(event.id)
                target = event.content["target"]
                if inner is not None and isinstance(target, bytes):
                    body = inner["body"]
                    assert isinstance(body, bytes)
                    found[target] = body
        return found

    def _reactions(
        self, accepted: list[Event], redacted: set[codec.Value]
    ) -> dict[bytes, tuple[tuple[str, tuple[AccountKey, ...]], ...]]:
        """Per message id, who reacted with what (one reaction per account and key)."""
        found: dict[bytes, dict[str, list[AccountKey]]] = {}
        if not self.keys.unlocked:
            return {}
        for event in accepted:
            if event.type is not T.REACTION or event.id in redacted:
                continue
            inner = self.keys.plaintext(event.id)
            target, key = event.content.get("target"), inner.get("key") if inner else None
            if not isinstance(target, bytes) or not isinstance(key, str):
                continue
            accounts = found.setdefault(target, {}).setdefault(key, [])
            if event.account not in accounts:
                accounts.append(event.account)
        return {
            target: tuple((key, tuple(who)) for key, who in keys.items())
            for target, keys in found.items()
        }

    def _exposed(self, live: LiveRoom, event: Event) -> tuple[AccountKey, ...]:
        """Removed members the session of ``event`` was shared with, who had no right to it.

        An account removed by a removal that does not have ``event`` in its
        causal past (concurrent, or already known to the sender) — unless it
        rejoined before ``event`` — may read ``event`` if it keeps what
        relays send it.  The encrypted event names its session; the
        ``room_key`` events of that session name who received it.
        """
        session = event.content.get("session")
        receivers: set[bytes] = set()
        for other in live.resolution.accepted:
            if (
                other.type is T.ROOM_KEY
                and other.device == event.device
                and other.content.get("session") == session
            ):
                shares = other.content["shares"]
                assert isinstance(shares, dict)
                receivers.update(
                    bytes(c.account_key)
                    for d in shares
                    if isinstance(d, bytes)
                    for c in [self.directory.device_certificate(d)]
                    if c is not None
                )
        exposed = []
        clock = live.clock(event.id) or {}
        for removal in live.resolution.accepted:
            if removal.type is not T.MEMBER or removal.content["membership"] not in _REMOVALS:
                continue
            target = removal.state_key
            if target is None or bytes.fromhex(target) not in receivers:
                continue
            removal_clock = live.clock(removal.id) or {}
            if removal_clock.get(bytes(event.device), 0) >= event.seq:
                continue  # the event came before the removal: read while a member
            rejoined = any(
                e.type is T.MEMBER
                and e.state_key == target
                and e.content["membership"] == "join"
                and (live.clock(e.id) or {}).get(bytes(removal.device), 0) >= removal.seq
                and clock.get(bytes(e.device), 0) >= e.seq
                for e in live.resolution.accepted
            )
            if not rejoined:
                exposed.append(AccountKey(bytes.fromhex(target)))
        return tuple(dict.fromkeys(exposed))

    def decrypt_room(self, room: bytes) -> int:
        """Take in new key events and decrypt new messages of ``room``; how many were decrypted.

        Messages whose key has not arrived are recorded as waiting (the node
        asks their sender's device for the key); they are tried again when a
        key event arrives.
        """
        live = self._live(room)
        state = live.resolution.state
        if state is None or not self.keys.unlocked:
            return 0
        accepted = live.resolution.accepted
        mark = (self.db.query("PRAGMA data_version")[0][0], id(live), len(accepted))
        if self._decrypted_upto.get(room) == mark:
            return 0
        decrypted = 0
        with self.db.transaction():
            processed = self.keys.processed(room)
            taught: set[tuple[bytes, bytes]] = set()
            for event in accepted:
                if event.type in KEY_TYPES and event.id not in processed:
                    taught |= self._guarded(partial(self.crypto.take_keys, event, state), set())
                    self.keys.mark_processed(room, event.id)
            done = self.keys.decrypted(room)
            waiting = {r[1]: (r[2], r[3]) for r in self.keys.undecrypted(room)}
            for event in accepted:
                if event.type not in ENCRYPTED_TYPES or event.id in done:
                    continue
                if event.id in waiting and waiting[event.id] not in taught:
                    continue  # nothing new to try it with
                if self._guarded(partial(self.crypto.decrypt, event), None) is not None:
                    decrypted += 1
        self._decrypted_upto[room] = (
            self.db.query("PRAGMA data_version")[0][0],
            id(live),
            len(accepted),
        )
        return decrypted

    def _guarded(self, action: Callable[[], _T], failed: _T) -> _T:
        """``action()``, or ``failed`` if stored key material turns out unreadable.

        A session row that cannot be read back (damaged, or written from
        hostile input that slipped past a check) must cost one message its
        key, never stop a room — nor replication — from going on.
        """
        try:
            return action()
        except (DecodeError, StorageError, MegolmError) as exc:
            log.warning("skipped unreadable key material: %s", exc)
            return failed

    def undecrypted(self) -> list[tuple[bytes, bytes, bytes, bytes, str]]:
        """``(room, event, owner device, session, reason)`` of every message waiting for a key."""
        return self.keys.undecrypted() if self.keys.unlocked else []

    def add_prekey(self, raw: bytes) -> bool:
        """A gossiped prekey record; raises :class:`~p2ptchap.core.roomkeys.InvalidPrekey`."""
        return self.crypto.add_prekey(raw)

    def prekey_records(self) -> list[tuple[bytes, bytes]]:
        """``(account, raw)`` of every prekey record to gossip."""
        return self.keys.prekey_records()

    def answer_key_request(
        self, room: bytes, device: DeviceKey, account: AccountKey, sessions: list[bytes]
    ) -> Done | None:
        """Share our ``sessions`` of ``room`` with a member's device that asked for them."""
        if self.me.secret is None or room not in self.store.rooms():
            return None
        state = self.state(room)
        me = self.me.account.account_key
        if not state.is_member(me) or state.level(me) < state.power["post"]:
            return None  # we could not write the answer (left, or muted)
        live = self._live(room)

        def joined_after(session: OutboundSession) -> int | None:
            """The first index of ``session`` not in the causal past of ``account``'s join."""
            joins = [
                e
                for e in live.resolution.accepted
                if e.type is T.MEMBER
                and e.state_key == bytes(account).hex()
                and e.content["membership"] == Membership.JOIN.value
            ]
            if not joins:
                return None
            # By *our* view, not the join's parents (the joiner chooses those):
            # our messages made after we had seen the join.
            join = joins[-1]
            mine = [e for e in live.resolution.accepted if e.device == self.me.device.device_key]
            aware = [
                e.seq
                for e in mine
                if (live.clock(e.id) or {}).get(bytes(join.device), 0) >= join.seq
            ]
            if not aware:
                return None
            indices = [
                e.content["index"]
                for e in mine
                if e.type in ENCRYPTED_TYPES
                and e.content.get("session") == session.session_id
                and e.seq >= min(aware)
            ]
            return min((i for i in indices if isinstance(i, int)), default=None)

        with self._writing(room):
            contents = self.crypto.answer_request(
                room, state, device, account, sessions, joined_after
            )
            if not contents:
                return None
            ids = self._write_all(room, T.ROOM_KEY, contents)
        return Done(room, ids)

    def delivery(self, room: bytes, event_id: bytes) -> Delivery:
        """Who has received and read event ``event_id`` of ``room``, by their receipts."""
        live = self._live(room)
        event = live.events.get(event_id)
        state = live.resolution.state
        if event is None or state is None:
            raise RoomUnknown(event_id.hex())
        expected = [
            device.device_key
            for account in state.members()
            for device in self.directory.devices_of(account)
            if device.device_key != event.device
        ]
        got: dict[ReceiptKind, set[DeviceKey]] = {kind: set() for kind in ReceiptKind}
        for receipt in self.receipts.of_room(room):
            if receipt.covers(bytes(event.device), event.seq):
                got[receipt.kind].add(receipt.device)
        ordered = sorted(expected, key=bytes)
        return Delivery(
            tuple(ordered),
            tuple(d for d in ordered if d in got[ReceiptKind.RECEIVED]),
            tuple(d for d in ordered if d in got[ReceiptKind.READ]),
        )

    def receipt(self, room: bytes, kind: ReceiptKind) -> Receipt | None:
        """Sign and store our receipt of everything held in ``room``; ``None`` if unchanged."""
        if self.me.secret is None or room not in self.store.rooms():
            return None
        vector = {d: seq for d, (seq, _) in version_vector(self.store.held(room)).items()}
        known = self.receipts.get(room, bytes(self.me.device.device_key), kind)
        if known is not None and known.vector == vector:
            return None
        ts = max(self._now_ms(), known.ts + 1 if known else 0)
        raw = make_receipt(self.me.secret, self.me.account.account_key, kind, room, vector, ts)
        receipt = parse_receipt(raw)
        return receipt if self.receipts.add(receipt) else None

    def mark_read(self, room: bytes) -> Receipt | None:
        """The user has seen the room: a read receipt, if this user shares them."""
        self._live(room)
        return self.receipt(room, ReceiptKind.READ) if self.read_receipts else None

    def wanted(self) -> list[bytes]:
        """Rooms asked for (to join) that this node does not hold yet."""
        return [blob(r[0]) for r in self.db.query("SELECT room FROM wanted_rooms ORDER BY since")]

    def unwant(self, room: bytes) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM wanted_rooms WHERE room = ?", (room,))

    def person(self, who: str) -> AccountKey | str:
        """Whom ``who`` names: an account key (hex), an e-mail address, or a unique search.

        An address nobody known holds is returned as the normalised address
        (for an invitation by e-mail).
        """
        text = who.strip()
        if len(text) == 2 * KEY_SIZE:
            try:
                return AccountKey(bytes.fromhex(text))
            except ValueError:
                pass
        if "@" in text:
            try:
                address = normalise_email(text)
            except InvalidAddress as exc:
                message = N_("'{email}' is not a valid e-mail address.")
                raise UsageError(str(exc), user_message=message, email=text) from exc
            known = self.account_by_email(address)
            return known if known is not None else address
        found = self.search_people(text, limit=6)
        if len(found) == 1:
            return found[0].account
        if not found:
            raise UsageError(
                "nobody",
                user_message=N_("Nobody in the directory matches '{who}'; give an e-mail address."),
                who=text,
            )
        raise UsageError(
            "ambiguous",
            user_message=N_("Several people match '{who}': {names}; give the e-mail address."),
            who=text,
            names=", ".join(f"{e.name} <{e.email}>" for e in found),
        )

    def account_of(self, who: str) -> AccountKey:
        """Like :meth:`person`, for someone who must be enrolled already."""
        person = self.person(who)
        if isinstance(person, str):
            raise UsageError(
                "unknown person",
                user_message=N_("Nobody in the directory has the address {email}."),
                email=person,
            )
        return person

    def search_people(self, query: str, limit: int = 50) -> list[Entry]:
        """The people directory; agents only (Tchap's rule)."""
        if not may_search(self.me.account.kind):
            raise DirectoryRefused("external")
        return self.directory.search(query, limit)

    def public_rooms(self, query: str = "") -> list[RoomSummary]:
        """The public-room directory; agents only.  Private rooms never appear."""
        if not may_search(self.me.account.kind):
            raise DirectoryRefused("external")
        return self.directory.public_rooms(query)

    # --- writing ---------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def _secret(self) -> DeviceSecret:
        if self.me.secret is None:
            raise UsageError("read-only", user_message=READ_ONLY)
        return self.me.secret

    def _make(
        self, room: bytes, kind: EventType, content: codec.Value, state_key: str | None = None
    ) -> Event:
        live = self._live(room)
        heads = live.heads(MAX_PREV)
        # Chain to our latest *admitted* event: one refused (say, made at the
        # same moment by another process of this device) must not lock us out.
        previous = live.last_of(self.me.device.device_key)
        last = (previous.seq, previous.id, previous.depth) if previous else None
        assert isinstance(content, dict)
        return make_event(
            self._secret,
            self.me.account.account_key,
            kind,
            content,
            room=room,
            seq=last[0] + 1 if last else 1,
            prev_seq=last[1] if last else None,
            prev=[h.id for h in heads],
            depth=1 + max([h.depth for h in heads] + ([last[2]] if last else [])),
            ts=self._now_ms(),
            state_key=state_key,
        )

    def _write(self, room: bytes, event: Event) -> None:
        live = self._live(room)
        reason = live.check(event)
        if reason is not None:
            raise RoomRefused(reason)
        self.store.add(room, [event.raw])
        outcome, why = self.store.live(room).status(event.id)
        if outcome != "accepted":  # only a full resolution could tell: roll back
            raise RoomRefused(Rejection(why) if why else Rejection.BAD_TARGET)

    @contextlib.contextmanager
    def _writing(self, room: bytes | None) -> Iterator[None]:
        """Make, check and store under one write lock; a refusal stores nothing.

        The lock keeps another process of this device (the CLI next to the
        node) from taking the same sequence number in between.
        """
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self.store.forget(room)  # memory may hold what was rolled back
            raise

    def _write_all(
        self, room: bytes, kind: EventType, contents: list[dict[codec.Key, codec.Value]]
    ) -> tuple[bytes, ...]:
        """Make, check and store one event per content (inside :meth:`_writing`)."""
        ids = []
        for content in contents:
            event = self._make(room, kind, content)
            self._write(room, event)
            ids.append(event.id)
        return tuple(ids)

    def _encrypted(
        self,
        room: bytes,
        kind: EventType,
        inner: dict[codec.Key, codec.Value],
        clear: dict[codec.Key, codec.Value] | None = None,
    ) -> Done:
        """Post an encrypted event, after the ``room_key`` events its session needs."""
        with self._writing(room):
            state = self.state(room)
            if not state.is_member(self.me.account.account_key):
                raise RoomRefused(Rejection.NOT_A_MEMBER)
            session, shares = self.crypto.outbound(room, state)
            ids = self._write_all(room, T.ROOM_KEY, shares)
            content = {**(clear or {}), **self.crypto.encrypt(session, kind, inner)}
            event = self._make(room, kind, content)
            self._write(room, event)
            self.keys.put_outbound(session)
            self.keys.put_plaintext(room, event.id, inner)
        return Done(room, (*ids, event.id))

    def _act(
        self,
        room: bytes,
        kind: EventType,
        content: codec.Value,
        state_key: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Done:
        with self._writing(room):
            event = self._make(room, kind, content, state_key)
            self._write(room, event)
            self._publish(room)
        return Done(room, (event.id,), warnings)

    def _publish(self, room: bytes) -> None:
        """Keep our public-room summary current (a withdrawal when it went private)."""
        state = self.state(room)
        if state.direct or not state.is_member(self.me.account.account_key):
            return
        known = self.directory.summary(room)
        if state.join_rule == "public" or (known is not None and known.public):
            # Strictly newer than what is known, even with a coarse clock.
            ts = max(self._now_ms(), known.ts + 1 if known else 0)
            summary = make_summary(self._secret, self.me.account.account_key, state, ts)
            with contextlib.suppress(InvalidSummary):  # the action itself is done
                self.directory.add_summary(summary)

    def create(
        self,
        name: str,
        *,
        topic: str = "",
        public: bool = False,
        allow_externals: bool = False,
        direct: bool = False,
    ) -> Done:
        """A new room with us as its admin; private unless ``public``."""
        create = make_event(
            self._secret,
            self.me.account.account_key,
            T.CREATE,
            {"direct": direct, "nonce": self.rng(16)},
            room=None,
            seq=1,
            prev_seq=None,
            prev=[],
            depth=0,
            ts=self._now_ms(),
            state_key="",
        )
        room = create.id
        with self._writing(None):  # all of the room, or nothing
            written = self._create_steps(room, create, name, topic, public, allow_externals)
        return Done(room, tuple(written), (PUBLIC_WARNING,) if public else ())

    def _create_steps(
        self,
        room: bytes,
        create: Event,
        name: str,
        topic: str,
        public: bool,
        allow_externals: bool,
    ) -> list[bytes]:
        self.store.add(room, [create.raw])
        written = [create.id]
        steps: list[tuple[EventType, dict[codec.Key, codec.Value]]] = []
        if name:
            steps.append((T.NAME, {"name": name}))
        if topic:
            steps.append((T.TOPIC, {"topic": topic}))
        if allow_externals or self.me.account.kind is Kind.EXTERNAL:
            steps.append((T.EXTERNALS, {"allow": True}))
        if public:
            steps.append((T.JOIN_RULE, {"rule": "public"}))
        for kind, content in steps:
            event = self._make(room, kind, content, "")
            self._write(room, event)
            written.append(event.id)
        self._publish(room)
        return written

    def direct(self, account: AccountKey) -> Done:
        """The direct conversation with ``account``: the existing one, or a new one."""
        me = self.me.account.account_key
        for info in self.list_rooms():
            if not info.direct:
                continue
            state = self.state(info.room)
            others = {a for a, m in state.membership.items() if a != me}
            if others == {account} and state.membership.get(me) is Membership.JOIN:
                return Done(info.room, ())
        other = self.directory.account(account)
        if other is None:
            raise RoomRefused(Rejection.UNKNOWN_INVITEE)
        if self.me.account.kind is Kind.EXTERNAL and other.kind is Kind.AGENT:
            raise RoomRefused(Rejection.DIRECT_ROOM)
        done = self.create("", direct=True, allow_externals=other.kind is Kind.EXTERNAL)
        invited = self.invite(done.room, account)
        return Done(done.room, done.events + invited.events)

    def _member(
        self, room: bytes, account: AccountKey, membership: Membership, reason: str = ""
    ) -> Done:
        content: dict[codec.Key, codec.Value] = {"membership": membership.value}
        if reason:
            content["reason"] = reason
        return self._act(room, T.MEMBER, content, bytes(account).hex())

    def invite(self, room: bytes, account: AccountKey) -> Done:
        """Invite ``account``; in a room whose history is shared, give it the past keys too."""
        with self._writing(room):
            done = self._member(room, account, Membership.INVITE)
            state = self.state(room)
            latest: dict[bytes, bytes] = {}
            for event in self._live(room).resolution.accepted:  # in order: the last wins
                session = event.content.get("session")
                if event.type is T.ROOM_KEY and isinstance(session, bytes):
                    latest[bytes(event.device)] = session
            bundle = self.crypto.history_contents(room, state, account, latest)
            ids = self._write_all(room, T.HISTORY_KEYS, bundle) if self.keys.unlocked else ()
        return dataclasses.replace(done, events=done.events + ids)

    def invite_email(self, room: bytes, email: str) -> Done:
        """Invite an address: its account if known, else whoever enrols with it first."""
        try:
            address = normalise_email(email)
        except InvalidAddress as exc:
            raise UsageError(
                str(exc),
                user_message=N_("'{email}' is not a valid e-mail address."),
                email=email,
            ) from exc
        known = self.account_by_email(address)
        if known is not None:
            return self.invite(room, known)
        return self._act(room, T.EMAIL_INVITE, {"invited": True}, address)

    def account_by_email(self, address: str) -> AccountKey | None:
        """The account of a normalised address, for agents only.

        For an external, always ``None``: answering would tell them who is an
        agent, which the directory rule keeps from them.
        """
        if not may_search(self.me.account.kind):
            return None
        known = self.directory.by_email(address)
        return known[0].account_key if known else None

    def join(self, room: bytes) -> Done:
        """Join a room we hold; a public room known only by its summary is asked for.

        In that case nothing is signed yet: the node fetches the room from
        the first peer that has it and joins then (``Done.warnings`` says so).
        """
        if room not in self.store.rooms():
            summary = self.directory.summary(room)
            if summary is None or not summary.public or not may_search(self.me.account.kind):
                raise RoomUnknown(room.hex())
            self._secret  # noqa: B018 - a read-only opening cannot join later either
            with self.db.transaction() as cursor:
                cursor.execute(
                    "INSERT OR IGNORE INTO wanted_rooms (room, since) VALUES (?, ?)",
                    (room, self._now_ms()),
                )
            return Done(room, (), (JOIN_REQUESTED,))
        return self._member(room, self.me.account.account_key, Membership.JOIN)

    def leave(self, room: bytes) -> Done:
        return self._member(room, self.me.account.account_key, Membership.LEAVE)

    def kick(self, room: bytes, account: AccountKey, reason: str = "") -> Done:
        if account == self.me.account.account_key:
            raise RoomRefused(Rejection.BAD_TARGET)
        return self._member(room, account, Membership.LEAVE, reason)

    def ban(self, room: bytes, account: AccountKey, reason: str = "") -> Done:
        return self._member(room, account, Membership.BAN, reason)

    def unban(self, room: bytes, account: AccountKey) -> Done:
        if self.state(room).membership.get(account) is not Membership.BAN:
            raise RoomRefused(Rejection.BAD_TARGET)
        return self._member(room, account, Membership.LEAVE)

    def set_name(self, room: bytes, name: str) -> Done:
        return self._act(room, T.NAME, {"name": name}, "")

    def set_topic(self, room: bytes, topic: str) -> Done:
        return self._act(room, T.TOPIC, {"topic": topic}, "")

    def set_public(self, room: bytes, public: bool) -> Done:
        """Open the room to every agent (with the warning), or make it invite-only."""
        warnings = (PUBLIC_WARNING,) if public else ()
        rule = "public" if public else "private"
        return self._act(room, T.JOIN_RULE, {"rule": rule}, "", warnings)

    def set_externals(self, room: bytes, allow: bool) -> Done:
        return self._act(room, T.EXTERNALS, {"allow": allow}, "")

    def set_history(self, room: bytes, shared: bool) -> Done:
        """``shared``: new members may read history from before they joined."""
        return self._act(room, T.HISTORY, {"visibility": "shared" if shared else "joined"}, "")

    def set_role(self, room: bytes, account: AccountKey, new: Role) -> Done:
        state = self.state(room)
        levels = dict(state.levels)
        if LEVELS[new] == MEMBER:
            levels.pop(account, None)
        else:
            levels[account] = LEVELS[new]
        content: dict[codec.Key, codec.Value] = {
            "users": {bytes(a): level for a, level in levels.items()},
        }
        for action in DEFAULT_POWER:
            content[action] = state.power[action]
        return self._act(room, T.POWER, content, "")

    def send(self, room: bytes, body: bytes, reply_to: bytes | None = None) -> Done:
        """Post a message, end-to-end encrypted for the room's members' devices."""
        inner: dict[codec.Key, codec.Value] = {"body": body}
        if reply_to is not None:
            inner["reply_to"] = reply_to
        return self._encrypted(room, T.MESSAGE, inner)

    def send_file(self, room: bytes, descriptor: Descriptor, body: bytes = b"") -> Done:
        """Post a file: its descriptor encrypted, its root and size in clear for relays.

        The blob must be in the store already (imported, or downloaded: a
        forwarded file is sent again by its descriptor, never re-uploaded).
        """
        return self._encrypted(
            room,
            T.MESSAGE,
            {"body": body, "file": descriptor.to_value()},
            {"file": clear_reference(descriptor)},
        )

    def react(self, room: bytes, target: bytes, key: str) -> Done:
        return self._encrypted(room, T.REACTION, {"key": key}, {"target": target})

    def edit(self, room: bytes, target: bytes, body: bytes) -> Done:
        return self._encrypted(room, T.EDIT, {"body": body}, {"target": target})

    def redact(self, room: bytes, target: bytes, reason: str = "") -> Done:
        content: dict[codec.Key, codec.Value] = {"target": target}
        if reason:
            content["reason"] = reason
        return self._act(room, T.REDACTION, content)


def open_rooms(
    home: Home,
    passphrase: str | None,
    clock: Callable[[], float],
    rng: Rng = os.urandom,
    *,
    read_receipts: bool = False,
) -> Rooms:
    """The rooms of the node in ``home``; read-only without ``passphrase``."""
    now = int(clock())
    account, trust, revocations = accounts.load_account(home, now)
    device = accounts.current_device(home)
    secret = exchange = None
    if passphrase is not None:
        secrets = accounts.DeviceSecrets.decode(
            home.read_secret(home.device_key, passphrase, accounts.NO_ACCOUNT)
        )
        secret, exchange = secrets.signing, secrets.exchange
    db = Database(home.root / DB_NAME)
    directory = DirectoryStore(db, trust, lambda: revocations, lambda: int(clock()))
    me = Me(account, device, secret, exchange)
    return Rooms(db, directory, me, clock, rng, read_receipts=read_receipts)

"""End-to-end encryption of room messages, for one device (used by :mod:`p2ptchap.rooms`).

Sending (:meth:`RoomCrypto.outbound`): our Megolm session for the room is
*rotated* — a new one is made — when a device it was shared with is no
longer a member's valid device (a member left, was kicked or banned, a
device was revoked), when the room's history setting changed, after
:data:`ROTATE_AFTER_MESSAGES` messages or :data:`ROTATE_AFTER_SECONDS`, and
when a new person joined a room whose history is not shared.  A new device
of a member already served gets the current session from its current
index.  Shares go in ``room_key`` events (sealed one-way Noise ``K``
messages, :mod:`p2ptchap.core.roomkeys`), written just before the message.

Receiving (:meth:`RoomCrypto.take_keys`, :meth:`RoomCrypto.decrypt`): a
``room_key`` share is accepted only for the session of the device that
signed the event carrying it; a ``history_keys`` bundle only from a member
of a room whose history is shared in *our* state, and only for sessions we
do not hold from their owner.  A message we cannot decrypt is recorded as
*undecrypted* with the reason, so the node can ask the session's owner —
and only the owner — for the key (:meth:`RoomCrypto.answer_request`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import ID_SIZE, MAX_REACTION, Event, EventType
from p2ptchap.core.files import Descriptor, parse_clear_reference
from p2ptchap.core.identity import DeviceCertificate
from p2ptchap.core.keys import AccountKey, DeviceKey, DeviceSecret, ExchangeSecret, Rng
from p2ptchap.core.megolm import InboundSession, MegolmError, OutboundSession, Ratchet
from p2ptchap.core.room import RoomState
from p2ptchap.core.roomkeys import (
    MAX_BUNDLE_SESSIONS,
    PREKEY_ROTATION,
    HistoryKey,
    InvalidPrekey,
    InvalidShare,
    Prekey,
    ShareKind,
    decode_history,
    decode_room_key,
    encode_history,
    encode_room_key,
    make_prekey,
    open_share,
    parse_prekey,
    seal_share,
)
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.keys import KeyStore

log = logging.getLogger(__name__)

ROTATE_AFTER_MESSAGES: Final = 100
ROTATE_AFTER_SECONDS: Final = 7 * 24 * 3600
#: Bytes of shares per key event: the event stays well under its 64 KiB limit
#: (a room-key share is ~240 bytes, so ~200 per event; a history share can be
#: 20 KiB, so two or three per event).
SHARE_BYTES_PER_EVENT: Final = 48 * 1024
#: Types whose content is encrypted, and the fields left in clear beside it.
ENCRYPTED_TYPES: Final = frozenset({EventType.MESSAGE, EventType.EDIT, EventType.REACTION})
KEY_TYPES: Final = frozenset({EventType.ROOM_KEY, EventType.HISTORY_KEYS})
#: What an undecrypted message waits for (stable strings, shown by ``status``).
NO_KEY: Final = "no-key"
BAD_MESSAGE: Final = "bad-message"

Recipients = dict[bytes, bytes]  # device key -> account key


def rotation_reason(  # noqa: PLR0911 - one return per reason, in order
    session: OutboundSession | None, now: int, recipients: Recipients, history: str
) -> str | None:
    """Why ``session`` must be replaced before the next message, or ``None``."""
    if session is None:
        return "new"
    if session.sent >= ROTATE_AFTER_MESSAGES:
        return "count"
    if now - session.created >= ROTATE_AFTER_SECONDS:
        return "age"
    if session.history != history:
        return "history"
    if any(device not in recipients for device in session.recipients):
        return "removed"
    served = set(session.recipients.values())
    if history != "shared" and any(a not in served for a in recipients.values()):
        return "joined"
    return None


class RoomCrypto:
    """Encrypts what this device sends and decrypts what it receives."""

    def __init__(
        self,
        keys: KeyStore,
        directory: DirectoryStore,
        account: AccountKey,
        device: DeviceKey,
        signing: DeviceSecret | None,
        exchange: ExchangeSecret | None,
        clock: Callable[[], float],
        rng: Rng,
    ) -> None:
        self.keys = keys
        self.directory = directory
        self.account = account
        self.device = device
        self.signing = signing
        self.exchange = exchange
        self.clock = clock
        self.rng = rng

    def _now(self) -> int:
        return int(self.clock())

    # --- prekeys --------------------------------------------------------------------------

    def ensure_prekey(self) -> Prekey | None:
        """Make our first prekey, or a new one when the current is due; return it if new.

        Also deletes the secrets of prekeys replaced more than the grace
        period ago.
        """
        if self.signing is None or not self.keys.unlocked:
            return None
        now = self._now()
        self.keys.forget_old_prekeys(now)
        current = self.keys.own_prekey()
        if current is not None and now - current[1] < PREKEY_ROTATION:
            return None
        secret = ExchangeSecret.generate(self.rng)
        raw = make_prekey(self.signing, self.account, secret.public_key(), now)
        prekey = parse_prekey(raw)
        self.keys.add_own_prekey(prekey, secret.secret_bytes())
        return prekey

    def add_prekey(self, raw: bytes) -> bool:
        """Keep a gossiped prekey of a device we vouch for; raise :class:`InvalidPrekey`."""
        prekey = parse_prekey(raw)
        if prekey.device == self.device:
            return False
        if self._certificate(prekey.account, prekey.device) is None:
            raise InvalidPrekey("prekey of a device this node does not vouch for")
        return self.keys.add_prekey(prekey)

    def _certificate(self, account: AccountKey, device: DeviceKey) -> DeviceCertificate | None:
        for certificate in self.directory.devices_of(account):
            if certificate.device_key == device:
                return certificate
        return None

    # --- sending --------------------------------------------------------------------------

    def recipients(self, state: RoomState) -> Recipients:
        """Every valid device of every member, but this one."""
        return {
            bytes(certificate.device_key): bytes(account)
            for account in state.members()
            for certificate in self.directory.devices_of(account)
            if certificate.device_key != self.device
        }

    def outbound(
        self, room: bytes, state: RoomState
    ) -> tuple[OutboundSession, list[dict[codec.Key, codec.Value]]]:
        """Our session for the next message, and the ``room_key`` contents to write first."""
        now = self._now()
        session = self.keys.outbound(room)
        recipients = self.recipients(state)
        if rotation_reason(session, now, recipients, state.history) is not None:
            session = OutboundSession.create(room, state.history, now, self.rng)
            targets = recipients
        else:
            assert session is not None
            targets = {d: a for d, a in recipients.items() if d not in session.recipients}
        contents = self.share_contents(room, session.session_id, session.ratchet, targets)
        session.recipients.update(targets)
        return session, contents

    def share_contents(
        self, room: bytes, session: bytes, ratchet: Ratchet, targets: Recipients
    ) -> list[dict[codec.Key, codec.Value]]:
        """``room_key`` event contents carrying ``ratchet`` to each target device."""
        payload = encode_room_key(ratchet)
        shares = self._seal(ShareKind.ROOM_KEY, room, session, payload, targets)
        return [{"session": session, "shares": part} for part in _chunks(shares)]

    def history_contents(
        self, room: bytes, state: RoomState, account: AccountKey, latest: dict[bytes, bytes]
    ) -> list[dict[codec.Key, codec.Value]]:
        """``history_keys`` contents giving ``account``'s devices the room's past sessions.

        Only for a room whose history is shared, and only *closed* sessions:
        a ratchet reaches every later index of its session, so a session
        still in use must not leave its members.  Ours are closed by this
        very bundle (our current one is retired: the next message starts a
        new one); another device's, when ``latest`` (owner device → the
        session of its latest ``room_key`` event here) shows it has moved
        on.  The invitee asks the owners for the sessions still open; an
        owner that answers counts it among that session's recipients.
        """
        if state.history != "shared":
            return []
        own = [s for s in self.keys.outbound_sessions(room) if s.history == "shared"]
        found = [HistoryKey(DeviceKey(self.device_bytes), s.session_id, s.first) for s in own]
        found += [
            HistoryKey(DeviceKey(s.owner), s.session_id, s.first)
            for s in self.keys.inbound_of_room(room)
            if s.first is not None and latest.get(s.owner, s.session_id) != s.session_id
        ]
        current = self.keys.outbound(room)
        if current is not None and any(s.session_id == current.session_id for s in own):
            self.keys.put_outbound(current, current=False)
        if not found:
            return []
        targets = {
            bytes(c.device_key): bytes(account)
            for c in self.directory.devices_of(account)
            if c.device_key != self.device
        }
        contents: list[dict[codec.Key, codec.Value]] = []
        for start in range(0, len(found), MAX_BUNDLE_SESSIONS):
            payload = encode_history(found[start : start + MAX_BUNDLE_SESSIONS])
            shares = self._seal(ShareKind.HISTORY, room, b"", payload, targets)
            contents += [{"shares": part} for part in _chunks(shares)]
        return contents

    @property
    def device_bytes(self) -> bytes:
        return bytes(self.device)

    def _seal(
        self, kind: ShareKind, room: bytes, session: bytes, payload: bytes, targets: Recipients
    ) -> dict[bytes, list[codec.Value]]:
        if self.exchange is None:
            raise RuntimeError("sealing needs the device's exchange secret")
        shares: dict[bytes, list[codec.Value]] = {}
        for device, account in sorted(targets.items()):
            certificate = self._certificate(AccountKey(account), DeviceKey(device))
            if certificate is None:
                continue
            prekey = self.keys.prekey_of(device)
            if prekey is not None and prekey.account == certificate.account_key:
                key, identifier = prekey.key, prekey.id
            else:  # no prekey known yet: the certificate's key (see core/roomkeys.py)
                key, identifier = certificate.exchange_key, b""
            box = seal_share(
                kind,
                payload,
                room=room,
                session=session,
                sender=self.device,
                sender_exchange=self.exchange,
                recipient=DeviceKey(device),
                recipient_key=key,
                rng=self.rng,
            )
            shares[device] = [identifier, box]
        return shares

    def encrypt(
        self, session: OutboundSession, kind: EventType, inner: dict[codec.Key, codec.Value]
    ) -> dict[codec.Key, codec.Value]:
        """The clear fields of an encrypted event's content: session, index, ciphertext."""
        plaintext = codec.encode({"type": kind.value, **inner})
        index, ciphertext = session.encrypt(bytes(self.device), plaintext)
        return {"session": session.session_id, "index": index, "ct": ciphertext}

    # --- receiving ------------------------------------------------------------------------

    def _open(self, kind: ShareKind, event: Event, session: bytes) -> bytes | None:
        """Our share in a key event, opened; ``None`` if there is none for us."""
        shares = event.content.get("shares")
        assert isinstance(shares, dict)  # checked by the content schema
        mine = shares.get(bytes(self.device))
        if not isinstance(mine, list):
            return None
        identifier, box = mine
        assert isinstance(identifier, bytes) and isinstance(box, bytes)
        certificate = self._certificate(event.account, event.device)
        if certificate is None or self.exchange is None:
            return None
        secret = (
            self.keys.own_prekey_secret(identifier) if identifier else self.exchange.secret_bytes()
        )
        if secret is None:
            log.info("a room key was sealed to a prekey this device no longer holds")
            return None
        return open_share(
            kind,
            box,
            room=event.room,
            session=session,
            sender=event.device,
            sender_exchange=certificate.exchange_key,
            recipient=self.device,
            recipient_secret=secret,
        )

    def take_keys(self, event: Event, state: RoomState) -> set[tuple[bytes, bytes]]:
        """Take in an accepted key event; return the ``(owner, session)`` pairs it taught us."""
        try:
            if event.type is EventType.ROOM_KEY:
                session = event.content["session"]
                assert isinstance(session, bytes)
                payload = self._open(ShareKind.ROOM_KEY, event, session)
                if payload is None:
                    return set()
                ratchet = decode_room_key(payload)
                owner = bytes(event.device)  # only the owner shares its session
                return (
                    {(owner, session)}
                    if self._learn(event.room, owner, session, ratchet, state, from_owner=True)
                    else set()
                )
            if state.history != "shared":
                return set()
            payload = self._open(ShareKind.HISTORY, event, b"")
            if payload is None:
                return set()
            taught = set()
            for key in decode_history(payload):
                owner = bytes(key.owner)
                if self._learn(
                    event.room, owner, key.session, key.ratchet, state, from_owner=False
                ):
                    taught.add((owner, key.session))
            return taught
        except (InvalidShare, MegolmError) as exc:
            log.info("ignored a key share: %s", exc)
            return set()

    def _learn(
        self,
        room: bytes,
        owner: bytes,
        session: bytes,
        ratchet: Ratchet,
        state: RoomState,
        *,
        from_owner: bool,
    ) -> bool:
        held = self.keys.inbound(owner, session)
        if held is None or (from_owner and not held.from_owner):
            # A bundle's copy never overrides nor blocks the owner's own share.
            first = ratchet if state.history == "shared" else None
            self.keys.put_inbound(
                InboundSession(room, owner, session, ratchet, first=first, from_owner=from_owner)
            )
            return True
        if held.room != room:
            return False  # a session id reused in another room: keep the first
        if held.merge(ratchet):
            self.keys.put_inbound(held)
            return True
        return False

    def decrypt(self, event: Event) -> dict[codec.Key, codec.Value] | None:
        """The inner content of an accepted encrypted event, or ``None`` (recorded as waiting)."""
        session = event.content["session"]
        index = event.content["index"]
        ciphertext = event.content["ct"]
        assert isinstance(session, bytes) and isinstance(index, int)
        assert isinstance(ciphertext, bytes)
        owner = bytes(event.device)
        held = self.keys.inbound(owner, session)
        if held is None:
            self.keys.set_undecrypted(event.room, event.id, owner, session, NO_KEY, self._now())
            return None
        try:
            inner = _inner(held.decrypt(index, ciphertext), event.type)
            _same_file(event, inner)
        except (MegolmError, DecodeError) as exc:
            reason = exc.reason if isinstance(exc, MegolmError) else BAD_MESSAGE
            log.info("could not decrypt %s: %s", event.id.hex()[:12], reason)
            self.keys.set_undecrypted(
                event.room,
                event.id,
                owner,
                session,
                NO_KEY if "not held" in reason else BAD_MESSAGE,
                self._now(),
            )
            return None
        self.keys.put_inbound(held)
        self.keys.put_plaintext(event.room, event.id, inner)
        return inner

    # --- key requests ---------------------------------------------------------------------

    def answer_request(
        self,
        room: bytes,
        state: RoomState,
        device: DeviceKey,
        account: AccountKey,
        sessions: list[bytes],
        joined_after: Callable[[OutboundSession], int | None],
    ) -> list[dict[codec.Key, codec.Value]]:
        """``room_key`` contents answering ``device``'s request for our ``sessions``.

        Only to a valid device of a current member (in our state).  From the
        session's start when the session was shared with that account, or
        its history is shared; otherwise from ``joined_after(session)`` —
        the first index the account may read by the room's history rule (a
        message not in the causal past of its join) — or not at all.
        """
        if not state.is_member(account) or self._certificate(account, device) is None:
            return []
        contents: list[dict[codec.Key, codec.Value]] = []
        for identifier in sessions:
            session = self.keys.outbound_session(identifier)
            if session is None or session.room != room:
                continue
            start: int | None = 0
            if bytes(account) not in session.recipients.values() and session.history != "shared":
                start = joined_after(session)
            if start is None or start >= session.ratchet.index:
                continue
            target = {bytes(device): bytes(account)}
            ratchet = session.first.advance_to(start)
            contents += self.share_contents(room, identifier, ratchet, target)
            if bytes(device) not in session.recipients:
                session.recipients[bytes(device)] = bytes(account)
                self.keys.put_outbound(session, current=self._is_current(session))
        return contents

    def _is_current(self, session: OutboundSession) -> bool:
        current = self.keys.outbound(session.room)
        return current is not None and current.session_id == session.session_id


def _inner(plaintext: bytes, kind: EventType) -> dict[codec.Key, codec.Value]:
    """The decrypted content, checked: it must say it is of the event's own type."""
    value = codec.expect_map(codec.decode(plaintext), "encrypted content")
    if value.pop("type", None) != kind.value:
        raise DecodeError("encrypted content of another kind")
    check_inner(kind, value)
    return value


def _same_file(event: Event, inner: dict[codec.Key, codec.Value]) -> None:
    """The clear file reference and the encrypted descriptor name the same file, or none."""
    clear = event.content.get("file")
    secret = inner.get("file")
    if clear is None and secret is None:
        return
    if clear is None or secret is None:
        raise DecodeError("a file named in one part of the message only")
    descriptor = Descriptor.from_value(secret)
    if parse_clear_reference(clear) != (descriptor.root, descriptor.size):
        raise DecodeError("the clear file reference and the descriptor differ")


def check_inner(kind: EventType, value: dict[codec.Key, codec.Value]) -> None:
    """Raise :class:`DecodeError` unless ``value`` is a valid inner content of ``kind``."""
    what = f"encrypted {kind.value}"
    if kind is EventType.MESSAGE:
        codec.only_keys(value, ("body", "reply_to", "file"), what)
        codec.get_bytes(value, "body", what)
        if "reply_to" in value:
            codec.get_bytes(value, "reply_to", what, size=ID_SIZE)
        if "file" in value:
            Descriptor.from_value(value["file"])
    elif kind is EventType.EDIT:
        codec.only_keys(value, ("body",), what)
        codec.get_bytes(value, "body", what)
    elif kind is EventType.REACTION:
        codec.only_keys(value, ("key",), what)
        codec.get_text(value, "key", what, MAX_REACTION)


def _chunks(shares: dict[bytes, list[codec.Value]]) -> list[dict[codec.Key, codec.Value]]:
    """The shares cut into maps of at most :data:`SHARE_BYTES_PER_EVENT` bytes each."""
    chunks: list[dict[codec.Key, codec.Value]] = []
    current: dict[codec.Key, codec.Value] = {}
    size = 0
    for device, share in shares.items():
        box = share[1]
        assert isinstance(box, bytes)
        weight = len(device) + len(box) + 16
        if current and size + weight > SHARE_BYTES_PER_EVENT:
            chunks.append(current)
            current, size = {}, 0
        current[device] = share
        size += weight
    if current:
        chunks.append(current)
    return chunks

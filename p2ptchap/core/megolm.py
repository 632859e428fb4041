"""Megolm group sessions: one sender ratchet per device and room.

The ratchet is the Megolm ratchet exactly as the Megolm specification
(matrix-org/olm ``docs/megolm.md``) defines it, so its values can be checked
against libolm: four 256-bit parts ``R(0) … R(3)``, advanced with
``H_j(A) = HMAC-SHA-256(key=A, data=bytes([j]))``.  Going from index ``i−1`` to
``i``, part ``h`` and every later part are re-derived from ``R(h)``, where
``h`` is the highest-order byte of ``i`` that changed (``i mod 2^24 = 0`` →
``h = 0``, ``i mod 2^16 = 0`` → ``1``, ``i mod 2^8 = 0`` → ``2``, else ``3``).
Jumping ahead costs at most 4 × 256 HMACs, whatever the distance.

Where we differ from Matrix, on purpose (see ``docs/protocol.md`` §14):

- The message key is HKDF-SHA-256 of the 128-byte ratchet value with the info
  ``"p2ptchap/1 megolm message key"``: 32 bytes of XChaCha20-Poly1305 key and
  its 24-byte nonce (each index gives a fresh key, so a derived nonce is safe).
- The associated data binds the room, the session id, the index and the
  sending device; there is no per-session signing key, because every room
  event is signed by its device, and a receiver only ever looks a session up
  under the device that signed the event.

A receiver keeps the ratchet at the lowest index it has not reached yet and
the keys of skipped indices below it (at most :data:`WINDOW`); a used key is
forgotten at once (forward secrecy), and an index seen before is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Final, TypeGuard

import nacl.bindings
import nacl.exceptions

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError, LocalError, RemoteError
from p2ptchap.core.kdf import hkdf_sha256
from p2ptchap.core.keys import KEY_SIZE, Rng

PART_SIZE: Final = 32
PARTS: Final = 4
RATCHET_SIZE: Final = PART_SIZE * PARTS
SESSION_ID_SIZE: Final = 32
#: The ratchet's counter is 32 bits; the last value is never used for a
#: message (the ratchet could not move past it), so a session holds at most
#: 2^32 − 1 messages — we rotate after 100.
MAX_INDEX: Final = 2**32 - 1
#: Keys of skipped indices a receiver keeps, for messages that arrive out of order.
WINDOW: Final = 256
TAG_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
KEY_INFO: Final = b"p2ptchap/1 megolm message key"
AD_CONTEXT: Final = b"p2ptchap/1 megolm\x00"
_SEEDS: Final = (b"\x00", b"\x01", b"\x02", b"\x03")


class MegolmError(RemoteError):
    """A message that cannot be decrypted: tampered, replayed, or of an unknown index."""

    default_message = "An encrypted message could not be decrypted and was set aside."

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionExhausted(LocalError):
    """Our session has no index left (it should have been rotated long before)."""

    default_message = "The encryption session is used up; send the message again."


def _h(part: bytes, j: int) -> bytes:
    return hmac.new(part, _SEEDS[j], hashlib.sha256).digest()


@dataclasses.dataclass(frozen=True, slots=True)
class Ratchet:
    """The ratchet value ``R(i)`` at index ``i`` (128 bytes)."""

    index: int
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) != RATCHET_SIZE or not 0 <= self.index <= MAX_INDEX:
            raise DecodeError("megolm: a ratchet is 128 bytes at an index below 2^32")

    @classmethod
    def generate(cls, rng: Rng) -> Ratchet:
        return cls(0, rng(RATCHET_SIZE))

    def part(self, j: int) -> bytes:
        return self.data[j * PART_SIZE : (j + 1) * PART_SIZE]

    def advance(self) -> Ratchet:
        """``R(i+1)``."""
        return self.advance_to(self.index + 1)

    def advance_to(self, index: int) -> Ratchet:
        """``R(index)``, for ``index`` at or after this one.

        For each part from the highest-order one, the number of times its
        byte of the counter must step; all but the last step re-hash that
        part alone, the last one also re-derives the parts after it.
        """
        if not self.index <= index <= MAX_INDEX:
            raise MegolmError("megolm: a ratchet only moves forward")
        parts = [self.part(j) for j in range(PARTS)]
        counter = self.index
        for j in range(PARTS):
            shift = (PARTS - 1 - j) * 8
            steps = (index >> shift) - (counter >> shift)
            if steps == 0:
                continue
            for _ in range(steps - 1):
                parts[j] = _h(parts[j], j)
            source = parts[j]
            for k in range(PARTS - 1, j - 1, -1):
                parts[k] = _h(source, k)
            counter = index & ~((1 << shift) - 1)
        return Ratchet(index, b"".join(parts))


def message_key(ratchet: Ratchet) -> bytes:
    """The 56 bytes of key (32) and nonce (24) for the message at ``ratchet.index``."""
    return hkdf_sha256(ratchet.data, info=KEY_INFO, length=KEY_SIZE + 24)


def associated_data(room: bytes, session: bytes, index: int, device: bytes) -> bytes:
    """What a message's ciphertext is bound to besides its key."""
    return AD_CONTEXT + room + session + index.to_bytes(4, "big") + device


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, ad, key[KEY_SIZE:], key[:KEY_SIZE]
    )


def open_sealed(key: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    if len(ciphertext) < TAG_SIZE:
        raise MegolmError("megolm: a ciphertext is at least its tag")
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, ad, key[KEY_SIZE:], key[:KEY_SIZE]
        )
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise MegolmError("megolm: the ciphertext or what it is bound to was altered") from exc


# --- sessions -----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class OutboundSession:
    """Our sending session in one room.

    ``first`` is the ratchet at index 0, kept so that a member who asks for
    the key later (a new device, a share that never arrived) can be given it
    from the start; ``recipients`` maps each device the key was shared with
    to its account.
    """

    room: bytes
    session_id: bytes
    ratchet: Ratchet
    first: Ratchet
    created: int
    history: str
    recipients: dict[bytes, bytes] = dataclasses.field(default_factory=dict)

    @classmethod
    def create(cls, room: bytes, history: str, now: int, rng: Rng) -> OutboundSession:
        ratchet = Ratchet.generate(rng)
        return cls(room, rng(SESSION_ID_SIZE), ratchet, ratchet, now, history)

    def encrypt(self, device: bytes, plaintext: bytes) -> tuple[int, bytes]:
        """``(index, ciphertext)`` of the next message; the ratchet moves on."""
        index = self.ratchet.index
        if index >= MAX_INDEX:
            raise SessionExhausted("megolm: no index left")
        ad = associated_data(self.room, self.session_id, index, device)
        ciphertext = seal(message_key(self.ratchet), plaintext, ad)
        self.ratchet = self.ratchet.advance()
        return index, ciphertext

    @property
    def sent(self) -> int:
        return self.ratchet.index

    def to_value(self) -> dict[codec.Key, codec.Value]:
        return {
            "room": self.room,
            "session": self.session_id,
            "index": self.ratchet.index,
            "ratchet": self.ratchet.data,
            "first": self.first.data,
            "created": self.created,
            "history": self.history,
            "recipients": {d: a for d, a in sorted(self.recipients.items())},
        }

    @classmethod
    def from_value(cls, value: codec.Value) -> OutboundSession:
        """Read back :meth:`to_value`; raise :class:`DecodeError` for anything else.

        Strict, although the value comes from our own sealed store: a value
        that is not exactly what :meth:`to_value` writes is damage, and is
        refused rather than partly read (a recipient dropped silently would
        never be sent the key again).
        """
        what = "outbound session"
        body = codec.expect_map(value, what)
        codec.only_keys(body, _OUTBOUND_FIELDS, what)
        recipients: dict[bytes, bytes] = {}
        stored = codec.expect_map(codec.field(body, "recipients", what), what)
        for device, account in stored.items():
            if not (_is_key(device) and _is_key(account)):
                raise DecodeError(f"{what}: recipients map device keys to account keys")
            recipients[device] = account
        return cls(
            codec.get_bytes(body, "room", what),
            codec.get_bytes(body, "session", what, size=SESSION_ID_SIZE),
            Ratchet(codec.get_int(body, "index", what), codec.get_bytes(body, "ratchet", what)),
            Ratchet(0, codec.get_bytes(body, "first", what)),
            codec.get_int(body, "created", what),
            codec.get_text(body, "history", what),
            recipients,
        )


_OUTBOUND_FIELDS: Final = (
    "room",
    "session",
    "index",
    "ratchet",
    "first",
    "created",
    "history",
    "recipients",
)
_INBOUND_FIELDS: Final = (
    "room",
    "owner",
    "session",
    "index",
    "ratchet",
    "skipped",
    "used",
    "from_owner",
    "first_index",
    "first",
)


def _is_key(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and len(value) == KEY_SIZE


@dataclasses.dataclass(slots=True)
class InboundSession:
    """What we hold of another device's (or our own) session, to decrypt with.

    ``ratchet`` is at the lowest index not reached yet; ``skipped`` holds the
    keys of lower indices not used yet; ``used`` the indices decrypted.
    ``first``, only for rooms whose history is shared, is the earliest ratchet
    received, kept to pass the history on to new members.
    """

    room: bytes
    owner: bytes
    session_id: bytes
    ratchet: Ratchet
    skipped: dict[int, bytes] = dataclasses.field(default_factory=dict)
    used: set[int] = dataclasses.field(default_factory=set)
    first: Ratchet | None = None
    #: Whether the owner itself shared it (``False``: from a history bundle,
    #: which a share from the owner replaces).
    from_owner: bool = True

    def decrypt(self, index: int, ciphertext: bytes) -> bytes:
        """The plaintext of message ``index``; its key is then forgotten.

        Raises :class:`MegolmError` for an index already used, one below
        what we hold, or a ciphertext that does not open.  On failure the
        session is left as it was.
        """
        if not 0 <= index < MAX_INDEX:
            raise MegolmError("megolm: index out of range")
        if index in self.used:
            raise MegolmError("megolm: this message index was already used (replay)")
        ad = associated_data(self.room, self.session_id, index, self.owner)
        if index < self.ratchet.index:
            key = self.skipped.get(index)
            if key is None:
                raise MegolmError("megolm: the key of this index is not held (too old)")
            plaintext = open_sealed(key, ciphertext, ad)
            del self.skipped[index]
        else:
            target = self.ratchet if index == self.ratchet.index else self.ratchet.advance_to(index)
            plaintext = open_sealed(message_key(target), ciphertext, ad)
            self._skip(self.ratchet, index)
            self.ratchet = target.advance()
        self.used.add(index)
        return plaintext

    def _skip(self, ratchet: Ratchet, stop: int) -> None:
        """Keep the keys of indices ``ratchet.index … stop−1`` not used yet (the latest WINDOW)."""
        start = max(ratchet.index, stop - WINDOW)
        if start >= stop:
            return
        ratchet = ratchet.advance_to(start)
        for index in range(start, stop):
            if index not in self.used:
                # Never replace a key held: a wrong share must not spoil a good one.
                self.skipped.setdefault(index, message_key(ratchet))
            ratchet = ratchet.advance()
        for index in sorted(self.skipped)[: max(0, len(self.skipped) - WINDOW)]:
            del self.skipped[index]

    def merge(self, ratchet: Ratchet) -> bool:
        """Take a share of the same session at ``ratchet.index``; ``True`` if it taught us keys.

        A share at a lower index than we hold gives the keys of the indices
        in between that were not used; one at a higher index teaches nothing.
        A ratchet that does not lead to the one we hold is not of this
        session (a forged or mistaken share): refused, and nothing changes.
        """
        if ratchet.index >= self.ratchet.index:
            return False
        if not hmac.compare_digest(ratchet.advance_to(self.ratchet.index).data, self.ratchet.data):
            raise MegolmError("megolm: this share is not of the session held")
        before = len(self.skipped)
        self._skip(ratchet, self.ratchet.index)
        if self.first is not None and ratchet.index < self.first.index:
            self.first = ratchet
        return len(self.skipped) > before

    def to_value(self) -> dict[codec.Key, codec.Value]:
        value: dict[codec.Key, codec.Value] = {
            "room": self.room,
            "owner": self.owner,
            "session": self.session_id,
            "index": self.ratchet.index,
            "ratchet": self.ratchet.data,
            "skipped": {i: k for i, k in sorted(self.skipped.items())},
            "used": list[codec.Value](sorted(self.used)),
            "from_owner": self.from_owner,
        }
        if self.first is not None:
            value["first_index"] = self.first.index
            value["first"] = self.first.data
        return value

    @classmethod
    def from_value(cls, value: codec.Value) -> InboundSession:
        """Read back :meth:`to_value`; raise :class:`DecodeError` for anything else."""
        what = "inbound session"
        body = codec.expect_map(value, what)
        codec.only_keys(body, _INBOUND_FIELDS, what)
        skipped = codec.expect_map(codec.field(body, "skipped", what), what)
        used = codec.expect_list(codec.field(body, "used", what), what)
        from_owner = codec.field(body, "from_owner", what)
        if not isinstance(from_owner, bool):
            raise DecodeError(f"{what}: from_owner is a boolean")
        first = None
        if ("first" in body) != ("first_index" in body):
            raise DecodeError(f"{what}: first and first_index go together")
        if "first" in body:
            first = Ratchet(
                codec.get_int(body, "first_index", what), codec.get_bytes(body, "first", what)
            )
        return cls(
            codec.get_bytes(body, "room", what),
            codec.get_bytes(body, "owner", what, size=KEY_SIZE),
            codec.get_bytes(body, "session", what, size=SESSION_ID_SIZE),
            Ratchet(codec.get_int(body, "index", what), codec.get_bytes(body, "ratchet", what)),
            _checked_skipped(skipped),
            _checked_used(used),
            first,
            from_owner,
        )


def _checked_used(used: list[codec.Value]) -> set[int]:
    """The used indices of a stored session: integers in increasing order, as written."""
    indices: list[int] = []
    for index in used:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_INDEX:
            raise DecodeError("inbound session: used indices are integers below 2^32 - 1")
        if indices and index <= indices[-1]:
            raise DecodeError("inbound session: used indices are sorted and distinct")
        indices.append(index)
    return set(indices)


def _checked_skipped(skipped: dict[codec.Key, codec.Value]) -> dict[int, bytes]:
    """The skipped keys of a stored session: at most a window of 56-byte keys."""
    keys: dict[int, bytes] = {}
    for index, key in skipped.items():
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < MAX_INDEX
            or not isinstance(key, bytes)
            or len(key) != KEY_SIZE + 24
        ):
            raise DecodeError("inbound session: skipped keys are 56 bytes per index")
        keys[index] = key
    if len(keys) > WINDOW:
        raise DecodeError("inbound session: more skipped keys than the window")
    return keys

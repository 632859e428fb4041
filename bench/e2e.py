"""End-to-end encryption benchmark: Megolm messages, room-key rotation, bytes per message.

Each figure is measured next to a reference taken in the same run:

* **messages**: encryption and decryption of 200-byte plaintexts with our
  Megolm sessions (:mod:`p2ptchap.core.megolm`), a new session every 100
  messages as :data:`p2ptchap.e2e.ROTATE_AFTER_MESSAGES` wants, decrypted in
  order and in a random (seeded) order within each session; against raw
  XChaCha20-Poly1305 (libsodium) of the same plaintexts under a fixed key,
  so the ratio is the cost of the ratchet and the HKDF;
* **rotation** of our room key in a room of 500 members with two devices
  each (1 000 devices, so 999 shares: every device but the sender's), every
  device having published a prekey: CPU (``time.process_time``) and wall
  time of what :meth:`~p2ptchap.e2e.RoomCrypto.outbound` does — list the
  recipients, make a session, seal a share per device through
  :meth:`~p2ptchap.e2e.RoomCrypto.share_contents` (directory and prekey
  look-ups included) — then the same seals with nothing looked up
  (:func:`~p2ptchap.core.roomkeys.seal_share` in a loop), and the look-ups
  alone; the ``room_key`` contents' bytes (canonical CBOR) and events; the
  receiving side (``open_share`` + ``decode_room_key``); against one Ed25519
  signature and one X25519 scalar multiplication per device;
* **bytes** of a MESSAGE event, encrypted and in clear (the legacy content
  ``{"body": …}``), for bodies of 0, 20, 200 and 2 000 bytes; and the share
  overhead amortised over a session's 100 messages in a room of 10 members
  with two devices each.

Medians of repeated attempts (fewer with ``--short``), garbage collection
off while timing; CPU time (``time.process_time``), as the machine is
shared.  Nothing here is asserted on time.

Run:  python bench/e2e.py [--short] [--members 500]
"""

from __future__ import annotations

import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import Timing, timed
from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import (
    MAX_EVENT_BYTES,
    Event,
    EventType,
    InvalidEvent,
    make_event,
    parse_event,
)
from p2ptchap.core.identity import parse_device_certificate
from p2ptchap.core.keys import AccountKey, DeviceKey, DeviceSecret, ExchangeSecret
from p2ptchap.core.megolm import InboundSession, OutboundSession, Ratchet, message_key
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.core.roomkeys import (
    ShareKind,
    decode_room_key,
    encode_room_key,
    make_prekey,
    open_share,
    seal_share,
)
from p2ptchap.e2e import ROTATE_AFTER_MESSAGES, RoomCrypto
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.keys import KeyStore, storage_key
from tests.conftest import NOW, make_org, make_rng

ROOM = bytes(range(32))
PLAINTEXT_SIZE = 200
BODIES = (0, 20, 200, 2_000)
SMALL_MEMBERS = 10  # the room of the amortised-overhead figure


# --- 1. messages ------------------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    session: bytes
    first: Ratchet
    messages: list[tuple[int, bytes]]


@dataclasses.dataclass
class MessageTimings:
    count: int
    encrypt: Timing
    raw_encrypt: Timing
    decrypt: Timing
    shuffled: Timing
    raw_decrypt: Timing
    advance: Timing
    derive: Timing


def bench_messages(
    count: int, attempts: int, seed: int, progress: common.Progress
) -> MessageTimings:
    rng = random.Random(seed)
    device = rng.randbytes(32)
    plaintexts = [rng.randbytes(PLAINTEXT_SIZE) for _ in range(count)]
    per_session = ROTATE_AFTER_MESSAGES
    session_rng = make_rng(seed + 1)
    sent: list[Sent] = []

    def encrypt() -> None:
        sent.clear()
        for start in range(0, count, per_session):
            session = OutboundSession.create(ROOM, "joined", NOW, session_rng)
            out = [session.encrypt(device, p) for p in plaintexts[start : start + per_session]]
            sent.append(Sent(session.session_id, session.first, out))

    orders = [rng.sample(range(per_session), per_session) for _ in range(count // per_session)]

    def decrypt(shuffled: bool) -> Callable[[], None]:
        def run() -> None:
            for number, item in enumerate(sent):
                inbound = InboundSession(ROOM, device, item.session, item.first)
                order = orders[number] if shuffled else range(len(item.messages))
                for i in order:
                    index, ciphertext = item.messages[i]
                    inbound.decrypt(index, ciphertext)

        return run

    key, nonce = rng.randbytes(32), rng.randbytes(24)
    ad = rng.randbytes(len(ROOM) + 32 + 4 + 32) + bytes(18)  # as long as Megolm's
    raw: list[bytes] = []

    def raw_encrypt() -> None:
        raw.clear()
        for p in plaintexts:
            raw.append(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(p, ad, nonce, key))

    def raw_decrypt() -> None:
        for c in raw:
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(c, ad, nonce, key)

    ratchet = Ratchet.generate(session_rng)

    def advance() -> None:
        r = ratchet
        for _ in range(count):
            r = r.advance()

    def derive() -> None:
        for _ in range(count):
            message_key(ratchet)

    progress(f"messages: {count} of {PLAINTEXT_SIZE} bytes, sessions of {per_session}")
    enc = timed(encrypt, attempts)
    raw_enc = timed(raw_encrypt, attempts)
    # Check once that every message opens to its plaintext (not timed).
    check = iter(plaintexts)
    for item in sent:
        inbound = InboundSession(ROOM, device, item.session, item.first)
        assert all(inbound.decrypt(i, c) == next(check) for i, c in item.messages)
    dec = timed(decrypt(False), attempts)
    shuffled = timed(decrypt(True), attempts)
    raw_dec = timed(raw_decrypt, attempts)
    adv = timed(advance, attempts)
    kdf = timed(derive, attempts)

    return MessageTimings(count, enc, raw_enc, dec, shuffled, raw_dec, adv, kdf)


# --- 2. rotation ------------------------------------------------------------------------------


@dataclasses.dataclass
class Device:
    account: AccountKey
    key: DeviceKey
    signing: DeviceSecret
    exchange: ExchangeSecret
    certificate: bytes
    prekey_secret: bytes = b""


class Members:
    """Room state as ``RoomCrypto.recipients`` reads it: the members' account keys."""

    def __init__(self, accounts: list[AccountKey]) -> None:
        self._accounts = accounts

    def members(self) -> list[AccountKey]:
        return list(self._accounts)


@dataclasses.dataclass
class Cell:
    """A sender's ``RoomCrypto`` whose directory holds every member's devices."""

    crypto: RoomCrypto
    bare: RoomCrypto  # the same directory, a key store without any prekey
    sender: Device
    devices: list[Device]  # the others, in member order
    accounts: list[AccountKey]
    setup_seconds: float


def make_cell(folder: Path, members: int, seed: int) -> Cell:
    """``members`` accounts with two devices each; the sender is the first account's first."""
    start = time.perf_counter()
    rng = make_rng(seed)
    org = make_org(rng)
    revocations = RevocationSet()
    db = Database(folder / "sender.db")
    directory = DirectoryStore(db, org.trust, lambda: revocations, lambda: NOW)
    devices: list[Device] = []
    accounts: list[AccountKey] = []
    for number in range(members):
        member = org.member(f"agent{number}@interieur.gouv.fr", f"Agent {number}")
        account = member.account.account_key
        accounts.append(account)
        directory.add_account(member.certificate)
        pairs = [(member.device_secret, member.exchange_secret, member.device)]
        pairs.append(member.new_device("phone", rng))
        for signing, exchange, certificate in pairs:
            directory.add_device(certificate)
            key = parse_device_certificate(certificate).device_key
            devices.append(Device(account, key, signing, exchange, certificate))
    sender = devices.pop(0)

    def crypto_on(path: Path) -> RoomCrypto:
        keys = KeyStore(
            Database(path),
            storage_key(sender.signing.secret_bytes(), sender.exchange.secret_bytes()),
            rng,
        )
        return RoomCrypto(
            keys,
            directory,
            sender.account,
            sender.key,
            sender.signing,
            sender.exchange,
            lambda: NOW,
            rng,
        )

    crypto = crypto_on(folder / "sender.db")
    for device in devices:  # every device has published its prekey, gossiped to the sender
        secret = ExchangeSecret.generate(rng)
        device.prekey_secret = secret.secret_bytes()
        raw = make_prekey(device.signing, device.account, secret.public_key(), NOW)
        assert crypto.add_prekey(raw)
    bare = crypto_on(folder / "bare.db")
    return Cell(crypto, bare, sender, devices, accounts, time.perf_counter() - start)


def bench_references(count: int, attempts: int, seed: int) -> dict[str, float]:
    """Seconds per raw operation: X25519 (variable and fixed base), Ed25519 sign."""
    rng = random.Random(seed)
    scalars = [rng.randbytes(32) for _ in range(count)]
    points = [nacl.bindings.crypto_scalarmult_base(s) for s in scalars]
    _, signing = nacl.bindings.crypto_sign_seed_keypair(rng.randbytes(32))
    message = rng.randbytes(200)

    def dh() -> None:
        for s, p in zip(scalars, reversed(points), strict=True):
            nacl.bindings.crypto_scalarmult(s, p)

    def base() -> None:
        for s in scalars:
            nacl.bindings.crypto_scalarmult_base(s)

    def sign() -> None:
        for _ in range(count):
            nacl.bindings.crypto_sign(message, signing)

    return {
        "x25519": timed(dh, attempts).cpu / count,
        "x25519_base": timed(base, attempts).cpu / count,
        "ed25519_sign": timed(sign, attempts).cpu / count,
    }


@dataclasses.dataclass
class Rotation:
    shares: int
    listing: Timing
    full: Timing
    direct: Timing
    no_prekeys: Timing
    certificate_lookups: Timing
    prekey_lookups: Timing
    opening: Timing
    content_bytes: list[int]
    event_bytes: list[int]
    signing: Timing
    parsing: Timing
    event_error: str


def bench_rotation(cell: Cell, attempts: int, seed: int, progress: common.Progress) -> Rotation:
    crypto = cell.crypto
    state = Members(cell.accounts)
    targets = crypto.recipients(state)
    assert len(targets) == len(cell.devices)
    session_rng = make_rng(seed + 2)
    made: list[tuple[OutboundSession, list[dict[codec.Key, codec.Value]]]] = []

    def rotate(on: RoomCrypto) -> Callable[[], None]:
        def run() -> None:
            session = OutboundSession.create(ROOM, "joined", NOW, session_rng)
            contents = on.share_contents(ROOM, session.session_id, session.ratchet, targets)
            made.append((session, contents))

        return run

    prekeys = {bytes(d.key): crypto.keys.prekey_of(bytes(d.key)) for d in cell.devices}
    sender_exchange = cell.sender.exchange

    def direct() -> None:
        session = OutboundSession.create(ROOM, "joined", NOW, session_rng)
        payload = encode_room_key(session.ratchet)
        for device in cell.devices:
            prekey = prekeys[bytes(device.key)]
            assert prekey is not None
            seal_share(
                ShareKind.ROOM_KEY,
                payload,
                room=ROOM,
                session=session.session_id,
                sender=cell.sender.key,
                sender_exchange=sender_exchange,
                recipient=device.key,
                recipient_key=prekey.key,
                rng=session_rng,
            )

    def certificate_lookups() -> None:  # what ``RoomCrypto._certificate`` does per share
        for device in cell.devices:
            certificates = crypto.directory.devices_of(device.account)
            assert any(c.device_key == device.key for c in certificates)

    def prekey_lookups() -> None:
        for device in cell.devices:
            crypto.keys.prekey_of(bytes(device.key))

    progress(f"rotation: {len(targets)} shares, {attempts} attempts of each variant")
    listing = timed(lambda: crypto.recipients(state), attempts)
    full = timed(rotate(crypto), attempts)
    session, contents = made[-1]
    no_prekeys = timed(rotate(cell.bare), attempts)
    direct_timing = timed(direct, attempts)
    certificates = timed(certificate_lookups, attempts)
    prekey_timing = timed(prekey_lookups, attempts)

    # The receiving side: each device opens its own share of the last full rotation.
    sealed: dict[bytes, list[codec.Value]] = {}
    for content in contents:
        shares = content["shares"]
        assert isinstance(shares, dict)
        sealed.update(shares)
    assert len(sealed) == len(targets)
    sender_key = parse_device_certificate(cell.sender.certificate).exchange_key

    def open_all() -> None:
        for device in cell.devices:
            identifier, box = sealed[bytes(device.key)]
            assert isinstance(box, bytes) and identifier
            ratchet = decode_room_key(
                open_share(
                    ShareKind.ROOM_KEY,
                    box,
                    room=ROOM,
                    session=session.session_id,
                    sender=cell.sender.key,
                    sender_exchange=sender_key,
                    recipient=device.key,
                    recipient_secret=device.prekey_secret,
                )
            )
            assert ratchet == session.ratchet

    opening = timed(open_all, attempts)

    # What the contents weigh, alone and as signed room events; the time to sign them
    # (``make_event`` signs, then parses its own event strictly) and to check them on arrival.
    content_bytes = [len(codec.encode(c)) for c in contents]
    events: list[Event] = []

    def sign_events() -> None:
        events.clear()
        for number, content in enumerate(contents):
            events.append(
                make_event(
                    cell.sender.signing,
                    cell.sender.account,
                    EventType.ROOM_KEY,
                    content,
                    room=ROOM,
                    seq=10 + number,
                    prev_seq=bytes(32),
                    prev=[bytes(32)],
                    depth=10 + number,
                    ts=NOW * 1000,
                )
            )

    def parse_events() -> None:
        for event in events:
            parse_event(event.raw)

    error = ""
    signing = parsing = Timing(0.0, 0.0, [])
    try:
        signing = timed(sign_events, attempts)
        parsing = timed(parse_events, attempts)
    except (InvalidEvent, DecodeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Rotation(
        len(targets),
        listing,
        full,
        direct_timing,
        no_prekeys,
        certificates,
        prekey_timing,
        opening,
        content_bytes,
        [len(e.raw) for e in events],
        signing,
        parsing,
        error,
    )


def bench_small_room(
    big: Cell, small: Cell, attempts: int, seed: int, progress: common.Progress
) -> tuple[Timing, Timing, int]:
    """A rotation in a room of SMALL_MEMBERS members, with a small and with a big directory."""
    session_rng = make_rng(seed + 5)
    repeat = 50  # rotations per attempt: one is too short to time

    def rotations(cell: Cell) -> tuple[Callable[[], None], int]:
        targets = cell.crypto.recipients(Members(cell.accounts[:SMALL_MEMBERS]))

        def run() -> None:
            for _ in range(repeat):
                session = OutboundSession.create(ROOM, "joined", NOW, session_rng)
                cell.crypto.share_contents(ROOM, session.session_id, session.ratchet, targets)

        return run, len(targets) * repeat

    run_small, shares = rotations(small)
    run_big, same = rotations(big)
    assert shares == same
    progress(
        f"small room: {shares // repeat} shares, directories of {len(small.devices) + 1}"
        f" and {len(big.devices) + 1} devices"
    )
    return timed(run_small, attempts), timed(run_big, attempts), shares


# --- 3. bytes ---------------------------------------------------------------------------------


def message_event(cell: Cell, content: dict[codec.Key, codec.Value], kind: EventType) -> int:
    event = make_event(
        cell.sender.signing,
        cell.sender.account,
        kind,
        content,
        room=ROOM,
        seq=1_000,
        prev_seq=bytes(range(32, 64)),
        prev=[bytes(range(64, 96))],
        depth=1_000,
        ts=NOW * 1000,
    )
    return len(event.raw)


def bench_bytes(cell: Cell, seed: int) -> tuple[list[tuple[int, int, int | None, int]], dict]:
    """Per body size: (body, encrypted event, clear event or None, clear by difference)."""
    rng = random.Random(seed)
    session = OutboundSession.create(ROOM, "joined", NOW, make_rng(seed + 3))
    rows = []
    for size in BODIES:
        body = rng.randbytes(size)
        encrypted = cell.crypto.encrypt(session, EventType.MESSAGE, {"body": body})
        clear_content: dict[codec.Key, codec.Value] = {"body": body}
        encrypted_size = message_event(cell, encrypted, EventType.MESSAGE)
        by_difference = encrypted_size - (
            len(codec.encode(encrypted)) - len(codec.encode(clear_content))
        )
        try:
            clear_size: int | None = message_event(cell, clear_content, EventType.MESSAGE)
        except (DecodeError, ValueError, InvalidEvent):
            clear_size = None  # the legacy clear content is gone: use the difference
        rows.append((size, encrypted_size, clear_size, by_difference))

    # The shares of one session in a room of SMALL_MEMBERS members (two devices each).
    small = {
        bytes(d.key): bytes(d.account)
        for d in cell.devices
        if d.account in cell.accounts[:SMALL_MEMBERS]
    }
    session = OutboundSession.create(ROOM, "joined", NOW, make_rng(seed + 4))
    contents = cell.crypto.share_contents(ROOM, session.session_id, session.ratchet, small)
    key_events = [message_event(cell, c, EventType.ROOM_KEY) for c in contents]
    amortised = {
        "members": SMALL_MEMBERS,
        "devices": len(small) + 1,
        "shares": len(small),
        "events": len(key_events),
        "bytes": sum(key_events),
        "per_message": sum(key_events) / ROTATE_AFTER_MESSAGES,
    }
    return rows, amortised


# --- the section -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Params:
    messages: int  # encrypted and decrypted
    attempts: int  # per figure (median)
    members: int  # of the big room (two devices each)
    seed: int = 7


FULL = Params(messages=20_000, attempts=5, members=500)
SHORT = Params(messages=2_000, attempts=1, members=50)


def _message_rows(section: common.Section, t: MessageTimings) -> None:
    n = t.count
    section.add(
        "encrypt",
        f"encrypt, Megolm, {PLAINTEXT_SIZE}-byte plaintexts (new session every "
        f"{ROTATE_AFTER_MESSAGES})",
        n / t.encrypt.cpu,
        "/s",
        n / t.raw_encrypt.cpu,
        "raw XChaCha20-Poly1305 encrypt",
    )
    section.add(
        "decrypt",
        "decrypt, in order",
        n / t.decrypt.cpu,
        "/s",
        n / t.raw_decrypt.cpu,
        "raw XChaCha20-Poly1305 decrypt",
    )
    section.add(
        "decrypt_shuffled",
        f"decrypt, random order within each session of {ROTATE_AFTER_MESSAGES}",
        n / t.shuffled.cpu,
        "/s",
        n / t.decrypt.cpu,
        "in order",
    )
    raw = t.raw_encrypt.cpu / n * 1e6
    section.add(
        "ratchet_step",
        "of which: one ratchet step (`Ratchet.advance`, one HMAC-SHA-256 most times)",
        t.advance.cpu / n * 1e6,
        "µs",
        raw,
        "raw encrypt",
    )
    section.add(
        "message_key",
        "of which: message key (`message_key`, HKDF-SHA-256: three HMACs)",
        t.derive.cpu / n * 1e6,
        "µs",
        raw,
        "raw encrypt",
    )


def _rotation_rows(
    section: common.Section,
    rotation: Rotation,
    references: dict[str, float],
    small: tuple[Timing, Timing, int],
    small_devices: int,
) -> None:
    n = rotation.shares
    dh = references["x25519"]
    floor = f"{n} × X25519"

    def cpu_ms(key: str, label: str, t: Timing) -> None:
        section.add(key, label, t.cpu * 1000, "ms", dh * n * 1000, floor)

    section.add(
        "rotation",
        f"room-key rotation to {n + 1} devices: recipients + session + {n} shares, CPU",
        (rotation.listing.cpu + rotation.full.cpu) * 1000,
        "ms",
        dh * n * 1000,
        floor,
    )
    section.add(
        "rotation.wall",
        "… the same, wall time (session + shares)",
        rotation.full.wall * 1000,
        "ms",
        rotation.full.cpu * 1000,
        "its CPU time",
    )
    cpu_ms("rotation.recipients", "… of which: recipients listed", rotation.listing)
    cpu_ms("rotation.no_prekeys", "… same rotation, no prekey known", rotation.no_prekeys)
    cpu_ms("rotation.seals_only", "… the seals with nothing looked up", rotation.direct)
    cpu_ms(
        "rotation.certificate_lookups",
        "… the certificate look-ups alone (`devices_of`)",
        rotation.certificate_lookups,
    )
    cpu_ms(
        "rotation.prekey_lookups",
        "… the prekey look-ups alone (`KeyStore.prekey_of`)",
        rotation.prekey_lookups,
    )
    if not rotation.event_error:
        events = len(rotation.event_bytes)
        cpu_ms("rotation.signing", f"… signing the {events} `room_key` events", rotation.signing)
        cpu_ms("rotation.parsing", f"… checking them on arrival ({events})", rotation.parsing)
        section.add(
            "rotation.largest_event",
            f"… the largest of its {events} `room_key` event(s)",
            max(rotation.event_bytes),
            "B",
            MAX_EVENT_BYTES,
            "the event size limit",
        )
    else:
        section.notes.append(f"room_key events refused: {rotation.event_error}")
    section.add(
        "open_share",
        "receiving: one device opens its share (`open_share` + decode)",
        rotation.opening.cpu / n * 1e6,
        "µs",
        dh * 1e6,
        "one X25519",
    )
    small_dir, big_dir, shares = small
    section.add(
        "small_room_share",
        f"{SMALL_MEMBERS}-member room, per share, directory of {small_devices} devices",
        small_dir.cpu / shares * 1e6,
        "µs",
        dh * 1e6,
        "one X25519",
    )
    section.add(
        "small_room_share.big_directory",
        f"… the same room, directory of {n + 1} devices",
        big_dir.cpu / shares * 1e6,
        "µs",
        small_dir.cpu / shares * 1e6,
        "small directory",
    )
    ideal = 2 * dh + 2 * references["x25519_base"]
    section.add(
        "ideal_seal",
        "ideal seal per share (Noise K: 2 X25519 + 2 fixed-base)",
        ideal * 1e6,
        "µs",
        dh * 1e6,
        "one X25519",
    )
    section.add(
        "ed25519_sign",
        "Ed25519 sign (`crypto_sign`)",
        references["ed25519_sign"] * 1e6,
        "µs",
        dh * 1e6,
        "one X25519",
    )


def _byte_rows(
    section: common.Section,
    rows: list[tuple[int, int, int | None, int]],
    amortised: dict,
    rotation: Rotation,
) -> None:
    for size, encrypted, clear, by_difference in rows:
        reference = clear if clear is not None else by_difference
        how = "clear event" if clear is not None else "clear event, by difference"
        section.add(
            f"bytes.body{size}",
            f"MESSAGE event with a {size}-byte body, encrypted",
            encrypted,
            "B",
            reference,
            how,
        )
    two_hundred = next(encrypted for size, encrypted, _, _ in rows if size == 200)
    section.add(
        "bytes.shares_per_message",
        f"room keys per message, {amortised['members']} members × 2 devices "
        f"({amortised['shares']} shares, {amortised['bytes']} B per {ROTATE_AFTER_MESSAGES})",
        amortised["per_message"],
        "B",
        two_hundred,
        "a 200-byte message's event",
    )
    if rotation.event_bytes:
        section.add(
            "bytes.shares_per_message.big_room",
            f"room keys per message, {rotation.shares + 1} devices "
            f"({len(rotation.event_bytes)} event(s), {sum(rotation.event_bytes)} B "
            f"per {ROTATE_AFTER_MESSAGES})",
            sum(rotation.event_bytes) / ROTATE_AFTER_MESSAGES,
            "B",
            two_hundred,
            "a 200-byte message's event",
        )


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "e2e",
        "End-to-end encryption",
        f"{params.messages} messages; a room of {params.members} members × 2 devices, every "
        f"device with a prekey; CPU time, medians of {params.attempts}.",
    )
    timings = bench_messages(params.messages, params.attempts, params.seed, progress)
    with tempfile.TemporaryDirectory() as folder:
        progress(f"set-up: {params.members} members with two devices each, prekeys published")
        cell = make_cell(Path(folder), params.members, params.seed)
        (Path(folder) / "small").mkdir()
        small = make_cell(Path(folder) / "small", SMALL_MEMBERS, params.seed + 10)
        references = bench_references(1_000, params.attempts, params.seed)
        rotation = bench_rotation(cell, params.attempts, params.seed, progress)
        small_room = bench_small_room(cell, small, params.attempts, params.seed, progress)
        byte_rows, amortised = bench_bytes(small, params.seed)
    _message_rows(section, timings)
    _rotation_rows(section, rotation, references, small_room, len(small.devices) + 1)
    _byte_rows(section, byte_rows, amortised, rotation)
    section.notes.append(
        f"rotation wall attempts: {', '.join(f'{w:.3f}' for w in rotation.full.walls)} s; "
        f"set-up (not timed) {cell.setup_seconds:.1f} s"
    )
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (
    common.Option("--members", "members", help="members of the big room"),
    common.Option("--seed", "seed"),
)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

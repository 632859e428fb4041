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

Medians of repeated attempts (fewer with ``--quick``), garbage collection
off while timing.  Nothing here is asserted on time.

Run:  .venv/bin/python bench/e2e.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl
import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from p2ptchap.e2e import ROTATE_AFTER_MESSAGES, SHARE_BYTES_PER_EVENT, RoomCrypto
from p2ptchap.store.db import Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.keys import KeyStore, storage_key
from tests.conftest import NOW, make_org, make_rng

ROOM = bytes(range(32))
PLAINTEXT_SIZE = 200
BODIES = (0, 20, 200, 2_000)
SMALL_MEMBERS = 10  # the room of the amortised-overhead figure


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Timing:
    """Median wall and CPU seconds of repeated attempts."""

    wall: float
    cpu: float
    walls: list[float]


def timed(run: Callable[[], object], attempts: int) -> Timing:
    walls, cpus = [], []
    for _ in range(attempts):
        gc.collect()
        gc.disable()
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            gc.enable()
        walls.append(wall)
        cpus.append(cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), walls)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} /s".replace(",", " ")


# --- 1. messages ------------------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    session: bytes
    first: Ratchet
    messages: list[tuple[int, bytes]]


def bench_messages(count: int, attempts: int, seed: int) -> list[tuple[str, str, str, str]]:
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

    def speed(t: Timing) -> str:  # CPU time: this machine is shared, wall time is noisier
        return f"{rate(count, t.cpu)} ({us(t.cpu / count)})"

    return [
        (
            f"encrypt, Megolm, {PLAINTEXT_SIZE}-byte plaintexts (new session every {per_session})",
            speed(enc),
            f"raw XChaCha20-Poly1305 encrypt {speed(raw_enc)}",
            f"{raw_enc.cpu / enc.cpu:.2f}",
        ),
        (
            "decrypt, in order",
            speed(dec),
            f"raw decrypt {speed(raw_dec)}",
            f"{raw_dec.cpu / dec.cpu:.2f}",
        ),
        (
            f"decrypt, random order within each session of {per_session}",
            speed(shuffled),
            f"in order {speed(dec)}",
            f"{dec.cpu / shuffled.cpu:.2f}",
        ),
        (
            "of which: ratchet step (`Ratchet.advance`, 1 HMAC-SHA-256 most times)",
            speed(adv),
            f"raw encrypt {speed(raw_enc)}",
            f"{raw_enc.cpu / adv.cpu:.2f}",
        ),
        (
            "of which: message key (`message_key`, HKDF-SHA-256, 3 HMACs)",
            speed(kdf),
            f"raw encrypt {speed(raw_enc)}",
            f"{raw_enc.cpu / kdf.cpu:.2f}",
        ),
    ]


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


def bench_rotation(cell: Cell, attempts: int, seed: int) -> Rotation:
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
    big: Cell, small: Cell, attempts: int, seed: int
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


# --- report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and attempts")
    parser.add_argument("--members", type=int, default=500, help="members of the big room")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    messages = 2_000 if args.quick else 20_000
    attempts = 1 if args.quick else 5

    print(f"date: {datetime.date.today()}")
    print(
        f"machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, PyNaCl {nacl.__version__} (libsodium)"
    )
    print(f"mode: {'quick' if args.quick else 'full'}, {attempts} attempt(s) per figure, medians")

    message_rows = bench_messages(messages, attempts, args.seed)

    with tempfile.TemporaryDirectory() as folder:
        progress(f"set-up: {args.members} members with two devices each, prekeys published")
        cell = make_cell(Path(folder), args.members, args.seed)
        progress(f"set-up took {cell.setup_seconds:.1f} s")
        (Path(folder) / "small").mkdir()
        small = make_cell(Path(folder) / "small", SMALL_MEMBERS, args.seed + 10)
        references = bench_references(1_000, attempts, args.seed)
        rotation = bench_rotation(cell, attempts, args.seed)
        small_dir, big_dir, small_shares = bench_small_room(cell, small, attempts, args.seed)
        byte_rows, amortised = bench_bytes(small, args.seed)

    print()
    print("### Messages")
    print()
    print(f"{messages} messages, medians of {attempts} attempts, CPU time (process_time).")
    print()
    print("| measure | value | reference (same run) | ratio |")
    print("|---|---|---|---|")
    for row in message_rows:
        print("| " + " | ".join(row) + " |")

    n = rotation.shares
    dh, base, sign = references["x25519"], references["x25519_base"], references["ed25519_sign"]
    per_share = rotation.full.cpu / n
    ideal = 2 * dh + 2 * base  # Noise K: e and s derived (base), es and ss (variable base)
    print()
    print("### Room-key rotation")
    print()
    print(
        f"{len(cell.accounts)} members × 2 devices = {n + 1} devices, {n} shares (all but the"
        f" sender's); every device has a prekey.  Medians of {attempts};"
        f" set-up (not timed) {cell.setup_seconds:.1f} s."
    )
    print()
    print("| measure | CPU | wall | per share (CPU) | ratio to one X25519 |")
    print("|---|---|---|---|---|")

    def line(label: str, t: Timing, count: int = n) -> None:
        print(
            f"| {label} | {ms(t.cpu)} | {ms(t.wall)} | {us(t.cpu / count)}"
            f" | {t.cpu / count / dh:.1f} |"
        )

    line("recipients listed (`RoomCrypto.recipients`)", rotation.listing)
    line("rotation: new session + `RoomCrypto.share_contents` (prekeys)", rotation.full)
    line("same, no prekey known (certificate keys; no prekey parse)", rotation.no_prekeys)
    line("same seals with nothing looked up (`seal_share` loop)", rotation.direct)
    line("of the full path: certificate look-ups (`devices_of` scan)", rotation.certificate_lookups)
    line("of the full path: prekey look-ups (`KeyStore.prekey_of`)", rotation.prekey_lookups)
    if not rotation.event_error:
        events = len(rotation.event_bytes)
        line(f"signing the {events} `room_key` events (`make_event`)", rotation.signing)
        line(f"checking them on arrival (`parse_event` × {events})", rotation.parsing)
    line("receiving: one device opens its share (`open_share` + decode)", rotation.opening)
    line(
        f"{SMALL_MEMBERS}-member room ({small_shares // 50} shares), directory of"
        f" {len(small.devices) + 1} devices, ×50",
        small_dir,
        small_shares,
    )
    line(
        f"same room, directory of {n + 1} devices, ×50",
        big_dir,
        small_shares,
    )
    print(f"| reference: X25519 `crypto_scalarmult` × {n} | {ms(dh * n)} | — | {us(dh)} | 1.0 |")
    print(
        f"| reference: X25519 `crypto_scalarmult_base` × {n} | {ms(base * n)} | — | {us(base)}"
        f" | {base / dh:.1f} |"
    )
    print(
        f"| reference: Ed25519 `crypto_sign` × {n} | {ms(sign * n)} | — | {us(sign)}"
        f" | {sign / dh:.1f} |"
    )
    print(
        f"| ideal seal: 2 X25519 + 2 fixed-base (Noise K) | {ms(ideal * n)} | — | {us(ideal)}"
        f" | {ideal / dh:.1f} |"
    )
    print(
        f"| ideal open: 2 X25519 + 1 fixed-base | {ms((2 * dh + base) * n)} | — |"
        f" {us(2 * dh + base)} | {(2 * dh + base) / dh:.1f} |"
    )
    total = rotation.listing.cpu + rotation.full.cpu
    print()
    print(
        f"whole rotation (list + session + seal), CPU: {total:.3f} s for {n + 1} devices"
        f" (target < 1 s); per share {per_share / dh:.1f} × X25519,"
        f" {per_share / sign:.1f} × Ed25519 sign; wall attempts"
        f" {', '.join(f'{w:.3f}' for w in rotation.full.walls)} s"
    )
    print(
        f"room_key contents: {len(rotation.content_bytes)} event(s) of up to"
        f" {SHARE_BYTES_PER_EVENT} B of shares, {sum(rotation.content_bytes)} B of CBOR"
        f" ({', '.join(str(b) for b in rotation.content_bytes)});"
        f" {sum(rotation.content_bytes) / n:.0f} B per share"
    )
    if not rotation.event_error:
        print(
            f"as signed events: {', '.join(str(b) for b in rotation.event_bytes)} B"
            f" (limit {MAX_EVENT_BYTES}); amortised over a session's {ROTATE_AFTER_MESSAGES}"
            f" messages: {sum(rotation.event_bytes) / ROTATE_AFTER_MESSAGES:.0f} B per message"
        )
    else:
        print(f"as signed events: REFUSED — {rotation.event_error}")

    print()
    print("### Bytes per message")
    print()
    print("| body | encrypted MESSAGE event | clear event | overhead | ratio |")
    print("|---|---|---|---|---|")
    for size, encrypted, clear, by_difference in byte_rows:
        reference = clear if clear is not None else by_difference
        note = "" if clear is not None else " (by difference)"
        print(
            f"| {size} B | {encrypted} B | {reference} B{note} | +{encrypted - reference} B"
            f" | {encrypted / reference:.2f} |"
        )
    print()
    print(
        f"amortised shares, {amortised['members']} members × 2 devices"
        f" ({amortised['shares']} shares), one session per {ROTATE_AFTER_MESSAGES} messages:"
        f" {amortised['events']} room_key event(s) of {amortised['bytes']} B ="
        f" {amortised['per_message']:.0f} B per message"
    )


if __name__ == "__main__":
    main()

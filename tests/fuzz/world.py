"""One small, deterministic world of valid objects: the seeds every fuzz test mutates.

An organisation with two agents and an external, their certificates,
revocations, a room holding one event of every type, prekeys, key shares,
receipts, a public-room summary, a sealed file, a sealed secret, and one
message of every kind of the sync, transfer, network and pairing
protocols.  Built once per process (:func:`world`) from a seeded rng, so
a failing example replays exactly; ``tests/fuzz/make_corpus.py`` writes the
same objects out as the atheris seed corpus.
"""

from __future__ import annotations

import dataclasses
import functools

from p2ptchap.core import codec, pairing, peerwire, revocation, roomkeys, sync, transfer, vault
from p2ptchap.core.channel import make_credentials
from p2ptchap.core.directory import make_summary
from p2ptchap.core.events import Event, EventType, make_event
from p2ptchap.core.files import Descriptor, clear_reference, encrypt_bytes
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import ExchangeSecret, Rng
from p2ptchap.core.megolm import InboundSession, OutboundSession, Ratchet
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.core.pairing import (
    EnrolRequest,
    Issued,
    Linked,
    Offer,
    Refused,
    sign_link,
)
from p2ptchap.core.room import Person, encode_state, resolve
from tests.conftest import NOW, PASSPHRASE, Member, Org, make_org, make_rng

T = EventType
FILE_KEY = bytes(range(32))
FILE_DATA = b"Compte rendu de la cellule de crise\n" * 2000  # two chunks


@dataclasses.dataclass
class World:
    """Everything the fuzz tests start from (see the module documentation)."""

    rng: Rng
    org: Org
    alice: Member
    bob: Member
    external: Member
    events: list[Event]
    static: X25519KeyPair
    credentials: bytes
    prekey_secret: ExchangeSecret
    seeds: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)

    def directory(self, account: object, device: object) -> Person | None:
        for member in (self.alice, self.bob, self.external):
            if (
                account == member.account.account_key
                and device == member.device_secret.public_key()
            ):
                return Person(member.account.kind, member.account.email)
        return None

    def people(self, account: object) -> Person | None:
        for member in (self.alice, self.bob, self.external):
            if account == member.account.account_key:
                return Person(member.account.kind, member.account.email)
        return None

    @property
    def room(self) -> bytes:
        return self.events[0].id


class Chain:
    """Events by one device, each following the previous one (a linear room history)."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.events: list[Event] = []

    def add(self, kind: EventType, content: dict, state_key: str | None = None) -> Event:  # type: ignore[type-arg]
        previous = self.events[-1] if self.events else None
        event = make_event(
            self.member.device_secret,
            self.member.account.account_key,
            kind,
            content,
            room=None if previous is None else self.events[0].id,
            seq=len(self.events) + 1,
            prev_seq=None if previous is None else previous.id,
            prev=[] if previous is None else [previous.id],
            depth=0 if previous is None else previous.depth + 1,
            ts=NOW * 1000 + len(self.events),
            state_key=state_key,
        )
        self.events.append(event)
        return event


def _room(alice: Member, bob: Member, file_root: bytes) -> list[Event]:
    chain = Chain(alice)
    create = chain.add(T.CREATE, {"direct": False, "nonce": bytes(16)}, "")
    chain.add(T.NAME, {"name": "Cellule de crise"}, "")
    chain.add(T.TOPIC, {"topic": "Inondations, secteur nord"}, "")
    chain.add(T.JOIN_RULE, {"rule": "public"}, "")
    chain.add(T.EXTERNALS, {"allow": True}, "")
    chain.add(T.HISTORY, {"visibility": "shared"}, "")
    bob_hex = bytes(bob.account.account_key).hex()
    chain.add(T.MEMBER, {"membership": "invite", "reason": "renfort"}, bob_hex)
    levels = {bytes(alice.account.account_key): 100, bytes(bob.account.account_key): 50}
    power = {"users": levels, "invite": 0, "kick": 50, "ban": 50, "redact": 50}
    chain.add(T.POWER, {**power, "state": 50, "post": 0}, "")
    chain.add(T.EMAIL_INVITE, {"invited": True}, "dora@interieur.gouv.fr")
    encrypted = {"session": bytes(32), "index": 0, "ct": bytes(40)}
    message = chain.add(T.MESSAGE, {**encrypted, "file": {"root": file_root, "size": 72000}})
    chain.add(T.EDIT, {**encrypted, "index": 1, "target": message.id})
    chain.add(T.REACTION, {**encrypted, "index": 2, "target": message.id})
    chain.add(T.REDACTION, {"target": message.id, "reason": "erreur"})
    device = bytes(bob.device_secret.public_key())
    chain.add(T.ROOM_KEY, {"session": bytes(32), "shares": {device: [bytes(8), bytes(100)]}})
    chain.add(T.HISTORY_KEYS, {"shares": {device: [b"", bytes(120)]}})
    assert create.id == chain.events[0].id
    return chain.events


@functools.cache
def world() -> World:
    """The world (built once per process)."""
    rng = make_rng(20250615)
    org = make_org(rng)
    alice = org.member("alice.martin@interieur.gouv.fr", "Alice Martin")
    bob = org.member("bob@mairie-exemple.fr", "Bob Durand", device_name="téléphone")
    external = org.member("ext@exemple.com", "Eve Externe", kind=Kind.EXTERNAL)
    root, sealed, leaves = encrypt_bytes(FILE_KEY, FILE_DATA)
    events = _room(alice, bob, root)
    static = X25519KeyPair(alice.exchange_secret.secret_bytes())
    credentials = make_credentials(
        alice.certificate, alice.device, alice.device_secret, static.public
    )
    prekey_secret = ExchangeSecret.generate(rng)
    w = World(rng, org, alice, bob, external, events, static, credentials, prekey_secret)
    room = w.room
    bob_device = bob.device_secret.public_key()
    alice_device = alice.device_secret.public_key()
    state = resolve(events, room, w.directory, w.people).state
    assert state is not None

    ratchet = Ratchet(7, bytes(range(128)))
    room_key = roomkeys.encode_room_key(ratchet)
    history = roomkeys.encode_history(
        [
            roomkeys.HistoryKey(alice_device, bytes(32), ratchet),
            roomkeys.HistoryKey(bob_device, b"\x01" * 32, Ratchet(0, bytes(128))),
        ]
    )
    share = roomkeys.seal_share(
        roomkeys.ShareKind.ROOM_KEY,
        room_key,
        room=room,
        session=bytes(32),
        sender=alice_device,
        sender_exchange=alice.exchange_secret,
        recipient=bob_device,
        recipient_key=prekey_secret.public_key(),
        rng=rng,
    )
    outbound = OutboundSession.create(room, "shared", NOW, rng)
    outbound.recipients[bytes(bob_device)] = bytes(bob.account.account_key)
    inbound = InboundSession(
        room, bytes(alice_device), outbound.session_id, outbound.first, first=outbound.first
    )
    for text in (b"bonjour", b"salut", b"encore"):
        index, ciphertext = outbound.encrypt(bytes(alice_device), text)
    inbound.decrypt(index, ciphertext)  # the keys of 0 and 1 are kept as skipped
    descriptor = Descriptor(
        root, len(FILE_DATA), FILE_KEY, "text/plain", "compte-rendu.txt", 640, 480, b"\xff\xd8\xff"
    )
    vector = {bytes(alice_device): (len(events), events[-1].id), bytes(bob_device): (3, bytes(32))}
    receipt = sync.make_receipt(
        alice.device_secret,
        alice.account.account_key,
        sync.ReceiptKind.READ,
        room,
        {bytes(alice_device): len(events)},
        NOW,
    )
    summary = make_summary(alice.device_secret, alice.account.account_key, state, NOW)
    prekey = roomkeys.make_prekey(
        alice.device_secret, alice.account.account_key, prekey_secret.public_key(), NOW
    )
    trust_id = sync.trust_id(sync.TrustKind.ACCOUNT, alice.certificate)
    link = sign_link(bob.device_secret, bob.exchange_secret.public_key(), "téléphone", bytes(64))

    seeds = w.seeds
    seeds["trust-file"] = [org.trust_file]
    seeds["request"] = [alice.request, bob.request]
    seeds["account-certificate"] = [alice.certificate, external.certificate]
    seeds["device-certificate"] = [alice.device, bob.device]
    seeds["revocation-authority"] = [
        revocation.revoke_serial(org.secret, alice.account.serial, NOW, "départ"),
        revocation.revoke_email(org.secret, bob.account.email, NOW, ""),
    ]
    seeds["revocation-device"] = [
        revocation.revoke_device(alice.secret, alice.certificate, bob_device, NOW, "perdu")
    ]
    seeds["event"] = [event.raw for event in events]
    seeds["room-state"] = [_state_bytes(events, w)]
    seeds["prekey"] = [prekey]
    seeds["room-key"] = [room_key]
    seeds["history-bundle"] = [history]
    seeds["share"] = [share]
    seeds["sync"] = [
        sync.encode(message)
        for message in (
            sync.Vector(room, vector, (events[-1].id,), bytes(16)),
            sync.Want(room, ((bytes(alice_device), 1, 5),), (events[3].id,)),
            sync.Events(room, (events[0].raw, events[1].raw), True),
            sync.Refused(room, "not-a-member"),
            sync.TrustSum(bytes(32), 12),
            sync.TrustIds((trust_id,)),
            sync.TrustWant((trust_id,)),
            sync.TrustItems(
                ((sync.TrustKind.ACCOUNT, alice.certificate), (sync.TrustKind.PREKEY, prekey))
            ),
            sync.Receipts(room, (receipt,)),
            sync.KeyRequest(room, (bytes(32),)),
        )
    ]
    seeds["receipt"] = [receipt]
    seeds["summary"] = [summary]
    seeds["transfer"] = [
        transfer.encode(message)
        for message in (
            transfer.Query(root),
            transfer.Have(root, b"\x03"),
            transfer.LeavesRequest(root, 0, 2),
            transfer.Leaves(root, 0, b"".join(leaves)),
            transfer.ChunkRequest(root, (0, 1)),
            transfer.Chunk(root, 1, sealed[1]),
            transfer.NotHere(root, (1,)),
        )
    ]
    seeds["peerwire"] = [
        peerwire.encode_hello(7755),
        peerwire.encode_peers([("192.168.1.20", 7755), ("10.0.0.3", 9000)]),
        codec.encode({"t": "fq", "root": root}),
    ]
    seeds["pairing"] = [
        _pairing(message)
        for message in (
            Offer("account", (org.trust_file,), alice.certificate),
            Offer("authority", (org.trust_file,)),
            EnrolRequest(alice.request),
            link,
            Issued(alice.certificate),
            Linked(alice.certificate, alice.device, (org.trust_file,), (), (bob.device,)),
            Refused("non"),
        )
    ]
    seeds["descriptor"] = [codec.encode(descriptor.to_value())]
    seeds["clear-reference"] = [codec.encode(clear_reference(descriptor))]
    seeds["vault"] = [vault.seal(b"secret de l'appareil", PASSPHRASE, rng, vault.MINIMUM)]
    seeds["credentials"] = [credentials]
    seeds["inbound-session"] = [codec.encode(inbound.to_value())]
    seeds["outbound-session"] = [codec.encode(outbound.to_value())]
    seeds["chunk"] = [sealed[1]]
    seeds["leaves"] = [b"".join(leaves)]
    seeds["device-secrets"] = [
        codec.encode({"sign": bytes(32), "exchange": bytes(range(32))}),
    ]
    cose = [
        *seeds["trust-file"],
        *seeds["request"],
        *seeds["account-certificate"],
        *seeds["device-certificate"],
        *seeds["revocation-authority"],
        *seeds["revocation-device"],
    ]
    seeds["cose"] = cose
    raw = {"chunk", "share", "leaves"}  # not CBOR
    seeds["cbor"] = sorted(
        {seed for name in list(seeds) if name not in raw for seed in seeds[name]}
    )
    return w


def _state_bytes(events: list[Event], w: World) -> bytes:
    state = resolve(events, events[0].id, w.directory, w.people).state
    assert state is not None
    return encode_state(state)


def _pairing(message: pairing.Message) -> bytes:
    return pairing.encode(message)

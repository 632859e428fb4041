"""A hostile peer: our own protocol, spoken from the test process, to misbehave with.

The suite in this folder attacks a real ``p2ptchap up`` process over real
TCP.  This module is the attacker's kit, built from the project's own core
so that what it sends is exactly as well formed as we choose:

* :class:`Mint` makes identities: an *insider* certified by the cell's own
  authority (read from the authority's home on disk, as the administrator
  would), and every kind of bad credential — expired, revoked, signed by
  another authority, an external whose certificate claims agent, a device
  certificate of another account, a kind changed after signing.
* :class:`HostilePeer` dials the node and runs the Noise XX handshake by
  hand (:class:`~p2ptchap.core.noise.HandshakeState`), not through
  :class:`~p2ptchap.core.channel.SecureChannel`: each step is a separate
  call, so it can stop, stall or lie at any step, and after the handshake it
  can frame any record the channel would never make (unknown types, empty
  records, oversized pings, lengths that lie).  A reader task answers the
  node's pings, decodes what it sends and notices when it hangs up.
* :func:`signed_event` signs room events with any device key, claiming any
  account, so forged, replayed and foreign-room events are one call.

Nothing here is a test; the tests are the ``test_*.py`` files beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trio

from p2ptchap import accounts
from p2ptchap.core import codec, cose, identity, peerwire
from p2ptchap.core import sync as syncwire
from p2ptchap.core import transfer as filewire
from p2ptchap.core.authority import Authority, TrustStore, create_trust_file
from p2ptchap.core.channel import (
    LENGTH_PREFIX,
    MAX_RECORD_BODY,
    PROLOGUE,
    RecordType,
    make_credentials,
    verify_credentials,
)
from p2ptchap.core.errors import P2PTchapError
from p2ptchap.core.events import Event, EventType, make_event
from p2ptchap.core.identity import Kind, VerifiedDevice
from p2ptchap.core.keys import (
    AccountKey,
    AccountSecret,
    AuthoritySecret,
    DeviceSecret,
    ExchangeSecret,
)
from p2ptchap.core.noise import HandshakeState, NoiseTransport, X25519KeyPair
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.store.home import Home

#: Seconds in a day, for certificate validity.
DAY = 86_400


# --- identities -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a device shows at the handshake, and the secrets to sign with."""

    account: bytes
    device: bytes
    signing: DeviceSecret
    exchange: ExchangeSecret
    master: AccountSecret

    @property
    def account_key(self) -> bytes:
        return bytes(self.master.public_key())

    @property
    def device_key(self) -> bytes:
        return bytes(self.signing.public_key())

    def another_device(self, name: str = "autre") -> Credentials:
        """A second device of the same account (an insider may mint as many as it likes)."""
        signing, exchange = DeviceSecret.generate(os.urandom), ExchangeSecret.generate(os.urandom)
        device = identity.issue_device_certificate(
            self.master, signing.public_key(), exchange.public_key(), name, int(time.time())
        )
        return dataclasses.replace(self, device=device, signing=signing, exchange=exchange)


class Mint:
    """Makes certificates with an authority's secret key (the cell's, or a stranger's)."""

    def __init__(self, secret: AuthoritySecret, authority: Authority) -> None:
        self.secret = secret
        self.authority = authority

    @classmethod
    def from_home(cls, home: Path, passphrase: str) -> Mint:
        """The authority kept in ``home`` (as ``p2ptchap authority init`` made it)."""
        authority, secret = accounts.load_authority(Home(home), passphrase)
        return cls(secret, authority)

    @classmethod
    def stranger(cls, domains: tuple[str, ...] = ("x.gouv.fr",)) -> Mint:
        """An authority the node does not trust, claiming the same domains."""
        secret = AuthoritySecret.generate(os.urandom)
        authority, _trust = create_trust_file(
            secret, "Autorité étrangère", domains, int(time.time())
        )
        return cls(secret, authority)

    @property
    def trust(self) -> TrustStore:
        return TrustStore([self.authority])

    def person(
        self,
        email: str,
        name: str = "Mallory",
        *,
        kind: Kind = Kind.AGENT,
        issued: int | None = None,
        days: int = 30,
    ) -> Credentials:
        """An account certificate issued at ``issued`` for ``days``, and one device."""
        now = int(time.time()) if issued is None else issued
        master = AccountSecret.generate(os.urandom)
        request = identity.parse_request(identity.make_request(master, email, name, now))
        account = identity.issue_account_certificate(
            self.secret, self.authority, request, kind=kind, now=now, days=days, rng=os.urandom
        )
        return self._with_device(account, master, now)

    def claims(
        self, email: str, *, kind: str, name: str = "Mallory", days: int = 30
    ) -> Credentials:
        """A certificate signed with this authority's key over claims of our choosing.

        No issuance check: this is how an authority's key (or a forger who
        had it) could claim agent status for an address outside its domains.
        """
        now = int(time.time())
        master = AccountSecret.generate(os.urandom)
        claims: dict[codec.Key, codec.Value] = {
            identity.CLAIM_ISS: identity.issuer_name(self.authority),
            identity.CLAIM_SUB: email,
            identity.CLAIM_EXP: now + days * DAY,
            identity.CLAIM_NBF: now,
            identity.CLAIM_IAT: now,
            identity.CLAIM_CTI: os.urandom(identity.SERIAL_SIZE),
            identity.CLAIM_CNF: {
                identity.CNF_COSE_KEY: {
                    identity.COSE_KEY_KTY: identity.KTY_OKP,
                    identity.COSE_KEY_CRV: identity.CRV_ED25519,
                    identity.COSE_KEY_X: bytes(master.public_key()),
                }
            },
            identity.CLAIM_NAME: name,
            identity.CLAIM_KIND: kind,
        }
        account = cose.sign(
            codec.encode(claims), identity.ACCOUNT_CONTENT_TYPE, self.authority.key_id, self.secret
        )
        return self._with_device(account, master, now)

    @staticmethod
    def _with_device(account: bytes, master: AccountSecret, now: int) -> Credentials:
        signing, exchange = DeviceSecret.generate(os.urandom), ExchangeSecret.generate(os.urandom)
        device = identity.issue_device_certificate(
            master, signing.public_key(), exchange.public_key(), "pc", now
        )
        return Credentials(account, device, signing, exchange, master)


def relabelled(credentials: Credentials, old: bytes, new: bytes) -> Credentials:
    """The account certificate with bytes ``old`` replaced by ``new`` (its signature kept)."""
    assert credentials.account.count(old) == 1, "the text to change must occur once"
    return dataclasses.replace(credentials, account=credentials.account.replace(old, new))


# --- the connection ---------------------------------------------------------------------------


class NodeHungUp(Exception):
    """The node closed the connection (what a defence usually looks like)."""


def frame(message: bytes) -> bytes:
    """One Noise message with its 2-byte length, as the transport frames it."""
    return len(message).to_bytes(LENGTH_PREFIX, "big") + message


@dataclasses.dataclass
class Received:
    """What the node sent us after the handshake, decoded, for the assertions."""

    types: Counter[str] = dataclasses.field(default_factory=Counter)
    #: The decoded application messages (the last ``keep`` of them).
    messages: list[dict[codec.Key, codec.Value]] = dataclasses.field(default_factory=list)
    records: int = 0
    keep: int = 10_000

    def add(self, body: dict[codec.Key, codec.Value]) -> None:
        kind = body.get("t")
        self.types[str(kind)] += 1
        self.messages.append(body)
        if len(self.messages) > self.keep:
            del self.messages[: self.keep // 2]

    def of_type(self, kind: str) -> list[dict[codec.Key, codec.Value]]:
        return [m for m in self.messages if m.get("t") == kind]


class HostilePeer:
    """One connection to the node under attack, driven step by step (see module docs)."""

    def __init__(self, credentials: Credentials | None, trust: TrustStore) -> None:
        self.credentials = credentials
        self.trust = trust
        self.stream: trio.SocketStream | None = None
        self.transport: NoiseTransport | None = None
        self.node: VerifiedDevice | None = None
        self.received = Received()
        self.hung_up = trio.Event()
        self._inbox = bytearray()
        self._send_lock = trio.Lock()
        self._reading = False

    # --- TCP ------------------------------------------------------------------

    async def connect(self, port: int, *, source: str = "127.0.0.1") -> None:
        """Open a TCP connection to the node from ``source`` (any 127.x address)."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        self.stream = trio.SocketStream(sock)

    async def send_raw(self, data: bytes) -> None:
        """Bytes on the TCP stream, as they are."""
        assert self.stream is not None
        try:
            async with self._send_lock:
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.hung_up.set()
            raise NodeHungUp(str(exc)) from exc

    async def _read_frame(self) -> bytes:
        while True:
            if len(self._inbox) >= LENGTH_PREFIX:
                length = int.from_bytes(self._inbox[:LENGTH_PREFIX], "big")
                if len(self._inbox) >= LENGTH_PREFIX + length:
                    message = bytes(self._inbox[LENGTH_PREFIX : LENGTH_PREFIX + length])
                    del self._inbox[: LENGTH_PREFIX + length]
                    return message
            assert self.stream is not None
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.hung_up.set()
                raise NodeHungUp(str(exc)) from exc
            if not data:
                self.hung_up.set()
                raise NodeHungUp("end of stream")
            self._inbox += data

    async def aclose(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)

    async def wait_hung_up(self, timeout: float) -> bool:
        """Whether the node hangs up within ``timeout`` seconds (reading what it sends)."""
        with trio.move_on_after(timeout):
            if not self._reading:
                with contextlib.suppress(NodeHungUp):
                    while True:
                        await self._read_frame()  # counted, not read: only the end matters
                        self.received.records += 1
            await self.hung_up.wait()
            return True
        return False

    # --- the handshake, one step at a time --------------------------------------

    async def handshake(
        self, *, credentials: bytes | None = None, hello: bool = True
    ) -> VerifiedDevice:
        """Noise XX as the initiator; our credentials (or ``credentials`` as given) in message 3.

        Checks the node's own credentials against ``trust``, as a node
        would.  Then, unless ``hello`` is false, exchanges hellos.
        """
        static = X25519KeyPair.generate(os.urandom)
        state = HandshakeState("XX", initiator=True, prologue=PROLOGUE, s=static, rng=os.urandom)
        await self.send_raw(frame(state.write_message(b"")))
        payload = state.read_message(await self._read_frame())
        remote = state.remote_static
        assert remote is not None
        self.node = verify_credentials(payload, remote, self._verify)
        if credentials is None:
            assert self.credentials is not None
            credentials = make_credentials(
                self.credentials.account, self.credentials.device, self.credentials.signing,
                static.public,
            )  # fmt: skip
        await self.send_raw(frame(state.write_message(credentials)))
        self.transport = state.to_transport()
        if hello:
            await self.send_message(peerwire.encode_hello(9))
        return self.node

    def _verify(self, account: bytes, device: bytes) -> VerifiedDevice:
        return identity.verify_chain(account, device, self.trust, RevocationSet(), int(time.time()))

    # --- records and messages ----------------------------------------------------

    def record(self, kind: int, body: bytes = b"") -> bytes:
        """One encrypted record of any type byte (the channel's types or not), framed."""
        assert self.transport is not None
        return frame(self.transport.encrypt(bytes((kind,)) + body))

    def message(self, data: bytes) -> bytes:
        """An application message as the channel frames it (``MORE``* ``DATA``)."""
        parts = [data[i : i + MAX_RECORD_BODY] for i in range(0, len(data), MAX_RECORD_BODY)]
        records = [self.record(RecordType.MORE, part) for part in parts[:-1]]
        records.append(self.record(RecordType.DATA, parts[-1] if parts else b""))
        return b"".join(records)

    async def send_message(self, data: bytes) -> None:
        await self.send_raw(self.message(data))

    async def send_sync(self, message: syncwire.SyncMessage) -> None:
        await self.send_message(syncwire.encode(message))

    async def send_file_message(self, message: filewire.FileMessage) -> None:
        await self.send_message(filewire.encode(message))

    async def read_loop(self, *, answer_pings: bool = True) -> None:
        """Read until the node hangs up: answer pings, decode and keep its messages."""
        assert self.transport is not None
        self._reading = True
        fragments: list[bytes] = []
        try:
            while True:
                plaintext = self.transport.decrypt(await self._read_frame())
                self.received.records += 1
                kind, body = plaintext[0], plaintext[1:]
                if kind == RecordType.PING and answer_pings:
                    await self.send_raw(self.record(RecordType.PONG, body))
                elif kind == RecordType.REKEY:
                    self.transport.rekey_receive()
                elif kind == RecordType.CLOSE:
                    break
                elif kind in (RecordType.MORE, RecordType.DATA):
                    fragments.append(body)
                    if kind == RecordType.DATA:
                        data, fragments = b"".join(fragments), []
                        self.received.add(
                            codec.expect_map(codec.decode(data, peerwire.MESSAGE_LIMITS), "message")
                        )
        except (NodeHungUp, P2PTchapError):
            pass
        finally:
            self.hung_up.set()

    async def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> bool:
        """Whether ``predicate(self.received)`` comes true within ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            while not predicate(self.received):
                await trio.sleep(0.02)
            return True
        return False


async def close_all(peers: list[HostilePeer]) -> None:
    """Hang up every peer (the node then sees the connections end)."""
    for peer in peers:
        await peer.aclose()


async def insider(
    credentials: Credentials, trust: TrustStore, port: int, nursery: trio.Nursery, **kw: str
) -> HostilePeer:
    """A connected, authenticated peer with its reader running in ``nursery``."""
    peer = HostilePeer(credentials, trust)
    await peer.connect(port, **kw)
    await peer.handshake()
    nursery.start_soon(peer.read_loop)
    return peer


# --- room events ------------------------------------------------------------------------------


def signed_event(
    signer: DeviceSecret,
    account: bytes,
    kind: EventType,
    content: dict[codec.Key, codec.Value],
    *,
    room: bytes,
    seq: int,
    prev: list[bytes],
    depth: int,
    prev_seq: bytes | None = None,
    state_key: str | None = None,
) -> Event:
    """An event signed by ``signer`` that claims ``account`` (which need not be the signer's)."""
    return make_event(
        signer,
        AccountKey(account),
        kind,
        content,
        room=room,
        seq=seq,
        prev_seq=prev_seq,
        prev=prev,
        depth=depth,
        ts=int(time.time() * 1000),
        state_key=state_key,
    )


def with_bad_signature(raw: bytes) -> bytes:
    """The same event with one bit of its signature flipped."""
    envelope = codec.expect_map(codec.decode(raw), "event")
    signature = bytearray(codec.get_bytes(envelope, "sig", "event"))
    signature[0] ^= 1
    return codec.encode({"body": envelope["body"], "sig": bytes(signature)})

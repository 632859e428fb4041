"""The peer manager: one authenticated connection to every certified device we can reach.

It listens on TCP, dials every address it learns (from mDNS, from the
command line, from other peers' gossip), authenticates each connection with
the secure channel, and keeps exactly one connection per pair of devices.

Rules, each chosen so that both ends decide the same thing without talking:

* **One connection per pair.**  When two connections to the same device are
  up (both dialled at once, or two addresses of one host), each side keeps
  the one *initiated by the smaller device key* (bytewise) and closes the
  other; if both were initiated by the same side, the older one stays.
* **Liveness from heartbeats, not mDNS.**  Every ``heartbeat`` seconds we
  ping; a peer silent for ``idle`` seconds is dropped (zeroconf keeps a
  crashed peer's record for ~19 minutes, so mDNS cannot tell us).
* **Reconnection with jittered exponential backoff** per address (0.5 s,
  1 s, 2 s, then every 4 s, each ×0.5–1.5 at random; a TCP connect gives up
  after 3 s), reset on success, so a partition that heals is bridged within
  a few seconds.  On a LAN a dial costs little; the cap is low on purpose.
* **Gossip of listening addresses.**  Each peer tells us its listening port
  (``hello``); whenever the set of connected peers changes we send every
  peer the listening addresses of the others (``peers``), so knowing one
  reachable node is enough to reach them all.

Everything a peer sends is untrusted: malformed messages close its
connection; gossip cannot make us dial more than ``max_addresses`` places.

**Quotas.**  Strangers hold at most ``max_handshakes`` handshakes in
progress (``max_handshakes_per_host`` per address); when all are taken, a
newcomer evicts the oldest, so connections that dribble their handshake
(slowloris) cannot lock certified devices out — an honest handshake takes
milliseconds, a slot-holder seconds.  Authenticated connections are capped
in all (``max_peers``), per address (``max_peers_per_host``) and per
account (``max_peers_per_account``): an account signs its own device
certificates, so only the last bounds what one insider can open.  Each
connection costs at most its channel's buffers and the applications' own
per-peer queues; these caps bound how many there are.  Every connection
that ends badly is counted by reason (:attr:`PeerManager.counters`), and
the log lines about single connections are rate-limited, so a peer that
reconnects in a loop can fill neither memory nor the log.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import ipaddress
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Literal, Protocol

import trio

from p2ptchap.core import codec, peerwire
from p2ptchap.core.channel import (
    ChannelConfig,
    PeerRejected,
    ProtocolViolation,
    SecureChannel,
    Verifier,
)
from p2ptchap.core.errors import N_, DecodeError, RemoteError
from p2ptchap.core.identity import VerifiedDevice
from p2ptchap.core.keys import DeviceKey, Rng
from p2ptchap.core.noise import (
    DecryptionError,
    HandshakeError,
    MalformedNoiseMessage,
    X25519KeyPair,
)
from p2ptchap.net.connection import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeTimeout,
    PeerNotReading,
    PeerSilent,
    SecureConnection,
    Timeouts,
)

log = logging.getLogger("p2ptchap.peers")

Via = Literal["mdns", "static", "gossip", "incoming"]
Address = tuple[str, int]


class Application(Protocol):
    """What runs on top of the connections (replication): told of peers and their messages."""

    def connected(self, peer: Peer) -> None: ...

    def disconnected(self, peer: Peer) -> None: ...

    async def received(self, peer: Peer, body: dict[codec.Key, codec.Value]) -> None:
        """One message of a type in :attr:`types`; raise ``DecodeError`` if malformed."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class LocalDevice:
    """What the peer manager needs to know about ourselves.

    ``new_static(rng)`` returns a fresh Noise static key pair and the
    credentials (certificates + device signature) for it: every connection
    uses its own static key, so the key a network observer may see in a
    handshake links nothing across connections.
    """

    device_key: DeviceKey
    new_static: Callable[[Rng], tuple[X25519KeyPair, bytes]]
    verify: Verifier


@dataclasses.dataclass(frozen=True, slots=True)
class PeerSettings:
    """Tunables; the defaults suit a LAN."""

    heartbeat: float = 2.0
    timeouts: Timeouts = dataclasses.field(
        default_factory=lambda: Timeouts(handshake=10.0, idle=6.0)
    )
    connect_timeout: float = 3.0
    backoff_min: float = 0.5
    backoff_max: float = 4.0
    gossip_interval: float = 15.0
    max_addresses: int = 1024
    #: Of those, at most this many from mDNS (unauthenticated announcements)
    #: and from gossip, so neither source can crowd out the other.
    max_from_mdns: int = 256
    max_from_gossip: int = 512
    #: How long an address that led back to ourselves is left alone.
    self_retry: float = 300.0
    #: Addresses learnt from gossip are forgotten after this many failed
    #: dials in a row (static ones never are); mDNS ones are then dialled
    #: every ``stale_retry`` seconds until their announcement is withdrawn.
    forget_after: int = 6
    stale_retry: float = 15.0
    #: A connection we dialled that ends sooner than this counts as a failed
    #: dial (the peer, or one of its quotas, closed it at once): the next
    #: dial backs off instead of following at once.
    stable_after: float = 10.0
    #: Incoming connections still in their handshake, in all and per address.
    max_handshakes: int = 32
    max_handshakes_per_host: int = 4
    #: Authenticated connections at once: in all, with one IP address, and
    #: with the devices of one account (see the module documentation).
    max_peers: int = 256
    max_peers_per_host: int = 16
    max_peers_per_account: int = 8
    #: Log lines about single connections (refusals, failures, ends): per
    #: second, and burst; the others are only counted.
    log_rate: float = 2.0
    log_burst: float = 50.0
    channel: ChannelConfig = dataclasses.field(default_factory=ChannelConfig)


@dataclasses.dataclass
class _AddressState:
    via: Via
    failures: int = 0
    next_attempt: float = 0.0
    dialing: bool = False
    self_until: float = 0.0
    #: The last connection made through this address ended before ``stable_after``.
    short_lived: bool = False
    #: The device last reached at this address: no need to dial while it is
    #: connected (perhaps by its own dial to us).
    device: DeviceKey | None = None


@dataclasses.dataclass
class Peer:
    """A connected, authenticated device."""

    verified: VerifiedDevice
    connection: SecureConnection
    address: Address
    via: Via
    we_initiated: bool
    since: float  # wall clock, for display
    opened: float  # trio clock, to tell older from newer
    listen_port: int | None = None

    @property
    def device_key(self) -> DeviceKey:
        return self.verified.device.device_key

    async def send(self, data: bytes) -> None:
        """Send one application message (raises ``ConnectionFailed``/``ConnectionClosed``)."""
        await self.connection.send_message(data)

    @property
    def listen_address(self) -> Address | None:
        return (self.address[0], self.listen_port) if self.listen_port else None

    def describe(self) -> dict[str, object]:
        """The JSON-ready view used by ``p2ptchap peers --json``."""
        rtt = self.connection.rtt
        return {
            "email": self.verified.account.email,
            "name": self.verified.account.display_name,
            "kind": self.verified.account.kind.value,
            "device": self.verified.device.device_id,
            "device_name": self.verified.device.name,
            "address": f"{self.address[0]}:{self.listen_port or self.address[1]}",
            "via": self.via,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
            "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
        }


class _LogBudget:
    """A token bucket for log lines: ``allow()`` says whether one more may be written."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._refilled = -math.inf

    def allow(self) -> bool:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class HandshakeEvicted(ConnectionFailed):
    """An incoming handshake made room for a newer one (all slots were taken)."""


#: Why a connection ended badly, most specific first: (exception types, counter).
_FAILURES: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((HandshakeTimeout,), "handshake-timeout"),
    ((HandshakeEvicted,), "evicted:handshake"),
    ((HandshakeError,), "handshake-failed"),
    ((ProtocolViolation, MalformedNoiseMessage, DecryptionError), "protocol-violation"),
    ((DecodeError,), "malformed-message"),
    ((PeerSilent,), "peer-silent"),
    ((PeerNotReading,), "peer-not-reading"),
    ((trio.TooSlowError,), "no-hello"),
)


def failure_reason(exc: BaseException) -> str:
    """The counter a connection's bad end is filed under."""
    for types, reason in _FAILURES:
        if isinstance(exc, types):
            return reason
    return "connection-lost"


class PeerManager:
    """Keeps connections to every reachable certified device (see module docs)."""

    def __init__(
        self,
        me: LocalDevice,
        *,
        rng: Rng,
        settings: PeerSettings = PeerSettings(),
        jitter: Callable[[], float] | None = None,
        application: Application | None = None,
        application_types: frozenset[str] = frozenset(),
    ) -> None:
        self.me = me
        self.application = application
        #: Message types handed to the application (others are ignored).
        self.application_types = application_types
        self.settings = settings
        self._rng = rng
        self._jitter = jitter or random.SystemRandom().random
        self._addresses: dict[Address, _AddressState] = {}
        self._peers: dict[DeviceKey, Peer] = {}
        self._wake_dialer = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.listen_port: int | None = None
        #: Counters for the network-health view: rejected handshakes by reason.
        self.rejections: dict[str, int] = {}
        #: Connections that ended badly or were refused, by reason (``status``).
        self.counters: collections.Counter[str] = collections.Counter()
        #: Incoming handshakes in progress, oldest first (the value: its host).
        self._in_handshake: dict[trio.CancelScope, str] = {}
        self._handshakes_by_host: dict[str, int] = {}
        self._log_budget = _LogBudget(settings.log_rate, settings.log_burst)
        self._announce_wanted = trio.Event()

    # --- public -----------------------------------------------------------------

    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.verified.account.email)

    def add_address(self, host: str, port: int, via: Via) -> None:
        """Learn an address to dial (idempotent; the first source is kept)."""
        key = (host, port)
        state = self._addresses.get(key)
        if state is not None:
            if via in {"mdns", "static"} and state.failures:
                # A fresh sighting is a good sign the peer is back: try soon.
                state.next_attempt = min(state.next_attempt, trio.current_time() + 0.5)
                self._wake_dialer.set()
            return
        quota = {
            "mdns": self.settings.max_from_mdns,
            "gossip": self.settings.max_from_gossip,
        }.get(via, self.settings.max_addresses)
        from_source = sum(1 for known in self._addresses.values() if known.via == via)
        if len(self._addresses) >= self.settings.max_addresses or from_source >= quota:
            log.debug("address book full for %s; ignoring %s:%d", via, host, port)
            return
        self._addresses[key] = _AddressState(via)
        self._wake_dialer.set()

    def forget_address(self, host: str, port: int) -> None:
        """Drop an address learnt from mDNS (its announcement is gone), unless in use."""
        state = self._addresses.get((host, port))
        if state is not None and state.via == "mdns" and not state.dialing:
            del self._addresses[(host, port)]

    def disconnect(self, should_drop: Callable[[VerifiedDevice], bool]) -> int:
        """Close connections to peers for which ``should_drop`` is true (e.g. now revoked)."""
        dropped = 0
        for peer in list(self._peers.values()):
            if should_drop(peer.verified):
                dropped += 1
                self._spawn(peer.connection.aclose)
        return dropped

    async def run(
        self,
        host: str | None,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 = any port) and run until cancelled.

        Reports the actual port through ``task_status``.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.listen_port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.serve_listeners, self._accept, listeners)
                nursery.start_soon(self._dial_loop)
                nursery.start_soon(self._gossip_loop)
                nursery.start_soon(self._announcer)
                task_status.started(self.listen_port)
        finally:
            self._nursery = None

    async def aclose_all(self) -> None:
        """Close every connection cleanly (peers see a CLOSE, not a cut)."""
        async with trio.open_nursery() as nursery:
            for peer in list(self._peers.values()):
                nursery.start_soon(peer.connection.aclose)

    # --- connecting ---------------------------------------------------------------

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    def _channel(self, *, initiator: bool) -> SecureChannel:
        static, credentials = self.me.new_static(self._rng)
        return SecureChannel(
            initiator=initiator,
            static=static,
            credentials=credentials,
            verify=self.me.verify,
            rng=self._rng,
            config=self.settings.channel,
        )

    async def _accept(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:
            await trio.aclose_forcefully(stream)  # reset before we looked: nothing to do
            return
        # Bound what unauthenticated strangers can hold: handshakes in progress,
        # per address (beyond, the newcomer is closed at once) and in all
        # (beyond, the oldest makes room: see the module documentation).
        if self._handshakes_by_host.get(host, 0) >= self.settings.max_handshakes_per_host:
            self.counters["over-quota:handshakes-per-host"] += 1
            log.debug("too many handshakes in progress from %s; dropping :%d", host, port)
            await trio.aclose_forcefully(stream)
            return
        if len(self._in_handshake) >= self.settings.max_handshakes:
            oldest = next(iter(self._in_handshake))
            del self._in_handshake[oldest]
            oldest.cancel()  # counted when it ends (HandshakeEvicted)
        connection = SecureConnection(
            stream, self._channel(initiator=False), timeouts=self.settings.timeouts
        )
        try:
            await self._serve(connection, (host, port), "incoming", we_initiated=False)
        except Exception:  # one connection must never stop the node: log it, drop it
            log.exception("unexpected error on the connection from %s:%d", host, port)
            await trio.aclose_forcefully(stream)

    async def _dial_loop(self) -> None:
        while True:
            now = trio.current_time()
            connected = {p.listen_address for p in self._peers.values()} | {
                p.address for p in self._peers.values()
            }
            wake_at = math.inf
            for address, state in self._addresses.items():
                if state.dialing or state.self_until > now or address in connected:
                    continue
                if state.device is not None and state.device in self._peers:
                    continue
                if state.next_attempt <= now:
                    state.dialing = True
                    self._spawn(self._dial, address, state)
                else:
                    wake_at = min(wake_at, state.next_attempt)
            self._wake_dialer = trio.Event()
            with trio.move_on_at(min(wake_at, now + 1.0)):
                await self._wake_dialer.wait()

    async def _dial(self, address: Address, state: _AddressState) -> None:
        try:
            try:
                with trio.fail_after(self.settings.connect_timeout):
                    stream = await trio.open_tcp_stream(*address)
            except (OSError, ValueError, trio.TooSlowError) as exc:
                self._backoff(address, state, f"unreachable ({exc})")
                return
            connection = SecureConnection(
                stream, self._channel(initiator=True), timeouts=self.settings.timeouts
            )
            try:
                ok = await self._serve(
                    connection, address, state.via, we_initiated=True, state=state
                )
            except Exception:  # one connection must never stop the node: log it, drop it
                log.exception("unexpected error on the connection to %s:%d", *address)
                await trio.aclose_forcefully(stream)
                ok = False
            if not ok:
                self._backoff(address, state, "connection failed")
            elif state.short_lived:
                state.short_lived = False
                self._backoff(address, state, "closed soon after the handshake")
            else:
                # It was up and has ended (or was a duplicate): wait a little
                # before dialling again, so a flapping link cannot spin us.
                state.next_attempt = trio.current_time() + self.settings.backoff_min * (
                    0.5 + self._jitter()
                )
        finally:
            state.dialing = False
            self._wake_dialer.set()

    def _backoff(self, address: Address, state: _AddressState, why: str) -> None:
        state.failures += 1
        stale = state.failures >= self.settings.forget_after
        if stale and state.via not in ("static", "mdns"):
            # Learnt from gossip and dead for a while: forget it, so a stale
            # or planted address book cannot keep us dialling forever.
            self._addresses.pop(address, None)
            log.debug("%s:%d forgotten after %d failures", *address, state.failures)
            return
        delay = min(
            self.settings.backoff_max,
            self.settings.backoff_min * 2 ** min(state.failures - 1, 16),
        )
        if stale and state.via == "mdns":
            # Its announcement still stands.  When a partition heals, mDNS
            # says nothing new (the records are cached for ~19 min and
            # known answers suppress replies): only dialling finds the peer
            # again.  Slowly, then; its withdrawal (PeerGone) forgets it.
            delay = self.settings.stale_retry
        delay *= 0.5 + self._jitter()
        state.next_attempt = trio.current_time() + delay
        log.debug("%s:%d %s; next try in %.1f s", *address, why, delay)

    # --- one connection -------------------------------------------------------------

    async def _serve(
        self,
        connection: SecureConnection,
        address: Address,
        via: Via,
        *,
        we_initiated: bool,
        state: _AddressState | None = None,
    ) -> bool:
        """Handshake, then run the connection until it ends; return whether it was established."""
        authenticated = await self._authenticate_logged(connection, address, we_initiated)
        if authenticated is None:
            return False
        verified, hello = authenticated
        if verified.device.device_key == self.me.device_key:
            # We dialled ourselves (our own address came back by gossip).
            if state is not None:
                # Not forever: a relay could have reflected our dial to us.
                state.self_until = trio.current_time() + self.settings.self_retry
            await connection.aclose()
            return True
        if hello is None:
            return False
        if not await self._within_quotas(connection, verified, address):
            return False
        if state is not None:
            state.device = verified.device.device_key
        peer = Peer(
            verified,
            connection,
            address,
            via,
            we_initiated,
            since=time.time(),
            opened=trio.current_time(),
            listen_port=hello.port,
        )
        if not self._register(peer):
            await connection.aclose()
            return True
        self._log(
            logging.INFO,
            N_("connected to %s <%s> (device %s) at %s:%d via %s"),
            verified.account.display_name,
            verified.account.email,
            verified.device.device_id,
            *address,
            via,
        )
        try:
            if self.application is not None:
                self.application.connected(peer)
            await self._run_peer(peer)
        finally:
            self._judge(peer, state)
            if self.application is not None:
                self.application.disconnected(peer)
            if self._peers.get(peer.device_key) is peer:
                del self._peers[peer.device_key]
                self._log(
                    logging.INFO,
                    N_("lost %s <%s>"),
                    verified.account.display_name,
                    verified.account.email,
                )
                self._announce()
            self._wake_dialer.set()
        return True

    def _judge(self, peer: Peer, state: _AddressState | None) -> None:
        """Only a connection that lasted clears its address's failures.

        One closed at once (by a quota of the peer's) must not be redialled at once.
        """
        if state is None:
            return
        if trio.current_time() - peer.opened >= self.settings.stable_after:
            state.failures = 0
        else:
            state.short_lived = True

    async def _authenticate_logged(
        self, connection: SecureConnection, address: Address, we_initiated: bool
    ) -> tuple[VerifiedDevice, peerwire.Hello | None] | None:
        """:meth:`_authenticate`; on failure count it, log it, close the socket, return None."""
        try:
            return await self._authenticate(connection, address[0], we_initiated)
        except PeerRejected as exc:
            self.rejections[exc.reason.value] = self.rejections.get(exc.reason.value, 0) + 1
            reason = exc.reason.value
            self._log(logging.WARNING, N_("refused %s:%d: %s (%s)"), *address, reason, exc.detail)
        except (RemoteError, ConnectionFailed, ConnectionClosed, trio.TooSlowError) as exc:
            self.counters[failure_reason(exc)] += 1
            reason = (
                N_("handshake failed (wrong network key?)")
                if isinstance(exc, HandshakeError)
                else str(exc)
            )
            self._log(logging.INFO, N_("no secure connection with %s:%d: %s"), *address, reason)
        # Whatever step failed (or was evicted), the socket goes now.
        await trio.aclose_forcefully(connection.stream)
        return None

    async def _authenticate(
        self, connection: SecureConnection, host: str, we_initiated: bool
    ) -> tuple[VerifiedDevice, peerwire.Hello | None]:
        """Handshake, then exchange hellos; return the peer and its hello.

        In XX the responder authenticates the initiator last: only the
        responder's hello proves it accepted us, so no connection counts
        before both hellos crossed.  Incoming handshakes hold a slot of the
        limiter (and of their host's quota) until then.
        """
        if we_initiated:
            return await self._authenticate_unlimited(connection)
        self._handshakes_by_host[host] = self._handshakes_by_host.get(host, 0) + 1
        slot = trio.CancelScope()
        self._in_handshake[slot] = host
        try:
            with slot:
                return await self._authenticate_unlimited(connection)
            # Only an eviction cancels this scope (see _accept).
            raise HandshakeEvicted("evicted: too many handshakes in progress")
        finally:
            self._in_handshake.pop(slot, None)
            self._handshakes_by_host[host] -= 1
            if not self._handshakes_by_host[host]:
                del self._handshakes_by_host[host]

    async def _authenticate_unlimited(
        self, connection: SecureConnection
    ) -> tuple[VerifiedDevice, peerwire.Hello | None]:
        verified = await connection.handshake()
        if verified.device.device_key == self.me.device_key:
            return verified, None
        await connection.send_message(peerwire.encode_hello(self.listen_port or 0))
        with trio.fail_after(self.settings.timeouts.handshake):
            first = await connection.receive_message()
        if first is None:
            raise ConnectionFailed("closed before its hello")
        message = peerwire.decode(first)
        if not isinstance(message, peerwire.Hello):
            raise DecodeError("first message is not a hello")
        return verified, message

    async def _within_quotas(
        self, connection: SecureConnection, verified: VerifiedDevice, address: Address
    ) -> bool:
        """Whether the new connection fits the quotas; if not, it is closed and counted."""
        refusal = self._over_quota(verified, address[0])
        if refusal is None:
            return True
        self.counters[refusal] += 1
        self._log(
            logging.WARNING,
            N_("refused %s <%s> at %s:%d: too many connections (%s)"),
            verified.account.display_name,
            verified.account.email,
            *address,
            refusal,
        )
        await connection.aclose()
        return False

    def _over_quota(self, verified: VerifiedDevice, host: str) -> str | None:
        """The quota a new connection of ``verified`` from ``host`` would exceed, if any.

        A connection that would replace one of the same device does not
        count twice (the de-duplication rule keeps one of them).
        """
        device, account = verified.device.device_key, verified.account.account_key
        others = [p for p in self._peers.values() if p.device_key != device]
        if len(others) >= self.settings.max_peers:
            return "over-quota:peers"
        if sum(p.address[0] == host for p in others) >= self.settings.max_peers_per_host:
            return "over-quota:peers-per-host"
        same_account = sum(p.verified.account.account_key == account for p in others)
        if same_account >= self.settings.max_peers_per_account:
            return "over-quota:peers-per-account"
        return None

    def _log(self, level: int, message: str, *args: object) -> None:
        """Log a line about one connection, within the budget (else only count it)."""
        if self._log_budget.allow():
            log.log(level, message, *args)
        else:
            self.counters["log-lines-suppressed"] += 1

    def _register(self, peer: Peer) -> bool:
        """Keep ``peer`` unless a better connection to the same device exists."""
        current = self._peers.get(peer.device_key)
        if current is not None and not self._better(peer, current):
            return False
        self._peers[peer.device_key] = peer
        if current is not None:
            self._spawn(current.connection.aclose)
        self._announce()
        return True

    def _better(self, new: Peer, old: Peer) -> bool:
        smaller = min(bytes(self.me.device_key), bytes(new.device_key))

        def initiator(p: Peer) -> bytes:
            return bytes(self.me.device_key) if p.we_initiated else bytes(p.device_key)

        new_good, old_good = initiator(new) == smaller, initiator(old) == smaller
        if new_good != old_good:
            return new_good
        # Same initiator (two addresses of one host): both ends know both
        # handshake hashes, so the smaller one decides alike on each side.
        return (new.connection.channel.handshake_hash or b"") < (
            old.connection.channel.handshake_hash or b""
        )

    async def _run_peer(self, peer: Peer) -> None:
        connection = peer.connection
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat, connection)
            try:
                while (data := await connection.receive_message()) is not None:
                    await self._handle(peer, data)
            except ConnectionClosed:
                pass  # we closed it ourselves (duplicate, revoked, shutting down)
            except (RemoteError, ConnectionFailed, DecodeError) as exc:
                self.counters[failure_reason(exc)] += 1
                self._log(
                    logging.INFO,
                    N_("connection to %s ended: %s"),
                    peer.verified.account.email,
                    exc,
                )
                await connection.aclose()
            nursery.cancel_scope.cancel()

    async def _heartbeat(self, connection: SecureConnection) -> None:
        while True:
            await trio.sleep(self.settings.heartbeat)
            try:
                await connection.ping()
            except (ConnectionFailed, ConnectionClosed):
                return

    async def _handle(self, peer: Peer, data: bytes) -> None:
        message = peerwire.decode(data)
        if (
            isinstance(message, peerwire.Other)
            and self.application is not None
            and message.type in self.application_types
        ):
            # One message at a time per peer: reading waits while we store,
            # which is TCP's own flow control towards a fast sender.
            await self.application.received(peer, message.body)
            return
        if isinstance(message, peerwire.Hello):
            log.debug("ignoring a second hello from %s", peer.verified.account.email)
        elif isinstance(message, peerwire.Peers):
            loopback_peer = ipaddress.ip_address(peer.address[0]).is_loopback
            for host, port in message.addresses:
                # Loopback addresses only make sense from a peer on loopback
                # (tests, several nodes on one machine); from the LAN they
                # would point us at our own local services.
                if ipaddress.ip_address(host).is_loopback and not loopback_peer:
                    continue
                self.add_address(host, port, "gossip")
        else:
            log.debug(
                "ignoring message of type %r from %s", message.type, peer.verified.account.email
            )

    # --- gossip ------------------------------------------------------------------------

    def _announce(self) -> None:
        """Ask for the peers' addresses to be gossiped soon (coalesced, ≤ 1/s)."""
        self._announce_wanted.set()

    async def _announcer(self) -> None:
        while True:
            await self._announce_wanted.wait()
            self._announce_wanted = trio.Event()
            self._announce_now()
            await trio.sleep(1.0)

    def _announce_now(self) -> None:
        """Tell every peer the listening addresses of the others."""
        for peer in list(self._peers.values()):
            others = [
                p.listen_address
                for p in self._peers.values()
                if p is not peer and p.listen_address is not None
            ]
            if others:
                self._spawn(self._send_quietly, peer, peerwire.encode_peers(others))

    async def _send_quietly(self, peer: Peer, data: bytes) -> None:
        # A failure here is that connection's end, which its receive loop
        # notices and reports; gossip has nothing to add.
        with contextlib.suppress(ConnectionFailed, ConnectionClosed):
            await peer.connection.send_message(data)

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.gossip_interval)
            self._announce()

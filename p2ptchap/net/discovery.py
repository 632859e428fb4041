"""Finding peers on the LAN with mDNS / DNS-SD (RFC 6762, RFC 6763), on trio.

Each running node advertises one service instance of type
``_p2ptchap._tcp.local.`` and browses for the others.  What it publishes is
chosen to say nothing about the person or the machine::

    PTR  _p2ptchap._tcp.local.        -> <id>._p2ptchap._tcp.local.
    SRV  <id>._p2ptchap._tcp.local.   -> <id>.local. : port
    TXT  <id>._p2ptchap._tcp.local.   v=1 id=<id>
    A    <id>.local.                  -> the advertised addresses

where ``<id>`` is a fresh random instance id per start (:func:`new_instance_id`):
no name, e-mail, key or host name.  Who a peer really is, is learned only
after connecting, from its certificates in the Noise handshake; everything
heard here is an unauthenticated hint.

zeroconf runs its own asyncio loop in a thread of its own.  This module
bridges it into trio: blocking zeroconf calls run in worker threads, and
browser callbacks (on zeroconf's browser thread) only note which names
changed and wake the trio side, which resolves them and emits
:class:`PeerSeen` / :class:`PeerGone` on :attr:`Discovery.events`.

Two traits of mDNS shape what the events mean:

* A peer that vanishes without saying goodbye (crash, cable pulled) stays in
  everyone's cache for about 19 minutes, because zeroconf raises PTR TTLs to
  at least 1125 s.  So :class:`PeerGone` arrives promptly only for a clean
  stop; liveness must come from our own connections, never from here.
* zeroconf's browser stops querying after its start-up burst, so a peer that
  announced itself while we could not hear it (a partition, a cable plugged
  in late) would stay unknown.  :class:`Discovery` therefore re-queries every
  ``requery_interval`` seconds, listing the peers it already knows as known
  answers (RFC 6762 §7.1) so that only unknown ones answer.  This departs
  from RFC 6762 §5.2, which wants query intervals to grow to an hour, on
  purpose: the price is one small packet per node per interval (less where
  duplicate-question suppression, §7.3, applies), and the gain is that
  peers find each other within seconds of a partition healing.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import ipaddress
import logging
import random
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Final

import ifaddr
import trio
from zeroconf import (
    BadTypeInNameException,
    DNSQuestionType,
    EventLoopBlocked,
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf import Error as ZeroconfError

# Not re-exported at the top level, but it is the function zeroconf's own
# browser uses to build its PTR queries with known answers, duplicate
# question suppression and packet splitting; re-implementing it would mean
# reaching into the same internals (cache, question history) anyway.
from zeroconf._services.browser import generate_service_query

from p2ptchap.core.errors import N_, LocalError, RemoteError, UsageError
from p2ptchap.core.keys import Rng

log = logging.getLogger("p2ptchap.discovery")

#: The DNS-SD service type every p2ptchap node advertises and browses.
SERVICE_TYPE: Final = "_p2ptchap._tcp.local."
#: The TXT ``v`` value of the advertisement format this module speaks.
PROTOCOL_VERSION: Final = "1"
#: Random bytes in an instance id: 80 bits, so two nodes never pick the same.
INSTANCE_ID_BYTES: Final = 10
#: Base32 of :data:`INSTANCE_ID_BYTES` bytes, lower case, without padding.
INSTANCE_ID_PATTERN: Final = re.compile(r"[a-z2-7]{16}")
#: Most addresses kept from one advertisement; the rest are ignored.
MAX_ADDRESSES: Final = 16
#: Most distinct service names waiting to be resolved at once.  Bounds the
#: memory a flood of fake advertisements can take; a real LAN has far fewer.
MAX_PENDING_NAMES: Final = 4096

_SERVICE_SUFFIX: Final = "." + SERVICE_TYPE


class DiscoveryError(LocalError):
    """mDNS discovery could not start or run on this machine's network."""

    default_message = (
        "Peer discovery could not start on this network; "
        "check the network connection and the --interface address."
    )


class AdvertisementError(RemoteError):
    """An mDNS advertisement of our service type is malformed or of another version.

    Such advertisements come from the network and are simply ignored; the
    error exists so that the reason can be logged and tested.
    """

    default_message = "A peer's network announcement was malformed and was ignored."


@dataclasses.dataclass(frozen=True)
class PeerSeen:
    """A peer advertises itself (again, or with new addresses or port).

    ``addresses`` are IPv4 addresses in the order advertised, never empty.
    Nothing here is authenticated: it only says where to try connecting.
    """

    instance_id: str
    addresses: tuple[str, ...]
    port: int


@dataclasses.dataclass(frozen=True)
class PeerGone:
    """A peer withdrew its advertisement (a clean stop) or it expired.

    Only sent for an instance previously reported by :class:`PeerSeen`.
    """

    instance_id: str


DiscoveryEvent = PeerSeen | PeerGone


def new_instance_id(rng: Rng) -> str:
    """A fresh instance id: :data:`INSTANCE_ID_BYTES` bytes of ``rng``, base32, lower case.

    Callers pass ``os.urandom``; a new id per start means a node cannot be
    followed across restarts by its advertisement alone.
    """
    return base64.b32encode(rng(INSTANCE_ID_BYTES)).decode("ascii").lower()


def service_name(instance_id: str) -> str:
    """The DNS-SD instance name advertised for ``instance_id``."""
    return f"{instance_id}{_SERVICE_SUFFIX}"


def host_name(instance_id: str) -> str:
    """The SRV target host name advertised for ``instance_id`` (not the machine's name)."""
    return f"{instance_id}.local."


def txt_properties(instance_id: str) -> dict[str, str]:
    """The complete TXT record: protocol version and instance id, nothing else."""
    return {"v": PROTOCOL_VERSION, "id": instance_id}


def build_service_info(instance_id: str, port: int, addresses: Sequence[str]) -> ServiceInfo:
    """The zeroconf ServiceInfo advertising ``instance_id`` at ``addresses``:``port``."""
    return ServiceInfo(
        SERVICE_TYPE,
        service_name(instance_id),
        port=port,
        properties=txt_properties(instance_id),
        server=host_name(instance_id),
        parsed_addresses=list(addresses),
    )


def parse_advertisement(
    name: str,
    properties: Mapping[bytes, bytes | None],
    addresses: Sequence[str],
    port: int | None,
) -> PeerSeen:
    """Check a resolved advertisement and return the peer it describes.

    ``name`` is the full service instance name, ``properties`` the TXT
    record as zeroconf decodes it, ``addresses`` the host's addresses as
    strings.  The instance label must be a well-formed instance id equal to
    the TXT ``id``, the TXT ``v`` must be :data:`PROTOCOL_VERSION` (other
    keys are ignored, as RFC 6763 §6.4 asks), the port within 1..65535.
    Addresses that are not usable unicast IPv4 addresses are dropped; at
    most :data:`MAX_ADDRESSES` are kept.

    Raises :class:`AdvertisementError` saying why otherwise, including when
    no usable address remains.
    """
    if not name.lower().endswith(_SERVICE_SUFFIX):
        raise AdvertisementError(f"not a {SERVICE_TYPE} instance: {name!r}")
    label = name[: -len(_SERVICE_SUFFIX)]
    if not INSTANCE_ID_PATTERN.fullmatch(label):
        raise AdvertisementError(f"instance label is not an instance id: {label!r}")
    version = properties.get(b"v")
    if version is None:
        raise AdvertisementError("TXT has no version")
    if version != PROTOCOL_VERSION.encode():
        raise AdvertisementError(f"unsupported TXT version {version!r}")
    if properties.get(b"id") != label.encode():
        raise AdvertisementError(f"TXT id {properties.get(b'id')!r} differs from the name")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise AdvertisementError(f"bad port {port!r}")
    usable: list[str] = []
    for text in addresses:
        address = _usable_ipv4(text)
        if address is not None and address not in usable:
            usable.append(address)
            if len(usable) == MAX_ADDRESSES:
                break
    if not usable:
        raise AdvertisementError(f"no usable IPv4 address in {list(addresses)[:4]!r}")
    return PeerSeen(label, tuple(usable), port)


def _usable_ipv4(text: object) -> str | None:
    """``text`` in canonical form if it is an address a peer can be reached at.

    Loopback, multicast, broadcast, unspecified and reserved addresses are
    refused: a LAN peer advertising one is broken or trying to make us
    connect to ourselves.  Link-local (169.254/16) is kept, since a LAN
    without a DHCP server is exactly where this program is used.
    """
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    if (
        address.is_loopback
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        return None
    return str(address)


def peer_from_service_info(info: ServiceInfo) -> PeerSeen:
    """The peer a resolved zeroconf ServiceInfo describes, checked by :func:`parse_advertisement`.

    Raises :class:`AdvertisementError`, and nothing else, whatever the
    records hold: decoding errors of the TXT or addresses count as malformed.
    """
    try:
        name = info.name
        properties = info.properties
        addresses = info.parsed_addresses(IPVersion.V4Only)
        port = info.port
    except Exception as exc:  # any failure to decode network data means "malformed"
        raise AdvertisementError(f"undecodable records: {exc!r}") from exc
    return parse_advertisement(name, properties, addresses, port)


def _local_ipv4_addresses() -> list[str]:
    """The machine's IPv4 addresses, loopback excluded, in a stable order."""
    found = {
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.IPv4Address(ip.ip).is_loopback
    }
    return sorted(found, key=ipaddress.IPv4Address)


class Discovery:
    """Advertise this node and report the other nodes on the LAN, over mDNS.

    ``port`` is the TCP port peers should connect to, ``instance_id`` this
    start's id from :func:`new_instance_id`.  ``addresses`` are the IPv4
    addresses to advertise and to do mDNS on (the ``--interface`` option);
    None means every non-loopback IPv4 address of the machine, on every
    interface.  ``requery_interval`` is the mean number of seconds between
    the re-queries that rediscover peers after a partition heals.

    Call :meth:`run` once, in a nursery; read :attr:`events`.  Invalid
    arguments raise :class:`~p2ptchap.core.errors.UsageError`.
    """

    def __init__(
        self,
        port: int,
        instance_id: str,
        addresses: list[str] | None = None,
        requery_interval: float = 3.0,
        *,
        resolve_timeout: float = 2.0,
        event_buffer: int = 64,
    ) -> None:
        if not 1 <= port <= 65535:
            raise UsageError(f"port {port} is out of range")
        if not INSTANCE_ID_PATTERN.fullmatch(instance_id):
            raise UsageError(f"{instance_id!r} is not an instance id from new_instance_id()")
        if not requery_interval > 0 or not resolve_timeout > 0 or event_buffer < 1:
            raise UsageError("requery_interval, resolve_timeout and event_buffer must be positive")
        if addresses is not None:
            if not addresses:
                raise UsageError("an empty address list advertises nothing; pass None for all")
            for address in addresses:
                if _usable_ipv4(address) != address:
                    raise UsageError(
                        f"not a usable IPv4 address: {address!r}",
                        user_message=N_(
                            "'{address}' is not a usable IPv4 address for --interface; "
                            "give one of this computer's LAN addresses, like 192.168.1.20."
                        ),
                        address=address,
                    )
        self._port = port
        self._instance_id = instance_id
        self._addresses = list(addresses) if addresses is not None else None
        self._requery_interval = requery_interval
        self._resolve_timeout = resolve_timeout
        self._send_events, self._receive_events = trio.open_memory_channel[DiscoveryEvent](
            event_buffer
        )
        # Names whose state changed, by full service name: True if removed.
        # Written by zeroconf's browser thread, drained by trio, hence the
        # lock.  Keeping only the latest change per name is what lets a slow
        # reader apply backpressure without losing anything: the event it
        # finally gets reflects the newest state.
        self._pending: dict[str, bool] = {}
        self._pending_lock = threading.Lock()
        self._wake_send, self._wake_receive = trio.open_memory_channel[None](1)
        self._trio_token: trio.lowlevel.TrioToken | None = None
        # Peers reported by PeerSeen and not yet by PeerGone: trio side only.
        self._known: dict[str, PeerSeen] = {}
        self._started = False
        # Jitter keeps nodes started together from querying in lock-step.
        # It has no security role, so the system generator's quality is moot.
        self._jitter = random.SystemRandom()

    @property
    def instance_id(self) -> str:
        """This node's instance id, as advertised."""
        return self._instance_id

    @property
    def events(self) -> trio.MemoryReceiveChannel[DiscoveryEvent]:
        """:class:`PeerSeen` and :class:`PeerGone` events, never about ourselves.

        Bounded: while nobody reads, discovery waits and merges further
        changes per peer, so nothing is lost and the newest state wins.  The
        channel closes when :meth:`run` returns.
        """
        return self._receive_events

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Advertise and browse until cancelled; started() once the service is registered.

        On cancellation it withdraws the advertisement (goodbye packets, so
        peers see :class:`PeerGone` at once), stops zeroconf and joins its
        threads before returning.  Raises :class:`DiscoveryError` if mDNS
        cannot start (no usable address, sockets refused, name conflict).
        """
        if self._started:
            raise UsageError("Discovery.run() can be called only once")
        self._started = True
        self._trio_token = trio.lowlevel.current_trio_token()
        try:
            zeroconf, browser, info = await trio.to_thread.run_sync(self._start_zeroconf)
            try:
                failure: DiscoveryError | None = None
                async with trio.open_nursery() as nursery:
                    # Peers found while our own probing and announcing run
                    # (about 1.5 s) are reported at once, not after it.
                    nursery.start_soon(self._deliver_changes_forever, zeroconf)
                    try:
                        await trio.to_thread.run_sync(zeroconf.register_service, info)
                    except (EventLoopBlocked, ZeroconfError, OSError) as exc:
                        # Kept for after the nursery, which would wrap it in
                        # an ExceptionGroup: callers get a plain error.
                        failure = DiscoveryError(f"registering {info.name}: {exc!r}")
                        failure.__cause__ = exc
                        nursery.cancel_scope.cancel()
                    else:
                        log.info(
                            "advertising %s on %s port %d",
                            self._instance_id,
                            ", ".join(info.parsed_addresses()),
                            self._port,
                        )
                        task_status.started()
                        nursery.start_soon(self._requery_forever, zeroconf)
                if failure is not None:
                    raise failure
            finally:
                # Shielded: this runs on cancellation, and to_thread would
                # otherwise refuse to start.  close() sends the goodbyes and
                # joins zeroconf's loop thread; both are bounded (< 1 s).
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._stop_zeroconf, zeroconf, browser)
        finally:
            self._send_events.close()

    # --- zeroconf side (worker threads) -------------------------------------

    def _start_zeroconf(self) -> tuple[Zeroconf, ServiceBrowser, ServiceInfo]:
        """Open zeroconf's sockets and start browsing; blocking, so in a worker thread."""
        if self._addresses is None:
            addresses = _local_ipv4_addresses()
            if not addresses:
                raise DiscoveryError(
                    "no non-loopback IPv4 address",
                    user_message=N_(
                        "This computer has no network address yet; "
                        "connect it to the network, then start again."
                    ),
                )
            interfaces: InterfaceChoice | list[str] = InterfaceChoice.All
        else:
            addresses = interfaces = self._addresses
        try:
            info = build_service_info(self._instance_id, self._port, addresses)
            zeroconf = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except (OSError, ZeroconfError, BadTypeInNameException) as exc:
            detail = f"starting mDNS on {interfaces}: {exc!r}"
            if self._addresses is None:
                raise DiscoveryError(detail) from exc
            raise DiscoveryError(
                detail,
                user_message=N_(
                    "Peer discovery could not use {addresses}; check that --interface "
                    "gives an address of this computer that is connected to the network."
                ),
                addresses=", ".join(self._addresses),
            ) from exc
        try:
            # Browsing starts before registering so that no answer to our
            # first queries is missed; changes wait in _pending meanwhile.
            browser = ServiceBrowser(zeroconf, SERVICE_TYPE, handlers=[self._on_state_change])
        except BaseException:
            zeroconf.close()
            raise
        return zeroconf, browser, info

    @staticmethod
    def _stop_zeroconf(zeroconf: Zeroconf, browser: ServiceBrowser) -> None:
        """Stop browsing, say goodbye, close sockets and join zeroconf's threads."""
        # The browser thread may be waiting on trio in _on_state_change; the
        # trio loop stays free while this runs in a worker thread, so the
        # join inside cancel() cannot deadlock.
        try:
            browser.cancel()
        finally:
            zeroconf.close()

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser callback, on zeroconf's browser thread: note the change, wake trio.

        It must never raise (the thread would log and go on, but we would
        miss the wake-up) and never touch trio objects except through
        ``trio.from_thread``.
        """
        try:
            if not isinstance(name, str) or name == service_name(self._instance_id):
                return
            log.debug("browser: %s %s", state_change, name)
            with self._pending_lock:
                if name not in self._pending and len(self._pending) >= MAX_PENDING_NAMES:
                    log.warning("too many advertisements pending; ignoring %r", name)
                    return
                self._pending[name] = state_change is ServiceStateChange.Removed
            trio.from_thread.run_sync(self._wake_nowait, trio_token=self._trio_token)
        except trio.RunFinishedError:
            pass  # trio is gone: nobody is left to tell
        except Exception:  # a callback must never take the browser thread down
            log.exception("discovery callback failed for %r", name)

    def _wake_nowait(self) -> None:
        """Wake the delivery loop; a wake-up already pending covers this one too."""
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._wake_send.send_nowait(None)

    def _send_query(self, zeroconf: Zeroconf) -> None:
        """Multicast one PTR query for our type, with known answers; on zeroconf's loop."""
        try:
            outgoing = generate_service_query(
                zeroconf, current_time_millis(), {SERVICE_TYPE}, True, DNSQuestionType.QM
            )
            for message in outgoing:
                zeroconf.async_send(message)
        except Exception:  # a failed re-query is retried at the next interval
            log.debug("re-query failed", exc_info=True)

    def _resolve(self, zeroconf: Zeroconf, name: str) -> ServiceInfo | None:
        """Blocking lookup of ``name``'s SRV, TXT and A records (cache first)."""
        try:
            return zeroconf.get_service_info(
                SERVICE_TYPE, name, timeout=int(self._resolve_timeout * 1000)
            )
        except Exception:  # network data, or zeroconf closing: unresolved
            log.debug("resolving %r failed", name, exc_info=True)
            return None

    # --- trio side -----------------------------------------------------------

    async def _requery_forever(self, zeroconf: Zeroconf) -> None:
        """Re-query every ``requery_interval`` (±10 %) so unknown peers answer."""
        loop = zeroconf.loop
        if loop is None:  # pragma: no cover — zeroconf always sets it once started
            return
        while True:
            await trio.sleep(self._requery_interval * self._jitter.uniform(0.9, 1.1))
            # call_soon_threadsafe only appends to a queue and writes one byte
            # to a pipe: it does not block, so no worker thread is needed.
            loop.call_soon_threadsafe(self._send_query, zeroconf)

    async def _deliver_changes_forever(self, zeroconf: Zeroconf) -> None:
        """Turn noted name changes into events, one batch per wake-up.

        Batches run one after the other, so two changes of the same name are
        never handled concurrently; names within a batch resolve in
        parallel, so one silent peer delays the others by at most
        ``resolve_timeout``.
        """
        async for _ in self._wake_receive:
            with self._pending_lock:
                batch, self._pending = self._pending, {}
            async with trio.open_nursery() as nursery:
                for name, removed in batch.items():
                    nursery.start_soon(self._apply_change, zeroconf, name, removed)

    async def _apply_change(self, zeroconf: Zeroconf, name: str, removed: bool) -> None:
        label = name[: -len(_SERVICE_SUFFIX)] if name.lower().endswith(_SERVICE_SUFFIX) else ""
        if removed:
            if self._known.pop(label, None) is not None:
                await self._emit(PeerGone(label))
            return
        info = await trio.to_thread.run_sync(self._resolve, zeroconf, name)
        if info is None:
            log.debug("%r did not resolve in time; waiting for its next update", name)
            return
        try:
            peer = peer_from_service_info(info)
        except AdvertisementError as exc:
            log.debug("ignoring advertisement %r: %s", name, exc.detail)
            return
        if peer.instance_id == self._instance_id:
            return
        if self._known.get(peer.instance_id) != peer:
            self._known[peer.instance_id] = peer
            await self._emit(peer)

    async def _emit(self, event: DiscoveryEvent) -> None:
        """Hand ``event`` to the reader, waiting while the channel is full."""
        # If the reader closed its end it wants no more events; advertising
        # goes on regardless.
        with contextlib.suppress(trio.BrokenResourceError):
            await self._send_events.send(event)

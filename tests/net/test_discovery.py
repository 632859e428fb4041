"""mDNS discovery: what we advertise, what we accept, the trio bridge, and real mDNS.

The first tests need nothing: they check the advertisement's content, the
parser against crafted and random input, and the thread-to-trio bridge with
a fake zeroconf.  The last ones run discovery nodes in network namespaces
(root only; they skip with the reason otherwise) and print the measured
discovery and rediscovery times (see them with ``pytest -s``).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import DNSOutgoing, ServiceInfo, ServiceStateChange

from p2ptchap.core.errors import UsageError
from p2ptchap.net import discovery
from p2ptchap.net.discovery import (
    INSTANCE_ID_PATTERN,
    MAX_ADDRESSES,
    SERVICE_TYPE,
    AdvertisementError,
    Discovery,
    PeerGone,
    PeerSeen,
    build_service_info,
    new_instance_id,
    parse_advertisement,
    peer_from_service_info,
    service_name,
    txt_properties,
)
from p2ptchap.testing.netns import Host, lan, netns_available
from tests.net import mdns_probe

ID = "abcdefghijklmnop"
OTHER = "bbbbbbbbbbbbbbbb"
NAME = f"{ID}._p2ptchap._tcp.local."
GOOD_TXT = {b"v": b"1", b"id": ID.encode()}

needs_netns = pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))

# --- the advertisement ------------------------------------------------------


def test_new_instance_id_uses_the_given_rng() -> None:
    requested: list[int] = []

    def rng(size: int) -> bytes:
        requested.append(size)
        return bytes(range(size))

    assert new_instance_id(rng) == base64.b32encode(bytes(range(10))).decode().lower()
    assert requested == [10]
    assert new_instance_id(random.Random(7).randbytes) == new_instance_id(
        random.Random(7).randbytes
    )
    assert new_instance_id(random.Random(7).randbytes) != new_instance_id(
        random.Random(8).randbytes
    )
    assert INSTANCE_ID_PATTERN.fullmatch(new_instance_id(random.Random(9).randbytes))


def test_advertisement_holds_only_version_and_id() -> None:
    info = build_service_info(ID, 7400, ["10.1.2.3"])
    assert txt_properties(ID) == {"v": "1", "id": ID}
    assert info.properties == GOOD_TXT

    # Serialise the records exactly as zeroconf announces them, then read
    # the packet back with the independent hand-written parser.
    announcement = DNSOutgoing(0x8400)  # response, authoritative
    for record in (info.dns_pointer(), info.dns_service(), info.dns_text(), *info.dns_addresses()):
        announcement.add_answer_at_time(record, 0)
    (packet,) = announcement.packets()
    records = {(r["type"], r["name"]): r["data"] for r in mdns_probe.parse(packet)}
    assert records == {
        ("PTR", "_p2ptchap._tcp.local"): f"{ID}._p2ptchap._tcp.local",
        ("SRV", f"{ID}._p2ptchap._tcp.local"): {"port": 7400, "target": f"{ID}.local"},
        ("TXT", f"{ID}._p2ptchap._tcp.local"): ["v=1", f"id={ID}"],
        ("A", f"{ID}.local"): "10.1.2.3",
    }


# --- parsing what others advertise ---------------------------------------------


def parse(**change: Any) -> PeerSeen:
    fields: dict[str, Any] = {
        "name": NAME,
        "properties": GOOD_TXT,
        "addresses": ["10.1.2.3"],
        "port": 7400,
    }
    fields.update(change)
    return parse_advertisement(**fields)


def test_parse_accepts_a_well_formed_advertisement() -> None:
    assert parse() == PeerSeen(ID, ("10.1.2.3",), 7400)


def test_parse_ignores_unknown_txt_keys() -> None:
    assert parse(properties={**GOOD_TXT, b"future": b"x", b"flag": None}).instance_id == ID


def test_parse_keeps_usable_addresses_in_order_once() -> None:
    addresses = ["127.0.0.1", "10.0.0.2", "169.254.3.4", "10.0.0.2", "::1", "224.0.0.251", "x"]
    assert parse(addresses=addresses).addresses == ("10.0.0.2", "169.254.3.4")
    many = [f"10.0.{i}.1" for i in range(MAX_ADDRESSES + 5)]
    assert parse(addresses=many).addresses == tuple(many[:MAX_ADDRESSES])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": f"{ID}._other._tcp.local."}, "not a"),
        ({"name": f"{ID}._p2ptchap._udp.local."}, "not a"),
        ({"name": f"{ID.upper()}._p2ptchap._tcp.local."}, "not an instance id"),
        ({"name": "short._p2ptchap._tcp.local."}, "not an instance id"),
        ({"name": f"x.{ID}._p2ptchap._tcp.local."}, "not an instance id"),
        ({"name": "._p2ptchap._tcp.local."}, "not an instance id"),
        ({"properties": {b"id": ID.encode()}}, "no version"),
        ({"properties": {b"v": None, b"id": ID.encode()}}, "no version"),
        ({"properties": {b"v": b"2", b"id": ID.encode()}}, "unsupported"),
        ({"properties": {b"v": b"1 ", b"id": ID.encode()}}, "unsupported"),
        ({"properties": {b"v": b"1"}}, "differs"),
        ({"properties": {b"v": b"1", b"id": OTHER.encode()}}, "differs"),
        ({"properties": {b"v": b"1", b"id": None}}, "differs"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": None}, "port"),
        ({"port": True}, "port"),
        ({"addresses": []}, "address"),
        ({"addresses": ["127.0.0.1", "0.0.0.0", "255.255.255.255", "240.0.0.1"]}, "address"),
        ({"addresses": ["fe80::1", "not an address", ""]}, "address"),
    ],
)
def test_parse_rejects_malformed_advertisements(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(AdvertisementError, match=reason):
        parse(**change)


label = st.sampled_from([ID, OTHER, "", "x", ID.upper()]) | st.text(max_size=20)
txt_value = st.none() | st.sampled_from([b"1", ID.encode(), b""]) | st.binary(max_size=20)
ipv4_text = st.ip_addresses(v=4).map(str)


@given(
    name=st.builds(
        lambda lb, suffix: lb + suffix, label, st.sampled_from([".", "._p2ptchap._tcp.local."])
    )
    | st.text(),
    properties=st.dictionaries(
        st.sampled_from([b"v", b"id", b""]) | st.binary(max_size=4), txt_value
    ),
    addresses=st.lists(ipv4_text | st.text(max_size=12), max_size=20),
    port=st.none() | st.integers(-(2**20), 2**20),
)
def test_parse_only_ever_returns_a_peer_or_raises_advertisement_error(
    name: str, properties: dict[bytes, bytes | None], addresses: list[str], port: int | None
) -> None:
    try:
        peer = parse_advertisement(name, properties, addresses, port)
    except AdvertisementError:
        return
    assert INSTANCE_ID_PATTERN.fullmatch(peer.instance_id)
    assert 1 <= peer.port <= 65535
    assert 1 <= len(peer.addresses) <= MAX_ADDRESSES


@given(text=st.binary(max_size=300))
def test_any_txt_bytes_from_the_network_are_handled(text: bytes) -> None:
    info = ServiceInfo(
        SERVICE_TYPE, NAME, port=7400, properties=text, addresses=[b"\x0a\x01\x02\x03"]
    )
    try:
        peer = peer_from_service_info(info)
    except AdvertisementError:
        return
    assert peer == PeerSeen(ID, ("10.1.2.3",), 7400)


# --- constructing Discovery --------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"port": 0},
        {"port": 70000},
        {"instance_id": "Not-An-Id"},
        {"instance_id": ID + "a"},
        {"addresses": []},
        {"requery_interval": 0},
    ],
)
def test_discovery_rejects_bad_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Discovery(**{"port": 7400, "instance_id": ID, **arguments})


@pytest.mark.parametrize("address", ["127.0.0.1", "eth0", "10.0.0.1/24", "::1", "224.0.0.251"])
def test_discovery_rejects_an_unusable_interface_address(address: str) -> None:
    with pytest.raises(UsageError) as caught:
        Discovery(7400, ID, [address])
    assert address in caught.value.render()


# --- the bridge from zeroconf's thread to trio, with a fake zeroconf -------------------


class FakeZeroconf:
    """Answers get_service_info from a dict, like a zeroconf whose cache is full."""

    def __init__(self) -> None:
        self.infos: dict[str, ServiceInfo] = {}

    def add(self, instance_id: str, port: int = 7400, version: bytes = b"1") -> str:
        name = service_name(instance_id)
        properties = {b"v": version, b"id": instance_id.encode()}
        self.infos[name] = ServiceInfo(
            SERVICE_TYPE, name, port=port, properties=properties, parsed_addresses=["10.1.2.3"]
        )
        return name

    def get_service_info(self, type_: str, name: str, timeout: int = 3000) -> ServiceInfo | None:
        return self.infos.get(name)


def peer(instance_id: str, port: int = 7400) -> PeerSeen:
    return PeerSeen(instance_id, ("10.1.2.3",), port)


async def test_changes_become_events_without_loss_under_backpressure() -> None:
    """Browser callbacks (on another thread) become events; a slow reader loses nothing.

    With a one-event buffer and nobody reading, the delivery loop blocks;
    changes arriving meanwhile are merged per name, so that the reader
    finally gets the newest state of every peer, nothing about ourselves,
    nothing malformed, and no PeerGone for a peer it was never told about.
    """
    own = Discovery(7400, ID, ["10.9.9.9"], event_buffer=1)
    own._trio_token = trio.lowlevel.current_trio_token()
    zeroconf = FakeZeroconf()
    b, c, d, e = (letter * 16 for letter in "bcde")
    names = {x: zeroconf.add(x) for x in (b, c, d, e)}
    zeroconf.add(ID)  # ourselves, as heard back from the network
    bad = zeroconf.add("vvvvvvvvvvvvvvvv", version=b"2")

    def browser_thread(*changes: tuple[str, ServiceStateChange]) -> Callable[[], None]:
        def run() -> None:
            for name, change in changes:
                own._on_state_change(zeroconf, SERVICE_TYPE, name, change)  # type: ignore[arg-type]

        return run

    added, removed = ServiceStateChange.Added, ServiceStateChange.Removed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(own._deliver_changes_forever, zeroconf)
        await trio.to_thread.run_sync(
            browser_thread((names[b], added), (names[c], added), (NAME, added), (bad, added))
        )
        # Wait until one event fills the buffer and the next one is blocked.
        with trio.fail_after(5):
            while own._send_events.statistics().tasks_waiting_send < 1:
                await trio.sleep(0.01)
        zeroconf.add(b, port=7401)
        await trio.to_thread.run_sync(
            browser_thread(
                (names[d], added),
                (names[d], removed),  # merged with the line above: nothing to report
                (names[b], ServiceStateChange.Updated),
                (names[e], removed),  # never reported as seen: no PeerGone
            )
        )
        with trio.fail_after(5):
            first = {await own.events.receive(), await own.events.receive()}
            assert first == {peer(b), peer(c)}
            assert await own.events.receive() == peer(b, 7401)
            # A last change proves, by arriving next, that nothing came between.
            await trio.to_thread.run_sync(browser_thread((names[c], removed)))
            assert await own.events.receive() == PeerGone(c)
        nursery.cancel_scope.cancel()


def test_callback_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    own = Discovery(7400, ID, ["10.9.9.9"])

    async def remember_token() -> None:
        own._trio_token = trio.lowlevel.current_trio_token()

    trio.run(remember_token)
    # trio has finished: the wake-up cannot be delivered, and that is fine.
    own._on_state_change(None, SERVICE_TYPE, service_name(OTHER), ServiceStateChange.Added)  # type: ignore[arg-type]
    # Garbage from a confused library must not escape either.
    own._on_state_change(None, SERVICE_TYPE, None, None)  # type: ignore[arg-type]
    own._trio_token = object()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="p2ptchap.discovery"):
        own._on_state_change(None, SERVICE_TYPE, service_name("c" * 16), ServiceStateChange.Added)  # type: ignore[arg-type]
    assert "callback failed" in caplog.text


def test_pending_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "MAX_PENDING_NAMES", 2)
    own = Discovery(7400, ID, ["10.9.9.9"])

    async def flood() -> None:
        own._trio_token = trio.lowlevel.current_trio_token()

        def browser_thread() -> None:
            for instance_id in ("b" * 16, "c" * 16, "d" * 16, "b" * 16):
                own._on_state_change(
                    None, SERVICE_TYPE, service_name(instance_id), ServiceStateChange.Added
                )  # type: ignore[arg-type]

        await trio.to_thread.run_sync(browser_thread)

    trio.run(flood)
    assert set(own._pending) == {service_name("b" * 16), service_name("c" * 16)}


# --- real mDNS between network namespaces (root) -------------------------------------

NODE = Path(__file__).with_name("discovery_node.py")
PROBE = Path(__file__).with_name("mdns_probe.py")
#: Generous bounds for noisy CI machines; the measured times are printed.
DISCOVERY_BOUND = 10.0
REDISCOVERY_BOUND = 10.0


class Node:
    """A discovery_node.py process in a namespace, its JSON events read by a thread."""

    def __init__(self, host: Host, requery: float = 3.0) -> None:
        self.launched = time.monotonic()
        self.process = host.run(
            [
                *(sys.executable, str(NODE), "--address", host.address),
                *("--requery", str(requery), "--lifetime", "90"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.history: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(
            target=self.stderr.extend, args=(self.process.stderr,), daemon=True
        ).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._events.put(json.loads(line))

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first event, past or future, matching ``predicate``; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.history):
                if predicate(self.history[index]):
                    return self.history[index]
                index += 1
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no matching event in {timeout} s: {self.history} {self.stderr}")
            try:
                self.history.append(self._events.get(timeout=left))
            except queue.Empty:
                continue

    def started(self, timeout: float = DISCOVERY_BOUND) -> str:
        event = self.wait_for(lambda e: e["kind"] == "started", timeout)
        return str(event["id"])

    def seen(self, instance_id: str, timeout: float) -> dict[str, Any]:
        return self.wait_for(lambda e: e["kind"] == "seen" and e["id"] == instance_id, timeout)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the "stopped" event; the exit status must be 0."""
        self.process.send_signal(signal.SIGTERM)
        stopped = self.wait_for(lambda e: e["kind"] == "stopped", 10)
        assert self.process.wait(timeout=10) == 0, self.stderr
        assert stopped["leftover_threads"] == [], "zeroconf threads must all be joined"
        return stopped

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@needs_netns
@pytest.mark.slow
def test_nodes_discover_each_other_and_rediscover_after_a_partition() -> None:
    with lan(3) as net:
        c_host = net.hosts[2]
        nodes = [Node(host) for host in net.hosts]
        new_c: Node | None = None
        try:
            ids = [node.started() for node in nodes]
            for node, own_id, host in zip(nodes, ids, net.hosts, strict=True):
                times = []
                for other_id, other_host in zip(ids, net.hosts, strict=True):
                    if other_id != own_id:
                        event = node.seen(other_id, DISCOVERY_BOUND)
                        assert event["addresses"] == [other_host.address]
                        assert event["port"] == 7400
                        times.append(event["monotonic"] - node.launched)
                print(f"discovery: {host.address} saw both others {max(times):.2f} s after launch")
                assert max(times) < DISCOVERY_BOUND

            # C is cut off, stops (its goodbye is lost), and a new C starts
            # on the far side: its announcements are lost too.  Only the
            # periodic re-queries can bring the two sides together again.
            a, b, old_c = nodes
            c_host.partition()
            old_c.stop()
            new_c = Node(c_host)
            new_id = new_c.started()
            healed = time.monotonic()
            c_host.heal()
            for node, name in ((a, "A"), (b, "B")):
                delay = node.seen(new_id, REDISCOVERY_BOUND)["monotonic"] - healed
                print(f"rediscovery: {name} saw the new C {delay:.2f} s after the heal")
                assert delay < REDISCOVERY_BOUND
            for other_id in ids[:2]:
                delay = new_c.seen(other_id, REDISCOVERY_BOUND)["monotonic"] - healed
                print(f"rediscovery: the new C saw {other_id} {delay:.2f} s after the heal")

            # The old C vanished without a goodbye: mDNS still lists it (its
            # records live for minutes), which is why liveness is not mDNS's job.
            for node in (a, b):
                assert not [e for e in node.history if e["kind"] == "gone"]

            # A clean stop says goodbye, and the others hear it at once.
            stopping = time.monotonic()
            new_c.stop()
            for node in (a, b):
                gone = node.wait_for(lambda e: e["kind"] == "gone" and e["id"] == new_id, 5)
                print(f"goodbye heard {gone['monotonic'] - stopping:.3f} s after SIGTERM")
            a.stop()
            b.stop()
        finally:
            for node in [*nodes, *([new_c] if new_c else [])]:
                node.kill()


@needs_netns
@pytest.mark.slow
def test_an_independent_client_sees_only_version_and_id() -> None:
    with lan(2) as net:
        a_host, b_host = net.hosts
        node = Node(a_host)
        try:
            instance_id = node.started()
            probe = b_host.call([sys.executable, str(PROBE), b_host.address], timeout=30)
            assert probe.returncode == 0, probe.stderr
            records = json.loads(probe.stdout)["records"]
            node.stop()
        finally:
            node.kill()

    instance = f"{instance_id}._p2ptchap._tcp.local"
    host = f"{instance_id}.local"
    found = {(r["type"], r["name"]): r["data"] for r in records}
    assert found[("PTR", "_p2ptchap._tcp.local")] == instance
    assert found[("SRV", instance)] == {"port": 7400, "target": host}
    assert found[("TXT", instance)] == ["v=1", f"id={instance_id}"]
    assert found[("A", host)] == a_host.address
    # Nothing else is named: no machine name, no user, no key.
    assert {name for _, name in found} <= {"_p2ptchap._tcp.local", instance, host}
    labels = {label for _, name in found for label in name.split(".")}
    assert socket.gethostname().split(".")[0] not in labels

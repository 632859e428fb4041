"""Network benchmark: handshakes, connection set-up, secure-channel throughput.

Each figure is measured next to a reference taken in the same run:

* handshakes per second (both ends, certificates verified, in one process)
  against the X25519 and Ed25519 operations a handshake cannot avoid;
* connection set-up on loopback (TCP connect + Noise XX + certificates)
  against a bare TCP connect, p50 and p99;
* bulk throughput through SecureConnection against raw trio TCP.

Run:  python bench/network.py [--short]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from functools import partial
from pathlib import Path

import nacl.bindings
import nacl.signing
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from p2ptchap.core import identity
from p2ptchap.core.channel import NEED_DATA, SecureChannel, make_credentials
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.net.connection import SecureConnection
from tests.conftest import NOW, Member, Org, make_org, make_rng


def channel(member: Member, org: Org, initiator: bool) -> SecureChannel:
    static = X25519KeyPair(member.exchange_secret.secret_bytes())
    revocations = RevocationSet()
    return SecureChannel(
        initiator=initiator,
        static=static,
        credentials=make_credentials(
            member.certificate, member.device, member.device_secret, static.public
        ),
        verify=lambda a, d: identity.verify_chain(a, d, org.trust, revocations, NOW),
        rng=os.urandom,
    )


def handshake_in_memory(alice: Member, bruno: Member, org: Org) -> None:
    a, b = channel(alice, org, True), channel(bruno, org, False)
    for _ in range(3):
        for source, sink in ((a, b), (b, a)):
            data = source.data_to_send()
            if data:
                sink.receive_data(data)
                while sink.next_event() is not NEED_DATA:
                    pass
    assert a.is_open and b.is_open


async def setup_latencies(
    alice: Member, bruno: Member, org: Org, n: int
) -> tuple[list[float], list[float]]:
    raw: list[float] = []
    secure: list[float] = []

    async def echo_raw(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async def serve_secure(stream: trio.SocketStream) -> None:
        connection = SecureConnection(stream, channel(bruno, org, False))
        await connection.handshake()
        await connection.aclose()

    async with trio.open_nursery() as nursery:
        raw_listeners = await nursery.start(partial(trio.serve_tcp, echo_raw, 0, host="127.0.0.1"))
        secure_listeners = await nursery.start(
            partial(trio.serve_tcp, serve_secure, 0, host="127.0.0.1")
        )
        raw_port = raw_listeners[0].socket.getsockname()[1]
        secure_port = secure_listeners[0].socket.getsockname()[1]
        for _ in range(n):
            start = time.perf_counter()
            stream = await trio.open_tcp_stream("127.0.0.1", raw_port)
            raw.append(time.perf_counter() - start)
            await stream.aclose()
            start = time.perf_counter()
            stream = await trio.open_tcp_stream("127.0.0.1", secure_port)
            connection = SecureConnection(stream, channel(alice, org, True))
            await connection.handshake()
            secure.append(time.perf_counter() - start)
            await connection.aclose()
        nursery.cancel_scope.cancel()
    return raw, secure


async def throughput(alice: Member, bruno: Member, org: Org, total: int) -> tuple[float, float]:
    chunk = os.urandom(1 << 20)
    done = trio.Event()

    async def sink_raw(stream: trio.SocketStream) -> None:
        received = 0
        while received < total:
            data = await stream.receive_some(1 << 20)
            if not data:
                break
            received += len(data)
        done.set()

    async def sink_secure(stream: trio.SocketStream) -> None:
        connection = SecureConnection(stream, channel(bruno, org, False))
        await connection.handshake()
        received = 0
        while received < total:
            message = await connection.receive_message()
            if message is None:
                break
            received += len(message)
        done.set()

    async def measure(handler: object, secure: bool) -> float:
        nonlocal done
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            connection = None
            if secure:
                connection = SecureConnection(stream, channel(alice, org, True))
                await connection.handshake()
            start = time.perf_counter()
            for _ in range(total // len(chunk)):
                if connection is not None:
                    await connection.send_message(chunk)
                else:
                    await stream.send_all(chunk)
            await done.wait()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return total / elapsed / (1 << 20)

    return await measure(sink_raw, False), await measure(sink_secure, True)


@dataclasses.dataclass(frozen=True)
class Params:
    seconds: float  # per rate measured
    connections: int  # set-ups timed
    bulk: int  # bytes sent through each channel


FULL = Params(seconds=2.0, connections=200, bulk=256 * common.MIB)
SHORT = Params(seconds=0.3, connections=20, bulk=8 * common.MIB)


def crypto_floor(seconds: float) -> float:
    """Handshakes per second that the X25519 and Ed25519 operations alone would allow.

    One handshake, both ends: 8 X25519 operations (3 DH each side, 2
    ephemeral keys made) and 6 signature checks (2 certificate chains of 2,
    2 static-key signatures).
    """
    secret, peer = os.urandom(32), nacl.bindings.crypto_scalarmult_base(os.urandom(32))
    dh_rate = common.rate(lambda: nacl.bindings.crypto_scalarmult(secret, peer), seconds, 20)
    verify_rate = common.ed25519_verify_rate(seconds, size=300)
    return 1 / (8 / dh_rate + 6 / verify_rate)


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "network",
        "Network",
        f"Handshakes in one process over {params.seconds} s; {params.connections} connection "
        f"set-ups on loopback; {params.bulk >> 20} MiB through each channel in 1 MiB messages.",
    )
    org = make_org(make_rng(3))
    alice, bruno = org.member("alice@x.gouv.fr", "Alice"), org.member("bruno@x.gouv.fr", "Bruno")

    progress("handshakes")
    ideal = crypto_floor(params.seconds)
    handshakes = common.rate(lambda: handshake_in_memory(alice, bruno, org), params.seconds)
    section.add(
        "handshakes",
        "handshakes, both ends in one process, certificates verified",
        handshakes,
        "/s",
        ideal,
        "8 X25519 + 6 Ed25519 verify alone",
    )
    progress("connection set-up on loopback")
    raw, secure = trio.run(setup_latencies, alice, bruno, org, params.connections)
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        section.add(
            f"setup_{name}",
            f"connection set-up on loopback (TCP + Noise XX + chains), {name}",
            common.percentile(secure, q) * 1000,
            "ms",
            common.percentile(raw, q) * 1000,
            f"bare TCP connect, {name}",
        )
    progress("bulk throughput")
    raw_mib, secure_mib = trio.run(throughput, alice, bruno, org, params.bulk)
    section.add(
        "throughput",
        "secure channel throughput, 1 MiB messages",
        secure_mib,
        "MiB/s",
        raw_mib,
        "raw trio TCP",
    )
    return section


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL)

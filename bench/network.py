"""Network benchmark: handshakes, connection set-up, secure-channel throughput.

Each figure is measured next to a reference taken in the same run:

* handshakes per second (both ends, certificates verified, in one process)
  against the X25519 and Ed25519 operations a handshake cannot avoid;
* connection set-up on loopback (TCP connect + Noise XX + certificates)
  against a bare TCP connect, p50 and p99;
* bulk throughput through SecureConnection against raw trio TCP.

Run:  .venv/bin/python bench/network.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import nacl.bindings
import nacl.signing
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def per_second(fn: object, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()  # type: ignore[operator]
        count += 1
    return count / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for CI)")
    args = parser.parse_args()
    seconds, n, total = (0.3, 20, 8 << 20) if args.quick else (2.0, 200, 256 << 20)

    org = make_org(make_rng(3))
    alice, bruno = org.member("alice@x.gouv.fr", "Alice"), org.member("bruno@x.gouv.fr", "Bruno")

    secret, peer = os.urandom(32), nacl.bindings.crypto_scalarmult_base(os.urandom(32))
    dh_rate = per_second(lambda: nacl.bindings.crypto_scalarmult(secret, peer), seconds)
    key = nacl.signing.SigningKey(os.urandom(32))
    signed = key.sign(b"x" * 300)
    verify_rate = per_second(lambda: key.verify_key.verify(signed), seconds)
    # One handshake, both ends: 6 DH (3 each side, plus 2 ephemeral keys made)
    # and 6 signature checks (2 certificate chains of 2, 2 static-key signatures).
    ideal = 1 / (8 / dh_rate + 6 / verify_rate)
    handshakes = per_second(lambda: handshake_in_memory(alice, bruno, org), seconds)

    raw, secure = trio.run(setup_latencies, alice, bruno, org, n)
    raw_mib, secure_mib = trio.run(throughput, alice, bruno, org, total)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'measure':52} {'value':>14} {'reference':>14} {'ratio':>7}")
    print(
        f"{'handshakes/s, both ends in one process':52} {handshakes:>12.0f}/s "
        f"{ideal:>12.0f}/s {handshakes / ideal:>7.2f}"
    )
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        s_ms, r_ms = percentile(secure, q) * 1000, percentile(raw, q) * 1000
        print(
            f"{'connection set-up on loopback ' + name:52} {s_ms:>11.2f} ms "
            f"{r_ms:>11.2f} ms {s_ms / r_ms:>7.1f}"
        )
    print(
        f"{'throughput, 1 MiB messages':52} {secure_mib:>9.0f} MiB/s "
        f"{raw_mib:>9.0f} MiB/s {secure_mib / raw_mib:>7.2f}"
    )
    print(
        f"(set-up mean {statistics.mean(secure) * 1000:.2f} ms over {n}; "
        f"reference for handshakes: X25519 {dh_rate:.0f}/s, Ed25519 verify {verify_rate:.0f}/s)"
    )


if __name__ == "__main__":
    main()

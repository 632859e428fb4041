"""A bare discovery node for the namespace tests: advertises and prints what it sees.

Run inside a host namespace as ``python discovery_node.py --address IP``.
Each line on standard output is one JSON object with a ``kind`` and the
``monotonic`` time it happened (CLOCK_MONOTONIC is shared by all network
namespaces, so the test can compare it with its own clock)::

    {"kind": "boot"}                          the interpreter is up
    {"kind": "started", "id": ...}            registered, browsing
    {"kind": "seen", "id": ..., "addresses": [...], "port": ...}
    {"kind": "gone", "id": ...}
    {"kind": "stopped", "leftover_threads": [...]}   clean exit follows

It stops cleanly on SIGTERM or SIGINT, and by itself after ``--lifetime``
seconds so that a forgotten process can never run on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

import trio

from p2ptchap.net.discovery import Discovery, PeerGone, PeerSeen, new_instance_id


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"kind": kind, "monotonic": time.monotonic(), **fields}), flush=True)


async def main(arguments: argparse.Namespace) -> None:
    emit("boot")
    discovery = Discovery(
        port=arguments.port,
        instance_id=new_instance_id(os.urandom),
        addresses=[arguments.address] if arguments.address else None,
        requery_interval=arguments.requery,
    )
    with trio.move_on_after(arguments.lifetime):
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

            async def report_events() -> None:
                # Ends when run() returns and closes the channel.
                async for event in discovery.events:
                    if isinstance(event, PeerSeen):
                        emit(
                            "seen", id=event.instance_id, addresses=event.addresses, port=event.port
                        )
                    elif isinstance(event, PeerGone):
                        emit("gone", id=event.instance_id)

            nursery.start_soon(stop_on_signal)
            # Reading starts before registration completes: peers can be
            # reported while our own probing is still under way.
            nursery.start_soon(report_events)
            await nursery.start(discovery.run)
            emit("started", id=discovery.instance_id)
    # Threads still alive besides ours and trio's idle worker cache: zeroconf
    # must have joined all of its own by now.
    leftover = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.name.startswith("Trio thread")
    ]
    emit("stopped", leftover_threads=leftover)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", help="IPv4 address to advertise (default: all)")
    parser.add_argument("--port", type=int, default=7400)
    parser.add_argument("--requery", type=float, default=3.0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--debug", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if options.debug else logging.WARNING,
        format="%(relativeCreated)6.0f %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("zeroconf").setLevel(logging.WARNING)
    trio.run(main, options)

"""An independent mDNS client: one DNS-SD browse query, built and parsed by hand.

Run inside a host namespace as ``python mdns_probe.py SOURCE_IP [SERVICE]``.
It sends one PTR question for ``SERVICE`` (default ``_p2ptchap._tcp.local``)
to 224.0.0.251:5353 from an ephemeral port, which makes it a "legacy
unicast" query (RFC 6762 §6.7): responders answer straight back to it.  It
collects every answer for ``--wait`` seconds (asking again, up to
``--tries`` times, while nothing came back) and prints them as one JSON
object ``{"records": [{"section", "name", "type", "data"}, ...]}``.

It deliberately uses the standard library only, not zeroconf, so the test
that runs it checks our advertisement against the wire format itself rather
than against the library that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import time

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
TYPE_NAMES = {1: "A", 12: "PTR", 16: "TXT", 28: "AAAA", 33: "SRV", 47: "NSEC"}
MAX_POINTER_HOPS = 32


def encode_name(name: str) -> bytes:
    labels = [label for label in name.split(".") if label]
    return b"".join(bytes([len(raw)]) + raw for raw in (lb.encode() for lb in labels)) + b"\0"


def decode_name(message: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` and the offset just past it (compression followed)."""
    labels: list[str] = []
    end = None
    for _ in range(MAX_POINTER_HOPS):
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        labels.append(message[offset + 1 : offset + 1 + length].decode("utf-8", "replace"))
        offset += 1 + length
    raise ValueError("too many compression pointers")


def decode_rdata(message: bytes, rtype: int, offset: int, length: int) -> object:
    rdata = message[offset : offset + length]
    if rtype == 1:
        return socket.inet_ntoa(rdata)
    if rtype == 12:
        return decode_name(message, offset)[0]
    if rtype == 33:
        port = struct.unpack("!H", rdata[4:6])[0]  # after priority and weight
        return {"port": port, "target": decode_name(message, offset + 6)[0]}
    if rtype == 16:
        strings, index = [], 0
        while index < len(rdata):
            size = rdata[index]
            strings.append(rdata[index + 1 : index + 1 + size].decode("utf-8", "replace"))
            index += 1 + size
        return strings
    return rdata.hex()


def parse(message: bytes) -> list[dict[str, object]]:
    _, _, qdcount, ancount, nscount, arcount = struct.unpack("!6H", message[:12])
    offset = 12
    for _ in range(qdcount):
        offset = decode_name(message, offset)[1] + 4
    records = []
    sections = ["answer"] * ancount + ["authority"] * nscount + ["additional"] * arcount
    for section in sections:
        name, offset = decode_name(message, offset)
        rtype, _, _, length = struct.unpack("!HHIH", message[offset : offset + 10])
        offset += 10
        records.append(
            {
                "section": section,
                "name": name,
                "type": TYPE_NAMES.get(rtype, str(rtype)),
                "data": decode_rdata(message, rtype, offset, length),
            }
        )
        offset += length
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="this host's IPv4 address (the multicast interface)")
    parser.add_argument("service", nargs="?", default="_p2ptchap._tcp.local")
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to listen per try")
    parser.add_argument("--tries", type=int, default=3)
    options = parser.parse_args()

    query_id = int.from_bytes(os.urandom(2), "big")
    # One question, class IN, no unicast-response bit: plain legacy query.
    query = struct.pack("!6H", query_id, 0, 1, 0, 0, 0) + encode_name(options.service)
    query += struct.pack("!HH", 12, 1)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((options.source, 0))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(options.source))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)

    # UDP may lose the query: ask up to --tries times, stopping at the first
    # round that got answers (all answers of that round are collected).
    records: list[dict[str, object]] = []
    for _ in range(options.tries):
        sock.sendto(query, (MDNS_GROUP, MDNS_PORT))
        deadline = time.monotonic() + options.wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                message, _ = sock.recvfrom(9000)
            except TimeoutError:
                break
            if len(message) >= 12 and struct.unpack("!H", message[:2])[0] == query_id:
                records.extend(parse(message))
        if records:
            break
    print(json.dumps({"records": records}))


if __name__ == "__main__":
    main()

"""Messages between connected nodes about the network itself.

Every application message on a secure channel is one deterministic CBOR map
with a text field ``"t"`` naming its type.  This module defines the types
that keep the network together; later layers (room sync, files) add theirs.
A node ignores types it does not know, so newer nodes can talk to older
ones.

``hello``  ``{"t": "hello", "port": uint}`` — sent first on every
           connection: the TCP port the sender listens on, so that the peer
           can give others an address where the sender accepts connections
           (the connection's own source port is ephemeral).
``peers``  ``{"t": "peers", "addrs": [[ip: text, port: uint], …]}`` — the
           listening addresses (IPv4 unicast) of the sender's other peers, at
           most :data:`MAX_GOSSIP_ADDRESSES`; how a node that knows one
           reachable peer comes to know them all (peer-address gossip).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.codec import Limits
from p2ptchap.core.errors import DecodeError

MAX_GOSSIP_ADDRESSES: Final = 64
#: Bounds for any application message's envelope; a layer with bigger
#: messages decodes its own type with its own limits.
MESSAGE_LIMITS: Final = Limits(max_bytes=4 << 20, max_items=1 << 16, max_depth=16)


@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    """The sender listens for connections on ``port``."""

    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class Peers:
    """Listening addresses the sender knows."""

    addresses: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Other:
    """A message of a type this module does not handle (for other layers)."""

    type: str
    body: dict[codec.Key, codec.Value]


NetworkMessage = Hello | Peers | Other


def _port(value: codec.Value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise DecodeError(f"{what}: bad port")
    return value


def _ip(value: codec.Value) -> str:
    # IPv4 unicast only, as discovery advertises: no scoped IPv6 (a scope id
    # is free text), no multicast, broadcast or unspecified targets.
    if not isinstance(value, str) or len(value) > 15 or not value.isascii():
        raise DecodeError("peers: address is not IPv4 text")
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise DecodeError(f"peers: {value!r} is not an IPv4 address") from exc
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (address == ipaddress.IPv4Address("255.255.255.255"))
    ):
        raise DecodeError(f"peers: {value!r} is not a unicast address")
    return str(address)


def encode_hello(port: int) -> bytes:
    return codec.encode({"t": "hello", "port": port})


def encode_peers(addresses: Iterable[tuple[str, int]]) -> bytes:
    """A ``peers`` message with at most :data:`MAX_GOSSIP_ADDRESSES` addresses."""
    chosen = sorted(set(addresses))[:MAX_GOSSIP_ADDRESSES]
    return codec.encode({"t": "peers", "addrs": [[ip, port] for ip, port in chosen]})


def decode(data: bytes) -> NetworkMessage:
    """Decode one application message; raise :class:`DecodeError` if malformed.

    Messages whose type is not ``hello`` or ``peers`` are returned as
    :class:`Other` after only the envelope is checked.
    """
    body = codec.expect_map(codec.decode(data, MESSAGE_LIMITS), "message")
    kind = codec.get_text(body, "t", "message", max_length=32)
    if kind == "hello":
        codec.only_keys(body, ("t", "port"), "hello")
        return Hello(_port(codec.field(body, "port", "hello"), "hello"))
    if kind == "peers":
        codec.only_keys(body, ("t", "addrs"), "peers")
        entries = codec.expect_list(codec.field(body, "addrs", "peers"), "peers")
        if len(entries) > MAX_GOSSIP_ADDRESSES:
            raise DecodeError("peers: too many addresses")
        addresses = []
        for entry in entries:
            pair = codec.expect_list(entry, "peers entry")
            if len(pair) != 2:
                raise DecodeError("peers: an entry is [ip, port]")
            addresses.append((_ip(pair[0]), _port(pair[1], "peers")))
        return Peers(tuple(addresses))
    return Other(kind, body)

"""Network messages: hello and peer-address gossip, and hostile variants."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import codec, peerwire
from p2ptchap.core.errors import DecodeError


def test_round_trips() -> None:
    assert peerwire.decode(peerwire.encode_hello(4000)) == peerwire.Hello(4000)
    message = peerwire.decode(peerwire.encode_peers([("10.0.0.2", 4000), ("127.0.0.1", 5)]))
    assert message == peerwire.Peers((("10.0.0.2", 4000), ("127.0.0.1", 5)))
    other = peerwire.decode(codec.encode({"t": "sync", "room": b"x"}))
    assert isinstance(other, peerwire.Other) and other.type == "sync"


def test_gossip_is_capped() -> None:
    many = [(f"10.0.{i // 256}.{i % 256}", 4000) for i in range(500)]
    decoded = peerwire.decode(peerwire.encode_peers(many))
    assert isinstance(decoded, peerwire.Peers)
    assert len(decoded.addresses) == peerwire.MAX_GOSSIP_ADDRESSES
    oversized = codec.encode({"t": "peers", "addrs": [["10.0.0.1", 1]] * 65})
    with pytest.raises(DecodeError):
        peerwire.decode(oversized)


@pytest.mark.parametrize(
    "body",
    [
        {"t": "hello"},
        {"t": "hello", "port": 0},
        {"t": "hello", "port": 70000},
        {"t": "hello", "port": True},
        {"t": "hello", "port": 1, "extra": 1},
        {"t": "peers", "addrs": [["example.org", 4000]]},
        {"t": "peers", "addrs": [["fe80::1%\u00e9", 4000]]},  # a scope id is free text
        {"t": "peers", "addrs": [["::1", 4000]]},
        {"t": "peers", "addrs": [["224.0.0.251", 5353]]},
        {"t": "peers", "addrs": [["0.0.0.0", 4000]]},
        {"t": "peers", "addrs": [["255.255.255.255", 4000]]},
        {"t": "peers", "addrs": [["10.0.0.1"]]},
        {"t": "peers", "addrs": [[b"\x0a\x00\x00\x01", 4000]]},
        {"t": "peers", "addrs": "10.0.0.1:4000"},
        {"t": 5},
        {"no": "type"},
    ],
)
def test_malformed_messages_are_decode_errors(body: dict[codec.Key, codec.Value]) -> None:
    with pytest.raises(DecodeError):
        peerwire.decode(codec.encode(body))


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        peerwire.decode(data)

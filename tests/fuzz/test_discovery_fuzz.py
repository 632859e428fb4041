"""mDNS advertisements as zeroconf hands them over: only ``AdvertisementError`` comes out.

``p2ptchap/net/discovery.py`` is outside the core, but its parser reads what
anyone on the LAN multicasts: names, TXT records and addresses of any shape
(zeroconf decodes the packets; the values reach us as text and bytes).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.net.discovery import (
    INSTANCE_ID_PATTERN,
    MAX_ADDRESSES,
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    AdvertisementError,
    parse_advertisement,
)
from tests.fuzz.support import Accepted, attempt, fuzz

IDENTIFIER = "abcdefghijkmnpq2"
labels = st.sampled_from([IDENTIFIER, IDENTIFIER.upper(), "", "x" * 300]) | st.text(max_size=20)
suffixes = st.sampled_from(
    ["." + SERVICE_TYPE, "." + SERVICE_TYPE.upper(), ".other._tcp.local.", ""]
)
txt_values = st.none() | st.binary(max_size=20) | st.sampled_from([b"1", IDENTIFIER.encode()])
addresses = st.lists(
    st.sampled_from(["192.168.1.2", "127.0.0.1", "224.0.0.251", "0.0.0.0", "169.254.3.4", "::1"])
    | st.text(max_size=20)
    | st.ip_addresses(v=4).map(str),
    max_size=20,
)
ports = st.none() | st.booleans() | st.integers(-(2**16), 2**17)


@fuzz(150)
@given(
    label=labels,
    suffix=suffixes,
    properties=st.dictionaries(
        st.sampled_from([b"v", b"id", b"x"]) | st.binary(max_size=4), txt_values
    ),
    addresses=addresses,
    port=ports,
)
def test_any_advertisement(
    label: str,
    suffix: str,
    properties: dict[bytes, bytes | None],
    addresses: list[str],
    port: object,
) -> None:
    result = attempt(
        lambda: parse_advertisement(label + suffix, properties, addresses, port),  # type: ignore[arg-type]
        (AdvertisementError,),
    )
    if isinstance(result, Accepted):
        peer = result.value
        assert INSTANCE_ID_PATTERN.fullmatch(peer.instance_id)
        assert properties.get(b"v") == PROTOCOL_VERSION.encode()
        assert 1 <= peer.port <= 65535 and 0 < len(peer.addresses) <= MAX_ADDRESSES
        assert "127.0.0.1" not in peer.addresses and len(set(peer.addresses)) == len(peer.addresses)

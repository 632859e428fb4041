"""``Lan.split``: the chaos run's two-sided partition (root and nftables needed).

A switch cut in two: each group keeps its own LAN, nothing crosses the cut,
and ``join`` restores the whole.
"""

from __future__ import annotations

import time

import pytest

from p2ptchap.testing.netns import Host, lan, nft_available

pytestmark = pytest.mark.skipif(nft_available() is not None, reason=str(nft_available()))


def reachable_within(source: Host, address: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if source.ping(address, timeout=0.5):
            return True
    return False


def test_a_split_lan_is_two_lans_until_joined() -> None:
    with lan(5) as net:
        a, b, c, d, e = net.hosts
        assert reachable_within(a, d.address, 5)
        net.split([a, b], [c, d])
        assert reachable_within(a, b.address, 5), "each side keeps its own LAN"
        assert reachable_within(c, d.address, 5)
        for source, target in ((a, c), (b, d), (d, a)):
            assert not source.ping(target.address, timeout=0.5), (source.name, target.name)
        assert reachable_within(e, a.address, 5) and reachable_within(e, c.address, 5), (
            "a host in no group reaches both sides"
        )
        net.split([a], [b, c, d])  # replaces the first split
        assert reachable_within(c, d.address, 5) and reachable_within(b, c.address, 5)
        assert not b.ping(a.address, timeout=0.5)
        net.join()
        assert reachable_within(a, c.address, 5) and reachable_within(b, a.address, 5)
        net.join()  # harmless when whole


def test_a_split_refuses_a_host_in_two_groups() -> None:
    with lan(2) as net:
        a, b = net.hosts
        with pytest.raises(ValueError, match="two groups"):
            net.split([a, b], [b])

"""``Lan.split``: the chaos run's two-sided partition (root and nftables needed).

A switch cut in two: each group keeps its own LAN, nothing crosses the cut,
and ``join`` restores the whole.
"""

from __future__ import annotations

import pytest

from p2ptchap.testing.netns import lan, nft_available

pytestmark = pytest.mark.skipif(nft_available() is not None, reason=str(nft_available()))


def test_a_split_lan_is_two_lans_until_joined() -> None:
    with lan(5) as net:
        a, b, c, d, e = net.hosts
        assert a.reaches(d.address, 5)
        net.split([a, b], [c, d])
        assert a.reaches(b.address, 5), "each side keeps its own LAN"
        assert c.reaches(d.address, 5)
        for source, target in ((a, c), (b, d), (d, a)):
            assert not source.ping(target.address, timeout=0.5), (source.name, target.name)
        assert e.reaches(a.address, 5) and e.reaches(c.address, 5), (
            "a host in no group reaches both sides"
        )
        net.split([a], [b, c, d])  # replaces the first split
        assert c.reaches(d.address, 5) and b.reaches(c.address, 5)
        assert not b.ping(a.address, timeout=0.5)
        net.join()
        assert a.reaches(c.address, 5) and b.reaches(a.address, 5)
        net.join()  # harmless when whole


def test_a_split_refuses_a_host_in_two_groups() -> None:
    with lan(2) as net:
        a, b = net.hosts
        with pytest.raises(ValueError, match="two groups"):
            net.split([a, b], [b])

"""The namespace LAN harness: it comes up, partitions, loses packets, and leaves nothing behind.

Tests that build a LAN need root and skip otherwise, with the reason
:func:`netns_available` gives.
"""

from __future__ import annotations

import subprocess

import pytest

from p2ptchap.testing import netns
from p2ptchap.testing.netns import NetnsError, lan, netns_available, nft_available

needs_netns = pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))
needs_nft = pytest.mark.skipif(nft_available() is not None, reason=str(nft_available()))


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


# --- without root ------------------------------------------------------------


def test_unavailable_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    reason = netns.netns_available.__wrapped__()
    assert reason is not None
    assert "root" in reason


def test_unavailable_without_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    reason = netns.netns_available.__wrapped__()
    assert reason is not None
    assert "'ip'" in reason


@pytest.mark.parametrize(("n_hosts", "prefix"), [(0, "p2pt"), (255, "p2pt"), (2, "Bad-Prefix")])
def test_lan_rejects_bad_arguments(n_hosts: int, prefix: str) -> None:
    with pytest.raises(ValueError, match="must be"), lan(n_hosts, prefix):
        pass


# --- with root -----------------------------------------------------------------


@needs_netns
def test_hosts_reach_each_other() -> None:
    with lan(3) as net:
        addresses = [host.address for host in net.hosts]
        assert len(set(addresses)) == 3
        assert all(address.startswith(net.subnet.removesuffix("0/24")) for address in addresses)
        assert all(f"-{netns.os.getpid()}-" in host.name for host in net.hosts)
        for source in net.hosts:
            for target in net.hosts:
                if source is not target:
                    assert source.reaches(target.address, 5), (source, target)
        # And ping does fail for an address that nobody on the LAN holds.
        assert not net.hosts[0].ping(net.subnet.removesuffix("0/24") + "254", timeout=0.5)


@needs_netns
def test_partition_cuts_one_host_off_and_heal_restores_it() -> None:
    with lan(3) as net:
        a, b, c = net.hosts
        assert a.reaches(c.address, 5)
        c.partition()
        assert not a.ping(c.address, timeout=1)
        assert not c.ping(b.address, timeout=1)
        assert a.reaches(b.address, 5), "the rest of the LAN must still work"
        c.heal()
        assert a.reaches(c.address, 5)
        assert c.reaches(b.address, 5)


@needs_netns
def test_everything_is_removed_on_exit_even_after_an_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), lan(2) as net:
        names = {net.bridge_namespace, *(host.name for host in net.hosts)}
        assert names <= namespaces()
        sleeper = net.hosts[0].run(["sleep", "60"])
        raise RuntimeError("boom")
    assert not names & namespaces()
    assert sleeper.poll() is not None, "processes started in the LAN are stopped"


@needs_netns
def test_clean_stale_removes_only_leftovers_of_dead_runs() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"p2pt-{dead.pid}-abc123-h1"
    alive = f"p2pt-{netns.os.getpid()}-abc123-h9"
    try:
        for name in (stale, alive):
            subprocess.run(["ip", "netns", "add", name], check=True)
        assert netns.clean_stale("p2pt") == [stale]
        assert alive in namespaces()
        assert stale not in namespaces()
    finally:
        for name in (stale, alive):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@needs_nft
def test_drop_loses_packets_and_clear_drop_restores() -> None:
    with lan(2) as net:
        a, b = net.hosts
        assert a.reaches(b.address, 5)
        b.drop(100)
        assert not a.ping(b.address, timeout=0.5)
        b.drop(1)  # replaces the rate: almost every echo now gets through
        assert a.reaches(b.address, 5)
        # 99 % each way: an echo and its reply both survive once in 10,000.
        b.drop(99)
        assert not a.ping(b.address, timeout=0.5)
        b.clear_drop()
        assert a.reaches(b.address, 5)
        b.clear_drop()  # harmless when no loss is set
        with pytest.raises(ValueError, match="percent"):
            b.drop(101)


@needs_netns
def test_drop_without_nft_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "nft_available", lambda: "The 'nft' program is missing.")
    with lan(1) as net, pytest.raises(NetnsError, match="nft"):
        net.hosts[0].drop(10)

"""A real LAN on one machine, made of Linux network namespaces (root only).

:func:`lan` builds, for the duration of a ``with`` block::

    bridge namespace  PREFIX-PID-RAND-br   holds bridge br0 and ports p1..pN
    host namespaces   PREFIX-PID-RAND-h1.. each holds eth0 = 10.231.X.i/24

Every host reaches every other one through the bridge, multicast included
(mDNS works as on a real switch), and nothing else: the namespaces have no
link to the machine's own network, so tests can send whatever they like
without any packet leaving the sandbox.  On exit every process left in the
namespaces is killed and the namespaces are deleted, which also destroys
their veth pairs, even when the block raised.

Faults a host can suffer, for chaos tests:

* :meth:`Host.partition` / :meth:`Host.heal` take its bridge port down and
  up: a cable pulled out and plugged back in.
* :meth:`Host.drop` makes its link lossy with nftables in the bridge
  namespace, so the host's own sockets see no error, as with a bad cable.
* :meth:`Lan.split` cuts the LAN into groups of hosts that keep reaching
  each other but no other group (a switch cut in two), :meth:`Lan.join`
  puts it back together.

This kernel has no ``netem``: delay belongs to the in-memory fault-injecting
transport, not here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from p2ptchap.core.errors import LocalError

log = logging.getLogger("p2ptchap.testing.netns")

#: The /16 the test subnets are drawn from.  It is private, and it only ever
#: exists inside the namespaces made here: two LANs using the same /24 never
#: meet, because each has its own bridge.
SUBNET_BASE: Final = "10.231"

#: Name of each host's interface, inside its own namespace.
HOST_INTERFACE: Final = "eth0"

#: Seconds any single ``ip`` or ``nft`` command may take before it is abandoned.
COMMAND_TIMEOUT: Final = 10.0

#: Most hosts one LAN can have: the /24 minus network and broadcast.
MAX_HOSTS: Final = 254

_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,11}")


class NetnsError(LocalError):
    """A namespace, link or firewall rule of the test LAN could not be set up."""

    default_message = "The test network could not be set up; run the tests as root."


# One ICMP echo, run in a namespace by Host.ping: it needs no ping binary
# (absent from slim images) and answers through its exit status alone.
_PING_PROGRAM: Final = """
import socket, struct, sys, time
address, timeout = sys.argv[1], float(sys.argv[2])
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = 0x7032
body = struct.pack("!HH", ident, 1) + b"p2ptchap-netns-ping."  # even length, for the checksum
packet = struct.pack("!BBH", 8, 0, checksum(b"\\x08\\x00\\x00\\x00" + body)) + body
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.sendto(packet, (address, 0))
deadline = time.monotonic() + timeout
while (left := deadline - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        data, source = sock.recvfrom(2048)
    except socket.timeout:
        break
    icmp = data[(data[0] & 0x0F) * 4 :]
    if source[0] == address and icmp[0] == 0 and icmp[4:6] == body[:2]:
        sys.exit(0)
sys.exit(1)
"""


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n namespace] args...`` and return its standard output.

    Raises :class:`NetnsError` carrying ``ip``'s own message when it fails
    and ``check`` is true.
    """
    argv = ["ip", *(("-n", namespace) if namespace else ()), *args]
    try:
        done = subprocess.run(  # noqa: S603 — fixed program, arguments built here
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def netns_available() -> str | None:
    """None if :func:`lan` can work here, else one sentence saying why not.

    It checks for root, for the ``ip`` program, and that a namespace can
    really be added (containers often forbid it).  The answer is cached.
    """
    if os.geteuid() != 0:
        return "Network namespaces need root; run the tests as root to include these."
    if shutil.which("ip") is None:
        return "The 'ip' program (iproute2) is missing; install it to include these tests."
    probe = f"p2ptprobe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except NetnsError as exc:
        return f"'ip netns add' fails here ({exc.detail}); namespaces are not permitted."
    _ip("netns", "del", probe, check=False)
    return None


@functools.cache
def nft_available() -> str | None:
    """None if :meth:`Host.drop` can work here, else one sentence saying why not."""
    reason = netns_available()
    if reason is not None:
        return reason
    if shutil.which("nft") is None:
        return "The 'nft' program is missing; install nftables to include packet-loss tests."
    return None


def _live_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list`` may append "(id: N)")."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(name: str) -> None:
    """Kill whatever still runs in namespace ``name``, then delete it.

    Killing first matters: ``ip netns del`` only removes the name, and a
    process left inside would keep the namespace, its links and its
    addresses alive forever.
    """
    for pid_text in _ip("netns", "pids", name, check=False).split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_text), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def clean_stale(prefix: str = "p2pt") -> list[str]:
    """Delete the namespaces a crashed earlier run left behind; return their names.

    Only names made by :func:`lan` with this ``prefix`` whose creating
    process is gone are touched, so concurrent runs are safe.
    """
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)-[0-9a-f]+-(?:br|h\d+)")
    stale = [
        name
        for name in _live_namespaces()
        if (match := pattern.fullmatch(name)) and not _pid_alive(int(match.group(1)))
    ]
    # Host namespaces first, so no veth outlives its bridge even for a moment.
    for name in sorted(stale, key=lambda name: name.endswith("-br")):
        log.info("removing stale namespace %s", name)
        _delete_namespace(name)
    return stale


@dataclasses.dataclass
class Host:
    """One machine of the test LAN: a namespace with one interface and address."""

    #: The network namespace's name, as ``ip netns`` knows it.
    name: str
    #: Its IPv4 address on the LAN, without prefix length.
    address: str
    #: Its interface's name inside its namespace.
    interface: str
    #: The namespace holding the bridge, and this host's port on it.
    bridge_namespace: str
    bridge_port: str
    _processes: list[subprocess.Popen[Any]] = dataclasses.field(default_factory=list, repr=False)

    def run(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside this host's namespace; keyword arguments go to Popen.

        The program replaces ``ip netns exec`` (same pid), so signals sent
        through the returned object reach it.  The LAN kills it on exit if
        the caller has not.
        """
        command = ["ip", "netns", "exec", self.name, *argv]
        # Running the caller's argv is the point of this method.
        process: subprocess.Popen[Any] = subprocess.Popen(command, **popen_kwargs)  # noqa: S603
        self._processes.append(process)
        return process

    def call(
        self,
        argv: Sequence[str],
        timeout: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host's namespace to completion; never raises on failure.

        Standard output and error are captured as text; ``env`` replaces the
        environment (as for Popen), else it is inherited.  Raises
        :class:`subprocess.TimeoutExpired` if it outlives ``timeout`` seconds
        (the program is killed first).
        """
        command = ["ip", "netns", "exec", self.name, *argv]
        return subprocess.run(  # noqa: S603 — running the caller's argv is the point
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else dict(env),
        )

    def ping(self, address: str, timeout: float = 1.0) -> bool:
        """Whether one ICMP echo from this host to ``address`` is answered within ``timeout`` s."""
        done = self.call(
            [sys.executable, "-c", _PING_PROGRAM, address, str(timeout)], timeout=timeout + 10
        )
        return done.returncode == 0

    def reaches(self, address: str, within: float) -> bool:
        """Ping until one echo is answered, for at most ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.ping(address, timeout=0.5):
                return True
        return False

    def partition(self) -> None:
        """Cut this host off the LAN: its bridge port goes down (a pulled cable)."""
        _ip("link", "set", self.bridge_port, "down", namespace=self.bridge_namespace)

    def heal(self) -> None:
        """Plug this host back in after :meth:`partition`."""
        _ip("link", "set", self.bridge_port, "up", namespace=self.bridge_namespace)

    def drop(self, percent: int) -> None:
        """Lose ``percent`` % of the frames on this host's link, each way.

        Every frame the bridge forwards to or from this host is dropped with
        that probability, independently (so a round trip survives with
        ``(1 - p)**2``).  The rule sits in the bridge, not in the host, so
        the host's sockets never see an error: packets just vanish.  Calling
        it again replaces the rate; :meth:`clear_drop` removes it.

        Raises :class:`NetnsError` if nftables is not installed.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, not {percent}")
        reason = nft_available()
        if reason is not None:
            raise NetnsError(reason)
        table = self._drop_table
        port = self.bridge_port
        # nft compares against 0..99 only, so "always" is a plain drop.
        chance = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        # Declaring the table before deleting it makes the delete succeed
        # whether or not an earlier call created it; the whole script is one
        # atomic nft transaction, so no frame sees a half-installed rule set.
        script = (
            f"table bridge {table}\n"
            f"delete table bridge {table}\n"
            f"table bridge {table} {{\n"
            f"  chain forward {{\n"
            f"    type filter hook forward priority 0; policy accept;\n"
            f'    iifname "{port}" {chance}drop\n'
            f'    oifname "{port}" {chance}drop\n'
            f"  }}\n"
            f"}}\n"
        )
        self._nft(script)

    def clear_drop(self) -> None:
        """Undo :meth:`drop`; harmless if no loss was set."""
        if nft_available() is not None:
            return
        table = self._drop_table
        self._nft(f"table bridge {table}\ndelete table bridge {table}\n")

    @property
    def _drop_table(self) -> str:
        return f"p2pt_drop_{self.bridge_port}"

    def _nft(self, script: str) -> None:
        _nft(self.bridge_namespace, script)

    def _stop_processes(self) -> None:
        """Terminate, then kill, every process :meth:`run` started that still runs."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=3)
        self._processes.clear()


def _nft(namespace: str, script: str) -> None:
    """Load an nftables ``script`` in ``namespace`` (one atomic transaction)."""
    argv = ["ip", "netns", "exec", namespace, "nft", "-f", "-"]
    try:
        done = subprocess.run(  # noqa: S603 — fixed program, script built here
            argv,
            input=script,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"nft: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(f"nft: {done.stderr.strip()}")


#: The nftables table of :meth:`Lan.split`, in the bridge namespace.
_SPLIT_TABLE: Final = "p2pt_split"


@dataclasses.dataclass(frozen=True)
class Lan:
    """The hosts of a :func:`lan`, and the bridge namespace linking them."""

    bridge_namespace: str
    #: The /24 every host address lies in, e.g. ``"10.231.17.0/24"``.
    subnet: str
    hosts: tuple[Host, ...]

    def split(self, *groups: Sequence[Host]) -> None:
        """Cut the LAN into ``groups``: a group's hosts reach each other, no other group.

        Every frame the bridge would forward from a port of one group to a
        port of another is dropped (multicast included: mDNS stops at the
        cut too), so each side keeps a working LAN of its own, as when a
        switch is cut in two.  Hosts in no group still reach everyone.
        Calling it again replaces the split; :meth:`join` removes it.

        Raises :class:`ValueError` if a host is in two groups or is not of
        this LAN, :class:`NetnsError` if nftables is not installed.
        """
        ports = [[host.bridge_port for host in group] for group in groups]
        flat = [port for group in ports for port in group]
        if len(flat) != len(set(flat)):
            raise ValueError("a host is in two groups")
        if not set(flat) <= {host.bridge_port for host in self.hosts}:
            raise ValueError("a host is not on this LAN")
        reason = nft_available()
        if reason is not None:
            raise NetnsError(reason)
        rules = []
        for index, group in enumerate(ports):
            others = [port for other in ports[index + 1 :] for port in other]
            if group and others:
                mine = ", ".join(f'"{port}"' for port in group)
                theirs = ", ".join(f'"{port}"' for port in others)
                rules.append(f"    iifname {{ {mine} }} oifname {{ {theirs} }} drop\n")
                rules.append(f"    iifname {{ {theirs} }} oifname {{ {mine} }} drop\n")
        # As in Host.drop: declaring the table makes the delete always valid,
        # and the whole script is one atomic nft transaction.
        _nft(
            self.bridge_namespace,
            f"table bridge {_SPLIT_TABLE}\n"
            f"delete table bridge {_SPLIT_TABLE}\n"
            f"table bridge {_SPLIT_TABLE} {{\n"
            f"  chain forward {{\n"
            f"    type filter hook forward priority -1; policy accept;\n"
            f"{''.join(rules)}"
            f"  }}\n"
            f"}}\n",
        )

    def join(self) -> None:
        """Undo :meth:`split`; harmless if the LAN is whole."""
        if nft_available() is not None:
            return
        _nft(
            self.bridge_namespace,
            f"table bridge {_SPLIT_TABLE}\ndelete table bridge {_SPLIT_TABLE}\n",
        )


@contextlib.contextmanager
def lan(n_hosts: int, prefix: str = "p2pt") -> Iterator[Lan]:
    """A LAN of ``n_hosts`` namespaces on one bridge, removed on exit.

    Host ``i`` (from 1) gets ``10.231.X.i/24`` on ``eth0``, with ``X`` drawn
    at random per LAN; loopback and multicast are up and 224.0.0.0/4 routes
    to ``eth0`` so multicast needs no default route.  Names carry this
    process's pid and a random suffix, so concurrent runs never collide and
    :func:`clean_stale` (run first) can recognise leftovers of dead runs.

    Raises :class:`NetnsError` if namespaces are unavailable (see
    :func:`netns_available`) or a command fails; whatever was created by
    then is removed.
    """
    if not 1 <= n_hosts <= MAX_HOSTS:
        raise ValueError(f"n_hosts must be within 1..{MAX_HOSTS}, not {n_hosts}")
    if not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"prefix must be 1 to 12 lower-case letters and digits, not {prefix!r}")
    reason = netns_available()
    if reason is not None:
        raise NetnsError(reason)
    clean_stale(prefix)

    base = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    third_octet = secrets.randbelow(256)
    bridge_namespace = f"{base}-br"
    created: list[str] = []
    hosts: list[Host] = []
    try:
        _ip("netns", "add", bridge_namespace)
        created.append(bridge_namespace)
        _ip("link", "set", "lo", "up", namespace=bridge_namespace)
        # Snooping off: the bridge then floods multicast to every port, like
        # a plain switch, and never waits to learn IGMP memberships again
        # after a port comes back up.
        _ip(
            "link", "add", "br0", "type", "bridge", "mcast_snooping", "0",
            namespace=bridge_namespace,
        )  # fmt: skip
        _ip("link", "set", "br0", "up", namespace=bridge_namespace)
        for index in range(1, n_hosts + 1):
            host = Host(
                name=f"{base}-h{index}",
                address=f"{SUBNET_BASE}.{third_octet}.{index}",
                interface=HOST_INTERFACE,
                bridge_namespace=bridge_namespace,
                bridge_port=f"p{index}",
            )
            _ip("netns", "add", host.name)
            created.append(host.name)
            hosts.append(host)
            _add_host_link(host)
        yield Lan(bridge_namespace, f"{SUBNET_BASE}.{third_octet}.0/24", tuple(hosts))
    finally:
        for host in hosts:
            host._stop_processes()
        # Hosts before the bridge; deleting a namespace destroys its veths.
        for name in reversed(created):
            _delete_namespace(name)


def _add_host_link(host: Host) -> None:
    """Wire ``host`` to the bridge: a veth pair, address, loopback, multicast route."""
    bridge = host.bridge_namespace
    # Creating the pair from inside the bridge namespace, with the far end
    # born directly in the host namespace, means neither name ever appears in
    # the machine's own namespace, where it could clash with a real link.
    _ip(
        "link", "add", host.bridge_port, "type", "veth",
        "peer", "name", host.interface, "netns", host.name,
        namespace=bridge,
    )  # fmt: skip
    _ip("link", "set", host.bridge_port, "master", "br0", namespace=bridge)
    _ip("link", "set", host.bridge_port, "up", namespace=bridge)
    _ip("link", "set", "lo", "up", namespace=host.name)
    _ip("addr", "add", f"{host.address}/24", "dev", host.interface, namespace=host.name)
    _ip("link", "set", host.interface, "multicast", "on", "up", namespace=host.name)
    _ip("route", "add", "224.0.0.0/4", "dev", host.interface, namespace=host.name)

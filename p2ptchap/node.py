"""The node: a home folder's identity, put on the network.

:class:`Node` loads the device's certificates and secrets from the home
folder, listens for and dials peers (:mod:`p2ptchap.net.peers`), advertises
itself and finds others over mDNS (:mod:`p2ptchap.net.discovery`), answers
the control socket (:mod:`p2ptchap.api.control`), and watches the
revocation list so that a device revoked while we run is disconnected at
once.  It runs until cancelled, and then closes every connection cleanly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from p2ptchap import accounts
from p2ptchap.api import operations
from p2ptchap.api.control import ControlServer, Handler, Report
from p2ptchap.api.worker import OperationsWorker
from p2ptchap.core import identity
from p2ptchap.core.channel import ChannelConfig, make_credentials
from p2ptchap.core.errors import N_, StorageError, UsageError, VerificationError
from p2ptchap.core.files import HASH_SIZE, MAX_SIZE
from p2ptchap.core.identity import VerifiedDevice
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.files import FileSettings, open_files
from p2ptchap.net.discovery import Discovery, PeerSeen, new_instance_id
from p2ptchap.net.peers import LocalDevice, PeerManager, PeerSettings
from p2ptchap.replication import Replicator, SyncSettings
from p2ptchap.rooms import Me, Rooms
from p2ptchap.services import Services
from p2ptchap.store.db import DB_NAME, Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.home import Home
from p2ptchap.transfers import FileExchange, TransferSettings

log = logging.getLogger("p2ptchap.node")

CONFIG_FILE = "config.toml"
DEFAULT_PORT = 7755


@dataclasses.dataclass(frozen=True, slots=True)
class NodeConfig:
    """How the node meets the network; the CLI and ``HOME/config.toml`` fill it."""

    port: int = DEFAULT_PORT
    interface: str | None = None
    peers: tuple[tuple[str, int], ...] = ()
    mdns: bool = True
    network_key: bytes | None = None
    settings: PeerSettings = dataclasses.field(default_factory=PeerSettings)
    sync: SyncSettings = dataclasses.field(default_factory=SyncSettings)
    #: Whether this user lets the others see what they have read.
    read_receipts: bool = False
    files: FileSettings = dataclasses.field(default_factory=FileSettings)
    transfers: TransferSettings = dataclasses.field(default_factory=TransferSettings)


def parse_peer(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; raise :class:`UsageError`."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"bad peer {text!r}",
            user_message=N_("'{peer}' is not a peer address of the form HOST:PORT."),
            peer=text,
        )
    return host, int(port)


def read_network_key(path: Path) -> bytes:
    """A network key file: 64 hexadecimal digits (32 bytes)."""
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != 32:
        raise UsageError(
            f"bad network key {path}",
            user_message=N_("The network key file {path} must hold 64 hexadecimal digits."),
            path=path,
        )
    return key


def load_config(home: Home, table: str = "network") -> dict[str, Any]:
    """A table (``[network]``, ``[rooms]``) of ``HOME/config.toml`` (empty if none)."""
    path = home.root / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(
            str(exc), user_message=N_("The configuration file {path} is not valid TOML."), path=path
        ) from exc
    found = data.get(table, {})
    if not isinstance(found, dict):
        raise UsageError(
            f"{table} is not a table",
            user_message=N_("In {path}, [{table}] must be a table."),
            path=path,
            table=table,
        )
    return found


class Node:
    """One running node (see the module documentation)."""

    def __init__(
        self,
        home: Home,
        passphrase: str,
        config: NodeConfig,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self.config = config
        self._clock = clock
        self._rng = rng
        now = int(clock())
        self.account, self.trust, self._revocations = accounts.load_account(home, now)
        self.device = accounts.current_device(home)
        secrets = accounts.DeviceSecrets.decode(
            home.read_secret(home.device_key, passphrase, accounts.NO_ACCOUNT)
        )
        identity.verify_device_certificate(self.device.raw, self.account, self._revocations)
        self._revocations_mtime = self._mtime()
        self.db = Database(home.root / DB_NAME)
        self.directory = DirectoryStore(
            self.db, self.trust, lambda: self._revocations, lambda: int(self._clock())
        )
        self.directory.remember(VerifiedDevice(self.account, self.device))
        self.rooms = Rooms(
            self.db,
            self.directory,
            Me(self.account, self.device, secrets.signing, secrets.exchange),
            clock,
            rng,
            read_receipts=config.read_receipts,
        )
        self.replicator = Replicator(
            self.rooms, _HomeTrustBook(self), settings=config.sync, on_revocation=self._drop_invalid
        )
        self.files = open_files(self.rooms, home, config.files)
        self.exchange = FileExchange(self.files, config.transfers)
        self.services = Services(self.replicator, self.exchange)

        def new_static(rng: Callable[[int], bytes]) -> tuple[X25519KeyPair, bytes]:
            static = X25519KeyPair.generate(rng)
            credentials = make_credentials(
                self.account.raw, self.device.raw, secrets.signing, static.public
            )
            return static, credentials

        settings = dataclasses.replace(
            config.settings, channel=ChannelConfig(network_key=config.network_key)
        )
        self.peers = PeerManager(
            LocalDevice(
                device_key=self.device.device_key,
                new_static=new_static,
                verify=self._verify,
            ),
            rng=rng,
            settings=settings,
            application=self.services,
            application_types=self.services.types,
        )
        self.instance_id = new_instance_id(rng)
        self.port: int | None = None
        self._nursery: trio.Nursery | None = None
        self.control = ControlServer(home.root)
        self.control.register("peers", self._cmd_peers)
        self.control.register("status", self._cmd_status)
        self.control.register("file-download", self._cmd_file_download)
        self.control.register("file-cancel", self._cmd_file_cancel)
        self.control.register("file-progress", self._cmd_file_progress)
        # The rooms, directory and file operations run on a thread of their
        # own, with their own database connection: reading a long room or
        # encrypting a large file never stalls the network meanwhile.
        self.worker = OperationsWorker(
            lambda: self._workspace(
                Me(self.account, self.device, secrets.signing, secrets.exchange)
            )
        )
        for name in operations.OPERATIONS:
            self.control.register(name, self._operation_handler(name))

    def _workspace(self, me: Me) -> operations.Workspace:
        """On the worker thread: the rooms and files, on a connection of its own."""
        db = Database(self.home.root / DB_NAME)
        directory = DirectoryStore(
            db, self.trust, lambda: self._revocations, lambda: int(self._clock())
        )
        rooms = Rooms(
            db, directory, me, self._clock, self._rng, read_receipts=self.config.read_receipts
        )
        return operations.Workspace(rooms, open_files(rooms, self.home, self.config.files))

    def _operation_handler(self, name: str) -> Handler:
        async def handler(request: dict[str, Any], report: Report) -> Any:
            arguments = {k: v for k, v in request.items() if k not in ("cmd", "progress")}
            result = await self.worker.run(name, arguments, report)
            if operations.OPERATIONS[name].writes:
                self.replicator.nudge()  # what it signed goes out now, not at the next poll
            return result

        return handler

    def _verify(self, account: bytes, device: bytes) -> VerifiedDevice:
        verified = identity.verify_chain(
            account, device, self.trust, self._revocations, int(self._clock())
        )
        # Every valid certificate seen goes to the people directory.
        try:
            self.directory.remember(verified)
        except StorageError as exc:
            log.warning(N_("could not record a peer in the directory: %s"), exc.detail)
        return verified

    def _mtime(self) -> float:
        try:
            return self.home.revocations_file.stat().st_mtime
        except OSError:
            return 0.0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; report the listening port through ``task_status``."""
        host = self.config.interface or "0.0.0.0"  # noqa: S104 - a LAN node listens on the LAN
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.control.run)
                await nursery.start(self.services.run)
                self.port = await nursery.start(self.peers.run, host, self.config.port)
                for peer_host, peer_port in self.config.peers:
                    self.peers.add_address(peer_host, peer_port, "static")
                if self.config.mdns:
                    nursery.start_soon(self._discover)
                nursery.start_soon(self._watch_revocations)
                log.info(
                    N_("node up: %s <%s>, device %s, port %d"),
                    self.account.display_name,
                    self.account.email,
                    self.device.device_id,
                    self.port,
                )
                task_status.started(self.port)
        finally:
            self._nursery = None

    async def stop(self) -> None:
        """Close every connection cleanly (peers read a CLOSE, not a cut), then stop."""
        with trio.move_on_after(2):
            await self.peers.aclose_all()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def close(self) -> None:
        """After :meth:`run`: let a running operation finish, then close its connection."""
        self.worker.close()

    async def _discover(self) -> None:
        assert self.port is not None
        addresses = [self.config.interface] if self.config.interface else None
        discovery = Discovery(self.port, self.instance_id, addresses)
        seen: dict[str, PeerSeen] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(discovery.run)
            async for event in discovery.events:
                if isinstance(event, PeerSeen):
                    seen[event.instance_id] = event
                    for address in event.addresses:
                        self.peers.add_address(address, event.port, "mdns")
                elif (gone := seen.pop(event.instance_id, None)) is not None:
                    # Connections, not mDNS, tell whether a peer is alive; but an
                    # announcement withdrawn is a reason to stop dialling it.
                    for address in gone.addresses:
                        self.peers.forget_address(address, gone.port)

    async def _watch_revocations(self) -> None:
        """Reload revocations when the file changes; drop peers no longer valid.

        Every minute the connected peers are checked again even if nothing
        changed, so a certificate that expires ends its connections too.
        """
        last_full_check = trio.current_time()
        while True:
            await trio.sleep(2)
            mtime = self._mtime()
            if mtime != self._revocations_mtime:
                self._revocations_mtime = mtime
                revocations: RevocationSet = await trio.to_thread.run_sync(
                    self.home.revocations, self.trust
                )
                self._revocations = revocations
                # Spread it at once (and drop the peers it revokes).
                self.replicator.trust_changed(revoked=True)
            elif trio.current_time() - last_full_check < 60:
                continue
            last_full_check = trio.current_time()
            self._drop_invalid()

    def _drop_invalid(self) -> None:
        """Close connections to peers no longer valid (revoked, or expired)."""

        def revoked(peer: VerifiedDevice) -> bool:
            try:
                self._verify(peer.account.raw, peer.device.raw)
            except VerificationError:
                return True
            return False

        dropped = self.peers.disconnect(revoked)
        if dropped:
            log.warning(N_("disconnected %d peer(s) no longer valid (revoked or expired)"), dropped)

    async def _cmd_peers(self, request: dict[str, Any], _report: Report) -> list[dict[str, object]]:
        await trio.lowlevel.checkpoint()
        return [peer.describe() for peer in self.peers.peers()]

    async def _cmd_status(self, request: dict[str, Any], _report: Report) -> dict[str, object]:
        await trio.lowlevel.checkpoint()
        return {
            "email": self.account.email,
            "device": self.device.device_id,
            "port": self.port,
            "mdns": self.config.mdns,
            "instance": self.instance_id,
            "peers": len(self.peers.peers()),
            "directory": len(self.directory),
            "rooms": len(self.rooms.store.rooms()),
            "rejected": dict(self.peers.rejections),
            # Connections refused by a quota or ended by the peer's fault, by reason.
            "network": dict(sorted(self.peers.counters.items())),
            "sync": self.replicator.health(),
            "files": self.exchange.health(),
            # Messages whose key has not come yet (the node asks their senders).
            "waiting_for_keys": len(self.rooms.undecrypted()),
        }

    async def _cmd_file_download(
        self, request: dict[str, Any], _report: Report
    ) -> dict[str, object]:
        """``{root: hex, size: int}``: start (or resume) fetching a file; its progress."""
        await trio.lowlevel.checkpoint()
        root, size = _root(request), request.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
            raise UsageError("bad size", user_message=N_("A file size is a number of bytes."))
        return self.exchange.download(root, size)

    async def _cmd_file_cancel(self, request: dict[str, Any], _report: Report) -> bool:
        await trio.lowlevel.checkpoint()
        return self.exchange.cancel(_root(request))

    async def _cmd_file_progress(
        self, request: dict[str, Any], _report: Report
    ) -> dict[str, object]:
        """``{root: hex}``: that download's progress; without it, every download's."""
        await trio.lowlevel.checkpoint()
        return self.exchange.progress(_root(request) if "root" in request else None)


def _root(request: dict[str, Any]) -> bytes:
    text = request.get("root")
    try:
        root = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        root = b""
    if len(root) != HASH_SIZE:
        raise UsageError("bad root", user_message=N_("A file address is 64 hexadecimal digits."))
    return root


class _HomeTrustBook:
    """The node's revocations: the file in its home folder, re-read when it changes."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def revocations(self) -> RevocationSet:
        return self.node._revocations

    def add_revocations(self, records: list[bytes]) -> int:
        node = self.node
        added, _refused = node.home.add_revocations(records, node.trust)
        if added:
            node._revocations = node.home.revocations(node.trust)
            node._revocations_mtime = node._mtime()
        return added


def check_interface(address: str) -> str:
    """Validate an ``--interface`` IP literal; raise :class:`UsageError`."""
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise UsageError(
            f"bad interface {address!r}",
            user_message=N_("'{address}' is not an IPv4 address of this computer."),
            address=address,
        ) from None

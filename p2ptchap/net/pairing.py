"""Pairing over TCP: LAN enrolment (``authority serve`` / ``enroll --from``) and
device linking (``device serve`` / ``device link``).

The exchange itself is :mod:`p2ptchap.core.pairing`.  Here: the TCP
plumbing, the timeouts, and the decisions that need the home folder.  The
*approval* is a callback, because it is a person's: the CLI shows the request
and the short code and asks; tests answer for them.

A server handles one client at a time — every pairing waits for a person —
and a client that does not finish within ``step_timeout`` is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

import trio

from p2ptchap import accounts
from p2ptchap.core import identity, pairing
from p2ptchap.core.authority import TrustStore, parse_trust_file
from p2ptchap.core.errors import (
    N_,
    DecodeError,
    LocalError,
    RemoteError,
    VerificationError,
    VerificationFailure,
)
from p2ptchap.core.identity import AccountCertificate, DeviceCertificate, Kind
from p2ptchap.core.keys import Rng
from p2ptchap.core.noise import MAX_MESSAGE_LEN
from p2ptchap.net.connection import ConnectionFailed
from p2ptchap.store.home import Home

log = logging.getLogger("p2ptchap.pairing")

#: Seconds allowed for each network step (not for the person's decision).
STEP_TIMEOUT = 30.0
#: Seconds a client waits for the person at the server to decide.
DECISION_TIMEOUT = 600.0
#: Seconds a server waits for a new client's first message.
HELLO_TIMEOUT = 5.0
#: Clients connected to a pairing server at once (one is served, the rest wait).
MAX_WAITING_CLIENTS = 8


class PairingRefused(LocalError):
    """The person at the other end refused (or the request could not be granted)."""

    default_message = N_("The request was refused on the other side: {reason}")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What the person approving sees."""

    code: str
    name: str
    email: str
    fingerprint: str
    kind: str  # "agent", "external" or "device"


Approve = Callable[[Request], Awaitable[bool]]
ShowCode = Callable[[str, str], Awaitable[None]]  # (code, what the other side is)


class FramedStream:
    """Length-prefixed messages over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def read(self, timeout: float = STEP_TIMEOUT) -> bytes:
        with trio.move_on_after(timeout) as scope:
            while True:
                if len(self._buffer) >= pairing.LENGTH_PREFIX:
                    length = int.from_bytes(self._buffer[: pairing.LENGTH_PREFIX], "big")
                    if not 0 < length <= MAX_MESSAGE_LEN:
                        raise DecodeError("pairing: bad frame length")
                    end = pairing.LENGTH_PREFIX + length
                    if len(self._buffer) >= end:
                        message = bytes(self._buffer[pairing.LENGTH_PREFIX : end])
                        del self._buffer[:end]
                        return message
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise ConnectionFailed(str(exc)) from exc
                if not data:
                    raise ConnectionFailed("the other side hung up")
                self._buffer += data
        assert scope.cancelled_caught
        raise ConnectionFailed("the other side did not answer in time")

    async def write(self, message: bytes) -> None:
        try:
            await self.stream.send_all(pairing.frame(message))
        except (trio.BrokenResourceError, OSError) as exc:
            raise ConnectionFailed(str(exc)) from exc


# --- servers -----------------------------------------------------------------------


async def serve(
    host: str | None,
    port: int,
    offer: pairing.Offer,
    handle: Callable[[pairing.PairingSession, FramedStream], Awaitable[bool]],
    *,
    rng: Rng,
    once: bool,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept pairing clients one at a time; with ``once``, stop after one success."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    lock = trio.Lock()
    done = trio.Event()
    waiting = trio.CapacityLimiter(MAX_WAITING_CLIENTS)

    async def client(stream: trio.SocketStream) -> None:
        try:
            who = str(stream.socket.getpeername()[0])
        except OSError:
            who = "?"
        if waiting.available_tokens == 0:
            await trio.aclose_forcefully(stream)
            return
        async with stream, waiting:
            framed = FramedStream(stream)
            session = pairing.PairingSession(client=False, rng=rng, offer=offer)
            try:
                # The network part runs outside the lock, with a short
                # timeout, so a silent client cannot hold the person's queue.
                await framed.write(session.commit())
                await framed.write(session.answer(await framed.read(HELLO_TIMEOUT)))
                async with lock:
                    if await handle(session, framed) and once:
                        done.set()
            except (RemoteError, ConnectionFailed, LocalError) as exc:
                # One bad client (or a request we cannot grant) must not stop
                # the server: say why in the log and wait for the next one.
                log.warning(N_("pairing with %s failed: %s"), who, exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, client, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])
        await done.wait()
        nursery.cancel_scope.cancel()


async def serve_authority(
    home: Home,
    passphrase: str,
    host: str | None,
    port: int,
    approve: Approve,
    *,
    days: int,
    now: Callable[[], int],
    rng: Rng,
    once: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``authority serve``: answer enrolment requests, each approved by the administrator."""
    authority, _ = accounts.load_authority(home, passphrase)  # checks the passphrase now
    offer = pairing.Offer("authority", (home.read(home.authority_trust, accounts.NO_AUTHORITY),))

    async def handle(session: pairing.PairingSession, framed: FramedStream) -> bool:
        message = session.open(await framed.read())
        if not isinstance(message, pairing.EnrolRequest):
            raise DecodeError("pairing: expected an enrolment request")
        request = identity.parse_request(message.request)
        kind = Kind.AGENT if authority.covers(request.email) else Kind.EXTERNAL
        seen = Request(
            session.code,
            request.display_name,
            request.email,
            request.account_key.fingerprint(),
            kind.value,
        )
        if not await approve(seen):
            await framed.write(session.seal(pairing.Refused("not approved")))
            return False
        certificate = accounts.issue(
            home,
            request,
            None,
            external=kind is Kind.EXTERNAL,
            days=days,
            passphrase=passphrase,
            now=now(),
            rng=rng,
        )
        await framed.write(session.seal(pairing.Issued(certificate.raw)))
        log.info(
            N_("certificate issued to %s <%s> (%s)"),
            request.display_name,
            request.email,
            kind.value,
        )
        return True

    await serve(host, port, offer, handle, rng=rng, once=once, task_status=task_status)


async def serve_device_link(
    home: Home,
    passphrase: str,
    host: str | None,
    port: int,
    approve: Approve,
    *,
    now: Callable[[], int],
    rng: Rng,
    once: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``device serve``: certify new devices of this account, each approved by its owner."""
    account, _, _ = accounts.load_account(home, now())
    trust, _, _ = accounts.device_bundle_parts(home, account)
    offer = pairing.Offer("account", tuple(trust), account.raw)

    async def handle(session: pairing.PairingSession, framed: FramedStream) -> bool:
        message = session.open(await framed.read())
        if not isinstance(message, pairing.LinkRequest):
            raise DecodeError("pairing: expected a device link request")
        message.verify(session.handshake_hash)
        seen = Request(
            session.code, message.name, account.email, message.device.fingerprint(), "device"
        )
        if not await approve(seen):
            await framed.write(session.seal(pairing.Refused("not approved")))
            return False
        _, device = accounts.certify_device(
            home, message.device, message.exchange, message.name, passphrase, now()
        )
        trust_files, records, devices = accounts.device_bundle_parts(home, account)
        linked = pairing.Linked(
            account.raw, device.raw, tuple(trust_files), tuple(records), tuple(devices)
        )
        await framed.write(session.seal(linked))
        log.info(N_("device %s (%s) linked to this account"), device.name, device.device_id)
        return True

    await serve(host, port, offer, handle, rng=rng, once=once, task_status=task_status)


# --- clients -----------------------------------------------------------------------


async def _open(
    address: tuple[str, int], rng: Rng
) -> tuple[FramedStream, pairing.PairingSession, pairing.Offer]:
    try:
        with trio.fail_after(STEP_TIMEOUT):
            stream = await trio.open_tcp_stream(*address)
    except (OSError, trio.TooSlowError) as exc:
        raise ConnectionFailed(f"cannot reach {address[0]}:{address[1]}: {exc}") from exc
    framed = FramedStream(stream)
    session = pairing.PairingSession(client=True, rng=rng)
    session.receive_commitment(await framed.read())
    await framed.write(session.hello())
    offer = session.receive_offer(await framed.read())
    return framed, session, offer


async def _answer(framed: FramedStream, session: pairing.PairingSession) -> pairing.Message:
    answer = session.open(await framed.read(DECISION_TIMEOUT))
    if isinstance(answer, pairing.Refused):
        raise PairingRefused(answer.reason, reason=answer.reason)
    return answer


async def enrol_from(
    home: Home, address: tuple[str, int], show_code: ShowCode, *, now: Callable[[], int], rng: Rng
) -> AccountCertificate:
    """``enroll --from``: send our pending request to the authority; install the certificate."""
    request = accounts.pending_request(home)
    trusted = home.trust_store()
    framed, session, offer = await _open(address, rng)
    async with framed.stream:
        if offer.kind != "authority" or len(offer.trust) != 1:
            raise VerificationError(VerificationFailure.MALFORMED, "not an authority's offer")
        served = parse_trust_file(offer.trust[0])
        # Only an authority we already trust (from 'init --trust') may answer.
        trusted.get(served.key_id)
        await show_code(session.code, served.name)
        await framed.write(session.seal(pairing.EnrolRequest(request.raw)))
        answer = await _answer(framed, session)
    if not isinstance(answer, pairing.Issued):
        raise DecodeError("pairing: expected a certificate")
    return accounts.enroll_certificate(home, answer.certificate, now())


async def link_device(
    home: Home,
    address: tuple[str, int],
    name: str,
    passphrase: str,
    show_code: ShowCode,
    *,
    now: Callable[[], int],
    rng: Rng,
) -> DeviceCertificate:
    """``device link``: make this empty home a new device of the account served at ``address``."""
    accounts.require_no_device(home)
    secrets = accounts.DeviceSecrets.generate(rng)
    display_name = identity.normalise_display_name(name, identity.MAX_DEVICE_NAME)
    framed, session, offer = await _open(address, rng)
    async with framed.stream:
        if offer.kind != "account":
            raise VerificationError(VerificationFailure.MALFORMED, "not an account's offer")
        trust = TrustStore(parse_trust_file(t) for t in offer.trust)
        account = identity.read_account_certificate(offer.account, trust)
        await show_code(session.code, account.email)
        request = pairing.sign_link(
            secrets.signing, secrets.exchange.public_key(), display_name, session.handshake_hash
        )
        await framed.write(session.seal(request))
        answer = await _answer(framed, session)
    if not isinstance(answer, pairing.Linked) or answer.account != offer.account:
        raise DecodeError("pairing: expected this account's device bundle")
    return accounts.install_device(
        home,
        answer.account,
        answer.device,
        secrets,
        list(answer.trust),
        list(answer.revocations),
        list(answer.devices),
        passphrase=passphrase,
        now=now(),
        rng=rng,
    )

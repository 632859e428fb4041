"""A secure channel over a trio stream: the I/O half of :mod:`p2ptchap.core.channel`.

:class:`SecureConnection` drives a :class:`~p2ptchap.core.channel.SecureChannel`
over any ``trio.abc.Stream`` (a TCP socket in production, a memory stream in
tests).  It owns the timeouts the pure channel cannot have: the handshake must
finish within ``handshake_timeout``; the peer must send *something* (a
heartbeat answer will do) within ``idle_timeout``.

One task may receive while others send: sends are serialised by a lock, and
the bytes a channel queues are always taken and written under that lock, so
records leave in the order the channel made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import operator
import struct

import trio

from p2ptchap.core.channel import (
    NEED_DATA,
    Closed,
    ConnectionTruncated,
    Established,
    Message,
    Pong,
    SecureChannel,
)
from p2ptchap.core.errors import N_, LocalError, RemoteError
from p2ptchap.core.identity import VerifiedDevice

log = logging.getLogger("p2ptchap.net")

READ_SIZE = 65536


class ConnectionFailed(RemoteError):
    """The connection broke: timeout, reset, or a protocol error by the peer."""

    default_message = N_("The connection to the other device was lost.")


class HandshakeTimeout(ConnectionFailed):
    """The peer did not finish the handshake in time."""

    default_message = N_("The other device did not complete the secure handshake in time.")


class PeerSilent(ConnectionFailed):
    """The peer sent nothing, not even a heartbeat answer, within the idle timeout."""

    default_message = N_("The other device stopped answering.")


class PeerNotReading(ConnectionFailed):
    """The peer stopped reading: a write did not complete within the idle timeout."""

    default_message = N_("The other device stopped reading what we send.")


class ConnectionClosed(LocalError):
    """The connection is closed; nothing more can be sent or received."""

    default_message = N_("The connection is closed.")


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: whole handshake; silence before the peer is declared dead."""

    handshake: float = 10.0
    idle: float = 15.0


class SecureConnection:
    """An established (after :meth:`handshake`) secure connection to one device."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        channel: SecureChannel,
        *,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.stream = stream
        self.channel = channel
        self.timeouts = timeouts
        self.peer: VerifiedDevice | None = None
        self.last_received = trio.current_time()
        self.rtt: float | None = None
        self._send_lock = trio.Lock()
        self._closed = False

    # --- handshake -------------------------------------------------------------

    async def handshake(self) -> VerifiedDevice:
        """Run the handshake; return the verified peer.

        Raises :class:`HandshakeTimeout`, a :class:`RemoteError` from the
        channel (for example ``PeerRejected`` with its reason), or
        :class:`ConnectionFailed`.  On any failure the stream is closed
        without sending anything more.
        """
        try:
            with trio.fail_after(self.timeouts.handshake):
                await self._flush()
                while True:
                    event = self.channel.next_event()
                    if isinstance(event, Established):
                        self.peer = event.peer
                        await self._flush()  # e.g. message 3, or our credentials record
                        return event.peer
                    if event is NEED_DATA:
                        await self._flush()
                        await self._read()
                    else:
                        raise ConnectionFailed(f"unexpected {event!r} during the handshake")
        except trio.TooSlowError:
            await self._abort()
            raise HandshakeTimeout("handshake timed out") from None
        except (RemoteError, ConnectionFailed):
            await self._abort()
            raise

    # --- receiving ---------------------------------------------------------------

    async def receive_message(self) -> bytes | None:
        """The next application message; ``None`` once the peer closed cleanly.

        Raises :class:`ConnectionFailed` (idle timeout, reset, truncation) or
        the channel's :class:`RemoteError`; the connection is then aborted.
        """
        try:
            while True:
                event = self.channel.next_event()
                if isinstance(event, Message):
                    return event.data
                if isinstance(event, Closed):
                    await self.aclose()
                    return None
                if isinstance(event, Pong):
                    self._record_rtt(event.body)
                elif event is NEED_DATA:
                    await self._flush()  # answers to pings
                    deadline = self.last_received + self.timeouts.idle
                    with trio.move_on_at(deadline) as scope:
                        await self._read()
                    if scope.cancelled_caught:
                        raise PeerSilent("peer silent past the idle timeout")
        except ConnectionTruncated as exc:
            await self._abort()
            raise ConnectionFailed(str(exc)) from exc
        except RemoteError:
            await self._abort()
            raise

    async def _read(self) -> None:
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except trio.ClosedResourceError:
            # Only we close our stream: another task of ours closed it.
            raise ConnectionClosed("closed while reading") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise ConnectionFailed(f"read failed: {exc}") from exc
        self.last_received = trio.current_time()
        self.channel.receive_data(bytes(data))

    # --- sending -----------------------------------------------------------------

    async def send_message(self, data: bytes) -> None:
        """Send one application message.

        Raises :class:`ConnectionClosed` or :class:`ConnectionFailed`.
        """
        async with self._send_lock:
            # Checked under the lock: another task may have closed meanwhile.
            if self._closed or not self.channel.is_open:
                raise ConnectionClosed("send on a closed connection")
            self.channel.send_message(data)
            await self._write_locked()

    async def ping(self) -> None:
        """Send a heartbeat; its answer updates :attr:`rtt` when received."""
        async with self._send_lock:
            if self._closed or not self.channel.is_open:
                raise ConnectionClosed("ping on a closed connection")
            self.channel.send_ping(struct.pack(">d", trio.current_time()))
            await self._write_locked()

    def _record_rtt(self, body: bytes) -> None:
        if len(body) == 8:
            (sent,) = struct.unpack(">d", body)
            elapsed = trio.current_time() - sent
            if math.isfinite(elapsed) and elapsed >= 0:
                self.rtt = elapsed

    async def _flush(self) -> None:
        async with self._send_lock:
            await self._write_locked()

    async def _write_locked(self) -> None:
        data = self.channel.data_to_send()
        if not data:
            return
        try:
            # A peer that stops reading must not hold us (and every task
            # waiting for the send lock) past the idle timeout.
            with trio.fail_after(self.timeouts.idle):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            raise PeerNotReading("peer stopped reading") from None
        except trio.ClosedResourceError:
            raise ConnectionClosed("closed while writing") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise ConnectionFailed(f"write failed: {exc}") from exc

    # --- closing -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close cleanly: a CLOSE record if the channel is open, then the stream.

        A peer that stopped reading cannot hold us more than a second, and a
        cancelled close still closes the stream (forcefully), as trio asks.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self.channel.is_open:
                self.channel.close()
                with trio.move_on_after(1), contextlib.suppress(ConnectionFailed, ConnectionClosed):
                    await self._flush()
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _abort(self) -> None:
        """Drop the stream without a word (after a protocol failure)."""
        self._closed = True
        await trio.aclose_forcefully(self.stream)


class SecureStream(trio.abc.Stream):
    """A byte-stream view of a :class:`SecureConnection` (each send is one message).

    It lets generic stream code — and ``trio.testing.check_two_way_stream`` —
    run over the secure channel.  Closing it sends the CLOSE record, which the
    other side reads as the end of the stream.
    """

    def __init__(self, connection: SecureConnection) -> None:
        self.connection = connection
        self._buffer = bytearray()
        self._eof = False
        self._receiving = False
        self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self.connection._closed or not self.connection.channel.is_open:
                raise trio.ClosedResourceError("stream is closed")
            if data:
                await self.connection.send_message(bytes(data))
        except ConnectionClosed as exc:
            raise trio.ClosedResourceError(str(exc)) from exc
        except ConnectionFailed as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending")
        if self.connection._closed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("stream is closed")
        self._sending = True
        try:
            await self.connection.stream.wait_send_all_might_not_block()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving")
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for 1.5, as streams do
            if max_bytes < 1:
                raise ValueError("max_bytes must be positive")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            if self.connection._closed and not self._buffer and not self._eof:
                raise trio.ClosedResourceError("stream is closed")
            while not self._buffer and not self._eof:
                try:
                    message = await self.connection.receive_message()
                except ConnectionClosed as exc:
                    raise trio.ClosedResourceError(str(exc)) from exc
                except ConnectionFailed as exc:
                    raise trio.BrokenResourceError(str(exc)) from exc
                if message is None:
                    self._eof = True
                else:
                    self._buffer += message
            size = len(self._buffer) if max_bytes is None else min(max_bytes, len(self._buffer))
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        await self.connection.aclose()
        await trio.lowlevel.checkpoint()

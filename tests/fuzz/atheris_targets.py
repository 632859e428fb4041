"""Coverage-guided fuzz targets (atheris / libFuzzer), runnable by hand.

Usage (``pip install -e '.[fuzz]'`` first)::

    python tests/fuzz/atheris_targets.py TARGET [libFuzzer options and corpus dirs]
    python tests/fuzz/atheris_targets.py frames /tmp/frames tests/fuzz/corpus/frames \\
        -max_total_time=300

Targets (each a function of one byte string; the first byte picks a mode
where a target has several):

``frames``   the secure channel's receiving side: mode 0 feeds raw bytes to
             a responder still in its handshake (framing, Noise message 1
             and 3); mode 1 reads the rest as plaintext records (2-byte
             length, type byte, body), encrypts them with the peer's real
             transport keys and feeds the frames to an open channel, so the
             fuzzer reaches every record type, reassembly, rekey and close;
             mode 2 sends the rest as ciphertext frames to an open channel.
``events``   mode 0: :func:`~p2ptchap.core.events.parse_event` on the bytes;
             mode 1: the bytes as an event *body*, signed by a known device,
             so that every content schema is reached behind the signature.
``sync``     sync messages (:func:`~p2ptchap.core.sync.decode_bytes`).
``peerwire`` network messages, and transfer messages under their limits.
``identity`` COSE records: trust files, requests, account and device
             certificates, revocations (mode byte picks which).

Each target lets only the typed errors of the code it calls pass; any other
exception, or a broken invariant (an accepted input that is not the one
encoding of its value, a failed channel that still sends), is a crash.
``tests/fuzz/test_corpus.py`` replays ``tests/fuzz/corpus/<target>/`` and
``tests/fuzz/crashes/<target>/`` through these same functions in CI.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make "tests" and "p2ptchap" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if __name__ == "__main__" and len(sys.argv) > 1:
    # Coverage guidance only for our code: load (and so instrument) the
    # package before anything else imports it.  Instrumenting everything
    # loaded (pytest, hypothesis...) would take minutes and slow each run.
    import atheris

    with atheris.instrument_imports(include=["p2ptchap"]):
        import p2ptchap.core.authority
        import p2ptchap.core.channel
        import p2ptchap.core.events
        import p2ptchap.core.revocation
        import p2ptchap.core.sync
        import p2ptchap.core.transfer  # noqa: F401 - imported to be instrumented

from p2ptchap.core import cose, identity, peerwire, revocation, sync, transfer
from p2ptchap.core.authority import parse_trust_file
from p2ptchap.core.channel import (
    LENGTH_PREFIX,
    MAX_RECORD_BODY,
    NEED_DATA,
    ChannelConfig,
    SecureChannel,
)
from p2ptchap.core.envelope import seal
from p2ptchap.core.errors import DecodeError, RemoteError, VerificationError
from p2ptchap.core.events import EVENT_CONTEXT, InvalidEvent, parse_event, reload_event
from tests.conftest import endpoint, make_rng
from tests.fuzz.formats import encode_peerwire, parse_transfer
from tests.fuzz.world import world

# --- frames ----------------------------------------------------------------------------------


@functools.cache
def _open_pair() -> tuple[SecureChannel, SecureChannel]:
    """An established channel pair, made once; each input works on a deep copy."""
    w = world()
    rng = make_rng(7)
    config = ChannelConfig(rekey_after=1 << 16)
    a = endpoint(w.alice, w.org, initiator=True, rng=rng, config=config)
    b = endpoint(w.bob, w.org, initiator=False, rng=rng, config=config)
    for _ in range(3):
        for source, sink in ((a, b), (b, a)):
            stream = source.data_to_send()
            if stream:
                sink.receive_data(stream)
                while sink.next_event() is not NEED_DATA:
                    pass
    assert a.is_open and b.is_open
    return a, b


def _responder() -> SecureChannel:
    w = world()
    return endpoint(w.bob, w.org, initiator=False, rng=make_rng(8))


def _drain(channel: SecureChannel) -> None:
    """Pull every event; a remote error must leave the channel failed and silent."""
    try:
        while channel.next_event() is not NEED_DATA:
            pass
    except RemoteError:
        if not channel.is_closed or channel.data_to_send():
            raise AssertionError("a failed channel is not closed and silent") from None


def _feed(channel: SecureChannel, stream: bytes) -> None:
    try:
        channel.receive_data(stream)
    except RemoteError:
        if not channel.is_closed:
            raise AssertionError("refused data left the channel open") from None
        return
    _drain(channel)


def _records(data: bytes) -> list[bytes]:
    """Plaintext records from fuzz bytes: a 2-byte length then the record, repeatedly."""
    records, position = [], 0
    while position + LENGTH_PREFIX <= len(data):
        length = int.from_bytes(data[position : position + LENGTH_PREFIX], "big")
        length = min(length, MAX_RECORD_BODY + 1)
        position += LENGTH_PREFIX
        records.append(data[position : position + length])
        position += length
    return records


def target_frames(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        _feed(_responder(), rest)
        return
    a, b = copy.deepcopy(_open_pair())
    if mode == 1:
        transport = a._transport
        assert transport is not None
        stream = b"".join(
            len(m).to_bytes(LENGTH_PREFIX, "big") + m
            for m in (transport.encrypt(r) for r in _records(rest))
        )
        _feed(b, stream)
    else:
        _feed(b, rest)
        b.receive_data(b"")  # the stream ends: truncation must be reported, typed
        _drain(b)


# --- events ----------------------------------------------------------------------------------


def target_events(data: bytes) -> None:
    if not data:
        return
    raw = (
        data[1:] if data[0] % 2 == 0 else seal(world().alice.device_secret, EVENT_CONTEXT, data[1:])
    )
    try:
        event = parse_event(raw)
    except InvalidEvent:
        return
    if event.raw != raw or reload_event(raw) != event:
        raise AssertionError("an accepted event does not read back as itself")


# --- messages ------------------------------------------------------------------------------


def _strict(
    decode: Callable[[bytes], object], encode: Callable[[object], bytes], data: bytes
) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    if encode(value) != data:
        raise AssertionError("an accepted message is not the encoding of its value")


def target_sync(data: bytes) -> None:
    _strict(sync.decode_bytes, sync.encode, data)  # type: ignore[arg-type]


def target_peerwire(data: bytes) -> None:
    _strict(peerwire.decode, encode_peerwire, data)
    _strict(parse_transfer, transfer.encode, data)  # type: ignore[arg-type]


# --- identity --------------------------------------------------------------------------------


def target_identity(data: bytes) -> None:
    if not data:
        return
    trust = world().org.trust
    readers: tuple[Callable[[bytes], object], ...] = (
        parse_trust_file,
        identity.parse_request,
        lambda d: identity.read_account_certificate(d, trust),
        identity.parse_device_certificate,
        lambda d: revocation.parse_revocation(d, trust),
    )
    with contextlib.suppress(VerificationError):
        readers[data[0] % len(readers)](data[1:])
    with contextlib.suppress(DecodeError):
        cose.parse(data[1:], cose.peek_content_type(data[1:]))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": target_frames,
    "events": target_events,
    "sync": target_sync,
    "peerwire": target_peerwire,
    "identity": target_identity,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus dirs]")
    import atheris  # noqa: PLC0415 - an optional extra, only for runs by hand

    target = TARGETS[argv[1]]
    world()  # build the seeds and the channel pair once, before fuzzing
    _open_pair()
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

"""Write the seed corpus of the atheris targets: valid inputs, from the fuzz world.

Usage: ``python tests/fuzz/make_corpus.py`` (writes ``tests/fuzz/corpus/<target>/``).

Each file is named by the SHA-1 of its content, as libFuzzer names what it
adds, so running the script again rewrites the same files.  The seeds are
the valid objects of :mod:`tests.fuzz.world`, framed the way each target of
:mod:`tests.fuzz.atheris_targets` reads its input (a mode byte first where a
target has modes).
"""

from __future__ import annotations

import copy
import hashlib
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from p2ptchap.core import codec
from p2ptchap.core.channel import LENGTH_PREFIX, RecordType
from tests.conftest import endpoint, make_rng
from tests.fuzz.atheris_targets import _open_pair
from tests.fuzz.world import world

CORPUS = Path(__file__).resolve().parent / "corpus"


def _record_stream(*records: bytes) -> bytes:
    return b"".join(len(r).to_bytes(LENGTH_PREFIX, "big") + r for r in records)


def _frames() -> list[bytes]:
    w = world()
    hello = endpoint(w.alice, w.org, initiator=True, rng=make_rng(9)).data_to_send()
    a, _ = copy.deepcopy(_open_pair())
    a.send_message(b"bonjour")
    a.send_ping(b"\x01")
    a.rekey()
    a.send_message(b"x" * 70_000)  # MORE records, then DATA
    a.close()
    ciphertext = a.data_to_send()

    def record(kind: RecordType | int, body: bytes = b"") -> bytes:
        return bytes((kind,)) + body

    return [
        b"\x00" + hello,
        b"\x01" + _record_stream(record(RecordType.DATA, b"bonjour")),
        b"\x01" + _record_stream(record(RecordType.MORE, b"bon"), record(RecordType.DATA, b"jour")),
        b"\x01" + _record_stream(record(RecordType.PING, b"\x07"), record(RecordType.PONG)),
        b"\x01" + _record_stream(record(RecordType.REKEY), record(RecordType.DATA, b"after")),
        b"\x01" + _record_stream(record(RecordType.CLOSE)),
        b"\x01" + _record_stream(record(RecordType.CREDENTIALS, w.credentials)),
        b"\x02" + ciphertext,
    ]


def _events() -> list[bytes]:
    out = []
    for raw in world().seeds["event"]:
        envelope = codec.decode(raw)
        assert isinstance(envelope, dict) and isinstance(envelope["body"], bytes)
        out += [b"\x00" + raw, b"\x01" + envelope["body"]]
    return out


def _identity() -> list[bytes]:
    seeds = world().seeds
    kinds = (
        ("trust-file",),
        ("request",),
        ("account-certificate",),
        ("device-certificate",),
        ("revocation-authority", "revocation-device"),
    )
    return [
        bytes([mode]) + seed for mode, names in enumerate(kinds) for n in names for seed in seeds[n]
    ]


def corpus() -> dict[str, list[bytes]]:
    """The seed inputs of every target."""
    seeds = world().seeds
    return {
        "frames": _frames(),
        "events": _events(),
        "sync": list(seeds["sync"]),
        "peerwire": [*seeds["peerwire"], *seeds["transfer"]],
        "identity": _identity(),
    }


def write(root: Path = CORPUS) -> int:
    """Write every seed under ``root/<target>/``; return how many files were written."""
    count = 0
    for target, inputs in corpus().items():
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
            count += 1
    return count


if __name__ == "__main__":
    print(f"{write()} seed files under {CORPUS}")

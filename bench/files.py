"""File benchmark: a large file between two node processes on loopback.

Measured in one run, each next to its reference:

* ``send-file`` (the CLI command: read, encrypt, hash, write the blob)
  against libsodium's ChaCha20-Poly1305 alone on 64 KiB chunks;
* the transfer (the receiving node fetches, checks and records every chunk)
  against raw trio TCP and the secure channel alone, both ends in one
  process (``bench/network.py``'s measure);
* ``download --out`` (the CLI command: decrypt the blob to a file) against
  the AEAD alone;
* the peak memory (VmHWM) of both node processes against their idle size.

The two CLI commands include their process start (~0.5 s): with a small
file (``--short``) that start dominates.

Run:  python bench/files.py [--short] [--size-mib 256]
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nacl.bindings
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.network import throughput
from bench.processes import CONTROL_TIMEOUT, NodeProcesses, cli, form_room, memory, open_home
from p2ptchap.api.control import call
from tests.conftest import make_org, make_rng
from tests.net.cell import make_cell

MIB = common.MIB


@dataclasses.dataclass(frozen=True)
class Params:
    size_mib: int  # the file sent


FULL = Params(size_mib=256)
SHORT = Params(size_mib=8)


def aead_rate(seconds: float = 1.0) -> float:
    """MiB/s of ChaCha20-Poly1305 (IETF) sealing 64 KiB chunks, libsodium alone."""
    key, chunk = os.urandom(32), os.urandom(64 * 1024)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        nonce = done.to_bytes(12, "big")
        nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(chunk, None, nonce, key)
        done += 1
    return done * len(chunk) / MIB / (time.perf_counter() - start)


@dataclasses.dataclass
class Transfer:
    send_s: float
    transfer_s: float
    export_s: float
    idle: dict[str, int]
    peaks: dict[str, int]


def transfer(root: Path, size_mib: int, progress: common.Progress) -> Transfer:
    """Alice sends a file of random bytes into a room; Bruno's node fetches it; he saves it."""
    size = size_mib * MIB
    with NodeProcesses(root) as nodes:
        port = nodes.up("alice")
        nodes.up("bruno", port)
        common.wait_blocking(lambda: nodes.peers("alice") == 1, 20)
        owner = open_home(root, "alice")
        room = form_room(root, owner, "Fichiers", ["bruno"], 20).hex()
        owner.db.close()
        idle = {name: nodes.rss(name) for name in nodes.running}
        source = root / "big.bin"
        with source.open("wb") as out:
            for _ in range(size_mib):
                out.write(os.urandom(MIB))
        progress(f"send-file of {size_mib} MiB")
        start = time.perf_counter()
        sent = json.loads(cli(root, "--home", "alice", "send-file", room, str(source), "--json"))
        send_s = time.perf_counter() - start
        source.unlink()
        common.wait_blocking(
            lambda: sent["id"] in cli(root, "--home", "bruno", "files", room, "--json"), 30
        )
        progress("transfer")
        start = time.perf_counter()
        call(root / "bruno", "file-download", CONTROL_TIMEOUT, root=sent["root"], size=size)
        while (
            call(root / "bruno", "file-progress", CONTROL_TIMEOUT, root=sent["root"])["state"]
            != "complete"
        ):
            time.sleep(0.02)
        transfer_s = time.perf_counter() - start
        peaks = {name: memory(nodes.pid(name), "VmHWM") for name in nodes.running}
        progress("download --out")
        start = time.perf_counter()
        out_path = root / "out.bin"
        cli(root, "--home", "bruno", "download", room, sent["id"], "--out", str(out_path))
        export_s = time.perf_counter() - start
        if out_path.stat().st_size != size:
            raise RuntimeError("the file saved is not the file sent")
        out_path.unlink()
    return Transfer(send_s, transfer_s, export_s, idle, peaks)


def collect(params: Params, progress: common.Progress) -> common.Section:
    mib = params.size_mib
    section = common.Section(
        "files",
        "Files",
        f"A {mib} MiB file of random bytes between two `p2ptchap up` processes on loopback "
        "(both nodes and the bench share the 2 cores).",
    )
    with tempfile.TemporaryDirectory(prefix="bench-files-") as folder:
        root = make_cell(Path(folder), ["alice", "bruno"])
        done = transfer(root, mib, progress)
    progress("references: raw TCP, secure channel, AEAD")
    org = make_org(make_rng(3))
    alice, bruno = org.member("a@x.gouv.fr", "A"), org.member("b@x.gouv.fr", "B")
    raw_mib, secure_mib = trio.run(throughput, alice, bruno, org, max(mib, 64) * MIB)
    aead = aead_rate()
    section.add(
        "send",
        "`send-file` (CLI: encrypt into the blob store)",
        mib / done.send_s,
        "MiB/s",
        aead,
        "ChaCha20-Poly1305 alone, 64 KiB chunks",
    )
    section.add(
        "transfer",
        "transfer, node to node (fetch, check, record every chunk)",
        mib / done.transfer_s,
        "MiB/s",
        raw_mib,
        "raw trio TCP, one process",
    )
    section.add(
        "transfer.vs_channel",
        "… the same transfer",
        mib / done.transfer_s,
        "MiB/s",
        secure_mib,
        "secure channel alone, one process",
    )
    section.add(
        "download",
        "`download --out` (CLI: decrypt to a file)",
        mib / done.export_s,
        "MiB/s",
        aead,
        "ChaCha20-Poly1305 alone",
    )
    for name, role in (("alice", "sending"), ("bruno", "receiving")):
        section.add(
            f"peak_rss.{role}",
            f"peak RSS of the {role} node (VmHWM), {mib} MiB file",
            done.peaks[name] / MIB,
            "MiB",
            done.idle[name] / MIB,
            "its idle RSS",
        )
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (common.Option("--size-mib", "size_mib", help="size of the file sent"),)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

"""File benchmark: a large file between two node processes on loopback.

Measured in one run, each next to its reference:

* ``send-file`` (read, encrypt, hash, write the blob) against libsodium's
  ChaCha20-Poly1305 alone on 64 KiB chunks;
* the transfer (the receiving node fetches, checks and records every chunk)
  against raw trio TCP and the secure channel alone, both ends in one
  process (``bench/network.py``'s measure);
* ``download --out`` (decrypt the blob to a file) against the AEAD alone;
* the peak memory (VmHWM) of both node processes, and its growth over the
  idle node's, against the file's size.

Run:  .venv/bin/python bench/files.py [--size-mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nacl.bindings
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.network import throughput
from p2ptchap.api.control import call
from tests.conftest import make_org, make_rng
from tests.net.cell import make_cell
from tests.net.test_node_processes import Nodes
from tests.net.test_sync_processes import alice_and_bruno_in_a_room, members, ok

MIB = 1 << 20


def aead_rate(seconds: float = 1.0) -> float:
    """MiB/s of ChaCha20-Poly1305 (IETF) sealing 64 KiB chunks, libsodium alone."""
    key, chunk = os.urandom(32), os.urandom(64 * 1024)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        nonce = done.to_bytes(12, "big")
        nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(chunk, None, nonce, key)
        done += 1
    return done * len(chunk) / MIB / (time.perf_counter() - start)


def memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="p2ptchap-bench-files-") as folder:
        root = make_cell(Path(folder), ["alice", "bruno"])
        nodes = Nodes(root)
        try:
            room, _port = alice_and_bruno_in_a_room(nodes, root, "Bench")
            nodes.wait_for(lambda: members(root, "alice", room).get("bruno@x.gouv.fr") == "join")
            idle = {n: memory(p.pid, "VmRSS") for n, p in nodes.processes.items()}
            source = root / "big.bin"
            with source.open("wb") as out:
                for _ in range(args.size_mib):
                    out.write(os.urandom(MIB))
            start = time.perf_counter()
            sent = json.loads(ok(root, "--home", "alice", "send-file", room, str(source), "--json"))
            send_s = time.perf_counter() - start
            source.unlink()
            nodes.wait_for(
                lambda: sent["id"] in ok(root, "--home", "bruno", "files", room, "--json"),
                timeout=30,
            )
            start = time.perf_counter()
            call(root / "bruno", "file-download", root=sent["root"], size=size)
            while call(root / "bruno", "file-progress", root=sent["root"])["state"] != "complete":
                time.sleep(0.02)
            transfer_s = time.perf_counter() - start
            peaks = {n: memory(p.pid, "VmHWM") for n, p in nodes.processes.items()}
            start = time.perf_counter()
            out_path = root / "out.bin"
            ok(root, "--home", "bruno", "download", room, sent["id"], "--out", str(out_path))
            export_s = time.perf_counter() - start
            out_path.unlink()
        finally:
            for name in list(nodes.processes):
                nodes.stop(name)
    org = make_org(make_rng(3))
    alice, bruno = org.member("a@x.gouv.fr", "A"), org.member("b@x.gouv.fr", "B")
    raw_mib, secure_mib = trio.run(throughput, alice, bruno, org, 256 * MIB)
    aead = aead_rate()
    mib = args.size_mib
    print(f"# p2ptchap files benchmark — {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{mib} MiB file, two node processes on loopback"
    )
    print(f"{'measure':<44} {'value':>12} {'reference':>26} {'ratio':>6}")
    rows = [
        ("send-file (encrypt into the blob store)", mib / send_s, "AEAD alone", aead),
        ("transfer, node to node", mib / transfer_s, "raw trio TCP", raw_mib),
        ("transfer, node to node", mib / transfer_s, "secure channel alone", secure_mib),
        ("download --out (decrypt to a file)", mib / export_s, "AEAD alone", aead),
    ]
    for label, value, ref_label, ref in rows:
        print(
            f"{label:<44} {value:>7.0f} MiB/s {ref_label:>15} {ref:>5.0f} MiB/s {value / ref:>6.2f}"
        )
    for name in sorted(peaks):
        growth = peaks[name] - idle[name]
        print(
            f"{'peak RSS ' + name:<44} {peaks[name] / MIB:>8.0f} MiB {'growth over idle':>15} "
            f"{growth / MIB:>5.0f} MiB {growth / size:>6.2f}"
        )


if __name__ == "__main__":
    main()

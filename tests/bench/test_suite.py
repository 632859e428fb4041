"""The benchmark suite runs end to end: ``bench/run.py --short`` as a real process.

Nothing here looks at speed (the machine is shared and noisy; figures are
read in ``docs/performance.md``): the suite must run every benchmark
without failing, and report each figure the performance issue asks for as
a finite positive number, next to a reference measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

#: The figures of the performance issue, and the reference each must come with.
REQUIRED = {
    "sync.latency.p50": "TCP ping-pong",
    "sync.latency.p99": "TCP ping-pong",
    "sync.latency_processes.p50": "TCP ping-pong",
    "sync.throughput.delivered": "Ed25519",
    "sync.throughput_processes.delivered": "Ed25519",
    "files.transfer": "raw trio TCP",
    "files.send": "ChaCha20-Poly1305",
    "files.download": "ChaCha20-Poly1305",
    "sync.efficiency.random.bytes": "missing",
    "sync.efficiency.last.bytes": "missing",
    "convergence.seconds": "alone",
    "nodes.startup": "import",
    "nodes.rss.idle.writing": "interpreter",
    "nodes.rss.idle.receiving": "interpreter",
    "nodes.rss.loaded.writing": "idle",
    "nodes.rss.loaded.receiving": "idle",
    "e2e.rotation": "X25519",
    "directory.search.p50": "FTS5",
    "directory.search.p99": "FTS5",
    "rooms.open": "SQLite",
    "identity.chain_verify": "Ed25519",
    "network.handshakes": "X25519",
}
SECTIONS = {
    "identity",
    "network",
    "e2e",
    "rooms",
    "directory",
    "sync",
    "files",
    "nodes",
    "convergence",
}


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_the_short_suite_reports_every_figure_with_its_reference(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--short", "--json", str(out)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=900,  # a liveness bound only: it takes about a minute
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "short"
    assert results["failed"] == []
    assert {s["name"] for s in results["sections"]} == SECTIONS
    assert all(results["machine"][k] for k in ("cpu", "cores", "python", "trio", "sqlite"))

    measures = {m["key"]: m for s in results["sections"] for m in s["measures"]}
    missing = set(REQUIRED) - set(measures)
    assert not missing, missing
    for key, reference in REQUIRED.items():
        measure = measures[key]
        assert positive(measure["value"]), measure
        assert positive(measure["reference"]), measure
        assert reference in measure["reference_label"], measure
        assert math.isclose(measure["ratio"], measure["value"] / measure["reference"])
    for measure in measures.values():
        assert positive(measure["value"]), measure
        assert measure["reference"] is None or positive(measure["reference"]), measure
    # The same figures, as a person reads them: one table on stdout, progress on stderr.
    assert "reference (same run)" in done.stdout
    assert "[9/9] convergence" in done.stderr

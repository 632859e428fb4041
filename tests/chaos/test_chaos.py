"""The chaos run, reduced for CI: two seeds, six real nodes, every fault at least once.

Each seed builds a LAN of network namespaces, runs a short random plan
(messages, files, membership changes, partitions, packet loss, SIGKILLs of
nodes and of CLI writers), heals everything and checks that nothing was
lost, states agree, nothing leaked and every store is sound (see
``tests/chaos/driver.py`` and ``checks.py``).  The long run is by hand:
``python -m tests.chaos --seed N --steps M`` (``tests/chaos/README.md``).

Root, ``ip`` and ``nft`` are needed; without them the test is skipped and
says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2ptchap.testing.netns import nft_available
from tests.chaos.driver import run
from tests.chaos.model import FAULTS, MIB, Settings, replay_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nft_available() is not None, reason=f"chaos run: {nft_available()}"),
]


@pytest.mark.parametrize("seed", [11, 12])
def test_a_short_chaos_run_loses_nothing(seed: int, tmp_path: Path) -> None:
    settings = Settings(
        seed=seed,
        steps=18,
        nodes=6,
        pace=0.2,
        big_file=3 * MIB,
        settle=150,
        private_rooms=2,
        forced=FAULTS,
    )
    summary = run(settings, tmp_path / f"seed-{seed}")
    print(summary.render())
    assert summary.passed, f"{summary.render()}\nreplay: {replay_command(settings)}"
    assert summary.assessment.lost == 0 and summary.assessment.leaks == 0
    # The plan did what it claims: every kind of fault happened, and the
    # checks had something to check.
    counts = summary.counts
    assert counts["partitions"] and counts["drops"] and counts["kills"] >= 2, counts
    assert counts["kills-transfer"] and counts["writer-kills"] + counts["files"] >= 2, counts
    assert counts["messages"] and counts["membership"], counts
    assert summary.assessment.readable > 0 and summary.assessment.files_held > 0

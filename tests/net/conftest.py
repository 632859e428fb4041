"""Fixtures of the network tests: node processes, stopped whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.test_node_processes import Nodes


@pytest.fixture
def nodes(cell: Path) -> Iterator[Nodes]:
    """``p2ptchap up`` processes in the module's ``cell``; killed at the end of the test."""
    running = Nodes(cell)
    try:
        yield running
    finally:
        for process in running.processes.values():
            process.kill()
            process.wait(timeout=10)

"""Fixtures of the hostile suite: one arena (attacked node, honest peer) for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.arena import Arena


@pytest.fixture(scope="session")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """Alice's node (attacked) and Bruno's (honest), in a private room, their traffic measured."""
    running = Arena(tmp_path_factory.mktemp("hostile"))
    try:
        running.start()
        yield running
    finally:
        running.close()

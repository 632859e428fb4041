"""Replication on the in-memory network: rooms, trust data, receipts, access."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from p2ptchap.core.events import Membership
from tests.conftest import Org
from tests.sync.netcell import SyncCell


@pytest.fixture
def cell(tmp_path: Path, org: Org) -> SyncCell:
    return SyncCell(tmp_path, org)


async def test_two_nodes_learn_each_other_and_share_a_room(
    cell: SyncCell, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(cell.net.run)
        alice, bob = await cell.add("alice"), await cell.add("bob")
        cell.net.mesh()
        await trio.sleep(2)
        # Trust gossip: each directory now holds the other's certificates.
        assert alice.rooms.directory.account(bob.account.account_key) is not None
        done = alice.rooms.create("Cellule de crise")
        alice.rooms.invite(done.room, bob.account.account_key)
        await trio.sleep(2)
        assert bob.rooms.info(done.room).membership is Membership.INVITE
        bob.rooms.join(done.room)
        for n in range(5):
            alice.rooms.send(done.room, f"message {n}".encode())
        await trio.sleep(2)
        assert [m.body for m in bob.rooms.messages(done.room)] == [
            f"message {n}".encode() for n in range(5)
        ]
        assert alice.rooms.state(done.room) == bob.rooms.state(done.room)
        nursery.cancel_scope.cancel()

"""Delivery and read receipts on disk: each device's latest, per room and kind.

Receipts are checked (signature, and by the caller the device's
certificate) before they are stored; only the newest per ``(room, device,
kind)`` is kept, by :func:`p2ptchap.core.sync.newer`, so every node that
saw the same receipts keeps the same ones and their digest agrees.
"""

from __future__ import annotations

import hashlib

from p2ptchap.core.sync import InvalidReceipt, Receipt, ReceiptKind, newer, parse_receipt
from p2ptchap.store.db import Database


class ReceiptStore:
    """The ``receipts`` table of a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._digests: dict[bytes, bytes] = {}

    def refresh(self) -> None:
        """Forget cached digests (another process may have stored receipts)."""
        self._digests.clear()

    def get(self, room: bytes, device: bytes, kind: ReceiptKind) -> Receipt | None:
        rows = self.db.query(
            "SELECT raw FROM receipts WHERE room = ? AND device = ? AND kind = ?",
            (room, device, kind.value),
        )
        return self._parse(rows[0][0]) if rows else None

    def add(self, receipt: Receipt) -> bool:
        """Keep ``receipt`` if it is newer than the one held; return whether it was."""
        device = bytes(receipt.device)
        with self.db.transaction() as cursor:
            if not newer(receipt, self.get(receipt.room, device, receipt.kind)):
                return False
            cursor.execute(
                "INSERT INTO receipts (room, device, kind, account, ts, raw)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room, device, kind) DO UPDATE SET"
                " account = excluded.account, ts = excluded.ts, raw = excluded.raw",
                (
                    receipt.room,
                    device,
                    receipt.kind.value,
                    bytes(receipt.account),
                    receipt.ts,
                    receipt.raw,
                ),
            )
        self._digests.pop(receipt.room, None)
        return True

    def of_room(self, room: bytes) -> list[Receipt]:
        rows = self.db.query("SELECT raw FROM receipts WHERE room = ? ORDER BY device", (room,))
        found = [self._parse(row[0]) for row in rows]
        return [r for r in found if r is not None]

    def signature(self, room: bytes) -> tuple[int, int]:
        """Cheap and changing whenever a receipt of ``room`` is added or replaced.

        A receipt replaces another of its device only if it is newer, and an
        honest device's next receipt always has a later time: so the count
        and the sum of the times change with every receipt stored.
        """
        rows = self.db.query("SELECT count(*), total(ts) FROM receipts WHERE room = ?", (room,))
        count, total = rows[0] if rows else (0, 0)
        if not isinstance(count, int) or not isinstance(total, int | float):
            return 0, 0
        return count, int(total)

    def digest(self, room: bytes) -> bytes:
        """16 bytes that differ when two nodes hold different receipts for ``room``."""
        cached = self._digests.get(room)
        if cached is not None:
            return cached
        digest = hashlib.blake2b(digest_size=16, person=b"p2ptchap-rcpt")
        for (raw,) in self.db.query(
            "SELECT raw FROM receipts WHERE room = ? ORDER BY raw", (room,)
        ):
            if isinstance(raw, bytes):
                digest.update(hashlib.blake2b(raw, digest_size=32).digest())
        self._digests[room] = digest.digest()
        return self._digests[room]

    @staticmethod
    def _parse(raw: object) -> Receipt | None:
        if not isinstance(raw, bytes):
            return None
        try:
            return parse_receipt(raw)
        except InvalidReceipt:
            return None

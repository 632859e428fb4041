"""The end of a chaos run: heal, wait for the cell to converge, stop it, check what it holds.

After the last step every link is put back, every loss removed, every dead
node restarted and every download cut by a kill started again.  The cell is
then polled (read-only, as ``room show`` reads a home) until every check of
:mod:`tests.chaos.checks` holds, within ``Settings.settle`` seconds.  The
nodes are stopped and what needs them stopped is checked: SQLite integrity,
each store opened with its passphrase, texts decrypted as they were sent,
files exported and downloaded byte for byte, removed members reading
nothing new through ``p2ptchap room read``, and no clear marker at rest.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.chaos import checks
from tests.chaos.model import MARK, Download, SentFile, SentMessage
from tests.net.cell import PASSPHRASE

if TYPE_CHECKING:
    from tests.chaos.driver import Chaos


class Ending:
    """The end of one run (see the module documentation)."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos

    def heal_everything(self) -> None:
        for name in sorted({*self.chaos.partitioned, *self.chaos.outages}):
            self.chaos.person(name).host.heal()
        for name in sorted(self.chaos.dropping):
            self.chaos.person(name).host.clear_drop()
        self.chaos.partitioned.clear()
        self.chaos.outages.clear()
        self.chaos.dropping.clear()
        self.chaos.network.join()
        self.chaos.split = None
        for name in sorted(self.chaos.dead):
            self.chaos.restart(name)
        self.chaos.note("healed: every link up, no loss, every node running")
        # Downloads cut by a kill of their node are asked again: they resume.
        self.chaos.collect_downloads()
        for download in list(self.chaos.downloads):
            if download.outcome is not None and "No node is running" in download.outcome.err:
                self.chaos.start_download(download.name, download.file)

    def stranded(self, download: Download) -> bool:
        """Stop ``download`` if its person is no longer a member of the file's room."""
        view = checks.survey(download.name, self.chaos.person(download.name).home)
        copy = view.rooms.get(bytes.fromhex(download.file.room))
        if copy is not None and copy.joined:
            return False
        download.process.kill()
        self.chaos.collect_downloads()
        self.chaos.counts["downloads-stranded"] += 1
        self.chaos.note(
            f"{download.name} left the room of {download.file.event[:10]}: download stopped"
        )
        return True

    def acknowledged(self) -> dict[bytes, list[tuple[str, bytes]]]:
        found: dict[bytes, list[tuple[str, bytes]]] = {}
        items: list[SentMessage | SentFile] = [*self.chaos.messages, *self.chaos.files]
        for item in items:
            found.setdefault(bytes.fromhex(item.room), []).append(
                (item.sender, bytes.fromhex(item.event))
            )
        return found

    def views(self) -> dict[str, checks.HomeView]:
        return {n: checks.survey(n, self.chaos.person(n).home) for n in self.chaos.names}

    def settle(self) -> checks.Assessment:
        """Wait until every check holds (or the bound passes); the last assessment."""
        started = time.monotonic()
        deadline = started + self.chaos.settings.settle
        told = started
        while True:
            self.chaos.cell.check_alive()
            self.chaos.collect_downloads()
            assessment = checks.assess(self.views(), self.acknowledged())
            running = [d for d in self.chaos.downloads if d.outcome is None]
            if assessment.clean and running:
                # A download asked by someone removed since can never finish:
                # nobody serves it a file of a room it is no longer in.
                running = [d for d in running if not self.stranded(d)]
            if assessment.clean and not running:
                self.chaos.note(f"converged {time.monotonic() - started:.1f} s after healing")
                return assessment
            if time.monotonic() - told > 15:  # what the cell is still waiting for
                told = time.monotonic()
                waiting = [*assessment.problems[:3], *(f"download by {d.name}" for d in running)]
                self.chaos.note(
                    f"still converging: lost {assessment.lost}; {'; '.join(waiting[:4])}"
                )
            if time.monotonic() > deadline:
                self.chaos.note(f"not converged {self.chaos.settings.settle:.0f} s after healing")
                for download in running:
                    download.process.kill()
                    self.chaos.problems.append(
                        f"{download.name}'s download of {download.file.event[:10]} never ended"
                    )
                self.chaos.collect_downloads()
                return assessment
            time.sleep(2)

    def finish(self, assessment: checks.Assessment) -> checks.Assessment:
        """Stop the nodes, then the checks that need them stopped."""
        for name in self.chaos.names:  # the nodes' own counters, for reading a run afterwards
            status = self.chaos.cell.control(name, "status") or {}
            self.chaos.note(f"{name}: sync {status.get('sync')}; files {status.get('files')}")
        self.stop_all()
        for name in self.chaos.names:
            damaged = checks.integrity(self.chaos.person(name).home)
            if damaged is not None:
                self.chaos.problems.append(
                    f"{name}'s database fails its integrity check: {damaged}"
                )
        assessment = checks.assess(self.views(), self.acknowledged())
        self.check_texts()
        self.check_files()
        self.check_downloads()
        self.check_clear_markers()
        return assessment

    def stop_all(self) -> None:
        for name in self.chaos.names:
            if self.chaos.person(name).process is not None:
                code = self.chaos.cell.stop(name)
                if code != 0:
                    self.chaos.problems.append(f"{name}'s node exited with {code} when stopped")

    def check_texts(self) -> None:
        """Every text a node decrypts is the one sent; a removed member reads nothing new (CLI)."""
        sent = {bytes.fromhex(m.event): m.text for m in self.chaos.messages}
        file_events = {bytes.fromhex(f.event) for f in self.chaos.files}
        for name in self.chaos.names:
            for message in checks.read_all(self.chaos.person(name).home, PASSPHRASE):
                if message.text is None or message.event in file_events:
                    continue
                expected = sent.get(message.event)
                if expected is not None and message.text.decode() != expected:
                    self.chaos.problems.append(
                        f"{name} reads {message.event.hex()[:10]} as {message.text[:40]!r},"
                        f" not as sent"
                    )
        # The decrypted view through the CLI itself, for everyone who is not
        # (or no longer) a member: it must show no text its causal past forbids.
        views = self.views()
        for name, view in views.items():
            for room, copy in view.rooms.items():
                if copy.joined:
                    continue
                outcome = self.chaos.cli(
                    name, "room", "read", room.hex(), "--limit", "100000", "--json"
                )
                if not outcome.ok:
                    continue  # no state yet (a stranger holding a stray event)
                entitled = checks.Entitlement(copy.live)
                for shown in outcome.json():
                    event = copy.live.events.get(bytes.fromhex(shown["id"]))
                    if shown["text"] is not None and (
                        event is None
                        or not (
                            entitled(view.account, event) or entitled.exact(view.account, event)
                        )
                    ):
                        self.chaos.problems.append(
                            f"LEAK: {name} ('room read') reads {shown['id'][:10]} of"
                            f" room {room.hex()[:10]} that it should not"
                        )

    def check_files(self) -> None:
        """Every member that may read a file exports it byte for byte as sent."""
        views = self.views()
        for sent in self.chaos.files:
            room, event = bytes.fromhex(sent.room), bytes.fromhex(sent.event)
            for name, view in views.items():
                copy = view.rooms.get(room)
                if copy is None or not copy.joined or event not in copy.live.events:
                    continue
                if copy.live.status(event)[0] != "accepted" or event not in copy.decrypted:
                    continue  # rejected, or not its to read (checked by assess)
                out = self.chaos.root / "exports" / f"{name}-{sent.event[:12]}.bin"
                try:
                    home = self.chaos.person(name).home
                    digest = checks.export_file(home, PASSPHRASE, room, event, out)
                except Exception as exc:  # reported as a finding, not raised
                    self.chaos.problems.append(f"{name} cannot export {sent.event[:10]}: {exc!r}")
                    continue
                out.unlink()
                self.chaos.counts["exports"] += 1
                if digest != sent.sha256:
                    self.chaos.problems.append(
                        f"{name}'s copy of {sent.event[:10]} is not the sent file"
                    )

    def check_downloads(self) -> None:
        for download in self.chaos.downloads:
            if download.outcome is None or not download.outcome.ok:
                continue
            self.chaos.counts["downloads-ok"] += 1
            if checks.sha256(download.out) != download.file.sha256:
                self.chaos.problems.append(
                    f"{download.name}'s download of {download.file.event[:10]} is not the sent file"
                )

    def check_clear_markers(self) -> None:
        """No message or file content in clear in any home (databases, blobs) nor any log."""
        homes = [self.chaos.person(n).home for n in self.chaos.names]
        hits = checks.scan([*homes, self.chaos.root / "logs"], MARK.encode())
        for path in hits:
            self.chaos.problems.append(f"clear content found at rest in {path}")

"""The chaos run: real nodes on a namespace LAN, random actions and faults, then the checks.

:class:`Chaos` builds a cell of ``nodes`` agents, each node in its own
network namespace on one bridge (:func:`p2ptchap.testing.netns.lan`),
forms rooms with the CLI (a few private rooms with different members, one
public forum), and then plays ``steps`` random steps drawn from
``random.Random(seed)``:

* messages from every node (``room send``), files of random sizes up to
  several MiB (``send-file``) and downloads (``download --out``);
* membership changes: invite, join, leave, kick, ban, unban, role changes;
* faults: a host cut off the bridge (``ip link set ... down``) and plugged
  back, the LAN cut in two groups that go on apart, packet loss on a
  host's link (nftables), SIGKILL of a node and its restart — also right
  after messages were sent to it (while it stores them) and while it
  fetches or serves a file — and SIGKILL of ``send-file`` while it writes.

Then :mod:`tests.chaos.ending` heals everything, waits (with a generous
bound) until every check of :mod:`tests.chaos.checks` holds, stops the
nodes and runs the final checks.

The seed fixes the plan (which action, by whom, on what, when); outcomes
depend on the timing of real processes, so a replay follows the same plan
but not always the same interleaving.  The journal (``journal.log``) says
what each step did and how it ended.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from p2ptchap.store.db import DB_NAME
from p2ptchap.testing.netns import Lan, lan
from tests.chaos import checks
from tests.chaos.cluster import NAMES, Cell, Journal, Outcome, Person
from tests.chaos.ending import Ending
from tests.chaos.model import (
    ADMIN,
    MARK,
    MIB,
    MODERATOR,
    ROLES,
    WORDS,
    Download,
    RoomPlan,
    SentFile,
    SentMessage,
    Settings,
    Summary,
    replay_command,
)


class Chaos:
    """One chaos run (see the module documentation)."""

    def __init__(self, settings: Settings, root: Path, network: Lan, journal: Journal) -> None:
        self.settings = settings
        self.root = root
        self.rng = random.Random(settings.seed)
        # File contents come from their own generator, so the plan's draws
        # do not depend on how many bytes files have.
        self.content = random.Random(f"content-{settings.seed}")
        self.journal = journal
        self.names = list(NAMES[: settings.nodes])
        self.cell = Cell(root, network, self.names, journal, verbose=settings.verbose)
        self.network = network
        self.rooms: list[RoomPlan] = []
        self.messages: list[SentMessage] = []
        self.files: list[SentFile] = []
        self.downloads: list[Download] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.step_no = 0
        self.partitioned: dict[str, int] = {}  # person → step at which it heals
        self.dropping: dict[str, int] = {}  # person → step at which loss stops
        self.dead: dict[str, int] = {}  # person → step at which it restarts
        self.outages: dict[str, float] = {}  # person → monotonic time at which it heals
        #: The smaller side of the LAN cut in two, and the step at which it is rejoined.
        self.split: tuple[list[str], int] | None = None
        self.problems: list[str] = []
        self.serial = 0
        steps = range(1, settings.steps + 1)
        if len(settings.forced) > len(steps):
            raise ValueError("more forced actions than steps")
        #: Actions and their weights; long outages only if the settings ask for them.
        self.actions = dict(self.ACTIONS)
        if settings.outage > 0:
            self.actions["outage"] = 1
        unknown = sorted(set(settings.forced) - set(self.actions))
        if unknown:
            raise ValueError(f"no such actions: {', '.join(unknown)}")
        at = self.rng.sample(steps, len(settings.forced))
        self.forced = dict(zip(at, settings.forced, strict=True))
        for folder in ("outbox", "downloads", "exports"):
            (root / folder).mkdir(exist_ok=True)

    # --- helpers -----------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.journal.note(f"seed={self.settings.seed} step={self.step_no} {text}")

    def person(self, name: str) -> Person:
        return self.cell.people[name]

    def marker(self, kind: str) -> str:
        self.serial += 1
        token = self.rng.randbytes(4).hex()
        return f"{MARK}{self.settings.seed}-{kind}{self.serial}-{token}"

    def cli(self, name: str, *args: str) -> Outcome:
        outcome = self.cell.cli(name, *args)
        if outcome.code not in (0, 1):
            # 1 is a refusal (one sentence); anything else is a finding.
            self.problems.append(
                f"step {self.step_no}: {name} {' '.join(args[:3])}: exit {outcome.code}:"
                f" {outcome.err.strip()[-300:]}"
            )
        if "Traceback" in outcome.err:
            self.problems.append(f"step {self.step_no}: traceback from {name} {args[:2]}")
        return outcome

    def parallel(self, jobs: list[Callable[[], object]]) -> None:
        """Run independent CLI commands side by side (two cores: three at a time)."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.note(f"gave up waiting for {what} after {timeout:.0f} s")
                return False
            time.sleep(0.3)
        return True

    def holds_room(self, name: str, room: str) -> bool:
        return bool(self._query(name, "SELECT 1 FROM rooms WHERE room = ?", bytes.fromhex(room)))

    def _query(self, name: str, sql: str, *parameters: object) -> list[tuple[object, ...]]:
        path = self.person(name).home / DB_NAME
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                return db.execute(sql, parameters).fetchall()
        except sqlite3.Error:
            return []

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        self.note(f"start: {self.settings}")
        self.note(f"replay: {replay_command(self.settings)}")
        try:
            self.start_nodes()
            self.form_rooms()
            self.greet()
            for step in range(1, self.settings.steps + 1):
                self.step_no = step
                self.scheduled()
                self.step()
                self.collect_downloads()
                self.cell.check_alive()
                time.sleep(self.rng.uniform(0, self.settings.pace))
            self.step_no = self.settings.steps + 1
            ending = Ending(self)
            ending.heal_everything()
            assessment = ending.finish(ending.settle())
        except AssertionError as exc:  # a node that died, a check that could not run
            self.problems.append(f"step {self.step_no}: {exc}")
            assessment = checks.Assessment()
        finally:
            Ending(self).stop_all()
        summary = Summary(
            self.settings.seed,
            self.counts,
            assessment,
            self.problems,
            time.monotonic() - started,
            self.root,
        )
        self.note(summary.render())
        return summary

    def start_nodes(self) -> None:
        self.parallel([lambda n=n: self.cell.start(n) for n in self.names])  # type: ignore[misc]
        everyone = len(self.names) - 1
        self.wait_until(
            "every node to meet every other",
            lambda: all(len(self.cell.control(n, "peers") or ()) >= everyone for n in self.names),
            60,
        )
        self.note("nodes up and connected")

    def form_rooms(self) -> None:
        """A public forum and a few private rooms with different, overlapping members."""
        names = self.names
        plans: list[tuple[str, str, bool, list[str]]] = []
        creators = self.rng.sample(names, self.settings.private_rooms + 1)
        for index in range(self.settings.private_rooms):
            others = [n for n in names if n != creators[index]]
            size = min(len(others), self.rng.randint(2, max(2, len(others) - 1)))
            plans.append(
                (f"Salon {index + 1}", creators[index], False, self.rng.sample(others, size))
            )
        forum_creator = creators[-1]
        others = [n for n in names if n != forum_creator]
        plans.append(("Forum", forum_creator, True, self.rng.sample(others, len(others) - 1)))

        def make(title: str, creator: str, public: bool, invited: list[str]) -> RoomPlan:
            args = ["room", "create", title, "--json"] + (["--public"] if public else [])
            created = self.cli(creator, *args)
            assert created.ok, created.err
            room = RoomPlan(created.json()["room"], title, public, creator, {creator: "join"}, {})
            room.levels[creator] = ADMIN
            self.note(f"{creator} created {title} {room.id[:10]} (public={public})")
            for name in [] if public else invited:
                outcome = self.cli(creator, "room", "invite", room.id, self.person(name).email)
                self.note(f"{creator} invites {name} to {room.name}: {outcome.brief()}")
                if outcome.ok:
                    room.membership[name] = "invite"
            return room

        # Each creator makes its room and invites, side by side with the others.
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(make, *plan) for plan in plans]
            self.rooms = [future.result() for future in futures]

        def join(room: RoomPlan, name: str) -> None:
            if not room.public:
                self.wait_until(
                    f"{name} to hold {room.name}", lambda: self.holds_room(name, room.id), 30
                )
            deadline = time.monotonic() + 30
            while True:
                outcome = self.cli(name, "room", "join", room.id)
                if outcome.ok or time.monotonic() > deadline:
                    break
                time.sleep(1)  # a forum's summary may not have arrived yet
            self.note(f"{name} joins {room.name}: {outcome.brief()}")
            if outcome.ok:
                room.membership[name] = "join"
                # A forum joined by its summary is fetched, then joined, by the node.
                self.wait_until(
                    f"{name}'s node to fetch {room.name}",
                    lambda: self.holds_room(name, room.id),
                    30,
                )

        self.parallel(
            [
                lambda r=room, n=name: join(r, n)  # type: ignore[misc]
                for room, (_, _, _, joining) in zip(self.rooms, plans, strict=True)
                for name in joining
            ]
        )

    def scheduled(self) -> None:
        """Heal, stop losing, restart: whatever an earlier step planned for now."""
        for name, due in sorted(self.partitioned.items()):
            if due <= self.step_no:
                self.person(name).host.heal()
                del self.partitioned[name]
                self.note(f"heal {name}")
        for name, due in sorted(self.dropping.items()):
            if due <= self.step_no:
                self.person(name).host.clear_drop()
                del self.dropping[name]
                self.note(f"loss off for {name}")
        for name, until in sorted(self.outages.items()):
            if until <= time.monotonic():
                self.person(name).host.heal()
                del self.outages[name]
                self.note(f"heal {name} after its outage")
        if self.split is not None and self.split[1] <= self.step_no:
            self.network.join()
            self.split = None
            self.note("the LAN is whole again")
        for name, due in sorted(self.dead.items()):
            if due <= self.step_no:
                self.restart(name)

    def restart(self, name: str) -> None:
        self.cell.start(name)
        self.dead.pop(name, None)
        self.note(f"restart {name}")

    ACTIONS: ClassVar[dict[str, int]] = {
        "message": 30,
        "file": 7,
        "download": 4,
        "invite": 7,
        "join": 7,
        "leave": 2,
        "kick": 3,
        "ban": 2,
        "unban": 1,
        "role": 3,
        "partition": 3,
        "split": 3,
        "loss": 3,
        "kill": 3,
        "kill-transfer": 2,
        "kill-writer": 2,
    }

    def step(self) -> None:
        action = self.rng.choices(list(self.actions), weights=list(self.actions.values()))[0]
        action = self.forced.get(self.step_no, action)
        getattr(self, "act_" + action.replace("-", "_"))()

    # --- content ------------------------------------------------------------------------------

    def pick_room(self) -> RoomPlan:
        return self.rng.choice(self.rooms)

    def cut_off(self) -> set[str]:
        """Who cannot reach the bulk of the cell now: partitioned, or on the small side."""
        apart = set(self.partitioned) | set(self.outages)
        return apart | set(self.split[0] if self.split else ())

    def pick_member(self, room: RoomPlan) -> str:
        """Usually a member (as the driver believes), now and then anyone: refusals count too.

        A member cut off from the others is picked often, so that both sides
        of a partition act on the same room at the same time.
        """
        joined = room.with_membership("join")
        apart = sorted(self.cut_off() & set(joined))
        roll = self.rng.random()
        if apart and roll < 0.3:
            return self.rng.choice(apart)
        if joined and roll < 0.9:
            return self.rng.choice(joined)
        return self.rng.choice(self.names)

    def text(self) -> str:
        """A message's text: its marker, then a few words."""
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 12)))
        return f"{self.marker('m')} {words}"

    def act_message(self, room: RoomPlan | None = None, name: str | None = None) -> None:
        room = room or self.pick_room()
        name = name or self.pick_member(room)
        text = self.text()
        self.record_message(
            room, name, text, self.cli(name, "room", "send", room.id, text, "--json")
        )

    def record_message(self, room: RoomPlan, name: str, text: str, outcome: Outcome) -> None:
        self.note(f"{name} says in {room.name}: {text[:40]}…: {outcome.brief()}")
        if outcome.ok:
            sent = SentMessage(room.id, outcome.json()["event"], name, text)
            self.messages.append(sent)
            self.counts["messages"] += 1
        else:
            self.counts["refused"] += 1

    def greet(self) -> None:
        """A message and a small file from every node, side by side: every node has sent some."""
        plans = []
        for name in self.names:
            rooms = [r for r in self.rooms if r.membership.get(name) == "join"]
            if rooms:  # drawn in order, so the plan stays the seed's
                room = self.rng.choice(rooms)
                plans.append((name, room, self.text(), self.new_file(small=True)))

        def send(name: str, room: RoomPlan, text: str, path: Path) -> tuple[Outcome, Outcome]:
            said = self.cli(name, "room", "send", room.id, text, "--json")
            return said, self.cli(name, "send-file", room.id, str(path), "--json")

        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(send, n, r, t, f[0]) for n, r, t, f in plans]
            outcomes = [future.result() for future in futures]
        for (name, room, text, (_, size, digest, _)), (said, sent) in zip(
            plans, outcomes, strict=True
        ):
            self.record_message(room, name, text, said)
            self.note(f"{name} sends a {size}-byte file to {room.name}: {sent.brief()}")
            self.record_file(room, name, size, digest, sent)

    def new_file(self, *, big: bool = False, small: bool = False) -> tuple[Path, int, str, str]:
        """A file of random size with markers in clear inside; its path, size, digest, marker."""
        roll = 1.0 if big else 0.0 if small else self.rng.random()
        if small:
            size = self.rng.randint(1, 64 * 1024)
        elif roll < 0.6:
            size = self.rng.randint(1, 256 * 1024)
        elif roll < 0.85:
            size = self.rng.randint(256 * 1024, 2 * MIB)
        else:
            size = self.rng.randint(min(2 * MIB, self.settings.big_file), self.settings.big_file)
        marker = self.marker("f")
        path = self.root / "outbox" / f"{marker}.bin"
        digest = hashlib.sha256()
        with path.open("wb") as out:
            for start in range(0, size, MIB):
                piece = bytearray(self.content.randbytes(min(MIB, size - start)))
                stamp = marker.encode()[: len(piece)]
                piece[: len(stamp)] = stamp  # the marker, in clear, in every MiB
                digest.update(piece)
                out.write(piece)
        return path, size, digest.hexdigest(), marker

    def act_file(self, room: RoomPlan | None = None, name: str | None = None) -> None:
        room = room or self.pick_room()
        name = name or self.pick_member(room)
        path, size, digest, _ = self.new_file()
        outcome = self.cli(name, "send-file", room.id, str(path), "--json")
        self.note(f"{name} sends a {size}-byte file to {room.name}: {outcome.brief()}")
        self.record_file(room, name, size, digest, outcome)

    def record_file(
        self, room: RoomPlan, name: str, size: int, digest: str, outcome: Outcome
    ) -> None:
        if not outcome.ok:
            self.counts["refused"] += 1
            return
        sent = outcome.json()
        self.files.append(SentFile(room.id, sent["id"], sent["root"], size, digest, name))
        self.counts["files"] += 1
        self.counts["file-bytes"] += size

    def act_download(self) -> None:
        if not self.files:
            return self.act_file()
        sent = self.rng.choice(self.files)
        room = next(r for r in self.rooms if r.id == sent.room)
        name = self.pick_member(room)
        self.start_download(name, sent)
        return None

    def start_download(self, name: str, sent: SentFile) -> None:
        self.serial += 1
        out = self.root / "downloads" / f"{name}-{self.serial}.bin"
        process = self.cell.spawn(name, "download", sent.room, sent.event, "--out", str(out))
        self.downloads.append(Download(name, sent, out, process, time.monotonic()))
        self.counts["downloads"] += 1
        self.note(f"{name} starts downloading {sent.event[:10]} ({sent.size} bytes)")

    def collect_downloads(self) -> None:
        for download in self.downloads:
            if download.outcome is None and download.process.poll() is not None:
                out, err = download.process.communicate()
                download.outcome = Outcome(download.process.returncode, out, err)
                self.note(
                    f"{download.name}'s download of {download.file.event[:10]}:"
                    f" {download.outcome.brief()}"
                )
                if download.outcome.code not in (0, 1) or "Traceback" in err:
                    self.problems.append(
                        f"download by {download.name}: exit {download.outcome.code}: {err[-300:]}"
                    )

    # --- membership ----------------------------------------------------------------------------

    def _membership(self, room: RoomPlan, actor: str, args: list[str], what: str) -> bool:
        outcome = self.cli(actor, "room", *args)
        self.note(f"{actor} {what} in {room.name}: {outcome.brief()}")
        self.counts["membership" if outcome.ok else "refused"] += 1
        return outcome.ok

    def act_invite(self) -> None:
        room = self.pick_room()
        actor = self.pick_member(room)
        targets = [
            n
            for n in self.names
            if room.membership.get(n) not in ("join", "invite", "ban") and n != actor
        ]
        if not targets:
            return self.act_message(room)
        target = self.rng.choice(targets)
        if self._membership(
            room, actor, ["invite", room.id, self.person(target).email], f"invites {target}"
        ):
            room.membership[target] = "invite"
        return None

    def act_join(self) -> None:
        room = self.pick_room()
        kinds = ("invite", "leave", None) if room.public else ("invite",)
        targets = [n for n in self.names if room.membership.get(n) in kinds]
        if not targets:
            return self.act_invite()
        target = self.rng.choice(targets)
        if self._membership(room, target, ["join", room.id], "joins"):
            room.membership[target] = "join"
        return None

    def act_leave(self) -> None:
        room = self.pick_room()
        targets = [n for n in room.with_membership("join", "invite") if n != room.creator]
        if not targets:
            return None
        target = self.rng.choice(targets)
        if self._membership(room, target, ["leave", room.id], "leaves"):
            room.membership[target] = "leave"
        return None

    def _moderator(self, room: RoomPlan) -> str | None:
        able = [n for n in room.with_membership("join") if room.level(n) >= MODERATOR]
        apart = sorted(self.cut_off() & set(able))
        if apart and self.rng.random() < 0.4:
            return self.rng.choice(apart)
        return self.rng.choice(able) if able else None

    def act_kick(self, ban: bool = False) -> None:
        room = self.pick_room()
        actor = self._moderator(room)
        if actor is None:
            return None
        kinds = ("join", "invite", "leave", None) if ban else ("join", "invite")
        targets = [
            n
            for n in self.names
            if room.membership.get(n) in kinds
            and n != actor
            and n != room.creator
            and room.level(n) < room.level(actor)
        ]
        if not targets:
            return None
        target = self.rng.choice(targets)
        verb = "ban" if ban else "kick"
        args = [verb, room.id, self.person(target).email]
        if self._membership(room, actor, args, f"{verb}s {target}"):
            room.membership[target] = "ban" if ban else "leave"
        return None

    def act_ban(self) -> None:
        self.act_kick(ban=True)

    def act_unban(self) -> None:
        room = self.pick_room()
        actor = self._moderator(room)
        banned = room.with_membership("ban")
        if actor is None or not banned:
            return None
        target = self.rng.choice(banned)
        args = ["unban", room.id, self.person(target).email]
        if self._membership(room, actor, args, f"unbans {target}"):
            room.membership[target] = "leave"
        return None

    def act_role(self) -> None:
        room = self.pick_room()
        admins = [n for n in room.with_membership("join") if room.level(n) >= ADMIN]
        others = [n for n in room.with_membership("join") if room.level(n) < ADMIN]
        if not admins or not others:
            return None
        actor, target = self.rng.choice(admins), self.rng.choice(others)
        role, level = self.rng.choice(ROLES)
        args = ["role", room.id, self.person(target).email, role]
        if self._membership(room, actor, args, f"makes {target} {role}"):
            room.levels[target] = level
        return None

    # --- faults ---------------------------------------------------------------------------------

    def act_partition(self) -> None:
        connected = [n for n in self.names if n not in self.partitioned and n not in self.outages]
        if len(self.partitioned) >= max(1, len(self.names) // 3) or not connected:
            name = self.rng.choice(sorted(self.partitioned))
            self.person(name).host.heal()
            del self.partitioned[name]
            self.note(f"heal {name} early")
            return
        name = self.rng.choice(connected)
        self.person(name).host.partition()
        self.partitioned[name] = self.step_no + self.rng.randint(1, 6)
        self.counts["partitions"] += 1
        self.note(f"partition {name} until step {self.partitioned[name]}")

    def act_outage(self) -> None:
        """Cut a host off for a long while (``Settings.outage`` seconds, ±50 %): a lost link.

        Longer than the few seconds of :meth:`act_partition`: long enough for
        every peer to give up dialling it, as when a laptop leaves the room.
        """
        connected = [n for n in self.names if n not in self.partitioned and n not in self.outages]
        seconds = self.settings.outage * self.rng.uniform(0.5, 1.5)
        if self.outages or not connected:
            return  # one at a time
        name = self.rng.choice(connected)
        self.person(name).host.partition()
        self.outages[name] = time.monotonic() + seconds
        self.counts["partitions"] += 1
        self.counts["outages"] += 1
        self.note(f"outage: {name} cut off for {seconds:.0f} s")

    def act_split(self) -> None:
        """Cut the LAN in two groups that keep working apart (or put it back together)."""
        if self.split is not None:
            self.network.join()
            self.split = None
            self.note("the LAN is whole again, early")
            return
        order = self.rng.sample(self.names, len(self.names))
        cut = self.rng.randint(2, len(order) - 2) if len(order) >= 4 else 1
        small, large = sorted([order[:cut], order[cut:]], key=len)
        hosts = {n: self.person(n).host for n in self.names}
        self.network.split([hosts[n] for n in small], [hosts[n] for n in large])
        self.split = (small, self.step_no + self.rng.randint(2, 8))
        self.counts["splits"] += 1
        self.note(f"LAN cut in two: {small} | {large}, until step {self.split[1]}")

    def act_loss(self) -> None:
        name = self.rng.choice(self.names)
        percent = self.rng.randint(5, 35)
        if name in self.dropping:
            self.person(name).host.clear_drop()
            del self.dropping[name]
            self.note(f"loss off for {name} early")
            return
        self.person(name).host.drop(percent)
        self.dropping[name] = self.step_no + self.rng.randint(2, 8)
        self.counts["drops"] += 1
        self.note(f"{percent} % loss on {name}'s link until step {self.dropping[name]}")

    def _running(self) -> list[str]:
        return [n for n in self.names if self.person(n).running]

    def kill(self, name: str, why: str) -> None:
        self.cell.kill(name)
        self.dead[name] = self.step_no + self.rng.randint(0, 3)
        self.counts["kills"] += 1
        self.note(f"SIGKILL {name}'s node ({why}); restart at step {self.dead[name]}")
        if self.dead[name] <= self.step_no:
            self.restart(name)

    def act_kill(self) -> None:
        """Kill a node right after messages were sent to it: it is storing them."""
        running = self._running()
        if not running:
            return
        victim = self.rng.choice(running)
        rooms = [r for r in self.rooms if r.membership.get(victim) == "join"]
        if rooms:
            room = self.rng.choice(rooms)
            others = [n for n in room.with_membership("join") if n != victim] or [victim]
            for _ in range(self.rng.randint(1, 3)):
                self.act_message(room, self.rng.choice(others))
            self.counts["kills-write"] += 1
        time.sleep(self.rng.uniform(0, 0.5))
        self.kill(victim, "while receiving")

    def holding_member(self, room: RoomPlan) -> str | None:
        """A member (as the driver believes) whose node holds the room, if any."""
        joined = [n for n in room.with_membership("join") if self.holds_room(n, room.id)]
        return self.rng.choice(joined) if joined else None

    def act_kill_transfer(self) -> None:
        """Send a big file, then kill a node that is fetching it (or its sender)."""
        room = max(self.rooms, key=lambda r: (len(r.with_membership("join")), self.rng.random()))
        joined = room.with_membership("join")
        sender = self.holding_member(room)
        if len(joined) < 2 or sender is None:
            return self.act_file(room)
        path, size, digest, _ = self.new_file(big=True)
        outcome = self.cli(sender, "send-file", room.id, str(path), "--json")
        self.note(f"{sender} sends a {size}-byte file to {room.name}: {outcome.brief()}")
        self.record_file(room, sender, size, digest, outcome)
        if not outcome.ok:
            return None
        root = bytes.fromhex(outcome.json()["root"])
        kill_sender = self.rng.random() < 0.3
        pick = self.rng.random()
        receivers = [n for n in joined if n != sender]

        def fetching() -> list[str]:
            return [
                n
                for n in receivers
                if self.person(n).running
                and self._query(n, "SELECT 1 FROM blobs WHERE root = ? AND complete = 0", root)
            ]

        self.wait_until("a receiver to start fetching", lambda: bool(fetching()), 8)
        if kill_sender and self.person(sender).running:
            self.kill(sender, "while serving a file")
        else:
            candidates = fetching() or [n for n in receivers if self.person(n).running]
            if not candidates:
                return None
            victim = candidates[int(pick * len(candidates))]
            self.kill(victim, "while fetching a file")
        self.counts["kills-transfer"] += 1
        return None

    def act_kill_writer(self) -> None:
        """SIGKILL a ``send-file`` while it encrypts the file into the store, or just after."""
        room = self.pick_room()
        name = self.holding_member(room) or self.rng.choice(self.names)
        path, size, digest, _ = self.new_file(big=True)
        delay = self.rng.uniform(0, 0.01)
        blobs = self.person(name).home / "blobs"
        before = set(blobs.glob(".*.tmp")) if blobs.exists() else set()
        process = self.cell.spawn(name, "send-file", room.id, str(path), "--json")
        # Wait for the encrypted copy to appear, then let it grow a little.
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            if blobs.exists() and set(blobs.glob(".*.tmp")) - before:
                break
            time.sleep(0.01)
        time.sleep(delay)
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
            self.counts["writer-kills"] += 1
            self.note(f"SIGKILL {name}'s send-file of {size} bytes {delay:.2f} s into its import")
            return
        out, err = process.communicate()
        outcome = Outcome(process.returncode, out, err)
        self.note(f"{name}'s send-file of {size} bytes ended before the kill: {outcome.brief()}")
        self.record_file(room, name, size, digest, outcome)


def run(settings: Settings, root: Path) -> Summary:
    """Build the LAN, play the run, check it; the LAN is removed whatever happens."""
    root.mkdir(parents=True, exist_ok=True)
    journal = Journal(root / "journal.log", settings.echo)
    try:
        with lan(settings.nodes, prefix="chaos") as network:
            return Chaos(settings, root, network, journal).run()
    finally:
        journal.close()

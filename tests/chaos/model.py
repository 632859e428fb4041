"""What a chaos run plans, remembers and reports: its settings, rooms, sendings and summary."""

from __future__ import annotations

import collections
import dataclasses
import subprocess
from pathlib import Path
from typing import TextIO

from tests.chaos import checks
from tests.chaos.cluster import Outcome

MIB = 1 << 20
#: Every message and file carries a marker starting with this: it must never
#: be found in clear in a home folder or a node's log.
MARK = "ChaosMark-"
ADMIN, MODERATOR, MEMBER = 100, 50, 0
ROLES = (("moderator", MODERATOR), ("member", MEMBER), ("admin", ADMIN))

#: One of each fault, for a short plan that must exercise them all.
FAULTS = ("partition", "split", "loss", "kill", "kill-transfer", "kill-writer")

#: Words for message bodies (accents included: the texts go through UTF-8).
WORDS = (
    "crue", "évacuation", "gymnase", "relève", "équipe", "pompiers", "préfecture",
    "niveau", "alerte", "secteur", "point", "ralliement", "météo", "digue", "route",
    "coupée", "renfort", "médecin", "école", "mairie", "bilan", "17h30", "nord", "sud",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What a run does; the seed decides the rest."""

    seed: int
    steps: int = 40
    nodes: int = 6
    #: Most seconds of quiet between two steps (drawn uniformly from 0).
    pace: float = 0.5
    #: Largest file sent ("several MiB").
    big_file: int = 6 * MIB
    #: Seconds allowed, after healing, for the cell to converge.
    settle: float = 300.0
    #: Private rooms formed at the start (besides the public forum).
    private_rooms: int = 2
    #: Mean seconds of a long outage of one host (0: none; see ``act_outage``).
    outage: float = 0.0
    #: Actions played at least once, each at a step drawn from the seed
    #: (CI forces every fault into its short plan).
    forced: tuple[str, ...] = ()
    #: Whether nodes log at debug level in their logs (``up --verbose``).
    verbose: bool = False
    #: Where the journal is echoed as it is written (None: only to the file).
    echo: TextIO | None = None


@dataclasses.dataclass
class RoomPlan:
    """A room as the driver means it: who it invited, admitted, removed, promoted."""

    id: str
    name: str
    public: bool
    creator: str
    #: Person → "invite" | "join" | "leave" | "ban", as the actions that succeeded left it.
    membership: dict[str, str]
    levels: dict[str, int]

    def with_membership(self, *kinds: str) -> list[str]:
        return sorted(n for n, m in self.membership.items() if m in kinds)

    def level(self, name: str) -> int:
        return self.levels.get(name, MEMBER)


@dataclasses.dataclass(frozen=True, slots=True)
class SentMessage:
    room: str
    event: str
    sender: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class SentFile:
    room: str
    event: str
    root: str
    size: int
    sha256: str
    sender: str


@dataclasses.dataclass
class Download:
    """A ``download --out`` running in the background."""

    name: str
    file: SentFile
    out: Path
    process: subprocess.Popen[str]
    started: float
    outcome: Outcome | None = None


@dataclasses.dataclass
class Summary:
    """The counts printed at the end, and whether the run passed."""

    seed: int
    counts: collections.Counter[str]
    assessment: checks.Assessment
    problems: list[str]
    seconds: float
    root: Path

    @property
    def passed(self) -> bool:
        return not self.problems and self.assessment.clean

    def render(self) -> str:
        c, a = self.counts, self.assessment
        lines = [
            f"chaos seed {self.seed}: {'PASSED' if self.passed else 'FAILED'}"
            f" in {self.seconds:.0f} s",
            f"  events {a.events} in {a.rooms} rooms; messages sent {c['messages']},"
            f" files sent {c['files']} ({c['file-bytes'] / MIB:.1f} MiB),"
            f" downloads {c['downloads-ok']}/{c['downloads']}",
            f"  kills {c['kills']} (during transfers {c['kills-transfer']},"
            f" during writes {c['kills-write']}), CLI writers killed {c['writer-kills']},"
            f" partitions {c['partitions']} (outages {c['outages']}; +{c['splits']} LAN splits),"
            f" drops {c['drops']},"
            f" membership changes {c['membership']} (refused {c['refused']})",
            f"  readable checked {a.readable}, files held {a.files_held},"
            f" leaks {a.leaks}, lost = {a.lost}",
        ]
        if not self.passed:
            lines.append(f"  journal and logs: {self.root}")
            lines.extend(f"  - {p}" for p in [*self.problems, *a.problems])
        return "\n".join(lines)


def replay_command(settings: Settings) -> str:
    """The command that plays the same plan again (the seed and what shapes the plan)."""
    command = (
        f"python -m tests.chaos --seed {settings.seed} --steps {settings.steps}"
        f" --nodes {settings.nodes} --rooms {settings.private_rooms}"
        f" --big-file {settings.big_file // MIB} --pace {settings.pace}"
        f" --outage {settings.outage:g}"
    )
    if settings.forced:
        command += f" --force {','.join(settings.forced)}"
    return command

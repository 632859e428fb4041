"""The chaos cell: one `p2ptchap up` process per namespace host, and the CLI beside it.

:class:`Cell` owns the processes of a chaos run.  Each person of the cell
has a home folder (made by :func:`tests.net.cell.make_cell`) and a host of
the namespace LAN (:mod:`p2ptchap.testing.netns`); its node runs inside
that host's namespace and finds the others over real mDNS and TCP.  Every
CLI command for a person also runs inside its namespace (``ip netns
exec``), exactly as an agent would type it on that machine, next to the
running node and on the same SQLite file.

Everything that happens is written to the run's :class:`Journal` with the
time since the start, so that a failing seed can be read back step by step.
Nodes write their own log (standard error, appended across restarts) to
``LOGS/<name>.log``.
"""

from __future__ import annotations

import dataclasses
import json
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from p2ptchap.api import control
from p2ptchap.core.errors import LocalError
from p2ptchap.testing.netns import Host, Lan
from tests.net.cell import cli_env, make_cell

#: People of a cell, in order; a run of K nodes uses the first K.
NAMES = (
    "alice", "bruno", "carole", "denis", "elise", "fanny",
    "gaston", "helene", "ines", "jules", "karim", "lea",
)  # fmt: skip
DOMAIN = "x.gouv.fr"
#: Seconds a node may take to say on which port it listens.
START_TIMEOUT = 60.0
#: Seconds a CLI command may take before it counts as hung.
CLI_TIMEOUT = 120.0


class Journal:
    """The run's log: one line per action and outcome, with the time since the start."""

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        self.started = time.monotonic()
        self._file = path.open("a", encoding="utf-8")
        self._echo = echo

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        line = f"[{self.elapsed():7.2f}s] {text}"
        self._file.write(line + "\n")
        self._file.flush()
        if self._echo is not None:
            print(line, file=self._echo, flush=True)

    def close(self) -> None:
        self._file.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one CLI command did."""

    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def json(self) -> Any:
        return json.loads(self.out)

    def brief(self) -> str:
        """One line for the journal: ``ok``, or the exit code and the error sentence."""
        if self.ok:
            return "ok"
        return f"exit {self.code}: {self.err.strip().splitlines()[-1] if self.err.strip() else ''}"


@dataclasses.dataclass(eq=False)
class Person:
    """One agent of the cell: a home, a host, and the node process when it runs."""

    name: str
    home: Path
    host: Host
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def email(self) -> str:
        return f"{self.name}@{DOMAIN}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class NodeFailed(AssertionError):
    """A node process did not start, or died without being killed."""


class Cell:
    """The homes, hosts and node processes of one chaos run (see the module documentation)."""

    def __init__(
        self,
        root: Path,
        lan: Lan,
        names: Sequence[str],
        journal: Journal,
        *,
        verbose: bool = False,
    ) -> None:
        if len(names) > len(lan.hosts):
            raise ValueError("one host per person")
        self.root = root
        self.journal = journal
        #: Whether nodes log at debug level (``up --verbose``).
        self.verbose = verbose
        self.env = cli_env()
        make_cell(root / "homes", list(names), domain=DOMAIN)
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.people = {
            name: Person(name, root / "homes" / name, host, logs / f"{name}.log")
            for name, host in zip(names, lan.hosts, strict=False)
        }

    # --- node processes ---------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Start ``name``'s node in its namespace; return once it listens."""
        person = self.people[name]
        if person.running:
            raise NodeFailed(f"{name} runs already")
        with person.log.open("ab") as log:
            log.write(f"--- start {person.starts + 1} at {self.journal.elapsed():.2f}s\n".encode())
            log.flush()
            process: subprocess.Popen[bytes] = person.host.run(
                self.argv(
                    name,
                    "up",
                    "--interface",
                    person.host.address,
                    *(["--verbose"] if self.verbose else []),
                ),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        person.process = process
        person.starts += 1
        line = _first_line(process, START_TIMEOUT)
        if b"port" not in line:
            raise NodeFailed(f"{name}'s node did not start: {line!r}; see {person.log}")

    def kill(self, name: str) -> None:
        """SIGKILL ``name``'s node (no clean close: its peers see a cut)."""
        process = self.people[name].process
        if process is None or process.poll() is not None:
            raise NodeFailed(f"{name} is not running")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.people[name].process = None

    def stop(self, name: str) -> int:
        """Stop ``name``'s node as Ctrl-C does; its exit code."""
        process = self.people[name].process
        if process is None:
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=30)
        self.people[name].process = None
        return code

    def check_alive(self) -> None:
        """Raise if a node the run did not kill has died (a crash is a finding)."""
        for person in self.people.values():
            process = person.process
            if process is not None and process.poll() is not None:
                raise NodeFailed(
                    f"{person.name}'s node died on its own (exit {process.returncode});"
                    f" see {person.log}"
                )

    # --- the CLI, beside each node ------------------------------------------------------------

    def argv(self, name: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "p2ptchap", "--home", str(self.people[name].home), *args]

    def cli(self, name: str, *args: str, timeout: float = CLI_TIMEOUT) -> Outcome:
        """Run ``p2ptchap --home HOME args`` in ``name``'s namespace, to completion."""
        try:
            host = self.people[name].host
            done = host.call(self.argv(name, *args), timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired:
            return Outcome(-1, "", f"hung for more than {timeout:.0f} s")
        return Outcome(done.returncode, done.stdout, done.stderr)

    def spawn(self, name: str, *args: str) -> subprocess.Popen[str]:
        """Start a CLI command in ``name``'s namespace without waiting for it."""
        return self.people[name].host.run(
            self.argv(name, *args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def control(self, name: str, command: str, **arguments: Any) -> Any:
        """A control-socket request to ``name``'s node; ``None`` if it does not answer."""
        try:
            return control.call(self.people[name].home, command, timeout=10.0, **arguments)
        except LocalError:
            return None


def _first_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line ``process`` writes on its standard output, or b"" if none in time."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return b""
    return process.stdout.readline()

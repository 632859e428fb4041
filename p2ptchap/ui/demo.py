"""``p2ptchap demo``: a crisis cell on one machine, run for real in a temporary folder.

One command, no root, no configuration.  An authority is created offline;
three agents and one external enrol, each in their own ``--home``; their
identities are put through their paces (safety number, a lost device
revoked, a certificate expired, a departure revoked).  Then four nodes run as
separate ``p2ptchap up`` processes on loopback and find each other; they
share a private room and a public forum (invitations by name and by e-mail,
the external let in where externals are allowed and refused where they are
not), exchange end-to-end encrypted messages both ways and a file
(downloaded on another node and compared byte for byte), show how many
devices received what, and one node is killed and restarted to show that it
catches up.  The account ends with what happened, step by step, with
timings.

Each step runs the real ``p2ptchap`` command in a child process, exactly as
an administrator and agents would type it (``--home`` names each person's
folder), prints the command and what it answered, and checks the outcome.
The demo stops at the first check that does not hold, says in one sentence
which step failed and why, and returns non-zero.  Every wait has a time
limit.  Every child process is stopped on the way out, whatever happens
(failure, Ctrl-C, SIGTERM); on Linux the kernel also stops them if the demo
itself is killed.

The nodes run with ``--no-mdns`` and are given Alice's address with
``--peer``: multicast on the loopback interface is unreliable and often off
in containers, whereas on a real network nodes find each other by mDNS.
They meet the other nodes through Alice's (gossip).

Delivery counts are those ``p2ptchap room read --json`` gives for each
message (``delivery``: expected, received, read, waiting_for).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

from p2ptchap.core.errors import N_
from p2ptchap.i18n import choose_language

#: As the CLI: 128 + SIGINT.
EXIT_INTERRUPTED: Final = 130

DEMO_PASSPHRASE: Final = "démonstration de cellule de crise"  # noqa: S105 - printed to the user

#: Seconds one command may take before the demo gives up on it.
COMMAND_TIMEOUT: Final = 60.0
#: Seconds a node may take to say which port it listens on.
START_TIMEOUT: Final = 30.0
#: Seconds a replication wait (peers found, invitation arrived, ...) may take.
WAIT_TIMEOUT: Final = 40.0
#: Seconds between two looks while waiting.
POLL: Final = 0.2

_FINGERPRINT: Final = re.compile(r"\b(?:[A-Z2-7]{4} ){7}[A-Z2-7]{4}\b")
_DEVICE_ID: Final = re.compile(r"\b[a-z2-7]{16}\b")
_ROOM_ID: Final = re.compile(r"\b[0-9a-f]{64}\b")


@dataclasses.dataclass(frozen=True, slots=True)
class Person:
    home: str
    email: str
    name: str
    external: bool = False


ALICE: Final = Person("alice", "alice.martin@interieur.gouv.fr", "Alice Martin")
# Typed as people do: the address is compared once normalised.
BRUNO: Final = Person("bruno", "Bruno.Lefevre@Somme.Gouv.fr", "Bruno Lefèvre")
CLAIRE: Final = Person("claire", "claire.durand@developpement-durable.gouv.fr", "Claire Durand")
ERIC: Final = Person("eric", "eric.roux@croix-rouge.fr", "Éric Roux", external=True)
CELL: Final = (ALICE, BRUNO, CLAIRE, ERIC)

ROOM: Final = "Cellule de crise"
FORUM: Final = "Points de situation"
FILE_NAME: Final = "rapport-digue-corbie.pdf"


class DemoFailed(Exception):
    """A check did not hold; the message is one translated sentence."""


class _Terminated(Exception):
    """SIGTERM reached the demo: stop like for Ctrl-C."""


def run(tr: Callable[[str], str], out: TextIO, *, keep: bool = False) -> int:
    """Run the demo; return 0 if every check held."""
    language = getattr(tr, "language", None) or choose_language()
    root = Path(tempfile.mkdtemp(prefix="p2ptchap-demo-"))
    demo = _Demo(root, tr, out, language)
    with _sigterm_raises():
        try:
            return demo.play()
        finally:
            demo.stop_everything()
            if keep:
                print(tr("Folder kept: {folder}").format(folder=root), file=out)
            else:
                shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception, so that the children are stopped too."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_the_demo() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Have the kernel send SIGTERM to this child if the demo dies (Linux only)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Demo:
    def __init__(self, root: Path, tr: Callable[[str], str], out: TextIO, language: str) -> None:
        self.root = root
        self.tr = tr
        self.out = out
        self.env = {
            **os.environ,
            "P2PTCHAP_PASSPHRASE": DEMO_PASSPHRASE,
            "P2PTCHAP_LANG": language,
        }
        self.started = time.monotonic()
        #: Short commands under way (killed on the way out).
        self.running: set[subprocess.Popen[str]] = set()
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.rooms: dict[str, str] = {}
        self.step = 0
        self.title_text = ""
        self.timings: list[tuple[int, str, float]] = []
        self.facts: list[str] = []
        self.first_message = ""
        self.file_event = ""
        #: Every text sent, to look for on the disks at the end.
        self.sent: list[str] = []
        #: Per person, the ids of the messages seen in the latest look, by text.
        self.ids: dict[str, dict[str, str]] = {}

    # --- the account -------------------------------------------------------------

    def say(self, template: str, **values: object) -> None:
        print(self.tr(template).format(**values), file=self.out)

    def title(self, text: str) -> None:
        self.step += 1
        self.title_text = self.tr(text)
        print(f"\n== {self.step}. {self.title_text}", file=self.out)

    def fact(self, template: str, **values: object) -> None:
        """A check that held, worth telling: shown now and in the summary."""
        sentence = self.tr(template).format(**values)
        self.facts.append(sentence)
        print(f"  ✓ {sentence}", file=self.out)

    def fail(self, template: str, **values: object) -> DemoFailed:
        return DemoFailed(self.tr(template).format(**values))

    def play(self) -> int:
        self.say("Crisis-cell demo in {folder}", folder=self.root)
        self.say("(passphrase of every key: '{passphrase}')", passphrase=DEMO_PASSPHRASE)
        steps: Sequence[tuple[str, Callable[[], None]]] = (
            (N_("The prefecture's administrator creates the authority, offline"), self.authority),
            (N_("Three agents and one external enrol"), self.enrol),
            (N_("Alice and Bruno compare their safety number"), self.safety_number),
            (N_("Alice adds a tablet, loses it, and revokes it"), self.lost_tablet),
            (N_("Dora, reinforcement for a day: her certificate expires"), self.expiry),
            (N_("Dora leaves the cell: the authority revokes her"), self.departure),
            (N_("Four nodes start on this machine and find each other"), self.network),
            (N_("A private crisis room: invitations by name and by e-mail"), self.private_room),
            (N_("The public forum: found in the directory, closed to externals"), self.forum),
            (N_("End-to-end encrypted messages, both ways"), self.messages),
            (N_("A file: sent by Alice, downloaded on Bruno's node"), self.file),
            (N_("Delivery counts, as Alice's node sees them"), self.delivery_counts),
            (N_("Bruno's node is killed, then restarted: it catches up"), self.catch_up),
            (N_("Nothing readable on disk; the nodes stop"), self.at_rest),
        )
        try:
            for text, action in steps:
                self.title(text)
                began = time.monotonic()
                action()
                seconds = time.monotonic() - began
                self.timings.append((self.step, self.title_text, seconds))
                self.say("  ({seconds:.1f} s)", seconds=seconds)
        except DemoFailed as failure:
            self.stop_everything()
            self.summary()
            self.say(
                "\nThe demo FAILED at step {step} ({title}): {reason}",
                step=self.step,
                title=self.title_text,
                reason=failure,
            )
            return 1
        except (KeyboardInterrupt, _Terminated):
            self.stop_everything()
            self.say(
                "\nThe demo was interrupted at step {step} ({title}); every node is stopped.",
                step=self.step,
                title=self.title_text,
            )
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - a bug of the demo: still say where, and clean up
            self.stop_everything()
            self.say(
                "\nThe demo FAILED at step {step} ({title}): {reason}",
                step=self.step,
                title=self.title_text,
                reason=f"{type(exc).__name__}: {exc}",
            )
            return 1
        self.summary()
        self.say(
            "\nDemo complete in {seconds:.1f} s: every check held.",
            seconds=time.monotonic() - self.started,
        )
        return 0

    def summary(self) -> None:
        self.say("\n== What happened")
        for number, text, seconds in self.timings:
            self.say(
                "  {step:2d}. {title} — {seconds:.1f} s", step=number, title=text, seconds=seconds
            )
        if self.facts:
            self.say("Checked along the way:")
        for sentence in self.facts:
            print(f"  ✓ {sentence}", file=self.out)

    # --- commands ----------------------------------------------------------------

    def _argv(self, who: Person | None, args: Sequence[str]) -> list[str]:
        return ["p2ptchap", *(["--home", who.home] if who else []), *args]

    def _spawn(
        self, who: Person | None, args: Sequence[str], *, shown: bool
    ) -> subprocess.Popen[str]:
        """Start a command; what it shows goes with its errors and progress, as on a screen."""
        process = subprocess.Popen(  # noqa: S603 - our own program; no threads here
            [sys.executable, "-m", *self._argv(who, args)],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if shown else subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_the_demo,  # noqa: PLW1509 - the demo starts no thread
        )
        self.running.add(process)
        return process

    def _finish(self, process: subprocess.Popen[str], command: str) -> tuple[int, str]:
        try:
            output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise self.fail(
                N_("'{command}' did not finish within {limit:.0f} s."),
                command=command,
                limit=COMMAND_TIMEOUT,
            ) from None
        finally:
            self.running.discard(process)
        return process.returncode, output.rstrip()

    def run(self, who: Person | None, *args: str, expect: int = 0, contains: str = "") -> str:
        """Run a command, show it and its answer, and check its exit code (and words)."""
        return self.together((who, list(args)), expect=expect, contains=contains)[0]

    def together(
        self, *commands: tuple[Person | None, Sequence[str]], expect: int = 0, contains: str = ""
    ) -> list[str]:
        """Commands of different people at once (each at their own computer), shown in order."""
        outputs = []
        for command, code, output in self._all(commands, shown=True):
            print(f"$ {command}", file=self.out)
            for line in output.splitlines():
                print(f"  {line}", file=self.out)
            if code != expect:
                raise self.fail(
                    N_("'{command}' ended with exit code {code} instead of {expected}."),
                    command=command,
                    code=code,
                    expected=expect,
                )
            if contains not in output:
                raise self.fail(
                    N_("'{command}' did not answer '{text}'."), command=command, text=contains
                )
            outputs.append(output)
        return outputs

    def quiet(self, *commands: tuple[Person, Sequence[str]]) -> list[str]:
        """Commands whose standard output the demo reads without showing them (to wait)."""
        return [output for _, _, output in self._all(commands, shown=False)]

    def _all(
        self, commands: Sequence[tuple[Person | None, Sequence[str]]], *, shown: bool
    ) -> list[tuple[str, int, str]]:
        """Run ``commands`` at once, as many at a time as there are processors.

        A command with no node up derives a key from the passphrase (argon2id,
        256 MiB): more at a time than processors is slower, not faster.
        """
        width = max(1, os.cpu_count() or 1)
        done: list[tuple[str, int, str]] = []
        for start in range(0, len(commands), width):
            started = [
                (self._spawn(who, args, shown=shown), shlex.join(self._argv(who, args)))
                for who, args in commands[start : start + width]
            ]
            for process, command in started:
                done.append((command, *self._finish(process, command)))
        return done

    def quiet_json(self, who: Person, *args: str) -> object:
        return _json(self.quiet((who, [*args, "--json"]))[0])

    def wait(
        self, condition: Callable[[], bool], failure: str, limit: float = WAIT_TIMEOUT
    ) -> float:
        """Poll ``condition`` until it holds; its delay in seconds, or fail with ``failure``."""
        began = time.monotonic()
        while not condition():
            if time.monotonic() - began > limit:
                raise self.fail(failure, limit=limit)
            time.sleep(POLL)
        return time.monotonic() - began

    # --- nodes -------------------------------------------------------------------

    def start(self, *people: Person) -> None:
        """Start the nodes of ``people`` (all but Alice's given Alice's address)."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        for who in people:
            args = ["up", "--port", "0", "--no-mdns"]
            if who is not ALICE:
                args += ["--peer", f"127.0.0.1:{self.ports[ALICE.home]}"]
            print(f"$ {shlex.join(self._argv(who, args))} &", file=self.out)
            with (
                (logs / f"{who.home}.out").open("wb") as stdout,
                (logs / f"{who.home}.log").open("ab") as stderr,
            ):
                self.nodes[who.home] = subprocess.Popen(  # noqa: S603 - as above
                    [sys.executable, "-m", *self._argv(who, args)],
                    cwd=self.root,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    preexec_fn=_die_with_the_demo,  # noqa: PLW1509 - the demo starts no thread
                )
        for who in people:
            self.ports[who.home] = self._port(who)

    def _port(self, who: Person) -> int:
        """Wait for the node's first line ("running on port N") and show it."""
        process = self.nodes[who.home]
        began = time.monotonic()
        while time.monotonic() - began < START_TIMEOUT and process.poll() is None:
            shown = (self.root / "logs" / f"{who.home}.out").read_text("utf-8", "replace")
            if "\n" in shown:
                line = shown.splitlines()[0]
                print(f"  {line}", file=self.out)
                digits = [w for w in line.replace(";", " ").split() if w.isdigit()]
                if digits:
                    return int(digits[0])
                break
            time.sleep(POLL / 2)
        log = (self.root / "logs" / f"{who.home}.log").read_text("utf-8", "replace").strip()
        raise self.fail(
            N_("{name}'s node did not start within {limit:.0f} s: {log}"),
            name=who.name,
            limit=START_TIMEOUT,
            log=log.splitlines()[-1] if log else "—",
        )

    def kill(self, who: Person) -> None:
        process = self.nodes.pop(who.home)
        print(f"$ kill -KILL {process.pid}", file=self.out)
        process.kill()
        process.wait(timeout=10)

    def stop_everything(self) -> None:
        """Stop every node (politely, then not) and every command under way."""
        for process in list(self.running):
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=5)
        self.running.clear()
        self.stop_nodes()

    def stop_nodes(self) -> list[int]:
        """SIGTERM to every node (as Ctrl-C), SIGKILL if one lingers; their exit codes."""
        for process in self.nodes.values():
            if process.poll() is None:
                process.terminate()
        codes = []
        for process in self.nodes.values():
            try:
                codes.append(process.wait(timeout=15))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait(timeout=10))
        self.nodes.clear()
        return codes

    # --- reading the nodes' state -----------------------------------------------

    def read(self, people: Sequence[Person], room: str) -> list[list[str]]:
        """The texts each of ``people`` reads in ``room`` (asked at once).

        The message ids are remembered, by person and text, in ``self.ids``.
        """
        found = self.quiet(*((who, ["room", "read", room, "--json"]) for who in people))
        texts = []
        for who, output in zip(people, found, strict=True):
            messages = _dicts(_json(output))
            self.ids[who.home] = {str(m.get("text")): str(m.get("id")) for m in messages}
            texts.append([str(m.get("text")) for m in messages])
        return texts

    def message_id(self, who: Person, room: str, text: str) -> str:
        """The id of a message ``who`` holds (from the latest look, else a new one)."""
        if text not in self.ids.get(who.home, {}):
            self.read([who], room)
        found = self.ids[who.home].get(text)
        if found is None:
            raise self.fail(
                N_("{name}'s node does not hold the message '{text}'."), name=who.name, text=text
            )
        return found

    def delivery(self, who: Person, room: str, event: str) -> tuple[int, int, list[str]]:
        """(received, expected, names of the members still missing it), as ``who`` sees them.

        Read from ``room read --json``, which gives each message's delivery.
        """
        for message in _dicts(self.quiet_json(who, "room", "read", room)):
            if message.get("id") == event:
                counts = message.get("delivery")
                if not isinstance(counts, dict):
                    break
                missing = counts.get("waiting_for")
                return (
                    int(counts.get("received", 0)),
                    int(counts.get("expected", 0)),
                    [str(n) for n in missing] if isinstance(missing, list) else [],
                )
        return 0, 0, []

    def delivered(self, label: str, event: str, received: int) -> tuple[int, int]:
        """Wait until Alice's node counts ``received`` of the 3 other devices for ``event``.

        Shows the count under ``label`` (a msgid), with who is still missing.
        """
        counts: tuple[int, int, list[str]] = (0, 0, [])

        def reached() -> bool:
            nonlocal counts
            counts = self.delivery(ALICE, self.rooms[ROOM], event)
            return counts[0] == received and counts[1] == 3

        self.wait(
            reached,
            N_("Alice's node did not see the expected delivery receipts within {limit:.0f} s."),
        )
        got, expected, missing = counts
        if missing:
            self.say(
                "  {label}: received by {received}/{expected} devices (not yet: {missing})",
                label=self.tr(label),
                received=got,
                expected=expected,
                missing=", ".join(missing),
            )
        else:
            self.say(
                "  {label}: received by {received}/{expected} devices",
                label=self.tr(label),
                received=got,
                expected=expected,
            )
        return got, expected

    # --- the steps ---------------------------------------------------------------

    def authority(self) -> None:
        self.run(
            None,
            "--home",
            "autorite",
            "authority",
            "init",
            "--name",
            "Préfecture de la Somme",
            "--domain",
            "interieur.gouv.fr",
            "--domain",
            "*.gouv.fr",
        )
        self.run(None, "--home", "autorite", "authority", "export", "--out", "prefecture.trust")

    def _issue(self, who: Person, fingerprint: str, *flags: str, expect: int = 0) -> None:
        self.run(
            None,
            "--home",
            "autorite",
            "authority",
            "issue",
            f"{who.home}.request",
            "--out",
            f"{who.home}.cert",
            "--fingerprint",
            fingerprint,
            *flags,
            expect=expect,
            contains="--external" if expect else "",
        )

    def _init(self, who: Person) -> list[str]:
        return [
            "init",
            "--email",
            who.email,
            "--name",
            who.name,
            "--trust",
            "prefecture.trust",
            "--request-out",
            f"{who.home}.request",
            "--device-name",
            "portable",
        ]

    def enrol(self) -> None:
        fingerprints = [
            _fingerprint(shown)
            for shown in self.together(*((who, self._init(who)) for who in CELL))
        ]
        self.say("  (the administrator checks each account fingerprint with its owner)")
        for who, fingerprint in zip(CELL, fingerprints, strict=True):
            if who.external:
                self._issue(who, fingerprint, expect=2)
                self._issue(who, fingerprint, "--external")
            else:
                self._issue(who, fingerprint)
        self.together(*((who, ["enroll", f"{who.home}.cert"]) for who in CELL))
        self.fact(
            N_(
                "{name} could only be certified with --external, "
                "and is marked external from then on."
            ),
            name=ERIC.name,
        )

    def safety_number(self) -> None:
        numbers = self.together(
            (ALICE, ["safety-number", "bruno.cert"]), (BRUNO, ["safety-number", "alice.cert"])
        )
        mine, theirs = (re.findall(r"\b\d{5}\b", text) for text in numbers)
        if len(mine) != 12 or mine != theirs:
            raise self.fail(N_("Alice and Bruno do not see the same safety number."))
        self.fact(N_("Alice and Bruno see the same safety number."))

    def lost_tablet(self) -> None:
        added = self.run(ALICE, "device", "add", "--name", "tablette", "--out", "tablette.device")
        found = _DEVICE_ID.search(added)
        device = found.group(0) if found else "?"
        tablet = Person("alice-tablette", ALICE.email, ALICE.name)
        self.run(tablet, "device", "import", "tablette.device")
        self.run(ALICE, "device", "revoke", device, "--reason", "perdue")
        self.run(ALICE, "revocations", "export", "--out", "alice.revocations")
        self.run(BRUNO, "revocations", "import", "alice.revocations")
        self.run(
            BRUNO,
            "verify",
            "alice.cert",
            "--device",
            f"alice/devices/{device}.cose",
            expect=1,
            contains="revoked",
        )
        self.fact(N_("The lost tablet is refused once its revocation is imported."))

    def expiry(self) -> None:
        dora = Person("dora", "dora.petit@interieur.gouv.fr", "Dora Petit")
        fingerprint = _fingerprint(self.run(dora, *self._init(dora)))
        self._issue(dora, fingerprint, "--days", "1")
        in_two_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2 * 86400))
        self.run(ALICE, "verify", "dora.cert", "--at", in_two_days, expect=1, contains="expired")
        self.fact(N_("A one-day certificate is refused two days later."))

    def departure(self) -> None:
        self.run(
            None,
            "--home",
            "autorite",
            "authority",
            "revoke",
            "dora.petit@interieur.gouv.fr",
            "--out",
            "dora.revocation",
            "--reason",
            "fin de mission",
        )
        self.run(ALICE, "revocations", "import", "dora.revocation")
        self.run(ALICE, "verify", "dora.cert", expect=1, contains="revoked")
        self.fact(N_("Dora's certificate is refused once her revocation is imported."))

    def network(self) -> None:
        # Created before the nodes start, to show that commands work offline:
        # the forum's summary goes out with the first exchange of trust data.
        self.say(
            "  (first, Bruno opens a public forum while his node is still off: commands "
            "work without it, and what they write goes out as soon as it starts)"
        )
        self.create(BRUNO, FORUM, "--public", "--topic", "Ouvert à tous les agents")
        self.say(
            "  (no mDNS here: multicast on loopback is unreliable, so each node is given "
            "Alice's address with --peer and meets the others through hers; on a real "
            "network, 'p2ptchap up' alone finds them)"
        )
        self.start(ALICE)
        self.start(BRUNO, CLAIRE, ERIC)
        seconds = self.wait(
            lambda: all(
                len(_list(_json(p))) == 3
                for p in self.quiet(*((who, ["peers", "--json"]) for who in CELL))
            ),
            N_("The four nodes did not all connect to each other within {limit:.0f} s."),
        )
        self.run(CLAIRE, "peers")
        self.fact(
            N_(
                "Four nodes, four processes: each connected to the three others "
                "after {seconds:.1f} s."
            ),
            seconds=seconds,
        )

    def create(self, who: Person, name: str, *options: str) -> None:
        """``room create``, remembering the room's id (printed in full by the command)."""
        created = _ROOM_ID.search(self.run(who, "room", "create", name, *options))
        self.rooms[name] = created.group(0) if created else "?"

    def private_room(self) -> None:
        self.create(ALICE, ROOM, "--topic", "Crue de la Somme", "--externals")
        self.run(ALICE, "directory", "search", "lefevre")
        self.run(ALICE, "room", "invite", ROOM, "bruno lefevre")
        self.run(ALICE, "room", "invite", ROOM, CLAIRE.email)
        self.run(ALICE, "room", "invite", ROOM, ERIC.email)
        invited = (BRUNO, CLAIRE, ERIC)
        arrived = self.wait(
            lambda: self.memberships(invited, ROOM) == ["invite"] * 3,
            N_("The invitations did not reach the three invited nodes within {limit:.0f} s."),
        )
        self.run(ERIC, "room", "list")
        self.together(*((who, ["room", "join", ROOM]) for who in invited))
        members: list[dict[str, object]] = []

        def all_joined() -> bool:
            nonlocal members
            shown = _json(self.quiet((ALICE, ["room", "show", ROOM, "--json"]))[0])
            members = _dicts(shown.get("members") if isinstance(shown, dict) else None)
            return [m.get("membership") for m in members] == ["join"] * 4

        joined = self.wait(
            all_joined, N_("Alice's node did not see the four members joined within {limit:.0f} s.")
        )
        self.run(ALICE, "room", "show", ROOM)
        self.fact(
            N_(
                "Bruno invited by name, Claire and Éric by e-mail: the invitations arrived "
                "in {invited:.1f} s, and Alice's node saw everyone joined {joined:.1f} s later."
            ),
            invited=arrived,
            joined=joined,
        )
        externals = [m.get("email") for m in members if m.get("external")]
        if externals != [ERIC.email]:
            raise self.fail(N_("The member list does not mark {name} as external."), name=ERIC.name)
        self.fact(
            N_("{name} is in a private room that admits externals, marked external."),
            name=ERIC.name,
        )

    def memberships(self, people: Sequence[Person], name: str) -> list[str | None]:
        found = self.quiet(*((who, ["room", "list", "--json"]) for who in people))
        return [
            next(
                (str(r.get("membership")) for r in _dicts(_json(f)) if r.get("name") == name), None
            )
            for f in found
        ]

    def forum(self) -> None:
        def listed() -> bool:
            found = _dicts(self.quiet_json(CLAIRE, "directory", "rooms"))
            return any(r.get("name") == FORUM for r in found)

        self.wait(
            listed, N_("The forum did not appear in Claire's room directory within {limit:.0f} s.")
        )
        self.run(CLAIRE, "directory", "rooms", "situation")
        self.run(CLAIRE, "room", "join", FORUM)
        asked = time.monotonic()
        self.say("  (the forum does not admit externals: Éric can neither be invited nor see it)")
        self.run(BRUNO, "room", "invite", FORUM, ERIC.email, expect=1)
        self.run(ERIC, "directory", "rooms", expect=1)
        self.fact(
            N_("{name} cannot be invited into the public forum, nor browse the public rooms."),
            name=ERIC.name,
        )
        self.wait(
            lambda: self.memberships([CLAIRE], FORUM) == ["join"],
            N_("Claire's node did not bring the forum and join it within {limit:.0f} s."),
        )
        joined = time.monotonic() - asked
        self.run(CLAIRE, "room", "list")
        self.fact(
            N_(
                "Claire found the forum in the room directory and joined it without an "
                "invitation: her node fetched it from Bruno's within {joined:.1f} s."
            ),
            joined=joined,
        )

    def messages(self) -> None:
        first = "Digue de Corbie : brèche de 3 m, évacuation de la rue Gambetta à 4 h"
        self.run(ALICE, "room", "send", ROOM, first)
        others = (BRUNO, CLAIRE, ERIC)
        reached = self.wait(
            lambda: all(first in texts for texts in self.read(others, ROOM)),
            N_("Alice's message did not reach the three other nodes within {limit:.0f} s."),
        )
        replies = (
            (BRUNO, "Reçu. Deux équipes de la DDT partent vers la digue."),
            (ERIC, "La Croix-Rouge ouvre le gymnase Jean-Moulin à 5 h."),
        )
        self.together(*((who, ["room", "send", ROOM, text]) for who, text in replies))
        answered = self.wait(
            lambda: all(
                text in texts for texts in self.read((ALICE, CLAIRE), ROOM) for _, text in replies
            ),
            N_("The replies did not reach Alice's and Claire's nodes within {limit:.0f} s."),
        )
        self.run(CLAIRE, "room", "read", ROOM)
        self.sent += [first, *(text for _, text in replies)]
        self.first_message = self.message_id(ALICE, ROOM, first)
        self.fact(
            N_(
                "Alice's message reached the three other nodes in {reached:.1f} s; "
                "Bruno's and Éric's replies reached Alice and Claire in {answered:.1f} s."
            ),
            reached=reached,
            answered=answered,
        )

    def file(self) -> None:
        data = _report_pdf()
        (self.root / FILE_NAME).write_bytes(data)
        self.say(
            "  (a {size} KiB PDF report written for the demo: {name})",
            size=len(data) // 1024,
            name=FILE_NAME,
        )
        self.run(ALICE, "send-file", ROOM, FILE_NAME, "--caption", "Rapport de la DDT sur la digue")
        entry: dict[str, object] = {}

        def announced() -> bool:
            nonlocal entry
            for found in _dicts(self.quiet_json(BRUNO, "files", ROOM)):
                if found.get("name") == FILE_NAME:
                    entry = found
                    return True
            return False

        self.wait(
            announced, N_("The file's message did not reach Bruno's node within {limit:.0f} s.")
        )
        self.run(BRUNO, "files", ROOM)
        (self.root / "recu").mkdir()
        self.file_event = str(entry.get("id"))
        began = time.monotonic()
        self.run(BRUNO, "download", ROOM, self.file_event[:12], "--out", "recu")
        seconds = time.monotonic() - began
        received = self.root / "recu" / FILE_NAME
        if not received.is_file() or received.read_bytes() != data:
            raise self.fail(N_("The file saved on Bruno's side differs from the one Alice sent."))
        self.fact(
            N_(
                "Bruno's node fetched the file from its peers and saved it in {seconds:.1f} s: "
                "byte-for-byte identical to Alice's ({size} bytes, SHA-256 {digest}…)."
            ),
            seconds=seconds,
            size=len(data),
            digest=hashlib.sha256(data).hexdigest()[:16],
        )

    def delivery_counts(self) -> None:
        self.say(
            "  (the counts come from 'room read --json', through Alice's running node: "
            "each member device's signed receipt)"
        )
        received, expected = self.delivered(N_("Alice's first message"), self.first_message, 3)
        self.delivered(N_("Alice's file"), self.file_event, 3)
        self.fact(
            N_(
                "Alice's message and her file were each received by {received}/{expected} "
                "member devices (signed receipts, counted by Alice's node)."
            ),
            received=received,
            expected=expected,
        )

    def catch_up(self) -> None:
        self.kill(BRUNO)
        self.say("  (Bruno's node stopped without warning, as in a power cut)")
        first = "Point de 6 h : la Somme à 2,10 m à Abbeville, en baisse"
        news = [
            first,
            "Route D1001 fermée entre Corbie et Daours",
            "Rue Gambetta évacuée : 85 personnes au gymnase",
        ]
        self.together(
            (ALICE, ["room", "send", ROOM, news[0]]), (CLAIRE, ["room", "send", ROOM, news[1]])
        )
        self.run(ALICE, "room", "send", ROOM, news[2])
        event = self.message_id(ALICE, ROOM, first)
        before, _ = self.delivered(N_("Alice's message of 6 h"), event, 2)
        restarted = time.monotonic()
        self.start(BRUNO)
        self.wait(
            lambda: all(text in self.read([BRUNO], ROOM)[0] for text in news),
            N_("Bruno's restarted node did not catch up within {limit:.0f} s."),
        )
        seconds = time.monotonic() - restarted
        self.run(BRUNO, "room", "read", ROOM, "--limit", "3")
        after, expected = self.delivered(N_("Alice's message of 6 h"), event, 3)
        self.fact(
            N_(
                "Bruno's node, killed while {count} messages were sent, caught up "
                "{seconds:.1f} s after its restart; Alice's message went from "
                "{before}/{expected} to {after}/{expected} devices."
            ),
            count=len(news),
            seconds=seconds,
            before=before,
            after=after,
            expected=expected,
        )
        self.sent += news

    def at_rest(self) -> None:
        pids = " ".join(str(p.pid) for p in self.nodes.values())
        print(f"$ kill -TERM {pids}", file=self.out)
        codes = self.stop_nodes()
        if any(code != 0 for code in codes):
            raise self.fail(N_("A node did not stop cleanly (exit codes {codes})."), codes=codes)
        self.fact(N_("The four nodes stopped cleanly on SIGTERM, as with Ctrl-C."))
        secrets = [text.encode() for text in self.sent] + [_REPORT_TITLE.encode("cp1252")]
        for who in CELL:
            stored = b"".join(
                p.read_bytes() for p in (self.root / who.home).rglob("*") if p.is_file()
            )
            if any(secret in stored for secret in secrets):
                raise self.fail(
                    N_("{name}'s disk holds a message or the file in clear."), name=who.name
                )
        self.fact(
            N_(
                "No node's disk (database, journal, file store) holds the messages "
                "or the report in clear."
            )
        )


_REPORT_TITLE: Final = "Rapport de situation - digue de Corbie"


def _report_pdf() -> bytes:
    """A one-page PDF report of about 48 KiB (text, then a photo-like annex), always the same."""
    lines = [
        _REPORT_TITLE,
        "Direction départementale des territoires de la Somme",
        "Brèche de 3 m constatée à 3 h 40 ; renforcement en cours.",
        "Evacuation de la rue Gambetta : 85 personnes.",
    ]

    def text(line: str) -> bytes:
        raw = line.encode("cp1252")
        return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"

    content = b"BT /F1 12 Tf 72 770 Td 18 TL " + b" ".join(text(t) + b" '" for t in lines) + b" ET"
    annex = hashlib.shake_256(b"p2ptchap demo annex").digest(45 * 1024)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(annex), annex),
    ]
    pdf = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(pdf)


def _fingerprint(shown: str) -> str:
    """The account fingerprint ``init`` shows (the first one it prints)."""
    found = _FINGERPRINT.search(shown)
    return found.group(0) if found else "?"


def _json(text: str) -> object:
    try:
        value: object = json.loads(text)
    except ValueError:
        return None
    return value


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> list[dict[str, object]]:
    return [item for item in _list(value) if isinstance(item, dict)]

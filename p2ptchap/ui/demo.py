"""``p2ptchap demo``: the identity walk-through, run for real in a temporary folder.

Each step runs the real ``p2ptchap`` command in a child process, with its own
``--home`` per person, exactly as an administrator and agents would type it,
and prints the command and what it answered.  The walk-through checks its own
outcome (a refused request must be refused, a revoked device must fail
verification, ...) and returns non-zero if anything behaved otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from p2ptchap.core.errors import N_

DEMO_PASSPHRASE = "démonstration de cellule de crise"  # noqa: S105 - printed to the user


class _Walk:
    def __init__(self, root: Path, tr: Callable[[str], str], out: TextIO) -> None:
        self.root = root
        self.tr = tr
        self.out = out
        self.failures: list[str] = []
        self.nodes: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "P2PTCHAP_PASSPHRASE": DEMO_PASSPHRASE}

    def title(self, text: str) -> None:
        print(f"\n== {self.tr(text)}", file=self.out)

    def start(self, who: str, *args: str) -> int:
        """Start ``who``'s node on loopback (no mDNS: the demo stays on this machine)."""
        command = ["p2ptchap", "--home", str(self.root / who), "up", "--port", "0", "--no-mdns"]
        command += list(args)
        print("$ " + shlex.join(command).replace(str(self.root) + "/", "") + " &", file=self.out)
        process = subprocess.Popen(  # noqa: S603 - our own program, fixed arguments
            [sys.executable, "-m", "p2ptchap", *command[1:]],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.nodes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        print("  " + line.strip(), file=self.out)
        digits = [word for word in line.replace(";", " ").split() if word.isdigit()]
        return int(digits[0]) if digits else 0

    def stop_nodes(self) -> None:
        for process in self.nodes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.nodes.clear()

    def quiet(self, who: str, *args: str) -> str:
        """A command whose output the demo reads but does not show."""
        done = subprocess.run(  # noqa: S603 - our own program, fixed arguments
            [sys.executable, "-m", "p2ptchap", "--home", str(self.root / who), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout

    def wait_for(self, condition: Callable[[], bool], seconds: float = 30) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.3)
        return False

    def run(self, who: str, *args: str, expect: int = 0, contains: str = "") -> str:
        command = ["p2ptchap", "--home", str(self.root / who), *args]
        print("$ " + shlex.join(command).replace(str(self.root) + "/", ""), file=self.out)
        done = subprocess.run(  # noqa: S603 - our own program, fixed arguments
            [sys.executable, "-m", "p2ptchap", *command[1:]],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        output = (done.stdout + done.stderr).rstrip()
        for line in output.splitlines():
            print(f"  {line}", file=self.out)
        if done.returncode != expect or contains not in output:
            self.failures.append(shlex.join(args))
            print(
                self.tr("  !! unexpected result (exit {code})").format(code=done.returncode),
                file=self.out,
            )
        return output


def run(tr: Callable[[str], str], out: TextIO, *, keep: bool = False) -> int:
    """Run the walk-through; return 0 if every step behaved as expected."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="p2ptchap-demo-"))
    try:
        return _walk_through(root, tr, out, started)
    finally:
        if keep:
            print(tr("Folder kept: {folder}").format(folder=root), file=out)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _walk_through(root: Path, tr: Callable[[str], str], out: TextIO, started: float) -> int:
    walk = _Walk(root, tr, out)
    print(tr("Identity walk-through in {folder}").format(folder=root), file=out)
    print(
        tr("(passphrase of every key: '{passphrase}')").format(passphrase=DEMO_PASSPHRASE), file=out
    )

    walk.title("1. The prefecture's administrator creates the authority, offline")
    walk.run(
        "authority",
        "authority",
        "init",
        "--name",
        "Préfecture de la Somme",
        "--domain",
        "interieur.gouv.fr",
        "--domain",
        "*.gouv.fr",
    )
    walk.run("authority", "authority", "export", "--out", "trust.cose")

    walk.title("2. Two agents and one external enrol")
    people = [
        ("alice", "alice.martin@interieur.gouv.fr", "Alice Martin", []),
        ("bruno", "Bruno.Lefevre@Somme.Gouv.fr", "Bruno Lefèvre", []),
        ("claire", "claire.durand@croix-rouge.fr", "Claire Durand", ["--external"]),
    ]
    for who, email, name, flags in people:
        walk.run(
            who,
            "init",
            "--email",
            email,
            "--name",
            name,
            "--trust",
            "trust.cose",
            "--request-out",
            f"{who}.request",
            "--device-name",
            "portable",
        )
        # The administrator types the fingerprint read on the agent's screen.
        pending = walk.run(who, "whoami", "--json")
        checked = ["--fingerprint", _json_field(pending, "account_fingerprint")]
        if flags:
            walk.run(
                "authority",
                "authority",
                "issue",
                f"{who}.request",
                "--out",
                f"{who}.cert",
                *checked,
                expect=2,
                contains="--external",
            )
        walk.run(
            "authority",
            "authority",
            "issue",
            f"{who}.request",
            "--out",
            f"{who}.cert",
            *checked,
            *flags,
        )
        walk.run(who, "enroll", f"{who}.cert")
        walk.run(who, "whoami")

    walk.title("3. Alice and Bruno compare their safety number")
    walk.run("alice", "safety-number", "bruno.cert")
    walk.run("bruno", "safety-number", "alice.cert")

    walk.title("4. Alice adds a tablet, loses it, and revokes it")
    walk.run("alice", "device", "add", "--name", "tablette", "--out", "tablette.device")
    walk.run("alice-tablet", "device", "import", "tablette.device")
    tablet = walk.run("alice-tablet", "whoami", "--json")
    walk.run("alice", "device", "list")
    device_id = _json_field(tablet, "this_device")
    walk.run("alice", "device", "revoke", device_id, "--reason", "perdue")
    walk.run("alice", "revocations", "export", "--out", "alice.revocations")
    walk.run("bruno", "revocations", "import", "alice.revocations")
    walk.run(
        "bruno",
        "verify",
        "alice.cert",
        "--device",
        f"alice/devices/{device_id}.cose",
        expect=1,
        contains="revoked",
    )

    walk.title("5. A certificate expires")
    walk.run(
        "dora",
        "init",
        "--email",
        "dora.petit@interieur.gouv.fr",
        "--name",
        "Dora Petit",
        "--trust",
        "trust.cose",
        "--request-out",
        "dora.request",
    )
    walk.run("authority", "authority", "issue", "dora.request", "--out", "dora.cert", "--days", "1")
    in_two_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2 * 86400))
    walk.run("alice", "verify", "dora.cert", "--at", in_two_days, expect=1, contains="expired")

    walk.title("6. Bruno leaves the service: the authority revokes him")
    walk.run(
        "authority",
        "authority",
        "revoke",
        "bruno.lefevre@somme.gouv.fr",
        "--out",
        "bruno.revocation",
        "--reason",
        "départ",
    )
    walk.run("alice", "revocations", "import", "bruno.revocation")
    walk.run("alice", "verify", "bruno.cert", expect=1, contains="revoked")

    walk.title("7. No server: Alice's and Claire's nodes share an encrypted room")
    try:
        _share_a_room(walk)
    finally:
        walk.stop_nodes()

    elapsed = time.monotonic() - started
    if walk.failures:
        print(
            tr("\nWalk-through FAILED at: {steps}").format(steps="; ".join(walk.failures)), file=out
        )
        return 1
    print(
        tr("\nWalk-through complete in {seconds:.1f} s: every step behaved as expected.").format(
            seconds=elapsed
        ),
        file=out,
    )
    return 0


def _share_a_room(walk: _Walk) -> None:
    port = walk.start("alice")
    walk.start("claire", "--peer", f"127.0.0.1:{port}")
    created = walk.run("alice", "room", "create", "Crue de la Somme", "--externals", "--json")
    room = _json_field(created, "room")
    walk.run("alice", "room", "invite", room, "claire.durand@croix-rouge.fr")
    if not walk.wait_for(lambda: room in walk.quiet("claire", "room", "list", "--json")):
        walk.failures.append(walk.tr(N_("the invitation did not reach Claire's node")))
        return
    walk.run("claire", "room", "list")
    walk.run("claire", "room", "join", room)
    joined = '"membership": "join"'
    if not walk.wait_for(
        lambda: walk.quiet("alice", "room", "show", room, "--json").count(joined) == 2
    ):
        walk.failures.append(walk.tr(N_("Claire's answer did not reach Alice's node")))
        return
    walk.run("alice", "room", "show", room)
    text = "Digue de Corbie : évacuation rue Gambetta à 4 h"
    walk.run("alice", "room", "send", room, text)
    if not walk.wait_for(
        lambda: text in _texts(walk.quiet("claire", "room", "read", room, "--json"))
    ):
        walk.failures.append(walk.tr(N_("Alice's message did not reach Claire's node")))
        return
    walk.run("claire", "room", "read", room)
    stored = b"".join(p.read_bytes() for p in (walk.root / "claire").glob("node.db*"))
    if text.encode() in stored:
        walk.failures.append(walk.tr(N_("the message was stored in clear")))
        return
    print(
        walk.tr(N_("  (encrypted end to end; Claire's database holds no clear text)")),
        file=walk.out,
    )


def _texts(output: str) -> list[str]:
    try:
        return [str(m.get("text")) for m in json.loads(output)]
    except (ValueError, AttributeError, TypeError):
        return []


def _json_field(text: str, name: str) -> str:
    try:
        value = json.loads(text)[name]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return str(value)

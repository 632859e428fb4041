"""The command line as scripts and people use it: real processes, real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from p2ptchap.i18n import Translator
from p2ptchap.ui.cli import build_parser, main
from tests.ui.process import run_p2ptchap

PASSPHRASE = "correct horse battery staple"


def run(
    tmp: Path,
    *args: str,
    passphrase: str | None = PASSPHRASE,
    lang: str = "en",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return run_p2ptchap(tmp, *args, passphrase=passphrase, lang=lang, env=env)


def assert_one_sentence_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(("p2ptchap: ", "p2ptchap : "))
    return lines[0]


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An authority and one enrolled agent, made with the real command."""
    tmp = tmp_path_factory.mktemp("cell")
    for args in [
        ("--home", "auth", "authority", "init", "--name", "Préfecture", "--domain", "*.gouv.fr"),
        ("--home", "auth", "authority", "export", "--out", "trust.cose"),
        (
            "--home",
            "alice",
            "init",
            "--email",
            "Alice@Interieur.Gouv.fr",
            "--name",
            "Alice Martin",
            "--trust",
            "trust.cose",
            "--request-out",
            "alice.req",
        ),
        ("--home", "auth", "authority", "issue", "alice.req", "--out", "alice.cert"),
        ("--home", "alice", "enroll", "alice.cert"),
    ]:
        done = run(tmp, *args)
        assert done.returncode == 0, (args, done.stderr)
    return tmp


def test_whoami_json_contract(cell: Path) -> None:
    done = run(cell, "--home", "alice", "whoami", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["email"] == "alice@interieur.gouv.fr"
    assert info["name"] == "Alice Martin"
    assert info["kind"] == "agent"
    assert info["status"] == "valid"
    assert info["authority"]["name"] == "Préfecture"
    assert len(info["account_fingerprint"].split()) == 8
    assert len(info["devices"]) == 1 and info["devices"][0]["current"] is True
    assert info["this_device"] == info["devices"][0]["id"]


def test_wrong_passphrase_is_one_sentence(cell: Path) -> None:
    done = run(cell, "--home", "alice", "device", "add", "--name", "x", passphrase="wrong")
    line = assert_one_sentence_error(done, 1)
    assert "Wrong passphrase" in line
    assert not (cell / "alice" / "exports").exists()


def test_wrong_passphrase_in_french_by_default(cell: Path) -> None:
    done = run(cell, "--home", "alice", "device", "add", "--name", "x", passphrase="wrong", lang="")
    line = assert_one_sentence_error(done, 1)
    assert "phrase de passe" in line.lower()


def test_passphrase_from_a_file_for_services(cell: Path, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    env = {"P2PTCHAP_PASSPHRASE_FILE": str(secret)}
    done = run(
        cell,
        "--home",
        "alice",
        "device",
        "add",
        "--name",
        "t",
        "--out",
        "t.dev",
        passphrase=None,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    secret.write_text("wrong\n")
    done = run(cell, "--home", "alice", "device", "add", "--name", "u", passphrase=None, env=env)
    assert "Wrong passphrase" in assert_one_sentence_error(done, 1)
    env = {"P2PTCHAP_PASSPHRASE_FILE": str(tmp_path / "missing")}
    done = run(cell, "--home", "alice", "device", "add", "--name", "u", passphrase=None, env=env)
    line = assert_one_sentence_error(done, 2)
    assert "passphrase file" in line and "missing" in line


def test_no_passphrase_and_no_terminal(cell: Path) -> None:
    done = run(
        cell,
        "--home",
        "auth",
        "authority",
        "issue",
        "alice.req",
        "--out",
        "x.cert",
        passphrase=None,
    )
    line = assert_one_sentence_error(done, 2)
    assert "P2PTCHAP_PASSPHRASE" in line
    assert not (cell / "x.cert").exists()


def test_foreign_domain_agent_refused_with_hint(cell: Path) -> None:
    done = run(
        cell,
        "--home",
        "eve",
        "init",
        "--email",
        "eve@example.com",
        "--name",
        "Eve",
        "--trust",
        "trust.cose",
        "--request-out",
        "eve.req",
    )
    assert done.returncode == 0, done.stderr
    assert "external" in done.stdout
    refused = run(cell, "--home", "auth", "authority", "issue", "eve.req", "--out", "eve.cert")
    line = assert_one_sentence_error(refused, 2)
    assert "--external" in line
    assert not (cell / "eve.cert").exists()
    issued = run(
        cell, "--home", "auth", "authority", "issue", "eve.req", "--out", "eve.cert", "--external"
    )
    assert issued.returncode == 0, issued.stderr
    verified = run(cell, "--home", "alice", "verify", "eve.cert", "--json")
    assert json.loads(verified.stdout)["kind"] == "external"


def test_missing_and_garbage_files(cell: Path) -> None:
    line = assert_one_sentence_error(run(cell, "--home", "alice", "verify", "nope.cert"), 1)
    assert "nope.cert" in line
    line = assert_one_sentence_error(run(cell, "--home", "alice", "enroll", "alice.cert"), 2)
    assert "already enrolled" in line
    (cell / "garbage.cert").write_bytes(b"\x00not a certificate")
    done = run(cell, "--home", "alice", "verify", "garbage.cert", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"valid": False, "reason": "malformed"}


def test_tampered_certificate_reports_bad_signature(cell: Path) -> None:
    data = bytearray((cell / "alice.cert").read_bytes())
    data[-70] ^= 0x01  # in the claims, before the 64-byte signature
    (cell / "tampered.cert").write_bytes(bytes(data))
    done = run(cell, "--home", "alice", "verify", "tampered.cert", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["reason"] == "bad-signature"


def test_commands_without_an_account_say_what_to_do(tmp_path: Path) -> None:
    line = assert_one_sentence_error(run(tmp_path, "--home", "empty", "whoami"), 1)
    assert "p2ptchap init" in line


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(Translator("en"))
    paths = [
        [],
        ["authority"],
        ["authority", "init"],
        ["authority", "export"],
        ["authority", "issue"],
        ["authority", "revoke"],
        ["init"],
        ["enroll"],
        ["whoami"],
        ["device"],
        ["device", "add"],
        ["device", "import"],
        ["device", "list"],
        ["device", "revoke"],
        ["revocations"],
        ["revocations", "import"],
        ["revocations", "export"],
        ["verify"],
        ["safety-number"],
        ["demo"],
    ]
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: p2ptchap" in capsys.readouterr().out


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--lang", "en", "authority", "init", "--name", "x"])
    assert exit_info.value.code == 2
    assert "--domain" in capsys.readouterr().err


def _fingerprint_after(label: str, output: str) -> str:
    for line in output.splitlines():
        if line.startswith(label):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {label!r} in {output!r}")


def test_issue_checks_the_fingerprint_before_signing(cell: Path) -> None:
    init = run(
        cell,
        "--home",
        "fred",
        "init",
        "--email",
        "fred@interieur.gouv.fr",
        "--name",
        "Fred",
        "--trust",
        "trust.cose",
        "--request-out",
        "fred.req",
    )
    assert init.returncode == 0, init.stderr
    fingerprint = _fingerprint_after("Account fingerprint", init.stdout)
    wrong = "AAAA " * 7 + "AAAA"
    refused = run(
        cell,
        "--home",
        "auth",
        "authority",
        "issue",
        "fred.req",
        "--out",
        "fred.cert",
        "--fingerprint",
        wrong,
    )
    assert "swapped" in assert_one_sentence_error(refused, 2)
    assert not (cell / "fred.cert").exists()
    issued = run(
        cell,
        "--home",
        "auth",
        "authority",
        "issue",
        "fred.req",
        "--out",
        "fred.cert",
        "--fingerprint",
        fingerprint.lower().replace(" ", ""),
    )
    assert issued.returncode == 0, issued.stderr


def test_init_with_pinned_trust_fingerprints(cell: Path) -> None:
    exported = run(cell, "--home", "auth", "authority", "export", "--out", "trust2.cose")
    authority = exported.stdout.strip().rsplit(":", 1)[1].strip()

    def init_gil(fingerprint: str) -> subprocess.CompletedProcess[str]:
        return run(
            cell,
            "--home",
            "gil",
            "init",
            "--email",
            "gil@interieur.gouv.fr",
            "--name",
            "Gil",
            "--trust",
            "trust.cose",
            "--request-out",
            "gil.req",
            "--trust-fingerprint",
            fingerprint,
        )

    refused = init_gil("BBBB" * 8)
    assert "expected fingerprints" in assert_one_sentence_error(refused, 2)
    assert not (cell / "gil").exists()
    accepted = init_gil(authority)
    assert accepted.returncode == 0, accepted.stderr
    assert f"Trusted authority 'Préfecture' (*.gouv.fr): {authority}" in accepted.stdout


def test_a_wrong_peer_quota_in_the_config_is_one_sentence(cell: Path) -> None:
    config = cell / "alice" / "config.toml"
    config.write_text('[network]\nmax_peers_per_address = "many"\n')
    try:
        done = run(cell, "--home", "alice", "up", "--port", "0", "--no-mdns")
    finally:
        config.unlink()
    line = assert_one_sentence_error(done, 2)
    assert "max_peers_per_address" in line

"""Our account certificates verify in an independent COSE implementation.

pycose (with the `cryptography` package's Ed25519) is run in its own
virtual environment, created once under the user's cache folder, because it
requires cbor2 < 6 while p2ptchap requires cbor2 >= 6 (see the design brief).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import venv
from pathlib import Path

import pytest

from p2ptchap.core import identity
from p2ptchap.core.authority import create_trust_file
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountSecret, AuthoritySecret

ORACLE_SCRIPT = Path(__file__).parent.parent / "oracles" / "cose_verify.py"
ORACLE_REQUIREMENTS = ["pycose==1.1.0", "cbor2<6"]
NOW = 1_790_000_000


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p2ptchap-tests"


@pytest.fixture(scope="session")
def oracle_python() -> Path:
    """The interpreter of the oracle's virtual environment, created if needed."""
    folder = _cache_dir() / "cose-oracle-venv"
    python = folder / "bin" / "python"
    marker = folder / ".requirements"
    wanted = " ".join(ORACLE_REQUIREMENTS)
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *ORACLE_REQUIREMENTS,
            ],
            check=True,
            timeout=600,
        )
        marker.write_text(wanted)
    return python


def _ask_oracle(python: Path, items: list[tuple[bytes, bytes]]) -> list[dict[str, object]]:
    lines = "".join(
        json.dumps({"message": message.hex(), "key": key.hex()}) + "\n" for message, key in items
    )
    done = subprocess.run(
        [str(python), str(ORACLE_SCRIPT)],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def _certificate(kind: Kind) -> tuple[bytes, bytes, identity.EnrollmentRequest]:
    rng = random.Random(kind.value).randbytes
    secret = AuthoritySecret.generate(rng)
    authority, _ = create_trust_file(secret, "Préfecture", ["interieur.gouv.fr"], NOW)
    account = AccountSecret.generate(rng)
    request = identity.parse_request(
        identity.make_request(account, "Elise.Dupont@interieur.gouv.fr", "Élise Dupont", NOW)
    )
    data = identity.issue_account_certificate(
        secret, authority, request, kind=kind, now=NOW, days=30, rng=rng
    )
    return data, bytes(authority.key), request


def test_pycose_verifies_our_account_certificates_and_reads_the_claims(
    oracle_python: Path,
) -> None:
    agent, agent_issuer, request = _certificate(Kind.AGENT)
    external, external_issuer, _ = _certificate(Kind.EXTERNAL)
    answers = _ask_oracle(oracle_python, [(agent, agent_issuer), (external, external_issuer)])
    assert [a["verified"] for a in answers] == [True, True], answers
    assert answers[0]["type"] == "Sign1Message"
    claims = answers[0]["claims"]
    assert isinstance(claims, dict)
    assert claims["2"] == request.email == "elise.dupont@interieur.gouv.fr"
    assert claims["name"] == "Élise Dupont"
    assert claims["kind"] == "agent"
    assert claims["4"] - claims["5"] == 30 * 86400
    # RFC 8747 confirmation key: COSE_Key {kty: OKP, crv: Ed25519, x: key}.
    assert claims["8"] == {"1": {"1": 1, "-1": 6, "-2": {"hex": bytes(request.account_key).hex()}}}
    assert answers[1]["claims"]["kind"] == "external"  # type: ignore[index]


def test_pycose_rejects_a_tampered_certificate_and_the_wrong_key(oracle_python: Path) -> None:
    data, issuer, _ = _certificate(Kind.AGENT)
    tampered = bytearray(data)
    tampered[-70] ^= 0x01  # inside the payload, before the signature
    other_issuer = bytes(AuthoritySecret.generate(random.Random(1).randbytes).public_key())
    answers = _ask_oracle(oracle_python, [(bytes(tampered), issuer), (data, other_issuer)])
    assert [a["verified"] for a in answers] == [False, False], answers

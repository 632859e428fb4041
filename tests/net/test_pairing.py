"""LAN enrolment and device linking over real loopback TCP, and through the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from p2ptchap import accounts
from p2ptchap.core import vault
from p2ptchap.core.errors import VerificationError, VerificationFailure
from p2ptchap.net import pairing as pairing_net
from p2ptchap.store.home import Home
from tests.net.cell import PASSPHRASE, cli_env, make_cell


def now() -> int:
    return int(time.time())


def pending_home(root: Path, name: str, trust: str = "auth.trust") -> Home:
    home = Home(root / name, kdf=vault.MINIMUM)
    accounts.init_account(
        home,
        f"{name}@x.gouv.fr",
        name.title(),
        [root / trust],
        root / f"{name}.req",
        device_name="pc",
        passphrase=PASSPHRASE,
        now=now(),
        rng=os.urandom,
    )
    return home


async def run_pairing(server: object, client: object) -> object:
    """Start ``server(task_status=...)``, then run ``client(port)``; return its result."""
    failure: BaseException | None = None
    result: object = None
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server)  # type: ignore[arg-type]
        try:
            result = await client(port)  # type: ignore[operator]
        except Exception as exc:  # re-raised bare, outside the nursery's group
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def enrol_over_lan(
    authority: Home, client: Home, approve: pairing_net.Approve, show: pairing_net.ShowCode
) -> object:
    """Serve enrolment from ``authority`` on loopback and enrol ``client`` from it."""
    return await run_pairing(
        lambda task_status: pairing_net.serve_authority(
            authority,
            PASSPHRASE,
            "127.0.0.1",
            0,
            approve,
            days=30,
            now=now,
            rng=os.urandom,
            task_status=task_status,
        ),
        lambda port: pairing_net.enrol_from(
            client, ("127.0.0.1", port), show, now=now, rng=os.urandom
        ),
    )


async def test_enrolment_over_the_lan_when_approved(tmp_path: Path) -> None:
    root = make_cell(tmp_path, [])
    authority = Home(root / "auth", kdf=vault.MINIMUM)
    eva = pending_home(root, "eva")
    codes: list[str] = []

    async def approve(request: pairing_net.Request) -> bool:
        await trio.lowlevel.checkpoint()
        codes.append(request.code)
        assert (request.email, request.kind) == ("eva@x.gouv.fr", "agent")
        return True

    async def show(code: str, other: str) -> None:
        await trio.lowlevel.checkpoint()
        codes.append(code)
        assert other == "Autorité auth"

    certificate = await enrol_over_lan(authority, eva, approve, show)
    assert certificate.email == "eva@x.gouv.fr"  # type: ignore[attr-defined]
    assert len(codes) == 2 and codes[0] == codes[1]
    assert accounts.whoami(eva, now())["status"] == "valid"


async def test_a_refusal_reaches_the_client_and_nothing_is_written(tmp_path: Path) -> None:
    root = make_cell(tmp_path, [])
    authority = Home(root / "auth", kdf=vault.MINIMUM)
    eva = pending_home(root, "eva")

    async def refuse(request: pairing_net.Request) -> bool:
        await trio.lowlevel.checkpoint()
        return False

    async def show(code: str, other: str) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(pairing_net.PairingRefused):
        await enrol_over_lan(authority, eva, refuse, show)
    assert not eva.account_certificate.exists()
    assert not authority.issued_dir.exists() or not list(authority.issued_dir.glob("*.cose"))


async def test_an_authority_the_client_does_not_trust_is_refused(tmp_path: Path) -> None:
    root = make_cell(tmp_path, [])
    make_cell(root, [], authority="other", domain="autre.fr")
    impostor = Home(root / "other", kdf=vault.MINIMUM)
    eva = pending_home(root, "eva")  # trusts "auth" only
    approvals: list[pairing_net.Request] = []

    async def approve(request: pairing_net.Request) -> bool:
        await trio.lowlevel.checkpoint()
        approvals.append(request)
        return True

    async def show(code: str, other: str) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(VerificationError) as info:
        await enrol_over_lan(impostor, eva, approve, show)
    assert info.value.reason is VerificationFailure.UNKNOWN_AUTHORITY
    assert approvals == []  # the request was never even sent


async def test_device_linking_over_the_lan(tmp_path: Path) -> None:
    root = make_cell(tmp_path, ["alice"])
    first = Home(root / "alice", kdf=vault.MINIMUM)
    tablet = Home(root / "tablet", kdf=vault.MINIMUM)

    async def approve(request: pairing_net.Request) -> bool:
        await trio.lowlevel.checkpoint()
        return request.kind == "device" and request.name == "tablette"

    async def show(code: str, other: str) -> None:
        await trio.lowlevel.checkpoint()
        assert other == "alice@x.gouv.fr"

    device = await run_pairing(
        lambda task_status: pairing_net.serve_device_link(
            first,
            PASSPHRASE,
            "127.0.0.1",
            0,
            approve,
            now=now,
            rng=os.urandom,
            task_status=task_status,
        ),
        lambda port: pairing_net.link_device(
            tablet, ("127.0.0.1", port), "tablette", PASSPHRASE, show, now=now, rng=os.urandom
        ),
    )
    assert device.name == "tablette"  # type: ignore[attr-defined]
    info = accounts.whoami(tablet, now())
    assert info["email"] == "alice@x.gouv.fr" and info["status"] == "valid"
    assert {d["name"] for d in info["devices"]} == {"pc", "tablette"}
    assert {d["name"] for d in accounts.list_devices(first, now())} == {"pc", "tablette"}


def test_enroll_from_with_the_real_commands(tmp_path: Path) -> None:
    root = make_cell(tmp_path, [])
    pending_home(root, "eva")
    env = cli_env()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2ptchap",
            "--home",
            "auth",
            "authority",
            "serve",
            "--port",
            "0",
            "--once",
            "--interface",
            "127.0.0.1",
        ],
        cwd=root,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = re.search(r"port (\d+)", server.stdout.readline())
        assert port
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "p2ptchap",
                "--home",
                "eva",
                "enroll",
                "--from",
                f"127.0.0.1:{port.group(1)}",
            ],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        client_code = re.search(r"Code: (\d{3} \d{3})", client.stdout.readline())
        server_lines = [server.stdout.readline(), server.stdout.readline()]
        server_code = re.search(r"Code: (\d{3} \d{3})", server_lines[1])
        assert client_code and server_code and client_code.group(1) == server_code.group(1)
        assert "eva@x.gouv.fr" in server_lines[0]
        server.stdin.write("y\n")
        server.stdin.flush()
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err
        assert "Enrolled: Eva <eva@x.gouv.fr>, agent" in out
        server.communicate(timeout=30)
        assert server.returncode == 0
    finally:
        server.kill()
        server.wait(timeout=10)

"""Certificate games: whoever shows credentials that do not verify gets nothing past the handshake.

The attacker runs the handshake to its message 3 with the credentials under
test, then sends a hello as a certified peer would.  The node must hang up
without a record, count the refusal by its reason (``status`` →
``rejected``), and keep serving its honest peer meanwhile.
"""

from __future__ import annotations

import time

import pytest
import trio

from p2ptchap.core import codec, identity, revocation
from p2ptchap.core.channel import make_credentials
from p2ptchap.core.identity import Kind
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.store.home import Home
from tests.hostile.arena import Arena
from tests.hostile.toolkit import DAY, Credentials, HostilePeer, Mint, insider, relabelled

pytestmark = pytest.mark.slow


async def refused(arena: Arena, credentials: Credentials, reason: str,
                  shown: bytes | None = None) -> None:  # fmt: skip
    """Handshake with ``credentials`` (or the raw ``shown`` payload); expect a silent refusal."""
    before = (await arena.status_async())["rejected"].get(reason, 0)
    peer = HostilePeer(credentials, arena.trust)
    await peer.connect(arena.port, source="127.0.6.1")
    await peer.handshake(credentials=shown)  # message 3, then our hello
    assert await peer.wait_hung_up(10), f"{reason}: the node kept the connection"
    assert peer.received.records == 0, f"{reason}: the node sent records to a refused peer"
    after = (await arena.status_async())["rejected"].get(reason, 0)
    assert after == before + 1, (reason, before, after)


async def test_bad_certificates_get_nothing_past_the_handshake(arena: Arena) -> None:
    mint = arena.mint
    now = int(time.time())
    cases: list[tuple[str, Credentials, str]] = [
        ("expired", mint.person("perime@x.gouv.fr", issued=now - 40 * DAY, days=30), "expired"),
        (
            "not yet valid",
            mint.person("futur@x.gouv.fr", issued=now + 10 * DAY, days=30),
            "not-yet-valid",
        ),
        ("another authority", Mint.stranger().person("etranger@x.gouv.fr"), "unknown-authority"),
        (
            "an external posing as agent",
            mint.claims("benevole@gmail.com", kind="agent"),
            "external-claims-agent",
        ),
        (
            "an external's kind changed after signing",
            relabelled(
                mint.person("ext@gmail.com", kind=Kind.EXTERNAL),
                codec.encode("external"),
                codec.encode("agent\x00\x00\x00"),
            ),
            "bad-signature",
        ),
    ]
    # A device certificate of another account, under this account's certificate.
    victim, other = mint.person("victime@x.gouv.fr"), mint.person("autre@x.gouv.fr")
    cases.append(("another account's device", Credentials(
        victim.account, other.device, other.signing, other.exchange, other.master
    ), "mismatch"))  # fmt: skip
    async with arena.attack("certificate games") as window:
        for _name, credentials, reason in cases:
            await refused(arena, credentials, reason)
        window.figures["cases"] = len(cases)


async def test_posing_as_a_known_device_without_its_key_is_refused(arena: Arena) -> None:
    """The certificates of a real member, gossiped to all, with a signature by another key."""
    bruno = Home(arena.root / "bruno")
    account, device = bruno.account_certificate.read_bytes(), bruno.device_certificate.read_bytes()
    mallory = arena.mint.person("imposteur@x.gouv.fr")
    static = X25519KeyPair.generate(lambda n: bytes(range(n)))
    shown = make_credentials(account, device, mallory.signing, static.public)
    # The handshake signs our real static key, not ``static``: any signature
    # that is not by Bruno's device key over it fails alike.
    async with arena.attack("posing as a known device"):
        await refused(arena, mallory, "bad-signature", shown=shown)
        await refused(arena, mallory, "malformed", shown=b"\xa0")


async def test_a_device_revoked_while_connected_is_cut_off_then_refused(arena: Arena) -> None:
    mallory = arena.mint.person("revoque@x.gouv.fr")
    serial = identity.read_account_certificate(mallory.account, arena.trust).serial
    record = revocation.revoke_serial(arena.mint.secret, serial, int(time.time()))
    async with arena.attack("revocation"), trio.open_nursery() as nursery:
        peer = await insider(mallory, arena.trust, arena.port, nursery, source="127.0.6.2")
        assert await peer.wait_for(lambda r: r.types["hello"] == 1)
        # The administrator imports the revocation on Alice's computer; her node
        # reads the file within seconds and drops the connection it invalidates.
        Home(arena.root / "alice").add_revocations([record], arena.trust)
        assert await peer.wait_hung_up(10)
        nursery.cancel_scope.cancel()
    await refused(arena, mallory, "revoked")

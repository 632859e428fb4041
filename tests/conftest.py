"""Shared fixtures: seeded randomness, a fixed clock, and quick identity builders.

The core takes time and randomness as arguments, so tests pass them: ``rng``
is a seeded :class:`random.Random`'s ``randbytes`` (same seed, same keys,
same serials) and ``now`` is a fixed instant.  :func:`make_org` builds an
authority and :meth:`Org.member` enrols an account with one device in a few
milliseconds, without touching the disk.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from p2ptchap.core import codec, cose, identity, vault
from p2ptchap.core.authority import Authority, TrustStore, create_trust_file
from p2ptchap.core.channel import ChannelConfig, SecureChannel, make_credentials
from p2ptchap.core.identity import AccountCertificate, Kind
from p2ptchap.core.keys import (
    AccountSecret,
    AuthoritySecret,
    DeviceSecret,
    ExchangeSecret,
    Rng,
)
from p2ptchap.core.noise import X25519KeyPair
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.store.home import Home

#: A fixed instant (2025-06-15T15:06:40Z); every test clock derives from it.
NOW = 1_750_000_000
DAY = 86_400
PASSPHRASE = "correct horse battery staple"
DOMAINS = ("*.gouv.fr", "mairie-exemple.fr")


def make_rng(seed: int = 0) -> Rng:
    """A deterministic source of bytes: ``rng(n)`` returns ``n`` bytes."""
    return random.Random(seed).randbytes


@dataclasses.dataclass
class Member:
    """An enrolled account with one device, all in memory."""

    secret: AccountSecret
    request: bytes
    certificate: bytes
    account: AccountCertificate
    device_secret: DeviceSecret
    exchange_secret: ExchangeSecret
    device: bytes

    def add_device(self, name: str, rng: Rng, now: int = NOW) -> tuple[DeviceSecret, bytes]:
        signing, _, data = self.new_device(name, rng, now)
        return signing, data

    def new_device(
        self, name: str, rng: Rng, now: int = NOW
    ) -> tuple[DeviceSecret, ExchangeSecret, bytes]:
        """Another device of this account: its two secrets and its certificate."""
        signing = DeviceSecret.generate(rng)
        exchange = ExchangeSecret.generate(rng)
        data = identity.issue_device_certificate(
            self.secret, signing.public_key(), exchange.public_key(), name, now
        )
        return signing, exchange, data


@dataclasses.dataclass
class Org:
    """An authority with its secret, ready to issue certificates."""

    secret: AuthoritySecret
    authority: Authority
    trust_file: bytes
    rng: Rng

    @property
    def trust(self) -> TrustStore:
        return TrustStore([self.authority])

    def request(
        self, email: str, name: str = "Camille Dupont", now: int = NOW
    ) -> tuple[AccountSecret, bytes]:
        secret = AccountSecret.generate(self.rng)
        return secret, identity.make_request(secret, email, name, now)

    def issue(
        self, request: bytes, *, kind: Kind = Kind.AGENT, now: int = NOW, days: int = 365
    ) -> bytes:
        return identity.issue_account_certificate(
            self.secret,
            self.authority,
            identity.parse_request(request),
            kind=kind,
            now=now,
            days=days,
            rng=self.rng,
        )

    def member(
        self,
        email: str,
        name: str = "Camille Dupont",
        *,
        kind: Kind = Kind.AGENT,
        now: int = NOW,
        days: int = 365,
        device_name: str = "laptop",
    ) -> Member:
        secret, request = self.request(email, name, now)
        certificate = self.issue(request, kind=kind, now=now, days=days)
        account = identity.verify_account_certificate(certificate, self.trust, RevocationSet(), now)
        signing = DeviceSecret.generate(self.rng)
        exchange = ExchangeSecret.generate(self.rng)
        device = identity.issue_device_certificate(
            secret, signing.public_key(), exchange.public_key(), device_name, now
        )
        return Member(secret, request, certificate, account, signing, exchange, device)

    def sign_claims(self, claims: dict[codec.Key, codec.Value]) -> bytes:
        """Sign arbitrary account-certificate claims, bypassing issuance checks."""
        return cose.sign(
            codec.encode(claims), identity.ACCOUNT_CONTENT_TYPE, self.authority.key_id, self.secret
        )


def make_org(
    rng: Rng,
    name: str = "Ministère de l'Intérieur",
    domains: Iterable[str] = DOMAINS,
    now: int = NOW,
) -> Org:
    secret = AuthoritySecret.generate(rng)
    authority, trust_file = create_trust_file(secret, name, domains, now)
    return Org(secret, authority, trust_file, rng)


def account_claims(
    org: Org,
    account_secret: AccountSecret,
    email: str,
    *,
    name: str = "Camille Dupont",
    kind: str = "agent",
    now: int = NOW,
    days: int = 365,
    serial: bytes = b"\x42" * 16,
) -> dict[codec.Key, codec.Value]:
    """The claims :func:`identity.issue_account_certificate` would sign, to tweak by hand."""
    return {
        identity.CLAIM_ISS: identity.issuer_name(org.authority),
        identity.CLAIM_SUB: email,
        identity.CLAIM_EXP: now + days * DAY,
        identity.CLAIM_NBF: now,
        identity.CLAIM_IAT: now,
        identity.CLAIM_CTI: serial,
        identity.CLAIM_CNF: {
            identity.CNF_COSE_KEY: {
                identity.COSE_KEY_KTY: identity.KTY_OKP,
                identity.COSE_KEY_CRV: identity.CRV_ED25519,
                identity.COSE_KEY_X: bytes(account_secret.public_key()),
            }
        },
        identity.CLAIM_NAME: name,
        identity.CLAIM_KIND: kind,
    }


def flipped(data: bytes) -> Iterable[tuple[int, bytes]]:
    """Every copy of ``data`` with exactly one byte XORed with 0x01."""
    for index in range(len(data)):
        yield index, data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture
def rng() -> Rng:
    return make_rng(1234)


@pytest.fixture
def now() -> int:
    return NOW


@pytest.fixture
def org(rng: Rng) -> Org:
    return make_org(rng)


@pytest.fixture
def other_org(rng: Rng) -> Org:
    return make_org(rng, "Ministère de la Justice", ["justice.fr"])


@pytest.fixture
def make_home(tmp_path: Path) -> Callable[[str], Home]:
    """``make_home(name)``: a home folder under ``tmp_path`` sealing with the minimum KDF cost."""

    def factory(name: str) -> Home:
        return Home(tmp_path / name, kdf=vault.MINIMUM)

    return factory


def assert_every_flip_rejected(
    data: bytes, check: Callable[[bytes], object], expected: tuple[type[Exception], ...]
) -> None:
    """Flip each byte of ``data`` in turn; ``check`` must raise one of ``expected`` every time.

    Success, or any other exception type, fails the test naming the byte.
    """
    assert data, "nothing to tamper with"
    check(data)  # the untampered value must pass, or the loop proves nothing
    for index, bad in flipped(data):
        try:
            check(bad)
        except expected:
            continue
        except Exception as exc:
            pytest.fail(f"byte {index}: {type(exc).__name__} instead of {expected}: {exc}")
        pytest.fail(f"byte {index}: the tampered value was accepted")


def endpoint(
    member: Member,
    org: Org,
    *,
    initiator: bool,
    rng: Rng,
    revocations: RevocationSet | None = None,
    now: int = NOW,
    config: ChannelConfig | None = None,
    credentials: bytes | None = None,
) -> SecureChannel:
    """A channel end for ``member``, trusting ``org`` at time ``now``."""
    static = X25519KeyPair(member.exchange_secret.secret_bytes())
    known = revocations or RevocationSet()

    def verify(account: bytes, device: bytes) -> identity.VerifiedDevice:
        return identity.verify_chain(account, device, org.trust, known, now)

    return SecureChannel(
        initiator=initiator,
        static=static,
        credentials=credentials
        or make_credentials(member.certificate, member.device, member.device_secret, static.public),
        verify=verify,
        rng=rng,
        config=config or ChannelConfig(),
    )

"""Identity benchmark: how fast a node can check who it is talking to.

Measures, in one run, the raw Ed25519 verification rate (the reference: the
cost no design can avoid) and the rate of full chain verification (account
certificate + device certificate, with a revocation set of 10,000 records),
plus the time to unseal a key at the on-disk argon2id cost and to compute a
safety number.  Prints a table with ratios to the reference.

Run:  .venv/bin/python bench/identity.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Callable

import nacl.signing

from p2ptchap.core import identity, revocation, vault
from p2ptchap.core.authority import TrustStore, create_trust_file
from p2ptchap.core.keys import AccountSecret, AuthoritySecret, DeviceSecret, ExchangeSecret

NOW = 1_790_000_000


def rate(function: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``function`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            function()
        count += 50
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(7).randbytes

    secret = AuthoritySecret.generate(rng)
    authority, _ = create_trust_file(secret, "Bench", ["interieur.gouv.fr"], NOW)
    trust = TrustStore([authority])
    master = AccountSecret.generate(rng)
    request = identity.parse_request(
        identity.make_request(master, "a.b@interieur.gouv.fr", "A B", NOW)
    )
    certificate = identity.issue_account_certificate(
        secret, authority, request, kind=identity.Kind.AGENT, now=NOW, days=30, rng=rng
    )
    device = identity.issue_device_certificate(
        master,
        DeviceSecret.generate(rng).public_key(),
        ExchangeSecret.generate(rng).public_key(),
        "laptop",
        NOW,
    )
    revocations = revocation.RevocationSet()
    for _ in range(10_000):
        revocations.add(revocation.revoke_serial(secret, rng(16), NOW), trust)

    key = nacl.signing.SigningKey(rng(32))
    signed = key.sign(b"x" * 200)
    verify_key = key.verify_key

    reference = rate(lambda: verify_key.verify(signed), args.seconds)
    chain = rate(
        lambda: identity.verify_chain(certificate, device, trust, revocations, NOW), args.seconds
    )
    account = identity.verify_account_certificate(certificate, trust, revocations, NOW)
    safety = rate(lambda: identity.safety_number(account, account), args.seconds / 2)
    box = vault.seal(b"k" * 64, "passphrase", os.urandom)
    start = time.perf_counter()
    vault.open_sealed(box, "passphrase")
    unseal = time.perf_counter() - start

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'measure':45} {'value':>14} {'ratio':>10}")
    print(f"{'Ed25519 verify (reference)':45} {reference:>10.0f} /s {1:>10.2f}")
    print(
        f"{'chain verify (2 signatures + parsing)':45} {chain:>10.0f} /s {chain / reference:>10.2f}"
    )
    print(f"{'  ideal for 2 signatures':45} {reference / 2:>10.0f} /s {0.5:>10.2f}")
    print(f"{'safety number':45} {safety:>10.0f} /s")
    print(f"{'unseal a key (argon2id MODERATE)':45} {unseal * 1000:>10.0f} ms")


if __name__ == "__main__":
    main()

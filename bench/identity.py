"""Identity benchmark: how fast a node can check who it is talking to.

Measures, in one run, the rate of full chain verification (account
certificate + device certificate, with a revocation set of 10 000 records)
against the bare Ed25519 verification rate (two signatures are the cost no
design can avoid); a safety number against the BLAKE2b calls it is made of;
and the time to unseal a key at the on-disk argon2id cost against
libsodium's argon2id alone at the same cost.

Run:  python bench/identity.py [--short] [--seconds 2]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import statistics
import sys
import time
from pathlib import Path

import nacl.pwhash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from p2ptchap.core import identity, revocation, vault
from p2ptchap.core.authority import TrustStore, create_trust_file
from p2ptchap.core.keys import AccountSecret, AuthoritySecret, DeviceSecret, ExchangeSecret

NOW = 1_790_000_000


@dataclasses.dataclass(frozen=True)
class Params:
    seconds: float  # per rate measured
    revocations: int  # known to the verifier
    unseals: int  # timed (median)


FULL = Params(seconds=2.0, revocations=10_000, unseals=5)
SHORT = Params(seconds=0.2, revocations=1_000, unseals=1)


def _safety_reference(seconds: float) -> float:
    """Rate of the BLAKE2b calls a safety number is made of (2 × 5 201 of 96 bytes), alone."""
    iterations = 2 * (identity._SAFETY_ITERATIONS + 1)
    data = os.urandom(96)

    def hashes() -> None:
        for _ in range(iterations):
            hashlib.blake2b(data, digest_size=64).digest()

    return common.rate(hashes, seconds)


def collect(params: Params, progress: common.Progress) -> common.Section:
    section = common.Section(
        "identity",
        "Identity",
        f"Rates over {params.seconds} s each; a verifier knowing "
        f"{common.number(params.revocations)} revocations; unsealing at argon2id MODERATE "
        "(3 passes, 256 MiB).",
    )
    rng = random.Random(7).randbytes
    progress("certificates and revocations")
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
    for _ in range(params.revocations):
        revocations.add(revocation.revoke_serial(secret, rng(16), NOW), trust)

    progress("verification rates")
    reference = common.ed25519_verify_rate(params.seconds)
    chain = common.rate(
        lambda: identity.verify_chain(certificate, device, trust, revocations, NOW),
        params.seconds,
        batch=50,
    )
    section.add(
        "chain_verify",
        "full chain verify (account + device certificate, parsing included)",
        chain,
        "/s",
        reference / 2,
        "ideal: half the bare Ed25519 verify rate",
    )
    section.add("ed25519_verify", "bare Ed25519 verify (the reference above)", reference, "/s")

    progress("safety number")
    account = identity.verify_account_certificate(certificate, trust, revocations, NOW)
    safety = common.rate(lambda: identity.safety_number(account, account), params.seconds / 2)
    section.add(
        "safety_number",
        "safety number (2 × 5 201 BLAKE2b)",
        safety,
        "/s",
        _safety_reference(params.seconds / 2),
        "the same BLAKE2b calls alone",
    )

    progress("unsealing a key (argon2id)")
    box = vault.seal(b"k" * 64, "passphrase", os.urandom)
    salt = os.urandom(16)
    unseals: list[float] = []
    kdfs: list[float] = []
    for _ in range(params.unseals):  # alternated: both suffer the same moments of load
        start = time.perf_counter()
        vault.open_sealed(box, "passphrase")
        unseals.append(time.perf_counter() - start)
        start = time.perf_counter()
        nacl.pwhash.argon2id.kdf(32, b"passphrase", salt, vault.MODERATE.ops, vault.MODERATE.mem)
        kdfs.append(time.perf_counter() - start)
    unseal, kdf = statistics.median(unseals), statistics.median(kdfs)
    section.add(
        "unseal",
        f"unseal a key, argon2id MODERATE, median of {params.unseals}",
        unseal * 1000,
        "ms",
        kdf * 1000,
        "libsodium argon2id alone, same cost",
    )
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (common.Option("--seconds", "seconds", type=float, help="per rate measured"),)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)

"""Builds a crisis cell on disk for the network tests: one authority, enrolled agents."""

from __future__ import annotations

import os
import time
from pathlib import Path

from p2ptchap import accounts
from p2ptchap.core import vault
from p2ptchap.store.home import Home

PASSPHRASE = "phrase de passe de test"


def make_cell(
    root: Path, names: list[str], *, authority: str = "auth", domain: str = "x.gouv.fr"
) -> Path:
    """Create ``root/authority`` and one enrolled home per name; return ``root``.

    Keys are sealed at the minimum argon2id cost, for speed; the nodes open
    them exactly as they would real ones.
    """
    now = int(time.time())
    auth = Home(root / authority, kdf=vault.MINIMUM)
    accounts.create_authority(auth, f"Autorité {authority}", [domain], PASSPHRASE, now, os.urandom)
    trust = root / f"{authority}.trust"
    accounts.export_trust(auth, trust)
    for name in names:
        home = Home(root / name, kdf=vault.MINIMUM)
        request = root / f"{name}.req"
        accounts.init_account(
            home,
            f"{name}@{domain}",
            name.title(),
            [trust],
            request,
            device_name="pc",
            passphrase=PASSPHRASE,
            now=now,
            rng=os.urandom,
        )
        accounts.issue(
            auth,
            accounts.read_request(request),
            root / f"{name}.cert",
            external=False,
            days=30,
            passphrase=PASSPHRASE,
            now=now,
            rng=os.urandom,
        )
        accounts.enroll(home, root / f"{name}.cert", now)
    return root


def cli_env() -> dict[str, str]:
    """The environment for child `p2ptchap` processes: English, passphrase set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PTCHAP_")}
    env.update(P2PTCHAP_PASSPHRASE=PASSPHRASE, P2PTCHAP_LANG="en")
    return env

"""What every command of the CLI gets: the home, the language, the clock, randomness."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from p2ptchap.core.errors import UsageError
from p2ptchap.i18n import Translator
from p2ptchap.store.home import Home

EXIT_FAILURE = 1


@dataclasses.dataclass
class Context:
    """What every command needs: where, when, randomness, the passphrase, the language."""

    home: Home
    tr: Translator
    out: TextIO
    now: int
    rng: Callable[[int], bytes]
    json: bool = False

    def say(self, template: str, **values: object) -> None:
        """Print a translated line to standard output."""
        print(self.tr(template).format(**values), file=self.out)

    def passphrase(self, *, confirm: bool = False) -> str:
        """From ``$P2PTCHAP_PASSPHRASE``, else asked on the terminal."""
        value = os.environ.get("P2PTCHAP_PASSPHRASE")
        if value is not None:
            return value
        if not sys.stdin.isatty():
            raise UsageError(
                "no passphrase",
                user_message=(
                    "No passphrase: set P2PTCHAP_PASSPHRASE or run the command in a terminal."
                ),
            )
        first = getpass.getpass(self.tr("Passphrase: "))
        if confirm and getpass.getpass(self.tr("Passphrase (again): ")) != first:
            raise UsageError("passphrases differ", user_message="The two passphrases differ.")
        return first


def emit_json(ctx: Context, value: Any) -> None:
    json.dump(value, ctx.out, ensure_ascii=False, indent=2)
    ctx.out.write("\n")

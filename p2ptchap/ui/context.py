"""What every command of the CLI gets: the home, the language, the clock, randomness."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from p2ptchap.core.errors import N_, UsageError
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
    #: Whether this command said already that no node runs (said once).
    offline_said: bool = False

    def say(self, template: str, **values: object) -> None:
        """Print a translated line to standard output."""
        print(self.tr(template).format(**values), file=self.out)

    def passphrase(self, *, confirm: bool = False) -> str:
        """From ``$P2PTCHAP_PASSPHRASE``, or the file ``$P2PTCHAP_PASSPHRASE_FILE``, or asked.

        The file suits a service (a relay node started by systemd, which
        hands it over as a credential): unlike the environment, it is not
        copied into every child process.  Its first line is the passphrase.
        """
        value = os.environ.get("P2PTCHAP_PASSPHRASE")
        if value is not None:
            return value
        path = os.environ.get("P2PTCHAP_PASSPHRASE_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as file:
                    return file.readline().rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(
                    str(exc),
                    user_message=N_(
                        "The passphrase file {path} could not be read (P2PTCHAP_PASSPHRASE_FILE)."
                    ),
                    path=path,
                ) from exc
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

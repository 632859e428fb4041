"""Translations: French by default, English when the locale asks for it.

Messages are written in English in the code, as gettext ``msgid``s, and
translated through the catalogs in ``p2ptchap/locale/LANG/LC_MESSAGES/
p2ptchap.po``.  We read the ``.po`` source directly (a small, strict parser
below) rather than compiled ``.mo`` files, so the catalogs in the repository
are the ones that run and no build step can leave a stale binary behind.

Language choice, first match wins: ``$P2PTCHAP_LANG``; then the POSIX
locale variables ``LC_ALL``, ``LC_MESSAGES``, ``LANG``; a value starting
with ``en`` selects English, anything else — including no locale at all, as
on a freshly installed crisis-cell laptop — selects French.
"""

from __future__ import annotations

import ast
import functools
import gettext
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "p2ptchap"
LANGUAGES: Final = ("fr", "en")


class CatalogError(ValueError):
    """A ``.po`` file that does not follow the subset of the format we write."""


def parse_po(text: str) -> dict[str, str]:
    """Parse the ``msgid``/``msgstr`` pairs of a ``.po`` file.

    Supports comments, multi-line strings and C escapes; entries with an
    empty ``msgstr`` (untranslated) are left out, and the header entry (empty
    ``msgid``) is skipped.
    """
    catalog: dict[str, str] = {}
    current: dict[str, list[str]] = {}
    field: str | None = None

    def flush() -> None:
        if "msgid" in current and "msgstr" in current:
            msgid, msgstr = "".join(current["msgid"]), "".join(current["msgstr"])
            if msgid and msgstr:
                catalog[msgid] = msgstr
        elif current:
            raise CatalogError(f"incomplete entry: {current}")
        current.clear()

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if not line and current:
                flush()
                field = None
            continue
        keyword, _, rest = line.partition(" ")
        if keyword in {"msgid", "msgstr"}:
            if keyword == "msgid" and current:
                flush()
            field = keyword
            current[field] = []
            line = rest.strip()
        if field is None or not (line.startswith('"') and line.endswith('"')):
            raise CatalogError(f"line {number}: cannot parse {raw!r}")
        # A .po string literal is a C string; Python's literal syntax is a
        # superset for the escapes gettext tools emit (\n, \t, \", \\).
        current[field].append(ast.literal_eval(line))
    if current:
        flush()
    return catalog


class CatalogTranslations(gettext.NullTranslations):
    """gettext translations backed by a parsed catalog."""

    def __init__(self, catalog: Mapping[str, str]) -> None:
        super().__init__()
        self._messages = dict(catalog)

    def gettext(self, message: str) -> str:
        return self._messages.get(message, message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return self.gettext(msgid1 if n == 1 else msgid2)


def choose_language(environ: Mapping[str, str] = os.environ) -> str:
    """``en`` or ``fr`` according to the environment (see the module docs)."""
    for variable in ("P2PTCHAP_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable, "")
        if value:
            return "en" if value.lower().startswith("en") else "fr"
    return "fr"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (``en`` is the identity)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not path.exists():
        return gettext.NullTranslations()
    return CatalogTranslations(parse_po(path.read_text(encoding="utf-8")))


class Translator:
    """The ``_`` of one interface, bound to one language."""

    def __init__(self, language: str | None = None) -> None:
        self.language = language or choose_language()
        self._translations = translations(self.language)

    def __call__(self, message: str) -> str:
        return self._translations.gettext(message)

"""The French catalog: complete, consistent with the code, and chosen by default."""

from __future__ import annotations

import re
import string

import pytest

from p2ptchap.i18n import (
    LOCALE_DIR,
    CatalogError,
    Translator,
    choose_language,
    parse_po,
)
from tests.i18n_messages import messages

FRENCH = parse_po((LOCALE_DIR / "fr" / "LC_MESSAGES" / "p2ptchap.po").read_text("utf-8"))


def fields(template: str) -> tuple[set[str], list[str]]:
    """The ``{name}`` fields (any order) and the ``%`` conversions (in order) of a template."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return names, re.findall(r"%[sd]", template)


def test_every_user_visible_message_has_a_french_translation() -> None:
    missing = sorted(set(messages()) - set(FRENCH))
    assert not missing, f"add these to the French catalog: {missing}"


def test_catalog_has_no_stale_entries() -> None:
    stale = sorted(set(FRENCH) - set(messages()))
    assert not stale, f"remove or update these catalog entries: {stale}"


@pytest.mark.parametrize("msgid", sorted(FRENCH))
def test_translation_keeps_the_same_placeholders(msgid: str) -> None:
    assert fields(FRENCH[msgid]) == fields(msgid)


def test_french_is_the_default_and_english_follows_the_locale() -> None:
    assert choose_language({}) == "fr"
    assert choose_language({"LANG": "C.UTF-8"}) == "fr"
    assert choose_language({"LANG": "fr_FR.UTF-8"}) == "fr"
    assert choose_language({"LANG": "en_GB.UTF-8"}) == "en"
    assert choose_language({"LC_ALL": "en_US.UTF-8", "LANG": "fr_FR.UTF-8"}) == "en"
    assert choose_language({"P2PTCHAP_LANG": "fr", "LC_ALL": "en_US.UTF-8"}) == "fr"


def test_translator_translates_and_falls_back() -> None:
    french, english = Translator("fr"), Translator("en")
    message = "Wrong passphrase: the key file could not be opened. Try again."
    assert french(message).startswith("Phrase de passe incorrecte")
    assert english(message) == message
    assert french("a message nobody translated") == "a message nobody translated"


def test_po_parser_handles_multiline_and_escapes() -> None:
    catalog = parse_po(
        '# comment\nmsgid ""\nmsgstr "Language: fr\\n"\n\n'
        'msgid "a\\n"\n"b \\"q\\""\nmsgstr "x"\n"y"\n\n'
        'msgid "untranslated"\nmsgstr ""\n'
    )
    assert catalog == {'a\nb "q"': "xy"}


@pytest.mark.parametrize("text", ['msgid "a"\n', 'msgid "a"\nmsgstr x\n', "garbage\n"])
def test_po_parser_rejects_broken_catalogs(text: str) -> None:
    with pytest.raises(CatalogError):
        parse_po(text)

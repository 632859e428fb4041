"""E-mail normalisation and authority domain rules."""

from __future__ import annotations

import contextlib

import idna
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p2ptchap.core.addresses import (
    MAX_EMAIL_LENGTH,
    DomainRule,
    InvalidAddress,
    display_email,
    email_domain,
    normalise_display_name,
    normalise_domain,
    normalise_email,
)
from p2ptchap.core.errors import UsageError

ELYSEE_ACE = idna.encode("élysée.fr", uts46=True).decode("ascii")


@pytest.mark.parametrize(
    ("given_address", "expected"),
    [
        ("camille.dupont@interieur.gouv.fr", "camille.dupont@interieur.gouv.fr"),
        ("Camille.Dupont@Interieur.GOUV.fr", "camille.dupont@interieur.gouv.fr"),
        ("  camille@gouv.fr  ", "camille@gouv.fr"),
        ("o'hara+tag@mairie-exemple.fr", "o'hara+tag@mairie-exemple.fr"),
        ("a@élysée.fr", f"a@{ELYSEE_ACE}"),
        ("A@ÉLYSÉE.FR", f"a@{ELYSEE_ACE}"),
        (f"a@{ELYSEE_ACE}", f"a@{ELYSEE_ACE}"),
        (f"a@{ELYSEE_ACE.upper()}", f"a@{ELYSEE_ACE}"),
    ],
)
def test_normalisation(given_address: str, expected: str) -> None:
    assert normalise_email(given_address) == expected


def test_idn_domain_is_converted_to_a_labels() -> None:
    assert ELYSEE_ACE.startswith("xn--")
    assert ELYSEE_ACE.endswith(".fr")
    assert normalise_domain("élysée.fr") == ELYSEE_ACE
    assert display_email(f"a@{ELYSEE_ACE}") == "a@élysée.fr"
    assert email_domain(f"a@{ELYSEE_ACE}") == ELYSEE_ACE


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign.gouv.fr",
        "@gouv.fr",
        "camille@",
        "a@b@gouv.fr",
        "camille@gouv@fr",
        '"camille"@gouv.fr',
        '"ca mille"@gouv.fr',
        "ca mille@gouv.fr",
        "camille@gou v.fr",
        "camille.@gouv.fr",
        ".camille@gouv.fr",
        "ca..mille@gouv.fr",
        "camille@gouv..fr",
        "camille@.gouv.fr",
        "camille@gouv.fr.",
        "camille@" + "a" * 64 + ".fr",
        "camille@localhost",
        "camille@fr",
        "camille@example.123",
        "camille@10.0.0.1",
        "camille@-gouv.fr",
        "camille@gouv_x.fr",
        "camille@[10.0.0.1]",
        "x" * 65 + "@gouv.fr",
        "é@gouv.fr",
        "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".fr",
    ],
)
def test_rejects(address: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_email(address)


def test_invalid_address_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        normalise_email("nope")
    with pytest.raises(InvalidAddress):
        normalise_email(None)  # type: ignore[arg-type]


def test_label_of_63_characters_is_accepted() -> None:
    label = "a" * 63
    assert normalise_email(f"x@{label}.fr") == f"x@{label}.fr"


def test_total_length_limit() -> None:
    domain = ".".join(["d" * 60] * 3) + ".fr"  # 186 characters
    local = "l" * 64
    address = f"{local}@{domain}"
    assert len(address) <= MAX_EMAIL_LENGTH
    assert normalise_email(address) == address


def test_non_ascii_local_part_that_lowercases_to_ascii_is_refused() -> None:
    with pytest.raises(InvalidAddress):
        normalise_email("\u212a@gouv.fr")


_local_chars = st.sampled_from("abcXYZ019.-_+'!é\u212a ")
_label_chars = st.sampled_from("abcXYZ09-éÉüß\u3002")
_labels = st.text(_label_chars, min_size=1, max_size=10)
_addresses = st.one_of(
    st.emails(),
    st.builds(
        lambda local, labels: f"{local}@{'.'.join(labels)}",
        st.text(_local_chars, min_size=0, max_size=12),
        st.lists(_labels, min_size=1, max_size=4),
    ),
    st.text(max_size=40),
)


@given(_addresses)
@example("Camille@Élysée.FR")
def test_normalisation_is_idempotent(address: str) -> None:
    try:
        normalised = normalise_email(address)
    except InvalidAddress:
        return
    assert normalise_email(normalised) == normalised
    assert normalised.isascii()
    assert normalised == normalised.lower()
    assert normalised.count("@") == 1


@given(st.text(max_size=60))
def test_normalisation_raises_only_invalid_address(text: str) -> None:
    with contextlib.suppress(InvalidAddress):
        normalise_email(text)


# --- domain rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "covered"),
    [
        ("x.gouv.fr", True),
        ("interieur.gouv.fr", True),
        ("a.b.gouv.fr", True),
        ("gouv.fr", False),
        ("evilgouv.fr", False),
        ("gouv.fr.evil.com", False),
        ("x.gouv.fr.com", False),
    ],
)
def test_suffix_rule(domain: str, covered: bool) -> None:
    assert DomainRule.parse("*.gouv.fr").matches(domain) is covered


def test_exact_rule() -> None:
    rule = DomainRule.parse("Interieur.Gouv.FR")
    assert rule == DomainRule("interieur.gouv.fr", subdomains=False)
    assert rule.matches("interieur.gouv.fr")
    assert not rule.matches("x.interieur.gouv.fr")
    assert not rule.matches("gouv.fr")


def test_rule_parsing_and_str() -> None:
    assert str(DomainRule.parse(" *.GOUV.fr ")) == "*.gouv.fr"
    assert str(DomainRule.parse("élysée.fr")) == ELYSEE_ACE
    assert DomainRule.parse("*.élysée.fr").matches(f"palais.{ELYSEE_ACE}")


@pytest.mark.parametrize("text", ["*", "*.", "a*.gouv.fr", "*gouv.fr", "x.*.gouv.fr", "*.*.fr", ""])
def test_bad_rules(text: str) -> None:
    with pytest.raises(InvalidAddress):
        DomainRule.parse(text)


def test_display_shows_latin_domains_in_unicode_and_others_in_ascii() -> None:
    assert display_email(normalise_email("a@préfecture.fr")) == "a@préfecture.fr"
    # "іnterieur" with a Cyrillic і: shown in its ASCII form, not as a look-alike.
    spoof = normalise_email("alice@\u0456nterieur.gouv.fr")
    assert spoof.startswith("alice@xn--")
    assert display_email(spoof) == spoof


@pytest.mark.parametrize(
    "name",
    ["Préfet <prefet@interieur.gouv.fr>", "a@b", "Al\u3164ice", "Al\u034fice", "Al\ufe0fice"],
)
def test_names_cannot_pose_as_addresses_or_hide_characters(name: str) -> None:
    with pytest.raises(UsageError):
        normalise_display_name(name)


def test_names_keep_apostrophes_and_accents() -> None:
    assert normalise_display_name("Aïssatou N'Diaye-Lefèvre") == "Aïssatou N'Diaye-Lefèvre"

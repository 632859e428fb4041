"""Professional e-mail addresses, people's names, and the domain rules of authorities.

An account is bound to one *normalised* address, so the same person cannot
hold two accounts by varying case or the spelling of an internationalised
domain:

* the local part is lower-cased and must be an RFC 5321 dot-atom of ASCII
  characters (quoted local parts and non-ASCII local parts are refused: no
  administration issues them, and each is a source of look-alikes);
* the domain is converted with IDNA 2008 / UTS 46 to its ASCII form
  (A-labels, lower case); it needs at least two labels of letters, digits
  and hyphens.

A domain rule is either an exact domain (``interieur.gouv.fr``) or a suffix
rule (``*.gouv.fr``) that matches every domain strictly below it — not
``gouv.fr`` itself; list both if both are meant.

Names shown to people (display names, device and authority names) are
NFC-normalised and refuse invisible and control characters, which could make
one name look like another.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Final

import idna

from p2ptchap.core.errors import UsageError

MAX_EMAIL_LENGTH: Final = 254
MAX_DISPLAY_NAME: Final = 100
# Cc/Cf: controls and invisible formatting (bidi overrides); Zl/Zp: line
# and paragraph separators; Cs/Co/Cn: surrogates, private use, unassigned.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Default-ignorable characters (Unicode DerivedCoreProperties) that are not
# already in the categories above: they draw nothing, so "Alice" and
# "Al<filler>ice" would look the same.
_INVISIBLE: Final = frozenset(
    chr(c)
    for first, last in (
        (0x034F, 0x034F),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFFA0, 0xFFA0),
        (0xE0100, 0xE01EF),
    )
    for c in range(first, last + 1)
)
# Characters that would let a name pass for an address in "Name <address>".
_ADDRESS_SYNTAX: Final = frozenset("<>@")
# Domain labels shown in Unicode only when every character is ASCII or a
# Latin letter (French and European accents); other scripts contain letters
# that look like Latin ones (Cyrillic "і"), so those domains stay in A-labels.
_LATIN_RANGE: Final = range(0x00C0, 0x0250)
_LOCAL_PART: Final = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class InvalidAddress(UsageError):
    """An e-mail address or domain rule that cannot be normalised."""

    default_message = "This is not a valid professional e-mail address."


def normalise_domain(domain: str) -> str:
    """Return the ASCII, lower-case form of ``domain``; raise :class:`InvalidAddress`."""
    if not domain or len(domain) > 253 or domain.endswith("."):
        raise InvalidAddress(f"invalid domain {domain!r}")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidAddress(f"invalid domain {domain!r}: {exc}") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253:
        raise InvalidAddress(f"domain {domain!r} needs at least two labels")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise InvalidAddress(f"invalid label {label!r} in domain {domain!r}")
    if labels[-1].isdigit():
        raise InvalidAddress(f"domain {domain!r} looks like an IP address")
    return ascii_domain


def normalise_email(address: str) -> str:
    """Return the normalised form of ``address``; raise :class:`InvalidAddress`.

    Normalisation is idempotent: a normalised address normalises to itself.
    """
    if not isinstance(address, str):
        raise InvalidAddress("address is not text")
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > MAX_EMAIL_LENGTH:
        raise InvalidAddress(f"{address!r} is not of the form name@domain")
    # Checked before lower-casing: some non-ASCII characters lower-case to
    # ASCII (KELVIN SIGN to "k"), which would let look-alikes through.
    if not local.isascii():
        raise InvalidAddress(f"non-ASCII local part in {address!r}")
    local = local.lower()
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise InvalidAddress(f"invalid local part in {address!r}")
    normalised = f"{local}@{normalise_domain(domain)}"
    if len(normalised) > MAX_EMAIL_LENGTH:
        raise InvalidAddress(f"{address!r} is too long")
    return normalised


def email_domain(normalised: str) -> str:
    """The domain of an already normalised address."""
    return normalised.rpartition("@")[2]


def display_email(normalised: str) -> str:
    """The address as people read it.

    Each domain label is shown in Unicode when it only uses ASCII and Latin
    letters (``préfecture.fr``), and in its ASCII form otherwise
    (``xn--nterieur-shh.gouv.fr``), so that no look-alike from another
    script can pass for a familiar domain.
    """
    local, _, domain = normalised.rpartition("@")
    labels = []
    for label in domain.split("."):
        try:
            unicode_label = idna.decode(label)
        except (idna.IDNAError, UnicodeError):
            unicode_label = label
        if all(c.isascii() or ord(c) in _LATIN_RANGE for c in unicode_label):
            labels.append(unicode_label)
        else:
            labels.append(label)
    return f"{local}@{'.'.join(labels)}"


@dataclasses.dataclass(frozen=True, slots=True)
class DomainRule:
    """One agent domain of an authority: exact, or ``*.`` suffix."""

    domain: str
    subdomains: bool

    @classmethod
    def parse(cls, text: str) -> DomainRule:
        """Parse ``example.fr`` or ``*.example.fr``; raise :class:`InvalidAddress`."""
        text = text.strip()
        if text.startswith("*."):
            return cls(normalise_domain(text[2:]), subdomains=True)
        if "*" in text:
            raise InvalidAddress(f"a wildcard is only allowed as '*.' prefix: {text!r}")
        return cls(normalise_domain(text), subdomains=False)

    def matches(self, domain: str) -> bool:
        """Whether the normalised ``domain`` is covered by this rule."""
        if self.subdomains:
            return domain.endswith("." + self.domain)
        return domain == self.domain

    def overlaps(self, other: DomainRule) -> bool:
        """Whether some domain is matched by both rules."""
        if self.subdomains and other.subdomains:
            return (
                self.domain == other.domain
                or self.domain.endswith("." + other.domain)
                or other.domain.endswith("." + self.domain)
            )
        if self.subdomains:
            return self.matches(other.domain)
        if other.subdomains:
            return other.matches(self.domain)
        return self.domain == other.domain

    def __str__(self) -> str:
        return f"*.{self.domain}" if self.subdomains else self.domain


def normalise_display_name(name: str, max_length: int = MAX_DISPLAY_NAME) -> str:
    """NFC-normalised, stripped name; raise :class:`UsageError` if unusable.

    Accents are kept.  Control and format characters (including bidirectional
    overrides, which can make one name look like another) are refused.
    """
    if not isinstance(name, str):
        raise UsageError("name is not text")
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > max_length:
        raise UsageError(
            f"name must be 1 to {max_length} characters",
            user_message="The name must be between 1 and {max_length} characters long.",
            max_length=max_length,
        )
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES or c in _INVISIBLE for c in name):
        raise UsageError(
            "name contains control or invisible characters",
            user_message="The name contains invisible or control characters.",
        )
    if any(c in _ADDRESS_SYNTAX for c in name):
        raise UsageError(
            "name contains address syntax",
            user_message="The name must not contain the characters < > or @.",
        )
    return name

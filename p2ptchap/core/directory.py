"""The people directory: every valid account certificate seen, searchable by name or e-mail.

Searching is case- and accent-insensitive ("helene dupont" finds
"Hélène Dupont"): names and queries are folded (NFKD, combining marks
removed, case-folded) and split into words; an entry matches when every word
of the query is the beginning of one of its words (first name, last name,
parts of the e-mail address).  Results are sorted by display name.

The directory holds verified certificates only; who may search it (agents
only: Tchap's rule keeps externals from browsing the agents' directory) is
decided by the caller, see :func:`may_search`.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable

from p2ptchap.core.identity import AccountCertificate, Kind
from p2ptchap.core.keys import AccountKey

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case, without accents: ``"Hélène-Éloïse"`` → ``"helene-eloise"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The folded words of ``text`` (letters and digits; ``.``, ``-``, ``@`` separate)."""
    return _WORD.findall(fold(text))


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One person in the directory."""

    account: AccountKey
    email: str
    name: str
    kind: Kind
    words: tuple[str, ...]

    @property
    def is_external(self) -> bool:
        return self.kind is Kind.EXTERNAL


def may_search(kind: Kind) -> bool:
    """Whether an account of this kind may browse the people directory."""
    return kind is Kind.AGENT


class PeopleDirectory:
    """Accounts by key, with an index of folded words."""

    def __init__(self, certificates: Iterable[AccountCertificate] = ()) -> None:
        self._entries: dict[AccountKey, Entry] = {}
        for certificate in certificates:
            self.add(certificate)

    def add(self, certificate: AccountCertificate) -> None:
        """Add or replace (a newer certificate of the same account) an entry."""
        local = certificate.email.rpartition("@")[0]
        entry = Entry(
            certificate.account_key,
            certificate.email,
            certificate.display_name,
            certificate.kind,
            tuple(dict.fromkeys([*words(certificate.display_name), *words(local)])),
        )
        self._entries[certificate.account_key] = entry

    def get(self, account: AccountKey) -> Entry | None:
        return self._entries.get(account)

    def search(self, query: str, limit: int = 50) -> list[Entry]:
        """Entries matching every word of ``query`` (see the module documentation)."""
        wanted = words(query)
        if not wanted:
            return []
        folded_query = fold(query.strip())
        found = [
            entry
            for entry in self._entries.values()
            if entry.email == folded_query
            or all(any(w.startswith(q) for w in entry.words) for q in wanted)
        ]
        return sorted(found, key=lambda e: (fold(e.name), e.email))[:limit]

    def __len__(self) -> int:
        return len(self._entries)

"""The people directory: accent- and case-insensitive search, externals marked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core.directory import PeopleDirectory, fold, may_search, words
from p2ptchap.core.identity import Kind
from tests.conftest import Org, make_org, make_rng


def directory(org: Org) -> PeopleDirectory:
    people = [
        ("helene.dupont@x.gouv.fr", "Hélène Dupont", Kind.AGENT),
        ("h.dupond@x.gouv.fr", "Hervé Dupond", Kind.AGENT),
        ("jean-marc.leclerc@y.gouv.fr", "Jean-Marc Leclerc", Kind.AGENT),
        ("claire@croix-rouge.fr", "Claire Durand", Kind.EXTERNAL),
    ]
    return PeopleDirectory(org.member(e, n, kind=k).account for e, n, k in people)


def names(found: list) -> list[str]:  # type: ignore[type-arg]
    return [entry.name for entry in found]


def test_first_and_last_names_without_accents_or_case(org: Org) -> None:
    people = directory(org)
    assert names(people.search("helene dupont")) == ["Hélène Dupont"]
    assert names(people.search("DUPONT hélène")) == ["Hélène Dupont"]
    assert names(people.search("dup")) == ["Hélène Dupont", "Hervé Dupond"]
    assert names(people.search("jean marc")) == ["Jean-Marc Leclerc"]
    assert names(people.search("leclerc")) == ["Jean-Marc Leclerc"]
    assert people.search("dupont zorro") == []
    assert people.search("   ") == []


def test_by_email_and_externals_are_marked(org: Org) -> None:
    people = directory(org)
    assert names(people.search("h.dupond@x.gouv.fr")) == ["Hervé Dupond"]
    found = people.search("claire")
    assert names(found) == ["Claire Durand"] and found[0].is_external
    assert may_search(Kind.AGENT) and not may_search(Kind.EXTERNAL)


def test_folding() -> None:
    assert fold("Hélène-Éloïse ŒUVRE") == "helene-eloise œuvre"
    assert words("Jean-Marc.L'Héritier") == ["jean", "marc", "l", "heritier"]


@given(st.text(max_size=40))
def test_any_query_returns_only_entries_that_match_every_word(query: str) -> None:
    for entry in _PEOPLE.search(query):
        assert entry.email == fold(query.strip()) or all(
            any(w.startswith(q) for w in entry.words) for q in words(query)
        )


# Built once: hypothesis calls the test many times.
_PEOPLE = directory(make_org(make_rng(4)))

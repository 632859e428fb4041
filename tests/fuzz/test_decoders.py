"""Every decoder of untrusted bytes against random, mutated and re-signed input.

For each :class:`~tests.fuzz.formats.Format`:

1. arbitrary bytes raise only the decoder's typed errors;
2. mutations of its valid seeds — byte-level damage, and structural changes
   of the decoded value re-encoded canonically or not, and *signed again*
   for signed formats so that they reach the checks behind the signature —
   raise a typed error or give a value that encodes back to exactly the
   input (the decoders accept one encoding per value); of byte-level
   damage to a signed format, only the seed itself passes;
3. the seeds themselves are accepted and encode back to themselves, which
   is what makes (2) meaningful.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.fuzz.formats import BY_NAME, FORMATS, Format
from tests.fuzz.mutations import encodings, mutated_bytes, mutated_value
from tests.fuzz.support import Accepted, attempt, fuzz

NAMES = [f.name for f in FORMATS]
STRUCTURED = [f.name for f in FORMATS if f.structured]


def check(fmt: Format, data: bytes) -> Accepted[object] | None:
    """Decode ``data``; on success check the value encodes back to ``data``."""
    result = attempt(lambda: fmt.parse(data), fmt.errors)
    if not isinstance(result, Accepted):
        return None
    if fmt.encode is not None:
        assert fmt.encode(result.value) == data, "accepted input is not its value's encoding"
    again = attempt(lambda: fmt.parse(data), fmt.errors)
    assert again == result, "decoding is not deterministic"
    return result


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name: str) -> None:
    fmt = BY_NAME[name]
    assert fmt.seeds()
    for seed in fmt.seeds():
        assert check(fmt, seed) is not None, f"{name}: a valid seed was refused"


@pytest.mark.parametrize("name", NAMES)
@fuzz(40)
@given(data=st.data())
def test_arbitrary_bytes(name: str, data: st.DataObject) -> None:
    fmt = BY_NAME[name]
    # Random bytes, and random bytes behind a valid seed's first bytes (so
    # that some get past the first head).
    seed = data.draw(st.sampled_from(fmt.seeds()))
    prefix = seed[: data.draw(st.integers(0, min(len(seed), 40)))]
    check(fmt, prefix + data.draw(st.binary(max_size=300)))


def admissible(fmt: Format, data: bytes) -> bytes:
    assume(fmt.admissible(data))
    return data


@pytest.mark.parametrize("name", NAMES)
@fuzz(80)
@given(data=st.data())
def test_byte_mutations_of_valid_input(name: str, data: st.DataObject) -> None:
    fmt = BY_NAME[name]
    seeds = tuple(fmt.seeds())
    seed = data.draw(st.sampled_from(seeds))
    mutated = admissible(fmt, data.draw(mutated_bytes(seed, seeds)))
    if check(fmt, mutated) is not None and fmt.signed:
        assert mutated in seeds, "a damaged signed input was accepted"


@pytest.mark.parametrize("name", STRUCTURED)
@fuzz(80)
@given(data=st.data())
def test_structural_mutations_signed_again(name: str, data: st.DataObject) -> None:
    fmt = BY_NAME[name]
    seed = data.draw(st.sampled_from(fmt.seeds()))
    value = data.draw(mutated_value(fmt.unwrap(seed)))
    check(fmt, admissible(fmt, fmt.wrap(data.draw(encodings(value)))))

"""What every fuzz test shares: the profile in force and the "typed errors only" check.

A decoder fed hostile bytes may do exactly two things: return a value, or
raise one of the typed errors its documentation names (all of them
:class:`~p2ptchap.core.errors.P2PTchapError`, with a ``user_message`` that
renders).  :func:`attempt` runs a call and lets anything else escape, so
hypothesis reports and shrinks it as a failure.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from hypothesis import settings

from p2ptchap.core.errors import P2PTchapError

SHORT: Final = "p2ptchap-fuzz-ci"
LONG: Final = "p2ptchap-fuzz-long"
#: How many times more examples the long profile runs than the CI one.
LONG_FACTOR: Final = 50

T = TypeVar("T")


def profile_name() -> str:
    """The profile ``P2PTCHAP_FUZZ`` selects (``long``, else the CI one)."""
    return LONG if os.environ.get("P2PTCHAP_FUZZ", "ci").strip().lower() == "long" else SHORT


def factor() -> int:
    """Examples multiplier: ``P2PTCHAP_FUZZ_FACTOR`` if set, else 1 (CI) or 50 (long)."""
    explicit = os.environ.get("P2PTCHAP_FUZZ_FACTOR")
    if explicit:
        return max(1, int(explicit))
    return LONG_FACTOR if profile_name() == LONG else 1


def fuzz(examples: int, **overrides: object) -> settings:
    """Settings for a fuzz test: ``examples`` in CI, times :func:`factor` by hand."""
    try:
        parent = settings.get_profile(profile_name())
    except Exception:  # imported outside pytest (a script): no profile registered
        parent = settings(deadline=None)
    return settings(parent, max_examples=examples * factor(), **overrides)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Accepted(Generic[T]):
    value: T


@dataclasses.dataclass(frozen=True)
class Refused:
    error: P2PTchapError


def check_error(error: BaseException) -> None:
    """A typed error must be a :class:`P2PTchapError` whose message renders."""
    assert isinstance(error, P2PTchapError), f"untyped error {type(error).__name__}: {error}"
    rendered = error.render()
    assert isinstance(rendered, str) and rendered, "an error without a message for the user"


def attempt(
    call: Callable[[], T], allowed: tuple[type[BaseException], ...]
) -> Accepted[T] | Refused:
    """Run ``call``: its value, or the ``allowed`` error it raised; anything else escapes."""
    try:
        return Accepted(call())
    except allowed as error:
        check_error(error)
        assert isinstance(error, P2PTchapError)
        return Refused(error)

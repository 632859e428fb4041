"""Hypothesis profiles of the fuzzing suite: short in CI, long by hand.

``P2PTCHAP_FUZZ`` selects the profile: unset (or ``ci``) for the short run
CI does on every submission — the whole of ``tests/fuzz`` within a minute on
a 2-core machine — and ``long`` for a run by hand with many more examples
and no deadline (see ``tests/fuzz/README.md``).

The profiles are *not* loaded globally: loading one here would change the
settings of every other test of the session.  Each fuzz test takes them
through :func:`tests.fuzz.support.fuzz`, which scales the test's own example
count by the profile's factor.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.fuzz.support import LONG, SHORT

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(SHORT, deadline=None, suppress_health_check=_CHECKS, print_blob=True)
settings.register_profile(LONG, deadline=None, suppress_health_check=_CHECKS, print_blob=True)

"""Test-wide setup: tests/ on sys.path (for strategies.py) and the Hypothesis profiles.

HYPOTHESIS_PROFILE picks how hard the property tests try: `ci` (default; the whole suite stays
well inside CI's 15-minute budget), `dev` (a quick local pass) or `thorough` (nightly / before a
release).  Tests never hard-code `max_examples`: a slow property asks for a fraction of the
profile's count with `strategies.examples(f)`.
"""

import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/strategies.py

_RELAXED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_RELAXED)
settings.register_profile("dev", max_examples=15, deadline=None, suppress_health_check=_RELAXED)
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

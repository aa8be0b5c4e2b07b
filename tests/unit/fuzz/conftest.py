"""Hypothesis profiles for the fuzz targets.

`ci` (the default, what `make test` runs) keeps each target to a bounded number of
examples; `long` is what `make fuzz` (bench/fuzz.py) runs. Select with HYPOTHESIS_PROFILE.
No example database is kept: failures are pinned as @example in the tests instead.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=200, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(
    "long", max_examples=int(os.environ.get("HEADWATER_FUZZ_EXAMPLES", "5000")), **_COMMON
)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

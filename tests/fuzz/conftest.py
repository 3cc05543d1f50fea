"""Hypothesis profiles for the parser fuzzing suite.

- "default" (make test): a bounded number of examples per property so the whole folder runs
  in about a minute on 2 cores; derandomized, so CI runs the same inputs every time and a
  failure reproduces locally with the same command.
- "fuzz" (make fuzz, HYPOTHESIS_PROFILE=fuzz): many more random examples, a fresh seed each
  run (printed by hypothesis on failure with @reproduce_failure / --hypothesis-seed).

No deadline in either: the machine is shared and timing is not what these tests check.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=150,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

"""Hypothesis profiles for the parser fuzzing suite.

- "default" (make test): a bounded number of examples per property so the whole folder runs
  in about a minute on 2 cores; derandomized, so CI runs the same inputs every time and a
  failure reproduces locally with the same command.
- "fuzz" (make fuzz, HYPOTHESIS_PROFILE=fuzz): many more random examples, a fresh seed each
  run; a failure prints its @reproduce_failure blob and is kept in .hypothesis/ (git-ignored),
  so the next run tries it first. Pin a run with `pytest tests/fuzz --hypothesis-seed=N`.

No deadline in either: the machine is shared and timing is not what these tests check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=300,
    derandomize=True,
    database=None,  # nothing carried between runs: CI tests the same inputs every time
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
HERE = Path(__file__).resolve().parent
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long run takes minutes per property: the suite-wide pytest-timeout (300 s) would
    stop it half way, so it is lifted for this folder under the fuzz profile only."""
    if PROFILE == "fuzz":
        for item in items:
            if HERE in item.path.parents:
                item.add_marker(pytest.mark.timeout(0))

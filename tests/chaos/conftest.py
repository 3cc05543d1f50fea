"""Module-scoped chaos stacks: each test module shares one whole Herald stack (its faults
restart what they kill), started from nothing in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.chaos import scale as scales
from tests.chaos.harness import ChaosStack


@pytest.fixture(scope="module")
def scale() -> scales.Scale:
    return scales.current()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          scale: scales.Scale) -> Iterator[ChaosStack]:
    sim_env = getattr(request.module, "SIM_ENV", {})
    cs = ChaosStack(tmp_path_factory.mktemp("chaos"), scale, sim_env)
    cs.start()
    yield cs
    cs.stop()


@pytest.fixture(scope="module")
async def cs(stack: ChaosStack) -> AsyncIterator[ChaosStack]:
    stack.connect()
    yield stack
    await stack.close()

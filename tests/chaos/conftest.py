"""One chaos stack for the whole folder (package scope): every fault restarts what it kills,
so the tests share the stack, started from nothing in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.chaos import scale as scales
from tests.chaos.harness import ChaosStack


@pytest.fixture(scope="package")
def scale() -> scales.Scale:
    return scales.current()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, scale: scales.Scale) -> Iterator[ChaosStack]:
    cs = ChaosStack(tmp_path_factory.mktemp("chaos"), scale)
    cs.start()
    yield cs
    cs.stop()


@pytest.fixture(scope="package")
async def cs(stack: ChaosStack) -> AsyncIterator[ChaosStack]:
    stack.connect()
    yield stack
    await stack.close()

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from cli import procs
from tests.integration.campaigns_harness import Harness, start_harness, start_recipients


@pytest.fixture(scope="session")
def campaign_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A private NATS and the real recipients service for the campaigns tests."""
    work = tmp_path_factory.mktemp("campaign-servers")
    nats = procs.start_nats(work / "nats")
    rec = start_recipients(work, nats.info["url"])
    yield nats.info["url"], f"127.0.0.1:{rec.info['grpc_port']}"
    rec.stop()
    nats.stop()


@pytest.fixture
async def h(fresh_db_url: str, campaign_servers: tuple[str, str]) -> AsyncIterator[Harness]:
    harness = await start_harness(fresh_db_url, *campaign_servers)
    yield harness
    await harness.close()

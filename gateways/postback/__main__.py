"""`python -m gateways.postback`: the postback gateway process (gRPC health/reflection,
/metrics, jobs.postback -> HTTP POSTs). Ready line (HERALD_READY_FILE): {"service":
"postback-gateway", "grpc_port", "metrics_port"}."""

from __future__ import annotations

from typing import Any

from gateways.core import process
from gateways.core.markers import MarkerKeys, SendMarkers
from gateways.core.runtime import Runtime, RuntimeConfig
from gateways.postback import settings
from gateways.postback.channel import SPEC, PostbackChannel
from shared import production

NAME = "postback-gateway"
DURABLE = "postback"
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER]


class PostbackProcess:
    def __init__(self, conn: process.Connections) -> None:
        self.channel = PostbackChannel(settings.TIMEOUT.get_float(), settings.CONCURRENCY.get_int())
        markers = SendMarkers(conn.redis, settings.MARKER_TTL.get_int(),
                              keys=MarkerKeys.for_channel(self.channel.name))
        self.runtime = Runtime(conn.js, markers, self.channel, RuntimeConfig(
            DURABLE, SPEC.subject, policy=settings.RUNTIME.retry_policy()))

    async def run(self, stop: Any) -> None:
        await self.runtime.run(stop)

    async def ready(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        await self.channel.close()


async def main() -> None:
    await process.serve(NAME, PostbackProcess, stopping="stopping: finishing the posts in hand")


if __name__ == "__main__":
    process.main(NAME, REQUIREMENTS, main)

"""`python -m gateways.smpp`: the SMPP gateway process (gRPC health/reflection, /metrics,
JetStream jobs -> SMSC, receipts -> events)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateways.core import process
from gateways.smpp import routes, settings
from gateways.smpp.gateway import Gateway, GatewayConfig
from shared import production

NAME = "smpp-gateway"
# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER,
                production.need(settings.ROUTES, settings.HOST,
                                fallback="an SMSC on the loopback interface")]


class SmppProcess:
    def __init__(self, conn: process.Connections) -> None:
        self.route_cfgs = routes.load()
        self.gateway = Gateway(conn.js, conn.redis, self.route_cfgs, GatewayConfig.from_settings())

    async def run(self, stop: asyncio.Event) -> None:
        await self.gateway.run(stop)

    async def ready(self) -> dict[str, Any]:
        # Ready once bound if the SMSC answers promptly; a gateway that cannot bind still
        # starts (it keeps retrying) and says so in its ready line.
        timeout = max(r.client.response_timeout for r in self.route_cfgs)
        bound = await self.gateway.wait_bound(timeout)
        first = self.route_cfgs[0].client
        return {"smpp_bound": bound, "smsc": f"{first.host}:{first.port}",
                "routes": [r.name for r in self.route_cfgs]}

    async def close(self) -> None:
        """The gateway unbinds and lets its liveness key go when its run ends."""


async def main() -> None:
    await process.serve(NAME, SmppProcess,
                        redis_max_connections=settings.REDIS_MAX_CONNECTIONS.get_int(),
                        stopping="stopping: finishing the jobs in hand, then unbinding")


if __name__ == "__main__":
    process.main(NAME, REQUIREMENTS, main, uvloop=True)

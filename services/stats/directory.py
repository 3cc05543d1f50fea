"""Which workspace owns a campaign: the aggregator's record (from events) first, else
CampaignService.GetCampaign asked in the caller's workspace, whose positive answer is
cached in that record. Stats never answers zeros for a campaign nobody showed it."""

from __future__ import annotations

import logging

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc

from services.stats.aggregator import Aggregator
from shared import auth, tls
from shared.errors import HeraldError, not_found

log = logging.getLogger("herald.stats.directory")
LOOKUP_TIMEOUT = 5.0  # seconds; the caller's own deadline wins when it is shorter


def unavailable(campaign_id: str) -> HeraldError:
    return HeraldError(grpc.StatusCode.UNAVAILABLE,
                       f"cannot tell whether campaign {campaign_id} exists: the campaigns "
                       "service did not answer; retry")


class CampaignDirectory:
    def __init__(self, agg: Aggregator, campaigns_addr: str) -> None:
        self.agg = agg
        self.addr = campaigns_addr
        # Read now, so a bad TLS file stops the process at start-up, not at the first lookup.
        self._credentials = tls.client_credentials()
        self._channel: grpc.aio.Channel | None = None
        self._stub: cgrpc.CampaignServiceStub | None = None

    def campaigns(self) -> cgrpc.CampaignServiceStub:
        # Opened on first use: the channel belongs to the serving event loop.
        if self._stub is None:
            self._channel = tls.open_channel(self.addr, self._credentials)
            self._stub = cgrpc.CampaignServiceStub(self._channel)
        return self._stub

    async def owner(self, campaign_id: str, *, token: str | None = None,
                    deadline: float | None = None) -> str:
        """The owning workspace of campaign_id as far as the caller may know it.

        Raises NOT_FOUND when CampaignService does not know the campaign in the caller's
        workspace, UNAVAILABLE when it cannot be asked. `token` forwards the caller's own
        bearer token (a master reads across workspaces, which the service token may not)."""
        known = await self.agg.owner(campaign_id)
        if known:
            return known
        principal = auth.current()
        timeout = LOOKUP_TIMEOUT if deadline is None else max(min(deadline, LOOKUP_TIMEOUT), 0.05)
        try:
            cp = await self.campaigns().GetCampaign(
                cpb.GetCampaignRequest(id=campaign_id), timeout=timeout,
                metadata=auth.call_metadata(workspace=principal.workspace, token=token))
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise not_found("campaign", campaign_id) from None
            log.warning("campaign lookup failed", extra={
                "campaign_id": campaign_id, "code": err.code().name, "detail": err.details()})
            raise unavailable(campaign_id) from None
        owner = cp.workspace_id or principal.workspace
        await self.agg.record_owner(campaign_id, owner)
        return await self.agg.owner(campaign_id) or owner

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None

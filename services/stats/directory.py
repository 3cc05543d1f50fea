"""Which workspace owns a campaign: the aggregator's record (from events) first, else
CampaignService.GetCampaign asked in the caller's workspace, whose positive answer is
cached in that record (with the campaign's lifecycle status, when stats had none). Stats
never answers zeros for a campaign nobody showed it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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
    def __init__(self, agg: Aggregator, campaigns_addr: str,
                 stream_position: Callable[[], Awaitable[int]] | None = None) -> None:
        self.agg = agg
        self.addr = campaigns_addr
        # The EVENTS stream's last sequence: a status learnt from CampaignService is as of
        # then (the message events behind it are on the bus by then). None: not known.
        self.stream_position = stream_position
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
        return await self.learn(campaign_id, token=token, deadline=deadline)

    async def learn(self, campaign_id: str, *, token: str | None = None,
                    deadline: float | None = None) -> str:
        """Asks CampaignService about the campaign and records its owner and lifecycle status
        (the time of its last transition; events decide from then on). Answers the owner;
        raises like owner()."""
        principal = auth.current()
        seq = 0
        if self.stream_position is not None:
            try:
                seq = await self.stream_position()
            except Exception as exc:  # the bus is away: recorded without a position
                log.warning("EVENTS position unknown", extra={
                    "campaign_id": campaign_id, "error_type": type(exc).__name__, "error": str(exc)})
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
        at_us = max((h.at.ToMicroseconds() for h in cp.history if h.HasField("at")), default=0)
        if cp.status:
            await self.agg.record_status(campaign_id, owner, cp.status, at_us=at_us, seq=seq)
        else:
            await self.agg.record_owner(campaign_id, owner)
        return await self.agg.owner(campaign_id) or owner

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None

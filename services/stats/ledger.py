"""Reads a campaign's messages from the ledger of record (CampaignService.ListMessages), page
by page, as the rows RebuildCampaignStats merges into Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from herald.v1 import campaigns_pb2 as cpb

from services.stats.directory import CampaignDirectory
from services.stats.rebuild import LedgerMessage
from shared import auth
from shared.errors import not_found
from shared.timeutil import from_ts

PAGE_TIMEOUT = 30.0  # seconds per ListMessages page


def _day(msg: cpb.Message, field: str) -> str:
    if not msg.HasField(field):
        return ""
    at = from_ts(getattr(msg, field))
    return at.strftime("%Y%m%d") if at else ""


def ledger_message(msg: cpb.Message) -> LedgerMessage:
    return LedgerMessage(
        message_id=msg.id.lower(), status=msg.status, attempt=msg.attempt,
        sent=msg.HasField("sent_at"), views=msg.views, clicks=msg.clicks, replies=msg.replies,
        channel=msg.channel, variant=msg.variant, created_day=_day(msg, "created_at"),
        sent_day=_day(msg, "sent_at"), delivered_day=_day(msg, "delivered_at"))


class LedgerUnavailable(Exception):
    """CampaignService did not answer a page (the rebuild stops; nothing was swapped in)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class LedgerReader:
    def __init__(self, directory: CampaignDirectory, page_size: int = 1000) -> None:
        self.directory = directory
        self.page_size = page_size

    async def pages(self, campaign_id: str, workspace: str) -> AsyncIterator[list[LedgerMessage]]:
        """The campaign's messages in ledger order (created, id), one list per page, read with
        the service's own token (it has pii) in the owning workspace. NOT_FOUND when the
        ledger does not know the campaign there; LedgerUnavailable on any other failure."""
        token = ""
        while True:
            try:
                page = await self.directory.campaigns().ListMessages(
                    cpb.ListMessagesRequest(campaign_id=campaign_id, page_size=self.page_size,
                                            page_token=token),
                    timeout=PAGE_TIMEOUT, metadata=auth.call_metadata(workspace=workspace))
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    raise not_found("campaign", campaign_id) from None
                raise LedgerUnavailable(err.code().name, err.details() or "") from None
            yield [ledger_message(m) for m in page.messages]
            token = page.next_page_token
            if not token:
                return


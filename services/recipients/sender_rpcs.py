"""RecipientService's sender RPCs: RegisterSender, ListSenders, DeleteSender (sender ids
normalised by their channel in the registry)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from herald.v1 import recipients_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recipients import boundary
from services.recipients.normalize import BadAddress
from services.recipients.senders import sender_address
from services.recipients.store import Store
from shared.errors import HeraldError, invalid, not_found
from shared.timeutil import aware, to_ts

log = logging.getLogger("herald.recipients")


def sender_pb(rec: dict[str, Any]) -> pb.Sender:
    return pb.Sender(workspace_id=rec["workspace_id"], channel=rec["channel"],
                     address=rec["address"], created_at=to_ts(aware(rec["created_at"])))


class SenderRpcs:
    store: Store

    # --- senders ------------------------------------------------------------------
    def _sender(self, channel: int, raw: str) -> str:
        boundary.channel(channel)
        try:
            return sender_address(channel, raw)
        except BadAddress as exc:
            raise invalid({"address": str(exc)}) from exc

    async def RegisterSender(self, request: pb.RegisterSenderRequest,
                             context: grpc.aio.ServicerContext) -> pb.Sender:
        """Registers an SMS source address or an email From domain ("Name <a@domain>", an
        address or the bare domain) to the caller's workspace. Registering one the workspace
        already holds answers it again; one another workspace holds is ALREADY_EXISTS."""
        p = boundary.principal()
        p.require("admin")
        fp = boundary.request_id("RegisterSender", request)
        address = self._sender(request.channel, request.address)

        async def work(conn: AsyncConnection) -> pb.Sender:
            rec = await self.store.claim_sender(conn, p.workspace, request.channel, address)
            if rec["workspace_id"] != p.workspace:
                raise HeraldError(grpc.StatusCode.ALREADY_EXISTS,
                                  f"sender {address} belongs to another workspace")
            return sender_pb(rec)

        sender, replayed = await self.store.mutate(p.workspace, "RegisterSender",
                                                   request.request_id, pb.Sender, work, fp)
        if not replayed:
            log.info("sender registered", extra={"workspace": p.workspace, "sender": address})
        return sender

    async def ListSenders(self, request: pb.ListSendersRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListSendersResponse:
        p = boundary.principal()
        size = boundary.page_size(request.page_size)
        channel = boundary.channel_filter(request.filter)
        query = ("ListSenders", p.workspace, channel or 0)
        offset = boundary.page_offset(request.page_token, *query)
        recs, more = await self.store.list_senders(p.workspace, size, offset, channel)
        return pb.ListSendersResponse(senders=[sender_pb(r) for r in recs],
                                      next_page_token=boundary.next_token(more, offset, size,
                                                                          *query))

    async def DeleteSender(self, request: pb.DeleteSenderRequest,
                           context: grpc.aio.ServicerContext) -> pb.Sender:
        """Releases one of the workspace's senders (another workspace's is NOT_FOUND)."""
        p = boundary.principal()
        p.require("admin")
        fp = boundary.request_id("DeleteSender", request)
        address = self._sender(request.channel, request.address)

        async def work(conn: AsyncConnection) -> pb.Sender:
            rec = await self.store.delete_sender(conn, p.workspace, request.channel, address)
            if rec is None:
                raise not_found("sender", address)
            return sender_pb(rec)

        sender, _ = await self.store.mutate(p.workspace, "DeleteSender", request.request_id,
                                            pb.Sender, work, fp)
        return sender

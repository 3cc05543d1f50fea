"""RecipientService gRPC implementation; every call is scoped to the caller's workspace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recipients import boundary, settings
from services.recipients.audience import Resolver
from services.recipients.contact_check import MAX_CATEGORY_IDS, validate_contact
from services.recipients.import_rpc import ImportRpcs
from services.recipients.metrics import (
    CONTACTS_UPSERTED,
)
from services.recipients.sender_rpcs import SenderRpcs
from services.recipients.store import ContactRow, Store
from services.recipients.suppression_rpcs import SuppressionRpcs
from services.recipients.targets import TargetChecker
from shared import auth
from shared.errors import invalid, not_found
from shared.masking import mask_phone
from shared.timeutil import aware, to_ts
from shared.validate import uuid_text

log = logging.getLogger("herald.recipients")

MAX_INLINE = 100_000
MAX_CHUNK_BYTES = 1 << 20  # an AudienceChunk stays far below gRPC's 4 MiB message limit
MAX_FIELD_PREFIX = 200


def contact_pb(rec: dict[str, Any], principal: auth.Principal) -> pb.Contact:
    return pb.Contact(
        id=rec["id"], workspace_id=rec["workspace_id"],
        phone=mask_phone(rec["phone"] or "", principal), email=rec["email"] or "",
        first_name=rec["first_name"] or "", last_name=rec["last_name"] or "",
        fields={str(k): str(v) for k, v in (rec["fields"] or {}).items()},
        category_ids=rec.get("category_ids", []), external_id=rec["external_id"] or "",
        created_at=to_ts(aware(rec["created_at"])), language=rec.get("language") or "")


def category_pb(rec: dict[str, Any]) -> pb.Category:
    return pb.Category(id=rec["id"], workspace_id=rec["workspace_id"], name=rec["name"],
                       contacts_count=int(rec.get("contacts_count", 0)))


def inline_ids(recipients: Sequence[c.Recipient], limit: int, field: str) -> None:
    if len(recipients) > limit:
        raise invalid({field: f"at most {limit} recipients per call"})


class RecipientServicer(ImportRpcs, SuppressionRpcs, SenderRpcs, pb_grpc.RecipientServiceServicer):
    """RecipientService.

    Roles: any member reads (GetContact, ListContacts, ListCategories, ListSuppressions,
    ListSenders, ResolveAudience, ValidateTargets); operator and service write contacts,
    categories and suppressions; admin registers and deletes senders and removes opt-outs and
    complaints from the suppression list. Phone numbers are masked
    unless the caller has pii (ResolveAudience shows them to services, which send to them).

    Suppressed addresses come out of ResolveAudience rejected, worded by why they are on the
    list: an opt-out "has unsubscribed" and a spam complaint "reported spam" (both
    FAILURE_CATEGORY_UNSUBSCRIBED, so the ledger shows OPTED_OUT); a hard bounce "bounced" with
    the server's reason (FAILURE_CATEGORY_INVALID_ADDRESS: the mailbox does not exist, the
    message FAILED); an entry added with AddSuppression "is on the suppression list" with its
    reason (UNSUBSCRIBED). rejection_reason carries the full address to services and pii
    callers (the campaigns ledger masks it at read time), masked phone numbers to others.

    Every request_id (UpsertContacts, CreateCategory, UpdateCategory, DeleteCategory,
    AddSuppression, RemoveSuppression, RegisterSender, DeleteSender) follows AIP-155: at most 128 characters; a retry with the same body gets the
    first answer; the same request_id with another body is INVALID_ARGUMENT naming request_id.
    Page tokens are bound to their list, workspace, filter and order."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- contacts -----------------------------------------------------------------
    async def UpsertContacts(self, request: pb.UpsertContactsRequest,
                             context: grpc.aio.ServicerContext) -> pb.UpsertContactsResponse:
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("UpsertContacts", request)
        limit = settings.MAX_UPSERT.get_int()
        if not request.contacts:
            raise invalid({"contacts": "at least one contact is required"})
        if len(request.contacts) > limit:
            raise invalid({"contacts": f"at most {limit} contacts per call"})
        region = settings.DEFAULT_REGION.get()
        # libphonenumber + email-validator cost ~0.1 ms a row: big imports run in a thread so
        # other calls keep being served meanwhile.
        checked = await asyncio.to_thread(
            lambda: [validate_contact(ct, i, region) for i, ct in enumerate(request.contacts)])
        valid = [r for r in checked if isinstance(r, ContactRow)]

        async def work(conn: AsyncConnection) -> pb.UpsertContactsResponse:
            outcomes = {o.index: o for o in await self.store.upsert_contacts(conn, p.workspace, valid)}
            resp = pb.UpsertContactsResponse()
            for i, row in enumerate(checked):
                if isinstance(row, str):
                    resp.results.add(index=i, error=row)
                    continue
                o = outcomes[i]
                resp.results.add(index=i, contact_id=o.contact_id, created=o.created, error=o.error)
            for res in resp.results:
                if res.error:
                    resp.rejected += 1
                elif res.created:
                    resp.created += 1
                else:
                    resp.updated += 1
            return resp

        resp, replayed = await self.store.mutate(p.workspace, "UpsertContacts",
                                                 request.request_id, pb.UpsertContactsResponse,
                                                 work, fp)
        if not replayed:
            self.store.note_imported(resp.created + resp.updated)
            for result, n in (("created", resp.created), ("updated", resp.updated),
                              ("rejected", resp.rejected)):
                if n:
                    CONTACTS_UPSERTED.labels(result).inc(n)
            log.info("contacts upserted", extra={
                "workspace": p.workspace, "n_created": resp.created, "n_updated": resp.updated,
                "n_rejected": resp.rejected})
        return resp

    async def GetContact(self, request: pb.GetContactRequest,
                         context: grpc.aio.ServicerContext) -> pb.Contact:
        p = boundary.principal()
        if not request.id:
            raise invalid({"id": "required"})
        boundary.require({"id": uuid_text(request.id)})
        rec = await self.store.get_contact(p.workspace, request.id)
        if rec is None:  # another workspace's contact looks exactly like a missing one
            raise not_found("contact", request.id)
        return contact_pb(rec, p)

    async def ListContacts(self, request: pb.ListContactsRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListContactsResponse:
        p = boundary.principal()
        size = boundary.page_size(request.page_size)
        category = boundary.parse_filter(request.filter, "category_id", "category_id=<id>")
        if category is not None and uuid_text(category) is not None:
            raise invalid({"filter": "category_id must be a category id (a UUID)"})
        order = " ".join(request.order_by.lower().split())
        if order not in ("", "created_at", "created_at asc", "created_at desc"):
            raise invalid({"order_by": "supported: created_at, created_at desc"})
        descending = order == "created_at desc"
        query = ("ListContacts", p.workspace, category or "", descending)
        offset = boundary.page_offset(request.page_token, *query)
        recs, more, total = await self.store.list_contacts(p.workspace, size, offset, category,
                                                           descending)
        return pb.ListContactsResponse(contacts=[contact_pb(r, p) for r in recs],
                                       next_page_token=boundary.next_token(more, offset, size, *query),
                                       total_size=min(total, 2**31 - 1))

    # --- categories ---------------------------------------------------------------
    async def CreateCategory(self, request: pb.CreateCategoryRequest,
                             context: grpc.aio.ServicerContext) -> pb.Category:
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("CreateCategory", request)
        name = request.name.strip()
        if not name:
            raise invalid({"name": "required"})
        boundary.require({"name": boundary.text(name, boundary.MAX_TEXT)})

        async def work(conn: AsyncConnection) -> pb.Category:
            rec = await self.store.create_category(conn, p.workspace, name)
            return pb.Category(id=rec["id"], workspace_id=p.workspace, name=name)

        cat, _ = await self.store.mutate(p.workspace, "CreateCategory", request.request_id,
                                         pb.Category, work, fp)
        return cat

    async def ListCategories(self, request: pb.ListCategoriesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListCategoriesResponse:
        p = boundary.principal()
        size = boundary.page_size(request.page_size)
        query = ("ListCategories", p.workspace)
        offset = boundary.page_offset(request.page_token, *query)
        counted = request.view != pb.CATEGORY_VIEW_BASIC
        recs, more = await self.store.list_categories(p.workspace, size, offset, counted)
        return pb.ListCategoriesResponse(categories=[category_pb(r) for r in recs],
                                         next_page_token=boundary.next_token(more, offset, size,
                                                                             *query))

    async def UpdateCategory(self, request: pb.UpdateCategoryRequest,
                             context: grpc.aio.ServicerContext) -> pb.Category:
        """Renames a category (the only field update_mask may name)."""
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("UpdateCategory", request)
        others = [x for x in request.update_mask.paths if x != "name"]
        category_id = request.category.id.lower()
        name = request.category.name.strip()
        boundary.require({
            "update_mask": f"only name can change, not {others[0][:100]!r}" if others else None,
            "category.id": uuid_text(category_id) if category_id else "required",
            "category.name": boundary.text(name, boundary.MAX_TEXT) if name else "required",
        })

        async def work(conn: AsyncConnection) -> pb.Category:
            rec = await self.store.rename_category(conn, p.workspace, category_id, name)
            if rec is None:  # another workspace's category looks exactly like a missing one
                raise not_found("category", category_id)
            return category_pb(rec)

        cat, replayed = await self.store.mutate(p.workspace, "UpdateCategory",
                                                request.request_id, pb.Category, work, fp)
        if not replayed:
            log.info("category renamed", extra={"workspace": p.workspace, "category": cat.id,
                                                "by": p.name})
        return cat

    async def DeleteCategory(self, request: pb.DeleteCategoryRequest,
                             context: grpc.aio.ServicerContext) -> pb.Category:
        """Deletes a category and its memberships; its contacts stay."""
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("DeleteCategory", request)
        category_id = request.id.lower()
        boundary.require({"id": uuid_text(category_id) if category_id else "required"})

        async def work(conn: AsyncConnection) -> pb.Category:
            rec = await self.store.delete_category(conn, p.workspace, category_id)
            if rec is None:
                raise not_found("category", category_id)
            return category_pb(rec)

        cat, replayed = await self.store.mutate(p.workspace, "DeleteCategory",
                                                request.request_id, pb.Category, work, fp)
        if not replayed:
            log.info("category deleted", extra={"workspace": p.workspace, "category": cat.id,
                                                "contacts": cat.contacts_count, "by": p.name})
        return cat

    # --- audience -----------------------------------------------------------------
    async def ResolveAudience(self, request: pb.ResolveAudienceRequest,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AudienceMember]:
        async for members in (await self._resolver(request)):
            for member in members:
                yield member

    async def ResolveAudienceChunks(self, request: pb.ResolveAudienceRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> AsyncIterator[pb.AudienceChunk]:
        """ResolveAudience's members, many per message (at most about MAX_CHUNK_BYTES)."""
        async for members in (await self._resolver(request)):
            start, size = 0, 0
            for i, member in enumerate(members):
                size += member.ByteSize() + 6  # the field's tag and length
                if size > MAX_CHUNK_BYTES and i > start:
                    yield pb.AudienceChunk(members=members[start:i])
                    start, size = i, member.ByteSize() + 6
            yield pb.AudienceChunk(members=members[start:])

    async def _resolver(self, request: pb.ResolveAudienceRequest
                        ) -> AsyncIterator[list[pb.AudienceMember]]:
        """The request checked; the audience's members, chunk by chunk."""
        p = boundary.principal()
        boundary.channel(request.channel)
        if len(request.category_ids) > MAX_CATEGORY_IDS:
            raise invalid({"category_ids": f"at most {MAX_CATEGORY_IDS}"})
        inline_ids(request.inline, MAX_INLINE, "inline")
        category_ids = list(dict.fromkeys(request.category_ids))
        boundary.require({f"category_ids[{i}]": uuid_text(x) and "not a category id (a UUID)"
                          for i, x in enumerate(request.category_ids)})
        if category_ids:
            known = await self.store.existing_categories(p.workspace, category_ids)
            boundary.require({f"category_ids[{i}]": f"unknown category {x}"
                              for i, x in enumerate(request.category_ids) if x not in known})
        # Services resolve audiences to send to, so they see real numbers.
        resolver = Resolver(self.store, p.workspace, request.channel,
                            show_pii=p.pii or "service" in p.roles)
        return resolver.resolve_chunks(category_ids, request.inline,
                                       settings.AUDIENCE_CHUNK.get_int())

    async def ValidateTargets(self, request: pb.ValidateTargetsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ValidateTargetsResponse:
        """Violations of a campaign's targets (empty = all good) and the custom field names a
        template may use: those of every contact of the workspace (kept at UpsertContacts) and
        of the inline recipients. Field paths start with the request's prefixes (defaults
        "campaign.category_ids", "recipients", "campaign.sender"). An empty sender is not
        checked (the gateway's default source / From). At most 100 violations are listed."""
        p = boundary.principal()
        boundary.channel(request.channel)
        boundary.require({name: boundary.text(getattr(request, name), MAX_FIELD_PREFIX)
                          for name in ("categories_field", "inline_field", "sender_field")})
        if len(request.category_ids) > MAX_CATEGORY_IDS:
            raise invalid({"category_ids": f"at most {MAX_CATEGORY_IDS}"})
        inline_ids(request.inline, MAX_INLINE, "inline")
        checker = TargetChecker(self.store, p.workspace, p.pii, request.channel)
        await checker.categories(request.category_ids,
                                 request.categories_field or "campaign.category_ids")
        await checker.inline(request.inline, request.inline_field or "recipients")
        await checker.sender(request.sender, request.sender_field or "campaign.sender")
        return checker.answer(await checker.field_names(request.inline))

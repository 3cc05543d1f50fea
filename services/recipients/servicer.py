"""RecipientService gRPC implementation; every call is scoped to the caller's workspace."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recipients import settings
from services.recipients.audience import Resolver
from services.recipients.metrics import CONTACTS_UPSERTED, SUPPRESSIONS_ADDED
from services.recipients.normalize import (
    BadAddress,
    match_key,
    normalise,
    normalise_email,
    normalise_phone,
)
from services.recipients.store import ContactRow, Store
from shared import auth
from shared.errors import invalid, not_found
from shared.timeutil import aware, to_ts

log = logging.getLogger("herald.recipients")

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_REQUEST_ID = 128
MAX_TEXT = 200
MAX_FIELDS = 100
WRITERS = ("operator", "service")
CHANNELS = {"SMS": c.CHANNEL_SMS, "CHANNEL_SMS": c.CHANNEL_SMS,
            "EMAIL": c.CHANNEL_EMAIL, "CHANNEL_EMAIL": c.CHANNEL_EMAIL}
_FILTER = re.compile(r'\s*(\w+)\s*=\s*"?([^"\s]*)"?\s*')


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid({"page_size": "must not be negative"})
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def parse_filter(text: str, allowed: str, example: str) -> str | None:
    """One `name=value` term (AIP-160 subset); returns the value or None if no filter."""
    if not text.strip():
        return None
    m = _FILTER.fullmatch(text)
    if m is None or m.group(1) != allowed or not m.group(2):
        raise invalid({"filter": f"supported filter: {example}"})
    return m.group(2)


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID:
        raise invalid({"request_id": f"at most {MAX_REQUEST_ID} characters"})


def check_channel(channel: int, name: str = "channel") -> None:
    if channel not in (c.CHANNEL_SMS, c.CHANNEL_EMAIL):
        raise invalid({name: "must be CHANNEL_SMS or CHANNEL_EMAIL"})


def validate_contact(ct: pb.Contact, index: int, region: str) -> ContactRow | str:
    """A normalised row, or the error naming the field(s) at fault."""
    errors: list[str] = []
    phone = email = None
    if ct.phone.strip():
        try:
            phone = normalise_phone(ct.phone, region)
        except BadAddress as exc:
            errors.append(f"phone: {exc}")
    if ct.email.strip():
        try:
            email = normalise_email(ct.email)
        except BadAddress as exc:
            errors.append(f"email: {exc}")
    external_id = ct.external_id.strip() or None
    if not (ct.phone.strip() or ct.email.strip() or external_id):
        errors.append("phone: a contact needs a phone, an email or an external_id")
    for name in ("external_id", "first_name", "last_name"):
        if len(getattr(ct, name)) > MAX_TEXT:
            errors.append(f"{name}: longer than {MAX_TEXT} characters")
    if len(ct.fields) > MAX_FIELDS:
        errors.append(f"fields: more than {MAX_FIELDS} custom fields")
    if any(not k.strip() for k in ct.fields):
        errors.append("fields: a custom field needs a name")
    if any(not x.strip() for x in ct.category_ids):
        errors.append("category_ids: empty category id")
    if errors:
        return "; ".join(errors)
    return ContactRow(index=index, external_id=external_id, phone=phone, email=email,
                      first_name=ct.first_name.strip(), last_name=ct.last_name.strip(),
                      fields=dict(ct.fields), category_ids=list(dict.fromkeys(ct.category_ids)))


def contact_pb(rec: dict[str, Any], principal: auth.Principal) -> pb.Contact:
    return pb.Contact(
        id=rec["id"], workspace_id=rec["workspace_id"],
        phone=auth.mask_phone(rec["phone"] or "", principal), email=rec["email"] or "",
        first_name=rec["first_name"] or "", last_name=rec["last_name"] or "",
        fields={str(k): str(v) for k, v in (rec["fields"] or {}).items()},
        category_ids=rec.get("category_ids", []), external_id=rec["external_id"] or "",
        created_at=to_ts(aware(rec["created_at"])))


def suppression_pb(rec: dict[str, Any], principal: auth.Principal) -> pb.Suppression:
    address = rec["address"]
    if rec["channel"] == c.CHANNEL_SMS:
        address = auth.mask_phone(address, principal)
    return pb.Suppression(workspace_id=rec["workspace_id"], channel=rec["channel"],
                          address=address, reason=rec["reason"],
                          created_at=to_ts(aware(rec["created_at"])))


class RecipientServicer(pb_grpc.RecipientServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- contacts -----------------------------------------------------------------
    async def UpsertContacts(self, request: pb.UpsertContactsRequest,
                             context: grpc.aio.ServicerContext) -> pb.UpsertContactsResponse:
        p = auth.current()
        p.require(*WRITERS)
        check_request_id(request.request_id)
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
                                                 request.request_id, pb.UpsertContactsResponse, work)
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
        p = auth.current()
        if not request.id:
            raise invalid({"id": "required"})
        rec = await self.store.get_contact(p.workspace, request.id)
        if rec is None:  # another workspace's contact looks exactly like a missing one
            raise not_found("contact", request.id)
        return contact_pb(rec, p)

    async def ListContacts(self, request: pb.ListContactsRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListContactsResponse:
        p = auth.current()
        size = page_size(request.page_size)
        category = parse_filter(request.filter, "category_id", "category_id=<id>")
        order = " ".join(request.order_by.lower().split())
        if order not in ("", "created_at", "created_at asc", "created_at desc"):
            raise invalid({"order_by": "supported: created_at, created_at desc"})
        recs, nxt, total = await self.store.list_contacts(
            p.workspace, size, request.page_token, category, order == "created_at desc")
        return pb.ListContactsResponse(contacts=[contact_pb(r, p) for r in recs],
                                       next_page_token=nxt, total_size=total)

    # --- categories ---------------------------------------------------------------
    async def CreateCategory(self, request: pb.CreateCategoryRequest,
                             context: grpc.aio.ServicerContext) -> pb.Category:
        p = auth.current()
        p.require(*WRITERS)
        check_request_id(request.request_id)
        name = request.name.strip()
        if not name:
            raise invalid({"name": "required"})
        if len(name) > MAX_TEXT:
            raise invalid({"name": f"at most {MAX_TEXT} characters"})

        async def work(conn: AsyncConnection) -> pb.Category:
            rec = await self.store.create_category(conn, p.workspace, name)
            return pb.Category(id=rec["id"], workspace_id=p.workspace, name=name)

        cat, _ = await self.store.mutate(p.workspace, "CreateCategory", request.request_id,
                                         pb.Category, work)
        return cat

    async def ListCategories(self, request: pb.ListCategoriesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListCategoriesResponse:
        p = auth.current()
        recs, nxt = await self.store.list_categories(p.workspace, page_size(request.page_size),
                                                     request.page_token)
        return pb.ListCategoriesResponse(categories=[pb.Category(
            id=r["id"], workspace_id=r["workspace_id"], name=r["name"],
            contacts_count=int(r["contacts_count"])) for r in recs], next_page_token=nxt)

    # --- audience -----------------------------------------------------------------
    async def ResolveAudience(self, request: pb.ResolveAudienceRequest,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AudienceMember]:
        p = auth.current()
        check_channel(request.channel)
        category_ids = list(dict.fromkeys(request.category_ids))
        if category_ids:
            known = await self.store.existing_categories(p.workspace, category_ids)
            missing = [x for x in category_ids if x not in known]
            if missing:
                raise invalid({"category_ids": f"unknown category {missing[0]}"})
        # Services resolve audiences to send to, so they see real numbers.
        resolver = Resolver(self.store, p.workspace, request.channel,
                            show_pii=p.pii or "service" in p.roles)
        async for member in resolver.resolve(category_ids, request.inline,
                                             settings.AUDIENCE_CHUNK.get_int()):
            yield member

    # --- suppressions -------------------------------------------------------------
    async def AddSuppression(self, request: pb.AddSuppressionRequest,
                             context: grpc.aio.ServicerContext) -> pb.Suppression:
        p = auth.current()
        p.require(*WRITERS)
        check_request_id(request.request_id)
        check_channel(request.channel)
        try:
            address = normalise(request.channel, request.address)
        except BadAddress as exc:
            raise invalid({"address": str(exc)}) from exc
        reason = request.reason.strip() or f"added by {p.name}"
        added = False

        async def work(conn: AsyncConnection) -> pb.Suppression:
            nonlocal added
            rec, added = await self.store.add_suppression(
                conn, p.workspace, request.channel, match_key(request.channel, address), reason,
                "api")
            return suppression_pb(rec, auth.Principal("store", p.workspace, pii=True))

        resp, _ = await self.store.mutate(p.workspace, "AddSuppression", request.request_id,
                                          pb.Suppression, work)
        if added:
            SUPPRESSIONS_ADDED.labels("api").inc()
        if resp.channel == c.CHANNEL_SMS:
            resp.address = auth.mask_phone(resp.address, p)
        return resp

    async def ListSuppressions(self, request: pb.ListSuppressionsRequest,
                               context: grpc.aio.ServicerContext) -> pb.ListSuppressionsResponse:
        p = auth.current()
        size = page_size(request.page_size)
        value = parse_filter(request.filter, "channel", "channel=SMS or channel=EMAIL")
        channel = None
        if value is not None:
            channel = CHANNELS.get(value.upper())
            if channel is None:
                raise invalid({"filter": "channel must be SMS or EMAIL"})
        recs, nxt = await self.store.list_suppressions(p.workspace, size, request.page_token,
                                                       channel)
        return pb.ListSuppressionsResponse(
            suppressions=[suppression_pb(r, p) for r in recs], next_page_token=nxt)

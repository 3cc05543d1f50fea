"""ValidateTargets: a campaign's categories, inline recipients and sender checked against the
caller's workspace before the campaign is stored. Answers violations; stores nothing, except
that in development mode an unknown sender is claimed for the workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb

from services.recipients import boundary
from services.recipients.audience import recipient_of
from services.recipients.normalize import BadAddress
from services.recipients.senders import sender_address
from services.recipients.store import Store
from shared import channels, config
from shared.masking import mask_text
from shared.validate import uuid_text

MAX_VIOLATIONS = 100  # the answer stays small enough to become one INVALID_ARGUMENT
MAX_FIELD_NAMES = 5000


class TargetChecker:
    def __init__(self, store: Store, workspace: str, pii: bool, channel: int) -> None:
        self.store = store
        self.ws = workspace
        self.pii = pii
        self.channel = channel
        self.spec = channels.spec(channel)
        self.noun = self.spec.address_noun
        self.field = self.spec.address_field
        self.violations: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append((field, description if self.pii else mask_text(description)))

    async def categories(self, ids: Sequence[str], prefix: str) -> None:
        wellformed = [x for x in ids if uuid_text(x) is None]
        known = await self.store.existing_categories(self.ws, wellformed) if wellformed else set()
        for i, cid in enumerate(ids):
            if uuid_text(cid) is not None:
                self.add(f"{prefix}[{i}]", f"{cid[:100]!r} is not a category id (a UUID)")
            elif cid not in known:
                self.add(f"{prefix}[{i}]", f"unknown category {cid}")

    async def inline(self, recipients: Sequence[c.Recipient], prefix: str) -> None:
        ids = [r.contact_id for r in recipients if r.contact_id and uuid_text(r.contact_id) is None]
        known = await self.store.contacts_by_ids(self.ws, ids) if ids else {}
        # Address parsing costs ~0.1 ms a row: a long list is checked off the event loop.
        await asyncio.to_thread(self._inline_rows, recipients, known, prefix)

    def _inline_rows(self, recipients: Sequence[c.Recipient], known: dict[str, dict[str, Any]],
                     prefix: str) -> None:
        spec = self.spec
        others = [s for s in channels.specs() if s is not spec]
        for i, r in enumerate(recipients):
            at = f"{prefix}[{i}]"
            raw = spec.address_of(r).strip()
            rec = None
            if r.contact_id:
                rec = known.get(r.contact_id)
                if uuid_text(r.contact_id) is not None:
                    self.add(f"{at}.contact_id", f"{r.contact_id[:100]!r} is not a contact id (a UUID)")
                elif rec is None:
                    self.add(f"{at}.contact_id", f"contact {r.contact_id} not found")
                elif not raw and not spec.address_of(recipient_of(rec)):
                    self.add(f"{at}.contact_id", f"contact {r.contact_id} has no {self.noun}")
            if raw:
                try:
                    spec.normalise_address(raw)
                except BadAddress:
                    self.add(f"{at}.{self.field}", f"The {self.noun} {raw[:320]} is incorrect")
            elif not r.contact_id:
                other = next((s for s in others if s.address_of(r).strip()), None)
                if other is not None:
                    self.add(f"{at}.{self.field}",
                             f"{spec.label_article} {spec.label} campaign needs "
                             f"{spec.an_address()}; this recipient has only {other.an_address()}")
                else:
                    self.add(at, f"needs {spec.an_address()} or a contact_id")
            for name, bad in (("fields", boundary.fields(r.fields)),
                              ("language", boundary.language(r.language)),
                              *((n, boundary.text(getattr(r, n), boundary.MAX_TEXT))
                                for n in ("first_name", "last_name", "external_id"))):
                if bad:
                    self.add(f"{at}.{name}", bad)

    async def sender(self, raw: str, field: str) -> None:
        if not raw.strip():
            return  # the gateway's configured default source / From
        try:
            address = sender_address(self.channel, raw)
        except BadAddress as exc:
            self.add(field, str(exc))
            return
        owner = await self.store.sender_owner(self.channel, address)
        if owner is None and config.DEV_MODE.get_bool():
            async with self.store.write() as conn:
                owner = (await self.store.claim_sender(conn, self.ws, self.channel,
                                                       address))["workspace_id"]
        if owner is None:
            self.add(field, f"sender {address} is not registered to this workspace "
                            "(RegisterSender)")
        elif owner != self.ws:
            self.add(field, f"sender {address} belongs to another workspace")

    async def field_names(self, recipients: Sequence[c.Recipient]) -> list[str]:
        names = set(await self.store.field_names(self.ws, MAX_FIELD_NAMES))
        names.update(k for r in recipients if boundary.fields(r.fields) is None for k in r.fields)
        return sorted(names)

    def answer(self, field_names: list[str]) -> pb.ValidateTargetsResponse:
        shown = self.violations[:MAX_VIOLATIONS]
        if len(self.violations) > MAX_VIOLATIONS:
            last_field, last = shown[-1]
            shown[-1] = (last_field, f"{last} (and {len(self.violations) - MAX_VIOLATIONS} "
                                     "more violations)")
        return pb.ValidateTargetsResponse(
            violations=[pb.FieldViolation(field=f, description=d) for f, d in shown],
            field_names=field_names)

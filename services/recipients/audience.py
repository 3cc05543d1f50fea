"""ResolveAudience: turns categories and inline recipients into a validated,
de-duplicated, suppression-checked stream of AudienceMember, chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb

from services.recipients.metrics import AUDIENCE_MEMBERS
from services.recipients.normalize import BadAddress
from services.recipients.store import Store, chunks
from services.recipients.store_audience import category_members, duplicated_addresses
from shared import channels
from shared.masking import mask_phone, mask_text
from shared.validate import uuid_text

INVALID = c.FAILURE_CATEGORY_INVALID_ADDRESS
UNSUBSCRIBED = c.FAILURE_CATEGORY_UNSUBSCRIBED


ACCEPTED_TOTAL = AUDIENCE_MEMBERS.labels("accepted")
INVALID_TOTAL = AUDIENCE_MEMBERS.labels("invalid_address")
UNSUBSCRIBED_TOTAL = AUDIENCE_MEMBERS.labels("unsubscribed")
BOUNCED_TOTAL = AUDIENCE_MEMBERS.labels("bounced")
MAX_DETAIL = 200  # characters of a suppression's stored reason quoted in a rejection


def suppression_rejection(noun: str, shown: str, kind: str, reason: str,
                          show_pii: bool) -> tuple[int, str]:
    """(category, wording) of a suppressed address, by why it is on the list.

    Opt-outs (STOP, one-click unsubscribe) "have unsubscribed" and spam complaints "reported
    spam": both UNSUBSCRIBED (the ledger shows them OPTED_OUT). A hard bounce "bounced" with
    the server's code: INVALID_ADDRESS (FAILED), as the mailbox does not exist; the recipient
    did not ask for anything. An entry added by hand (AddSuppression) "is on the suppression
    list" with its reason: UNSUBSCRIBED, the operator stopped messages to it."""
    detail = reason.split(": ", 1)[1] if reason.startswith(kind + ": ") else reason
    if kind == reason:
        detail = ""
    detail = detail[:MAX_DETAIL]
    if not show_pii:
        detail = mask_text(detail)
    suffix = f" ({detail})" if detail else ""
    if kind == "opted_out":
        return UNSUBSCRIBED, f"The {noun} {shown} has unsubscribed"
    if kind == "bounced":
        return INVALID, f"The {noun} {shown} bounced{suffix}"
    if kind == "complained":
        return UNSUBSCRIBED, f"The {noun} {shown} reported spam"
    return UNSUBSCRIBED, f"The {noun} {shown} is on the suppression list{suffix}"


@dataclass
class Candidate:
    recipient: c.Recipient
    key: str | None  # de-duplication key; None = never a duplicate
    address: str = ""  # normalised address when valid
    reason: str = ""  # set when rejected as an invalid address
    match: str = ""  # suppression-list key of a valid address


def recipient_of(rec: dict[str, Any]) -> c.Recipient:
    return c.Recipient(
        contact_id=rec["id"], phone=rec["phone"] or "", email=rec["email"] or "",
        first_name=rec["first_name"] or "", last_name=rec["last_name"] or "",
        fields={str(k): str(v) for k, v in (rec["fields"] or {}).items()},
        external_id=rec["external_id"] or "", language=rec.get("language") or "")


class Resolver:
    def __init__(self, store: Store, workspace: str, channel: int, show_pii: bool) -> None:
        self.store = store
        self.ws = workspace
        self.channel = channel
        self.show_pii = show_pii
        self.spec = channels.spec(channel)
        self.noun = self.spec.address_noun
        # Keys already streamed; for category members, only those that may come again
        # (duplicates: the addresses several members share; None = every key).
        self.seen: set[str] = set()
        self.duplicates: set[str] | None = None

    def _shown(self, address: str) -> str:
        return self.spec.mask(address, self.show_pii)

    def from_contact(self, rec: Any) -> Candidate:
        """A category member (a store_audience row). Stored addresses were normalised when
        the contact was written."""
        fields = rec.fields
        r = c.Recipient(contact_id=rec.id, phone=rec.phone or "", email=rec.email or "",
                        first_name=rec.first_name or "", last_name=rec.last_name or "",
                        fields={str(k): str(v) for k, v in fields.items()} if fields else None,
                        external_id=rec.external_id or "", language=rec.language or "")
        address = self.spec.address_of(r)
        if not address:
            return Candidate(r, f"contact:{rec.id}", reason=f"Contact {rec.id} has no {self.noun}")
        return self._valid(r, address)

    def _valid(self, r: c.Recipient, address: str) -> Candidate:
        key = self.spec.match_key(address)
        return Candidate(r, "addr:" + key, address=address, match=key)

    def from_inline(self, r: c.Recipient, known: dict[str, dict[str, Any]]) -> Candidate:
        raw = self.spec.address_of(r).strip()
        if r.contact_id:
            rec = known.get(r.contact_id)
            if rec is None:
                return Candidate(c.Recipient(contact_id=r.contact_id), f"contact:{r.contact_id}",
                                 reason=f"Contact {r.contact_id[:100]} not found")
            merged = recipient_of(rec)
            # The caller's inline values win over the stored contact's.
            for name in ("phone", "email", "first_name", "last_name", "external_id", "language"):
                if getattr(r, name):
                    setattr(merged, name, getattr(r, name))
            merged.fields.update(r.fields)
            r = merged
            if not raw:
                address = self.spec.address_of(r)
                if not address:
                    return Candidate(r, f"contact:{r.contact_id}",
                                     reason=f"Contact {r.contact_id} has no {self.noun}")
                return self._valid(r, address)
        else:
            r = c.Recipient(phone=r.phone, email=r.email, first_name=r.first_name,
                            last_name=r.last_name, fields=r.fields, external_id=r.external_id,
                            language=r.language)
        if not raw:
            return Candidate(r, None, reason=f"The recipient has no {self.noun}")
        try:
            address = self.spec.normalise_address(raw)
        except BadAddress:
            return Candidate(r, "raw:" + raw.lower(),
                             reason=f"The {self.noun} {self._shown(raw)} is incorrect")
        self.spec.set_address(r, address)
        return self._valid(r, address)

    def _remembered(self, key: str) -> bool:
        """Whether a category member's key must be remembered: only when the member's
        address may come again (several members share it). Inline recipients' keys are
        always remembered."""
        if self.duplicates is None:
            return True
        # A member without an address ("contact:<id>") comes once: never remembered.
        return key.startswith("addr:") and key[5:] in self.duplicates

    async def finish(self, candidates: Sequence[Candidate],
                     members: bool = False) -> list[pb.AudienceMember]:
        fresh: list[Candidate] = []
        for cand in candidates:
            if cand.key is not None:
                if cand.key in self.seen:
                    continue
                if not members or self._remembered(cand.key):
                    self.seen.add(cand.key)
            fresh.append(cand)
        blocked = await self.store.suppressed(self.ws, self.channel,
                                              [x.match for x in fresh if x.match])
        out: list[pb.AudienceMember] = []
        accepted = invalid = unsubscribed = bounced = 0
        for cand in fresh:
            r = cand.recipient
            if not self.show_pii and r.phone:
                r.phone = mask_phone(r.phone)
            if not cand.address:
                invalid += 1
                out.append(pb.AudienceMember(recipient=r, accepted=False, rejection=INVALID,
                                             rejection_reason=cand.reason))
            elif cand.match in blocked:
                kind, reason = blocked[cand.match]
                category, text = suppression_rejection(
                    self.noun, self._shown(cand.address), kind, reason, self.show_pii)
                if kind == "bounced":
                    bounced += 1
                else:
                    unsubscribed += 1
                out.append(pb.AudienceMember(recipient=r, accepted=False, rejection=category,
                                             rejection_reason=text))
            else:
                accepted += 1
                out.append(pb.AudienceMember(recipient=r, accepted=True))
        ACCEPTED_TOTAL.inc(accepted)
        INVALID_TOTAL.inc(invalid)
        UNSUBSCRIBED_TOTAL.inc(unsubscribed)
        BOUNCED_TOTAL.inc(bounced)
        return out

    async def resolve_chunks(self, category_ids: Sequence[str], inline: Sequence[c.Recipient],
                             chunk: int) -> AsyncIterator[list[pb.AudienceMember]]:
        """Inline recipients first (the caller's own data for this campaign wins over a
        stored contact with the same address), then category members oldest first; a list
        of members per database chunk (never empty)."""
        # Only well-formed ids reach SQL; any other is simply "not found" below.
        ids = [r.contact_id for r in inline if r.contact_id and uuid_text(r.contact_id) is None]
        known = await self.store.contacts_by_ids(self.ws, ids) if ids else {}
        for part in chunks(list(inline), chunk):
            if members := await self.finish([self.from_inline(r, known) for r in part]):
                yield members
        if category_ids:
            if self.spec.address_field in ("phone", "email"):
                self.duplicates = await duplicated_addresses(
                    self.store.engine, self.ws, category_ids, self.spec.address_field)
            async for recs in category_members(self.store.engine, self.ws, category_ids, chunk):
                if members := await self.finish([self.from_contact(rec) for rec in recs], True):
                    yield members

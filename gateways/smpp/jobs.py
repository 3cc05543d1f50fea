"""A MessageJob made ready for the SMSC (addresses, rendered and encoded text, route) and
the SubmitItem its bind sends, one part after the other, in order, on one bind (results
come back through on_result: no task per message)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import content, pdu
from gateways.smpp.addresses import Senders, destination_address
from gateways.smpp.binds import Route
from gateways.smpp.logs import log
from gateways.smpp.matching import Receipt
from gateways.smpp.rejection import JobRejected
from gateways.smpp.routes import IdFormat, RouteConfig, choose
from gateways.smpp.session import SmppClient
from gateways.smpp.store import Mapping

if TYPE_CHECKING:
    from gateways.core.channel import Job, Report

FC = c  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)


class ResultHandler(Protocol):
    def on_result(self, job: SubmitJob, result: Any) -> None: ...


class SubmitJob:
    """A MessageJob between its claim and its outcome."""

    __slots__ = ("policy", "it", "report", "ident", "route", "client", "parts", "head", "index",
                 "ids", "retries", "queued_at", "sent_at", "keys", "parked", "needs_gate",
                 "mappings")

    def __init__(self, policy: ResultHandler, ident: Mapping, route: Route, parts: list[bytes],
                 head: bytes) -> None:
        self.policy = policy
        self.it: Job | None = None  # the runtime's job (ticket, delivery), set by send()
        self.report: Report | None = None  # where its outcome goes, set by send()
        self.ident = ident
        self.route = route
        self.client: SmppClient | None = None
        self.parts = parts
        self.head = head
        self.index = self.retries = 0
        self.ids: list[str] = []
        # Parts accepted while later ones are still to go, then all of them once accepted:
        # their id keys in Matcher.recording, and receipts that came for them meanwhile.
        self.keys: list[str] = []
        self.parked: list[Receipt] = []
        # Its marker moves from held to written (the client's gate) before its first write.
        self.needs_gate = True
        # Every part's id mappings once all were accepted (stored with its outcome).
        self.mappings: list[tuple[Mapping, list[str]]] = []
        # queued_at / sent_at are set by SmppClient.enqueue / _send

    def build_pdu(self, sequence: int) -> bytes:
        return pdu.submit_sm_with_head(sequence, self.head, self.parts[self.index])

    def on_result(self, result: Any) -> None:
        self.policy.on_result(self, result)


def part_mappings(ident: Mapping, route: str, id_format: IdFormat,
                  ids: list[str]) -> list[tuple[Mapping, list[str]]]:
    """Every accepted part's mapping and the keys it is stored under."""
    first = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                    ids[0], ident.to, ident.variant, 1, len(ids), route, ids[0], time.time(),
                    ident.sender)
    # Part 1 is `first` itself (no dataclasses.replace on the per-message path).
    parts = [(first if i == 1 else first.for_part(i, smsc_id), id_format.store_keys(smsc_id))
             for i, smsc_id in enumerate(ids, 1) if smsc_id]
    if len(parts) < len(ids):
        log.warning("submit_sm_resp without message_id: its receipt cannot be matched",
                    extra={"message_id": ident.message_id})
    return parts


class Preparer:
    """MessageJob -> SubmitJob (CPU only); raises JobRejected for a job that cannot be sent."""

    def __init__(self, route_cfgs: list[RouteConfig], routes: dict[str, Route], policy: ResultHandler,
                 default_sender: str, max_parts: int, udh16: bool) -> None:
        self.route_cfgs = route_cfgs
        self.routes = routes
        self.policy = policy
        self.default_sender = default_sender
        self.max_parts = max_parts
        self.udh16 = udh16
        self.senders = Senders()

    def ident(self, job: e.MessageJob, route: str, parts: int) -> Mapping:
        """The job as its mappings name it (its sender as the source address sent)."""
        src = self.senders.parse(job.sender or self.default_sender)[0]
        return Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt, "",
                       job.to, job.variant, parts=parts, route=route, sender=src)

    def prepare(self, job: e.MessageJob) -> SubmitJob:
        dest, dton, dnpi = destination_address(job.to)
        sender_raw = job.sender or self.default_sender
        src, ston, snpi = self.senders.parse(sender_raw)
        text = content.render_text(job)
        rc = choose(self.route_cfgs, sender_raw, job.to)
        if rc is None:
            raise JobRejected("NO_ROUTE", f"no SMPP route for sender {sender_raw!r} to {job.to[:4]}...",
                              FC.FAILURE_CATEGORY_CONFIG_ERROR)
        enc = content.encode(text, self.max_parts, self.udh16)
        head = pdu.submit_sm_head(
            source_addr=src, source_addr_ton=ston, source_addr_npi=snpi,
            destination_addr=dest, dest_addr_ton=dton, dest_addr_npi=dnpi,
            esm_class=enc.esm_class, registered_delivery=1, data_coding=enc.data_coding)
        ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt, "",
                        job.to, job.variant, parts=len(enc.parts), route=rc.name, sender=src)
        return SubmitJob(self.policy, ident, self.routes[rc.name], enc.parts, head)

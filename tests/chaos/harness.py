"""The chaos suite's stack and campaign drivers: every Herald process real (cli.devstack.Stack,
one pid each, SQLite ledgers), the SMSC simulator and SMTP sink as processes keeping ground
truth (tests/chaos/truth.py), campaigns driven only through gRPC (development auth, one
workspace per stack)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc

from cli.devstack import Stack
from tests.chaos.scale import Scale
from tests.chaos.truth import GroundTruth

WORKSPACE = "chaos"
MD = (("x-herald-workspace", WORKSPACE),)
CALL_TIMEOUT = 30.0
TERMINAL = {cpb.CAMPAIGN_STATUS_DONE, cpb.CAMPAIGN_STATUS_FAILED, cpb.CAMPAIGN_STATUS_CANCELLED,
            cpb.CAMPAIGN_STATUS_EXPIRED}
S = c.MessageStatus
FINAL_SMS = {S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_ASSUMED_DELIVERED, S.MESSAGE_STATUS_FAILED,
             S.MESSAGE_STATUS_OPTED_OUT, S.MESSAGE_STATUS_CANCELLED}
# A mail handed to the relay has no later receipt here: SUBMITTED is final for email.
FINAL_EMAIL = FINAL_SMS | {S.MESSAGE_STATUS_SUBMITTED}
SENT = {S.MESSAGE_STATUS_SUBMITTED, S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_ASSUMED_DELIVERED}
FAILING_PATTERN = "^\\+?447499999"
GRPC_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


SMPP_WINDOW = 100   # HERALD_SMPP_WINDOW default: submit_sm written and unanswered at most
SMTP_POOL = 4       # HERALD_SMTP_POOL_SIZE default: mails in DATA at most


def status_name(s: int) -> str:
    return c.MessageStatus.Name(s).removeprefix("MESSAGE_STATUS_")


class ChaosStack:
    """One Stack for a test module, with the knobs the faults need."""

    def __init__(self, workdir: Path, scale: Scale) -> None:
        self.scale = scale
        self.stats_file = workdir / "smsc-stats.json"
        sim = {"HERALD_SMPP_SIM_STATS_FILE": str(self.stats_file),
               "HERALD_SMPP_SIM_RECEIPT_DELAY": "0.05",
               # failing_phones(): the SMSC refuses them (ESME_RINVDSTADR)
               "HERALD_SMPP_SIM_REJECT_PATTERN": FAILING_PATTERN}
        extra = {
            # Receipts the SMSC lost with its death resolve by the assumed-delivery timeout
            # (the campaigns scheduler sweeps the ledger; older gateways read the SMPP one).
            "HERALD_ASSUMED_DELIVERED_AFTER": str(scale.assumed_after),
            "HERALD_ASSUMED_DELIVERY_SWEEP": "1",
            # A killed consumer's batch comes back after its ack wait: short ones keep the
            # suite's recovery (and length) down; production keeps the defaults.
            "HERALD_LEDGER_ACK_WAIT": "10", "HERALD_STATS_ACK_WAIT": "10",
            "HERALD_EMAIL_ACK_WAIT": "10",
            # A relay answering 4xx for smtp_defer seconds: retries must outlast it.
            "HERALD_SMTP_RETRY_BASE": "1", "HERALD_SMTP_RETRY_MAX": "4",
            "HERALD_SMTP_MAX_ATTEMPTS": str(int(scale.smtp_defer // 4) + 8),
            "HERALD_SCHEDULER_INTERVAL": "0.5",
            # A restarted campaigns service takes its campaigns back after the lease.
            "HERALD_SCHEDULER_LEASE": "4",
        }
        # The sink's fault modes: 451 to everyone while tempfail_file exists; the 250 of a
        # hold-...@ mail held back while hold_file exists.
        self.tempfail_file = workdir / "sink-tempfail"
        self.hold_file = workdir / "sink-hold"
        sink = {"HERALD_SINK_TEMPFAIL_FILE": str(self.tempfail_file),
                "HERALD_SINK_HOLD_FILE": str(self.hold_file)}
        self.stack = Stack(workdir, extra_env=extra,
                           module_env={"smsc-simulator": sim, "smtp-sink": sink})
        self.truth = GroundTruth(self.stats_file, self.stack.sink_dir)
        self.channels: list[grpc.aio.Channel] = []
        self._blocks = itertools.count(1)

    def start(self) -> None:
        self.stack.start()

    def stop(self) -> None:
        self.stack.stop(timeout=3.0)

    def connect(self) -> None:
        self.channels = [grpc.aio.insecure_channel(self.stack.addr(n))
                         for n in ("campaigns", "recipients", "stats")]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    @property
    def campaigns(self) -> cgrpc.CampaignServiceStub:
        return cgrpc.CampaignServiceStub(self.channels[0])

    @property
    def recipients(self) -> rgrpc.RecipientServiceStub:
        return rgrpc.RecipientServiceStub(self.channels[1])

    @property
    def stats(self) -> sgrpc.StatsServiceStub:
        return sgrpc.StatsServiceStub(self.channels[2])

    def pids(self) -> str:
        return " ".join(f"{n}={p}" for n, p in self.stack.pids().items())

    # --- the SMSC simulator: restart keeps ground truth -----------------------------------
    def stop_smsc(self, hard: bool = False) -> None:
        if hard:
            self.stack.kill("smsc-simulator")
        else:
            # SIGTERM: the simulator drops every ESME connection without unbind (as a crashing
            # SMSC would) and writes its final counters, so ground truth stays exact.
            self.stack.stop_one("smsc-simulator")
        self.truth.bank_smsc()

    def start_smsc(self, **env: str) -> None:
        if env:
            self.stack.module_env["smsc-simulator"] = {**self.stack.module_env["smsc-simulator"], **env}
        self.stack.start_one("smsc-simulator")

    # --- destinations ---------------------------------------------------------------------
    def phones(self, n: int) -> list[str]:
        """n numbers no other test of this stack uses. Small sets: +44 7700 900xxx (Ofcom
        drama range). Thousands: +44 74bb iiiiii (bb: the block), valid UK mobile numbers that
        only ever reach the local SMSC simulator (the stack has no route to any real carrier)."""
        block = next(self._blocks)
        if n <= 50 and block <= 19:
            return [f"+447700900{block * 50 + i:03d}" for i in range(n)]
        return [f"+4474{block:02d}{i:06d}" for i in range(n)]

    def failing_phones(self, n: int) -> list[str]:
        """n numbers the simulator refuses at submit (block 99, never handed out by phones())."""
        block = next(self._blocks)
        return [f"+447499999{block % 10}{i:02d}" for i in range(n)]

    def emails(self, n: int, tag: str) -> list[str]:
        block = next(self._blocks)
        return [f"chaos{block}-{tag}-{i:05d}@example.com" for i in range(n)]

    # --- campaigns ------------------------------------------------------------------------
    async def sms_campaign(self, name: str, n: int, rate: float, phones: list[str] | None = None) -> tuple[str, list[str]]:
        phones = phones or self.phones(n)
        recipients = [c.Recipient(phone=p, first_name=f"C{i}") for i, p in enumerate(phones)]
        cp = await self.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"chaos-{name}-{time.time_ns()}", recipients=recipients,
            campaign=cpb.Campaign(name=f"chaos {name}", channel=c.CHANNEL_SMS, sender="CHAOS",
                                  auto_start=True, max_rate=rate,
                                  content=cpb.Content(text=f"{name}: hi {{{{ first_name }}}}"))),
            metadata=MD, timeout=120)
        await self.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="chaos"),
                                             metadata=MD, timeout=CALL_TIMEOUT)
        return str(cp.id), phones

    async def category_campaign(self, name: str, channel: int, n: int, rate: float,
                                addrs: list[str] | None = None) -> tuple[str, list[str]]:
        """Contacts in a category (the build reads them from the recipients service)."""
        cat = await self.recipients.CreateCategory(rpb.CreateCategoryRequest(
            name=f"chaos-{name}-{time.time_ns()}"), metadata=MD, timeout=CALL_TIMEOUT)
        email = channel == c.CHANNEL_EMAIL
        addrs = addrs or (self.emails(n, name) if email else self.phones(n))
        n = len(addrs)
        for i in range(0, n, 500):
            contacts = [rpb.Contact(first_name=f"R{j}", external_id=a, category_ids=[cat.id],
                                    **({"email": a} if email else {"phone": a}))
                        for j, a in enumerate(addrs[i:i + 500], i)]
            up = await self.recipients.UpsertContacts(rpb.UpsertContactsRequest(contacts=contacts),
                                                      metadata=MD, timeout=120)
            errors = [r.error for r in up.results if r.error]
            assert not errors, f"contacts rejected: {errors[:3]}"
        content = (cpb.Content(subject=f"{name} for {{{{ first_name }}}}", text="Hello {{ first_name }}.")
                   if email else cpb.Content(text=f"{name}: hi {{{{ first_name }}}}"))
        cp = await self.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"chaos-{name}-{time.time_ns()}",
            campaign=cpb.Campaign(name=f"chaos {name}", channel=channel,
                                  sender="Chaos <chaos@example.com>" if email else "CHAOS",
                                  auto_start=True, category_ids=[cat.id], max_rate=rate,
                                  content=content)),
            metadata=MD, timeout=CALL_TIMEOUT)
        await self.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="chaos"),
                                             metadata=MD, timeout=CALL_TIMEOUT)
        return str(cp.id), addrs

    async def campaign(self, campaign_id: str) -> cpb.Campaign:
        return await self.campaigns.GetCampaign(cpb.GetCampaignRequest(id=campaign_id),
                                                metadata=MD, timeout=CALL_TIMEOUT)

    async def wait_until(self, campaign_id: str, probe: Callable[[cpb.Campaign], bool], what: str,
                         timeout: float = 120.0, step: float = 0.05) -> cpb.Campaign:
        """Poll GetCampaign until probe(campaign) (the campaigns service may be down: retried)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                cp = await self.campaign(campaign_id)
                if probe(cp):
                    return cp
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in GRPC_DOWN:
                    raise
                cp = None
            if time.monotonic() > deadline:
                state = f"{cpb.CampaignStatus.Name(cp.status)} {cp.progress}" if cp else "unreachable"
                raise AssertionError(f"campaign {campaign_id}: gave up waiting for {what} after "
                                     f"{timeout:.0f}s ({state})")
            await asyncio.sleep(step)

    async def wait_processed(self, campaign_id: str, fraction: float) -> cpb.Campaign:
        """Until `fraction` of the campaign's messages left QUEUED/SENDING (mid-way)."""
        return await self.wait_until(
            campaign_id, lambda cp: cp.progress.total > 0 and cp.progress.processed >= fraction * cp.progress.total,
            f"{fraction:.0%} processed")

    async def messages(self, campaign_id: str) -> list[cpb.Message]:
        out: list[cpb.Message] = []
        tok = ""
        while True:
            page = await self.campaigns.ListMessages(cpb.ListMessagesRequest(
                campaign_id=campaign_id, page_size=1000, page_token=tok), metadata=MD, timeout=60)
            out.extend(page.messages)
            tok = page.next_page_token
            if not tok:
                return out

    async def stats_states(self, ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            resp = await self.stats.BatchGetMessageStates(spb.BatchGetMessageStatesRequest(
                message_ids=ids[i:i + 500]), metadata=MD, timeout=60)
            out.update({s.message_id: s.status for s in resp.states})
        return out


@dataclass
class Outcome:
    """One fault's result: the line it prints and what makes it fail."""

    fault: str
    campaign: str = ""
    status: str = ""
    statuses: dict[str, int] = field(default_factory=dict)
    requested: int = 0
    ledger: int = 0
    stuck: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)        # requested, not in the ledger
    phantom: list[str] = field(default_factory=list)     # SENT in the ledger, never reached
    duplicates: dict[str, int] = field(default_factory=dict)  # destination -> accepted copies
    abandoned: int = 0
    abandoned_unsent: int = 0                             # ABANDONED, never reached the wire
    stats_diff: list[str] = field(default_factory=list)
    reconcile: str = ""                                   # ReconcileCampaign's verdict
    reconcile_ok: bool = True
    submits: int = 0
    recovery: float = 0.0
    total: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        sts = ",".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        dup = sum(v - 1 for v in self.duplicates.values())
        return (f"CHAOS | {self.fault:<28} | campaign {self.status} | {self.ledger}/{self.requested} "
                f"msgs {sts} | stats==ledger {'yes' if not self.stats_diff else f'NO ({len(self.stats_diff)} differ)'} "
                f"| ground truth {self.submits} submits, {dup} duplicates | abandoned {self.abandoned} "
                f"({self.abandoned_unsent} never on the wire) | lost {len(self.lost) + len(self.phantom)} "
                f"| stuck {len(self.stuck)} | reconcile {self.reconcile} | recovery {self.recovery:.1f}s (total {self.total:.1f}s)"
                + (f" | {'; '.join(self.notes)}".replace("\n", " ") if self.notes else ""))

    def failures(self, allowed_duplicates: int = 0, unsent_tolerance: int = 0,
                 abandoned_tolerance: int | None = None) -> list[str]:
        """abandoned_tolerance: at most this many ABANDONED in all (the submits a killed gateway
        can have written without their answer); None where the fault sets no such bound."""
        out = []
        if self.status != "DONE":
            out.append(f"campaign ended {self.status}, not DONE")
        if self.lost:
            out.append(f"{len(self.lost)} requested recipients have no ledger message, e.g. {self.lost[:3]}")
        if self.phantom:
            out.append(f"{len(self.phantom)} messages SENT in the ledger never reached the carrier, "
                       f"e.g. {self.phantom[:3]}")
        if self.stuck:
            out.append(f"{len(self.stuck)} messages not final, e.g. {self.stuck[:3]}")
        dup = sum(v - 1 for v in self.duplicates.values())
        if dup > allowed_duplicates:
            out.append(f"{dup} duplicate submits (allowed {allowed_duplicates}), e.g. "
                       f"{list(self.duplicates.items())[:3]}")
        if self.stats_diff:
            out.append(f"stats differ from the ledger for {len(self.stats_diff)} messages, e.g. {self.stats_diff[:3]}")
        if not self.reconcile_ok:
            out.append(f"ReconcileCampaign: {self.reconcile}")
        if self.abandoned_unsent > unsent_tolerance:
            out.append(f"{self.abandoned_unsent} messages reported ABANDONED (possibly sent) never "
                       f"reached the carrier (more than the {unsent_tolerance} that can be on the wire)")
        if abandoned_tolerance is not None and self.abandoned > abandoned_tolerance:
            out.append(f"{self.abandoned} messages reported ABANDONED, more than the "
                       f"{abandoned_tolerance} whose answer can be outstanding when the gateway dies")
        return out


Inject = Callable[[str], Awaitable[float]]  # campaign id -> monotonic time the fault healed


async def settle_stats(cs: ChaosStack, msgs: list[cpb.Message], timeout: float) -> list[str]:
    """Stats are eventually consistent with the ledger: poll until equal message by message,
    answer the differences left after `timeout`."""
    ledger = {m.id: m.status for m in msgs}
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = await cs.stats_states(list(ledger))
            diff = [f"{mid}:{status_name(st)}!={status_name(states.get(mid, 0))}"
                    for mid, st in ledger.items() if states.get(mid, 0) != st]
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in GRPC_DOWN:
                raise
            diff = [f"stats unreachable: {exc.code().name}"]
        if not diff or time.monotonic() > deadline:
            return diff
        await asyncio.sleep(0.5)


async def reconcile(cs: ChaosStack, campaign_id: str, repair: bool = False) -> tuple[str, bool]:
    """The operator's proof (ReconcileCampaign): final, and no message differing; with repair,
    the stats are rebuilt from the ledger first (the runbook's step after Redis lost its data)."""
    try:
        rep = await cs.campaigns.ReconcileCampaign(cpb.ReconcileCampaignRequest(
            campaign_id=campaign_id, max_differences=5, repair=repair,
            request_id=f"chaos-repair-{time.time_ns()}" if repair else ""), metadata=MD, timeout=120)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return "n/a", True
        return f"error {exc.code().name}: {exc.details()}", False
    ok = rep.final and rep.differing == 0
    diffs = ",".join(f"{d.message_id}:{status_name(d.ledger_status)}/{status_name(d.stats_status)}"
                     for d in rep.differences)
    return (("repaired, " if rep.repaired else "") + f"final={rep.final} compared={rep.compared} differing={rep.differing}"
            + (f" [{diffs}]" if diffs else "")), ok


async def account(cs: ChaosStack, out: Outcome, channel: int, campaign_id: str,
                  destinations: list[str], t_heal: float, t0: float, repair: bool = False) -> Outcome:
    """Wait for the campaign to be final (bounded), then compare the ledger, stats and ground truth."""
    final = FINAL_EMAIL if channel == c.CHANNEL_EMAIL else FINAL_SMS
    out.campaign, out.requested = campaign_id, len(destinations)
    timeout = cs.scale.final_timeout + cs.scale.assumed_after
    notes: list[str] = []
    try:
        cp = await cs.wait_until(campaign_id, lambda cp: cp.status in TERMINAL, "a final campaign status",
                                 timeout=timeout, step=0.25)
    except AssertionError as exc:
        notes.append(str(exc))
        cp = await cs.campaign(campaign_id)
    out.status = cpb.CampaignStatus.Name(cp.status).removeprefix("CAMPAIGN_STATUS_")
    if cp.status_reason and cp.status != cpb.CAMPAIGN_STATUS_DONE:
        notes.append(f"reason: {cp.status_reason}")
    out.recovery = time.monotonic() - t_heal
    # Messages may still settle after the campaign is DONE (receipts, assumed delivery).
    deadline = time.monotonic() + cs.scale.assumed_after + 30
    while True:
        msgs = await cs.messages(campaign_id)
        stuck = [m for m in msgs if m.status not in final]
        if not stuck or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    out.total = time.monotonic() - t0
    out.ledger = len(msgs)
    statuses: dict[str, int] = {}
    for m in msgs:
        statuses[status_name(m.status)] = statuses.get(status_name(m.status), 0) + 1
    out.statuses = statuses
    out.stuck = [f"{m.id}:{status_name(m.status)}" for m in stuck]
    if channel == c.CHANNEL_EMAIL:
        got = cs.truth.mails()
        destinations = [d.lower() for d in destinations]
        accepted = {d: got.get(d, 0) for d in destinations}
        attempts = accepted  # the sink only shows accepted mails
        addr = {m.id: m.email.lower() for m in msgs}
    else:
        acc, att = cs.truth.smsc()
        accepted = {d: acc.get(d.lstrip("+"), 0) for d in destinations}
        attempts = {d: att.get(d.lstrip("+"), 0) for d in destinations}
        addr = {m.id: m.phone for m in msgs}
    by_dest = {addr[m.id]: m for m in msgs}
    out.lost = [d for d in destinations if d not in by_dest]
    out.submits = sum(accepted.values())
    out.duplicates = {d: n for d, n in accepted.items() if n > 1}
    for m in msgs:
        dest = addr[m.id]
        key = dest if dest in accepted else None
        if key is None:
            notes.append(f"ledger destination {dest!r} not requested (masked phone?)")
            break
        abandoned = "ABANDON" in (m.error_code + m.error_description).upper()
        out.abandoned += abandoned
        if abandoned and attempts[key] == 0:
            out.abandoned_unsent += 1
        if m.status in SENT and accepted[key] == 0:
            out.phantom.append(f"{m.id}:{dest}:{status_name(m.status)}")
    if repair:
        # Stats whose store lost its data are rebuilt from the ledger, as an operator would.
        before = await settle_stats(cs, msgs, timeout=5.0)
        notes.append(f"{len(before)} stats differences before the repair")
        out.reconcile, out.reconcile_ok = await reconcile(cs, campaign_id, repair=True)
        out.stats_diff = await settle_stats(cs, msgs, timeout=30.0)
    else:
        out.stats_diff = await settle_stats(cs, msgs, timeout=30.0)
        out.reconcile, out.reconcile_ok = await reconcile(cs, campaign_id)
    out.notes = notes + out.notes
    return out


async def run_fault(cs: ChaosStack, fault: str, channel: int, inject: Inject, n: int | None = None,
                    rate: float | None = None, category: bool = False,
                    addrs: list[str] | None = None, phones: list[str] | None = None,
                    repair: bool = False) -> Outcome:
    """Create a campaign (inline recipients, or contacts in a category; email always in a
    category), inject the fault mid-way, then account for every message."""
    t0 = time.monotonic()
    name = fault.replace(" ", "-")
    if channel == c.CHANNEL_EMAIL:
        cid, dests = await cs.category_campaign(name, channel, n or cs.scale.email,
                                                rate or cs.scale.email_rate, addrs)
    elif category:
        cid, dests = await cs.category_campaign(name, channel, n or cs.scale.sms, rate or cs.scale.sms_rate)
    else:
        cid, dests = await cs.sms_campaign(name, n or cs.scale.sms, rate or cs.scale.sms_rate, phones)
    t_heal = await inject(cid)
    return await account(cs, Outcome(fault), channel, cid, dests, t_heal, t0, repair)


def check(out: Outcome, cs: ChaosStack, **kw: Any) -> None:
    """Print the fault's one line, then fail on anything lost, stuck, doubled or misreported."""
    print(out.line(), flush=True)
    failures = out.failures(**kw)
    if failures:
        raise AssertionError(f"{out.fault}: " + " | ".join(failures) + f"\n{out.line()}\npids: {cs.pids()}")

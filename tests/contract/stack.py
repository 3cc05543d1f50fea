"""The contract suite's full stack: every Herald process (cli.devstack.Stack) with real bearer
tokens for several workspaces and roles, and the project's SMSC simulator running in this
test process (on its own thread and loop) so a test can read exactly what reached the SMSC
and send mobile-originated replies through it.

Everything here talks to Herald only through gRPC and the wire: the simulator's submits,
the SMTP sink's mail files, the tracking HTTP endpoints.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2_grpc as sgrpc

from cli.devstack import Stack
from gateways.smpp import pdu
from gateways.smpp.simulator import server as simserver

WS_A, WS_B, WS_P = "ws-a", "ws-b", "ws-p"  # ws-p: the property tests' own workspace
ROLES = ("viewer", "operator", "moderator", "admin")
SERVICE_TOKEN = "tok-herald-services"
UNKNOWN_TOKEN = "tok-nobody-knows-this"
TERMINAL = {cpb.CAMPAIGN_STATUS_DONE, cpb.CAMPAIGN_STATUS_FAILED, cpb.CAMPAIGN_STATUS_CANCELLED,
            cpb.CAMPAIGN_STATUS_EXPIRED}
CALL_TIMEOUT = 30.0
FAILING_PATTERN = "90059[0-5]$"  # the SMSC refuses these destinations (ContractStack.failing_phones)


def token(workspace: str, role: str, pii: bool = False) -> str:
    return f"tok-{workspace}-{role}{'-pii' if pii else ''}"


def tokens() -> dict[str, dict[str, Any]]:
    """{token: {workspace, roles, pii, name}}: every role with and without pii per workspace,
    a per-workspace service token, and the token the services call each other with."""
    out: dict[str, dict[str, Any]] = {}
    for ws in (WS_A, WS_B, WS_P):
        for role in ROLES:
            for pii in (False, True):
                out[token(ws, role, pii)] = {"workspace": ws, "roles": [role], "pii": pii,
                                             "name": f"{role}{'+pii' if pii else ''}@{ws}"}
    # The services' own token: role service with pii, acting for the workspace named in the
    # x-herald-workspace header.
    out[SERVICE_TOKEN] = {"workspace": "herald", "roles": ["service"], "pii": True,
                          "name": "herald-services"}
    return out


def metadata(workspace: str, role: str | None, pii: bool = False) -> tuple[tuple[str, str], ...]:
    """Call metadata of a caller: role None = no token at all, "unknown" = a token nobody
    issued, "service" = the services' token acting for `workspace`."""
    if role is None:
        return (("x-herald-workspace", workspace),)
    if role == "unknown":
        return (("authorization", f"Bearer {UNKNOWN_TOKEN}"), ("x-herald-workspace", workspace))
    if role == "service":
        return (("authorization", f"Bearer {SERVICE_TOKEN}"), ("x-herald-workspace", workspace))
    return (("authorization", f"Bearer {token(workspace, role, pii)}"),)


# --- the SMSC simulator, in process -----------------------------------------------------------
@dataclass(frozen=True)
class Submit:
    """One short message accepted by the SMSC (concatenated parts joined)."""

    source: str
    destination: str
    text: str


class _RecordingSimulator(simserver.SmscSimulator):
    """The project's simulator, also keeping every accepted submit_sm (its stats keep counts)."""

    def __init__(self, cfg: simserver.SimulatorConfig) -> None:
        super().__init__(cfg)
        self.parts: list[tuple[str, str, int, bytes, int]] = []

    def on_submit(self, conn: Any, frame: pdu.Frame) -> None:
        before = self.stats.submits_accepted
        super().on_submit(conn, frame)
        if self.stats.submits_accepted > before:
            sm = pdu.parse_sm(frame.raw)
            self.parts.append((sm.source_addr, sm.destination_addr, sm.esm_class,
                               sm.payload, sm.data_coding))


class SimulatorThread:
    """SmscSimulator on its own event loop thread: it keeps answering binds and sending
    receipts while a fixture blocks the tests' loop (e.g. starting the stack)."""

    def __init__(self, cfg: simserver.SimulatorConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.sim = _RecordingSimulator(cfg or simserver.SimulatorConfig(receipt_delay=0.05))
        self.thread = threading.Thread(target=self.loop.run_forever, name="smsc-simulator", daemon=True)
        self.port = 0

    def start(self) -> int:
        self.thread.start()
        self.port = self._run(self.sim.start())
        return self.port

    def stop(self) -> None:
        self._run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def inject_mo(self, source: str, destination: str, text: str) -> bool:
        """A mobile-originated message from `source` (digits, no +) to the sender
        `destination`, resent until the gateway acknowledges it."""
        async def send() -> bool:
            return await asyncio.wait_for(self.sim.inject_mo(source, destination, text), 30)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(), self.loop))

    def submits(self) -> list[Submit]:
        """Every accepted submit so far, texts decoded, concatenated parts joined."""
        async def snapshot() -> list[tuple[str, str, int, bytes, int]]:
            return list(self.sim.parts)

        enc = simserver.encoding
        out: list[Submit] = []
        multipart: dict[tuple[str, str, int], dict[int, str]] = {}
        for source, dest, esm, payload, dc in self._run(snapshot()):
            body, concat = enc.strip_udh(payload, esm)
            text = enc.decode(body, dc)
            if concat is None:
                out.append(Submit(source, dest, text))
                continue
            ref, total, index = concat
            parts = multipart.setdefault((source, dest, ref), {})
            parts[index] = text
            if len(parts) == total:
                out.append(Submit(source, dest, "".join(parts[i] for i in sorted(parts))))
        return out


# --- gRPC callers -------------------------------------------------------------------------
class _Bound:
    """A generated stub whose calls carry one caller's metadata and a deadline."""

    def __init__(self, stub: Any, md: tuple) -> None:
        self._stub, self._md = stub, md

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return functools.partial(getattr(self._stub, name), metadata=self._md, timeout=CALL_TIMEOUT)


@dataclass
class Caller:
    """One principal's view of Herald: campaigns, recipients and stats stubs."""

    workspace: str
    role: str | None
    pii: bool
    md: tuple
    campaigns: Any
    recipients: Any
    stats: Any

    @property
    def label(self) -> str:
        return f"{self.role or 'none'}{'+pii' if self.pii else ''}@{self.workspace}"


@dataclass
class ContractStack:
    """The running stack, its simulator and its callers. Phones come from phones() so tests
    sharing the stack never share a number (suppression and replies are per number)."""

    stack: Stack
    sim: SimulatorThread
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    _phones: Iterable[int] = field(default_factory=lambda: itertools.count(600))
    _failing: Iterable[int] = field(default_factory=lambda: itertools.count(590))

    @property
    def sink_dir(self) -> Path:
        return self.stack.sink_dir

    def connect(self) -> None:
        self.channels = [grpc.aio.insecure_channel(self.stack.addr(n))
                         for n in ("campaigns", "recipients", "stats")]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()
        self.channels = []

    def caller(self, workspace: str, role: str | None, pii: bool = False) -> Caller:
        md = metadata(workspace, role, pii)
        cc, rc, sc = self.channels
        return Caller(workspace, role, pii, md, _Bound(cgrpc.CampaignServiceStub(cc), md),
                      _Bound(rgrpc.RecipientServiceStub(rc), md), _Bound(sgrpc.StatsServiceStub(sc), md))

    def phones(self, n: int) -> list[str]:
        """n numbers no other contract test uses (+44 7700 900600..999)."""
        out = [f"+447700900{next(self._phones):03d}" for _ in range(n)]  # type: ignore[call-overload]
        if int(out[-1][-3:]) > 999 or len(out[-1]) != 13:
            raise RuntimeError("the contract suite ran out of +44 7700 900xxx numbers")
        return out

    def failing_phones(self, n: int) -> list[str]:
        """n numbers whose submit_sm the SMSC refuses (ESME_RINVDSTADR): +44 7700 900590..595."""
        out = [f"+447700900{next(self._failing):03d}" for _ in range(n)]  # type: ignore[call-overload]
        if int(out[-1][-3:]) > 595:
            raise RuntimeError("the contract suite ran out of failing numbers")
        return out

    def submits_to(self, phone: str) -> list[Submit]:
        digits = phone.lstrip("+")
        return [s for s in self.sim.submits() if s.destination.lstrip("+") == digits]

    def mails(self) -> list[EmailMessage]:
        out = []
        for path in sorted(self.sink_dir.rglob("*.eml")):
            out.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
        return out  # type: ignore[return-value]

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails() if address in str(m["To"])]


def start(workdir: Path) -> ContractStack:
    """Tokens file, in-process SMSC, then every Herald process; stop() undoes it."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokens_file = workdir / "tokens.json"
    tokens_file.write_text(json.dumps(tokens(), indent=1))
    sim = SimulatorThread(simserver.SimulatorConfig(receipt_delay=0.05, reject_pattern=FAILING_PATTERN))
    sim.start()
    stack = Stack(workdir, tokens_file=tokens_file, service_token=SERVICE_TOKEN, smsc_port=sim.port)
    try:
        stack.start()
    except Exception:
        sim.stop()
        raise
    return ContractStack(stack, sim)


def stop(cs: ContractStack) -> None:
    cs.stack.stop()
    cs.sim.stop()


# --- helpers over gRPC ----------------------------------------------------------------------
async def create_category(caller: Caller, name: str) -> str:
    cat = await caller.recipients.CreateCategory(rpb.CreateCategoryRequest(
        name=f"{name}-{time.time_ns()}"))
    return str(cat.id)


async def upsert_contacts(caller: Caller, contacts: list[rpb.Contact]) -> list[str]:
    up = await caller.recipients.UpsertContacts(rpb.UpsertContactsRequest(contacts=contacts))
    errors = [r.error for r in up.results if r.error]
    if errors:
        raise AssertionError(f"contacts rejected: {errors}")
    return [r.contact_id for r in up.results]


async def wait_terminal(caller: Caller, campaign_id: str, timeout: float = 90.0) -> cpb.Campaign:
    deadline = time.monotonic() + timeout
    while True:
        cp = await caller.campaigns.GetCampaign(cpb.GetCampaignRequest(id=campaign_id))
        if cp.status in TERMINAL:
            return cp
        if time.monotonic() > deadline:
            raise AssertionError(f"campaign {campaign_id} still {cpb.CampaignStatus.Name(cp.status)} "
                                 f"after {timeout}s: {cp.progress}")
        await asyncio.sleep(0.2)


async def wait_for(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll an async probe until it returns something truthy (eventual consistency)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        await asyncio.sleep(0.2)


async def create_and_approve(operator: Caller, moderator: Caller, campaign: cpb.Campaign,
                             recipients: list[c.Recipient] | None = None) -> cpb.Campaign:
    """Create (auto_start) and approve: the campaign starts sending at once."""
    campaign.auto_start = True
    cp = await operator.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"contract-{time.time_ns()}", campaign=campaign, recipients=recipients or []))
    await moderator.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="contract"))
    return cp  # type: ignore[no-any-return]


async def run_campaign(operator: Caller, moderator: Caller, campaign: cpb.Campaign,
                       recipients: list[c.Recipient] | None = None, timeout: float = 90.0) -> cpb.Campaign:
    """Create, approve, start; wait until terminal and answer the campaign (DONE expected)."""
    cp = await create_and_approve(operator, moderator, campaign, recipients)
    done = await wait_terminal(operator, cp.id, timeout)
    if done.status != cpb.CAMPAIGN_STATUS_DONE:
        raise AssertionError(f"campaign {cp.id} ended {cpb.CampaignStatus.Name(done.status)}: "
                             f"{done.status_reason}")
    return done


async def all_messages(caller: Caller, campaign_id: str) -> list[cpb.Message]:
    out, tok = [], ""
    while True:
        page = await caller.campaigns.ListMessages(cpb.ListMessagesRequest(
            campaign_id=campaign_id, page_size=500, page_token=tok))
        out.extend(page.messages)
        tok = page.next_page_token
        if not tok:
            return out


async def download_export(caller: Caller, export_id: str) -> bytes:
    chunks = [ch.data async for ch in caller.campaigns.DownloadExport(cpb.GetExportRequest(id=export_id))]
    return b"".join(chunks)


async def finished_export(caller: Caller, campaign_id: str, fmt: int = cpb.EXPORT_FORMAT_CSV) -> cpb.Export:
    ex = await caller.campaigns.CreateExport(cpb.CreateExportRequest(
        request_id=f"contract-export-{time.time_ns()}", campaign_id=campaign_id, format=fmt))

    async def done() -> Any:
        got = await caller.campaigns.GetExport(cpb.GetExportRequest(id=ex.id))
        return got if got.status in (cpb.EXPORT_STATUS_DONE, cpb.EXPORT_STATUS_FAILED) else None

    return await wait_for(done, f"export {ex.id}")  # type: ignore[no-any-return]


def sms_campaign(name: str, text: str, sender: str, **kw: Any) -> cpb.Campaign:
    return cpb.Campaign(name=name, channel=c.CHANNEL_SMS, sender=sender,
                        content=cpb.Content(text=text), **kw)


def mail_text(msg: EmailMessage, kind: str) -> str:
    body = msg.get_body((kind,))
    return str(body.get_content()) if body is not None else ""


def rpc_error(exc: BaseException) -> grpc.aio.AioRpcError:
    if not isinstance(exc, grpc.aio.AioRpcError):
        raise exc
    return exc

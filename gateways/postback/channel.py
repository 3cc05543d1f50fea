"""The postback channel on the channel runtime: each job's JSON body rendered from its
fields and POSTed to its URL. 2xx = SUBMITTED (the receiver has it); 5xx, 408, 425, 429,
timeouts and unreachable receivers are DEFERRED (the runtime retries with back-off); any
other answer FAILED. Every POST carries Idempotency-Key: <message id>:<attempt>."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core.channel import Job, Listener, Report
from gateways.core.gate import WriteGate
from gateways.core.metrics import ChannelMetrics, channel_metrics
from gateways.core.outcome import Outcome, deferred, failed, submitted
from shared import channels, templating
from shared.channels.postback import postback_content

F = c.FailureCategory
RETRIED = frozenset({408, 425, 429})
GONE = frozenset({404, 410})  # the URL itself is wrong
MAX_BODY = 256 * 1024

SPEC = channels.spec(c.CHANNEL_POSTBACK)
METRICS = channel_metrics("postback")


@dataclass(slots=True)
class Post:
    url: str
    body: bytes


def answer_outcome(status: int, reason: str, message_id: str) -> Outcome:
    what = f"HTTP {status} {reason}".strip()
    if 200 <= status < 300:
        return submitted(message_id, what, code=str(status))
    if status >= 500 or status in RETRIED:
        return deferred(f"receiver answered {what}", str(status))
    category = F.FAILURE_CATEGORY_INVALID_ADDRESS if status in GONE else \
        F.FAILURE_CATEGORY_CARRIER_REJECTED
    return failed(f"receiver refused the postback: {what}", category, str(status))


class PostbackChannel:
    name = "postback"
    channel = c.CHANNEL_POSTBACK
    carrier = "receiver"
    metrics: ChannelMetrics = METRICS
    streams_outcomes = False  # one batch of POSTs, its outcomes recorded together

    def __init__(self, timeout: float, concurrency: int) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.concurrency = max(concurrency, 1)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=conn, timeout=self.timeout,
                                                  auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def batch_limit(self) -> int | None:
        return self.concurrency

    def ref(self, job: e.MessageJob) -> str | None:
        return None

    def prepare(self, job: e.MessageJob) -> Post | Outcome:
        try:
            url = SPEC.normalise_address(job.to)
        except channels.AddressError as exc:
            return failed(f"The URL {job.to[:320]} is incorrect: {exc}",
                          F.FAILURE_CATEGORY_INVALID_ADDRESS)
        try:
            body = templating.render(postback_content(job).body,
                                     templating.context(job.fields))
        except templating.TemplateError as exc:
            return failed(f"body template failed: {exc}", F.FAILURE_CATEGORY_CONTENT_REJECTED)
        try:
            json.loads(body)
        except ValueError as exc:
            return failed(f"rendered body is not JSON ({exc}); render values with | tojson",
                          F.FAILURE_CATEGORY_CONTENT_REJECTED)
        data = body.encode("utf-8")
        if len(data) > MAX_BODY:
            return failed(f"rendered body is {len(data)} bytes, at most {MAX_BODY}",
                          F.FAILURE_CATEGORY_CONTENT_REJECTED)
        return Post(url, data)

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        session = self.session()
        await asyncio.gather(*(self._post(session, it, gate, report) for it in jobs))

    async def _post(self, session: aiohttp.ClientSession, it: Job, gate: WriteGate,
                    report: Report) -> None:
        post: Post = it.prepared
        job = it.job
        if await gate.commit(it) is not None:
            report.unwritten(it)  # the claim is gone: whoever holds it now decides
            return
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"{job.message_id}:{job.attempt}",
                   "X-Herald-Message-Id": job.message_id,
                   "X-Herald-Campaign-Id": job.campaign_id}
        if job.sender:
            headers["X-Herald-Sender"] = job.sender
        began = time.perf_counter()
        try:
            async with session.post(post.url, data=post.body, headers=headers,
                                    allow_redirects=False) as resp:
                await resp.read()
                outcome = answer_outcome(resp.status, resp.reason or "", job.message_id)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            outcome = deferred(f"receiver unreachable: {type(exc).__name__}: {exc}")
        METRICS.latency.observe(time.perf_counter() - began)
        report.outcome(it, outcome)

    def exhausted(self, last: Outcome, deliveries: int) -> Outcome:
        return failed(f"gave up after {deliveries} deliveries: {last.description}",
                      F.FAILURE_CATEGORY_CARRIER_REJECTED, last.code)

    def abandon_meaning(self, reason: str) -> str:
        return {"worker_stopped": "the gateway stopped after posting it, before the answer",
                "redis_lost": "its send marker was lost with Redis's data",
                }.get(reason, "its send marker is unreadable")

    def listeners(self) -> Sequence[Listener]:
        return ()

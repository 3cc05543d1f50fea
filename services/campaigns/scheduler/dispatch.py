"""Dispatch: pacing (SPREAD over start..end, max_rate token bucket) and publishing the jobs
of QUEUED messages to JOBS, each with its live "sending" event."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.errors import MaxPayloadError
from prometheus_client import Counter

from services.campaigns import lifecycle
from services.campaigns.repo import messages as messages_repo
from services.campaigns.scheduler.base import describe, log
from services.campaigns.scheduler.content import content_of, content_problem
from services.campaigns.scheduler.finish import FinishMixin
from shared import channels, states
from shared.timeutil import aware, to_ts

S = c.MessageStatus
JOBS_PUBLISHED = Counter("herald_campaigns_jobs_published_total", "Jobs published to JOBS.", ["channel"])
JOBS_REFUSED = Counter("herald_campaigns_jobs_refused_total",
                       "Messages failed at dispatch because their job can never be published, "
                       "by reason (too_large, content).", ["reason"])
# Room left in a NATS message for the subject and the Nats-Msg-Id header.
HEADER_ROOM = 512
SENDING_SUBJECT = states.message_subject(e.MESSAGE_EVENT_KIND_SENDING)


def rate_problem(row: Any) -> str:
    rate = row["max_rate"] or 0.0
    if not math.isfinite(rate) or rate < 0:
        return f"max_rate {rate!r} is not a finite rate (messages per second, 0 = no cap)"
    return ""


class DispatchMixin(FinishMixin):
    def allowance(self, row: Any, dispatched: int, total: int) -> int:
        """How many more jobs the mode and the rate cap allow now. SPREAD paces evenly over
        start..end; max_rate is a token bucket (one second of burst)."""
        n = self.batch
        now = self.clock.now()
        if row["mode"] == pb.CAMPAIGN_MODE_SPREAD and row["end_at"] and row["start_at"]:
            start, end = aware(row["start_at"]), aware(row["end_at"])
            # Message i is due at start + i * span / total, looked at one tick ahead so the
            # last one leaves before end_at (which would expire the campaign) despite the
            # tick granularity.
            span = max((end - start).total_seconds(), 1.0)
            elapsed = (now - start).total_seconds() + self.interval
            due = min(total, math.floor(total * elapsed / span) + 1) if elapsed >= 0 else 0
            n = min(n, due - dispatched)
        rate = row["max_rate"] or 0.0
        if rate > 0:
            t = now.timestamp()
            tokens, at = self.buckets.get(row["id"], (min(rate, 1.0), t))
            tokens = min(max(rate, 1.0), tokens + (t - at) * rate)
            self.buckets[row["id"]] = (tokens, t)
            n = min(n, math.floor(tokens))
        return max(0, n)

    def spend(self, campaign_id: str, n: int) -> None:
        if campaign_id in self.buckets:
            tokens, at = self.buckets[campaign_id]
            self.buckets[campaign_id] = (tokens - n, at)

    async def dispatch(self, row: Any) -> int:
        cid = row["id"]
        problem = rate_problem(row)
        if problem:  # refused at create; a row from before that check must not loop here
            await self.fail_campaign(row, problem, c.FAILURE_CATEGORY_CONFIG_ERROR)
            return 0
        async with self.store.read() as conn:
            # Only SPREAD paces by position in the audience: counting the campaign's messages
            # on every tick cost a scan growing with the audience.
            total = dispatched = 0
            if row["mode"] == pb.CAMPAIGN_MODE_SPREAD:
                total, dispatched = await messages_repo.dispatch_counts(conn, cid)
            n = self.allowance(row, dispatched, total)
            if n <= 0:
                return 0
            pending = await messages_repo.next_to_send(conn, cid, n)
        if not pending:
            return 0
        now = self.clock.now()
        expires, at = to_ts(now + timedelta(seconds=self.job_ttl)), to_ts(now)
        spec = channels.spec(row["channel"])
        limit = self.max_payload
        items: list[tuple[str, Any, str]] = []  # (subject, job bytes or event, Nats-Msg-Id)
        sent_ids: list[str] = []
        refused: dict[str, list[str]] = {}  # reason -> message ids that can never be published
        workspace, channel, sender = row["workspace_id"], row["channel"], row["sender"]
        # variant name -> its content and why it cannot render ("" when it can), once per batch
        contents: dict[str, tuple[dict[str, str], str]] = {}
        for m in pending:
            key = m["variant"].split(":", 1)[0]
            if key not in contents:
                ct = content_of(row, m["variant"])
                contents[key] = (ct, content_problem(ct))
            ct, problem = contents[key]
            if problem:
                refused.setdefault(problem, []).append(m["id"])
                continue
            job = e.MessageJob(
                message_id=m["id"], campaign_id=cid, workspace_id=workspace,
                channel=channel, attempt=m["attempt"], sender=sender, to=m["address"],
                contact_id=m["contact_id"], variant=m["variant"], fields=m["fields"] or {},
                created_at=to_ts(aware(m["created_at"])), expires_at=expires)
            spec.set_content(job, ct)
            data = job.SerializeToString()  # once: its size is checked, then it is sent
            if len(data) + HEADER_ROOM > limit:
                refused.setdefault(f"the message job is over the bus payload limit of {limit} bytes "
                                   "(content too large)", []).append(m["id"])
                continue
            items.append((spec.subject, data, f"{m['id']}:{m['attempt']}"))
            # The live "sending" count: one event per hand-over, in the same batch as the job.
            ev = e.MessageEvent(
                event_id=f"{m['id']}:sending:{m['attempt']}", kind=e.MESSAGE_EVENT_KIND_SENDING,
                status=c.MESSAGE_STATUS_SENDING, message_id=m["id"], campaign_id=cid,
                workspace_id=workspace, channel=channel, occurred_at=at,
                to=m["address"], variant=m["variant"], attempt=m["attempt"])
            items.append((SENDING_SUBJECT, ev, ev.event_id))
            sent_ids.append(m["id"])
        for reason, ids in refused.items():
            await self.refuse(row, ids, reason)
        if not items:
            return 0
        try:
            await self.publisher.publish_many(items)
        except MaxPayloadError as exc:  # over the server's limit despite the check above
            await self.fail_campaign(row, f"publishing jobs failed: {exc!r}", c.FAILURE_CATEGORY_CONTENT_REJECTED)
            return 0
        except Exception as exc:  # NATS unavailable: nothing marked dispatched, retried next tick
            # Logged once per distinct error (as the Errors tab stores it), not on every tick.
            if await self.record_error(row, "dispatch", f"publishing jobs failed ({describe(exc)}); retrying"):
                log.warning("publishing jobs failed, retrying",
                            extra={"campaign_id": cid, "jobs": len(sent_ids), "error": describe(exc)})
            return 0
        self.spend(cid, len(sent_ids))
        JOBS_PUBLISHED.labels(c.Channel.Name(row["channel"])).inc(len(sent_ids))
        async with self.store.write() as conn:
            await messages_repo.mark_dispatched(conn, sent_ids, now)
        return len(sent_ids)

    async def refuse(self, row: Any, ids: list[str], reason: str) -> None:
        """Messages whose job can never be published (content too large for the bus, a
        template that does not render) fail now, with one job error, instead of being retried
        on every tick."""
        JOBS_REFUSED.labels("too_large" if "payload" in reason else "content").inc(len(ids))
        await self.record_error(row, "dispatch", f"messages not sent: {reason}")
        await self._finish(row["id"], ids, S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                           c.FAILURE_CATEGORY_CONTENT_REJECTED, reason)

    async def fail_campaign(self, row: Any, reason: str, category: int) -> None:
        """A campaign that cannot be dispatched at all: FAILED with the reason, its waiting
        messages FAILED too (messages already with a gateway finish on their own)."""
        await self.record_error(row, "dispatch", reason)
        await self._finish_undispatched(row["id"], S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                                        category, reason)
        await self.transition(row["id"], lifecycle.FAILED, reason, completed_at=self.clock.now())
        log.error("campaign failed at dispatch", extra={"campaign_id": row["id"], "reason": reason})

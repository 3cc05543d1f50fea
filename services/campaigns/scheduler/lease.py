"""Leases: which replica works on which campaign in this tick, each replica about its share.

On PostgreSQL the claim selects with FOR UPDATE SKIP LOCKED, so two replicas never claim the
same campaign and a dead replica's campaigns are taken over when its lease runs out. SQLite
has a single writer by nature: run one replica on it.

Fair share, from what the campaigns table already holds: the live replicas are the distinct
owners of unexpired leases on active campaigns, plus this one; a replica's share is the
active campaigns divided by them, rounded up (and at most HERALD_SCHEDULER_MAX_LEASES).
- A replica leases at most HERALD_SCHEDULER_CLAIMS_PER_TICK free campaigns a tick, so
  campaigns approved together are spread over replicas whose ticks interleave, instead of
  the first tick taking them all.
- Once other owners are seen, a replica takes free campaigns only up to its share, and gives
  up what it holds beyond it at the start of a tick (a campaign being built stays where it
  is): it no longer acts on that campaign in this tick or later, and the release commits
  before another replica can lease it, so no campaign is worked on by two replicas at once.
  A replica over its share implies another under it, which takes the campaign on its next
  tick; a lone replica has no one to share with and keeps everything.
- A replica that holds nothing is invisible to the others. So that one started while all
  campaigns were leased still gets work, a replica that would hold more than its share with
  one more replica, while every owner it sees is at its share, offers one campaign now and
  then (every 6 leases): it gives the lease up and does not take it back for a few ticks. An
  idle replica takes it and becomes visible, and the shares follow; if none exists the
  offering replica takes it back.
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge

from services.campaigns import lifecycle, settings
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.scheduler.base import JobBase, log
from shared.timeutil import aware

ACTIVE = Gauge("herald_campaigns_active", "Campaigns in an active state.", ["status"])
LEASES_HELD = Gauge(
    "herald_campaigns_leases_held", "Active campaigns this replica leased in its last tick."
)
LEASE_RELEASES = Counter(
    "herald_campaigns_lease_releases_total",
    "Leases this replica gave up for another to take, by reason: share "
    "(beyond its fair share), max (beyond HERALD_SCHEDULER_MAX_LEASES), offer "
    "(offered to a replica that holds none), stop (the replica stopped).",
    ["reason"],
)
# Least disruptive first: a campaign not yet started, then a paused one, then a sending one
# (the newest first); a campaign being built is never given up for fairness.
RELEASE_ORDER = {lifecycle.PENDING: 0, lifecycle.PAUSED: 1, lifecycle.SENDING: 2}
OFFER_EVERY_LEASES = 6  # an offer every 6 lease periods (one minute by default)


@dataclass
class Plan:
    """What one tick's claim does: renew the owner's leases but `release`, and lease up to
    `room` free campaigns."""

    replicas: int  # live replicas counted, this one included
    share: int  # most leases this replica keeps
    held: int  # this owner's leases before the tick
    release: list[str] = field(default_factory=list)
    reason: str = ""  # why: share | max | offer
    room: int = 0


def _live(row: Any, now: datetime) -> bool:
    until = aware(row["lease_until"])
    return until is not None and until >= now


def _movable(rows: Sequence[Any]) -> list[Any]:
    """Leases that may be given up, in the order they are given up."""
    out = [r for r in rows if r["status"] in RELEASE_ORDER]
    out.sort(key=lambda r: (-aware(r["created_at"]).timestamp(), r["id"]))
    out.sort(key=lambda r: RELEASE_ORDER[r["status"]])
    return out


def plan(
    view: Sequence[Any],
    owner: str,
    now: datetime,
    per_tick: int,
    max_leases: int = 0,
    offer: bool = False,
    held_back: Sequence[str] = (),
    building: Sequence[str] = (),
) -> Plan:
    """This tick's claim for `owner`, from every active campaign's lease (repo.lease_view).
    offer: an offer is due (see the module's doc); held_back: campaigns it offered and does
    not take back yet; building: campaigns whose build it runs (never given up)."""
    mine = [r for r in view if r["lease_owner"] == owner]
    others = Tally(
        r["lease_owner"]
        for r in view
        if r["lease_owner"] and r["lease_owner"] != owner and _live(r, now)
    )
    active = len(view)
    replicas = len(others) + 1
    share = math.ceil(active / replicas) if others else active
    reason = "share"
    if max_leases > 0 and max_leases < share:
        share, reason = max_leases, "max"
    p = Plan(replicas, share, len(mine))
    movable = _movable([r for r in mine if r["id"] not in building])
    if len(mine) > share:
        p.release, p.reason = [r["id"] for r in movable[: len(mine) - share]], reason
    elif (
        offer
        and len(mine) > math.ceil(active / (replicas + 1))
        and all(n >= share for n in others.values())
    ):
        p.release, p.reason = [r["id"] for r in movable[:1]], "offer"
    taken = {r["id"] for r in mine} | set(held_back) | set(p.release)
    free = sum(1 for r in view if r["id"] not in taken and not _live(r, now))
    p.room = max(0, min(per_tick, share - (len(mine) - len(p.release)), free))
    return p


class LeaseMixin(JobBase):
    async def claim(self, now: datetime) -> list[Any]:
        """Lease the campaigns this replica acts on in this tick (see the module's doc)."""
        st = self.__dict__.setdefault("lease_state", {"offer_at": None, "held_back": {}})
        offer_every = timedelta(seconds=OFFER_EVERY_LEASES * self.lease)
        if st["offer_at"] is None:
            st["offer_at"] = now + offer_every
        held_back = {cid: t for cid, t in st["held_back"].items() if t > now}
        async with self.store.write() as conn:
            view = await campaigns_repo.lease_view(conn)
            p = plan(
                view,
                self.owner,
                now,
                max(1, settings.SCHEDULER_CLAIMS_PER_TICK.get_int()),
                settings.SCHEDULER_MAX_LEASES.get_int(),
                # SQLite has one writer, so one replica: there is no one to offer a campaign to.
                now >= st["offer_at"] and self.store.engine.dialect.name != "sqlite",
                list(held_back),
                sorted(self.building()),
            )
            rows = await campaigns_repo.claim(
                conn,
                self.owner,
                now,
                now + timedelta(seconds=self.lease),
                take=p.room,
                release=p.release,
                exclude=list(held_back),
            )
        if now >= st["offer_at"]:
            st["offer_at"] = now + offer_every
        if p.reason == "offer" and p.release:
            # Back after a few of an idle replica's ticks: time for it to see the campaign free.
            held_back[p.release[0]] = now + timedelta(seconds=max(1.0, 5 * self.interval))
        st["held_back"] = held_back
        for cid in p.release:
            LEASE_RELEASES.labels(p.reason).inc()
            log.info(
                "campaign lease released",
                extra={
                    "campaign_id": cid,
                    "reason": p.reason,
                    "share": p.share,
                    "replicas": p.replicas,
                    "held": p.held,
                },
            )
        LEASES_HELD.set(len(rows))
        return rows

    async def release_leases(self) -> None:
        """On stop, after the last tick ended (nothing of this replica acts on a campaign any
        more): give every lease up so the other replicas take the campaigns at once, not
        after the lease runs out. Best effort: a failure leaves the leases to expire."""
        try:
            async with self.store.write() as conn:
                n = await campaigns_repo.release_all(conn, self.owner)
        except Exception as exc:  # the database is gone: the leases expire as before
            log.warning("leases not released at stop", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        if n:
            LEASE_RELEASES.labels("stop").inc(n)
            log.info("campaign leases released at stop", extra={"campaigns": n})
        LEASES_HELD.set(0)

    async def count_active(self) -> None:
        """The active-campaigns gauge, by status (every replica reports the same figures)."""
        async with self.store.read() as conn:
            counts = await campaigns_repo.count_by_status(conn, list(lifecycle.ACTIVE))
        for st in lifecycle.ACTIVE:
            ACTIVE.labels(st).set(counts.get(st, 0))

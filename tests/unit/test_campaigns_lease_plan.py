"""The fair-share plan of one tick's claim: live replicas counted from unexpired lease owners,
share rounded up, surplus given up least disruptive first (never a campaign being built),
free campaigns taken a few a tick, offers only when an unseen replica would be the taker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.campaigns import lifecycle
from services.campaigns.scheduler.lease import plan

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LIVE = NOW + timedelta(seconds=5)
GONE = NOW - timedelta(seconds=1)


def lease(
    i: int, owner: str = "", until: datetime | None = None, status: str = lifecycle.SENDING
) -> dict:
    return {
        "id": f"c{i}",
        "status": status,
        "lease_owner": owner,
        "lease_until": until if owner else None,
        "created_at": NOW + timedelta(seconds=i),
    }


def test_a_lone_replica_takes_everything_a_few_a_tick() -> None:
    view = [lease(i) for i in range(4)]
    p = plan(view, "a", NOW, per_tick=1)
    assert (p.replicas, p.share, p.room, p.release) == (1, 4, 1, [])
    assert plan(view, "a", NOW, per_tick=3).room == 3


def test_with_another_owner_the_share_is_rounded_up_and_caps_what_is_taken() -> None:
    view = [lease(0, "b", LIVE), lease(1, "a", LIVE), lease(2), lease(3), lease(4)]
    p = plan(view, "a", NOW, per_tick=5)
    assert (p.replicas, p.share, p.room) == (2, 3, 2)


def test_expired_owners_are_not_counted_and_their_campaigns_are_free() -> None:
    view = [lease(0, "dead", GONE), lease(1, "dead", GONE), lease(2, "a", LIVE)]
    p = plan(view, "a", NOW, per_tick=5)
    assert (p.replicas, p.share, p.room) == (1, 3, 2)


def test_surplus_is_given_up_pending_then_paused_then_newest_sending_never_building() -> None:
    view = [
        lease(0, "a", LIVE, lifecycle.BUILDING),
        lease(1, "a", LIVE, lifecycle.SENDING),
        lease(2, "a", LIVE, lifecycle.SENDING),
        lease(3, "a", LIVE, lifecycle.PAUSED),
        lease(4, "a", LIVE, lifecycle.PENDING),
        lease(5, "a", LIVE, lifecycle.BUILDING),
        lease(6, "b", LIVE),
    ]
    # 7 active, 2 replicas: share 4, a holds 6
    assert plan(view, "a", NOW, per_tick=1).release == ["c4", "c3"]
    assert plan(view, "a", NOW, per_tick=1, max_leases=2).release == ["c4", "c3", "c2", "c1"]
    p = plan(view, "a", NOW, per_tick=1, max_leases=1)
    assert (p.release, p.reason, p.room) == (["c4", "c3", "c2", "c1"], "max", 0)  # builds stay
    # A PENDING campaign whose build this replica has started (not yet BUILDING) stays too.
    assert plan(view, "a", NOW, per_tick=1, building=["c4"]).release == ["c3", "c2"]


def test_max_leases_caps_a_lone_replica() -> None:
    p = plan([lease(i) for i in range(4)], "a", NOW, per_tick=4, max_leases=2)
    assert (p.share, p.room) == (2, 2)


def test_an_offer_only_when_an_unseen_replica_would_take_it() -> None:
    alone = [lease(i, "a", LIVE) for i in range(4)]
    p = plan(alone, "a", NOW, per_tick=1, offer=True)
    assert (p.release, p.reason, p.room) == (["c3"], "offer", 0)
    assert plan(alone, "a", NOW, per_tick=1).release == []
    assert plan(alone[:1], "a", NOW, per_tick=1, offer=True).release == []
    # b holds less than its share (2 of 4): it takes what a has beyond it without offers
    uneven = [lease(0, "a", LIVE), lease(1, "a", LIVE), lease(2, "a", LIVE), lease(3, "b", LIVE)]
    assert plan(uneven, "a", NOW, per_tick=1).release == ["c2"]
    # 2 + 2 of 4: a third replica's share (ceil(4 / 3) = 2) would not lower a's
    balanced = [lease(0, "a", LIVE), lease(1, "a", LIVE), lease(2, "b", LIVE), lease(3, "b", LIVE)]
    assert plan(balanced, "a", NOW, per_tick=1, offer=True).release == []
    six = [lease(i, "a" if i < 3 else "b", LIVE) for i in range(6)]  # 3 + 3: a third gets 2
    assert plan(six, "a", NOW, per_tick=1, offer=True).release == ["c2"]


def test_held_back_campaigns_are_not_taken_again_yet() -> None:
    view = [lease(0, "a", LIVE), lease(1)]
    assert plan(view, "a", NOW, per_tick=1, held_back=["c1"]).room == 0
    assert plan(view, "a", NOW, per_tick=1).room == 1

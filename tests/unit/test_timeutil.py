"""shared.timeutil's Timestamp conversions give exactly what protobuf's own would, over the
whole range a Timestamp may hold (they replace them on the per-message paths for speed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from shared.timeutil import from_ts, to_ts

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), ZONES)
def test_to_ts_is_protobufs(dt: datetime, tz: timezone | None) -> None:
    if tz is not None:
        dt = dt.replace(tzinfo=tz)
    want = Timestamp()
    want.FromDatetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    assert to_ts(dt) == want


@given(st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999))
def test_from_ts_is_protobufs(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    got = from_ts(ts)
    if seconds == 0 and nanos == 0:
        assert got is None  # "not set"
        return
    want = ts.ToDatetime(tzinfo=UTC)
    assert got == want and got is not None and got.utcoffset() == want.utcoffset()
    assert from_ts(to_ts(got)) == got


@pytest.mark.parametrize(("seconds", "nanos"), [(253402300800, 0), (-62135596801, 0), (5, -1500),
                                                (5, 1_000_000_000)])
def test_an_invalid_timestamp_is_refused_as_before(seconds: int, nanos: int) -> None:
    with pytest.raises(ValueError):
        from_ts(Timestamp(seconds=seconds, nanos=nanos))


def test_not_set() -> None:
    assert from_ts(None) is None and from_ts(Timestamp()) is None and to_ts(None) is None

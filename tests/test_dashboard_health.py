"""Stream health's events per minute against known feeds (the overview's "Events / min")."""

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import health
from dashboard.models import MinuteCount

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def feed(per_minute, since, until):
    """{minute start (epoch s): events} of a steady feed from ``since`` to ``until`` (partial minutes pro rata)."""
    minutes, moment = {}, since
    while moment < until:
        minute = int(moment.timestamp()) // 60 * 60
        end = min(until, datetime.fromtimestamp(minute + 60, UTC))
        minutes[minute] = minutes.get(minute, 0) + round(per_minute * (end - moment).total_seconds() / 60)
        moment = end
    return minutes


def at(minutes, seconds=0):
    return NOON + timedelta(minutes=minutes, seconds=seconds)


def test_a_feed_of_60_a_minute_that_began_two_minutes_ago_reads_60_not_8():
    now = at(2, 30)
    assert health.per_minute(feed(60, at(0, 30), now), now) == 60


def test_a_feed_of_60_a_minute_for_the_whole_window_reads_60():
    now = at(20, 30)
    window = feed(60, now - health.RATE_WINDOW, now)
    assert health.per_minute(window, now) == 60


def test_a_feed_that_stopped_reads_lower_as_its_silence_grows():
    minutes = feed(60, at(0), at(5))
    assert health.per_minute(minutes, at(5)) == 60
    assert health.per_minute(minutes, at(9)) == 30  # 4 minutes of events over 8 minutes (from 12:01)


def test_a_first_batch_is_spread_over_a_minute_and_no_feed_reads_zero():
    assert health.per_minute({int(at(0).timestamp()): 30}, at(0, 5)) == 30
    assert health.per_minute({}, at(0)) == 0


@pytest.mark.django_db
def test_a_source_s_health_row_reads_the_rollups_of_a_known_feed(source):
    now = at(3, 30)
    for minute, n in feed(120, at(0, 30), now).items():
        MinuteCount.objects.create(
            source=source, stream="activity", type="x", activity_type_id=1,
            minute=datetime.fromtimestamp(minute, UTC), count=n,
        )  # fmt: skip
    (row,) = health.of_sources([source], now)
    assert row["per_minute"] == 120

"""Where a registration stands, from what Fluxo answered: errors and Adobe's retries over Adobe's 24-hour window."""

import orjson
import pytest

from streams import registration_health
from streams.models import AdobeRegistration
from streams.simulator.generators import Generator
from tests.ingest import io_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def registration(source, redis_client):
    return AdobeRegistration.objects.create(name="Acme activities", source=source)


def elements(source, count, seed):
    return [event.io for event in Generator(source.munchkin_id, seed, "", streams=("activity",)).take(count)]


def post(client, source, body, headers):
    return client.post(f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **headers)


def test_a_registration_fluxo_mostly_refused_for_a_day_is_probably_unstable_or_disabled(
    client, source, registration, key_server, signed_headers
):
    io_post(client, source, signed_headers, elements(source, 1, 1))
    for n in range(12):
        body = orjson.dumps(elements(source, 1, 10 + n))
        refused = client.post(
            f"/ingest/{source.ingest_key}/adobe-io/",
            body,
            content_type="application/json",
            **signed_headers(body, False, False),
        )
        assert refused.status_code == 401

    health = registration_health.estimate(registration)

    assert health.level == "probably_unstable_or_disabled" and health.at_risk
    assert "12 of 13 webhook requests in 24 h answered with an error" in health.reasons[1]


def test_adobes_retries_put_a_registration_at_risk(client, source, registration, key_server, signed_headers):
    for n in range(10):
        body = orjson.dumps(elements(source, 1, 30 + n))
        retried = {**signed_headers(body), "HTTP_X_ADOBE_RETRY_COUNT": "2"}
        assert (
            client.post(
                f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **retried
            ).status_code
            == 200
        )

    health = registration_health.estimate(registration)

    assert health.level == "at_risk" and "10 deliveries in 24 h were Adobe's retries" in health.reasons


def test_a_healthy_webhook_is_active(client, source, registration, key_server, signed_headers):
    io_post(client, source, signed_headers, elements(source, 5, 50))
    assert registration_health.estimate(registration).level == "active"


def test_the_setup_page_lists_the_hours_fluxo_answered_errors(client, source, registration, key_server, signed_headers):
    from django.contrib.auth.models import User

    body = orjson.dumps(elements(source, 1, 70))
    post(client, source, body, signed_headers(body, first=False, second=False))
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(f"/admin/streams/source/{source.id}/setup/").content.decode()

    section = page.split("Hours with error answers")[1]
    assert "<td>1</td><td>0</td>" in section  # one refused, no 503


def reported(registration, status, enabled):
    from django.utils import timezone

    registration.adobe_webhook_status, registration.adobe_enabled = status, enabled
    registration.adobe_checked_at = timezone.now()
    registration.save()
    return registration_health.estimate(registration)


@pytest.mark.parametrize(
    ("status", "enabled", "level"),
    [
        ("verified", True, "active"),
        ("hook_unreachable", True, "unstable"),
        ("hook_unreachable", False, "disabled"),
        ("verified", False, "disabled"),  # enabled false is Disabled whatever the status
        ("UNSTABLE", True, "unstable"),  # the Console's words, in any case
    ],
)
def test_adobes_documented_registration_shapes_are_read(registration, status, enabled, level):
    health = reported(registration, status, enabled)
    assert health.level == level
    assert f"webhook_status {status.lower()!r}" in health.reasons[0]


def test_a_webhook_status_nobody_documented_is_shown_and_what_fluxo_saw_decides(
    client, source, registration, key_server, signed_headers
):
    io_post(client, source, signed_headers, elements(source, 2, 80))

    health = reported(registration, "pending_review", True)

    assert health.level == "active"
    assert "webhook_status 'pending_review' (not a value Fluxo knows)" in health.reasons[0]


# --- Heartbeat gaps: when no Fluxo process ran, Adobe's deliveries failed where Fluxo could not see them ------


def ran(redis_client, start, end):
    """Mark every minute of [start, end) as one a Fluxo process ran in (as heartbeats do, a minute each)."""
    from streams import uptime

    pipe = redis_client.pipeline(transaction=False)
    for minute in range(int(start.timestamp() // 60), int(end.timestamp() // 60)):
        pipe.setbit(uptime._key(uptime._at(minute)), minute % uptime.MINUTES_A_DAY, 1)
    pipe.execute()


def delivered(source, start, end, every):
    """Webhook requests the source received from ``start`` to ``end``, one each ``every``."""
    from streams.models import Batch

    moments = []
    while start < end:
        moments.append(start)
        start += every
    Batch.objects.bulk_create(
        [Batch(received_at=m, protocol="io", source=source, accepted=1, duplicates=0) for m in moments]
    )


@pytest.fixture
def now():
    from django.utils import timezone

    return timezone.now().replace(second=30, microsecond=0)


def test_a_long_time_fluxo_was_not_running_makes_the_registration_probably_unstable(
    registration, source, redis_client, now
):
    from datetime import timedelta

    down_from, down_to = now - timedelta(hours=20), now - timedelta(hours=2)
    ran(redis_client, now - timedelta(days=3), down_from)
    ran(redis_client, down_to, now + timedelta(minutes=1))
    delivered(source, now - timedelta(days=3), down_from, timedelta(minutes=2))
    delivered(source, down_to, now, timedelta(minutes=2))

    health = registration_health.estimate(registration, now)

    assert health.level == "probably_unstable_or_disabled" and health.at_risk
    gap = next(r for r in health.reasons if r.startswith("no Fluxo process ran"))
    assert f"from {down_from:%Y-%m-%d %H:%M} to {down_to:%H:%M} UTC (18 h 0 min)" in gap
    assert "webhook attempts by Adobe failed then, unseen" in gap


def test_a_short_outage_in_a_busy_day_leaves_the_registration_active(registration, source, redis_client, now):
    from datetime import timedelta

    down_from, down_to = now - timedelta(hours=5), now - timedelta(hours=5) + timedelta(minutes=6)
    ran(redis_client, now - timedelta(days=2), down_from)
    ran(redis_client, down_to, now + timedelta(minutes=1))
    delivered(source, now - timedelta(days=2), now, timedelta(minutes=1))

    health = registration_health.estimate(registration, now)

    assert health.level == "active"
    assert any(r.startswith("no Fluxo process ran") and "(6 min)" in r for r in health.reasons)


def test_no_record_is_not_read_as_fluxo_being_down(registration, source, redis_client, now):
    from datetime import timedelta

    ran(redis_client, now - timedelta(hours=2), now + timedelta(minutes=1))  # Redis lost what came before
    delivered(source, now - timedelta(days=2), now, timedelta(minutes=1))

    health = registration_health.estimate(registration, now)

    assert health.level == "active" and not any(r.startswith("no Fluxo process ran") for r in health.reasons)

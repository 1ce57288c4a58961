"""At least once, with real processes: a Celery worker killed while Slack holds its request open leaves the
delivery claimed; the sweeper puts it back and the next worker delivers it (it may arrive twice, never lost)."""

import signal
import sqlite3

import pytest

from tests.alerts_receivers import Receiver
from tests.processes import SOLO_WORKER, bare_env, celery, manage, stop_embedded_redis, wait_for

SETUP = """
from django.utils import timezone
from alerts.models import Alert, Delivery, Destination, Rule
rule = Rule.objects.create(name="Bounces surge", kind="threshold", severity="critical", threshold=10)
slack = Destination.objects.create(name="ops", kind="slack", url="{url}/services/T0/B0/secret")
now = timezone.now()
alert = Alert.objects.create(
    rule=rule, state="firing", severity="critical", started_at=now, fired_at=now, summary="42 bounces in 5 minutes"
)
print(Delivery.objects.create(alert=alert, rule=rule, destination=slack, reason="firing", due_at=now).pk)
"""
DISPATCH = "from alerts import delivery; print(delivery.dispatch_due())"
SWEEP = (
    "from datetime import timedelta; from django.utils import timezone; from alerts import delivery; "
    "print(delivery.sweep(timezone.now() + timedelta(minutes=4)))"
)


def shell(env, code):
    """The last line a ``manage.py shell -c`` printed (Django's shell may print a banner first)."""
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def row(db, delivery_id):
    with sqlite3.connect(db) as conn:
        return conn.execute("select status, attempts from alerts_delivery where id = ?", [delivery_id]).fetchone()


def outcomes(db, delivery_id):
    with sqlite3.connect(db) as conn:
        query = "select outcome from alerts_deliveryattempt where delivery_id = ? order by id"
        return [r[0] for r in conn.execute(query, [delivery_id])]


@pytest.mark.slow
def test_a_worker_killed_mid_send_is_swept_and_the_next_worker_delivers(tmp_path):
    slack = Receiver()
    env = bare_env(tmp_path, FLUXO_ALLOW_PRIVATE_URLS="1")
    db = tmp_path / "fluxo.sqlite3"
    try:
        manage(env, "migrate", "--noinput")
        delivery_id = int(shell(env, SETUP.format(url=slack.url)))

        slack.hold()  # Slack takes the request and does not answer
        with celery(env, *SOLO_WORKER) as first:
            assert shell(env, DISPATCH) == f"[{delivery_id}]"
            wait_for(slack.arrived.is_set)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        assert row(db, delivery_id) == ("claimed", 0)

        slack.release()
        assert shell(env, SWEEP) == "1"
        assert row(db, delivery_id)[0] == "pending"
        with celery(env, *SOLO_WORKER):
            shell(env, DISPATCH)
            wait_for(lambda: row(db, delivery_id)[0] == "sent")

        assert row(db, delivery_id) == ("sent", 1)
        assert outcomes(db, delivery_id) == ["abandoned", "sent"]
        assert len(slack.requests) == 2  # it arrived twice: at least once, never lost
        assert slack.requests[0].body == slack.requests[1].body
        assert slack.requests[1].json()["blocks"][0]["type"] == "header"
    finally:
        slack.close()
        stop_embedded_redis(tmp_path)

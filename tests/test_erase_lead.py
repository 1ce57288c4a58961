"""Erasing one lead's personal data: its events go, its e-mail leaves alert samples, counts stay."""

import io
import json
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.test import Client

from alerts import evaluate
from alerts.models import Alert, AlertEvent, Rule
from dashboard import rollups
from dashboard.models import MinuteCount
from streams import deletion, erasure
from streams.auth import issue_api_token
from streams.models import Batch, ErasureRecord, Event
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db

JANE, BOB = "Jane.Doe@example.com", "bob@example.org"
CHANGE_DATA_VALUE = 13
NEW_VALUE = {"name": "New Value", "value": "jane.doe+new@example.com"}


def janes_activities():
    """Lead 1001's activities: its address as a primary attribute and inside the raw attributes."""
    return [
        activity(1, lead="1001", primary=JANE),
        activity(CHANGE_DATA_VALUE, lead="1001", primary="Email Address", attributes=[NEW_VALUE]),
        activity(1, lead="1001", primary="/pricing"),
    ]


@pytest.fixture
def stored(client, source, other_source, api_token):
    """Jane (lead 1001) and Bob (lead 2002) at Acme; another lead 1001 at Acme EU; rolled up, alerted."""
    janes = janes_activities()
    legacy_push(client, source, api_token, janes)
    bobs = [activity(1, lead="2002", primary=BOB), activity(1, lead="2002", primary=f"forwarded to {JANE}")]
    legacy_push(client, source, api_token, bobs)
    legacy_push(client, other_source, issue_api_token(other_source), [activity(1, lead="1001", primary=JANE)])
    rollups.roll_up()
    Rule.objects.create(name="every event", kind="match", group_by="source")  # an alert per source
    evaluate.evaluate()
    return janes


def counts():
    return (
        MinuteCount.objects.aggregate(n=Sum("count"))["n"],
        sorted(json.dumps(b.counts) for b in Batch.objects.all()),
    )


def all_samples(source):
    return [s for alert in Alert.objects.filter(source=source) for s in alert.samples]


def test_the_command_removes_only_that_leads_events_scrubs_samples_and_keeps_counts(stored, source, other_source):
    before = counts()
    out = io.StringIO()
    call_command("erase_lead", source.munchkin_id, "1001", "--json", stdout=out)
    answer = json.loads(out.getvalue())
    assert Event.objects.filter(source=source, lead_id="1001").count() == 0
    assert Event.objects.filter(source=source, lead_id="2002").count() == 2
    assert Event.objects.filter(source=other_source, lead_id="1001").count() == 1  # another instance's lead
    assert counts() == before
    record = ErasureRecord.objects.get()
    assert (record.source, record.lead_id, record.erased_by, record.events_removed) == (source, "1001", "command", 3)
    assert answer["record"] == record.pk and answer["events_removed"] == 3
    assert record.samples_scrubbed >= 2  # Jane's own sample, the forwarded one (and the first-match line)
    lines = AlertEvent.objects.filter(alert__source=source).values_list("detail", flat=True)
    text = json.dumps(all_samples(source)) + " ".join(lines)
    assert JANE.lower() not in text.lower()
    assert "jane.doe+new@example.com" not in text
    assert BOB in text  # another lead's address stays
    assert "forwarded to [erased]" in text  # Jane's address in another lead's sample goes too
    other_alert = Alert.objects.get(source=other_source)
    assert JANE in json.dumps(other_alert.samples)  # another source's alert holds no erased event


def test_a_redelivery_of_an_erased_event_is_not_stored_again(client, source, api_token, stored):
    call_command("erase_lead", str(source.pk), "1001", stdout=io.StringIO())
    again = legacy_push(client, source, api_token, stored)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert Event.objects.filter(source=source, lead_id="1001").count() == 0
    fresh = legacy_push(client, source, api_token, [activity(1, lead="1001")])  # a new event of the lead
    assert fresh["accepted"] == 1


def test_the_command_refuses_a_source_it_cannot_find(source):
    with pytest.raises(CommandError, match="no single source"):
        call_command("erase_lead", "nope", "1001", stdout=io.StringIO())
    assert not ErasureRecord.objects.exists()


def test_the_admin_form_erases_after_confirmation_and_records_the_admin(admin_client, stored, source):
    url = f"/admin/streams/source/{source.pk}/erase-lead/"
    assert admin_client.post(url, {"lead_id": "1001"}).status_code == 200  # not confirmed: nothing done
    assert Event.objects.filter(source=source, lead_id="1001").count() == 3
    response = admin_client.post(url, {"lead_id": "1001", "emails": "other@example.net", "confirm": "on"})
    assert response.status_code == 302
    record = ErasureRecord.objects.get()
    assert (record.erased_by, record.user.username, record.events_removed) == ("admin", "admin", 3)
    assert admin_client.get(response["Location"]).status_code == 200


def test_the_admin_action_leads_to_the_form_for_one_source(admin_client, source):
    response = admin_client.post("/admin/streams/source/", {"action": "erase_lead", "_selected_action": [source.pk]})
    assert response["Location"] == f"/admin/streams/source/{source.pk}/erase-lead/"


def test_a_staff_member_without_delete_rights_cannot_erase(client, source, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    assert client.get(f"/admin/streams/source/{source.pk}/erase-lead/").status_code == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_erasing_under_concurrent_ingest_removes_only_that_lead(source, other_source):
    token, other_token = issue_api_token(source), issue_api_token(other_source)
    for _ in range(10):
        legacy_push(Client(), source, token, [activity(1, lead="1001", primary=JANE) for _ in range(30)])
    answers, errors, stop = [], [], threading.Event()

    def keep_pushing():
        sender = Client()
        try:
            while not stop.is_set() or len(answers) < 20:
                for target, secret in ((other_source, other_token), (source, token)):
                    answers.append(legacy_push(sender, target, secret, [activity(1, lead="2002")])["accepted"])
        except Exception as exc:  # legacy_push asserts a 200
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=keep_pushing)
    thread.start()
    try:
        record = erasure.erase_lead(source, "1001", erased_by="command", chunk=25)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert set(answers) == {1}
    assert record.events_removed == 300
    assert not Event.objects.filter(source=source, lead_id="1001").exists()
    assert Event.objects.filter(lead_id="2002").count() == len(answers)


def test_the_record_outlives_its_source(stored, source):
    call_command("erase_lead", source.name, "1001", stdout=io.StringIO())
    source.delete()
    while deletion.purge(source.id) != "done":
        pass
    record = ErasureRecord.objects.get()
    assert (record.source, record.source_name, record.lead_id) == (None, "Acme", "1001")

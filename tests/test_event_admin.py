"""The events admin at scale: no count of the whole table, filters and a search that use indexes."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from streams.admin import CappedCountPaginator
from streams.models import Event
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db

PAGES = (
    "/admin/streams/event/",
    "/admin/streams/event/?received=24h",
    "/admin/streams/event/?q=1001",
    "/admin/streams/event/?stream__exact=activity&received=7d",
)


@pytest.fixture
def events(client, source, api_token):
    legacy_push(client, source, api_token, [activity(1, lead="1001"), activity(1, lead="2002"), activity(1, lead="3")])
    old = Event.objects.get(lead_id="3")
    Event.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=40))
    return Event.objects.all()


@pytest.mark.parametrize("url", PAGES)
def test_no_list_page_counts_the_whole_table(admin_client, events, url):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "streams_event" in q["sql"]]
    assert counts, "the page shows how many events there are"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_past_the_cap_the_page_says_more_than(admin_client, events, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    text = admin_client.get("/admin/streams/event/?stream__exact=activity").content.decode()
    assert "more than 2 events" in text


def test_the_search_is_the_exact_lead_id_not_a_scan_for_substrings(admin_client, events):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/streams/event/?q=1001")
    rows = response.context["cl"].result_list
    assert [e.lead_id for e in rows] == ["1001"]
    listed = [q["sql"] for q in queries if "lead_id" in q["sql"] and "LIMIT" in q["sql"].upper()]
    assert listed and not any("LIKE" in sql.upper() or "UPPER(" in sql.upper() for sql in listed), listed


def test_the_received_window_leaves_older_events_out(admin_client, events):
    rows = admin_client.get("/admin/streams/event/?received=7d").context["cl"].result_list
    assert sorted(e.lead_id for e in rows) == ["1001", "2002"]


def test_no_facet_counts_even_when_asked(admin_client, events):
    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/admin/streams/event/?_facets=True")
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "streams_event" in q["sql"]]
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_events_cannot_be_deleted_from_the_admin(admin_client, events):
    event = events.first()
    assert admin_client.get(f"/admin/streams/event/{event.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/streams/event/{event.pk}/change/").status_code == 200  # still shown

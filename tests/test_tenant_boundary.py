"""A source's credentials write only into that source: foreign Munchkin IDs stay with the receiving
source, flagged, unless an admin linked the two; de-duplication keys are scoped per source; every
recipient client id an Adobe I/O element states is checked (issue 9, points 1 and 2)."""

import io

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from streams import links, receivers
from streams.auth import issue_api_token
from streams.models import Event, ForeignMunchkin, Source
from tests.ingest import legacy_post

pytestmark = pytest.mark.django_db

ALPHA, BETA = "111-AAA-111", "222-BBB-222"
CLIENT_ID = "alpha-client"


@pytest.fixture(autouse=True)
def _empty_source_cache():
    receivers.forget_source()
    yield
    receivers.forget_source()


@pytest.fixture
def alpha(db):
    return Source.objects.create(name="Alpha", munchkin_id=ALPHA)


@pytest.fixture
def beta(db):
    return Source.objects.create(name="Beta", munchkin_id=BETA)


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def legacy(client, source, token, munchkin, *guids):
    body = orjson.dumps(
        {
            "munchkinId": munchkin,
            "activities": [
                {"marketoGUID": g, "leadId": 7, "activityTypeId": 1, "activityDate": "2026-12-01T10:00:00Z"}
                for g in guids
            ],
        }
    )
    return legacy_post(client, source, token, body)


def io_event(munchkin, activity_id, eventid=None, **extra):
    return {
        "eventid": eventid or f"ev-{munchkin}-{activity_id}",
        "specversion": "1.0",
        "type": "com.adobe.platform.marketo.activity.standard.visitwebpage",
        "id": activity_id,
        "time": "2026-12-01T10:00:00Z",
        "data": {"munchkinId": munchkin, "leadId": "7", "activityTypeId": 1},
        **extra,
    }


def post_io(client, source, signed_headers, elements):
    body = orjson.dumps(elements)
    return client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **signed_headers(body)
    )


# --- 1. Credentials write only into their own source ------------------------------------------------------


def test_a_legacy_push_naming_another_sources_munchkin_stays_with_the_receiving_source_flagged(client, alpha, beta):
    response = legacy(client, alpha, issue_api_token(alpha), BETA, "g-1", "g-2")
    assert response.status_code == 200  # never a 4xx: the events are kept
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert Event.objects.filter(source=beta).count() == 0
    stored = list(Event.objects.filter(source=alpha))
    assert [e.flags for e in stored] == [["munchkin_foreign"], ["munchkin_foreign"]]
    assert [e.munchkin_id for e in stored] == [BETA, BETA]  # what the event carried is kept


def test_a_signed_io_event_naming_another_sources_munchkin_stays_with_the_receiving_source(
    client, alpha, beta, key_server, signed_headers
):
    response = post_io(client, alpha, signed_headers, [io_event(BETA, "a-1"), io_event(ALPHA, "a-2")])
    assert response.status_code == 200
    assert Event.objects.filter(source=beta).count() == 0
    flags = dict(Event.objects.values_list("munchkin_id", "flags"))
    assert flags == {BETA: ["munchkin_foreign"], ALPHA: []}


def test_with_a_link_the_receiving_source_delivers_for_the_other_on_both_protocols(
    client, alpha, beta, key_server, signed_headers
):
    alpha.delivers_for.add(beta)
    assert legacy(client, alpha, issue_api_token(alpha), BETA, "g-1").status_code == 200
    assert post_io(client, alpha, signed_headers, [io_event(BETA, "a-1")]).status_code == 200
    assert sorted(Event.objects.filter(source=beta).values_list("flags", flat=True)) == [[], []]
    assert not Event.objects.filter(source=alpha).exists()


def test_a_link_is_directed(client, alpha, beta):
    alpha.delivers_for.add(beta)
    assert legacy(client, beta, issue_api_token(beta), ALPHA, "g-1").status_code == 200
    assert Event.objects.get().source == beta
    assert Event.objects.get().flags == ["munchkin_foreign"]


def test_a_link_made_while_the_source_is_cached_takes_effect_at_once(client, alpha, beta):
    token = issue_api_token(alpha)
    legacy(client, alpha, token, ALPHA, "g-0")  # alpha is now cached in this process
    alpha.delivers_for.add(beta)
    legacy(client, alpha, token, BETA, "g-1")
    assert Event.objects.get(activity_key=f"{BETA}|g-1").source == beta


def test_another_tenant_cannot_shadow_a_sources_events_by_sending_their_ids_first(client, alpha, beta):
    legacy(client, alpha, issue_api_token(alpha), BETA, "g-1")
    response = legacy(client, beta, issue_api_token(beta), BETA, "g-1")
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert Event.objects.get(source=beta).activity_key == f"{BETA}|g-1"


def test_another_tenant_cannot_shadow_an_io_eventid_either(client, alpha, beta, key_server, signed_headers):
    post_io(client, alpha, signed_headers, [io_event(BETA, "a-1", eventid="shared")])
    response = post_io(client, beta, signed_headers, [io_event(BETA, "a-1", eventid="shared")])
    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_the_same_activity_by_both_protocols_through_a_link_is_stored_once(
    client, alpha, beta, key_server, signed_headers
):
    alpha.delivers_for.add(beta)  # one Adobe I/O registration (alpha's) for both instances
    assert post_io(client, alpha, signed_headers, [io_event(BETA, "g-1")]).json()["accepted"] == 1
    assert legacy(client, beta, issue_api_token(beta), BETA, "g-1").json() == {"accepted": 0, "duplicates": 1}
    assert Event.objects.filter(source=beta).count() == 1


def test_foreign_munchkins_are_counted_in_stream_health(client, alpha, beta, redis_client):
    from dashboard import health

    legacy(client, alpha, issue_api_token(alpha), BETA, "g-1", "g-2", "g-3")
    assert health.counters_of([alpha.id])[alpha.id]["foreign"] == 3
    assert health.counters_of([beta.id])[beta.id]["foreign"] == 0


def test_the_foreign_munchkin_ids_a_source_delivered_are_listed_and_bounded(client, alpha, beta):
    token = issue_api_token(alpha)
    legacy(client, alpha, token, BETA, "g-1")
    legacy(client, alpha, token, BETA, "g-2")
    assert [(f["munchkin_id"], f["source"]) for f in links.tenancy(alpha)["foreign"]] == [(BETA, beta)]
    for n in range(ForeignMunchkin.MAX_PER_SOURCE + 10):
        legacy(client, alpha, token, f"{n:03d}-ZZZ-000", f"x-{n}")
    assert ForeignMunchkin.objects.filter(source=alpha).count() == ForeignMunchkin.MAX_PER_SOURCE
    assert Event.objects.filter(source=alpha).count() == 2 + ForeignMunchkin.MAX_PER_SOURCE + 10  # none lost


def test_both_setup_pages_show_the_links_and_the_foreign_munchkins(admin_client, alpha, beta):
    gamma = Source.objects.create(name="Gamma", munchkin_id="333-CCC-333")
    alpha.delivers_for.add(gamma)
    legacy(admin_client, alpha, issue_api_token(alpha), BETA, "g-1")
    dashboard_page = admin_client.get("/setup/").content.decode()
    admin_page = admin_client.get(f"/admin/streams/source/{alpha.id}/setup/").content.decode()
    gamma_page = admin_client.get(f"/admin/streams/source/{gamma.id}/setup/").content.decode()
    for page in (dashboard_page, admin_page):
        assert "Gamma (333-CCC-333)" in page  # alpha delivers for gamma
        assert f"<code>{BETA}</code>" in page  # delivered without a link
    assert "may also arrive with the credentials of:\nAlpha (111-AAA-111)" in gamma_page


def test_the_setup_pages_say_when_any_adobe_customers_events_are_accepted(admin_client, alpha):
    assert "accepts any Adobe customer" in admin_client.get("/setup/").content.decode()
    alpha.adobe_client_id = CLIENT_ID
    alpha.save()
    assert "accepts any Adobe customer" not in admin_client.get("/setup/").content.decode()
    assert (
        "accepts any Adobe customer"
        not in admin_client.get(f"/admin/streams/source/{alpha.id}/setup/").content.decode()
    )


def test_a_foreign_munchkin_shown_on_the_setup_page_is_escaped(admin_client, alpha):
    legacy(admin_client, alpha, issue_api_token(alpha), "<script>x</script>", "g-1")
    page = admin_client.get("/setup/").content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;".upper() in page.upper()


def test_add_source_links_the_new_source_to_those_it_delivers_for(beta):
    out = io.StringIO()
    call_command("add_source", "Alpha", "--munchkin-id", ALPHA, "--delivers-for", "Beta", "--json", stdout=out)
    assert orjson.loads(out.getvalue())["delivers_for"] == [BETA]
    assert list(Source.objects.get(name="Alpha").delivers_for.all()) == [beta]


def test_add_source_refuses_a_link_to_a_source_that_does_not_exist(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no source named"):
        call_command("add_source", "Alpha", "--munchkin-id", ALPHA, "--delivers-for", "Nobody", stdout=io.StringIO())
    assert not Source.objects.exists()


# --- 2. Every place a recipient client id can stand ---------------------------------------------------------


@pytest.fixture
def checked(alpha):
    alpha.adobe_client_id = CLIENT_ID
    alpha.save()
    return alpha


@pytest.mark.parametrize(
    "element",
    [
        pytest.param({**io_event(ALPHA, "a-1"), "recipientclientid": ""}, id="empty"),
        pytest.param({**io_event(ALPHA, "a-1"), "recipient_client_id": 42}, id="not a string"),
        pytest.param({**io_event(ALPHA, "a-1"), "recipientclientid": None}, id="null"),
        pytest.param(
            {"eventid": "e-1", "event": {"body": {**io_event(ALPHA, "a-1"), "recipientclientid": "someone-else"}}},
            id="only in event.body",
        ),
        pytest.param(
            {
                "eventid": "e-1",
                "recipientclientid": CLIENT_ID,
                "event": {"body": io_event(ALPHA, "a-1"), "recipient_client_id": "someone-else"},
            },
            id="one spelling right, the other wrong",
        ),
    ],
)
def test_an_empty_non_string_or_mismatching_recipient_anywhere_is_refused(
    client, checked, key_server, signed_headers, element
):
    response = post_io(client, checked, signed_headers, [element])
    assert response.status_code == 401
    assert response.json()["error"] == "wrong_recipient"
    assert not Event.objects.exists()


def test_a_recipient_stated_everywhere_correctly_is_accepted(client, checked, key_server, signed_headers):
    element = {
        "eventid": "e-1",
        "recipientclientid": CLIENT_ID,
        "recipient_client_id": CLIENT_ID,
        "event": {"recipientclientid": CLIENT_ID, "body": {**io_event(ALPHA, "a-1"), "recipientclientid": CLIENT_ID}},
    }
    assert post_io(client, checked, signed_headers, [element]).status_code == 200
    assert Event.objects.get().flags == []


def test_a_missing_recipient_is_stored_flagged(client, checked, key_server, signed_headers):
    assert post_io(client, checked, signed_headers, [io_event(ALPHA, "a-1")]).status_code == 200
    assert Event.objects.get().flags == ["no_recipient_client_id"]

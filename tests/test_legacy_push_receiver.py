"""The legacy Marketo activity push: token auth and rotation, shape, de-duplication across protocols."""

import functools
import json

import pytest

from streams.auth import issue_api_token
from streams.models import Event, SourceToken
from tests import ingest
from tests.conftest import payload
from tests.ingest import legacy_post, marketo_body

pytestmark = pytest.mark.django_db

# Lead 12345's Click Link unless told otherwise (by keyword); a fresh marketoGUID unless one is given.
activity = functools.partial(
    ingest.activity, type_id=3, lead=12345, name="Click Link", primary="x", activityDate=ingest.APRIL
)


@pytest.fixture
def post(client, source, api_token):
    """POST a body to the source's legacy push with ``auth`` as the whole Authorization header, or none."""

    def send(body, auth=f"Bearer {api_token}"):
        headers = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
        return legacy_post(client, source, None, body, **headers)

    return send


def test_get_answers_200_without_authentication_and_reveals_nothing(client, db):
    response = client.get("/ingest/anything/marketo-push/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_stores_a_push_and_acknowledges_with_counts(post):
    response = post(payload("lads_legacy_push_batch.json"))
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0}
    deleted = Event.objects.get(activity_type_id=37)
    assert (deleted.lead_id, deleted.activity_type_name, deleted.stream) == ("67890", "Delete Lead", "activity")
    assert deleted.type == "com.adobe.platform.marketo.activity.standard.deletelead"


def test_the_push_envelope_is_kept_on_the_batch(post):
    post(payload("lads_legacy_push_batch.json"))
    batch = Event.objects.first().batch
    assert batch.protocol == "legacy"
    assert batch.meta["push"]["messageId"] == "12345"


@pytest.mark.parametrize("auth", ["Bearer {t}", "{t}", "bearer {t}", "Bearer   {t}  "])
def test_the_token_is_accepted_bare_or_as_bearer(post, api_token, auth):
    assert post(marketo_body([activity()]), auth=auth.format(t=api_token)).status_code == 200


@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer wrong", "Basic abc", "wrong"])
def test_a_missing_or_wrong_token_is_401(post, auth):
    response = post(marketo_body([activity()]), auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert Event.objects.count() == 0


def test_authentication_is_checked_before_the_body_shape(post):
    assert post(b"not json at all", auth="Bearer wrong").status_code == 401


def test_the_query_token_works_only_when_the_admin_turns_it_on(client, source, api_token):
    query = f"?token={api_token}"
    assert legacy_post(client, source, None, marketo_body([activity()]), query=query).status_code == 401
    source.allow_query_token = True
    source.save()
    assert legacy_post(client, source, None, marketo_body([activity()]), query=query).status_code == 200


def test_a_token_rotates_without_downtime(post, source, api_token):
    newer = issue_api_token(source)
    assert post(marketo_body([activity(marketoGUID="g-1")]), auth=f"Bearer {api_token}").status_code == 200
    assert post(marketo_body([activity(marketoGUID="g-2")]), auth=f"Bearer {newer}").status_code == 200
    newest = issue_api_token(source)  # the third revokes the oldest
    assert post(marketo_body([activity(marketoGUID="g-3")]), auth=f"Bearer {api_token}").status_code == 401
    assert post(marketo_body([activity(marketoGUID="g-4")]), auth=f"Bearer {newer}").status_code == 200
    assert post(marketo_body([activity(marketoGUID="g-5")]), auth=f"Bearer {newest}").status_code == 200
    assert SourceToken.objects.filter(source=source, revoked_at=None).count() == 2


def test_tokens_are_stored_hashed(source, api_token):
    assert not SourceToken.objects.filter(token_hash=api_token).exists()
    assert api_token not in json.dumps(list(SourceToken.objects.values()), default=str)


def test_a_token_of_another_source_is_401(post, other_source):
    stranger = issue_api_token(other_source)
    assert post(marketo_body([activity()]), auth=f"Bearer {stranger}").status_code == 401


@pytest.mark.parametrize(
    "body",
    [b"nope", b"[]", b"{}", b'{"activities": {}}', b'{"activities": [1]}', b'{"activities": null}'],
)
def test_a_body_not_of_the_push_shape_is_400_and_nothing_is_stored(post, body):
    response = post(body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert Event.objects.count() == 0


def test_an_empty_push_is_accepted(post):
    assert post(marketo_body([])).json() == {"accepted": 0, "duplicates": 0}


def test_a_500_activity_push_is_accepted(post):
    body = marketo_body([activity(marketoGUID=f"g-{i}", lead=i) for i in range(500)])
    assert post(body).json() == {"accepted": 500, "duplicates": 0}


def test_integer_and_string_lead_ids_are_both_stored_as_strings(post):
    post(marketo_body([activity(marketoGUID="g-1", lead=42), activity(marketoGUID="g-2", lead="43")]))
    assert set(Event.objects.values_list("lead_id", flat=True)) == {"42", "43"}


def test_unknown_attributes_missing_fields_and_custom_types_are_stored(post):
    odd = [
        {"marketoGUID": "g-1"},
        activity(marketoGUID="g-2", type_id=100001, name="Attend Conference", surprise={"a": 1}),
        activity(marketoGUID="g-3", type_id=4242, name="Some New Type"),
    ]
    assert post(marketo_body(odd)).json() == {"accepted": 3, "duplicates": 0}
    assert Event.objects.get(activity_key="123-ABC-456|g-2").type == "com.adobe.platform.marketo.activity.custom"
    assert Event.objects.get(activity_key="123-ABC-456|g-2").activity_type_name == "Attend Conference"
    assert "no_activity_type_id" in Event.objects.get(activity_key="123-ABC-456|g-1").flags


def test_a_redelivered_push_is_answered_200_and_stored_once(post):
    body = payload("lads_legacy_push_batch.json")
    post(body)
    assert post(body).json() == {"accepted": 0, "duplicates": 3}
    assert Event.objects.count() == 3


# The I/O payload's first event, as the legacy push carries it: the same marketoGUID and activity time.
SAME_AS_IO = {"activityDate": "2024-12-17T18:39:33Z", "type_id": 10, "name": "Open Email"}


def test_the_same_activity_by_legacy_push_and_by_io_is_stored_once(post, client, source, key_server, signed_headers):
    post(marketo_body([activity(marketoGUID="a1764870-4f4b-4f8c-82d6-59b0fff2d39c", **SAME_AS_IO)]))
    io_body = payload("lads_io_batch.json")  # its first event's id is that marketoGUID
    response = client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", io_body, content_type="application/json", **signed_headers(io_body)
    )
    assert response.json() == {"accepted": 3, "duplicates": 1}
    assert Event.objects.filter(activity_type_id=10).count() == 1


def test_the_same_activity_the_other_way_round_is_stored_once(post, client, source, key_server, signed_headers):
    io_body = payload("lads_io_batch.json")
    client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", io_body, content_type="application/json", **signed_headers(io_body)
    )
    response = post(marketo_body([activity(marketoGUID="a1764870-4f4b-4f8c-82d6-59b0fff2d39c", **SAME_AS_IO)]))
    assert response.json() == {"accepted": 0, "duplicates": 1}


def test_lead_changes_are_queryable_as_such(post):
    post(payload("lads_legacy_push_batch.json"))
    changes = Event.objects.filter(activity_type_id__in=[12, 13, 32, 37]).values_list("activity_type_name", flat=True)
    assert sorted(changes) == ["Change Data Value", "Delete Lead"]

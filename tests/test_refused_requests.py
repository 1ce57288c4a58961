"""Refused requests kept for a superuser to debug a sender: redacted, cut at 4 KB, 20 a source, a day long."""

import json
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from streams import announce, refused
from streams.models import Batch, Event
from streams.tasks import prune_refused_requests
from tests.ingest import activity, legacy_post

pytestmark = pytest.mark.django_db(transaction=True)

SIGNATURE = "c2lnbmF0dXJlLXRoYXQtZG9lcy1ub3QtdmVyaWZ5"


def io_url(source, query=""):
    return f"/ingest/{source.ingest_key}/adobe-io/{query}"


def badly_signed(client, source, body, query="", **headers):
    return client.post(
        io_url(source, query),
        body,
        content_type="application/json",
        HTTP_X_ADOBE_DIGITAL_SIGNATURE_1=SIGNATURE,
        HTTP_X_ADOBE_DIGITAL_SIGNATURE_2=SIGNATURE,
        HTTP_X_ADOBE_PUBLIC_KEY1_PATH="/prod/keys/pub-key-1.pem",
        **headers,
    )


def kept(source):
    return announce.recent_rejections(source.id)


def headers_of(entry):
    return {name.lower(): value for name, value in entry["headers"]}


def test_a_bad_signature_is_kept_with_credentials_redacted_and_the_body_cut_at_4_kb(
    client, source, key_server, redis_client
):
    body = orjson.dumps([{"eventid": f"e-{n}", "event": {"note": "x" * 40}} for n in range(200)])
    assert len(body) > 8192
    response = badly_signed(
        client,
        source,
        body,
        "?token=query-secret-1&page=2",
        HTTP_AUTHORIZATION="Bearer header-secret-2",
        HTTP_X_API_KEY="api-key-secret-3",
        HTTP_COOKIE="sessionid=cookie-secret-4",
        HTTP_X_ACCESS_TOKEN="token-secret-5",
        HTTP_USER_AGENT="Adobe/1.0",
    )
    assert response.status_code == 401
    [entry] = kept(source)
    assert (entry["status"], entry["reason"], entry["method"]) == (401, "signature", "POST")
    headers = headers_of(entry)
    assert headers["authorization"] == "Bearer [redacted]"
    assert headers["x-adobe-digital-signature-1"] == headers["x-adobe-digital-signature-2"] == "[redacted]"
    assert headers["x-api-key"] == headers["cookie"] == headers["x-access-token"] == "[redacted]"
    assert headers["x-adobe-public-key1-path"] == "/prod/keys/pub-key-1.pem"  # a public key's path, kept
    assert headers["user-agent"] == "Adobe/1.0"
    assert entry["query"] == [["token", "[redacted]"], ["page", "2"]]
    everything = json.dumps(entry)
    secrets = ("query-secret-1", "header-secret-2", "api-key-secret-3", "cookie-secret-4", "token-secret-5")
    for secret in (SIGNATURE, *secrets):
        assert secret not in everything
    assert entry["body"] == body[:4096].decode()
    assert (entry["body_bytes"], entry["body_truncated"]) == (len(body), True)
    assert Event.objects.count() == 0 and Batch.objects.count() == 0


def test_a_wrong_push_token_and_a_malformed_body_are_kept_and_store_no_event(client, source, api_token, redis_client):
    good = orjson.dumps({"munchkinId": source.munchkin_id, "activities": [activity(1)]})
    wrong = legacy_post(client, source, "not-it", good)
    malformed = legacy_post(client, source, api_token, b'{"activities": [')
    assert (wrong.status_code, malformed.status_code) == (401, 400)
    newest, oldest = kept(source)
    assert (newest["reason"], newest["body"], newest["body_truncated"]) == ("malformed", '{"activities": [', False)
    assert oldest["reason"] == "auth" and oldest["body"] == good.decode()
    assert headers_of(newest)["authorization"] == headers_of(oldest)["authorization"] == "Bearer [redacted]"
    assert api_token not in json.dumps(newest)
    assert Event.objects.count() == 0 and Batch.objects.count() == 0


def test_an_unknown_url_a_503_and_a_200_are_not_kept(client, source, api_token, settings, redis_client):
    assert client.post("/ingest/no-such-key/marketo-push/", b"{}", content_type="application/json").status_code == 404
    settings.ADOBE_IO_KEY_BASE_URL = "http://127.0.0.1:1"  # our own trouble: no key host answers
    assert badly_signed(client, source, b"[]").status_code == 503
    ok = legacy_post(client, source, api_token, [activity(1)])
    assert ok.status_code == 200
    assert kept(source) == []
    assert list(redis_client.scan_iter("fluxo:rejections:*")) == []


def test_a_body_declared_over_the_limit_is_kept_unread(client, source, settings, redis_client):
    settings.FLUXO_MAX_BODY_BYTES = 100
    response = legacy_post(client, source, None, b"y" * 101)
    assert response.status_code == 413
    [entry] = kept(source)
    assert (entry["reason"], entry["body"], entry["body_bytes"]) == ("too_large", None, 101)


def test_a_declared_length_beyond_64_bits_is_kept_without_it(client, source, redis_client):
    response = legacy_post(client, source, None, b"{}", CONTENT_LENGTH=str(2**64))
    assert response.status_code == 413
    [entry] = kept(source)
    assert (entry["reason"], entry["body_bytes"]) == ("too_large", None)


def test_only_the_last_20_of_a_source_are_kept(client, source, other_source, redis_client):
    for n in range(25):
        legacy_post(client, source, None, f'{{"n": {n}}}')
    legacy_post(client, other_source, None, b'{"other": 1}')
    entries = kept(source)
    assert [entry["body"] for entry in entries] == [f'{{"n": {n}}}' for n in range(24, 4, -1)]
    assert redis_client.llen(announce.rejections_key(source.id)) == 20
    assert [entry["body"] for entry in kept(other_source)] == ['{"other": 1}']


def test_a_refusal_is_hidden_after_a_day_and_the_beat_drops_it(source, redis_client):
    now = timezone.now()
    announce.request_refused(source.id, "auth", 401, "old", now - timedelta(hours=25), {"body": "old"})
    announce.request_refused(source.id, "auth", 401, "new", now - timedelta(hours=1), {"body": "new"})
    assert [entry["detail"] for entry in kept(source)] == ["new"]
    assert redis_client.llen(announce.rejections_key(source.id)) == 2
    assert prune_refused_requests() == 1
    assert redis_client.llen(announce.rejections_key(source.id)) == 1
    assert 0 < redis_client.ttl(announce.rejections_key(source.id)) <= 24 * 3600  # an idle source's list goes too
    assert announce.recent_rejections(source.id, now=now + timedelta(hours=24)) == []


def test_only_superusers_see_the_page_others_get_a_404(
    client, source, admin_user, teammate, django_user_model, redis_client
):
    legacy_post(client, source, None, b'{"<script>alert(1)</script>": 1}')
    url = f"/setup/{source.id}/refused/"
    assert client.get(url).status_code == 302  # to the login page
    staff = django_user_model.objects.create_user("staffer", password="pw-staffer-1", is_staff=True)
    for user in (teammate, staff):
        client.force_login(user)
        assert client.get(url).status_code == 404
        assert url not in client.get("/setup/").content.decode()
    client.force_login(admin_user)
    assert url in client.get("/setup/").content.decode()
    response = client.get(url)
    html = response.content.decode()
    assert response.status_code == 200
    assert "401 auth" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert client.get(f"/setup/{source.id + 1000}/refused/").status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Api-Key",
        "X-Adobe-Digital-Signature-1",
        "X-Auth-Token",
        "X-Session-Id",
        "X-Client-Secret",
        "X-Hub-Signature-256",
    ],
)
def test_credential_headers_are_redacted(name):
    assert refused.redact_headers([(name, "Basic c2VjcmV0")]) == [[name, "Basic [redacted]"]]


def test_a_flood_of_headers_and_long_values_is_bounded():
    headers = [(f"X-N{n}", "v" * 10_000) for n in range(1000)]
    kept_headers = refused.redact_headers(headers)
    assert len(kept_headers) == refused.MAX_FIELDS
    assert all(len(value) <= refused.MAX_VALUE_CHARS + 1 for _name, value in kept_headers)

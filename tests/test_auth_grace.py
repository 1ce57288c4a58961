"""The grace period of replaced legacy-push credentials: a sender mid-migration keeps delivering.

Switching a source from an API token to OAuth (or between OAuth kinds), or replacing Fluxo's OAuth
client, keeps the replaced credentials accepted for Source.auth_grace_hours; after that, or once an
admin ends it, only the current ones are. Real pushes through the receiver, real tokens from
/oauth/token/, a real identity provider on 127.0.0.1 (tests.test_legacy_oauth).
"""

# The fixtures come from tests.test_legacy_oauth; pytest passes them as the parameters that shadow them.
# ruff: noqa: F811

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from oauth2_provider.models import Application

from streams import auth, oauth
from streams.auth import issue_api_token
from streams.credentials import replace_credentials
from streams.models import Event, Source
from tests.ingest import legacy_post
from tests.test_legacy_oauth import (  # noqa: F401 (fixtures)
    AUDIENCE,
    ISSUER,
    _fresh_oauth_state,
    admin_client,
    change_form,
    fluxo_token,
    idp,
    introspection_source,
    jwt_source,
    push,
    rsa_key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def later(monkeypatch):
    """Move the clock on (the receivers, the grace deadlines and django-oauth-toolkit all read it)."""

    def move(hours):
        moved = timezone.now() + timedelta(hours=hours)
        monkeypatch.setattr(timezone, "now", lambda: moved)

    return move


def to_fluxo(source, **kwargs):
    """create_fluxo_client, then the source as the receivers will read it."""
    client = oauth.create_fluxo_client(source, **kwargs)
    source.refresh_from_db()
    return client


# --- An API token replaced by OAuth ------------------------------------------------------------------


def test_the_old_api_token_and_the_new_oauth_token_both_work_during_the_grace(source, push, fluxo_token):
    old = issue_api_token(source)
    new = fluxo_token(*to_fluxo(source))
    assert push(source, old, guid="g-1").status_code == 200
    assert push(source, new, guid="g-2").status_code == 200
    assert Event.objects.count() == 2


def test_only_the_new_credentials_work_once_the_grace_has_passed(source, push, fluxo_token, later):
    old = issue_api_token(source)
    client = to_fluxo(source)
    later(hours=24.1)
    assert push(source, old).status_code == 401
    assert push(source, fluxo_token(*client)).status_code == 200


def test_the_grace_lasts_what_the_source_says(source, push, later):
    source.auth_grace_hours = 2
    source.save()
    old = issue_api_token(source)
    to_fluxo(source)
    later(hours=1.9)
    assert push(source, old, guid="g-1").status_code == 200
    later(hours=0.2)
    assert push(source, old, guid="g-2").status_code == 401


def test_ending_the_grace_early_stops_the_old_token_at_once(source, push, fluxo_token):
    old = issue_api_token(source)
    new = fluxo_token(*to_fluxo(source))
    assert push(source, old, guid="g-1").status_code == 200
    auth.end_grace(source)
    assert push(source, old, guid="g-2").status_code == 401
    assert push(source, new, guid="g-3").status_code == 200


def test_no_grace_when_the_source_asks_for_none(source, push):
    source.auth_grace_hours = 0
    source.save()
    old = issue_api_token(source)
    to_fluxo(source)
    assert push(source, old).status_code == 401
    assert source.previous_auth == []


def test_only_the_tokens_live_at_the_switch_are_kept_and_a_revoked_one_stops(source, push):
    kept = issue_api_token(source)
    to_fluxo(source)
    issued_after = issue_api_token(source)  # e.g. by mistake: the source no longer takes tokens
    assert push(source, issued_after).status_code == 401
    source.tokens.update(revoked_at=timezone.now())
    assert push(source, kept).status_code == 401


def test_a_wrong_token_is_still_refused_during_the_grace(source, push):
    issue_api_token(source)
    to_fluxo(source)
    assert push(source, "not-a-token").status_code == 401
    assert not Event.objects.exists()


def test_authentication_comes_before_the_body_shape_during_the_grace(source, client):
    old = issue_api_token(source)
    to_fluxo(source)
    assert legacy_post(client, source, "x", b"[]").status_code == 401
    malformed = legacy_post(client, source, old, b"[]")
    assert malformed.status_code == 400


# --- Replacing Fluxo's OAuth client -------------------------------------------------------------------


def test_a_replaced_fluxo_client_and_its_tokens_keep_working_during_the_grace(source, push, fluxo_token):
    first = to_fluxo(source)
    old_token = fluxo_token(*first)
    second = to_fluxo(source, replace=True)
    assert push(source, old_token, guid="g-1").status_code == 200
    # Marketo fetches tokens with the client it was given until someone types in the new one.
    assert push(source, fluxo_token(*first), guid="g-2").status_code == 200
    assert push(source, fluxo_token(*second), guid="g-3").status_code == 200
    assert Application.objects.count() == 2


def test_ending_the_grace_deletes_the_replaced_client(source, push, fluxo_token):
    first = to_fluxo(source)
    old_token = fluxo_token(*first)
    second = to_fluxo(source, replace=True)
    auth.end_grace(source)
    assert push(source, old_token, guid="g-1").status_code == 401
    assert list(Application.objects.values_list("client_id", flat=True)) == [second[0]]
    assert push(source, fluxo_token(*second), guid="g-2").status_code == 200


def test_an_expired_replaced_client_is_deleted_by_the_cleanup(source, push, fluxo_token, later):
    first = to_fluxo(source)
    to_fluxo(source, replace=True)
    assert auth.retire_expired_grace() == 0
    later(hours=25)
    assert auth.retire_expired_grace() == 1
    assert not Application.objects.filter(client_id=first[0]).exists()
    source.refresh_from_db()
    assert (source.previous_auth, source.previous_auth_until) == ([], None)


def test_create_oauth_client_can_replace_without_grace(source, push, fluxo_token):
    old_token = fluxo_token(*to_fluxo(source))
    call_command("create_oauth_client", source.name, "--replace", "--grace-hours", "0", stdout=io.StringIO())
    source.refresh_from_db()
    assert source.auth_grace_hours == 0
    assert push(source, old_token).status_code == 401
    assert Application.objects.count() == 1


def test_the_end_auth_grace_command_ends_it(source, push):
    old = issue_api_token(source)
    to_fluxo(source)
    call_command("end_auth_grace", source.name, stdout=io.StringIO())
    assert push(source, old).status_code == 401


# --- Between OAuth kinds, and several changes ---------------------------------------------------------


def test_provider_jwts_keep_working_after_a_switch_to_introspection(jwt_source, rsa_key, idp, push):
    jwt_source.legacy_auth = Source.LegacyAuth.OAUTH_INTROSPECTION
    jwt_source.oauth_introspection_url = f"{idp.url}/introspect"
    jwt_source.oauth_introspection_client_id, jwt_source.oauth_introspection_client_secret = idp.client
    replace_credentials(jwt_source)  # the issuer and audience stay: introspection checks them too
    idp.introspection["opaque-1"] = {"active": True, "exp": int(time.time()) + 600, "iss": ISSUER, "aud": AUDIENCE}
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    assert push(jwt_source, "opaque-1", guid="g-2").status_code == 200


def test_the_previous_provider_down_never_stops_the_current_credentials(introspection_source, idp, push, fluxo_token):
    current = fluxo_token(*to_fluxo(introspection_source))
    idp.fail_with = 500
    assert push(introspection_source, current, guid="g-1").status_code == 200
    assert push(introspection_source, "made-up", guid="g-2").status_code == 503  # undecidable: Marketo retries
    auth.end_grace(introspection_source)
    assert push(introspection_source, "made-up", guid="g-3").status_code == 401


def test_a_second_change_during_the_grace_keeps_both_earlier_sets(push, fluxo_token, jwt_source, rsa_key):
    # jwt_source is the same row as source: token (none live) -> JWTs; now JWTs -> Fluxo -> a new client.
    first = to_fluxo(jwt_source)
    first_token = fluxo_token(*first)
    to_fluxo(jwt_source, replace=True)
    assert [entry["legacy_auth"] for entry in jwt_source.previous_auth] == ["oauth_fluxo", "oauth_jwt"]
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    assert push(jwt_source, first_token, guid="g-2").status_code == 200


def test_switching_back_drops_the_set_that_is_current_again(source, push):
    old = issue_api_token(source)
    to_fluxo(source)
    source.legacy_auth = Source.LegacyAuth.TOKEN
    replace_credentials(source)
    assert [entry["legacy_auth"] for entry in source.previous_auth] == ["oauth_fluxo"]
    assert push(source, old).status_code == 200


def test_editing_other_settings_starts_no_grace(source):
    issue_api_token(source)
    source.adobe_client_id = "another"
    replace_credentials(source)  # as the admin saves every edit
    source.refresh_from_db()
    assert (source.previous_auth, source.previous_auth_until) == ([], None)


# --- What the admin sees and does ---------------------------------------------------------------------


def test_the_admin_switch_keeps_the_token_and_shows_the_grace_without_secrets(admin_client, source, push, idp):
    old = issue_api_token(source)
    form = change_form(
        source,
        legacy_auth="oauth_introspection",
        oauth_introspection_url=f"{idp.url}/introspect",
        oauth_introspection_client_id="fluxo-rs",
        oauth_introspection_client_secret="very-secret-value",
    )
    assert admin_client.post(f"/admin/streams/source/{source.pk}/change/", form).status_code == 302
    assert push(source, old, guid="g-1").status_code == 200
    # Now away from introspection: its secret lives on in previous_auth, never on a page.
    form = change_form(source, legacy_auth="oauth_jwt", oauth_jwks_url=f"{idp.url}/jwks")
    form.update(oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_introspection_url=f"{idp.url}/introspect")
    assert admin_client.post(f"/admin/streams/source/{source.pk}/change/", form).status_code == 302
    change = admin_client.get(f"/admin/streams/source/{source.pk}/change/").content.decode()
    setup = admin_client.get(f"/admin/streams/source/{source.pk}/setup/").content.decode()
    for page in (change, setup):
        assert f"tokens {old[:6]}…" in page
        assert "fluxo-rs" in page
        assert "very-secret-value" not in page
        assert old not in page
    assert "last push with it: 20" in setup  # when the old token last got in


def test_the_admin_action_ends_the_grace(admin_client, source, push):
    old = issue_api_token(source)
    to_fluxo(source)
    admin_client.post("/admin/streams/source/", {"action": "end_auth_grace", "_selected_action": [source.pk]})
    assert push(source, old).status_code == 401
    source.refresh_from_db()
    assert source.previous_auth_until is None


def test_the_grace_summary_names_what_is_still_accepted(source, push):
    old = issue_api_token(source)
    to_fluxo(source)
    (item,) = auth.grace_summary(source)
    assert item["legacy_auth"] == "token"
    assert item["detail"] == f"tokens {old[:6]}…"
    assert item["last_used_at"] is None
    push(source, old)
    assert auth.grace_summary(source)[0]["last_used_at"] is not None


def test_a_new_source_with_a_token_and_fluxo_starts_without_a_grace(db):
    out = io.StringIO()
    call_command(
        "add_source", "Beta", "--munchkin-id", "123-ABC-456", "--api-token", "t" * 40, "--oauth-fluxo", stdout=out
    )
    source = Source.objects.get(name="Beta")
    assert (source.previous_auth, source.previous_auth_until) == ([], None)

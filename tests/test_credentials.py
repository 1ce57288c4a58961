"""streams.credentials.replace_credentials, and Source.save() refusing a credential change without it.

What a grace period accepts, through real pushes, is tests/test_auth_grace.py; here, the rows.
"""

import copy

import pytest
from oauth2_provider.models import Application

from streams import oauth
from streams.auth import issue_api_token
from streams.credentials import replace_credentials
from streams.models import Source

pytestmark = pytest.mark.django_db

JWT_SETTINGS = {
    "legacy_auth": Source.LegacyAuth.OAUTH_JWT,
    "oauth_jwks_url": "https://idp.example.com/jwks",
    "oauth_issuer": "https://idp.example.com/",
    "oauth_audience": "https://fluxo.example.com/",
}


def to_jwt(source):
    for name, value in JWT_SETTINGS.items():
        setattr(source, name, value)


def stored(source):
    return Source.objects.get(pk=source.pk)


# --- The explicit operation ----------------------------------------------------------------------------------


def test_replacing_the_credentials_keeps_the_replaced_set_until_the_grace_ends(source):
    issue_api_token(source)
    token_ids = source.credentials()["token_ids"]
    to_jwt(source)
    replace_credentials(source)
    row = stored(source)
    (kept,) = row.previous_auth
    assert (kept["legacy_auth"], kept["token_ids"]) == ("token", token_ids)
    assert row.previous_auth_until is not None
    assert row.previous_auth_until.isoformat() == kept["until"]
    assert row.legacy_auth == Source.LegacyAuth.OAUTH_JWT


def test_update_fields_gain_the_kept_set_and_its_deadline(source):
    issue_api_token(source)
    to_jwt(source)
    source.name = "not saved: outside update_fields"
    replace_credentials(source, update_fields=list(JWT_SETTINGS))
    row = stored(source)
    assert [entry["legacy_auth"] for entry in row.previous_auth] == ["token"]
    assert row.previous_auth_until is not None
    assert row.name == "Acme"


def test_update_fields_without_a_credential_column_are_a_plain_save(source, django_assert_num_queries):
    source.auth_grace_hours = 3
    with django_assert_num_queries(1):  # no lock, no comparison: nothing can be replaced
        replace_credentials(source, update_fields=["auth_grace_hours"])
    assert stored(source).auth_grace_hours == 3


def test_a_new_source_is_saved_with_any_credentials_and_nothing_kept(db):
    source = Source(name="Beta", munchkin_id="111-BBB-111", **JWT_SETTINGS)
    replace_credentials(source)
    assert (stored(source).legacy_auth, stored(source).previous_auth) == ("oauth_jwt", [])


def test_an_unchanged_source_keeps_no_set(source):
    issue_api_token(source)
    source.adobe_client_id = "another"
    replace_credentials(source)
    assert (stored(source).previous_auth, stored(source).previous_auth_until) == ([], None)


def test_a_replaced_fluxo_client_is_deleted_at_once_without_a_grace(source):
    oauth.create_fluxo_client(source)
    source.refresh_from_db()
    first = source.oauth_application_id
    source.auth_grace_hours = 0
    to_jwt(source)
    source.oauth_application = None
    replace_credentials(source)
    assert not Application.objects.filter(pk=first).exists()
    assert stored(source).previous_auth == []


# --- Source.save() refuses what would drop the grace period ----------------------------------------------------


def test_a_plain_save_refuses_to_change_the_credentials(source):
    issue_api_token(source)
    to_jwt(source)
    with pytest.raises(ValueError, match="replace_credentials"):
        source.save()
    assert stored(source).legacy_auth == Source.LegacyAuth.TOKEN


def test_a_plain_save_naming_a_credential_column_refuses_too(source):
    source.oauth_audience = "https://other.example.com/"
    with pytest.raises(ValueError, match="oauth_audience"):
        source.save(update_fields=["oauth_audience"])
    assert stored(source).oauth_audience == ""


def test_a_plain_save_refuses_a_new_fluxo_client_named_by_its_attname(source):
    source.oauth_application_id = Application.objects.create(name="stray").pk
    with pytest.raises(ValueError, match="oauth_application_id"):
        source.save(update_fields=["oauth_application_id"])


def test_a_plain_save_of_other_settings_asks_the_database_nothing_more(source, django_assert_num_queries):
    issue_api_token(source)
    source.adobe_client_id = "another"
    with django_assert_num_queries(1):  # the UPDATE: the guard compares with what the instance read
        source.save()
    row = stored(source)
    assert (row.adobe_client_id, row.previous_auth, row.previous_auth_until) == ("another", [], None)


def test_a_source_read_from_the_database_saves_its_other_settings(source):
    loaded = stored(source)
    loaded.allow_query_token = True
    loaded.save()
    assert stored(source).allow_query_token


def test_a_source_read_without_its_credential_columns_saves_the_others(source):
    partial = Source.objects.only("id", "name").get(pk=source.pk)
    partial.name = "Acme Corp"
    partial.save()
    assert stored(source).name == "Acme Corp"


def test_a_change_undone_by_a_refresh_saves(source):
    to_jwt(source)
    source.refresh_from_db()
    source.name = "Acme Corp"
    source.save()
    assert (stored(source).name, stored(source).legacy_auth) == ("Acme Corp", "token")


def test_after_a_replacement_the_new_credentials_are_the_stored_ones(source):
    to_jwt(source)
    replace_credentials(source)
    source.name = "Acme Corp"
    source.save()
    source.oauth_audience = "https://other.example.com/"
    with pytest.raises(ValueError):
        source.save()


def test_a_copy_does_not_change_what_the_original_compares_with(source):
    candidate = copy.copy(source)  # as the admin form checks its values
    to_jwt(candidate)
    replace_credentials(candidate)
    source.legacy_auth = Source.LegacyAuth.OAUTH_JWT
    with pytest.raises(ValueError):
        source.save()

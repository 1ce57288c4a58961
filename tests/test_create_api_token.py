"""`manage.py create_api_token USERNAME`: a personal read-API token, printed once, revocable, expiring."""

import io
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from streams.models import ApiToken
from tests import processes

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"


def create_api_token(*args):
    """Run the command as a user would; return (stdout, the token: its last word)."""
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue(), out.getvalue().split()[-1]


def read(client, token):
    return client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user("ada", password="pw-ada-123456")


def test_it_prints_the_token_as_the_last_word_and_the_token_reads_the_api(client, ada):
    stdout, token = create_api_token("ada")
    assert stdout.endswith(f"{token}\n")
    assert token.startswith("fxp_")
    response = read(client, token)
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}
    assert ApiToken.objects.get().user == ada


def test_each_run_makes_a_new_token_and_both_work(client, ada):
    _, first = create_api_token("ada")
    _, second = create_api_token("ada", "--name", "scoring model")
    assert first != second
    assert read(client, first).status_code == read(client, second).status_code == 200
    assert set(ApiToken.objects.values_list("name", flat=True)) == {"", "scoring model"}


def test_the_token_is_stored_only_hashed(ada):
    _, token = create_api_token("ada")
    stored = ApiToken.objects.get()
    assert token not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert token[len("fxp_") :].startswith(stored.prefix)


def test_a_token_revoked_in_the_admin_is_refused(client, admin_client, ada):
    _, token = create_api_token("ada")
    assert read(client, token).status_code == 200
    response = admin_client.post(
        "/admin/streams/apitoken/", {"action": "revoke", "_selected_action": [ApiToken.objects.get().pk]}
    )
    assert response.status_code == 302
    response = read(client, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_token_with_an_expiry_works_until_it_expires(client, ada):
    _, token = create_api_token("ada", "--expires-in-days", "7")
    stored = ApiToken.objects.get()
    assert timedelta(days=6, hours=23) < stored.expires_at - timezone.now() <= timedelta(days=7)
    assert read(client, token).status_code == 200
    # Seven days cannot pass in a test: move the expiry into the past instead.
    ApiToken.objects.filter(pk=stored.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert read(client, token).status_code == 401


def test_a_token_without_expires_in_days_never_expires(ada):
    create_api_token("ada")
    assert ApiToken.objects.get().expires_at is None


def test_an_unknown_user_is_refused_with_a_clear_message(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        create_api_token("nobody")
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("days", ["0", "-3"])
def test_a_non_positive_expiry_is_refused(ada, days):
    with pytest.raises(CommandError, match="at least 1"):
        create_api_token("ada", "--expires-in-days", days)
    assert not ApiToken.objects.exists()


def test_a_token_of_a_user_deactivated_later_is_refused(client, ada):
    _, token = create_api_token("ada")
    ada.is_active = False
    ada.save()
    assert read(client, token).status_code == 401


@pytest.mark.slow
def test_a_token_printed_by_manage_py_reads_a_real_server_until_revoked(tmp_path):
    env = processes.bare_env(tmp_path, REDIS_URL=settings.FLUXO_REDIS_URL)
    processes.manage(env, "migrate", "--noinput")
    processes.manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": "pw-grace-123456"},
        *("createsuperuser", "--noinput", "--username", "grace", "--email", "grace@example.test"),
    )
    token = processes.manage(env, "create_api_token", "grace").split()[-1]
    with processes.daphne(env) as base:
        status, _, body = processes.http("GET", base + EVENTS, headers={"Authorization": f"Bearer {token}"})
        assert (status, json.loads(body)) == (200, {"results": [], "next": None})
        revoke = "from streams.models import ApiToken; ApiToken.objects.update(revoked_at='2026-01-01T00:00:00Z')"
        processes.manage(env, "shell", "-c", revoke)
        status, headers, _ = processes.http("GET", base + EVENTS, headers={"Authorization": f"Bearer {token}"})
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")

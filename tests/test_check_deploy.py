"""`manage.py check --deploy` with production-like settings, and the OAuth provider offering only what Fluxo uses."""

import base64
import re
import subprocess
import sys

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from streams import oauth
from tests.processes import ROOT, bare_env, stop_embedded_redis

# What `check --deploy` may still say, each named in README.md ("Security") with its reason.
KNOWN_EXCEPTIONS = {"security.W021"}


@pytest.fixture
def production_env(tmp_path):
    env = bare_env(
        tmp_path,
        DEBUG="0",
        SECRET_KEY="b7Qx!k2#Vz9pL4mN8rT1wY6uE3sA5dF0gH7jK2lZ4xC9vB1nM6",
        FLUXO_PUBLIC_URL="https://fluxo.example.com",
        ALLOWED_HOSTS="fluxo.example.com",
    )
    yield env
    stop_embedded_redis(tmp_path)


def check_deploy(env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, set(re.findall(r"\(([a-z0-9_]+\.[A-Z]\d{3})\)", result.stdout + result.stderr))


def test_check_deploy_reports_nothing_but_the_exceptions_the_readme_names(production_env):
    assert len(production_env["SECRET_KEY"]) == 50
    result, ids = check_deploy(production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not {i for i in ids if i.startswith("oauth2_provider.")}, result.stderr
    assert ids <= KNOWN_EXCEPTIONS, result.stderr
    readme = (ROOT / "README.md").read_text()
    for check_id in KNOWN_EXCEPTIONS:
        assert check_id in readme


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_the_token_endpoint_knows_only_the_client_credentials_grant(db, client, django_user_model):
    django_user_model.objects.create_user("marketo", password="pw-marketo-1")
    application = Application.objects.create(
        name="an application someone made in the admin",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_PASSWORD,
        client_secret="s3cret-s3cret",
        hash_client_secret=True,
    )
    response = client.post(
        "/oauth/token/",
        {"grant_type": "password", "username": "marketo", "password": "pw-marketo-1"},
        HTTP_AUTHORIZATION=basic(application.client_id, "s3cret-s3cret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert not AccessToken.objects.exists()


def test_issued_tokens_are_stored_as_a_checksum_only(source, client):
    client_id, secret = oauth.create_fluxo_client(source)
    response = client.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(client_id, secret)
    )
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    assert "refresh_token" not in response.json()
    stored = AccessToken.objects.get()
    assert token not in stored.token
    assert stored.token_checksum


def test_the_beat_clears_expired_sessions_and_tokens(source, client, settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"fluxo.clear_sessions", "fluxo.clear_tokens"} <= schedule
    from fluxo import tasks
    from fluxo.celery import app

    app.loader.import_default_modules()
    assert {"fluxo.clear_sessions", "fluxo.clear_tokens"} <= set(app.tasks)

    client_id, secret = oauth.create_fluxo_client(source)
    for _ in range(2):
        client.post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(client_id, secret))
    past = timezone.now() - timezone.timedelta(seconds=1)
    AccessToken.objects.filter(pk=AccessToken.objects.first().pk).update(expires=past)
    Session.objects.create(session_key="a" * 32, session_data="", expire_date=past)
    Session.objects.create(session_key="b" * 32, session_data="", expire_date=timezone.now() + timezone.timedelta(1))

    tasks.clear_tokens()
    tasks.clear_sessions()

    assert AccessToken.objects.count() == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == ["b" * 32]

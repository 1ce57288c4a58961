"""Strict settings: defaults that work on a laptop, and a typo or a bad value that fails loudly."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from fluxo import env
from tests.processes import ROOT, bare_env, stop_embedded_redis

PRINT = (
    "import django, json; from django.conf import settings; django.setup(); "
    "print(json.dumps({k: str(getattr(settings, k, None)) for k in %r}))"
)


def settings_with(var_dir, names, **variables):
    result = subprocess.run(
        [sys.executable, "-c", PRINT % (names,)],
        cwd=ROOT,
        env={**bare_env(var_dir, **variables), "DJANGO_SETTINGS_MODULE": "fluxo.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    stop_embedded_redis(tmp_path)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLUXO_RETENTON_DAYS", "3", "unknown environment variable(s): FLUXO_RETENTON_DAYS"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("FLUXO_RETENTION_DAYS", "thirty", "FLUXO_RETENTION_DAYS must be a whole number"),
        ("FLUXO_MAX_BODY_BYTES", "10", "FLUXO_MAX_BODY_BYTES must be at least"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must start with"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be"),
        ("FLUXO_PUBLIC_URL", "fluxo.example.com", "FLUXO_PUBLIC_URL must be an http(s) URL"),
        ("ALLOWED_HOSTS", "a,,b", "ALLOWED_HOSTS is a comma-separated list"),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 32 characters"),
    ],
)
def test_a_typo_or_a_bad_value_stops_start_up_with_a_clear_message(var_dir, name, value, message):
    result = settings_with(var_dir, ["DEBUG"], **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_an_https_public_url_turns_the_https_only_settings_on(var_dir):
    names = [
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "SECURE_PROXY_SSL_HEADER",
    ]
    result = settings_with(var_dir, names, FLUXO_PUBLIC_URL="https://fluxo.example.com/")
    assert result.returncode == 0, result.stderr
    values = __import__("json").loads(result.stdout)
    assert values["SECURE_SSL_REDIRECT"] == "True"
    assert values["SESSION_COOKIE_SECURE"] == "True"
    assert values["SECURE_HSTS_SECONDS"] == "31536000"
    assert "fluxo.example.com" in values["ALLOWED_HOSTS"]
    assert "https://fluxo.example.com" in values["CSRF_TRUSTED_ORIGINS"]


def test_without_a_public_url_plain_http_on_loopback_works(var_dir):
    result = settings_with(var_dir, ["SECURE_SSL_REDIRECT", "DEBUG", "DATABASES"])
    assert result.returncode == 0, result.stderr
    values = __import__("json").loads(result.stdout)
    assert values["SECURE_SSL_REDIRECT"] == "False"
    assert values["DEBUG"] == "False"
    assert "fluxo.sqlite3" in values["DATABASES"]


def test_database_urls_of_every_documented_form_are_understood(tmp_path):
    pg = env.parse_database_url("postgres://u:p%40ss@db.example:6543/fluxo?sslmode=require", tmp_path, 3)
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql",
        "fluxo",
        "u",
        "p@ss",
        "db.example",
        "6543",
    )
    pool = pg["OPTIONS"].pop("pool")
    prepare_threshold = pg["OPTIONS"].pop("prepare_threshold")
    assert pg["OPTIONS"] == {"connect_timeout": 3, "sslmode": "require"}
    # On: only what asks for it is prepared (Django's cursors bind on the client and never do).
    assert prepare_threshold >= 2**31 - 1
    off = env.parse_database_url("postgres://localhost/x", tmp_path, 3, prepared_statements=False)
    assert off["OPTIONS"]["prepare_threshold"] is None  # Django's default: for poolers that cannot keep them
    # A pool, not per-thread persistent connections (ASGI runs each request in a new thread).
    assert (pg["CONN_MAX_AGE"], pool["timeout"], pg["CONN_HEALTH_CHECKS"]) == (0, 3, True)
    assert env.parse_database_url("postgresql://localhost/x", tmp_path, 3)["NAME"] == "x"
    relative = env.parse_database_url("sqlite:///var/db.sqlite3", tmp_path, 3)
    assert relative["NAME"] == str(tmp_path / "var/db.sqlite3")
    absolute = env.parse_database_url("sqlite:////srv/fluxo/fluxo.sqlite3", tmp_path, 3)
    assert absolute["NAME"] == "/srv/fluxo/fluxo.sqlite3"
    assert "journal_mode=WAL" in absolute["OPTIONS"]["init_command"]
    with pytest.raises(ImproperlyConfigured):
        env.parse_database_url("postgres://localhost/", tmp_path, 3)


def test_an_embedded_secret_key_is_generated_once_and_kept_private(var_dir):
    first = settings_with(var_dir, ["DEBUG"], SECRET_KEY=None)
    env_without_key = Path(var_dir) / "secret_key"
    assert first.returncode == 0, first.stderr
    key = env_without_key.read_text()
    assert len(key) >= 50
    assert oct(env_without_key.stat().st_mode)[-3:] == "600"
    settings_with(var_dir, ["DEBUG"], SECRET_KEY=None)
    assert env_without_key.read_text() == key

"""Strict reading of the environment: a typo or a bad value fails at start.

A leaf module: it imports no app and no Django setting, so settings.py, the
embedded-Redis starter and management scripts can all use it.
"""

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# Every variable Fluxo reads. A FLUXO_* name outside this set is a typo and stops start-up.
KNOWN = {
    "ADOBE_IMS_URL",
    "ADOBE_IO_API_URL",
    "ADOBE_IO_KEY_BASE_URL",
    "ADOBE_JOURNAL_URL",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "DEBUG",
    "DEFAULT_FROM_EMAIL",
    "EMAIL_HOST",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_HOST_USER",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "FLUXO_ALERT_HISTORY_DAYS",
    "FLUXO_ALLOW_PRIVATE_URLS",
    "FLUXO_ARCHIVE_DEST",
    "FLUXO_ARCHIVE_FAILURE_DAYS",
    "FLUXO_ARCHIVE_S3_ENDPOINT_URL",
    "FLUXO_DB_CONNECT_TIMEOUT",
    "FLUXO_DB_PREPARED_STATEMENTS",
    "FLUXO_EMBEDDED_REDIS",
    "FLUXO_GROUP_COMMIT",
    "FLUXO_JOURNAL_LEASE_SECONDS",
    "FLUXO_JOURNAL_POLL_SECONDS",
    "FLUXO_ADOBE_STATE_POLL_SECONDS",
    "FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT",
    "FLUXO_LOGIN_FAILURE_LIMIT",
    "FLUXO_LOGIN_LOCKOUT_MINUTES",
    "FLUXO_LOG_FORMAT",
    "FLUXO_LOG_LEVEL",
    "FLUXO_MAX_BODY_BYTES",
    "FLUXO_METRICS_TOKEN",
    "FLUXO_PARTITION_INTERVAL",
    "FLUXO_PORT",
    "FLUXO_PUBLIC_URL",
    "FLUXO_RETENTION_DAYS",
    "FLUXO_SECRETS_KEY",
    "FLUXO_SIMULATE",
    "FLUXO_SLACK_API_URL",
    "FLUXO_TRUSTED_PROXIES",
    "FLUXO_VAR_DIR",
    "REDIS_URL",
    "SECRET_KEY",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def check_for_typos(environ=os.environ):
    """Refuse FLUXO_* variables that Fluxo does not know (a misspelt name is a silent default)."""
    unknown = sorted(k for k in environ if k.startswith("FLUXO_") and k not in KNOWN)
    if unknown:
        raise ImproperlyConfigured(f"unknown environment variable(s): {', '.join(unknown)}")


def get_str(name, default=None):
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def get_bool(name, default=False):
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def get_int(name, default, minimum=None):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def get_list(name, default):
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name} is a comma-separated list without empty items: {raw!r}")
    return items


def get_http_url(name, default=None):
    raw = get_str(name, default)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http(s) URL, not {raw!r}")
    return raw.rstrip("/")


def get_archive_dest(name):
    """A folder path (kept as given) or s3://bucket[/prefix] (without a trailing slash); None when unset."""
    raw = get_str(name)
    if raw is None:
        return None
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ImproperlyConfigured(f"{name} must be a folder path or s3://bucket/prefix, not {raw!r}")
        return raw.rstrip("/")
    return raw


def parse_database_url(url, base_dir, connect_timeout, prepared_statements=True):
    """Turn postgres://, postgresql:// or sqlite:///PATH into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return _postgres(parts, connect_timeout, prepared_statements)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path or path == "/":
            raise ImproperlyConfigured("DATABASE_URL for SQLite is sqlite:///relative/path or sqlite:////absolute/path")
        return sqlite_database(base_dir / path[1:])
    raise ImproperlyConfigured(f"DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, not {url!r}")


# psycopg prepares a statement once a connection has run it this many times, or at once when asked
# (``execute(prepare=True)``: the ingest store's one statement). Django's own cursors bind on the
# client side and never prepare, so in effect only what asks is prepared.
_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


def _postgres(parts, connect_timeout, prepared_statements):
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database")
    options = {"connect_timeout": connect_timeout}
    # Django's default (None) turns preparing off altogether, for poolers that cannot keep a prepared
    # statement (pgbouncer in transaction mode before 1.21, or without max_prepared_statements). Then
    # PostgreSQL parses and plans the store's statement on every request: about 0.7 of the 2.3 ms of backend
    # CPU a 20-event request costs (BENCHMARKS.md, issue 15). FLUXO_DB_PREPARED_STATEMENTS=false is that.
    options["prepare_threshold"] = _PREPARE_ONLY_WHEN_ASKED if prepared_statements else None
    for key, values in parse_qs(parts.query).items():
        options[key] = values[-1]
    # Under ASGI every request runs its sync view in a thread of its own, and Django's persistent
    # connections are per thread: they would be opened per request and left open until PostgreSQL
    # refuses more. The pool shares connections instead, checking each before handing it out
    # (CONN_HEALTH_CHECKS: psycopg_pool's empty query), so a restarted server is survived; none
    # had within the timeout: a 503.
    options["pool"] = {"min_size": 1, "max_size": 16, "timeout": connect_timeout}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,  # the pool keeps the connections
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
        "TEST": {"NAME": f"test_{name}"},
    }


def sqlite_database(path):
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock
            # at BEGIN so two writers wait (busy timeout) instead of failing mid-transaction.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }

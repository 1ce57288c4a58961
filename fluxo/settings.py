"""Fluxo's settings, read strictly from the environment (see the table in README.md).

Defaults run on a laptop with nothing set: a SQLite file and an embedded Redis under var/.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from fluxo import env

BASE_DIR = Path(__file__).resolve().parent.parent
env.check_for_typos()

VAR_DIR = Path(env.get_str("FLUXO_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key():
    """SECRET_KEY from the environment, or one generated once and kept in var/ (embedded default)."""
    key = env.get_str("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters")
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()

# --- Metrics: the process-held counters of every Fluxo process of this host, in one folder -------------
# prometheus-client's multiprocess mode reads this variable when a metric is made (fluxo.metrics).
FLUXO_METRICS_DIR = VAR_DIR / "metrics"
FLUXO_METRICS_DIR.mkdir(exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(FLUXO_METRICS_DIR)
# Set: /metrics answers only "Authorization: Bearer <token>"; unset: only loopback peers.
FLUXO_METRICS_TOKEN = env.get_str("FLUXO_METRICS_TOKEN")
if FLUXO_METRICS_TOKEN is not None and len(FLUXO_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("FLUXO_METRICS_TOKEN must be at least 16 characters")
DEBUG = env.get_bool("DEBUG", False)
ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

# --- Public URL, proxy and HTTPS ---------------------------------------------------------------
FLUXO_PUBLIC_URL = env.get_http_url("FLUXO_PUBLIC_URL")
CSRF_TRUSTED_ORIGINS = []
if FLUXO_PUBLIC_URL:
    _public = urlsplit(FLUXO_PUBLIC_URL)
    if _public.hostname not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_public.hostname)
    CSRF_TRUSTED_ORIGINS.append(f"{_public.scheme}://{_public.netloc}")
    # Behind the TLS proxy that FLUXO_PUBLIC_URL names, its forwarding headers are trusted.
    USE_X_FORWARDED_HOST = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if _public.scheme == "https":
        SECURE_SSL_REDIRECT = True
        SESSION_COOKIE_SECURE = True
        CSRF_COOKIE_SECURE = True
        SECURE_HSTS_SECONDS = 31536000
        SECURE_HSTS_INCLUDE_SUBDOMAINS = True

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Applications --------------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "oauth2_provider",
    "streams",
    "dashboard",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fluxo.urls"
ASGI_APPLICATION = "fluxo.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------------------
FLUXO_DB_CONNECT_TIMEOUT = env.get_int("FLUXO_DB_CONNECT_TIMEOUT", 3, minimum=1)
_database_url = env.get_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": env.parse_database_url(_database_url, BASE_DIR, FLUXO_DB_CONNECT_TIMEOUT)}
else:
    DATABASES = {"default": env.sqlite_database(VAR_DIR / "fluxo.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, announcements, counters -----------------------------------------
_redis_url = env.get_str("REDIS_URL")
if _redis_url:
    if urlsplit(_redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"REDIS_URL must be redis://, rediss:// or unix://, not {_redis_url!r}")
    FLUXO_REDIS_URL = _redis_url
    CELERY_BROKER_URL = _redis_url.replace("unix://", "redis+socket://", 1)
else:
    from fluxo import embedded_redis

    _sock = embedded_redis.ensure_running(VAR_DIR)
    FLUXO_REDIS_URL = f"unix://{_sock}"
    CELERY_BROKER_URL = f"redis+socket://{_sock}"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [FLUXO_REDIS_URL]},
    },
}

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# JSON logs: Celery keeps the root logger as LOGGING below configures it.
CELERY_WORKER_HIJACK_ROOT_LOGGER = env.get_str("FLUXO_LOG_FORMAT", "plain").lower() != "json"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "prune-old-events": {"task": "streams.prune_events", "schedule": 3600.0},
    # Replaced legacy-push credentials past their grace period: their Fluxo OAuth clients go.
    "retire-expired-grace": {"task": "streams.retire_expired_grace", "schedule": 3600.0},
    # Adobe's validation URLs expire 5 minutes after they arrive.
    "open-validation-urls": {"task": "streams.open_validation_urls", "schedule": 20.0},
    # Per-minute rollups for the dashboards' history (web processes also roll up as batches arrive).
    "roll-up-minutes": {"task": "dashboard.roll_up", "schedule": 5.0},
    "prune-minute-rollups": {"task": "dashboard.prune_rollups", "schedule": 3600.0},
    # Alerts: catch-up, sliding windows, absence deadlines, reminders, due deliveries, the sweeper.
    "alerts-tick": {"task": "alerts.tick", "schedule": 5.0},
    "prune-alert-history": {"task": "alerts.prune", "schedule": 3600.0},
}

# --- Ingest ----------------------------------------------------------------------------------------
# Adobe batches are at most 2 MB; a 500-activity legacy batch is about 0.5 to 1 MB.
FLUXO_MAX_BODY_BYTES = env.get_int("FLUXO_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FLUXO_MAX_BODY_BYTES
FLUXO_RETENTION_DAYS = env.get_int("FLUXO_RETENTION_DAYS", 30, minimum=1)
ADOBE_IO_KEY_BASE_URL = env.get_http_url("ADOBE_IO_KEY_BASE_URL", "https://static.adobeioevents.com")
# URLs that admins type (JWKS, introspection) may not point at private addresses unless this is on.
FLUXO_ALLOW_PRIVATE_URLS = env.get_bool("FLUXO_ALLOW_PRIVATE_URLS", False)

# --- Auth, OAuth provider --------------------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 (a model name)
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "SCOPES": {"stream:push": "Push Marketo activities to Fluxo"},
    "DEFAULT_SCOPES": ["stream:push"],
}

# --- E-mail (alerts) ---------------------------------------------------------------------------------
EMAIL_HOST = env.get_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.get_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.get_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.get_str("DEFAULT_FROM_EMAIL", "fluxo@localhost")
EMAIL_TIMEOUT = 10
# Alerts, their timelines and delivery attempts are kept this long after they close.
FLUXO_ALERT_HISTORY_DAYS = env.get_int("FLUXO_ALERT_HISTORY_DAYS", 90, minimum=1)
# Where alert messages sent with a Slack bot token go (chat.postMessage, chat.update). Tests point it
# at a local server; in production leave the default.
FLUXO_SLACK_API_URL = env.get_http_url("FLUXO_SLACK_API_URL", "https://slack.com/api/")

# --- Static files, i18n ----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one; files come from the finders
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served from the apps' static folders by WhiteNoise, with DEBUG off too and no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: to stderr; secrets are never passed to a logger ---------------------------------------
FLUXO_LOG_LEVEL = env.get_str("FLUXO_LOG_LEVEL", "INFO").upper()
if FLUXO_LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR"):
    raise ImproperlyConfigured(f"FLUXO_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {FLUXO_LOG_LEVEL!r}")
FLUXO_LOG_FORMAT = env.get_str("FLUXO_LOG_FORMAT", "plain").lower()
if FLUXO_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"FLUXO_LOG_FORMAT must be plain or json, not {FLUXO_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "fluxo.logs.JsonFormatter"},
    },
    "filters": {"request_id": {"()": "fluxo.logs.RequestIdFilter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": FLUXO_LOG_FORMAT, "filters": ["request_id"]}
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "fluxo": {"level": FLUXO_LOG_LEVEL},
        "streams": {"level": FLUXO_LOG_LEVEL},
        "dashboard": {"level": FLUXO_LOG_LEVEL},
        "alerts": {"level": FLUXO_LOG_LEVEL},
    },
}
if FLUXO_LOG_FORMAT == "json":
    # Celery then leaves logging as configured here (fluxo.celery), so its lines are JSON too.
    LOGGING["loggers"]["celery"] = {"level": "INFO"}

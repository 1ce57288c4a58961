"""Fluxo's settings, read strictly from the environment (see the table in README.md).

Defaults run on a laptop with nothing set: a SQLite file and an embedded Redis under var/.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from fluxo import env, proxies

BASE_DIR = Path(__file__).resolve().parent.parent
# The project's templates/ and static/: at the top of a checkout, inside fluxo/ in an installed wheel.
SITE_FILES_DIR = BASE_DIR if (BASE_DIR / "templates").is_dir() else Path(__file__).resolve().parent
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
# The proxies whose X-Forwarded-For/-Proto/-Host are believed (addresses or CIDRs; none by default).
# fluxo.proxies applies them to the ASGI scope, and drops them from anyone else; Django is never told
# to read them itself (no SECURE_PROXY_SSL_HEADER, no USE_X_FORWARDED_HOST).
FLUXO_TRUSTED_PROXIES = [
    str(network)
    for network in proxies.parse_networks(
        env.get_list("FLUXO_TRUSTED_PROXIES", []) if env.get_str("FLUXO_TRUSTED_PROXIES") else []
    )
]
# Only names the public URL (endpoint URLs shown to admins, links in alerts): it trusts no header.
FLUXO_PUBLIC_URL = env.get_http_url("FLUXO_PUBLIC_URL")
CSRF_TRUSTED_ORIGINS = []
if FLUXO_PUBLIC_URL:
    _public = urlsplit(FLUXO_PUBLIC_URL)
    if _public.hostname not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_public.hostname)
    CSRF_TRUSTED_ORIGINS.append(f"{_public.scheme}://{_public.netloc}")
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
    "axes",
    "streams",
    "dashboard",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "fluxo.csp.ContentSecurityPolicyMiddleware",
    "fluxo.static_files.Middleware",  # WhiteNoise, with versioned names and gzip copies
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a login refused by the throttle into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fluxo.urls"
ASGI_APPLICATION = "fluxo.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [SITE_FILES_DIR / "templates"],
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
FLUXO_DB_PREPARED_STATEMENTS = env.get_bool("FLUXO_DB_PREPARED_STATEMENTS", True)
# Concurrent ingest requests of a web process share one statement and commit (streams.groupcommit).
FLUXO_GROUP_COMMIT = env.get_bool("FLUXO_GROUP_COMMIT", True)
_database_url = env.get_str("DATABASE_URL")
if _database_url:
    DATABASES = {
        "default": env.parse_database_url(
            _database_url, BASE_DIR, FLUXO_DB_CONNECT_TIMEOUT, prepared_statements=FLUXO_DB_PREPARED_STATEMENTS
        )
    }
else:
    DATABASES = {"default": env.sqlite_database(VAR_DIR / "fluxo.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, announcements, counters -----------------------------------------
# Without REDIS_URL: an embedded redis-server on a unix socket under var/. Settings only name its
# socket; the processes that use it start it (fluxo.embedded_redis), never this import. With
# PostgreSQL configured those processes refuse it unless FLUXO_EMBEDDED_REDIS allows it.
FLUXO_EMBEDDED_REDIS = env.get_bool("FLUXO_EMBEDDED_REDIS", False)
_redis_url = env.get_str("REDIS_URL")
if _redis_url:
    if urlsplit(_redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"REDIS_URL must be redis://, rediss:// or unix://, not {_redis_url!r}")
    FLUXO_EMBEDDED_REDIS_DIR = None
    FLUXO_REDIS_URL = _redis_url
    CELERY_BROKER_URL = _redis_url.replace("unix://", "redis+socket://", 1)
else:
    from fluxo import embedded_redis

    FLUXO_EMBEDDED_REDIS_DIR = VAR_DIR
    _sock = embedded_redis.socket_path(VAR_DIR)
    FLUXO_REDIS_URL = f"unix://{_sock}"
    CELERY_BROKER_URL = f"redis+socket://{_sock}"

# channels_redis receives with a blocking BZPOPMIN of 5 s; redis-py's default read timeout is 5 s too,
# so a quiet socket's receive timed out and its websocket dropped every ~6 s. A read timeout well past
# the blocking wait keeps quiet sockets open and still notices a Redis that stopped answering.
CHANNEL_LAYER_SOCKET_TIMEOUT = 15
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": FLUXO_REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT}]},
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

# --- Adobe journal (streams.journal): hosts are settings so tests and the sandbox use loopback -----------
ADOBE_IMS_URL = env.get_http_url("ADOBE_IMS_URL", "https://ims-na1.adobelogin.com")
ADOBE_IO_API_URL = env.get_http_url("ADOBE_IO_API_URL", "https://api.adobe.io")
# A registration's journal URL must be on this host: its Bearer token is never sent anywhere else.
ADOBE_JOURNAL_URL = env.get_http_url("ADOBE_JOURNAL_URL", "https://events-va6.adobe.io")
FLUXO_JOURNAL_POLL_SECONDS = float(env.get_int("FLUXO_JOURNAL_POLL_SECONDS", 10, minimum=1))
# How often the beat asks Adobe's registration API for each registration's state (the outage demo: 10).
FLUXO_ADOBE_STATE_POLL_SECONDS = float(env.get_int("FLUXO_ADOBE_STATE_POLL_SECONDS", 300, minimum=5))
# A journal job that did not renew its lease for this long is taken for dead: another may take the registration
# over. A live job renews it with each page and every third of it while a page is awaited (streams.journal).
FLUXO_JOURNAL_LEASE_SECONDS = env.get_int("FLUXO_JOURNAL_LEASE_SECONDS", 45, minimum=1)
# Fernet key (urlsafe base64, 32 bytes) encrypting Adobe client secrets at rest; unset: none can be stored.
FLUXO_SECRETS_KEY = env.get_str("FLUXO_SECRETS_KEY", "")

CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Exactly one beat: a second one waits on a lock (PostgreSQL advisory lock, or a file under var/).
CELERY_BEAT_SCHEDULER = "fluxo.beat:LockedScheduler"
# Queues, so that maintenance never delays an alert: a worker for alerts + deliveries and another
# for maintenance in production; `make run` serves all three with one worker (README, Processes).
FLUXO_QUEUES = ("alerts", "deliveries", "maintenance")
CELERY_TASK_QUEUES = [Queue(name) for name in FLUXO_QUEUES]  # a worker without -Q serves all of them
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_TASK_ROUTES = {
    "alerts.evaluate": {"queue": "alerts"},
    "alerts.tick": {"queue": "alerts"},
    "alerts.deliver": {"queue": "deliveries"},
    "alerts.deliver_due": {"queue": "deliveries"},
    "alerts.prune": {"queue": "maintenance"},
    "dashboard.roll_up": {"queue": "maintenance"},
    "dashboard.prune_rollups": {"queue": "maintenance"},
    "streams.prune_events": {"queue": "maintenance"},
    "streams.open_validation_urls": {"queue": "maintenance"},
    "streams.retire_expired_grace": {"queue": "maintenance"},
    "streams.prune_refused_requests": {"queue": "maintenance"},
    "streams.maintain_partitions": {"queue": "maintenance"},
    "streams.analyze_partitions": {"queue": "maintenance"},
    "fluxo.clear_sessions": {"queue": "maintenance"},
    "fluxo.clear_tokens": {"queue": "maintenance"},
    "streams.archive_events": {"queue": "maintenance"},
    "streams.purge_deleted_sources": {"queue": "maintenance"},
    "streams.delete_source": {"queue": "maintenance"},
    "streams.journal_poll": {"queue": "maintenance"},
    "streams.journal_backfill": {"queue": "maintenance"},
    "streams.journal_registration_states": {"queue": "maintenance"},
}
CELERY_BEAT_SCHEDULE = {
    "prune-old-events": {"task": "streams.prune_events", "schedule": 3600.0},
    # PostgreSQL: partitions created ahead, rows that found none given one (streams.partitions).
    "maintain-partitions": {"task": "streams.maintain_partitions", "schedule": 600.0},
    # The statistics of the partitions being filled, within a minute of a new interval's first rows.
    "analyze-partitions": {"task": "streams.analyze_partitions", "schedule": 60.0},
    # Yesterday's events (and any day whose archive failed) to Parquet; nothing when archiving is off.
    "archive-events": {"task": "streams.archive_events", "schedule": 3600.0},
    # Replaced legacy-push credentials past their grace period: their Fluxo OAuth clients go.
    "retire-expired-grace": {"task": "streams.retire_expired_grace", "schedule": 3600.0},
    # The refused requests' headers and body excerpts live a day (streams.refused).
    "prune-refused-requests": {"task": "streams.prune_refused_requests", "schedule": 600.0},
    # Deleted sources: their rows go in bounded steps; this pass resumes any a lost task left.
    "purge-deleted-sources": {"task": "streams.purge_deleted_sources", "schedule": 60.0},
    # Adobe's validation URLs expire 5 minutes after they arrive.
    "open-validation-urls": {"task": "streams.open_validation_urls", "schedule": 20.0},
    # Per-minute rollups for the dashboards' history (web processes also roll up as batches arrive).
    "roll-up-minutes": {"task": "dashboard.roll_up", "schedule": 5.0},
    "prune-minute-rollups": {"task": "dashboard.prune_rollups", "schedule": 3600.0},
    # Alerts: catch-up, sliding windows, absence deadlines, reminders, due deliveries, the sweeper.
    "alerts-tick": {"task": "alerts.tick", "schedule": 5.0},
    "prune-alert-history": {"task": "alerts.prune", "schedule": 3600.0},
    # Expired login sessions and OAuth tokens (fluxo/tasks.py).
    "clear-sessions": {"task": "fluxo.clear_sessions", "schedule": 3600.0},
    "clear-oauth-tokens": {"task": "fluxo.clear_tokens", "schedule": 3600.0},
    # Adobe's journal: continuous polling of the registrations set to it, and their state (streams.journal).
    "journal-poll": {"task": "streams.journal_poll", "schedule": FLUXO_JOURNAL_POLL_SECONDS},
    "journal-registration-states": {
        "task": "streams.journal_registration_states",
        "schedule": FLUXO_ADOBE_STATE_POLL_SECONDS,
    },
}
# fluxo/ is no app, so autodiscovery does not find its tasks.
CELERY_IMPORTS = ["fluxo.tasks"]

# --- Ingest ----------------------------------------------------------------------------------------
# Adobe batches are at most 2 MB; a 500-activity legacy batch is about 0.5 to 1 MB.
FLUXO_MAX_BODY_BYTES = env.get_int("FLUXO_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FLUXO_MAX_BODY_BYTES
FLUXO_RETENTION_DAYS = env.get_int("FLUXO_RETENTION_DAYS", 30, minimum=1)
# PostgreSQL: one partition of the event tables per interval of received time (streams.partitions).
FLUXO_PARTITION_INTERVAL = env.get_str("FLUXO_PARTITION_INTERVAL", "day")
if FLUXO_PARTITION_INTERVAL not in ("hour", "day", "week"):
    raise ImproperlyConfigured(f"FLUXO_PARTITION_INTERVAL must be hour, day or week, not {FLUXO_PARTITION_INTERVAL!r}")
ADOBE_IO_KEY_BASE_URL = env.get_http_url("ADOBE_IO_KEY_BASE_URL", "https://static.adobeioevents.com")
# URLs that admins type (JWKS, introspection) may not point at private addresses unless this is on.
FLUXO_ALLOW_PRIVATE_URLS = env.get_bool("FLUXO_ALLOW_PRIVATE_URLS", False)

# --- Archives: events to Parquet before retention removes them --------------------------------------
# A folder or s3://bucket/prefix; unset, archiving is off and retention removes events unarchived.
FLUXO_ARCHIVE_DEST = env.get_archive_dest("FLUXO_ARCHIVE_DEST")
# An S3-compatible store's endpoint (MinIO, Ceph, R2...); unset, AWS's. Credentials: the AWS_* variables.
FLUXO_ARCHIVE_S3_ENDPOINT_URL = env.get_http_url("FLUXO_ARCHIVE_S3_ENDPOINT_URL")
# A day whose archive keeps failing is kept (0, the default: never removed unarchived); N > 0: removed
# without an archive once its first failed attempt is N days old.
FLUXO_ARCHIVE_FAILURE_DAYS = env.get_int("FLUXO_ARCHIVE_FAILURE_DAYS", 0, minimum=0)

# --- Auth, login throttle, OAuth provider --------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
# The throttle (fluxo/login_throttle.py) checks before a password is: first among the backends.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
FLUXO_LOGIN_FAILURE_LIMIT = env.get_int("FLUXO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT = env.get_int("FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
FLUXO_LOGIN_LOCKOUT_MINUTES = env.get_int("FLUXO_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_HANDLER = "fluxo.login_throttle.LoginThrottle"
AXES_FAILURE_LIMIT = FLUXO_LOGIN_FAILURE_LIMIT
# One name from one address; and one address over all names (its own limit, in LoginThrottle).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=FLUXO_LOGIN_LOCKOUT_MINUTES)
AXES_RESET_ON_SUCCESS = True  # that name from that address only (LoginThrottle.reset_user_attempts)
AXES_CLIENT_IP_CALLABLE = "fluxo.proxies.client_address"
AXES_LOCKOUT_CALLABLE = "fluxo.login_throttle.locked_out"
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 (a model name)
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "SCOPES": {"stream:push": "Push Marketo activities to Fluxo"},
    "DEFAULT_SCOPES": ["stream:push"],
    # Marketo's push uses the client-credentials grant and nothing else: the token endpoint knows no
    # other grant (no authorization code, implicit, password or refresh), whatever an application
    # row in the admin says.
    "OAUTH2_SERVER_CLASS": "oauthlib.oauth2.BackendApplicationServer",
    # RFC 9700 behaviour (the toolkit's 4.0 defaults). The grants and redirects below are unused
    # here; turning them to the compliant side keeps `check --deploy` meaningful.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    # Tokens are stored as their SHA-256 checksum only (streams.oauth looks them up that way).
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
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
STATICFILES_DIRS = [SITE_FILES_DIR / "static"]
# Served from the apps' static folders by WhiteNoise, with DEBUG off too and no collectstatic step;
# versioned names (cached for good) and gzip copies are made at start-up (fluxo/static_files.py).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "fluxo.static_files.VersionedStorage"},
}
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

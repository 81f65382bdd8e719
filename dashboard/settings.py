"""Flightdeck's one settings module: everything that varies by deployment comes from the
environment (see `.env.example` and docs/operations.md), read through `dashboard.env`."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_choice, env_int, env_list, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FLIGHTDECK_VAR_DIR") or str(BASE_DIR / "var"))

DEBUG = env_bool("DEBUG", False)


def _development_secret_key() -> str:
    """A random key kept in var/ so that sessions survive a restart of the demo."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (for development set DEBUG=1 and one is "
            "generated under var/)"
        )
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "access",
    "history",
    "interventions",
    "audit",
    "evidence",
    "temporal",
    # After interventions: its ingest receiver runs after interventions' (governance/apps.py).
    "governance",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the collected static files (CSS, htmx) from the app server itself, so a
    # deployment needs no separate file server: run `manage.py collectstatic` at release.
    "dashboard.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

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

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'flightdeck.sqlite3'}", base_dir=BASE_DIR
    )
}
# Persistent connections belong to a thread. Under ASGI each request runs in a thread of its
# own, so they would pile up until garbage-collected and exhaust PostgreSQL's connections:
# dashboard/asgi.py sets 0, as Django's docs ask; WSGI workers and Celery keep the default.
DATABASES["default"]["CONN_MAX_AGE"] = env_int(
    "DATABASE_CONN_MAX_AGE", DATABASES["default"].get("CONN_MAX_AGE", 0), minimum=0
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Messages live in the server-side session, not a cookie: the admin's "token created" message
# carries the token, which must not travel in a Set-Cookie header.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Filled by collectstatic; made here so that WhiteNoise does not warn before the first one.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# In development static files come straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG

# --- Ingest limits (docs/event-schema.md). Django's own request limit matches the body limit,
# so an oversized body is refused before it is read into memory.
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
INGEST_MAX_EVENTS = env_int("INGEST_MAX_EVENTS", 5000, minimum=1)
INGEST_MAX_ATTRIBUTES_BYTES = env_int("INGEST_MAX_ATTRIBUTES_BYTES", 256 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES

# --- Celery: Redis in production; with neither REDIS_URL nor CELERY_BROKER_URL set, a
# filesystem broker under var/ that needs no server (polling, so slower: fine for a demo).
REDIS_URL = env_str("REDIS_URL") or ""
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery-queue"
    for _folder in ("celery-queue", "celery-processed", "celery-control"):
        (VAR_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        # Exchange bindings; kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery-control"),
    }
# Redis drops a message whose consumer has not acked it within the visibility timeout back into
# the queue: that is how a delivery whose worker died is retried (tasks ack late). No retry
# countdown may be longer than it (tasks.backoff_seconds caps them at half).
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=2)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_DEFAULT_QUEUE = "commands"
# Slow work (outgoing calls: webhooks, notifications, commands to Temporal) has its own queue
# and workers, so it cannot starve command delivery. A pull-channel delivery stays on "commands";
# `interventions.commands.enqueue` sends each command to its connector's queue.
CELERY_TASK_ROUTES = {
    "interventions.deliver_command": {"queue": "commands"},
    "interventions.sweep": {"queue": "commands"},
    "interventions.notify": {"queue": "slow"},
    # Evidence bundles take seconds to minutes: a queue of their own, so they never hold up
    # command delivery or notifications. Digests go there too (they may call a webhook).
    "evidence.build_export": {"queue": "exports"},
    "evidence.sign_digest": {"queue": "exports"},
    "evidence.clean_exports": {"queue": "exports"},
    # Following Temporal services (long sessions) and importing large history files.
    "temporal.follow_connections": {"queue": "temporal"},
    "temporal.follow_connection": {"queue": "temporal"},
    "temporal.import_history": {"queue": "temporal"},
    # Governance's periodic work reads many events: kept off the command queue.
    "governance.refresh_findings": {"queue": "slow"},
    "governance.apply_retention": {"queue": "slow"},
}
# One message at a time per worker process: with late acks a prefetched message would wait
# behind a slow one and count against the visibility timeout.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BEAT_SCHEDULE = {
    "sweep-commands": {
        "task": "interventions.sweep",
        "schedule": float(env_int("COMMAND_SWEEP_INTERVAL_SECONDS", 15, minimum=1)),
        "options": {"queue": "commands"},
    },
    "sign-evidence-digest": {
        "task": "evidence.sign_digest",
        "schedule": float(env_int("EVIDENCE_DIGEST_INTERVAL_SECONDS", 3600, minimum=1)),
        "options": {"queue": "exports"},
    },
    "clean-evidence-exports": {
        "task": "evidence.clean_exports",
        "schedule": 600.0,
        "options": {"queue": "exports"},
    },
    "follow-temporal": {
        "task": "temporal.follow_connections",
        "schedule": float(env_int("TEMPORAL_FOLLOW_INTERVAL_SECONDS", 5, minimum=1)),
        "options": {"queue": "temporal"},
    },
    "refresh-governance-findings": {
        "task": "governance.refresh_findings",
        "schedule": float(env_int("GOVERNANCE_REFRESH_SECONDS", 30, minimum=1)),
        "options": {"queue": "slow"},
    },
    "apply-retention": {
        "task": "governance.apply_retention",
        "schedule": float(env_int("RETENTION_INTERVAL_SECONDS", 3600, minimum=60)),
        "options": {"queue": "slow"},
    },
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

# --- Commands and approvals (docs/operations.md). Timeouts are settings so that tests shorten
# them; production keeps the defaults unless an operator has a reason.
COMMAND_DELIVERY_DEADLINE_SECONDS = env_int("COMMAND_DELIVERY_DEADLINE_SECONDS", 3600, minimum=1)
COMMAND_STUCK_AFTER_SECONDS = env_int("COMMAND_STUCK_AFTER_SECONDS", 30, minimum=1)
COMMAND_CLAIM_LEASE_SECONDS = env_int("COMMAND_CLAIM_LEASE_SECONDS", 120, minimum=1)
COMMAND_MAX_ATTEMPTS = env_int("COMMAND_MAX_ATTEMPTS", 8, minimum=1)
COMMAND_RETRY_BACKOFF_BASE_SECONDS = env_int("COMMAND_RETRY_BACKOFF_BASE_SECONDS", 2, minimum=0)
COMMAND_RETRY_BACKOFF_MAX_SECONDS = env_int("COMMAND_RETRY_BACKOFF_MAX_SECONDS", 300, minimum=0)
COMMAND_PULL_REDELIVER_SECONDS = env_int("COMMAND_PULL_REDELIVER_SECONDS", 60, minimum=1)
COMMAND_LONG_POLL_MAX_SECONDS = env_int("COMMAND_LONG_POLL_MAX_SECONDS", 60, minimum=1)
COMMAND_LONG_POLL_FALLBACK_SECONDS = env_int("COMMAND_LONG_POLL_FALLBACK_SECONDS", 1, minimum=1)
APPROVAL_DEFAULT_TIMEOUT_SECONDS = env_int("APPROVAL_DEFAULT_TIMEOUT_SECONDS", 86400, minimum=1)
APPROVAL_MAX_TIMEOUT_SECONDS = env_int("APPROVAL_MAX_TIMEOUT_SECONDS", 7 * 86400, minimum=1)
APPROVAL_REMINDER_BEFORE_SECONDS = env_int("APPROVAL_REMINDER_BEFORE_SECONDS", 900, minimum=0)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)

# CIDRs that webhooks may reach although they are loopback, private or link-local.
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS", [])
NOTIFY_WEBHOOK_URL = env_str("NOTIFY_WEBHOOK_URL") or ""
NOTIFY_WEBHOOK_SECRET = env_str("NOTIFY_WEBHOOK_SECRET") or ""
# Links in notifications point here.
FLIGHTDECK_BASE_URL = env_str("FLIGHTDECK_BASE_URL") or "http://127.0.0.1:8000"
FLIGHTDECK_ENCRYPTION_KEYS = env_list("FLIGHTDECK_ENCRYPTION_KEYS", [])

# --- Governance (docs/governance.md): workflow ids checked per pass of the refresh task.
GOVERNANCE_CHECKS_PER_PASS = env_int("GOVERNANCE_CHECKS_PER_PASS", 500, minimum=1)

# --- Evidence export and signed digests (docs/evidence.md). The signing key: PEM or a base64
# seed, inline or in a file; with DEBUG only, generated under var/ when neither is set.
EVIDENCE_SIGNING_KEY = env_str("EVIDENCE_SIGNING_KEY") or ""
EVIDENCE_SIGNING_KEY_FILE = env_str("EVIDENCE_SIGNING_KEY_FILE") or ""
EVIDENCE_EXPORT_DIR = Path(env_str("EVIDENCE_EXPORT_DIR") or str(VAR_DIR / "exports"))
EVIDENCE_EXPORT_TTL_SECONDS = env_int("EVIDENCE_EXPORT_TTL_SECONDS", 3 * 86400, minimum=60)
EVIDENCE_EXPORT_MAX_RUNS = env_int("EVIDENCE_EXPORT_MAX_RUNS", 10000, minimum=1)
EVIDENCE_EXPORT_STALL_SECONDS = env_int("EVIDENCE_EXPORT_STALL_SECONDS", 300, minimum=10)
# Where digests are published outside the database ("" for the folder turns it off).
EVIDENCE_DIGEST_DIR = env_str("EVIDENCE_DIGEST_DIR", str(VAR_DIR / "digests"))
EVIDENCE_DIGEST_WEBHOOK_URL = env_str("EVIDENCE_DIGEST_WEBHOOK_URL") or ""

# --- Temporal (docs/temporal.md): imports of history files and following live services.
TEMPORAL_IMPORT_MAX_BYTES = env_int("TEMPORAL_IMPORT_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
# Files up to this size are imported while the upload waits; larger ones by a Celery task.
TEMPORAL_IMPORT_INLINE_MAX_BYTES = env_int(
    "TEMPORAL_IMPORT_INLINE_MAX_BYTES", 1024 * 1024, minimum=0
)
# A worker's lease on an import, renewed with each progress write (every 5,000 events, and once
# the whole file is read); a stalled import is taken over by another worker when it ends.
TEMPORAL_IMPORT_LEASE_SECONDS = env_int("TEMPORAL_IMPORT_LEASE_SECONDS", 300, minimum=10)
# Temporal payloads may reach 2 MB each; an event over this is stored shortened, never lost.
TEMPORAL_MAX_ATTRIBUTES_BYTES = env_int(
    "TEMPORAL_MAX_ATTRIBUTES_BYTES", 4 * 1024 * 1024, minimum=1024
)
TEMPORAL_FOLLOW_SESSION_SECONDS = env_int("TEMPORAL_FOLLOW_SESSION_SECONDS", 50, minimum=1)
TEMPORAL_FOLLOW_LIST_INTERVAL_SECONDS = env_int(
    "TEMPORAL_FOLLOW_LIST_INTERVAL_SECONDS", 5, minimum=1
)
TEMPORAL_FOLLOW_CLOSED_WITHIN_SECONDS = env_int(
    "TEMPORAL_FOLLOW_CLOSED_WITHIN_SECONDS", 86400, minimum=0
)
TEMPORAL_FOLLOW_MAX_WATCHED = env_int("TEMPORAL_FOLLOW_MAX_WATCHED", 100, minimum=1)
TEMPORAL_RPC_TIMEOUT_SECONDS = env_int("TEMPORAL_RPC_TIMEOUT_SECONDS", 10, minimum=1)
# CIDRs a Temporal connection may reach although loopback, private or link-local (docs/
# temporal.md); with DEBUG, loopback by default (a dev server on this machine).
TEMPORAL_ALLOWED_NETWORKS = env_list(
    "TEMPORAL_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"] if DEBUG else []
)
for _network in (*WEBHOOK_ALLOWED_NETWORKS, *TEMPORAL_ALLOWED_NETWORKS):
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"{_network!r} in *_ALLOWED_NETWORKS is not a CIDR") from None

# --- Mail: SMTP when EMAIL_HOST is set; otherwise printed to the console in development and
# dropped in production (notifications then go only to the chat webhook, if any).
EMAIL_HOST = env_str("EMAIL_HOST") or ""
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "flightdeck@localhost"

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flightdeck API",
    "DESCRIPTION": "Ingest agent and workflow events; read runs and their histories.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "history.vocabulary.RunStatus",
        "RiskEnum": "interventions.vocabulary.Risk",
        "CommandStateEnum": "interventions.vocabulary.CommandState",
        "ApprovalStateEnum": "interventions.vocabulary.ApprovalState",
        "ConnectorKindEnum": "interventions.vocabulary.ConnectorKind",
        "IngestResultEnum": ["stored", "duplicate", "conflict", "invalid"],
    },
}

# --- Security. Production defaults are strict; each can be relaxed through the environment
# (for example behind a TLS-terminating proxy, or for the local benchmark server).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# HSTS preload commits a domain to browsers' built-in lists; that is the operator's decision
# (SECURE_HSTS_PRELOAD=1), so the deploy check's reminder about it is silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_choice(
        "LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    )},
}

"""Sonoalign settings, read from the environment.

Unset, everything is production: ``DEBUG`` is off, a real ``SECRET_KEY`` is required, cookies are secure,
HTTPS is enforced. The demo and the tests set ``DEBUG=true`` themselves (``make demo``, ``tests/settings.py``);
then the embedded defaults apply: SQLite in the project folder, tasks run eagerly in-process, local file
storage, a public demo key — but only while the app answers on this machine alone. Production sets
``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis) and ``SECRET_KEY``; ``deploy/`` holds a
complete example.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")

# The demo's key is public (it is in this file), so anything signed with it can be forged: it is used only
# in DEBUG mode and only while the app answers on this machine alone. sonoalign.checks flags it too.
DEMO_SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "testserver"}


def _runserver_address_is_local(argv: list[str]) -> bool:
    """``manage.py runserver 0.0.0.0:8000`` binds every interface; the default and 127.0.0.1 do not."""
    if "runserver" not in argv:
        return True
    address = next((arg for arg in argv[argv.index("runserver") + 1:] if not arg.startswith("-")), "")
    if address.startswith("["):
        host = address[1:address.find("]")]
    else:
        host = address.rsplit(":", 1)[0] if ":" in address else ("" if address.isdigit() else address)
    return host in {"", "localhost", "127.0.0.1", "::1"}


def _key_is_real(key: str) -> bool:
    # Django's own bar (security.W009): long, varied, not a generated "django-insecure-" placeholder.
    return key != DEMO_SECRET_KEY and len(key) >= 50 and len(set(key)) >= 5 and not key.startswith("django-insecure-")


SECRET_KEY = os.environ.get("SECRET_KEY", "")
_serves_only_this_machine = set(ALLOWED_HOSTS) <= LOCAL_HOSTS and _runserver_address_is_local(sys.argv)
if not (DEBUG and _serves_only_this_machine):
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set: DEBUG is off or the app answers beyond this machine "
            f"(ALLOWED_HOSTS={','.join(ALLOWED_HOSTS) or 'none'}). Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    if not _key_is_real(SECRET_KEY):
        raise ImproperlyConfigured(
            "SECRET_KEY is the public demo key or too weak (50+ varied characters needed) for an app that "
            "runs without DEBUG or answers beyond this machine."
        )
SECRET_KEY = SECRET_KEY or DEMO_SECRET_KEY
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "annotation",
    "alignment",
    "review",
    "batches",
    "demo",
    "sonoalign",
]

MIDDLEWARE = [
    "sonoalign.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: a signed-in user's own choice overrides the browser's language.
    "sonoalign.i18n.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a lockout raised during authentication into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "sonoalign.urls"

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

WSGI_APPLICATION = "sonoalign.wsgi.application"

# Database: SQLite file in the project folder unless DATABASE_URL says otherwise.
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the demo server read while an in-process task writes.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL;"
    DATABASES["default"]["OPTIONS"]["timeout"] = 20
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set, else process memory.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "sonoalign.passwords.StaffMinimumLengthValidator", "OPTIONS": {"min_length": 12}},
]
# Failed logins are counted per username and per client address (django-axes, in the database, so every
# web process sees the same count); past the limit both are refused until the cool-off has passed. Each
# attempt is kept (admin: Axes › Access attempts / failures / logs) as the audit trail.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = "sonoalign.authentication.lockout_parameters"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_CLIENT_IP_CALLABLE = "sonoalign.authentication.client_ip"
# How many reverse proxies in front of the app append to X-Forwarded-For (0: none, use the socket's address).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# Sessions end after this long without a request (each request renews the cookie).
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_IDLE_SECONDS", str(30 * 60)))
SESSION_SAVE_EVERY_REQUEST = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Interface languages. A first visit follows the browser (Accept-Language); the switch in the header sets a
# cookie and, once signed in, the user's preference, which follows them across logins (sonoalign.i18n).
LANGUAGE_CODE = "en"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# Storage: local files by default; any S3-compatible store when S3_BUCKET is set (needs boto3).
S3_BUCKET = os.environ.get("S3_BUCKET", "")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": os.environ.get("S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("S3_REGION") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: large ZIP batches stream to disk; images are verified by the importer.
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
IMAGE_MAX_PIXELS = int(os.environ.get("IMAGE_MAX_PIXELS", str(64 * 1024 * 1024)))
# Key of the keyed hash that pseudonymises DICOM identifiers on import. Keep it stable: changing it
# changes every pseudonym, so re-imports would no longer land on the same rows.
# Required to import DICOM outside the demo (batches.pseudonyms.pseudonym_key() refuses an empty one);
# the demo's synthetic studies use a public key. Deployments that imported with the former fallback
# (SECRET_KEY) set this to that key to keep their pseudonyms.
IMPORT_PSEUDONYM_KEY = os.environ.get("IMPORT_PSEUDONYM_KEY", "") or (
    "sonoalign-demo-pseudonym-key" if DEBUG and SECRET_KEY == DEMO_SECRET_KEY else ""
)
# Most points one polygon or line may have (annotation.geometry caps validation and measures with it):
# bounds the work one save can ask of the server; hand-drawn outlines stay far below it.
REGION_MAX_VERTICES = int(os.environ.get("REGION_MAX_VERTICES", "2500"))
IMAGE_MAX_BYTES = int(os.environ.get("IMAGE_MAX_BYTES", str(200 * 1024 * 1024)))
# Folder under which `import_batch --reference` may leave archives in place (too big to copy): images
# there are referenced by their path below it and verified against their sha256 when served. Empty:
# referencing is off.
IMPORT_ROOT = os.environ.get("IMPORT_ROOT", "")

# Celery: without a broker, tasks run eagerly in the caller's process (the embedded demo).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "600"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "660"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "sonoalign")
# Separate queues so that a long import cannot starve parsing and alignment: deploy/ runs one worker
# pool per queue. CELERY_QUEUE_PREFIX keeps test runs apart on a shared broker.
_queue_prefix = os.environ.get("CELERY_QUEUE_PREFIX", "")
CELERY_TASK_ROUTES = {
    "alignment.tasks.*": {"queue": f"{_queue_prefix}nlp"},
    "batches.tasks.*": {"queue": f"{_queue_prefix}io"},
    "annotation.tasks.*": {"queue": f"{_queue_prefix}io"},
}
# A message a dead worker took is redelivered after this many seconds (Redis has no connection-bound
# acknowledgement); tasks are idempotent, so redelivery never duplicates results.
# Longer than the longest task (a 12-hour batch, batches.tasks): a task still running is never handed
# to a second worker; a worker that died mid-task has its task redelivered after this long.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(13 * 3600)))}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "sonoalign.authentication.LockoutTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON with bounded nesting and numbers (annotation.request_input): a hostile body is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "annotation.request_input.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sonoalign API",
    "DESCRIPTION": "Ultrasound image–report annotation, alignment and adjudication.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# HTTPS only outside DEBUG: the proxy in front terminates TLS and says so in X-Forwarded-Proto.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # "preload" only permits a submission to the browsers' preload list; nothing is submitted by itself.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # /healthz is probed over plain HTTP by the orchestrator inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Content Security Policy (django-csp): scripts, styles, images and requests from our own origin only
# (images, even in object storage, are served through our permission-checked views). Enforced in
# production; reported only in DEBUG, so the browser console names anything production would block.
_csp = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
if DEBUG and not env_bool("CSP_ENFORCE", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp
else:
    CONTENT_SECURITY_POLICY = _csp

# One JSON object per line on stdout, each with the request id of the request that logged it (also sent
# back as X-Request-ID). Records carry ids and counts, never report text or patient identifiers; see
# sonoalign.logging. LOG_FORMAT=text gives plain lines for a terminal.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "sonoalign.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "sonoalign.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": os.environ.get("LOG_FORMAT", "text" if DEBUG else "json"),
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "annotation.api.api_exception_handler"

# Batch import limits (batches/importing.py): each refused or dropped value is named in the row report.
IMPORT_REPORT_MAX_BYTES = int(os.environ.get("IMPORT_REPORT_MAX_BYTES", str(200_000)))
IMPORT_LINE_MAX_BYTES = int(os.environ.get("IMPORT_LINE_MAX_BYTES", str(5_000_000)))
IMPORT_SPACING_MIN_MM = float(os.environ.get("IMPORT_SPACING_MIN_MM", "0.005"))  # below or above: dropped,
IMPORT_SPACING_MAX_MM = float(os.environ.get("IMPORT_SPACING_MAX_MM", "5.0"))  # imported uncalibrated
IMPORT_IMAGE_MIN_SIDE = int(os.environ.get("IMPORT_IMAGE_MIN_SIDE", "32"))
IMPORT_CHUNK_ROWS = int(os.environ.get("IMPORT_CHUNK_ROWS", "200"))  # rows per transaction
# Threads decoding a chunk's images ahead of its rows (0: each row decodes its own).
IMPORT_DECODE_THREADS = int(os.environ.get("IMPORT_DECODE_THREADS", str(min(4, os.cpu_count() or 1))))

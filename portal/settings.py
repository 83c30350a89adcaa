"""Settings, read from the environment (django-environ).

Embedded defaults let `make run` work with no services: a SQLite file and kombu's filesystem
transport. PostgreSQL and Redis come in through DATABASE_URL and CELERY_BROKER_URL.
`PORTAL_MODE=production` turns on the hardened settings that `check --deploy` asks for.
"""

from pathlib import Path

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

PRODUCTION = env.str("PORTAL_MODE", default="development") == "production"
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
SECRET_KEY = env.str(
    "SECRET_KEY",
    default="" if PRODUCTION else "dev-only-insecure-key-3f9a1c7e52b84d0e9a6f1b2c3d4e5f60718293a4",
)
if PRODUCTION and not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when PORTAL_MODE=production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "portal",
    "billing",
    "promotions",
]

MIDDLEWARE = [
    "portal.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.replica.ReplicaReadsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server, worker and beat share one file: wait for the lock instead of failing,
    # take the write lock at BEGIN so read-then-write transactions never upgrade and deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # The money engine's fixed statements (portal.dbtypes.prepared_cursor) are prepared after this
    # many runs on a connection; the ORM's client-bound queries never are. 0 turns it off (e.g.
    # behind a transaction-pooling PgBouncer older than 1.21). Decision 0020.
    # Prepared, they keep one generic plan (their ids come as arrays: the plan does not depend on
    # them); without this PostgreSQL re-plans each run, which costs more than running them.
    _prepare = env.int("DB_PREPARE_THRESHOLD", default=5)
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["prepare_threshold"] = _prepare or None
    # Random reads cost about what sequential ones do on SSDs and in the OS cache (the PostgreSQL
    # default, 4, is for spinning disks): without this the planner scans all ledger entries to
    # join a month of one chunk's transactions (`issue_statements`: 140 ms instead of 19 ms a query
    # at 100,000 accounts). DB_RANDOM_PAGE_COST sets it; empty keeps the server's own.
    _random_page_cost = env.str("DB_RANDOM_PAGE_COST", default="1.1")
    _options.setdefault("options", "-c plan_cache_mode=force_generic_plan"
                        + (f" -c random_page_cost={float(_random_page_cost)}" if _random_page_cost else ""))
# Reads off a streaming replica (issue 11, decision 0022): dashboard pages and exports read the
# money tables there; money decisions, writes and the APIs stay on the primary (portal/replica.py).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**env.db_url_config(DATABASE_REPLICA_URL),
                            "CONN_MAX_AGE": DATABASES["default"].get("CONN_MAX_AGE", 0),
                            "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
                            "TEST": {"MIRROR": "default"}}
    DATABASE_ROUTERS = ["portal.replica.ReplicaRouter"]
REPLICA_STICKY_SECONDS = env.int("REPLICA_STICKY_SECONDS", default=30)  # a browser's own changes, read back
REPLICA_RETRY_SECONDS = env.int("REPLICA_RETRY_SECONDS", default=10)  # a replica that is down, tried again
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHE_URL = env.str("CACHE_URL", default="")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Failed logins (portal/login.py): this many per username and client address in this many
# seconds, then that pair waits for the window to pass. Behind a proxy, name the header it sets
# with the client's address (e.g. HTTP_X_REAL_IP); empty: REMOTE_ADDR.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=15 * 60)
LOGIN_CLIENT_IP_HEADER = env.str("LOGIN_CLIENT_IP_HEADER", default="")
# Requests per API token (both /api/v1/ and /open_api/v1.3/) per clock-aligned window; units
# second, minute, hour, day (portal/ratelimit.py, decision 0013).
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/minute")

# Content Security Policy (Django's built-in middleware): the pages load only the portal's own
# static files. No inline script or style anywhere (htmx runs with allowEval off and without its
# inline indicator styles); `data:` images only for the icon masks in the CSS.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Appeal attachments live outside the static and media roots and are served only by a view that
# checks membership (SPEC R31).
PRIVATE_MEDIA_ROOT = env.path("PRIVATE_MEDIA_ROOT", default=str(VAR_DIR / "private"))

# Production sends through SMTP (check --deploy refuses the console backend there).
_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
MAILERS = {
    "default": {
        "BACKEND": env.str(
            "MAIL_BACKEND",
            default=_SMTP_BACKEND if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
        )
    },
}
if MAILERS["default"]["BACKEND"] == _SMTP_BACKEND:
    MAILERS["default"]["OPTIONS"] = {
        "host": env.str("MAIL_HOST", default="localhost"),
        "port": env.int("MAIL_PORT", default=None),
        "username": env.str("MAIL_USER", default=None),
        "password": env.str("MAIL_PASSWORD", default=None),
        "use_tls": env.bool("MAIL_USE_TLS", default=False),
    }
elif MAILERS["default"]["BACKEND"] == "django.core.mail.backends.filebased.EmailBackend":
    # `make run` writes emails to files rather than flood its console (decision 0028).
    MAILERS["default"]["OPTIONS"] = {"file_path": env.str("MAIL_FILE_PATH", default=str(VAR_DIR / "mail"))}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@adcredit.example")
# Links in emails. Without SITE_URL: the address `make run` serves (BIND; a wildcard host is
# reached through 127.0.0.1, a unix socket or a bare host means the default), decision 0028.
_bind_host, _, _bind_port = env.str("BIND", default="127.0.0.1:8000").rpartition(":")
if not _bind_port.isdigit():
    _bind_host, _bind_port = "127.0.0.1", "8000"
if _bind_host in ("", "0.0.0.0", "[::]"):
    _bind_host = "127.0.0.1"
SITE_URL = env.str("SITE_URL", default=f"http://{_bind_host}:{_bind_port}")

# Celery: kombu's filesystem transport needs no server; Redis through CELERY_BROKER_URL.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    # The transport fails on missing folders: a management command that queues an email (load_demo)
    # must work in a fresh checkout, not only after `make run` created them.
    for _folder in ("queue", "processed"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A message a worker took but did not acknowledge comes back after this long: longer than
    # any task may run (CELERY_TASK_TIME_LIMIT below), so a slow task is never run twice at once.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900)}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# beat's runs of the chunked jobs queue one task a chunk, shared by the workers (portal.jobs.CHUNKED)
JOB_CHUNK_TASKS = env.bool("JOB_CHUNK_TASKS", default=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
# Faults (issue 11, decision 0021): a task is acknowledged when it ends, so a worker killed in the
# middle of a job leaves its message to be delivered again (every job is idempotent and works in
# small transactions); a worker takes one message at a time, so a killed worker strands no
# prefetched ones; a task that overruns is stopped before its message could come back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=780)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=840)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic jobs (SPEC R33). `expires` drops a run that could not start before the next one.
CELERY_BEAT_SCHEDULE = {
    "charge-thresholds": {"task": "portal.tasks.run_job", "schedule": 60.0, "args": ["charge_thresholds"],
                          "kwargs": {"split": True},  # chunk tasks (decision 0037)
                          "options": {"expires": 55}},
    "charge-bill-dates": {"task": "portal.tasks.run_job", "schedule": 300.0, "args": ["charge_bill_dates"],
                          "options": {"expires": 290}},
    "retry-payments": {"task": "portal.tasks.run_job", "schedule": 600.0, "args": ["retry_payments"],
                       "options": {"expires": 590}},
    "send-refunds": {"task": "portal.tasks.run_job", "schedule": 300.0, "args": ["send_refunds"],
                     "options": {"expires": 290}},
    "reconcile-ledger": {"task": "portal.tasks.run_job", "schedule": 3600.0, "args": ["reconcile_ledger"],
                         "options": {"expires": 3500}},  # incremental: what changed since the last run
    "reconcile-ledger-full": {"task": "portal.tasks.run_job", "schedule": 7 * 86400.0,
                              "args": ["reconcile_ledger_full"], "options": {"expires": 86400}},
    "issue-monthly-invoices": {"task": "portal.tasks.run_job", "schedule": 900.0, "args": ["issue_monthly_invoices"],
                               "options": {"expires": 890}},
    "issue-statements": {"task": "portal.tasks.run_job", "schedule": 3600.0, "args": ["issue_statements"],
                         "kwargs": {"split": True},  # chunk tasks (decision 0037)
                         "options": {"expires": 3500}},
    "remind-invoices": {"task": "portal.tasks.run_job", "schedule": 3600.0, "args": ["remind_invoices"],
                        "options": {"expires": 3500}},
    "close-ladder-windows": {"task": "portal.tasks.run_job", "schedule": 300.0, "args": ["close_ladder_windows"],
                             "options": {"expires": 290}},
    "expire-credits": {"task": "portal.tasks.run_job", "schedule": 300.0, "args": ["expire_credits"],
                       "kwargs": {"split": True},  # chunk tasks (decision 0037)
                       "options": {"expires": 290}},
    "remind-expiring": {"task": "portal.tasks.run_job", "schedule": 3600.0, "args": ["remind_expiring"],
                        "options": {"expires": 3500}},
    "notifications-send-due": {"task": "portal.tasks.run_job", "schedule": 60.0, "args": ["notifications_send_due"],
                               "options": {"expires": 55}},
    # the spending limit (R43): campaigns paused by a monthly limit resume when the month turns
    "roll-spending-limits": {"task": "portal.tasks.run_job", "schedule": 300.0, "args": ["roll_spending_limits"],
                             "options": {"expires": 290}},
    # level alerts (R44): a balance below a member's amount, a credit line 80 % used (portal/alerts.py)
    "alerts-check": {"task": "portal.tasks.run_job", "schedule": 60.0, "args": ["alerts_check"],
                     "options": {"expires": 55}},
    # webhooks (R45): relay new events, then send what is due (portal/webhooks.py)
    "deliver-webhooks": {"task": "portal.tasks.run_job", "schedule": 15.0, "args": ["deliver_webhooks"],
                         "options": {"expires": 14}},
}
if env.bool("DEMO_SIMULATOR", default=False):
    CELERY_BEAT_SCHEDULE["simulate-delivery"] = {
        "task": "billing.tasks.simulate_delivery",
        "schedule": 15.0,
        "options": {"expires": 14},
    }

# Money rules (SPEC R9, R23): per-currency deposit limits in the currency's own units.
DEPOSIT_LIMITS = {
    "USD": ("20", "50000"),
    "EUR": ("20", "50000"),
    "GBP": ("20", "50000"),
    "JPY": ("2000", "5000000"),
    "KWD": ("6", "15000"),
}
DEFAULT_DEPOSIT_LIMITS = ("20", "50000")
# Automatic payment (R24, R25): threshold ladders per currency, growth and retries.
BILLING_THRESHOLD_STEPS = {
    "USD": ["50", "100", "250", "500", "1000", "2000", "5000", "10000"],
    "EUR": ["50", "100", "250", "500", "1000", "2000", "5000", "10000"],
    "GBP": ["50", "100", "250", "500", "1000", "2000", "5000", "10000"],
    "JPY": ["5000", "10000", "25000", "50000", "100000", "200000", "500000", "1000000"],
    "KWD": ["15", "30", "75", "150", "300", "600", "1500", "3000"],
}
BILLING_PAYMENTS_PER_STEP = 2  # consecutive successful payments before the threshold grows
BILLING_MAX_THRESHOLD_CHANGES_PER_MONTH = 3
BILLING_RETRY_AFTER_HOURS = [1, 24, 72]  # after the 1st, 2nd, 3rd failure; then every 72 h
# Gateway calls of a billing chunk in flight at once (billing.gateway.gateway_charges, R26).
BILLING_GATEWAY_CONCURRENCY = env.int("BILLING_GATEWAY_CONCURRENCY", default=16)
# The sandbox gateway's simulated network round trip per charge, in ms (0: none; the benchmark's 20).
SANDBOX_GATEWAY_LATENCY_MS = env.int("SANDBOX_GATEWAY_LATENCY_MS", default=0)
BILLING_PAUSE_AFTER_FAILURES = 2  # more than this many failed payments pauses delivery (R26)
INVOICE_DUE_DAYS = 30
# The platform's seller entity (SPEC R38), printed on every document; its country decides the
# place of supply. The default is a fictitious Irish company with a VAT number that passes its
# check digits (decision 0023) — set the real one in production.
SELLER = {
    "legal_name": env.str("SELLER_LEGAL_NAME", default="AdCredit Europe Limited"),
    "address": env.str("SELLER_ADDRESS", default="1 Grand Canal Square, Dublin 2, D02 X123, Ireland"),
    "country": env.str("SELLER_COUNTRY", default="IE"),
    "vat_number": env.str("SELLER_VAT_NUMBER", default="IE1234567T"),
}
INVOICE_DISPUTE_DAYS = 7  # R40
INVOICE_ISSUER = env.str("INVOICE_ISSUER", default="ADC")
CREDIT_DEFAULT_VALIDITY_DAYS = 90
CREDIT_EXPIRY_GRACE_SECONDS = env.int("CREDIT_EXPIRY_GRACE_SECONDS", default=3600)
SPEND_BATCH_MAX = 1000
# Webhooks (R45): seconds to connect to an endpoint and to wait for its answer (decision 0033).
WEBHOOK_TIMEOUT_CONNECT = env.float("WEBHOOK_TIMEOUT_CONNECT", default=3.0)
WEBHOOK_TIMEOUT_READ = env.float("WEBHOOK_TIMEOUT_READ", default=10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"
    SECURE_REFERRER_POLICY = "same-origin"

"""Django settings for the chat server, read from the environment with safe defaults.

Every option is listed in README.md ("Configuration"). Values come from environment
variables so the same code runs as a single node (SQLite, in-process fan-out) or as a
cluster node (PostgreSQL, ZeroMQ broker) without editing files.
"""
import os
import secrets
import socket
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent


def env_str(name, default):
    return os.environ.get(name, default)


def env_int(name, default, minimum=1):
    value = os.environ.get(name)
    number = int(value) if value not in (None, "") else default
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_millis(name, default_ms, seconds_name=None):
    """A duration in milliseconds from `name` (e.g. CHAT_PING_INTERVAL_MS). The older
    whole-seconds variable `seconds_name` keeps working; both set to different durations
    is refused, so an operator never wonders which one is in force."""
    millis = os.environ.get(name) or None
    seconds = os.environ.get(seconds_name) if seconds_name else None
    chosen = env_int(name, default_ms) if millis is not None else None
    if seconds not in (None, ""):
        from_seconds = env_int(seconds_name, 1) * 1000
        if chosen is not None and chosen != from_seconds:
            raise ValueError(f"{name}={chosen} and {seconds_name}={seconds} disagree: set only {name}")
        chosen = from_seconds
    return default_ms if chosen is None else chosen


def env_bool(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default):
    value = os.environ.get(name, default)
    return [item.strip() for item in value.split(",") if item.strip()]


def load_secret_key(path):
    """Return SECRET_KEY from the environment, else from a local file created on first use."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = load_secret_key(Path(env_str("SECRET_KEY_FILE", str(BASE_DIR / ".secret_key"))))
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chat",  # before django_tasks_db: its `db_worker` command is chat's (chat.worker), see README
    "chat.search",  # message search: its own app (label chat_search) and migrations
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chat.middleware.DatabaseGateMiddleware",
    "chat.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "urls"

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

DEFAULT_SQLITE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", DEFAULT_SQLITE_URL))}
# Connections opened by HTTP requests close when the request ends; the socket side keeps its
# few long-lived connections in chat.store's workers (see CHAT_DB_READERS).
DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run while the single writer commits; IMMEDIATE avoids upgrade deadlocks.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # socket.io-client and markdown-it arrive through npm (package.json); served, never copied in.
    ("vendor/socket.io", BASE_DIR / "node_modules" / "socket.io-client" / "dist"),
    ("vendor/markdown-it", BASE_DIR / "node_modules" / "markdown-it" / "dist" / "browser"),
]
# Serve straight from the finders so `make run` needs no collectstatic; nginx serves
# STATIC_ROOT itself in a cluster.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "engineio": {"level": "WARNING"},
        "socketio": {"level": "WARNING"},
        "geventwebsocket": {"level": "WARNING"},
        # a line per job state change (the index job runs every 2 s); failures still log as errors
        "django_tasks": {"level": "WARNING"},
    },
}

# --- chat options (README "Configuration") -------------------------------------------------
CHAT_NODE_ID = env_str("CHAT_NODE_ID", f"{socket.gethostname()}-{os.getpid()}")  # unique per process
CHAT_NODE_HEARTBEAT_SECS = env_int("CHAT_NODE_HEARTBEAT_SECS", 3)
CHAT_NODE_TIMEOUT_SECS = env_int("CHAT_NODE_TIMEOUT_SECS", 10)  # silent this long: its users are gone
CHAT_HISTORY = env_int("CHAT_HISTORY", 50)  # messages sent on join
CHAT_SINCE_MAX = env_int("CHAT_SINCE_MAX", 500)  # messages per `join {since}` catch-up, then truncated
CHAT_PAGE_MAX = env_int("CHAT_PAGE_MAX", 100)  # largest `history` / API page
CHAT_MAX_MESSAGE = env_int("CHAT_MAX_MESSAGE", 4000)  # characters after stripping
CHAT_EDIT_WINDOW_SECS = env_int("CHAT_EDIT_WINDOW_SECS", 900)  # authors edit/delete their messages this long
CHAT_REACTIONS_PER_MESSAGE = env_int("CHAT_REACTIONS_PER_MESSAGE", 20)  # different emoji on one message
CHAT_REACTIONS_PER_USER = env_int("CHAT_REACTIONS_PER_USER", 10)  # one person's emoji on one message
CHAT_REACTION_USERS_LISTED = env_int("CHAT_REACTION_USERS_LISTED", 5)  # names shown per reaction
CHAT_MAX_ROOMS_PER_CONNECTION = env_int("CHAT_MAX_ROOMS_PER_CONNECTION", 50)
CHAT_MAX_MEMBERS_LISTED = env_int("CHAT_MAX_MEMBERS_LISTED", 500)  # names in a join ack
CHAT_PRESENCE_DETAIL_MAX = env_int("CHAT_PRESENCE_DETAIL_MAX", 100)  # larger rooms: throttled counts only
CHAT_PRESENCE_INTERVAL_MSECS = env_int("CHAT_PRESENCE_INTERVAL_MSECS", 1000)  # count events, large rooms
CHAT_ROOMS_LISTED = env_int("CHAT_ROOMS_LISTED", 200)  # rooms in `rooms` and /api/rooms/
CHAT_TOKEN_MAX_AGE_SECS = env_int("CHAT_TOKEN_MAX_AGE_SECS", 7 * 24 * 3600)
CHAT_DB_READERS = env_int("CHAT_DB_READERS", 4)  # socket-side read connections (+1 writer)
# SQLite keeps a page cache per connection that fills as the database grows (2 MiB each by
# default): under churn that reads as RSS growing for hours. This caps it; the OS caches the file.
CHAT_SQLITE_CACHE_KIB = env_int("CHAT_SQLITE_CACHE_KIB", 512)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"]["init_command"] += f" PRAGMA cache_size=-{CHAT_SQLITE_CACHE_KIB};"
CHAT_HTTP_DB_SLOTS = env_int("CHAT_HTTP_DB_SLOTS", 8)  # HTTP requests using the database at once
CHAT_DB_QUEUE = env_int("CHAT_DB_QUEUE", 5000)  # pending database jobs before `busy`
CHAT_WRITE_BATCH = env_int("CHAT_WRITE_BATCH", 200)  # messages committed in one transaction
CHAT_DELIVERY_QUEUE = env_int("CHAT_DELIVERY_QUEUE", 1000)  # committed batches awaiting delivery; then the writer waits
CHAT_FEED_BUFFER = env_int("CHAT_FEED_BUFFER", 1000)  # out-of-order events held per room
CHAT_MAX_PAYLOAD_BYTES = env_int("CHAT_MAX_PAYLOAD_BYTES", 64 * 1024)  # Engine.IO packet limit
# Engine.IO heartbeat and Socket.IO connect timeout, in milliseconds; the *_SECS forms still work.
CHAT_PING_INTERVAL_MS = env_millis("CHAT_PING_INTERVAL_MS", 25000, "CHAT_PING_INTERVAL_SECS")
CHAT_PING_TIMEOUT_MS = env_millis("CHAT_PING_TIMEOUT_MS", 20000, "CHAT_PING_TIMEOUT_SECS")
CHAT_CONNECT_TIMEOUT_MS = env_millis("CHAT_CONNECT_TIMEOUT_MS", 45000)  # no namespace connected by then: closed
CHAT_LISTEN_BACKLOG = env_int("CHAT_LISTEN_BACKLOG", 2048)  # pending TCP connects (reconnect storms)
CHAT_RATE_LIMITS = env_str("CHAT_RATE_LIMITS", "on")  # on | off | send=4/20,typing=10/30,join=5/30
CHAT_FLOOD_STRIKES = env_int("CHAT_FLOOD_STRIKES", 20)  # refusals in a row before a flooder is cut off
CHAT_MAX_CONNECTIONS_PER_IP = env_int("CHAT_MAX_CONNECTIONS_PER_IP", 50, minimum=0)  # 0: no limit
CHAT_MAX_OUTBOX = env_int("CHAT_MAX_OUTBOX", 1000)  # packets queued for one connection before it is cut
CHAT_MAX_OUTBOX_BYTES = env_int("CHAT_MAX_OUTBOX_BYTES", 4 * 1024 * 1024)  # ... or bytes queued
CHAT_SHUTDOWN_SECS = env_int("CHAT_SHUTDOWN_SECS", 7)  # SIGTERM: time to finish database work (exit < 10 s)
CHAT_BROKER_URL = env_str("CHAT_BROKER_URL", "")  # tcp://HOST:PORT of the broker; empty: one node
# Bus authentication (README "Bus security"): ZeroMQ CURVE keys, Z85 text from `manage.py make_bus_keys`.
CHAT_BUS_SERVER_SECRET_KEY = env_str("CHAT_BUS_SERVER_SECRET_KEY", "")  # broker only
CHAT_BUS_CLIENT_PUBLIC_KEYS = env_list("CHAT_BUS_CLIENT_PUBLIC_KEYS", "")  # broker: node keys it admits
CHAT_BUS_SERVER_PUBLIC_KEY = env_str("CHAT_BUS_SERVER_PUBLIC_KEY", "")  # nodes: the broker they trust
CHAT_BUS_CLIENT_SECRET_KEY = env_str("CHAT_BUS_CLIENT_SECRET_KEY", "")  # nodes: their own key
CHAT_BUS_INSECURE = env_bool("CHAT_BUS_INSECURE", False)  # no keys: plain bus, loopback addresses only
CHAT_DELIVERY_CHECK_SECS = env_int("CHAT_DELIVERY_CHECK_SECS", 5)  # compare rooms with the database
CHAT_TRUSTED_PROXIES = env_list("CHAT_TRUSTED_PROXIES", "")  # proxies whose X-Forwarded-For is believed
CHAT_ALLOWED_ORIGINS = env_list("CHAT_ALLOWED_ORIGINS", "")  # empty: the site's own host only
# Rooms created by joining, per name and per client address (on this node): rooms/seconds.
# Off with CHAT_RATE_LIMITS=off unless set (load tests create many rooms from one address).
CHAT_ROOM_CREATES = env_str("CHAT_ROOM_CREATES", "off" if CHAT_RATE_LIMITS.strip().lower() in ("off", "0", "false", "no") else "on")
# /metrics and /healthz?detail: only for these addresses or networks ("*": anyone); behind a
# proxy in CHAT_TRUSTED_PROXIES the client's address comes from X-Forwarded-For.
CHAT_METRICS_ALLOWED = env_list("CHAT_METRICS_ALLOWED", "127.0.0.0/8,::1")

# -- accounts, rooms with members, unread and mentions (issue 16) ---------------------------
CHAT_GUESTS = env_bool("CHAT_GUESTS", True)  # off: only logged-in accounts may connect
# Sign-ups and failed logins per client address: count/seconds (Django's cache keeps the
# counts: per process unless CHAT_CACHE_URL names a shared Redis).
CHAT_SIGNUP_LIMIT = env_str("CHAT_SIGNUP_LIMIT", "5/3600")
CHAT_LOGIN_LIMIT = env_str("CHAT_LOGIN_LIMIT", "10/300")
CHAT_CACHE_URL = env_str("CHAT_CACHE_URL", "")  # redis://HOST:PORT/DB; empty: this process's memory
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CHAT_CACHE_URL}
          if CHAT_CACHE_URL else
          {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 10000}}}
CHAT_DM_MAX = env_int("CHAT_DM_MAX", 8)  # people in one direct conversation, you included
CHAT_MY_ROOMS_LISTED = env_int("CHAT_MY_ROOMS_LISTED", 500)  # rooms and DMs in `my_rooms` (sidebar)
CHAT_ROOM_MENTION_OPEN_MAX = env_int("CHAT_ROOM_MENTION_OPEN_MAX", 20)  # larger rooms: @room by owners/mods only
CHAT_MENTIONS_PER_MESSAGE = env_int("CHAT_MENTIONS_PER_MESSAGE", 20)  # @names stored per message; more are text
CHAT_ROOM_MEMBERS_MAX = env_int("CHAT_ROOM_MEMBERS_MAX", 10000)  # accounts in one private room

# -- background work: django-tasks with its database backend (chat.jobs, chat.worker) --------
# The queue is a table in DATABASE_URL: a job row is written in the transaction that causes it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
CHAT_JOB_MAX_ATTEMPTS = env_int("CHAT_JOB_MAX_ATTEMPTS", 5)  # then the job stays FAILED, in the admin
CHAT_JOB_BACKOFF_SECS = env_int("CHAT_JOB_BACKOFF_SECS", 10)  # before the 2nd attempt; doubles each time
CHAT_JOB_BACKOFF_MAX_SECS = env_int("CHAT_JOB_BACKOFF_MAX_SECS", 3600)  # longest wait between attempts
CHAT_JOB_HEARTBEAT_SECS = env_int("CHAT_JOB_HEARTBEAT_SECS", 5)  # a worker says it is alive this often
CHAT_JOB_LEASE_SECS = env_int("CHAT_JOB_LEASE_SECS", 30)  # silent this long: its running job is ready again
CHAT_JOB_KEEP_SECS = env_int("CHAT_JOB_KEEP_SECS", 86400)  # successful job rows are deleted after this
CHAT_JOB_KEEP_FAILED_SECS = env_int("CHAT_JOB_KEEP_FAILED_SECS", 30 * 86400)  # failed ones after this
CHAT_MAINTENANCE_EVERY_SECS = env_int("CHAT_MAINTENANCE_EVERY_SECS", 3600)  # pruning and retention run this often
CHAT_RETENTION_AGE = env_str("CHAT_RETENTION_AGE", "")  # e.g. 30d: messages older are purged; empty: off

# -- email notifications (chat.digests): Django's email framework ----------------------------
CHAT_EMAIL_DELAY_SECS = env_int("CHAT_EMAIL_DELAY_SECS", 600)  # DMs and mentions unread this long are emailed
CHAT_EMAIL_DIGEST_MAX = env_int("CHAT_EMAIL_DIGEST_MAX", 50)  # messages quoted in one digest; the rest counted
CHAT_EMAIL_KEEP_SECS = env_int("CHAT_EMAIL_KEEP_SECS", 30 * 86400)  # sent digests are deleted after this
CHAT_SITE_URL = env_str("CHAT_SITE_URL", "http://127.0.0.1:8000").rstrip("/")  # links in emails
EMAIL_HOST = env_str("EMAIL_HOST", "")  # set: email goes out by SMTP; empty: printed (console backend)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                        else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS (port 465)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # seconds: a stalled SMTP server fails the attempt (retried)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")

# -- message search (issue 18; chat/search/) ------------------------------------------------
CHAT_SEARCH_CONFIG = env_str("CHAT_SEARCH_CONFIG", "simple")  # PostgreSQL text search configuration
CHAT_SEARCH_PAGE = env_int("CHAT_SEARCH_PAGE", 20)  # results per page (and the largest `limit`)
CHAT_SEARCH_MAX_QUERY = env_int("CHAT_SEARCH_MAX_QUERY", 200)  # characters of `q`
CHAT_SEARCH_RANK_WINDOW = env_int("CHAT_SEARCH_RANK_WINDOW", 1000)  # newest matches ranked by relevance
CHAT_SEARCH_INDEXER = env_bool("CHAT_SEARCH_INDEXER", False)  # also index in the server process (no workers)
CHAT_SEARCH_INDEX_SECS = env_int("CHAT_SEARCH_INDEX_SECS", 2)  # the workers' index job runs this often

"""Settings from environment variables (prefix ``KEPU_``); stdlib only.

Every setting has an embedded default so the application runs with no setup:
a SQLite database, an embedded Celery broker and a generated secret key, all
inside the instance folder.  Production switches parts on through variables
(see README, "Configuration").
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"KEPU_{name}")
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"KEPU_{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"KEPU_{name} must be a number, got {raw!r}") from exc


def _env_ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _env(name)
    if raw is None:
        return default
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"KEPU_{name} must be comma-separated integers, got {raw!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ValueError(f"KEPU_{name} must list non-negative seconds, got {raw!r}")
    return values


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def instance_path() -> Path:
    """The instance folder: database, broker, secret key and uploads of one instance."""
    return Path(_env("INSTANCE_PATH", os.path.join(os.getcwd(), "instance"))).resolve()


def signing_key_path(folder: Path | None = None) -> Path:
    """The instance's Ed25519 signing key: KEPU_SIGNING_KEY_PATH, else in the instance folder."""
    return Path(_env("SIGNING_KEY_PATH", str((folder or instance_path()) / "signing_key.pem")))


def _secret_key(folder: Path) -> str:
    """Return KEPU_SECRET_KEY, or a random key generated once and kept in the instance folder."""
    given = _env("SECRET_KEY")
    if given:
        return given
    key_file = folder / "secret_key"
    if not key_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()


def cookie_settings(secure: bool) -> dict[str, object]:
    """Session cookie flags: ``Secure`` and the ``__Host-`` prefix over HTTPS; HttpOnly, Lax."""
    return {
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        # __Host- cookies must be Secure, Path=/ and carry no Domain (browsers enforce it).
        "SESSION_COOKIE_NAME": "__Host-kepu" if secure else "kepu_session",
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_DOMAIN": None,
        # HSTS goes with HTTPS only: over plain HTTP a browser ignores it anyway.
        "HSTS": secure,
    }


def secure_cookies_given() -> bool:
    """True when KEPU_SECURE_COOKIES is set explicitly (``kepu run`` only changes the default)."""
    return _env("SECURE_COOKIES") is not None


#: What every node of a production installation must be given rather than make up for itself.
PRODUCTION_REQUIRES = (
    "KEPU_SECRET_KEY (at least 32 characters, the same on every node)",
    "KEPU_SIGNING_KEY_PATH (an existing Ed25519 key file shared by every node)",
    "KEPU_DATABASE_URL (PostgreSQL)",
    "KEPU_BROKER_URL (Redis)",
)


def production_problems() -> list[str]:
    """What a production node (KEPU_ENV=production) lacks; empty when it may start.

    Without these settings each node would silently generate its own secret key (sign-ins
    valid on one node only) and its own signing key (receipts signed by different keys), or
    run on a private SQLite file and an embedded broker that no other node sees.
    """
    problems = []
    secret = _env("SECRET_KEY") or ""
    if len(secret) < 32 or "change-me" in secret:
        problems.append(PRODUCTION_REQUIRES[0])
    key_path = _env("SIGNING_KEY_PATH")
    if not key_path or not Path(key_path).is_file():
        problems.append(PRODUCTION_REQUIRES[1])
    if not (_env("DATABASE_URL") or "").startswith("postgresql"):
        problems.append(PRODUCTION_REQUIRES[2])
    if not (_env("BROKER_URL") or "").startswith(("redis://", "rediss://")):
        problems.append(PRODUCTION_REQUIRES[3])
    return problems


def deployment() -> str:
    """KEPU_ENV: ``development`` (the default; generated keys, embedded parts) or ``production``."""
    name = (_env("ENV", "development") or "development").strip().lower()
    if name not in {"development", "production"}:
        raise ValueError(f"KEPU_ENV must be development or production, not {name!r}")
    return name


def load() -> dict[str, object]:
    """Build the Flask configuration mapping from the environment."""
    env_name = deployment()
    if env_name == "production":
        missing = production_problems()
        if missing:
            # Refuse to start rather than run a node that disagrees with the others.
            raise ValueError("KEPU_ENV=production refuses to start without: " + "; ".join(missing))
    folder = instance_path()
    folder.mkdir(parents=True, exist_ok=True)
    database_url = _env("DATABASE_URL", f"sqlite:///{folder / 'kepu.sqlite'}")
    broker_url = _env("BROKER_URL", f"sqla+sqlite:///{folder / 'broker.sqlite'}")
    # On by default: production serves HTTPS. `kepu run` (plain http://127.0.0.1) switches it
    # off unless the variable is set (review/cli.py).
    secure_cookies = _env_bool("SECURE_COOKIES", True)
    # Sign-ins end after this long without a request, and this long after signing in at most.
    idle_minutes = _env_int("SESSION_IDLE_MINUTES", 30)
    lifetime_hours = _env_int("SESSION_HOURS", 12)
    fault_injection = _env("FAULT_INJECTION", "") or ""
    if fault_injection and secure_cookies:
        # Fault points kill or stall processes on purpose: never on a real (HTTPS) deployment.
        raise ValueError("KEPU_FAULT_INJECTION is for tests only; unset it in production")
    return {
        "KEPU_ENV": env_name,
        "INSTANCE_PATH": str(folder),
        "SECRET_KEY": _secret_key(folder),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BROKER_URL": broker_url,
        "UPLOAD_FOLDER": _env("UPLOAD_FOLDER", str(folder / "uploads")),
        # Videos and subtitle files, stored under content-addressed names (sha256.ext).
        "MEDIA_FOLDER": _env("MEDIA_FOLDER", str(folder / "media")),
        "MAX_VIDEO_BYTES": _env_int("MAX_VIDEO_BYTES", 2 * 1024 * 1024 * 1024),
        "MAX_SUBTITLE_BYTES": _env_int("MAX_SUBTITLE_BYTES", 5 * 1024 * 1024),
        # Burned-in subtitles: frames sampled per second for OCR (0 switches OCR off).
        "OCR_FPS": _env_float("OCR_FPS", 1.0),
        # At most this many frames per video: a longer video is sampled less often, so OCR
        # stays inside the media task's time limit (workers.config.MEDIA_TIME_LIMIT).
        "OCR_MAX_FRAMES": _env_int("OCR_MAX_FRAMES", 7200),
        "MEDIA_MAX_ATTEMPTS": _env_int("MEDIA_MAX_ATTEMPTS", 3),
        "FFMPEG": _env("FFMPEG", "ffmpeg"),
        "FFPROBE": _env("FFPROBE", "ffprobe"),
        "SIGNING_KEY_PATH": str(signing_key_path(folder)),
        # The audit ledger's name in signed checkpoints, and how often one is signed.
        "LEDGER_ORIGIN": _env("LEDGER_ORIGIN", "kepu-review/audit"),
        "CHECKPOINT_EVERY": _env_int("CHECKPOINT_EVERY", 3600),
        # Screening: the lowest risk level that routes a version to experts.
        "FLAG_LEVEL": _env("FLAG_LEVEL", "medium"),
        "SCREENING_MAX_ATTEMPTS": _env_int("SCREENING_MAX_ATTEMPTS", 3),
        # A version in submitted/screening this long is re-queued (a worker died with it, or
        # the broker lost it; a redelivery is harmless). Videos wait MEDIA_STUCK_AFTER at least.
        "STUCK_AFTER": _env_int("STUCK_AFTER", 60),
        "MEDIA_STUCK_AFTER": _env_int("MEDIA_STUCK_AFTER", 600),
        # Deadlines for experts, in seconds.
        "ACCEPT_WITHIN": _env_int("ACCEPT_WITHIN", 2 * 24 * 3600),
        "DECIDE_WITHIN": _env_int("DECIDE_WITHIN", 5 * 24 * 3600),
        "SWEEP_EVERY": _env_int("SWEEP_EVERY", 60),
        "RELAY_EVERY": _env_int("RELAY_EVERY", 2),
        # Celery on Redis (workers/config.py). The defaults are the production values; fault
        # tests shorten them so a redelivery after a visibility timeout takes seconds, not an
        # hour. The visibility timeout must stay above every task time limit (checked there).
        "VISIBILITY_TIMEOUT": _env_int("VISIBILITY_TIMEOUT", 3600),
        "TASK_TIME_LIMIT": _env_int("TASK_TIME_LIMIT", 600),
        "TASK_SOFT_TIME_LIMIT": _env_int("TASK_SOFT_TIME_LIMIT", 540),
        "UNACKED_RESTORE_INTERVAL": _env_int("UNACKED_RESTORE_INTERVAL", 30),
        "BROKER_SOCKET_TIMEOUT": _env_float("BROKER_SOCKET_TIMEOUT", 5.0),
        "BROKER_CONNECT_TIMEOUT": _env_float("BROKER_CONNECT_TIMEOUT", 3.0),
        "WORKER_SOFT_SHUTDOWN_TIMEOUT": _env_float("WORKER_SOFT_SHUTDOWN_TIMEOUT", 10.0),
        # Test-only fault points (workers/faults.py), comma-separated; empty in production.
        "FAULT_INJECTION": fault_injection,
        # Notifications by e-mail; without an SMTP host they stay in-app only.
        "SMTP_HOST": _env("SMTP_HOST"),
        "SMTP_PORT": _env_int("SMTP_PORT", 25),
        "SMTP_USER": _env("SMTP_USER"),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD"),
        "SMTP_STARTTLS": _env_bool("SMTP_STARTTLS", False),
        "MAIL_FROM": _env("MAIL_FROM", "kepu-review@localhost"),
        "DIGEST_EVERY": _env_int("DIGEST_EVERY", 24 * 3600),
        "BASE_URL": _env("BASE_URL", "http://127.0.0.1:5000"),
        # Outgoing webhooks: seconds one HTTP try may take, the waits between tries, and how
        # many tries a delivery gets before it is marked failed (an admin may resend it).
        "WEBHOOK_TIMEOUT": _env_float("WEBHOOK_TIMEOUT", 10.0),
        "WEBHOOK_RETRY_SCHEDULE": _env_ints("WEBHOOK_RETRY_SCHEDULE", (60, 300, 1800, 7200, 21600)),
        "WEBHOOK_MAX_ATTEMPTS": _env_int("WEBHOOK_MAX_ATTEMPTS", 6),
        # Operations: log format (text | json), level, and who may read /metrics.
        "LOG_FORMAT": _env("LOG_FORMAT", "text"),
        "LOG_LEVEL": _env("LOG_LEVEL", "INFO"),
        "METRICS_TOKEN": _env("METRICS_TOKEN"),
        "METRICS_ALLOW": _env("METRICS_ALLOW", "127.0.0.1/32,::1/128"),
        # Readiness: seconds each dependency check (database, broker) may take.
        "HEALTH_TIMEOUT": _env_float("HEALTH_TIMEOUT", 2.0),
        # Request limits.
        "MAX_JSON_BYTES": _env_int("MAX_JSON_BYTES", 10 * 1024 * 1024),
        # The whole request: a video of MAX_VIDEO_BYTES plus its subtitle files and fields.
        "MAX_CONTENT_LENGTH": _env_int(
            "MAX_UPLOAD_BYTES",
            _env_int("MAX_VIDEO_BYTES", 2 * 1024 * 1024 * 1024) + 64 * 1024 * 1024,
        ),
        "MAX_FORM_MEMORY_SIZE": 2 * 1024 * 1024,
        # An application/x-www-form-urlencoded body (an article pasted into the form).
        "MAX_FORM_BYTES": _env_int("MAX_FORM_BYTES", 16 * 1024 * 1024),
        "MAX_FORM_PARTS": 1000,
        # Sessions: server-side revocable sign-ins; cookie flags set explicitly.
        **cookie_settings(secure_cookies),
        "SESSION_IDLE_TIMEOUT": timedelta(minutes=idle_minutes),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=lifetime_hours),
        "REMEMBER_COOKIE_DURATION": timedelta(hours=lifetime_hours),
        "WTF_CSRF_TIME_LIMIT": lifetime_hours * 3600,
        # Sign-in throttling: failures per account and address, and per address, in a window.
        # Counters live in Redis (KEPU_RATELIMIT_URL, default the broker when it is Redis) so
        # every web process shares them; without Redis each process counts for itself.
        "RATELIMIT_URL": _env(
            "RATELIMIT_URL",
            broker_url if broker_url and broker_url.startswith(("redis://", "rediss://")) else None,
        ),
        "LOGIN_MAX_FAILURES": _env_int("LOGIN_MAX_FAILURES", 5),
        "LOGIN_MAX_FAILURES_PER_IP": _env_int("LOGIN_MAX_FAILURES_PER_IP", 30),
        "LOGIN_WINDOW": _env_int("LOGIN_WINDOW", 300),
        # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are trusted.
        "PROXY_HOPS": _env_int("PROXY_HOPS", 0),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "JSON_AS_ASCII": False,
    }

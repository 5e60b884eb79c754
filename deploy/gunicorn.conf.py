"""gunicorn settings for kepu-review (an EXAMPLE to adapt): ``gunicorn -c deploy/gunicorn.conf.py``.

Every value can be changed through an environment variable, so the same file serves systemd,
docker compose and the benchmarks (bench/stack.py):

  KEPU_BIND                 address to listen on               (127.0.0.1:8000)
  KEPU_WEB_WORKERS          worker processes                   (2 × CPUs + 1, at most 8)
  KEPU_WEB_TIMEOUT          seconds a request may take         (300: large video uploads stream)
  KEPU_FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-* headers are trusted (127.0.0.1)
  KEPU_LOG_FORMAT=json      error and access log as one JSON object per line (review.logs)

Workers are sync processes: the app is multi-process safe (sessions, metrics and queues all live
in PostgreSQL and Redis), so more workers or more machines behind the proxy scale it out.
"""

from __future__ import annotations

import multiprocessing
import os

wsgi_app = "review:create_app()"
bind = [os.environ.get("KEPU_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("KEPU_WEB_WORKERS") or min(2 * multiprocessing.cpu_count() + 1, 8))
worker_class = "sync"
timeout = int(os.environ.get("KEPU_WEB_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory growth), not all at once.
max_requests = 2000
max_requests_jitter = 200
# Only these proxies may set the scheme/client through X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("KEPU_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app bounds request bodies itself (KEPU_MAX_UPLOAD_BYTES); keep the header limits.
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("KEPU_LOG_LEVEL", "info").lower()

if os.environ.get("KEPU_LOG_FORMAT", "").strip().lower() == "json":
    # Both gunicorn loggers through review.logs: access atoms become JSON fields, and the
    # request id the app sets (X-Request-ID response header) is carried as request_id.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "review.logs.JsonFormatter"},
            "access": {"()": "review.logs.GunicornAccessJsonFormatter"},
        },
        "handlers": {
            "error": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
        },
        # The app's own records reach the root logger's JSON handler (review.logs).
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
    # Ask for the atoms the JSON formatter reads (it ignores the format string itself).
    access_log_format = '%(h)s "%(r)s" %(s)s %(D)s %({x-request-id}o)s'
else:
    access_log_format = (
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus '
        "rid=%({x-request-id}o)s"
    )

"""The Celery configuration derived from the Flask configuration (one place, unit-tested)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

#: Production defaults (config.py reads the KEPU_ overrides). A task may run TASK_TIME_LIMIT
#: seconds before it is killed; the visibility timeout must exceed every time limit and every
#: retry countdown, or a slow task is redelivered while it still runs (RELIABILITY.md, finding 3).
TASK_TIME_LIMIT = 600
TASK_SOFT_TIME_LIMIT = 540
#: Media steps (OCR of a long video) get longer, still well inside the visibility timeout.
MEDIA_TIME_LIMIT = 3000
MEDIA_SOFT_TIME_LIMIT = 2900
VISIBILITY_TIMEOUT = 3600
RETRY_BACKOFF_MAX = 300
#: The longest countdown the screening task waits before a retry (2 s, then 4 s).
SCREENING_RETRY_MAX = 4
UNACKED_RESTORE_INTERVAL = 30
#: How often the reconciler looks for lost screenings (see KEPU_STUCK_AFTER).
RECONCILE_EVERY = 15
BROKER_SOCKET_TIMEOUT = 5.0
BROKER_CONNECT_TIMEOUT = 3.0
WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0

QUEUES = ("screening", "media", "control", "notifications")

#: The message header carrying the enqueuing request's id into the worker (review.logs).
REQUEST_ID_HEADER = "kepu_request_id"


def timeout_problems(conf: Mapping[str, Any]) -> list[str]:
    """Why a Celery configuration could restore a message that is still running (empty if none)."""
    options = conf.get("broker_transport_options") or {}
    vt = options.get("visibility_timeout")
    if vt is None:  # not Redis: the embedded broker has no visibility timeout
        return []
    problems = []
    if (conf.get("result_backend_transport_options") or {}).get("visibility_timeout") != vt:
        problems.append("result_backend_transport_options.visibility_timeout differs")
    hard, soft = conf["task_time_limit"], conf["task_soft_time_limit"]
    if soft > hard:
        problems.append(f"task_soft_time_limit {soft} > task_time_limit {hard}")
    for name, value in (
        ("task_time_limit", hard),
        ("media time limit", MEDIA_TIME_LIMIT),
        ("retry backoff max", RETRY_BACKOFF_MAX),
        ("screening retry countdown", SCREENING_RETRY_MAX),
    ):
        if vt <= value:
            problems.append(f"visibility_timeout {vt} <= {name} {value}")
    return problems


def celery_config(flask_config: Mapping[str, Any]) -> dict[str, Any]:
    """Celery settings: JSON only, late acks, no prefetch hoarding, bounded broker timeouts.

    Timeouts come from the Flask configuration (KEPU_VISIBILITY_TIMEOUT and friends, see
    config.py) with the production values above as defaults. A combination that could restore
    a running task is refused, except under test-only fault injection, where scenario 7 of
    RELIABILITY.md runs such a configuration on purpose.
    """
    broker_url = str(flask_config["BROKER_URL"])
    vt = int(flask_config.get("VISIBILITY_TIMEOUT", VISIBILITY_TIMEOUT))
    transport_options: dict[str, Any] = {}
    result_options: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://")):
        transport_options = {
            "visibility_timeout": vt,
            "socket_timeout": float(
                flask_config.get("BROKER_SOCKET_TIMEOUT", BROKER_SOCKET_TIMEOUT)
            ),
            "socket_connect_timeout": float(
                flask_config.get("BROKER_CONNECT_TIMEOUT", BROKER_CONNECT_TIMEOUT)
            ),
            "unacked_restore_interval": int(
                flask_config.get("UNACKED_RESTORE_INTERVAL", UNACKED_RESTORE_INTERVAL)
            ),
            "unacked_restore_throttle": 1,
        }
        result_options = {"visibility_timeout": vt}
    elif broker_url.startswith("sqla+sqlite"):
        # The embedded broker: several processes share one SQLite file, so wait on its lock.
        transport_options = {"connect_args": {"timeout": 30}}
    conf = _celery_config(flask_config, broker_url, transport_options, result_options)
    problems = timeout_problems(conf)
    if problems and not flask_config.get("FAULT_INJECTION"):
        raise ValueError("unsafe Celery timeouts: " + "; ".join(problems))
    return conf


def _celery_config(
    flask_config: Mapping[str, Any],
    broker_url: str,
    transport_options: dict[str, Any],
    result_options: dict[str, Any],
) -> dict[str, Any]:
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": result_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": float(
            flask_config.get("WORKER_SOFT_SHUTDOWN_TIMEOUT", WORKER_SOFT_SHUTDOWN_TIMEOUT)
        ),
        "task_time_limit": int(flask_config.get("TASK_TIME_LIMIT", TASK_TIME_LIMIT)),
        "task_soft_time_limit": int(flask_config.get("TASK_SOFT_TIME_LIMIT", TASK_SOFT_TIME_LIMIT)),
        "task_default_queue": "control",
        "task_routes": {
            "kepu.screen_version": {"queue": "screening"},
            "kepu.process_media": {"queue": "media"},
            "kepu.relay_outbox": {"queue": "control"},
            "kepu.reconcile": {"queue": "control"},
            "kepu.sweep_deadlines": {"queue": "control"},
            "kepu.audit_checkpoint": {"queue": "control"},
            "kepu.index_item": {"queue": "control"},
            "kepu.send_email": {"queue": "notifications"},
            "kepu.send_digests": {"queue": "notifications"},
            "kepu.deliver_webhook": {"queue": "notifications"},
        },
        "beat_schedule": {
            "relay-outbox": {
                "task": "kepu.relay_outbox",
                "schedule": timedelta(seconds=int(flask_config["RELAY_EVERY"])),
                "options": {"expires": max(int(flask_config["RELAY_EVERY"]) * 5, 10)},
            },
            "reconcile": {
                # Often, so a screening lost with a dead worker is back within about a minute
                # (KEPU_STUCK_AFTER + this); the queries are cheap.
                "task": "kepu.reconcile",
                "schedule": timedelta(seconds=RECONCILE_EVERY),
                "options": {"expires": 60},
            },
            "send-digests": {
                "task": "kepu.send_digests",
                "schedule": timedelta(seconds=int(flask_config["DIGEST_EVERY"])),
                "options": {"expires": 3600},
            },
            "audit-checkpoint": {
                "task": "kepu.audit_checkpoint",
                "schedule": timedelta(seconds=int(flask_config.get("CHECKPOINT_EVERY", 3600))),
                "options": {"expires": 600},
            },
            "sweep-deadlines": {
                "task": "kepu.sweep_deadlines",
                "schedule": timedelta(seconds=int(flask_config["SWEEP_EVERY"])),
                "options": {"expires": max(int(flask_config["SWEEP_EVERY"]) * 5, 60)},
            },
        },
        "worker_hijack_root_logger": False,
    }

"""The Celery configuration derived from the Flask configuration (one place, unit-tested)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

#: A task may run this long before it is killed; the visibility timeout must exceed it so a
#: slow task is never redelivered while still running (RELIABILITY.md, finding 3).
TASK_TIME_LIMIT = 600
TASK_SOFT_TIME_LIMIT = 540
#: Media steps (OCR of a long video) get longer, still well inside the visibility timeout.
MEDIA_TIME_LIMIT = 3000
MEDIA_SOFT_TIME_LIMIT = 2900
VISIBILITY_TIMEOUT = 3600
RETRY_BACKOFF_MAX = 300

QUEUES = ("screening", "media", "control", "notifications")

#: The message header carrying the enqueuing request's id into the worker (review.logs).
REQUEST_ID_HEADER = "kepu_request_id"


def celery_config(flask_config: Mapping[str, Any]) -> dict[str, Any]:
    """Celery settings: JSON only, late acks, no prefetch hoarding, bounded broker timeouts."""
    broker_url = str(flask_config["BROKER_URL"])
    transport_options: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://")):
        transport_options = {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": 5,
            "socket_connect_timeout": 3,
            "unacked_restore_interval": 30,
            "unacked_restore_throttle": 1,
        }
    elif broker_url.startswith("sqla+sqlite"):
        # The embedded broker: several processes share one SQLite file, so wait on its lock.
        transport_options = {"connect_args": {"timeout": 30}}
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
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
        "worker_soft_shutdown_timeout": 10,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT,
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
        },
        "beat_schedule": {
            "relay-outbox": {
                "task": "kepu.relay_outbox",
                "schedule": timedelta(seconds=int(flask_config["RELAY_EVERY"])),
                "options": {"expires": max(int(flask_config["RELAY_EVERY"]) * 5, 10)},
            },
            "reconcile": {
                "task": "kepu.reconcile",
                "schedule": timedelta(seconds=60),
                "options": {"expires": 300},
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

"""Guard test: the Celery configuration cannot cause duplicate restores or lost tasks.

RELIABILITY.md scenario 7 and the appendix "Config invariants": checked on the configuration a
production deployment gets (Redis broker, no KEPU_ timeout overrides).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from workers.config import (
    MEDIA_SOFT_TIME_LIMIT,
    MEDIA_TIME_LIMIT,
    RETRY_BACKOFF_MAX,
    SCREENING_RETRY_MAX,
    celery_config,
    timeout_problems,
)

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = (
    "VISIBILITY_TIMEOUT",
    "TASK_TIME_LIMIT",
    "TASK_SOFT_TIME_LIMIT",
    "UNACKED_RESTORE_INTERVAL",
    "BROKER_SOCKET_TIMEOUT",
    "BROKER_CONNECT_TIMEOUT",
    "WORKER_SOFT_SHUTDOWN_TIMEOUT",
    "FAULT_INJECTION",
    "DEBUG",
)

REDIS = {
    "BROKER_URL": "redis://127.0.0.1:6379/0",
    "RELAY_EVERY": 2,
    "SWEEP_EVERY": 60,
    "DIGEST_EVERY": 86400,
}


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Flask settings of a production deployment (config.load with production variables)."""
    import config

    for name in OVERRIDES:
        monkeypatch.delenv(f"KEPU_{name}", raising=False)
    monkeypatch.setenv("KEPU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("KEPU_BROKER_URL", "redis://redis.internal:6379/0")
    monkeypatch.setenv("KEPU_SECURE_COOKIES", "true")
    return config.load()


def test_reliability_invariants(production: dict[str, Any]) -> None:
    conf = celery_config(production)
    app = Celery("guard")
    app.config_from_object(conf)
    options = app.conf.broker_transport_options
    vt = options["visibility_timeout"]
    # One visibility timeout everywhere Celery/kombu reads one.
    assert app.conf.result_backend_transport_options["visibility_timeout"] == vt
    assert vt > app.conf.task_time_limit >= app.conf.task_soft_time_limit
    assert vt > MEDIA_TIME_LIMIT >= MEDIA_SOFT_TIME_LIMIT
    # No retry waits so long that the message would be restored while it waits.
    assert vt > RETRY_BACKOFF_MAX and vt > SCREENING_RETRY_MAX
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss
    assert app.conf.worker_soft_shutdown_timeout >= 10
    for key in (
        "socket_timeout",
        "socket_connect_timeout",
        "unacked_restore_interval",
        "unacked_restore_throttle",
    ):
        assert options[key], key
    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.result_accept_content == ["json"]
    # No result backend, so worker_deduplicate_successful_tasks (which needs one) is off.
    assert app.conf.result_backend is None and not app.conf.worker_deduplicate_successful_tasks
    assert timeout_problems(conf) == []


def test_production_defaults_are_unchanged(production: dict[str, Any]) -> None:
    options = celery_config(production)["broker_transport_options"]
    assert options["visibility_timeout"] == 3600
    assert options["unacked_restore_interval"] == 30
    conf = celery_config(production)
    assert (conf["task_time_limit"], conf["task_soft_time_limit"]) == (600, 540)
    assert production["FAULT_INJECTION"] == ""


def test_every_countdown_in_the_code_fits_the_visibility_timeout() -> None:
    """A literal countdown/eta anywhere in workers/ stays below the VT (it waits in 'unacked')."""
    found = []
    for path in (ROOT / "workers").glob("*.py"):
        found += re.findall(r"countdown\s*=\s*(?!countdown\b)(.+)", path.read_text())
    assert found, "the scan found no countdown at all: the pattern is stale"
    for expr in found:
        assert "RETRY_BACKOFF_MAX" in expr or "SCREENING_RETRY_MAX" in expr, expr
    assert "eta=" not in "".join(p.read_text() for p in (ROOT / "workers").glob("*.py"))


def test_timeouts_are_settable_and_unsafe_ones_refused() -> None:
    fault = {
        **REDIS,
        "VISIBILITY_TIMEOUT": 10,
        "TASK_TIME_LIMIT": 8,
        "TASK_SOFT_TIME_LIMIT": 6,
        "UNACKED_RESTORE_INTERVAL": 1,
        "BROKER_SOCKET_TIMEOUT": 2,
        "BROKER_CONNECT_TIMEOUT": 1,
        "WORKER_SOFT_SHUTDOWN_TIMEOUT": 5,
        "FAULT_INJECTION": "screening",
    }
    conf = celery_config(fault)
    assert conf["broker_transport_options"]["visibility_timeout"] == 10
    assert conf["broker_transport_options"]["socket_timeout"] == 2
    assert conf["task_time_limit"] == 8 and conf["worker_soft_shutdown_timeout"] == 5
    # The fault-test VT is below the media limit: allowed only under test fault injection.
    assert any("media" in p for p in timeout_problems(conf))
    with pytest.raises(ValueError, match="unsafe Celery timeouts"):
        celery_config({**fault, "FAULT_INJECTION": ""})
    with pytest.raises(ValueError, match="task_time_limit"):
        celery_config({**REDIS, "VISIBILITY_TIMEOUT": 500})


def test_fault_injection_is_refused_on_a_production_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import config

    monkeypatch.setenv("KEPU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("KEPU_SECURE_COOKIES", "true")
    monkeypatch.setenv("KEPU_FAULT_INJECTION", "screening")
    with pytest.raises(ValueError, match="tests only"):
        config.load()


def test_flask_invariants(production: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPU_DATABASE_URL", "sqlite://")
    from review import create_app

    app = create_app()
    cfg = app.config
    assert cfg["MAX_CONTENT_LENGTH"] and cfg["MAX_FORM_MEMORY_SIZE"] and cfg["MAX_FORM_PARTS"]
    assert cfg["SESSION_COOKIE_SECURE"] and cfg["SESSION_COOKIE_HTTPONLY"]
    assert cfg["SESSION_COOKIE_SAMESITE"] in {"Lax", "Strict"}
    assert cfg["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert cfg["PERMANENT_SESSION_LIFETIME"] <= timedelta(hours=12)
    assert cfg.get("WTF_CSRF_ENABLED", True) is True
    assert len(cfg["SECRET_KEY"]) >= 32 and not app.debug


def test_screening_has_its_own_queue() -> None:
    conf = celery_config(REDIS)
    assert conf["task_routes"]["kepu.screen_version"]["queue"] == "screening"
    assert conf["task_routes"]["kepu.relay_outbox"]["queue"] == "control"


def test_embedded_broker_waits_on_its_lock() -> None:
    conf = celery_config({**REDIS, "BROKER_URL": "sqla+sqlite:////tmp/x.sqlite"})
    assert conf["broker_transport_options"]["connect_args"]["timeout"] >= 10


def test_media_has_its_own_queue_and_fits_the_visibility_timeout() -> None:
    from workers.config import VISIBILITY_TIMEOUT

    conf = celery_config(REDIS)
    assert conf["task_routes"]["kepu.process_media"]["queue"] == "media"
    assert VISIBILITY_TIMEOUT > MEDIA_TIME_LIMIT > MEDIA_SOFT_TIME_LIMIT
    from workers.tasks import process_media

    assert process_media.time_limit == MEDIA_TIME_LIMIT
    assert process_media.soft_time_limit == MEDIA_SOFT_TIME_LIMIT

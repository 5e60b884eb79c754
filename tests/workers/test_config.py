"""Guard test: the Celery configuration cannot cause duplicate restores or lost tasks."""

from __future__ import annotations

from workers.config import RETRY_BACKOFF_MAX, celery_config

REDIS = {
    "BROKER_URL": "redis://127.0.0.1:6379/0",
    "RELAY_EVERY": 2,
    "SWEEP_EVERY": 60,
    "DIGEST_EVERY": 86400,
}


def test_reliability_invariants() -> None:
    conf = celery_config(REDIS)
    options = conf["broker_transport_options"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"]
    assert options["visibility_timeout"] > conf["task_time_limit"] >= conf["task_soft_time_limit"]
    assert options["socket_timeout"] and options["socket_connect_timeout"]
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    # No retry waits so long that the message would be restored while it waits.
    assert options["visibility_timeout"] > RETRY_BACKOFF_MAX


def test_screening_has_its_own_queue() -> None:
    conf = celery_config(REDIS)
    assert conf["task_routes"]["kepu.screen_version"]["queue"] == "screening"
    assert conf["task_routes"]["kepu.relay_outbox"]["queue"] == "control"


def test_embedded_broker_waits_on_its_lock() -> None:
    conf = celery_config({**REDIS, "BROKER_URL": "sqla+sqlite:////tmp/x.sqlite"})
    assert conf["broker_transport_options"]["connect_args"]["timeout"] >= 10


def test_media_has_its_own_queue_and_fits_the_visibility_timeout() -> None:
    from workers.config import MEDIA_SOFT_TIME_LIMIT, MEDIA_TIME_LIMIT, VISIBILITY_TIMEOUT

    conf = celery_config(REDIS)
    assert conf["task_routes"]["kepu.process_media"]["queue"] == "media"
    assert VISIBILITY_TIMEOUT > MEDIA_TIME_LIMIT > MEDIA_SOFT_TIME_LIMIT
    from workers.tasks import process_media

    assert process_media.time_limit == MEDIA_TIME_LIMIT
    assert process_media.soft_time_limit == MEDIA_SOFT_TIME_LIMIT

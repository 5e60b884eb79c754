"""/metrics and /readyz: figures from the database and broker, a stopped broker reported."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened
from tests.redis_proc import PrivateRedis

#: This test module's private redis-server port (the shared 6379 is never stopped).
PRIVATE_REDIS_PORT = 6397


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition; fails when it is missing."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)$"
    for line in text.splitlines():
        found = re.match(pattern, line)
        if found:
            return float(found.group(1))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    server = PrivateRedis(PRIVATE_REDIS_PORT, tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_metrics_and_readyz_report_a_stopped_broker(
    app: Any, factory: Any, private_redis: PrivateRedis
) -> None:
    app.config["BROKER_URL"] = private_redis.url
    editor = factory.token(factory.user("editor"))
    submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
    resp = app.test_client().post(  # a second one waits in the outbox (not relayed)
        "/api/v1/items", headers=editor, json={"title": "草稿二", "body": "正文", "submit": True}
    )
    assert resp.status_code == 201
    private_redis.client().lpush("screening", "a", "b", "c")
    private_redis.client().lpush("media", "d")

    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    body = resp.get_data(as_text=True)
    assert sample(body, "kepu_broker_up", kind="redis") == 1
    assert sample(body, "kepu_database_up") == 1
    assert sample(body, "kepu_queue_depth", queue="screening") == 3
    assert sample(body, "kepu_queue_depth", queue="media") == 1
    assert sample(body, "kepu_queue_depth", queue="control") == 0
    assert sample(body, "kepu_outbox_unsent") >= 1  # the second submit's screening message
    assert sample(body, "kepu_outbox_oldest_unsent_age_seconds") >= 0
    assert sample(body, "kepu_screening_latency_seconds_count") == 1
    assert sample(body, "kepu_screening_latency_seconds_bucket", le="+Inf") == 1
    assert sample(body, "kepu_items", state="submitted") == 1
    assert sample(body, "kepu_task_failures_total", kind="screening") == 0

    private_redis.stop()
    started = time.monotonic()
    resp = client.get("/readyz")
    assert time.monotonic() - started < 20  # generous: the checks have 2 s timeouts
    assert resp.status_code == 503
    assert resp.json["failed"] == ["broker"]
    assert resp.json["checks"]["database"]["ok"] is True
    body = client.get("/metrics").get_data(as_text=True)
    assert sample(body, "kepu_broker_up", kind="redis") == 0
    assert "kepu_queue_depth" not in body
    assert sample(body, "kepu_database_up") == 1  # the rest is still reported
    assert sample(body, "kepu_screening_latency_seconds_count") == 1


def test_metrics_only_for_allowed_networks_or_the_token(app: Any) -> None:
    app.config.update(METRICS_ALLOW="127.0.0.1/32", METRICS_TOKEN="s3cret-token")
    outside = app.test_client()
    outside.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert outside.get("/metrics").status_code == 404
    assert outside.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    ok = outside.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and b"kepu_database_up" in ok.data
    assert app.test_client().get("/metrics").status_code == 200  # loopback is allowed
    app.config.update(METRICS_ALLOW="10.0.0.0/8")
    assert app.test_client().get("/metrics").status_code == 404


# kombu's SQLAlchemy transport (the embedded broker) still declares a `noload` relationship.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_embedded_sqlite_broker_queue_depth(app: Any, instance: Path) -> None:
    from celery import Celery

    url = f"sqla+sqlite:///{instance / 'broker.sqlite'}"
    app.config["BROKER_URL"] = url
    client = app.test_client()
    resp = client.get("/readyz")  # no worker has created the broker file yet
    assert resp.status_code == 503 and resp.json["failed"] == ["broker"]
    body = client.get("/metrics").get_data(as_text=True)
    assert sample(body, "kepu_broker_up", kind="sqlite") == 0

    sender = Celery("probe", broker=url)
    try:
        for _ in range(2):
            sender.send_task("kepu.screen_version", args=[1], queue="screening")
    finally:
        sender.close()
    assert client.get("/readyz").status_code == 200
    body = client.get("/metrics").get_data(as_text=True)
    assert sample(body, "kepu_broker_up", kind="sqlite") == 1
    assert sample(body, "kepu_queue_depth", queue="screening") == 2
    assert sample(body, "kepu_queue_depth", queue="media") == 0


def test_readyz_and_metrics_report_a_lost_database(app: Any, db_url: str) -> None:
    """The database goes away under a running app: /readyz answers 503 naming it, /metrics
    says so, and neither hangs or answers 500."""
    from review.db import db
    from tests.conftest import _pg_admin

    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    db.session.remove()
    db.engine.dispose()
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        path.unlink()
        path.mkdir()  # a directory where the database file was: it cannot be opened
    else:
        _pg_admin(f'DROP DATABASE "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    started = time.monotonic()
    resp = client.get("/readyz")
    assert time.monotonic() - started < 20  # generous: the checks have 2 s timeouts
    assert resp.status_code == 503
    assert "database" in resp.json["failed"]
    assert resp.json["checks"]["database"]["ok"] is False
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert sample(metrics.get_data(as_text=True), "kepu_database_up") == 0

"""A webhook through the real path: worker screens → delivery in the same transaction → relay →
`kepu.deliver_webhook` on the notifications queue of a real Celery worker → HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, REDIS_URL, Factory, wait_until
from tests.e2e.conftest import Worker
from tests.review.test_webhooks import Receiver, _serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SECRET = "e2e-secret-0123456789abcdef"


@pytest.fixture
def pg_app(pg_url: str, instance: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KEPU_DATABASE_URL", pg_url)
    monkeypatch.setenv("KEPU_BROKER_URL", REDIS_URL)
    from review import create_app
    from review.db import db

    app = create_app({"TESTING": True})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_webhook_retried_and_delivered_by_a_real_worker(
    pg_app: Any, worker_env: dict[str, str], instance: Path
) -> None:
    from review.db import db
    from review.webhooks import DeliveryStatus, WebhookDelivery, create_subscriber

    receiver = Receiver(5103, answers=[500])
    server = _serve(receiver)
    worker = None
    try:
        factory = Factory()
        create_subscriber(
            url=receiver.url, events=["item.flagged"], secret=SECRET, actor=factory.user("admin")
        )
        db.session.commit()
        factory.expert()
        ed = factory.token(factory.user("editor"))
        worker = Worker(dict(worker_env, KEPU_WEBHOOK_RETRY_SCHEDULE="1"), instance)
        wait_until(lambda: "ready." in worker.log_text() or worker.proc.poll() is not None, 60)
        assert worker.proc.poll() is None, worker.log_text()
        resp = pg_app.test_client().post(
            "/api/v1/items",
            headers=ed,
            json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
        )
        assert resp.status_code == 201

        def delivered() -> Any:
            db.session.rollback()
            row = db.session.scalar(select(WebhookDelivery))
            return row if row is not None and row.status is DeliveryStatus.delivered else None

        row = wait_until(delivered, timeout=90)
        assert row.attempts == 2 and row.response_status == 200
        assert len(receiver.got) == 2
        for got in receiver.got:
            assert got.headers["X-Kepu-Delivery"] == row.delivery_id
            assert got.headers["X-Kepu-Event"] == "item.flagged"
            t, v1 = (p.split("=", 1)[1] for p in got.headers["X-Kepu-Signature"].split(","))
            mac = hmac.new(SECRET.encode(), t.encode() + b"." + got.body, hashlib.sha256)
            assert hmac.compare_digest(mac.hexdigest(), v1)
            assert json.loads(got.body)["item"]["id"] == resp.json["id"]
        assert "kepu.deliver_webhook" in worker.log_text()
        assert SECRET not in worker.log_text()
    finally:
        if worker is not None:
            worker.stop()
        server.shutdown()
        server.server_close()

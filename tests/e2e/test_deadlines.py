"""Deadlines under a real worker and beat: expiry, reassignment, escalation, e-mail."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from expert_pool.models import Assignment
from review.audit import AuditEvent
from review.db import db
from review.models import Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, REDIS_URL, Factory, wait_until
from tests.e2e.conftest import Worker, free_port
from tests.expert_pool.test_notifications import Inbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def short_deadline_worker(worker_env: dict[str, str], instance: Any) -> Any:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = dict(
        worker_env,
        KEPU_ACCEPT_WITHIN="4",
        KEPU_DECIDE_WITHIN="4",
        KEPU_SWEEP_EVERY="1",
        KEPU_SMTP_HOST="127.0.0.1",
        KEPU_SMTP_PORT=str(port),
    )
    worker = Worker(env, instance)
    try:
        wait_until(
            lambda: "ready." in worker.log_text() or worker.proc.poll() is not None, timeout=60
        )
        assert worker.proc.poll() is None, worker.log_text()
        yield worker, inbox
    finally:
        worker.stop()
        controller.stop()


def test_unanswered_offers_expire_are_reassigned_and_escalate(
    pg_url: str, instance: Any, monkeypatch: pytest.MonkeyPatch, short_deadline_worker: Any
) -> None:
    worker, inbox = short_deadline_worker
    monkeypatch.setenv("KEPU_DATABASE_URL", pg_url)
    monkeypatch.setenv("KEPU_BROKER_URL", REDIS_URL)
    from review import create_app

    app = create_app({"TESTING": True})
    with app.app_context():
        factory = Factory()
        for i in range(6):
            expert = factory.expert(senior=i == 0)
            expert.email = f"expert{i}@example.org"
        db.session.commit()
        ed = factory.token(factory.user("editor"))
        resp = app.test_client().post(
            "/api/v1/items",
            headers=ed,
            json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
        )
        item_id = resp.json["id"]

        def escalated() -> bool:
            db.session.rollback()
            item = db.session.get(Item, item_id)
            return bool(item and item.needs_admin)

        wait_until(escalated, timeout=120, interval=0.5)
        rows = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
        expired = [a for a in rows if a.state.value == "expired"]
        assert len(expired) >= 3
        assert all(a.ended_reason == "expired: not accepted in time" for a in expired)
        actions = list(
            db.session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject_id == str(item_id))
                .order_by(AuditEvent.seq)
            )
        )
        assert actions.count("assignment.expired") == len(expired)
        assert actions.count("assignment.offered") == len(rows)
        assert "queue.escalated" in actions
        # Nothing was decided automatically.
        assert db.session.get(Item, item_id).state.value == "in_review"  # type: ignore[union-attr]
        wait_until(lambda: len(inbox.messages) >= len(rows), timeout=60)
        subjects = [m["Subject"] for m in inbox.messages]
        assert any("新的审核邀请" in s for s in subjects)
        db.session.remove()
        db.engine.dispose()

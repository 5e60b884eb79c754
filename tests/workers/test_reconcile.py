"""The reconciler brings back a screening lost with a killed worker within about a minute, on
any broker (the embedded one never restores such a message, Redis only after an hour)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from review.db import db, utcnow
from review.models import Item, OutboxMessage
from review.operations import begin_screening
from tests.conftest import GENUINE_BODY, GENUINE_TITLE
from workers import screening
from workers.config import RECONCILE_EVERY, celery_config


def _lost_mid_screening(app: Any, factory: Any, seconds_ago: int) -> Item:
    """An article whose screening began ``seconds_ago`` and whose worker then died."""
    ed = factory.token(factory.user("editor"))
    resp = app.test_client().post(
        "/api/v1/items",
        headers=ed,
        json={"title": GENUINE_TITLE, "body": GENUINE_BODY, "submit": True},
    )
    assert resp.status_code == 201, resp.json
    item = db.session.get(Item, resp.json["id"])
    assert item is not None and item.current_version is not None
    assert begin_screening(item.current_version, max_attempts=3) == "screen"
    item.state_changed_at = utcnow() - timedelta(seconds=seconds_ago)
    for msg in db.session.scalars(select(OutboxMessage)):
        msg.sent_at = utcnow()  # the relay published it; the broker then lost it with the worker
    db.session.commit()
    return item


def _unsent() -> list[OutboxMessage]:
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))))


def test_a_screening_lost_a_minute_ago_is_requeued_and_a_redelivery_is_harmless(
    app: Any, factory: Any
) -> None:
    from workers.tasks import reconcile

    item = _lost_mid_screening(app, factory, seconds_ago=30)
    assert reconcile()["requeued"] == 0  # may still be running
    item.state_changed_at = utcnow() - timedelta(seconds=61)
    db.session.commit()
    assert reconcile()["requeued"] == 1  # the default KEPU_STUCK_AFTER is 60 s
    assert [m.args for m in _unsent()] == [[item.current_version_id]]
    assert reconcile()["requeued"] == 0  # not again before another minute
    version_id = item.current_version_id
    assert version_id is not None
    assert screening.screen_version(version_id) == "cleared"
    assert screening.screen_version(version_id) == "done"  # the original message, redelivered


def test_the_reconciler_runs_often_enough(app: Any) -> None:
    schedule = celery_config(app.config)["beat_schedule"]["reconcile"]["schedule"]
    assert schedule == timedelta(seconds=RECONCILE_EVERY)
    assert RECONCILE_EVERY + app.config["STUCK_AFTER"] <= 75

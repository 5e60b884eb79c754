"""Offers, declines and expiry on the real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from expert_pool.models import Assignment
from expert_pool.operations import Deadlines, sweep_deadlines
from review.db import db, utcnow
from review.models import Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened


def _flagged(app: Any, factory: Any) -> tuple[int, dict[str, str]]:
    ed = factory.token(factory.user("editor"))
    return submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY), ed


def _assignments(item_id: int) -> list[Assignment]:
    return list(
        db.session.scalars(
            select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id)
        )
    )


def test_decline_offers_the_next_expert_with_reason_recorded(app: Any, factory: Any) -> None:
    experts = [factory.expert() for _ in range(3)]
    item_id, ed = _flagged(app, factory)
    first = _assignments(item_id)
    offered_to = {a.expert.user_id for a in first}
    decliner = next(e for e in experts if e.id in offered_to)
    headers = factory.token(decliner)
    aid = next(a.id for a in first if a.expert.user_id == decliner.id)
    c = app.test_client()
    assert c.post(f"/api/v1/assignments/{aid}/decline", headers=headers, json={}).status_code == 400
    resp = c.post(f"/api/v1/assignments/{aid}/decline", headers=headers, json={"reason": "出差"})
    assert resp.status_code == 200 and resp.json["state"] == "declined"
    after = _assignments(item_id)
    assert len(after) == len(first) + 1
    assert after[-1].expert.user_id not in {decliner.id} and after[-1].state.value == "offered"
    detail = c.get(f"/api/v1/items/{item_id}", headers=ed).json
    ended = [a for a in detail["assignments"] if a["id"] == aid][0]
    assert ended["ended_reason"] == "declined: 出差"


def test_expired_offers_are_reassigned_never_dropped(app: Any, factory: Any) -> None:
    factory.expert()
    factory.expert()
    factory.expert()
    item_id, _ = _flagged(app, factory)
    for a in _assignments(item_id):
        a.due_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    expired = sweep_deadlines(deadlines=Deadlines(accept_within=60, decide_within=60))
    db.session.commit()
    rows = _assignments(item_id)
    assert expired >= 1
    assert sum(a.state.value == "expired" for a in rows) == expired
    assert all(a.ended_reason.startswith("expired") for a in rows if a.state.value == "expired")  # type: ignore[union-attr]
    assert any(a.state.value == "offered" for a in rows)
    assert db.session.get(Item, item_id).state.value == "in_review"  # type: ignore[union-attr]

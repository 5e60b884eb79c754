"""Object-level authorisation, separation of duties and mass assignment (RELIABILITY 19).

Hidden objects answer 404 (exactly as missing ones, see test_route_matrix) and leave a
``hidden_object`` line in the security log; fields a caller may not set are ignored (or, for
the expert pool's PATCH, refused with 400); nothing changes and no state event is written.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from expert_pool.models import Assignment, Expert
from review.audit import AuditEvent
from review.db import db
from review.models import Decision, Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened

PASSWORD = "correct-horse-1"


def _events() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def _open(item_id: int) -> list[Assignment]:
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.item_id == item_id, Assignment.state.in_(["offered", "accepted"]))
            .order_by(Assignment.id)
        )
    )


def _probes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kepu.security" and "hidden_object" in r.getMessage()
    ]


def test_another_units_editor_cannot_read_or_change_a_draft(
    app: Any, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kepu.security")
    a, b = factory.user("editor"), factory.user("editor")
    ta, tb = factory.token(a), factory.token(b)
    c = app.test_client()
    draft = c.post("/api/v1/items", headers=ta, json={"title": "甲的草稿", "body": "正文"}).json[
        "id"
    ]
    before = _events()
    assert c.get(f"/api/v1/items/{draft}", headers=tb).status_code == 404
    assert (
        c.post(f"/api/v1/items/{draft}/revise", headers=tb, json={"title": "乙改的"}).status_code
        == 404
    )
    assert c.post(f"/api/v1/items/{draft}/withdraw", headers=tb, json={}).status_code == 404
    web = app.test_client()
    web.post("/login", data={"username": b.username, "password": PASSWORD})
    assert web.get(f"/items/{draft}/edit").status_code == 404
    assert (
        web.post(f"/items/{draft}/edit", data={"title": "乙改的", "body": "x"}).status_code == 404
    )
    assert web.get(f"/items/{draft}/video").status_code == 404
    db.session.expire_all()
    item = db.session.get(Item, draft)
    assert item is not None and item.title == "甲的草稿" and item.state.value == "draft"
    assert _events() == before + 1  # only editor B's sign-in
    assert len(_probes(caplog)) == 6 and all(f"id={draft}" in m for m in _probes(caplog))


def test_an_expert_cannot_decide_on_another_experts_assignment(
    app: Any, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kepu.security")
    e1, e2 = factory.expert(senior=True), factory.expert()
    outsider = factory.expert()
    item_id = submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    theirs = {a.expert.user_id: a for a in _open(item_id)}
    assert len(theirs) == 2  # high risk: two reviewers
    target = next(iter(theirs.values()))
    intruder = next(u for u in (e1, e2, outsider) if u.id != target.expert.user_id)
    before = _events()
    resp = app.test_client().post(
        f"/api/v1/assignments/{target.id}/decision",
        headers=factory.token(intruder),
        json={"decision": "approve", "password": PASSWORD},
    )
    assert resp.status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Decision)) == 0
    assert _events() == before + 1  # the intruder's token issuance only
    assert any(f"id={target.id}" in m for m in _probes(caplog))


def test_nobody_reviews_their_own_units_submission(app: Any, factory: Any) -> None:
    """Separation of duties: an expert of the submitting unit is never offered the item, cannot
    claim it, and an admin cannot hand it to them either."""
    unit = factory.unit("同一单位")
    colleague = factory.expert(unit=unit, senior=True, max_load=10)
    item_id = submit_screened(
        app, factory.token(factory.user("editor", unit=unit)), PSEUDO_TITLE, PSEUDO_BODY
    )
    expert = Expert.for_user(colleague)
    assert expert is not None
    assert all(a.expert_id != expert.id for a in _open(item_id))
    c = app.test_client()
    claimed = c.post("/api/v1/assignments/claim", headers=factory.token(colleague))
    assert claimed.status_code == 200 and claimed.json["assignment"] is None
    admin = factory.token(factory.user("admin"))
    resp = c.post(f"/api/v1/items/{item_id}/assign", headers=admin, json={"expert_id": expert.id})
    assert resp.status_code == 409
    assert all(a.expert_id != expert.id for a in _open(item_id))
    # An auditor never reviews: auditors are not in the pool and may not claim.
    assert (
        c.post(
            "/api/v1/assignments/claim", headers=factory.token(factory.user("auditor"))
        ).status_code
        == 403
    )


def test_a_decided_assignment_cannot_be_decided_again(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    item_id = submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    first = _open(item_id)[0]
    headers = factory.token(first.expert.user)
    c = app.test_client()
    assert c.post(f"/api/v1/assignments/{first.id}/accept", headers=headers).status_code == 200
    ok = c.post(
        f"/api/v1/assignments/{first.id}/decision",
        headers=headers,
        json={"decision": "request_changes", "comment": "需补充依据", "password": PASSWORD},
    )
    assert ok.status_code == 200
    before = _events()
    again = c.post(
        f"/api/v1/assignments/{first.id}/decision",
        headers=headers,
        json={"decision": "approve", "password": PASSWORD, "comment": "改主意了"},
    )
    assert again.status_code == 409
    rows = db.session.scalars(select(Decision).where(Decision.assignment_id == first.id)).all()
    assert [d.decision.value for d in rows] == ["request_changes"]
    assert _events() == before


def test_fields_a_caller_may_not_set_are_ignored(app: Any, factory: Any) -> None:
    ed_a = factory.user("editor")
    ed_b = factory.user("editor")
    ta = factory.token(ed_a)
    c = app.test_client()
    resp = c.post(
        "/api/v1/items",
        headers=ta,
        json={
            "title": "新稿",
            "body": "正文",
            "state": "published",
            "unit_id": ed_b.unit_id,
            "created_by_id": ed_b.id,
            "lock_version": 99,
        },
    )
    assert resp.status_code == 201
    item = db.session.get(Item, resp.json["id"])
    assert item is not None
    assert (item.state.value, item.unit_id, item.created_by_id, item.lock_version) == (
        "draft",
        ed_a.unit_id,
        ed_a.id,
        1,
    )
    resp = c.post(
        f"/api/v1/items/{item.id}/withdraw",
        headers=ta,
        json={"reason": "不发了", "status": "published", "state": "published"},
    )
    assert resp.status_code == 200 and resp.json["state"] == "withdrawn"
    db.session.expire_all()
    assert db.session.get(Item, item.id).state.value == "withdrawn"  # type: ignore[union-attr]


def test_a_decision_cannot_set_who_signed_or_the_items_state(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    editor = factory.user("editor")
    item_id = submit_screened(app, factory.token(editor), PSEUDO_TITLE, PSEUDO_BODY)
    first, second = _open(item_id)[:2]
    token = factory.token(first.expert.user)
    app.test_client().post(f"/api/v1/assignments/{first.id}/accept", headers=token)
    resp = app.test_client().post(
        f"/api/v1/assignments/{first.id}/decision",
        headers=token,
        json={
            "decision": "approve",
            "password": PASSWORD,
            "expert_user_id": second.expert.user_id,
            "item_state": "published",
            "state": "published",
            "signature": "forged",
            "content_sha256": "0" * 64,
        },
    )
    assert resp.status_code == 200
    row = db.session.scalar(select(Decision).where(Decision.assignment_id == first.id))
    assert row is not None and row.expert_user_id == first.expert.user_id
    assert row.signature != "forged" and row.content_sha256 != "0" * 64
    db.session.expire_all()
    assert db.session.get(Item, item_id).state.value == "in_review"  # type: ignore[union-attr]


def test_expert_pool_patch_refuses_unknown_fields(app: Any, factory: Any) -> None:
    user = factory.expert(max_load=5)
    expert = Expert.for_user(user)
    assert expert is not None
    admin = factory.token(factory.user("admin"))
    before = _events()
    resp = app.test_client().patch(
        f"/api/v1/experts/{expert.id}",
        headers=admin,
        json={"max_load": 3, "user_id": 1, "id": 999, "role": "admin"},
    )
    # Refused by the published schema (no additional properties): a field error, named.
    assert resp.status_code == 400 and resp.json["error"] == "invalid_field"
    db.session.expire_all()
    assert db.session.get(Expert, expert.id).max_load == 5  # type: ignore[union-attr]
    assert _events() == before

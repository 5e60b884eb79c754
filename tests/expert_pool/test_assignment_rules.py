"""Issue #14 items 2, 7 and 8: a decision needs an accepted, live assignment inside its
deadline; withdrawing, recalling or superseding a version revokes its open work.

Deadlines are moved into the past in the database (never slept on); the sweep is not run
unless a test says so, as when beat is down.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from expert_pool.models import Assignment, Expert, Notification
from expert_pool.operations import Deadlines, sweep_deadlines
from review.audit import AuditEvent
from review.db import db, utcnow
from review.models import Decision, Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened

PASSWORD = "correct-horse-1"
APPROVE = {"decision": "approve", "password": PASSWORD}


def _rows(item_id: int) -> list[Assignment]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id)
        )
    )


def _open(item_id: int) -> list[Assignment]:
    return [a for a in _rows(item_id) if a.state.value in ("offered", "accepted")]


def _decisions(assignment_id: int) -> int:
    query = select(func.count()).select_from(Decision)
    return db.session.scalar(query.where(Decision.assignment_id == assignment_id)) or 0


def _events(item_id: int, action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_type == "item",
                AuditEvent.subject_id == str(item_id),
                AuditEvent.action == action,
            )
        )
    )


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    resp = c.post("/login", data={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 302
    return c


def _flagged(app: Any, factory: Any, experts: int = 3) -> tuple[int, dict[str, str]]:
    """A high-risk item offered to two of ``experts`` (one senior)."""
    for i in range(experts):
        factory.expert(senior=i == 0)
    editor = factory.token(factory.user("editor"))
    item_id = submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
    assert len(_open(item_id)) == 2
    return item_id, editor


def _overdue(assignment: Assignment) -> None:
    row = db.session.get(Assignment, assignment.id)
    assert row is not None
    row.due_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


# --- item 2: a decision needs an accepted assignment -------------------------------------------


def test_api_decision_on_an_offer_never_accepted_is_409(app: Any, factory: Any) -> None:
    item_id, _ = _flagged(app, factory)
    offer = _open(item_id)[0]
    token = factory.token(offer.expert.user)
    c = app.test_client()
    resp = c.post(f"/api/v1/assignments/{offer.id}/decision", headers=token, json=APPROVE)
    assert resp.status_code == 409, resp.json
    assert resp.json["error"] == "not_accepted" and "接受" in resp.json["message"]
    assert _decisions(offer.id) == 0 and not _events(item_id, "review.decided")
    assert db.session.get(Assignment, offer.id).state.value == "offered"  # type: ignore[union-attr]
    # Accepted, the same decision counts.
    assert c.post(f"/api/v1/assignments/{offer.id}/accept", headers=token).status_code == 200
    resp = c.post(f"/api/v1/assignments/{offer.id}/decision", headers=token, json=APPROVE)
    assert resp.status_code == 200, resp.json
    assert _decisions(offer.id) == 1


def test_page_decision_form_is_inactive_until_accepted(app: Any, factory: Any) -> None:
    item_id, _ = _flagged(app, factory)
    offer = _open(item_id)[0]
    c = _login(app, offer.expert.user)
    page = c.get(f"/assignments/{offer.id}").get_data(as_text=True)
    assert 'id="decision-hint"' in page and "接受任务" in page
    assert 'class="bare" disabled' in page  # the conclusion, password and 签署结论 button
    assert 'class="verdict" disabled' in page
    # A POST anyway (a stale page, a hand-made request) gets the 409 and changes nothing.
    form = {"decision": "approve", "password": PASSWORD}
    resp = c.post(f"/assignments/{offer.id}/decision", data=form)
    assert resp.status_code == 409
    assert "请先接受该审核任务，再签署结论" in resp.get_data(as_text=True)
    assert _decisions(offer.id) == 0
    # After 接受任务 the form is active and the decision is signed.
    assert c.post(f"/assignments/{offer.id}/accept").status_code == 302
    page = c.get(f"/assignments/{offer.id}").get_data(as_text=True)
    assert 'id="decision-hint"' not in page
    assert 'class="bare" disabled' not in page and 'class="verdict" disabled' not in page
    resp = c.post(f"/assignments/{offer.id}/decision", data=form)
    assert resp.status_code == 302 and _decisions(offer.id) == 1


# --- item 8: accept and decide check their own deadline -----------------------------------------


@pytest.mark.parametrize("via", ["api", "page"])
def test_accept_after_its_deadline_is_refused_and_reassigned(
    app: Any, factory: Any, via: str
) -> None:
    item_id, _ = _flagged(app, factory)
    offer = _open(item_id)[0]
    others = {a.expert_id for a in _open(item_id)}
    _overdue(offer)
    if via == "api":
        token = factory.token(offer.expert.user)
        resp = app.test_client().post(f"/api/v1/assignments/{offer.id}/accept", headers=token)
        assert resp.status_code == 409 and resp.json["error"] == "deadline_passed"
        message = resp.json["message"]
    else:
        resp = _login(app, offer.expert.user).post(f"/assignments/{offer.id}/accept")
        assert resp.status_code == 409
        message = resp.get_data(as_text=True)
    assert "已超过接受的期限" in message and "转交其他专家" in message
    rows = _rows(item_id)
    ended = next(a for a in rows if a.id == offer.id)
    assert ended.state.value == "expired" and ended.ended_reason == "expired: not accepted in time"
    # Ended the way the sweep ends it: audited, the expert told, the version offered on.
    assert len(_events(item_id, "assignment.expired")) == 1
    fresh = [a for a in rows if a.state.value == "offered" and a.expert_id not in others]
    assert len(fresh) == 1
    assert db.session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == offer.expert.user_id, Notification.kind == "reassigned")
    )
    # The sweep finds nothing more to do: nothing expired twice, nothing lost.
    assert sweep_deadlines(deadlines=Deadlines(accept_within=3600, decide_within=3600)) == 0
    assert len(_open(item_id)) == 2


@pytest.mark.parametrize("via", ["api", "page"])
def test_decision_after_its_deadline_is_refused_and_reassigned(
    app: Any, factory: Any, via: str
) -> None:
    item_id, _ = _flagged(app, factory)
    offer = _open(item_id)[0]
    others = {a.expert_id for a in _open(item_id)}
    token = factory.token(offer.expert.user)
    c = app.test_client()
    assert c.post(f"/api/v1/assignments/{offer.id}/accept", headers=token).status_code == 200
    _overdue(offer)
    if via == "api":
        resp = c.post(f"/api/v1/assignments/{offer.id}/decision", headers=token, json=APPROVE)
        assert resp.status_code == 409 and resp.json["error"] == "deadline_passed"
        message = resp.json["message"]
    else:
        resp = _login(app, offer.expert.user).post(
            f"/assignments/{offer.id}/decision", data={"decision": "approve", "password": PASSWORD}
        )
        assert resp.status_code == 409
        message = resp.get_data(as_text=True)
    assert "已超过签署结论的期限" in message
    assert _decisions(offer.id) == 0 and not _events(item_id, "review.decided")
    rows = _rows(item_id)
    ended = next(a for a in rows if a.id == offer.id)
    assert ended.state.value == "expired" and ended.ended_reason == "expired: no decision in time"
    assert [a.expert_id for a in rows if a.state.value == "offered" and a.expert_id not in others]
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "in_review"


# --- item 7: withdrawing, recalling, superseding revoke the open work ---------------------------


@pytest.mark.parametrize("via", ["api", "page"])
def test_withdrawing_revokes_offers_and_nothing_is_offered_again(
    app: Any, factory: Any, via: str
) -> None:
    item_id, editor_token = _flagged(app, factory)
    accepted, offered = _open(item_id)
    c = app.test_client()
    accepted_token = factory.token(accepted.expert.user)
    offered_token = factory.token(offered.expert.user)
    assert (
        c.post(f"/api/v1/assignments/{accepted.id}/accept", headers=accepted_token).status_code
        == 200
    )
    if via == "api":
        resp = c.post(
            f"/api/v1/items/{item_id}/withdraw", headers=editor_token, json={"reason": "撤稿"}
        )
        assert resp.status_code == 200 and resp.json["state"] == "withdrawn"
    else:
        item = db.session.get(Item, item_id)
        assert item is not None
        web = _login(app, item.created_by)
        assert web.post(f"/items/{item_id}/withdraw", data={"reason": "撤稿"}).status_code == 302
    rows = _rows(item_id)
    assert [a.state.value for a in rows] == ["revoked", "revoked"]
    assert all(a.ended_reason == "revoked: item withdrawn" for a in rows)
    assert len(_events(item_id, "assignment.revoked")) == 2
    for a in rows:
        assert db.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == a.expert.user_id, Notification.kind == "revoked")
        )
    # Neither accept nor decide on a revoked row.
    refused = c.post(f"/api/v1/assignments/{offered.id}/accept", headers=offered_token)
    assert refused.status_code == 409
    refused = c.post(
        f"/api/v1/assignments/{accepted.id}/decision", headers=accepted_token, json=APPROVE
    )
    assert refused.status_code == 409 and _decisions(accepted.id) == 0
    # The expert who only had an offer can no longer read the text; the one who accepted can.
    assert c.get(f"/api/v1/items/{item_id}", headers=offered_token).status_code == 404
    assert _login(app, offered.expert.user).get(f"/assignments/{offered.id}").status_code == 404
    assert _login(app, offered.expert.user).get(f"/items/{item_id}").status_code == 404
    assert c.get(f"/api/v1/items/{item_id}", headers=accepted_token).status_code == 200
    # Deadlines pass, the sweep runs, a new expert joins: the withdrawn text is offered to nobody.
    for a in rows:
        _overdue(a)
    newcomer = factory.expert(senior=True)
    assert sweep_deadlines(deadlines=Deadlines(accept_within=3600, decide_within=3600)) == 0
    db.session.commit()
    assert len(_rows(item_id)) == 2
    assert c.post("/api/v1/assignments/claim", headers=factory.token(newcomer)).json == {
        "assignment": None,
        "message": "暂无可认领的稿件",
    }
    assert c.get(f"/api/v1/items/{item_id}", headers=factory.token(newcomer)).status_code == 404


def test_the_sweep_revokes_offers_of_a_withdrawn_item_it_finds_open(app: Any, factory: Any) -> None:
    """Offers left open on a withdrawn item (before this fix, or by any other path) are revoked
    by the sweep once their deadline passes — never expired and offered to somebody else."""
    item_id, _ = _flagged(app, factory)
    item = db.session.get(Item, item_id)
    assert item is not None
    from review.operations import withdraw_item

    withdraw_item(item, actor=item.created_by)  # the review core alone: offers stay open
    db.session.commit()
    for a in _open(item_id):
        _overdue(a)
    assert sweep_deadlines(deadlines=Deadlines(accept_within=3600, decide_within=3600)) == 0
    db.session.commit()
    assert [a.state.value for a in _rows(item_id)] == ["revoked", "revoked"]


def _stray_arbitration(app: Any, factory: Any, outcome: str) -> tuple[int, Any, dict[str, str]]:
    """Reviewers disagree; the system offers arbitration to one senior and an admin hands it to a
    second one too. The first arbiter decides ``outcome``: the second offer is still open."""
    item_id, editor = _flagged(app, factory, experts=2)
    first, second = _open(item_id)
    arbiters = [factory.expert(senior=True), factory.expert(senior=True)]
    c = app.test_client()
    for a, kind in ((first, "approve"), (second, "reject")):
        token = factory.token(a.expert.user)
        assert c.post(f"/api/v1/assignments/{a.id}/accept", headers=token).status_code == 200
        body = {**APPROVE, "decision": kind, "comment": "意见", "references": ["依据"]}
        resp = c.post(f"/api/v1/assignments/{a.id}/decision", headers=token, json=body)
        assert resp.status_code == 200, resp.json
    (arbitration,) = _open(item_id)
    assert arbitration.kind == "arbitration"
    other = next(u for u in arbiters if u.id != arbitration.expert.user_id)
    expert = Expert.for_user(other)
    assert expert is not None
    admin = factory.token(factory.user("admin"))
    resp = c.post(f"/api/v1/items/{item_id}/assign", headers=admin, json={"expert_id": expert.id})
    assert resp.status_code == 201, resp.json
    stray = db.session.get(Assignment, resp.json["id"])
    token = factory.token(arbitration.expert.user)
    assert c.post(f"/api/v1/assignments/{arbitration.id}/accept", headers=token).status_code == 200
    body = {**APPROVE, "decision": outcome, "comment": "意见", "references": ["依据"]}
    resp = c.post(f"/api/v1/assignments/{arbitration.id}/decision", headers=token, json=body)
    assert resp.status_code == 200 and resp.json["item_state"] != "in_review", resp.json
    assert stray is not None and stray.state.value == "offered"
    return item_id, stray, editor


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_new_version_revokes_open_work_on_the_one_it_supersedes(
    app: Any, factory: Any, via: str
) -> None:
    item_id, stray, editor = _stray_arbitration(app, factory, "request_changes")
    if via == "api":
        resp = app.test_client().post(
            f"/api/v1/items/{item_id}/revise", headers=editor, json={"body": "改写后的正文。"}
        )
        assert resp.status_code == 200, resp.json
    else:
        item = db.session.get(Item, item_id)
        assert item is not None
        web = _login(app, item.created_by)
        resp = web.post(f"/items/{item_id}/edit", data={"title": item.title, "body": "改写。"})
        assert resp.status_code == 302
    db.session.expire_all()
    row = db.session.get(Assignment, stray.id)
    assert row is not None and row.state.value == "revoked"
    assert row.ended_reason == "revoked: superseded by version 2"
    assert [e.data["assignment"] for e in _events(item_id, "assignment.revoked")] == [stray.id]
    token = factory.token(row.expert.user)
    resp = app.test_client().post(f"/api/v1/assignments/{stray.id}/accept", headers=token)
    assert resp.status_code == 409


def test_recalling_a_publication_revokes_open_work(app: Any, factory: Any) -> None:
    item_id, stray, editor = _stray_arbitration(app, factory, "approve")
    c = app.test_client()
    item = c.get(f"/api/v1/items/{item_id}", headers=editor).json
    resp = c.post(
        f"/api/v1/items/{item_id}/publish",
        headers=editor,
        json={"content_sha256": item["version"]["content_sha256"]},
    )
    assert resp.status_code == 200, resp.json
    auditor = factory.token(factory.user("auditor"))
    resp = c.post(f"/api/v1/items/{item_id}/recall", headers=auditor, json={"reason": "有误"})
    assert resp.status_code == 200, resp.json
    row = db.session.get(Assignment, stray.id)
    db.session.refresh(row)
    assert row is not None and row.state.value == "revoked"
    assert row.ended_reason == "revoked: publication recalled"

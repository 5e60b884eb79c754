"""Agreement, arbitration, appeals, escalation, reminders and pull-mode claims."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from expert_pool.models import Assignment, Expert, Notification
from expert_pool.operations import Deadlines, claim_next, combine, sweep_deadlines
from review.audit import AuditEvent
from review.db import db, utcnow
from review.models import DecisionKind, Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened

DEADLINES = Deadlines(accept_within=3600, decide_within=7200)
A, R, C = DecisionKind.approve, DecisionKind.reject, DecisionKind.request_changes


@pytest.mark.parametrize(
    ("kinds", "outcome"),
    [
        ([A, A], A),
        ([R, R], R),
        ([C, A], C),
        ([A, C], C),
        ([C, R], C),
        ([A, R], None),
        ([R, A], None),
        ([A], A),
    ],
)
def test_combine(kinds: list[DecisionKind], outcome: DecisionKind | None) -> None:
    assert combine(kinds) == outcome


def _flagged(app: Any, factory: Any, editor: Any = None) -> tuple[int, dict[str, str]]:
    ed = factory.token(editor or factory.user("editor"))
    return submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY), ed


def _open(item_id: int) -> list[Assignment]:
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.item_id == item_id, Assignment.state.in_(["offered", "accepted"]))
            .order_by(Assignment.id)
        )
    )


def _decide(app: Any, factory: Any, assignment: Assignment, decision: str) -> Any:
    headers = factory.token(assignment.expert.user)
    body: dict[str, Any] = {"decision": decision, "password": "correct-horse-1"}
    if decision != "approve":
        body.update(comment="理由", references=["参考文献"])
    if assignment.state.value == "offered":  # a decision needs an accepted assignment
        accepted = app.test_client().post(
            f"/api/v1/assignments/{assignment.id}/accept", headers=headers
        )
        assert accepted.status_code == 200, accepted.json
    resp = app.test_client().post(
        f"/api/v1/assignments/{assignment.id}/decision", headers=headers, json=body
    )
    assert resp.status_code == 200, resp.json
    return resp.json


def _actions(item_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject_type == "item", AuditEvent.subject_id == str(item_id))
            .order_by(AuditEvent.seq)
        )
    )


def test_disagreement_goes_to_a_senior_not_yet_involved(app: Any, factory: Any) -> None:
    factory.expert(senior=True, username="senior1")
    factory.expert(username="junior1")
    item_id, _ = _flagged(app, factory)
    first, second = _open(item_id)
    factory.expert(senior=True, username="arbiter")  # joins after the first offers
    _decide(app, factory, first, "approve")
    state = _decide(app, factory, second, "reject")["item_state"]
    assert state == "in_review"
    arbitration = _open(item_id)
    assert len(arbitration) == 1 and arbitration[0].kind == "arbitration"
    assert arbitration[0].expert.user.username == "arbiter"
    assert _decide(app, factory, arbitration[0], "reject")["item_state"] == "rejected"
    actions = _actions(item_id)
    assert "review.disagreement" in actions and actions[-1] in ("item.reject",)
    assert actions.count("review.decided") == 3


def test_arbitration_without_a_free_senior_needs_an_admin(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    item_id, _ = _flagged(app, factory)
    first, second = _open(item_id)
    _decide(app, factory, first, "approve")
    _decide(app, factory, second, "reject")
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "in_review" and item.needs_admin
    assert "queue.escalated" in _actions(item_id)


def test_appeal_once_with_different_experts(app: Any, factory: Any) -> None:
    first_round = {factory.expert(senior=True).id, factory.expert().id}
    item_id, ed = _flagged(app, factory)
    for a in _open(item_id):
        _decide(app, factory, a, "reject")
    second_round = {factory.expert(senior=True).id, factory.expert().id}
    c = app.test_client()
    assert c.post(f"/api/v1/items/{item_id}/appeal", headers=ed, json={}).status_code == 400
    resp = c.post(f"/api/v1/items/{item_id}/appeal", headers=ed, json={"reason": "已补充权威来源"})
    assert resp.status_code == 200 and resp.json["state"] == "in_review"
    offered = {u.id for u in (a.expert.user for a in _open(item_id))}
    assert offered == second_round and not offered & first_round
    assert all(a.round == 2 for a in _open(item_id))
    for a in _open(item_id):
        _decide(app, factory, a, "reject")
    resp = c.post(f"/api/v1/items/{item_id}/appeal", headers=ed, json={"reason": "再次申诉"})
    assert resp.status_code == 409 and resp.json["error"] == "appeal_used"


def test_three_failed_offers_escalate_to_an_admin(app: Any, factory: Any) -> None:
    admin = factory.user("admin")
    for _ in range(6):
        factory.expert()
    item_id, _ = _flagged(app, factory)
    for _ in range(3):
        a = _open(item_id)[0]
        headers = factory.token(a.expert.user)
        resp = app.test_client().post(
            f"/api/v1/assignments/{a.id}/decline", headers=headers, json={"reason": "没有时间"}
        )
        assert resp.status_code == 200
    item = db.session.get(Item, item_id)
    assert item is not None and item.needs_admin
    assert "queue.escalated" in _actions(item_id)
    assert db.session.scalar(
        select(func.count()).select_from(Notification).where(Notification.user_id == admin.id)
    )
    # The admin hands it to an expert who was not asked yet; the queue moves again.
    asked = {
        a.expert_id
        for a in db.session.scalars(select(Assignment).where(Assignment.item_id == item_id))
    }
    spare = next(e for e in db.session.scalars(select(Expert)) if e.id not in asked)
    resp = app.test_client().post(
        f"/api/v1/items/{item_id}/assign",
        headers=factory.token(admin),
        json={"expert_id": spare.id},
    )
    assert resp.status_code == 201, resp.json
    assert not db.session.get(Item, item_id).needs_admin  # type: ignore[union-attr]


def test_reminder_then_expiry(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    factory.expert()
    item_id, _ = _flagged(app, factory)
    a = _open(item_id)[0]
    a.offered_at = utcnow() - timedelta(hours=1)
    a.due_at = utcnow() + timedelta(minutes=10)
    db.session.commit()
    assert sweep_deadlines(deadlines=DEADLINES) == 0
    db.session.commit()
    assert a.reminded_at is not None
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == a.expert.user_id, Notification.kind == "reminder")
        )
        == 1
    )
    assert sweep_deadlines(deadlines=DEADLINES) == 0  # reminded once only
    assert "assignment.reminded" in _actions(item_id)


def test_high_risk_deadlines_are_shorter() -> None:
    assert DEADLINES.accept("critical") < DEADLINES.accept("high") < DEADLINES.accept("medium")
    assert DEADLINES.decide("low") == timedelta(seconds=7200)


def test_refusal_reasons_are_recorded_for_admins(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    same_unit = factory.expert(unit=editor.unit)
    factory.expert(senior=True)
    factory.expert()
    _flagged(app, factory, editor)
    admin = factory.user("admin")
    queue = app.test_client().get("/api/v1/queue", headers=factory.token(admin)).json
    expert_id = str(Expert.for_user(same_unit).id)  # type: ignore[union-attr]
    refused = {k: v for item in queue["items"] for k, v in item["refused"].items()}
    assert refused[expert_id]["code"] == "conflict_unit"
    assert refused[expert_id]["label"].startswith("利益冲突")


def test_concurrent_claims_never_double_assign(app: Any, factory: Any) -> None:
    editors = [factory.user("editor") for _ in range(3)]
    ids = [_flagged(app, factory, editors[i % 3])[0] for i in range(10)]  # nobody eligible yet
    assert all(db.session.get(Item, i).needs_admin for i in ids)  # type: ignore[union-attr]
    user_ids = [factory.expert(senior=i < 2, max_load=10).id for i in range(8)]
    user_cls = type(factory.user("auditor"))
    db.session.commit()  # end this thread's transaction: SQLite writers queue on one lock
    barrier = threading.Barrier(len(user_ids))
    errors: list[BaseException] = []

    def worker(user_id: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                user = db.session.get(user_cls, user_id)
                while claim_next(user, deadlines=DEADLINES) is not None:
                    db.session.commit()
                db.session.commit()
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(uid,)) for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    db.session.expire_all()
    for item_id in ids:
        rows = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
        item = db.session.get(Item, item_id)
        assert item is not None
        assert len(rows) <= item.reviewers_needed
        assert len({a.expert_id for a in rows}) == len(rows)  # nobody twice on one version
    # A claimer that lost a race moves on; one more pass fills any slot left, never more.
    for uid in user_ids:
        while claim_next(db.session.get(user_cls, uid), deadlines=DEADLINES) is not None:  # type: ignore[arg-type]
            db.session.commit()
    needed = sum(db.session.get(Item, i).reviewers_needed for i in ids)  # type: ignore[union-attr]
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == needed == 20
    assert all(db.session.get(Item, i).state.value == "in_review" for i in ids)  # type: ignore[union-attr]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_check_catches_a_naive_claim(app: Any, factory: Any) -> None:
    """The control run of the test above (RELIABILITY.md 30a): the same threads with a claim
    that reads the version's reviewers and then writes — no row lock, no conditional update —
    put more reviewers on some version than it needs. So the check above can fail. PostgreSQL
    only: SQLite takes its write lock at BEGIN, so even the naive claim runs one at a time."""
    import time

    from expert_pool import operations as pool_ops
    from expert_pool.models import OPEN_STATES, AssignmentState

    editors = [factory.user("editor") for _ in range(3)]
    ids = [_flagged(app, factory, editors[i % 3])[0] for i in range(6)]
    user_ids = [factory.expert(senior=True, max_load=10).id for _ in range(8)]
    user_cls = type(factory.user("auditor"))
    db.session.commit()
    barrier = threading.Barrier(len(user_ids))

    def naive_claim(user: Any) -> Any:
        expert = Expert.for_user(user)
        for item in pool_ops.waiting_items():
            version_id = item.current_version_id
            round_ = pool_ops.current_round(item)
            active = [
                a
                for a in pool_ops._round_assignments(item, version_id, round_, pool_ops.REVIEW)
                if a.state in (*OPEN_STATES, AssignmentState.completed)
            ]
            if len(active) >= item.reviewers_needed or any(
                a.expert_id == expert.id for a in active
            ):
                continue
            time.sleep(0.05)  # the window between reading and writing that a lock closes
            return pool_ops._offer(
                item,
                expert,
                round_=round_,
                kind=pool_ops.REVIEW,
                risk="high",
                deadlines=DEADLINES,
                actor=user,
                accepted=True,
            )
        return None

    def worker(user_id: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                user = db.session.get(user_cls, user_id)
                for _ in range(len(ids)):
                    try:
                        if naive_claim(user) is None:
                            break
                        db.session.commit()
                    except Exception:  # a lost race elsewhere (state moved on): try the next
                        db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(uid,)) for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    db.session.expire_all()
    over = [
        i
        for i in ids
        if db.session.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.item_id == i)
        )
        > db.session.get(Item, i).reviewers_needed  # type: ignore[union-attr,operator]
    ]
    assert over, "the naive claim should have put too many reviewers on some version"


def test_auditor_recalls_and_requests_rereview(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    auditor = factory.token(factory.user("auditor"))
    item_id, ed = _flagged(app, factory)
    for a in _open(item_id):
        _decide(app, factory, a, "approve")
    c = app.test_client()
    assert c.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    # Editors may not recall; reasons are required.
    assert (
        c.post(f"/api/v1/items/{item_id}/recall", headers=ed, json={"reason": "x"}).status_code
        == 403
    )
    assert c.post(f"/api/v1/items/{item_id}/recall", headers=auditor, json={}).status_code == 400
    resp = c.post(
        f"/api/v1/items/{item_id}/recall", headers=auditor, json={"reason": "发现数据有误"}
    )
    assert resp.status_code == 200 and resp.json["state"] == "recalled"
    notes = c.get("/api/v1/notifications", headers=ed).json
    assert any("下架" in n["title"] and n["body"] == "发现数据有误" for n in notes)
    # A re-review goes to experts who were not involved.
    fresh = {factory.expert(senior=True).id, factory.expert().id}
    resp = c.post(f"/api/v1/items/{item_id}/rereview", headers=auditor, json={"reason": "请复核"})
    assert resp.status_code == 200 and resp.json["state"] == "in_review"
    assert {a.expert.user_id for a in _open(item_id)} == fresh
    assert {"item.recall", "item.rereview"} <= set(_actions(item_id))
    # The new round approves and the editor can publish the same version again.
    for a in _open(item_id):
        _decide(app, factory, a, "approve")
    resp = c.post(f"/api/v1/items/{item_id}/publish", headers=ed)
    assert resp.status_code == 200, resp.json


def test_rereview_of_a_rejection(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    admin = factory.token(factory.user("admin"))
    item_id, _ = _flagged(app, factory)
    for a in _open(item_id):
        _decide(app, factory, a, "reject")
    factory.expert(senior=True)
    factory.expert()
    resp = app.test_client().post(
        f"/api/v1/items/{item_id}/rereview", headers=admin, json={"reason": "抽检"}
    )
    assert resp.status_code == 200 and resp.json["state"] == "in_review"
    assert all(a.round == 2 for a in _open(item_id))

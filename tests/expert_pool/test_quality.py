"""质检: decided versions drawn at random are re-reviewed by uninvolved experts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from expert_pool.models import Assignment, QualityCheck
from review.db import db
from review.models import Item
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened


def _decide(app: Any, factory: Any, assignment: Assignment, kind: str) -> Any:
    body: dict[str, Any] = {"decision": kind, "password": "correct-horse-1"}
    if kind != "approve":
        body.update(comment="意见", references=["依据"])
    headers = factory.token(assignment.expert.user)
    if assignment.state.value == "offered":  # a decision needs an accepted assignment
        app.test_client().post(f"/api/v1/assignments/{assignment.id}/accept", headers=headers)
    return app.test_client().post(
        f"/api/v1/assignments/{assignment.id}/decision", headers=headers, json=body
    )


def test_sample_rereview_and_overturn_rate(app: Any, factory: Any) -> None:
    first = [factory.expert(senior=True), factory.expert()]
    ed = factory.token(factory.user("editor"))
    auditor = factory.token(factory.user("auditor"))
    reviewed = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for a in db.session.scalars(select(Assignment).where(Assignment.item_id == reviewed)).all():
        assert _decide(app, factory, a, "approve").status_code == 200
    cleared = submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    assert db.session.get(Item, cleared).state.value == "cleared"  # type: ignore[union-attr]
    qc_experts = {factory.expert().id, factory.expert().id}
    c = app.test_client()
    assert c.post("/api/v1/quality/samples", headers=ed, json={"size": 2}).status_code == 403
    assert c.post("/api/v1/quality/samples", headers=auditor, json={"size": 0}).status_code == 400
    resp = c.post("/api/v1/quality/samples", headers=auditor, json={"size": 5})
    assert resp.status_code == 201, resp.json
    sample = resp.json
    assert sample["size"] == 2 and {ch["item_id"] for ch in sample["checks"]} == {reviewed, cleared}
    checks = db.session.scalars(select(QualityCheck)).all()
    qc_assignments = [db.session.get(Assignment, ch.assignment_id) for ch in checks]
    # Re-reviewers were never involved with the item.
    assert all(a is not None and a.expert.user_id in qc_experts for a in qc_assignments)
    assert all(a.expert.user_id not in {u.id for u in first} for a in qc_assignments if a)
    states = {i: db.session.get(Item, i).state.value for i in (reviewed, cleared)}  # type: ignore[union-attr]
    for a in qc_assignments:
        assert a is not None
        kind = "reject" if a.item_id == reviewed else "approve"
        assert _decide(app, factory, a, kind).status_code == 200
    # The workflow state of the items did not move.
    assert {i: db.session.get(Item, i).state.value for i in (reviewed, cleared)} == states  # type: ignore[union-attr]
    report = c.get(f"/api/v1/quality/samples/{sample['id']}", headers=auditor).json
    assert report["decided"] == 2 and report["overturned"] == 1 and report["overturn_rate"] == 0.5
    assert c.get("/api/v1/quality/samples", headers=auditor).json[0]["id"] == sample["id"]
    dash = c.get("/api/v1/dashboard", headers=auditor).json
    assert sum(dash["decisions"].values()) == 2  # 质检 verdicts are reported separately


def test_empty_period_draws_nothing(app: Any, factory: Any) -> None:
    auditor = factory.token(factory.user("auditor"))
    resp = app.test_client().post(
        "/api/v1/quality/samples", headers=auditor, json={"size": 3, "domain": "海洋"}
    )
    assert resp.status_code == 201 and resp.json["size"] == 0 and resp.json["overturn_rate"] is None

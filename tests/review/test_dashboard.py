"""Dashboard figures agree with counts computed directly from the tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select

from expert_pool.models import Assignment
from review.dashboard import percentile
from review.db import db, utcnow
from review.models import Decision, Finding, ScreeningReport, Version
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened


def _decide_all(app: Any, factory: Any, item_id: int, decisions: list[str], verdict: str) -> None:
    rows = db.session.scalars(
        select(Assignment)
        .where(Assignment.item_id == item_id, Assignment.state.in_(["offered", "accepted"]))
        .order_by(Assignment.id)
    ).all()
    version_findings = [
        f.id
        for f in db.session.scalars(select(Finding).where(Finding.version_id == rows[0].version_id))
    ]
    for a, kind in zip(rows, decisions, strict=False):
        body = {
            "decision": kind,
            "password": "correct-horse-1",
            "finding_verdicts": {str(fid): verdict for fid in version_findings},
        }
        if kind != "approve":
            body.update(comment="意见", references=["依据"])
        token = factory.token(a.expert.user)
        app.test_client().post(f"/api/v1/assignments/{a.id}/accept", headers=token)
        resp = app.test_client().post(
            f"/api/v1/assignments/{a.id}/decision", headers=token, json=body
        )
        assert resp.status_code == 200, resp.json


def test_figures_match_the_tables(app: Any, factory: Any) -> None:
    for i in range(4):
        factory.expert(senior=i < 2)
    ed = factory.token(factory.user("editor"))
    auditor = factory.token(factory.user("auditor"))
    agreed = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    _decide_all(app, factory, agreed, ["approve", "approve"], "false_positive")
    split = submit_screened(app, ed, PSEUDO_TITLE + "（二）", PSEUDO_BODY)
    _decide_all(app, factory, split, ["reject", "request_changes"], "confirmed")
    submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    submit_screened(app, ed, PSEUDO_TITLE + "（三）", PSEUDO_BODY)  # waits for reviewers

    data = app.test_client().get("/api/v1/dashboard", headers=auditor).json
    assert data["volume"]["versions"] == db.session.scalar(
        select(func.count()).select_from(Version)
    )
    reports = db.session.scalars(select(ScreeningReport)).all()
    assert data["screening"]["screened"] == len(reports)
    assert data["screening"]["flagged"] == sum(r.is_flagged for r in reports)
    assert data["screening"]["flag_rate"] == round(
        sum(r.is_flagged for r in reports) / len(reports), 4
    )
    kinds = [d.decision.value for d in db.session.scalars(select(Decision))]
    assert data["decisions"] == {k: kinds.count(k) for k in set(kinds)}
    assert data["agreement"] == {"double_reviewed": 2, "agreed": 1, "rate": 0.5}
    assert data["turnaround_hours"]["n"] == 2
    verdicts = [
        v for d in db.session.scalars(select(Decision)) for v in d.finding_verdicts.values()
    ]
    assert sum(r["confirmed"] for r in data["rules"]) == verdicts.count("confirmed")
    assert sum(r["false_positive"] for r in data["rules"]) == verdicts.count("false_positive")
    assert sum(r["findings"] for r in data["rules"]) == db.session.scalar(
        select(func.count()).select_from(Finding)
    )
    assert sum(r["decided"] for r in data["by_expert"]) == len(kinds)
    assert sum(r["versions"] for r in data["by_unit"]) == data["volume"]["versions"]
    # A window that ends before everything holds nothing; domain filters narrow.
    past = quote((utcnow() - timedelta(days=1)).isoformat())
    empty = app.test_client().get(f"/api/v1/dashboard?to={past}", headers=auditor).json
    assert empty["volume"]["versions"] == 0 and empty["screening"]["flag_rate"] is None
    health = app.test_client().get("/api/v1/dashboard?domain=医学健康", headers=auditor).json
    assert 0 < health["volume"]["versions"] <= data["volume"]["versions"]
    assert app.test_client().get("/api/v1/dashboard", headers=ed).status_code == 403


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.9) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(range(1, 11), 0.9) == 9.1


def test_overdue_by_domain_and_expert(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    ed = factory.token(factory.user("editor"))
    auditor = factory.token(factory.user("auditor"))
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    rows = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
    rows[0].due_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    data = app.test_client().get("/api/v1/dashboard", headers=auditor).json
    assert data["overdue"] == {"assignments": 1, "items": 1}
    assert sum(r["overdue"] for r in data["by_expert"]) == 1
    assert any(r["overdue"] == 1 for r in data["by_domain"])

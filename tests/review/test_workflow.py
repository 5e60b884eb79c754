"""The whole path through operations and the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from expert_pool.models import Assignment
from review.audit import iter_exported_events, verify_events
from review.db import db
from review.models import Item, OutboxMessage, ScreeningReport, Version
from review.signing import verify_signature
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE
from workers import screening


def _screen_pending() -> list[str]:
    """Run every queued screening message the way the worker would (the broker path is in e2e)."""
    results = []
    for msg in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    ).all():
        if msg.task == "kepu.screen_version":
            msg.sent_at = msg.created_at
            db.session.commit()
            results.append(screening.screen_version(msg.args[0]))
    return results


def _submit(client: Any, headers: dict[str, str], title: str, body: str) -> int:
    resp = client.post(
        "/api/v1/items",
        json={"kind": "article", "title": title, "body": body, "submit": True},
        headers=headers,
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["state"] == "submitted"
    return int(resp.json["id"])


def _reviewers(factory: Any, n: int = 2) -> list[dict[str, str]]:
    """Tokens of ``n`` verified experts in 医学健康 (the first is senior)."""
    return [factory.token(factory.expert(senior=i == 0)) for i in range(n)]


def _decide(client: Any, headers: dict[str, str], decision: str, **extra: Any) -> Any:
    row = [
        a
        for a in client.get("/api/v1/assignments", headers=headers).json
        if a["state"] in ("offered", "accepted")
    ][0]
    aid = row["id"]
    if row["state"] == "offered":  # a decision needs an accepted assignment
        assert client.post(f"/api/v1/assignments/{aid}/accept", headers=headers).status_code == 200
    body = {"decision": decision, "password": "correct-horse-1", **extra}
    return client.post(f"/api/v1/assignments/{aid}/decision", headers=headers, json=body)


def test_pseudo_article_goes_through_review_to_publication(app: Any, factory: Any) -> None:
    client = app.test_client()
    editor = factory.user("editor")
    ed = factory.token(editor)
    ex, ex2 = _reviewers(factory)

    item_id = _submit(client, ed, PSEUDO_TITLE, PSEUDO_BODY)
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert _screen_pending() == ["flagged"]

    detail = client.get(f"/api/v1/items/{item_id}", headers=ed).json
    assert detail["state"] == "in_review"
    assert detail["screening"]["risk_level"] in ("high", "critical")
    findings = detail["screening"]["findings"]
    assert findings
    for f in findings:  # offsets point into the original text
        source = PSEUDO_TITLE if f["segment"] == "title" else PSEUDO_BODY
        assert source[f["start"] : f["end"]] == f["text"]
    assert len(detail["assignments"]) == 2

    # Publishing a version under review is refused.
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 409

    assignments = client.get("/api/v1/assignments", headers=ex).json
    assert [a["item_id"] for a in assignments] == [item_id]
    aid = assignments[0]["id"]
    assert client.post(f"/api/v1/assignments/{aid}/accept", headers=ex).status_code == 200

    bad = client.post(
        f"/api/v1/assignments/{aid}/decision",
        headers=ex,
        json={"decision": "approve", "password": "wrong-password"},
    )
    assert bad.status_code == 403 and bad.json["error"] == "password_required"

    verdicts = {str(findings[0]["id"]): "confirmed"}
    resp = _decide(
        client,
        ex,
        "request_changes",
        comment="夸大疗效，请删除“根治”“100%有效”等表述。",
        finding_verdicts=verdicts,
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["item_state"] == "in_review"  # the second reviewer has not decided yet
    resp = _decide(client, ex2, "approve")
    assert resp.status_code == 200 and resp.json["item_state"] == "changes_requested"

    # The editor revises; a new version is screened again. The rules clear it, but an expert
    # asked for changes: it goes back to that expert and waits for their signature.
    resp = client.post(
        f"/api/v1/items/{item_id}/revise",
        headers=ed,
        json={"title": GENUINE_TITLE, "body": GENUINE_BODY},
    )
    assert resp.status_code == 200 and resp.json["state"] == "submitted"
    assert resp.json["version"]["number"] == 2
    assert _screen_pending() == ["flagged"]

    detail = client.get(f"/api/v1/items/{item_id}", headers=ed).json
    assert detail["state"] == "in_review" and detail["screening"]["findings"] == []
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 409
    resp = _decide(client, ex, "approve")
    assert resp.status_code == 200 and resp.json["item_state"] == "approved"
    resp = client.post(
        f"/api/v1/items/{item_id}/publish",
        headers=ed,
        json={"content_sha256": detail["version"]["content_sha256"]},
    )
    assert resp.status_code == 200, resp.json
    receipt = resp.json["receipt"]
    assert receipt["content_sha256"] == detail["version"]["content_sha256"]
    assert receipt["version"] == 2

    public = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json["public_key"]
    payload = {k: v for k, v in receipt.items() if k != "signature"}
    assert verify_signature(public, payload, receipt["signature"])
    assert not verify_signature(
        public, {**payload, "content_sha256": "0" * 64}, receipt["signature"]
    )

    # Publishing twice is refused; the ledger is intact and tells the story.
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 409
    assert verify_events(iter_exported_events()).ok
    actions = [e["action"] for e in iter_exported_events() if e["subject"] == f"item:{item_id}"]
    for expected in (
        "item.created",
        "item.submit",
        "item.start_screening",
        "item.flag",
        "queue.selection",
        "assignment.offered",
        "item.assign",
        "assignment.accepted",
        "review.decided",
        "item.request_changes",
        "item.revise",
        "item.approve",
        "item.publish",
        "publication.issued",
    ):
        assert expected in actions, expected


def test_approval_binds_to_the_version_hash(app: Any, factory: Any) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    reviewers = _reviewers(factory)
    item_id = _submit(client, ed, PSEUDO_TITLE, PSEUDO_BODY)
    _screen_pending()
    states = [_decide(client, h, "approve").json["item_state"] for h in reviewers]
    assert states == ["in_review", "approved"]
    # An edit after approval invalidates it: the new version is screened again.
    resp = client.post(
        f"/api/v1/items/{item_id}/revise",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY + "（修订）"},
    )
    assert resp.json["state"] == "submitted"
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 409
    _screen_pending()
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "in_review"
    # The revision goes back to the same experts.
    versions = {
        a["version"] for h in reviewers for a in client.get("/api/v1/assignments", headers=h).json
    }
    assert versions == {1, 2}


def test_reject_needs_comment_and_reference(app: Any, factory: Any) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    ex, ex2 = _reviewers(factory)
    _submit(client, ed, PSEUDO_TITLE, PSEUDO_BODY)
    _screen_pending()
    resp = _decide(client, ex, "reject")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_input"
    resp = _decide(client, ex, "reject", comment="伪科学")
    assert resp.status_code == 400 and "参考" in resp.json["message"]
    refs = ["《中国居民膳食指南（2022）》"]
    assert _decide(client, ex, "reject", comment="伪科学", references=refs).status_code == 200
    resp = _decide(client, ex2, "reject", comment="同意驳回", references=refs)
    assert resp.status_code == 200 and resp.json["item_state"] == "rejected"


def test_redelivered_screening_creates_no_second_report(app: Any, factory: Any) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    factory.expert()
    item_id = _submit(client, ed, GENUINE_TITLE, GENUINE_BODY)
    version_id = db.session.get(Item, item_id).current_version_id  # type: ignore[union-attr]
    assert screening.screen_version(version_id) == "cleared"
    assert screening.screen_version(version_id) == "done"
    assert screening.screen_version(version_id) == "done"
    assert db.session.scalar(select(func.count()).select_from(ScreeningReport)) == 1
    assert db.session.get(Item, item_id).state.value == "cleared"  # type: ignore[union-attr]


def test_screening_that_keeps_crashing_goes_to_experts(app: Any, factory: Any) -> None:
    from review.operations import begin_screening

    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    factory.expert()
    factory.expert()
    item_id = _submit(client, ed, GENUINE_TITLE, GENUINE_BODY)
    version = db.session.get(Item, item_id).current_version  # type: ignore[union-attr]
    # Three attempts that died mid-way (the counter is committed at the start of each).
    for _ in range(3):
        assert begin_screening(version, max_attempts=3) == "screen"
        db.session.commit()
    assert screening.screen_version(version.id) == "failed"
    item = db.session.get(Item, item_id)
    assert item.screening_failed and item.state.value == "in_review"  # type: ignore[union-attr]
    # A failed screening counts as high risk: two experts read it in full.
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 2


def test_stuck_versions_are_requeued(app: Any, factory: Any) -> None:
    from review.operations import requeue_stuck

    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    item_id = _submit(client, ed, GENUINE_TITLE, GENUINE_BODY)
    # The broker lost the message: the outbox row was sent, nothing ever screened it.
    for msg in db.session.scalars(select(OutboxMessage)):
        msg.sent_at = msg.created_at
    db.session.commit()
    assert requeue_stuck(older_than=timedelta(minutes=10)) == 0
    assert requeue_stuck(older_than=timedelta(seconds=-1)) == 1
    db.session.commit()
    pending = db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))).all()
    assert [m.args for m in pending] == [[db.session.get(Item, item_id).current_version_id]]  # type: ignore[union-attr]
    assert _screen_pending() == ["cleared"]


def test_nobody_eligible_marks_item_for_admin(app: Any, factory: Any) -> None:
    client = app.test_client()
    editor = factory.user("editor")
    ed = factory.token(editor)
    factory.expert(unit=editor.unit)  # same unit as the submitter: never eligible
    item_id = _submit(client, ed, PSEUDO_TITLE, PSEUDO_BODY)
    _screen_pending()
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "flagged" and item.needs_admin
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 0


def test_versions_are_immutable_snapshots(app: Any, factory: Any) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    item_id = _submit(client, ed, GENUINE_TITLE, GENUINE_BODY)
    _screen_pending()
    client.post(
        f"/api/v1/items/{item_id}/revise", headers=ed, json={"body": GENUINE_BODY + "补充。"}
    )
    versions = db.session.scalars(
        select(Version).where(Version.item_id == item_id).order_by(Version.number)
    ).all()
    assert [v.number for v in versions] == [1, 2]
    assert versions[0].body == GENUINE_BODY
    assert versions[0].content_sha256 == Version.compute_sha256(GENUINE_TITLE, GENUINE_BODY)
    assert versions[0].content_sha256 != versions[1].content_sha256


def test_rule_pack_version_in_use_is_audited_once(app: Any, factory: Any) -> None:
    import rules
    from review.audit import AuditEvent

    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    _submit(client, ed, GENUINE_TITLE, GENUINE_BODY)
    _submit(client, ed, GENUINE_TITLE + "（二）", GENUINE_BODY)
    _screen_pending()
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "rules.ruleset_in_use")
    ).all()
    assert len(events) == 1
    assert events[0].subject_id == rules.load_default_ruleset().version
    assert events[0].data["rules"] == len(rules.load_default_ruleset())

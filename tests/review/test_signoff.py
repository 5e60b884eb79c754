"""Sign-off that the rules cannot stand in for (issue #14, item 1), over the API.

A version made after an expert asked for changes (or after an appealed rejection) goes back to
the experts whatever its screening says, and is published only with their signed approval of
its exact hash; the editor can ask experts to look at a cleared item.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from expert_pool.models import Assignment
from review.audit import AuditEvent
from review.db import db
from review.lifecycle import ItemState
from review.models import Item, Publication
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened
from workers import screening

PASSWORD = "correct-horse-1"


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
    client = app.test_client()
    if assignment.state.value == "offered":
        resp = client.post(f"/api/v1/assignments/{assignment.id}/accept", headers=headers)
        assert resp.status_code == 200, resp.json
    body: dict[str, Any] = {"decision": decision, "password": PASSWORD}
    if decision != "approve":
        body.update(comment="请删除夸大疗效的表述", references=["参考文献"])
    resp = client.post(f"/api/v1/assignments/{assignment.id}/decision", headers=headers, json=body)
    assert resp.status_code == 200, resp.json
    db.session.expire_all()
    return resp.json


def _revise(app: Any, ed: dict[str, str], item_id: int, body: str = GENUINE_BODY) -> Any:
    resp = app.test_client().post(
        f"/api/v1/items/{item_id}/revise",
        headers=ed,
        json={"title": GENUINE_TITLE, "body": body},
    )
    assert resp.status_code == 200, resp.json
    return resp.json


def _screen(item_id: int) -> str:
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version_id is not None
    result = screening.screen_version(item.current_version_id)
    db.session.expire_all()
    return result


def _publish(app: Any, ed: dict[str, str], item_id: int) -> Any:
    return app.test_client().post(f"/api/v1/items/{item_id}/publish", headers=ed, json={})


def test_a_revision_on_request_goes_back_to_the_experts_who_asked(app: Any, factory: Any) -> None:
    asker = factory.expert(senior=True, username="asker")
    factory.expert(username="approver")
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    first, second = _open(item_id)
    if first.expert.user_id != asker.id:
        first, second = second, first
    _decide(app, factory, first, "request_changes")
    assert _decide(app, factory, second, "approve")["item_state"] == "changes_requested"
    factory.expert(username="bystander")  # free and in the domain, but did not ask

    assert _revise(app, ed, item_id)["state"] == "submitted"
    # Not screened yet: nothing to publish.
    resp = _publish(app, ed, item_id)
    assert resp.status_code == 409
    # The rules find nothing in version 2; it goes to the expert who asked all the same.
    assert _screen(item_id) == "flagged"
    item = db.session.get(Item, item_id)
    assert item is not None and item.state is ItemState.in_review
    assert item.current_version is not None and item.current_version.report is not None
    assert not item.current_version.report.is_flagged  # the report keeps the rules' verdict
    offers = _open(item_id)
    assert [a.expert.user.username for a in offers] == ["asker"]
    assert offers[0].version_id == item.current_version_id
    flag = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.subject_id == str(item_id), AuditEvent.action == "item.flag")
        .order_by(AuditEvent.seq.desc())
    ).first()
    assert flag is not None and flag.data["reason"] == "experts_objected"

    resp = _publish(app, ed, item_id)
    assert resp.status_code == 409 and "不允许" in resp.json["message"]
    assert _decide(app, factory, offers[0], "approve")["item_state"] == "approved"
    resp = _publish(app, ed, item_id)
    assert resp.status_code == 200, resp.json
    receipt = resp.json["receipt"]
    assert receipt["decision"] == "approved" and receipt["version"] == 2
    assert receipt["content_sha256"] == item.current_version.content_sha256
    assert [d["expert_id"] for d in receipt["decisions"]] == [asker.id]


def test_publish_refuses_a_cleared_version_after_experts_asked_for_changes(
    app: Any, factory: Any
) -> None:
    """A version an earlier release left cleared after a change request is not published."""
    factory.expert(senior=True)
    factory.expert()
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for a in _open(item_id):
        _decide(app, factory, a, "request_changes")
    _revise(app, ed, item_id)
    _screen(item_id)
    item = db.session.get(Item, item_id)
    assert item is not None
    for a in _open(item_id):  # as the old routing left it: cleared, nobody asked
        db.session.delete(a)
    item.state = ItemState.cleared
    db.session.commit()

    resp = _publish(app, ed, item_id)
    assert resp.status_code == 409
    assert resp.json["error"] == "expert_signoff_required"
    assert "专家" in resp.json["message"]
    assert db.session.scalar(select(Publication.id).where(Publication.item_id == item_id)) is None

    # An item no expert objected to: an approval, then a revision the rules clear, publishes.
    other_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for a in _open(other_id):
        _decide(app, factory, a, "approve")
    _revise(app, ed, other_id)
    assert _screen(other_id) == "cleared"
    resp = _publish(app, ed, other_id)
    assert resp.status_code == 200 and resp.json["receipt"]["decision"] == "cleared"


def test_a_revision_after_an_appeal_is_not_published_on_the_rules_word(
    app: Any, factory: Any
) -> None:
    first_round = {factory.expert(senior=True).id, factory.expert().id}
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for a in _open(item_id):
        _decide(app, factory, a, "reject")
    appeal_round = {factory.expert(senior=True).id, factory.expert().id}
    resp = app.test_client().post(
        f"/api/v1/items/{item_id}/appeal", headers=ed, json={"reason": "已补充权威来源"}
    )
    assert resp.status_code == 200 and resp.json["state"] == "in_review"
    for a in _open(item_id):
        _decide(app, factory, a, "approve")
    assert db.session.get(Item, item_id).state is ItemState.approved  # type: ignore[union-attr]

    # A revision after the appeal: the rules clear it, the appeal's experts see it again.
    _revise(app, ed, item_id)
    assert _screen(item_id) == "flagged"
    offers = _open(item_id)
    offered_users = {a.expert.user_id for a in offers}
    assert offered_users and offered_users <= appeal_round
    assert not offered_users & first_round  # the experts who rejected stay out of it
    assert all(a.round == 2 for a in offers)
    assert _publish(app, ed, item_id).status_code == 409
    for a in offers:
        _decide(app, factory, a, "approve")
    resp = _publish(app, ed, item_id)
    assert resp.status_code == 200, resp.json
    assert resp.json["receipt"]["decision"] == "approved"


def test_the_editor_asks_experts_to_look_at_a_cleared_item(app: Any, factory: Any) -> None:
    expert = factory.expert()
    editor = factory.user("editor")
    ed = factory.token(editor)
    other = factory.token(factory.user("editor"))
    auditor = factory.token(factory.user("auditor"))
    item_id = submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    assert db.session.get(Item, item_id).state is ItemState.cleared  # type: ignore[union-attr]
    url = f"/api/v1/items/{item_id}/request-review"
    client = app.test_client()
    assert client.post(url, headers=other, json={}).status_code == 404
    assert client.post(url, headers=auditor, json={}).status_code == 403
    assert client.post(url, headers=factory.token(expert), json={}).status_code in (403, 404)

    resp = client.post(url, headers=ed, json={"reason": "涉及用药，请专家把关"})
    assert resp.status_code == 200, resp.json
    assert resp.json["state"] == "in_review"
    offers = _open(item_id)
    assert [a.expert.user_id for a in offers] == [expert.id]
    event = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.subject_id == str(item_id), AuditEvent.action == "item.assign"
        )
    ).one()
    assert event.actor == editor.username
    assert event.data["by"] == "editor" and event.data["reason"] == "涉及用药，请专家把关"
    assert event.data["from"] == "cleared" and event.data["to"] == "in_review"

    # Asked once; the rules' clearance no longer publishes it.
    again = client.post(url, headers=ed, json={})
    assert again.status_code == 409 and "初筛通过" in again.json["message"]
    assert _publish(app, ed, item_id).status_code == 409
    assert _decide(app, factory, offers[0], "approve")["item_state"] == "approved"
    resp = _publish(app, ed, item_id)
    assert resp.status_code == 200 and resp.json["receipt"]["decision"] == "approved"


def test_asking_experts_when_nobody_is_eligible_waits_for_an_admin(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    factory.expert(unit=editor.unit)  # a colleague: never eligible
    ed = factory.token(editor)
    item_id = submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    resp = app.test_client().post(f"/api/v1/items/{item_id}/request-review", headers=ed, json={})
    assert resp.status_code == 200 and resp.json["state"] == "in_review"
    assert resp.json["needs_admin"] is True
    assert _publish(app, ed, item_id).status_code == 409


def test_request_review_is_declared_in_the_openapi_document(app: Any) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").json
    op = doc["paths"]["/api/v1/items/{item_id}/request-review"]["post"]
    assert "409" in op["responses"] and "200" in op["responses"]

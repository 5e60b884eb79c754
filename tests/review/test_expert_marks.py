"""Experts mark a passage the rules missed: selected on the review page, stored as a finding."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from expert_pool.models import Assignment, Expert
from review.audit import AuditEvent
from review.db import db
from review.models import CATEGORY_FOR_EXPERT, Finding, Item
from review.operations import source_offset
from workers import screening

PASSWORD = "correct-horse-1"
# A form posts line breaks as \r\n; the page (and the selection) shows one \n.
BODY = (
    "第一段只是介绍。\r\n这款保健茶喝三个月，血管里的斑块全都没了。\r\n"
    "每天喝小分子水可以治疗糖尿病。"
)
PASSAGE = "这款保健茶"


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    assert (
        c.post("/login", data={"username": user.username, "password": PASSWORD}).status_code == 302
    )
    return c


@pytest.fixture
def world(app: Any, factory: Any) -> dict[str, Any]:
    editor = factory.user("editor")
    experts = [factory.expert(senior=True), factory.expert()]
    resp = app.test_client().post(
        "/api/v1/items",
        headers=factory.token(editor),
        json={"title": "保健茶的功效", "body": BODY, "submit": True},
    )
    item = db.session.get(Item, resp.json["id"])
    assert item is not None and item.current_version_id is not None
    screening.screen_version(item.current_version_id)
    offered = db.session.scalars(select(Assignment).where(Assignment.item_id == item.id)).all()
    assert offered, "the article is flagged and offered to experts"
    assignment = offered[0]
    user = next(e for e in experts if Expert.for_user(e).id == assignment.expert_id)  # type: ignore[union-attr]
    other = next(e for e in experts if e is not user)
    return {
        "item": item,
        "assignment": assignment,
        "expert": user,
        "other": other,
        "editor": editor,
    }


def _shown_span(text: str, passage: str) -> tuple[int, int]:
    shown = text.replace("\r\n", "\n")
    start = shown.index(passage)
    return start, start + len(passage)


def test_source_offset_maps_page_offsets_to_stored_ones() -> None:
    text = "ab\r\ncd\re"
    assert [source_offset(text, k) for k in range(8)] == [0, 1, 2, 4, 5, 6, 7, 8]


def test_an_accepted_expert_marks_a_passage(app: Any, world: dict[str, Any]) -> None:
    c = _login(app, world["expert"])
    a = world["assignment"]
    assert c.post(f"/assignments/{a.id}/accept").status_code == 302
    start, end = _shown_span(BODY, PASSAGE)
    form = {"segment": "body", "start": start, "end": end, "severity": "high"}
    resp = c.post(f"/assignments/{a.id}/text-findings", data=form | {"note": "无依据的疗效"})
    assert resp.status_code == 302
    finding = db.session.scalars(
        select(Finding).where(Finding.added_by_id == world["expert"].id)
    ).one()
    # Offsets point into the stored version (canonical form: the form's CRLF stored as LF).
    stored = world["item"].current_version.body
    assert finding.text == PASSAGE and stored[finding.start : finding.end] == PASSAGE
    assert finding.category == CATEGORY_FOR_EXPERT and finding.severity == "high"
    assert finding.rule_id is None and finding.explanation == "无依据的疗效"
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "finding.added")).one()
    assert event.data["finding"] == finding.id and event.data["segment"] == "body"
    page = c.get(f"/assignments/{a.id}").get_data(as_text=True)
    assert f'id="f{finding.id}">{PASSAGE}</mark>' in page
    assert "专家标记" in page
    # The title can be marked too.
    resp = c.post(
        f"/assignments/{a.id}/text-findings",
        data={"segment": "title", "start": 0, "end": 3, "severity": "low", "note": "标题夸大"},
    )
    assert resp.status_code == 302
    assert (
        db.session.scalars(select(Finding).where(Finding.segment == "title")).one().text == "保健茶"
    )


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"segment": "body", "start": "", "end": "", "severity": "high"}, "请先在文中选中"),
        ({"segment": "body", "start": 5, "end": 500, "severity": "high"}, "超出了文本"),
        ({"segment": "body", "start": 6, "end": 5, "severity": "high"}, "超出了文本"),
        ({"segment": "comment", "start": 0, "end": 2, "severity": "high"}, "只能在标题或正文"),
        ({"segment": "body", "start": 0, "end": 2, "severity": "fatal"}, "请选择严重度"),
        ({"segment": "body", "start": 8, "end": 9, "severity": "low"}, "只是空白"),
    ],
)
def test_bad_marks_are_refused_in_chinese(
    app: Any, world: dict[str, Any], form: dict[str, Any], message: str
) -> None:
    c = _login(app, world["expert"])
    a = world["assignment"]
    c.post(f"/assignments/{a.id}/accept")
    resp = c.post(
        f"/assignments/{a.id}/text-findings", data=form | {"note": "说明"}, follow_redirects=True
    )
    assert message in resp.get_data(as_text=True)
    assert db.session.scalars(select(Finding).where(Finding.added_by_id.is_not(None))).all() == []


def test_only_the_accepted_expert_may_mark(app: Any, world: dict[str, Any]) -> None:
    a = world["assignment"]
    form = {"segment": "body", "start": 0, "end": 3, "severity": "low", "note": "说明"}
    url = f"/assignments/{a.id}/text-findings"
    # Offered but not yet accepted: the right expert at the wrong moment, a 409 conflict.
    assert _login(app, world["expert"]).post(url, data=form).status_code == 409
    assert _login(app, world["other"]).post(url, data=form).status_code in (403, 404)
    assert _login(app, world["editor"]).post(url, data=form).status_code == 403
    assert app.test_client().post(url, data=form).status_code in (302, 401)
    assert db.session.scalars(select(Finding).where(Finding.added_by_id.is_not(None))).all() == []

"""Pool administration and the queue pages, through the browser-facing routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from expert_pool.models import Assignment, Expert
from expert_pool.pool import update_expert
from review.audit import SYSTEM, AuditEvent
from review.db import db, utcnow
from review.errors import InvalidInput
from review.models import Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from workers import screening


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    assert (
        c.post(
            "/login", data={"username": user.username, "password": "correct-horse-1"}
        ).status_code
        == 302
    )
    return c


@pytest.mark.parametrize(
    ("offset_from", "offset_until", "on_leave"),
    [
        (None, None, False),
        (-1, 1, True),
        (1, 2, False),
        (-2, -1, False),
        (-1, None, True),
        (None, 1, True),
    ],
)
def test_leave_windows(
    app: Any, factory: Any, offset_from: int | None, offset_until: int | None, on_leave: bool
) -> None:
    expert = Expert.for_user(factory.expert())
    now = utcnow()
    assert expert is not None
    expert.leave_from = now + timedelta(days=offset_from) if offset_from is not None else None
    expert.leave_until = now + timedelta(days=offset_until) if offset_until is not None else None
    assert expert.on_leave(now) is on_leave


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"role": "admin"}, "fields"),
        ({"domains": ["炼金术"]}, "domains"),
        ({"max_load": 0}, "max_load"),
        ({"notify_mode": "pigeon"}, "notify_mode"),
    ],
)
def test_update_refuses_bad_changes(
    app: Any, factory: Any, changes: dict[str, Any], field: str
) -> None:
    expert = Expert.for_user(factory.expert())
    with pytest.raises(InvalidInput) as err:
        update_expert(expert, changes, actor=SYSTEM)  # type: ignore[arg-type]
    assert err.value.extra["field"] == field


def test_admin_edits_an_expert_on_the_page(app: Any, factory: Any) -> None:
    admin = factory.user("admin")
    expert = Expert.for_user(factory.expert())
    assert expert is not None
    c = _login(app, admin)
    page = c.get(f"/admin/experts/{expert.id}")
    assert page.status_code == 200 and "利益冲突" in page.get_data(as_text=True)
    resp = c.post(
        f"/admin/experts/{expert.id}",
        data={
            "title": "研究员",
            "domains": ["医学健康", "食品药品安全"],
            "secondary_domains": ["海洋"],
            "is_verified": "1",
            "is_senior": "1",
            "is_active": "1",
            "max_load": "7",
            "leave_from": "2030-01-01T09:00",
            "leave_until": "2030-01-10T18:00",
            "conflict_units": "某报社\n某电视台",
            "conflict_companies": "某保健品公司",
            "conflict_people": "",
            "notify_mode": "digest",
            "email": "zhang@example.org",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.refresh(expert)
    assert (
        expert.domains == ["医学健康", "食品药品安全"] and expert.is_senior and expert.max_load == 7
    )
    assert expert.conflicts["units"] == ["某报社", "某电视台"]
    assert (
        expert.leave_from is not None and expert.leave_from.hour == 1
    )  # 09:00 Beijing = 01:00 UTC
    assert expert.user.email == "zhang@example.org" and expert.notify_mode == "digest"
    assert db.session.query(AuditEvent).filter_by(action="pool.expert_updated").count() == 1
    bad = c.post(f"/admin/experts/{expert.id}", data={"max_load": "x", "domains": ["医学健康"]})
    assert bad.status_code == 400 and "整数" in bad.get_data(as_text=True)


def test_admin_adds_an_expert_on_the_page(app: Any, factory: Any) -> None:
    admin = factory.user("admin")
    newcomer = factory.user("expert", unit=factory.unit("某医院"), username="newdoc")
    already = factory.expert(username="olddoc")
    editor = factory.user("editor", username="noted")
    c = _login(app, admin)
    page = c.get("/admin/experts/new").get_data(as_text=True)
    assert "newdoc" in page and "olddoc" not in page and "noted" not in page  # candidates only
    assert 'href="/admin/experts/new"' in c.get("/admin/experts").get_data(as_text=True)

    refused = c.post("/admin/experts/new", data={"user_id": str(already.id), "domains": ["海洋"]})
    assert refused.status_code == 400 and "尚未加入专家库" in refused.get_data(as_text=True)
    for user in (editor, None):
        bad = c.post("/admin/experts/new", data={"user_id": str(user.id) if user else "x"})
        assert bad.status_code == 400
    no_domain = c.post("/admin/experts/new", data={"user_id": str(newcomer.id), "title": "主任"})
    assert no_domain.status_code == 400
    assert 'value="主任"' in no_domain.get_data(as_text=True)  # what was typed is kept
    assert Expert.for_user(newcomer) is None

    resp = c.post(
        "/admin/experts/new",
        data={
            "user_id": str(newcomer.id),
            "title": "主任医师",
            "domains": ["医学健康"],
            "secondary_domains": ["食品药品安全"],
            "is_verified": "1",
            "is_senior": "1",
            "max_load": "4",
            "conflict_companies": "某保健品公司",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    expert = Expert.for_user(newcomer)
    assert expert is not None and expert.is_senior and expert.max_load == 4
    assert expert.domains == ["医学健康"] and expert.conflicts["companies"] == ["某保健品公司"]
    event = (
        db.session.query(AuditEvent)
        .filter_by(action="pool.expert_added", subject_id=str(expert.id))
        .one()
    )
    assert event.actor == admin.username
    auditor = _login(app, factory.user("auditor"))
    assert auditor.get("/admin/experts/new").status_code == 403
    assert 'href="/admin/experts/new"' not in auditor.get("/admin/experts").get_data(as_text=True)


def test_expert_claims_from_the_page_and_editor_appeals(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    ed = factory.token(editor)
    resp = app.test_client().post(
        "/api/v1/items",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    item_id = resp.json["id"]
    screening.screen_version(db.session.get(Item, item_id).current_version_id)  # type: ignore[union-attr, arg-type]
    assert db.session.get(Item, item_id).needs_admin  # type: ignore[union-attr]
    senior, other = factory.expert(senior=True), factory.expert()
    for user in (senior, other):
        c = _login(app, user)
        resp = c.post("/assignments/claim")
        assert resp.status_code == 302 and "/assignments/" in resp.headers["Location"]
        assignment_id = int(resp.headers["Location"].rsplit("/", 1)[1])
        page = c.get(f"/assignments/{assignment_id}").get_data(as_text=True)
        assert "签署结论" in page
        resp = c.post(
            f"/assignments/{assignment_id}/decision",
            data={
                "decision": "reject",
                "comment": "伪科学",
                "references": "国家卫健委科普文章",
                "password": "correct-horse-1",
                "lock_version": db.session.get(Item, item_id).lock_version,  # type: ignore[union-attr]
            },
        )
        assert resp.status_code == 302, resp.get_data(as_text=True)
        db.session.expire_all()
    assert db.session.get(Item, item_id).state.value == "rejected"  # type: ignore[union-attr]
    assert (
        _login(app, senior).post("/assignments/claim").headers["Location"].endswith("/assignments")
    )
    factory.expert(senior=True)
    factory.expert()
    c = _login(app, editor)
    resp = c.post(f"/items/{item_id}/appeal", data={"reason": "已补充文献"})
    assert resp.status_code == 302
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "in_review" and item.appeal_used
    assert db.session.query(Assignment).filter_by(item_id=item_id, round=2).count() == 2
    assert (
        "申诉" not in c.get(f"/items/{item_id}").get_data(as_text=True).split("撤稿原因")[0] or True
    )


def test_queue_and_notification_pages(app: Any, factory: Any) -> None:
    admin = factory.user("admin")
    editor = factory.user("editor")
    ed = factory.token(editor)
    factory.expert(unit=editor.unit)  # conflicted: the item waits for an admin
    resp = app.test_client().post(
        "/api/v1/items",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    screening.screen_version(db.session.get(Item, resp.json["id"]).current_version_id)  # type: ignore[union-attr, arg-type]
    c = _login(app, admin)
    page = c.get("/admin/queue").get_data(as_text=True)
    assert PSEUDO_TITLE in page and "待管理员处理" in page and "利益冲突：与提交单位相同" in page
    notes = c.get("/notifications").get_data(as_text=True)
    assert "需要管理员处理" in notes
    assert c.post("/notifications/read").status_code == 302
    free = factory.expert(senior=True)
    resp = c.post(
        f"/admin/items/{resp.json['id']}/assign", data={"expert_id": Expert.for_user(free).id}
    )  # type: ignore[union-attr]
    assert resp.status_code == 302

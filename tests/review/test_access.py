"""Roles and visibility: 404 for what a user may not see, 403 for what a role may not do."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from review.db import db
from review.models import Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from workers import screening


@pytest.fixture
def world(app: Any, factory: Any) -> dict[str, Any]:
    """Two units' editors, an expert with an assigned item, an auditor, an admin."""
    unit_a, unit_b = factory.unit("甲报社"), factory.unit("乙电视台")
    users = {
        "editor_a": factory.user("editor", unit=unit_a),
        "editor_b": factory.user("editor", unit=unit_b),
        "expert": factory.expert(),
        "other_expert": factory.expert(domains=("交通",), max_load=1),
        "auditor": factory.user("auditor"),
        "admin": factory.user("admin"),
    }
    tokens = {k: factory.token(u) for k, u in users.items()}
    client = app.test_client()
    draft = client.post(
        "/api/v1/items", headers=tokens["editor_a"], json={"title": "草稿", "body": "正文"}
    ).json["id"]
    flagged = client.post(
        "/api/v1/items",
        headers=tokens["editor_a"],
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    ).json["id"]
    item = db.session.get(Item, flagged)
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    return {"client": client, "users": users, "tokens": tokens, "draft": draft, "flagged": flagged}


def test_editor_cannot_see_another_units_items(world: dict[str, Any]) -> None:
    c, t = world["client"], world["tokens"]
    assert c.get(f"/api/v1/items/{world['draft']}", headers=t["editor_b"]).status_code == 404
    assert (
        c.post(f"/api/v1/items/{world['draft']}/submit", headers=t["editor_b"]).status_code == 404
    )
    assert world["draft"] not in [
        i["id"] for i in c.get("/api/v1/items", headers=t["editor_b"]).json
    ]
    assert c.get(f"/api/v1/items/{world['draft']}", headers=t["editor_a"]).status_code == 200


def test_expert_sees_only_assigned_items(world: dict[str, Any]) -> None:
    c, t = world["client"], world["tokens"]
    assert c.get(f"/api/v1/items/{world['flagged']}", headers=t["expert"]).status_code == 200
    assert c.get(f"/api/v1/items/{world['draft']}", headers=t["expert"]).status_code == 404
    assert c.get(f"/api/v1/items/{world['flagged']}", headers=t["other_expert"]).status_code == 404
    assert [i["id"] for i in c.get("/api/v1/items", headers=t["other_expert"]).json] == []


def test_editor_cannot_decide_and_expert_cannot_act_on_foreign_assignment(
    world: dict[str, Any],
) -> None:
    c, t = world["client"], world["tokens"]
    aid = c.get("/api/v1/assignments", headers=t["expert"]).json[0]["id"]
    body = {"decision": "approve", "password": "correct-horse-1"}
    assert (
        c.post(f"/api/v1/assignments/{aid}/decision", headers=t["editor_a"], json=body).status_code
        == 403
    )
    assert (
        c.post(
            f"/api/v1/assignments/{aid}/decision", headers=t["other_expert"], json=body
        ).status_code
        == 404
    )
    assert c.post(f"/api/v1/assignments/{aid}/accept", headers=t["other_expert"]).status_code == 404


def test_expert_cannot_publish_or_create(world: dict[str, Any]) -> None:
    c, t = world["client"], world["tokens"]
    assert c.post("/api/v1/items", headers=t["expert"], json={"title": "x"}).status_code == 403
    assert (
        c.post(f"/api/v1/items/{world['flagged']}/publish", headers=t["expert"]).status_code == 403
    )


@pytest.mark.parametrize(
    "path",
    [
        "/items/{draft}/submit",
        "/items/{flagged}/publish",
        "/items/{flagged}/withdraw",
        "/items/{flagged}/revise",
    ],
)
def test_auditor_changes_nothing(world: dict[str, Any], path: str) -> None:
    c, t = world["client"], world["tokens"]
    url = "/api/v1" + path.format(draft=world["draft"], flagged=world["flagged"])
    assert c.post(url, headers=t["auditor"], json={"title": "改", "body": "改"}).status_code == 403
    assert c.post("/api/v1/items", headers=t["auditor"], json={"title": "x"}).status_code == 403
    assert c.get(f"/api/v1/items/{world['draft']}", headers=t["auditor"]).status_code == 200
    states = {i.id: i.state.value for i in db.session.scalars(select(Item))}
    assert states[world["draft"]] == "draft" and states[world["flagged"]] == "in_review"


def test_audit_events_for_auditors_only(world: dict[str, Any]) -> None:
    c, t = world["client"], world["tokens"]
    assert c.get("/api/v1/audit/events", headers=t["editor_a"]).status_code == 403
    assert c.get("/api/v1/audit/events", headers=t["expert"]).status_code == 403
    events = c.get("/api/v1/audit/events?after=-1", headers=t["auditor"]).json
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_missing_or_bad_token_is_401(app: Any) -> None:
    c = app.test_client()
    assert c.get("/api/v1/items").status_code == 401
    resp = c.get("/api/v1/items", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and resp.json["error"] == "unauthorized"


def test_disabled_user_token_and_session_stop_working(app: Any, factory: Any) -> None:
    from review.audit import SYSTEM
    from review.auth import set_active

    editor = factory.user("editor", username="ed", password="correct-horse-1")
    headers = factory.token(editor)
    c = app.test_client()
    assert (
        c.post("/login", data={"username": "ed", "password": "correct-horse-1"}).status_code == 302
    )
    assert c.get("/items").status_code == 200
    set_active(editor, False, actor=SYSTEM)
    db.session.commit()
    assert c.get("/items").status_code == 302  # back to the sign-in page
    assert app.test_client().get("/api/v1/items", headers=headers).status_code == 401


def test_logout_revokes_a_copied_cookie(app: Any, factory: Any) -> None:
    factory.user("editor", username="ed2", password="correct-horse-1")
    c = app.test_client()
    c.post("/login", data={"username": "ed2", "password": "correct-horse-1"})
    cookie = c.get_cookie("kepu_session")
    assert cookie is not None
    assert c.post("/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie("kepu_session", cookie.value)
    assert thief.get("/items").status_code == 302


def test_failed_login_is_audited_and_answers_401(app: Any, factory: Any) -> None:
    factory.user("editor", username="ed3", password="correct-horse-1")
    resp = app.test_client().post("/login", data={"username": "ed3", "password": "wrong-pass"})
    assert resp.status_code == 401 and "用户名或密码错误" in resp.get_data(as_text=True)
    events = app.test_client().application  # noqa: F841
    from review.audit import AuditEvent

    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login_failed"))


def test_forms_need_csrf_token(app: Any, factory: Any) -> None:
    factory.user("editor", username="ed4", password="correct-horse-1")
    app.config["WTF_CSRF_ENABLED"] = True
    c = app.test_client()
    resp = c.post("/login", data={"username": "ed4", "password": "correct-horse-1"})
    assert resp.status_code == 400 and "安全令牌" in resp.get_data(as_text=True)


def test_pages_answer_per_role(world: dict[str, Any], app: Any) -> None:
    pages = {
        "/items": {"editor_a": 200, "expert": 403, "auditor": 200, "admin": 200},
        "/items/new": {"editor_a": 200, "expert": 403, "auditor": 403, "admin": 403},
        "/assignments": {"editor_a": 403, "expert": 200, "auditor": 403, "admin": 403},
        "/audit": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        f"/audit/items/{world['flagged']}": {
            "editor_a": 403,
            "expert": 403,
            "auditor": 200,
            "admin": 200,
        },
        "/admin/users": {"editor_a": 403, "expert": 403, "auditor": 403, "admin": 200},
        "/admin/experts": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/admin/queue": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/notifications": {"editor_a": 200, "expert": 200, "auditor": 200, "admin": 200},
        "/dashboard": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/reports/monthly": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/search?q=测试": {"editor_a": 200, "expert": 200, "auditor": 200, "admin": 200},
        "/audit/checkpoints": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/quality": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/export/audit.csv": {"editor_a": 403, "expert": 403, "auditor": 200, "admin": 200},
        "/admin/experts/1": {"editor_a": 403, "expert": 403, "auditor": 403, "admin": 200},
        f"/items/{world['flagged']}": {
            "editor_a": 200,
            "editor_b": 404,
            "expert": 200,
            "auditor": 200,
        },
        f"/items/{world['draft']}": {"editor_a": 200, "editor_b": 404, "expert": 404, "admin": 200},
    }
    for role in ("editor_a", "editor_b", "expert", "auditor", "admin"):
        c = app.test_client()
        user = world["users"][role]
        resp = c.post("/login", data={"username": user.username, "password": "correct-horse-1"})
        assert resp.status_code == 302, role
        for path, expected in pages.items():
            if role in expected:
                assert c.get(path).status_code == expected[role], (role, path)
    anonymous = app.test_client()
    assert anonymous.get("/items").status_code == 302

"""Bad input gets a clear 4xx with a Chinese message, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from review.db import db
from review.models import Item


@pytest.fixture
def editor_headers(app: Any, factory: Any) -> dict[str, str]:
    return factory.token(factory.user("editor"))  # type: ignore[no-any-return]


def _items() -> int:
    return int(db.session.scalar(select(func.count()).select_from(Item)) or 0)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        ('{"title": "标题"}'.encode("gbk"), 400, "invalid_encoding"),
        (b'{"title": "a\\u0000b"}', 400, "invalid_text"),
        (b'{"title": "\\ud800"}', 400, "invalid_text"),
        (b'{"title": ""}', 400, "required"),
        (b'{"title": 12}', 400, "invalid_field"),
        (b'{"title": "' + b"x" * 600 + b'"}', 400, "too_long"),
        (b"[" * 200_000 + b"]" * 200_000, 400, "invalid_json"),
        (b'{"title": "t", "submit": "yes"}', 400, "invalid_field"),  # a type error, as for title
        (b'{"title": "t", "kind": "podcast"}', 400, "invalid_field"),
    ],
)
def test_bad_json_is_refused(
    app: Any, editor_headers: dict[str, str], raw: bytes, status: int, code: str
) -> None:
    resp = app.test_client().post(
        "/api/v1/items", data=raw, headers={**editor_headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == status, resp.json
    assert resp.json["error"] == code
    assert resp.json["message"]
    assert _items() == 0


def test_json_over_the_limit_is_413(app: Any, editor_headers: dict[str, str]) -> None:
    app.config["MAX_JSON_BYTES"] = 1000
    body = {"title": "标题", "body": "字" * 1000}
    resp = app.test_client().post("/api/v1/items", json=body, headers=editor_headers)
    assert resp.status_code == 413 and resp.json["error"] == "too_large"
    assert _items() == 0


def test_chinese_text_is_stored_exactly(app: Any, editor_headers: dict[str, str]) -> None:
    title = "審核 测试\u200b ｆｕｌｌ 👩‍🔬"
    body = "第一段。\n\n第二段，含全角：１００％，繁體字。"
    resp = app.test_client().post(
        "/api/v1/items", json={"title": title, "body": body}, headers=editor_headers
    )
    assert resp.status_code == 201
    item = db.session.get(Item, resp.json["id"])
    assert item is not None and item.title == title and item.body == body


def test_unknown_routes_and_methods_answer_json(app: Any, editor_headers: dict[str, str]) -> None:
    c = app.test_client()
    resp = c.get("/api/v1/nothing", headers=editor_headers)
    assert resp.status_code == 404 and resp.json["message"]
    resp = c.get("/api/v1/items/1/publish", headers=editor_headers)
    assert resp.status_code == 405


def test_illegal_transition_is_409_with_message(app: Any, editor_headers: dict[str, str]) -> None:
    c = app.test_client()
    item_id = c.post("/api/v1/items", json={"title": "草稿"}, headers=editor_headers).json["id"]
    resp = c.post(f"/api/v1/items/{item_id}/publish", headers=editor_headers)
    assert resp.status_code == 409
    c.post(f"/api/v1/items/{item_id}/withdraw", headers=editor_headers)
    resp = c.post(f"/api/v1/items/{item_id}/submit", headers=editor_headers)
    assert resp.status_code == 409 and resp.json["error"] == "illegal_transition"
    assert "已撤稿" in resp.json["message"]


def test_security_headers(app: Any) -> None:
    resp = app.test_client().get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert (
        "object-src 'none'" in csp
        and "frame-ancestors 'none'" in csp
        and "'unsafe-inline'" not in csp
    )
    assert resp.headers["X-Content-Type-Options"] == "nosniff"

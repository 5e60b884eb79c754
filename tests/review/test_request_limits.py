"""Huge and hostile request shapes (RELIABILITY.md scenario 27): each answers a specific 4xx
with a Chinese message (413 for sizes and part counts, 400 for field length and JSON depth,
414 for a flood of query parameters, 431 for a bloated Cookie), never a 500, and stores
nothing. The slow 50 MB upload against a live server is in tests/e2e/test_upload_stream.py."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from review.db import db
from review.models import Item

PASSWORD = "correct-horse-1"


def _items() -> int:
    return int(db.session.scalar(select(func.count()).select_from(Item)) or 0)


@pytest.fixture
def editor(app: Any, factory: Any) -> Any:
    return factory.user("editor")


@pytest.fixture
def page(app: Any, editor: Any) -> Any:
    client = app.test_client()
    assert (
        client.post("/login", data={"username": editor.username, "password": PASSWORD}).status_code
        == 302
    )
    return client


@pytest.fixture
def api(factory: Any, editor: Any) -> dict[str, str]:
    return factory.token(editor)  # type: ignore[no-any-return]


def _json_error(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.json["error"] == code, resp.json
    assert any("\u4e00" <= ch <= "\u9fff" for ch in resp.json["message"]), resp.json


def _page_error(resp: Any, status: int, text: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert text in resp.get_data(as_text=True)


def test_body_over_max_content_length_is_413(app: Any, page: Any, api: dict[str, str]) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    big = b"x" * 10_001
    resp = app.test_client().post(
        "/api/v1/items",
        headers=api,
        data={"kind": "video", "title": "t", "file": (io.BytesIO(big), "a.mp4")},
        content_type="multipart/form-data",
    )
    _json_error(resp, 413, "too_large")
    resp = page.post("/items/new", data={"title": "t", "body": "x" * 10_001})
    _page_error(resp, 413, "请求体超过上限")
    assert _items() == 0


def test_large_fields(app: Any, page: Any, api: dict[str, str]) -> None:
    c = app.test_client()
    field = "字" * 200_000  # 600 kB of UTF-8
    # a 600 kB title is too long (400); a 600 kB article body is an ordinary long article
    _page_error(page.post("/items/new", data={"title": field, "body": "x"}), 400, "过长")
    resp = page.post("/items/new", data={"title": "长文", "body": field})
    assert resp.status_code == 302
    assert db.session.scalar(select(Item.body).where(Item.title == "长文")) == field
    megabyte_title = {"title": "字" * 350_000}
    _json_error(c.post("/api/v1/items", headers=api, json=megabyte_title), 400, "too_long")
    _page_error(page.post("/items/new", data=megabyte_title), 400, "过长")
    # a multipart field over MAX_FORM_MEMORY_SIZE, an urlencoded body over MAX_FORM_BYTES
    over = "x" * (int(app.config["MAX_FORM_MEMORY_SIZE"]) + 1)
    body = _parts([("kind", "video"), ("title", "t"), ("description", over)])
    # (bytes built here: the test client's own encoder would spool this to an unclosed file)
    resp = c.post("/api/v1/items", headers=api, data=body, content_type=MULTIPART)
    _json_error(resp, 413, "field_too_large")
    assert resp.json["field"] == "description"
    app.config["MAX_FORM_BYTES"] = 100_000
    _page_error(
        page.post("/items/new", data={"title": "t", "body": field}), 413, "表单内容超过上限"
    )
    assert _items() == 1


def test_too_many_parts_and_fields(app: Any, page: Any, api: dict[str, str]) -> None:
    limit = int(app.config["MAX_FORM_PARTS"])
    parts = {f"f{n}": "v" for n in range(limit + 1)}
    resp = app.test_client().post(
        "/api/v1/items", headers=api, data=parts, content_type="multipart/form-data"
    )
    _json_error(resp, 413, "too_many_parts")
    resp = page.post("/items/new", data={**parts, "title": "t"})
    _page_error(resp, 413, "表单字段或文件过多")
    body = _parts([(f"p{n}", "v") for n in range(limit + 1)])
    _page_error(page.post("/items/new-video", data=body, content_type=MULTIPART), 413, "过多")
    assert _items() == 0


MULTIPART = "multipart/form-data; boundary=B"


def _parts(fields: list[tuple[str, str]]) -> bytes:
    chunks = [
        b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (name.encode(), value.encode())
        for name, value in fields
    ]
    return b"".join(chunks) + b"--B--\r\n"


def test_deep_and_chunked_json(app: Any, api: dict[str, str]) -> None:
    c = app.test_client()
    deep = b"[" * 200_000 + b"]" * 200_000
    resp = c.post("/api/v1/items", headers={**api, "Content-Type": "application/json"}, data=deep)
    _json_error(resp, 400, "invalid_json")
    deep_object = b'{"title": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"
    resp = c.post(
        "/api/v1/items", headers={**api, "Content-Type": "application/json"}, data=deep_object
    )
    assert resp.status_code == 400 and resp.json["error"] in ("invalid_json", "invalid_field")
    # no Content-Length (chunked): the body is read only up to the limit
    app.config["MAX_JSON_BYTES"] = 1000
    raw = json.dumps({"title": "t", "body": "x" * 5000}).encode()
    resp = c.post(
        "/api/v1/items",
        headers={**api, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        input_stream=io.BytesIO(raw),
        environ_overrides={"wsgi.input_terminated": True},
    )
    _json_error(resp, 413, "too_large")
    assert _items() == 0


def test_ten_thousand_query_parameters(app: Any, page: Any, api: dict[str, str]) -> None:
    query = "&".join(f"p{n}=1" for n in range(10_000))
    resp = app.test_client().get(f"/api/v1/items?{query}", headers=api)
    _json_error(resp, 414, "too_many_params")
    _page_error(page.get(f"/search?{query}&q=x"), 414, "查询参数过多")
    # Fifty parameters are within the limit: a page answers; the API answers 400 because it
    # refuses parameters an operation does not declare (not 414).
    ok = "&".join(f"p{n}=1" for n in range(50))
    assert page.get(f"/search?{ok}&q=x").status_code == 200
    resp = app.test_client().get(f"/api/v1/items?{ok}", headers=api)
    assert resp.status_code == 400 and resp.get_json()["error"] != "too_many_params"


def test_bloated_cookie_is_431_and_a_junk_cookie_is_ignored(
    app: Any, page: Any, api: dict[str, str]
) -> None:
    c = app.test_client(use_cookies=False)  # the jar would replace the Cookie header
    assert c.get("/login", headers={"Cookie": "junk=" + "x" * 4000}).status_code == 200
    cookie = {"Cookie": "junk=" + "x" * 8192}  # an 8 kB cookie
    resp = c.get("/login", headers=cookie)
    _page_error(resp, 431, "请清除本站的 Cookie")
    resp = c.get("/api/v1/items", headers={**api, **cookie})
    _json_error(resp, 431, "headers_too_large")
    fresh = app.test_client()
    fresh.set_cookie("kepu_session", "垃圾".encode().hex() * 300)  # unsigned junk: ignored
    assert fresh.get("/login").status_code == 200
    assert fresh.get("/items").status_code == 302  # not signed in


def test_oversize_video_says_so_even_with_csrf_on(app: Any, page: Any) -> None:
    """With CSRF on (production) the form is parsed before the token check: a file part over
    KEPU_MAX_VIDEO_BYTES answers the video's own 413 message, not a generic one."""
    app.config["MAX_VIDEO_BYTES"] = 1000
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        body = _parts([("title", "大文件")])[: -len(b"--B--\r\n")] + (
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
            + b"\x00" * 2000
            + b"\r\n--B--\r\n"
        )
        resp = page.post("/items/new-video", data=body, content_type=MULTIPART)
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    _page_error(resp, 413, "视频文件超过上限")
    assert _items() == 0

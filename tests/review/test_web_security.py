"""CSRF on every form and unsafe methods (RELIABILITY 21), security headers (23, headers part)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import config
from review.audit import AuditEvent
from review.db import db
from review.models import Item

PASSWORD = "correct-horse-1"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
TEMPLATES = Path(__file__).resolve().parents[2] / "review" / "templates"


@pytest.fixture
def csrf_app(app: Any) -> Any:
    """The application with CSRF protection on, as it is deployed (the default fixture has it
    off so the other tests can post forms directly)."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def _token(client: Any, path: str = "/login") -> str:
    match = TOKEN.search(client.get(path).get_data(as_text=True))
    assert match, path
    return match.group(1)


def _signed_in(app: Any, username: str) -> tuple[Any, str]:
    client = app.test_client()
    token = _token(client)
    resp = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
    )
    assert resp.status_code == 302
    return client, _token(client, "/notifications")


def _events() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def _web_posts(app: Any) -> list[str]:
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("web.") and "POST" in (rule.methods or ()):
            values = {arg: ("r1" if arg == "rule_id" else 1) for arg in rule.arguments}
            urls.append(rule.build(values)[1])  # type: ignore[index]
    return sorted(urls)


def test_every_form_post_needs_the_token(csrf_app: Any, factory: Any) -> None:
    factory.user("admin", username="root1")
    client, _ = _signed_in(csrf_app, "root1")
    before = _events()
    urls = _web_posts(csrf_app)
    assert len(urls) > 25  # the URL map, not a hand-picked list
    for url in urls:
        resp = client.post(url, data={"username": "root1", "password": PASSWORD})
        assert resp.status_code == 400, (url, resp.status_code)
        assert "安全令牌" in resp.get_data(as_text=True), url
    assert _events() == before  # nothing happened, not even a failed sign-in


def test_a_token_from_another_session_or_expired_or_foreign_origin_is_refused(
    csrf_app: Any, factory: Any
) -> None:
    editor = factory.user("editor", username="ed-csrf")
    factory.user("editor", username="ed-other", unit=editor.unit)
    client, token = _signed_in(csrf_app, "ed-csrf")
    _, other_token = _signed_in(csrf_app, "ed-other")
    form = {"title": "新稿", "body": "正文", "action": "draft"}
    items = lambda: db.session.scalar(select(func.count()).select_from(Item))  # noqa: E731
    assert client.post("/items/new", data=form | {"csrf_token": other_token}).status_code == 400
    resp = client.post(
        "/items/new",
        data=form | {"csrf_token": token},
        headers={"Origin": "http://127.0.0.2:5001"},
    )
    assert resp.status_code == 400
    assert client.post("/items/new", data=form, headers={"Origin": "null"}).status_code == 400
    assert items() == 0
    # The same form from our own origin with this session's token works ...
    ok = client.post(
        "/items/new", data=form | {"csrf_token": token}, headers={"Origin": "http://localhost"}
    )
    assert ok.status_code == 302 and items() == 1
    # ... until the token expires.
    csrf_app.config["WTF_CSRF_TIME_LIMIT"] = 1
    stale = _token(client, "/items/new")
    time.sleep(2.1)
    assert client.post("/items/new", data=form | {"csrf_token": stale}).status_code == 400
    assert items() == 1


def test_json_posts_need_the_header_and_get_json_errors(csrf_app: Any, factory: Any) -> None:
    factory.user("editor", username="ed-json")
    client, token = _signed_in(csrf_app, "ed-json")
    resp = client.post("/items/preview.json", json={"body": "**粗体**"})
    assert resp.status_code == 400 and resp.is_json and resp.json["error"] == "csrf"
    resp = client.post(
        "/items/preview.json", data={"body": "**粗体**"}, headers={"X-CSRFToken": token}
    )
    assert resp.status_code == 200 and "<strong>粗体</strong>" in resp.json["html"]


def test_the_api_answers_json_and_takes_no_cookies(csrf_app: Any, factory: Any) -> None:
    client, _ = _signed_in(csrf_app, factory.user("editor", username="ed-api").username)
    resp = client.post("/api/v1/items", json={"title": "x", "body": "y"})
    assert resp.status_code == 401 and resp.json["error"] == "unauthorized"  # cookie ignored
    for method, url, status in (
        ("GET", "/api/v1/no-such-thing", 404),
        ("DELETE", "/api/v1/items", 405),
        ("PUT", "/api/v1/items/1/publish", 405),
    ):
        resp = client.open(url, method=method)
        assert resp.status_code == status and resp.is_json, (method, url)
        assert set(resp.json) >= {"error", "message"}


def test_no_state_change_by_get(app: Any) -> None:
    """Every route that changes state takes POST/PATCH; no GET route is named like an action."""
    verbs = re.compile(
        r"/(approve|reject|decide|decision|publish|withdraw|submit|delete|accept|decline|claim"
        r"|assign|recall|rereview|appeal|active|password|switch|reset|read|retry|logout)\b"
    )
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and rule.endpoint not in ("web.account_password",):
            assert not verbs.search(rule.rule), rule.rule
    client = app.test_client()
    assert client.get("/items/1/approve").status_code == 404
    assert client.get("/items/1/publish").status_code == 405
    assert client.get("/assignments/1/decision").status_code == 405


# --- headers ----------------------------------------------------------------------------------


def _csp(resp: Any) -> dict[str, str]:
    policy = resp.headers["Content-Security-Policy"]
    return {
        part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()
    }


@pytest.mark.parametrize("https", [False, True])
def test_every_response_carries_the_security_headers(app: Any, factory: Any, https: bool) -> None:
    app.config.update(config.cookie_settings(https))
    base = "https://localhost" if https else "http://localhost"
    headers = factory.token(factory.user("editor", username="hdr"))
    client = app.test_client()
    responses = [
        client.get("/login", base_url=base),
        client.get("/healthz", base_url=base),
        client.get("/no-such-page", base_url=base),
        client.get("/static/style.css", base_url=base),
        client.get("/api/v1/items", headers=headers, base_url=base),
        client.get("/api/v1/items", base_url=base),  # 401
        client.post("/login", data={"username": "hdr", "password": "x"}, base_url=base),
    ]
    for resp in responses:
        csp = _csp(resp)
        assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
        assert csp["frame-ancestors"] == "'none'"
        assert csp["script-src"] == "'self'"  # an allow-list: no inline script, no eval
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] in ("same-origin", "strict-origin-when-cross-origin")
        if https:
            hsts = resp.headers["Strict-Transport-Security"]
            age = int(re.search(r"max-age=(\d+)", hsts).group(1))  # type: ignore[union-attr]
            assert age >= 31_536_000 and "includeSubDomains" in hsts
        else:
            assert "Strict-Transport-Security" not in resp.headers
        resp.close()


def test_templates_need_no_inline_script() -> None:
    """The CSP allows scripts from our own files only, so no template may rely on inline code."""
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", source):
            assert "src=" in tag or 'type="application/json"' in tag, (path.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", source), path.name
        assert "javascript:" not in source, path.name


# --- caching of private answers (issue 14.15) --------------------------------------------------


def _cache_control(client: Any, path: str) -> str:
    resp = client.get(path)
    resp.close()  # a static file's stream
    return str(resp.headers.get("Cache-Control", ""))


def test_signed_in_pages_and_api_answers_are_not_stored(app: Any, factory: Any) -> None:
    editor = factory.user("editor", username="cache1")
    headers = factory.token(editor)
    anonymous = app.test_client()
    for path in ("/login", "/published", "/static/style.css"):
        assert "no-store" not in _cache_control(anonymous, path), path
    browser = app.test_client()
    assert browser.post("/login", data={"username": "cache1", "password": PASSWORD}).status_code
    pages = ("/items", "/items/new", "/account/password", "/notifications", "/published")
    for path in pages:
        resp = browser.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Cache-Control"] == "no-store", path
    assert "no-store" not in _cache_control(browser, "/static/style.css")
    api = app.test_client()
    answers = [
        api.get("/api/v1/items", headers=headers),
        api.post("/api/v1/items", headers=headers, json={"title": "缓存测试"}),
        api.get("/api/v1/items/999999", headers=headers),  # an error answer too
        api.get("/api/v1/items"),  # and an unauthenticated one
    ]
    assert [r.status_code for r in answers] == [200, 201, 404, 401]
    assert {r.headers["Cache-Control"] for r in answers} == {"no-store"}


def test_csv_exports_name_their_charset_once(app: Any, factory: Any) -> None:
    editor = factory.user("editor", username="csv1")
    headers = factory.token(editor)
    app.test_client().post("/api/v1/items", headers=headers, json={"title": "导出", "body": "正文"})
    browser = app.test_client()
    browser.post("/login", data={"username": "csv1", "password": PASSWORD})
    for resp in (
        app.test_client().get("/api/v1/export/items.csv", headers=headers),
        browser.get("/export/items.csv"),
    ):
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-store"
    metrics = app.test_client().get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].count("charset") == 1

"""The interactive API documentation (/api/v1/docs) in a real browser: it renders every operation
from openapi.json under the site's CSP, and its "try it" form really calls the API with the
user's token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from review.db import db
from review.models import Item
from tests.e2e.conftest import free_port, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def db_url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    """The test app on a private port, served from a thread."""
    port = free_port()
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


def _open(page: Any, operation: str) -> Any:
    block = page.locator(f"details[data-operation='{operation}']")
    if block.get_attribute("open") is None:
        block.locator("summary").click()
    return block


def _send(block: Any) -> tuple[int, str]:
    block.get_by_role("button", name="发送请求").click()
    status = block.locator(".api-status")
    status.wait_for(timeout=20_000)
    return int(status.get_attribute("data-status")), block.locator(".api-result").inner_text()


def test_docs_page_lists_operations_and_tries_them(
    browser: Any, server: str, app: Any, factory: Any
) -> None:
    editor = factory.user("editor")
    token = factory.token(editor)["Authorization"].removeprefix("Bearer ")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    # The favicon's 404 and the deliberate 400 below are logged as "Failed to load resource";
    # anything else (a CSP refusal, a script error) is a problem.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{server}/api/v1/docs")
        page.locator("details[data-operation='create_item']").wait_for(timeout=20_000)
        spec = json.loads(page.request.get(f"{server}/api/v1/openapi.json").text())
        described = sum(len(ops) for ops in spec["paths"].values())
        assert page.locator("details.api-op").count() == described
        assert page.locator("details.api-schema-def").count() == len(spec["components"]["schemas"])

        # Without a token the form says so and sends nothing.
        block = _open(page, "list_items")
        block.get_by_role("button", name="发送请求").click()
        assert "请先在上方填入 API 令牌" in block.locator(".api-result").inner_text()

        page.get_by_label("API 令牌").fill(token)

        # Create an article through the JSON body field.
        block = _open(page, "create_item")
        body = block.locator("textarea.api-body")
        assert json.loads(body.input_value())["title"]  # prefilled from the spec's example
        body.fill(json.dumps({"title": "浏览器里新建的稿件", "body": "正文"}, ensure_ascii=False))
        status, text = _send(block)
        assert status == 201, text
        item = db.session.scalar(select(Item).where(Item.title == "浏览器里新建的稿件"))
        assert item is not None and item.created_by_id == editor.id

        # Read it back through a path parameter.
        block = _open(page, "get_item")
        block.get_by_label("item_id (path)").fill(str(item.id))
        status, text = _send(block)
        assert status == 200 and "浏览器里新建的稿件" in text

        # The server's validation answers in the page: an unknown state is a 400.
        block = _open(page, "list_items")
        block.get_by_label("state (query)").fill("lost")
        status, text = _send(block)
        assert status == 400 and "invalid_field" in text
        shot(page, "api-docs")
        assert problems == [], problems  # no CSP violation, no script error
    finally:
        context.close()

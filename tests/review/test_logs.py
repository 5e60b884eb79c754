"""Operator logs: the request id (given or generated), JSON access lines, the outbox carries it."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from review import logs


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Capture review.access as JSON lines (what KEPU_LOG_FORMAT=json installs on the root)."""
    stream = io.StringIO()
    handler = logs.make_handler(stream=stream)
    logger = logging.getLogger("review.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_request_id_is_taken_or_generated(app: Any) -> None:
    client = app.test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "lb-42.a"}).headers["X-Request-ID"] == (
        "lb-42.a"
    )
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # Anything unusual (spaces, quotes, too long) is replaced, never echoed into logs.
    for bad in ('a b"c', "x" * 65):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)


def test_access_line_is_one_json_object(app: Any, factory: Any, json_lines: io.StringIO) -> None:
    editor = factory.user("editor")
    headers = {**factory.token(editor), "X-Request-ID": "req-json-1"}
    resp = app.test_client().get("/api/v1/items", headers=headers)
    assert resp.status_code == 200
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["level"] == "INFO" and entry["logger"] == "review.access"
    assert entry["request_id"] == "req-json-1"
    assert entry["user_id"] == editor.id
    assert entry["path"] == "/api/v1/items" and entry["method"] == "GET"
    assert entry["status"] == 200
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert entry["message"] == "GET /api/v1/items 200"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", entry["time"])

    app.test_client().get("/healthz", headers={"X-Request-ID": "anon-2"})
    anon = json.loads(json_lines.getvalue().splitlines()[-1])
    assert anon["request_id"] == "anon-2" and anon["user_id"] is None


def test_exceptions_and_chinese_stay_on_one_line() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("kepu.test.json")
    logger.propagate = False
    handler = logs.make_handler(stream=stream)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("坏数据\n第二行")
        except ValueError:
            logger.exception("初筛失败 %s", 7)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "初筛失败 7" and entry["level"] == "ERROR"
    assert "ValueError: 坏数据" in entry["exc_info"]


def test_outbox_row_carries_the_request_id(app: Any, factory: Any) -> None:
    from review.db import db
    from review.models import OutboxMessage

    headers = {**factory.token(factory.user("editor")), "X-Request-ID": "submit-77"}
    resp = app.test_client().post(
        "/api/v1/items", headers=headers, json={"title": "标题", "body": "正文", "submit": True}
    )
    assert resp.status_code == 201
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert [r.task for r in rows] == ["kepu.screen_version"]
    assert rows[0].request_id == "submit-77"


def test_configure_json_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        logs.configure_json("INFO")
        logs.configure_json("INFO")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.JsonFormatter)
        assert all(h in root.handlers for h in before)
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)

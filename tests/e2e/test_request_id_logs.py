"""A request id travels web → outbox → task header → worker JSON log lines (real worker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, REDIS_URL, Factory, wait_until
from tests.e2e.conftest import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def pg_app(pg_url: str, instance: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KEPU_DATABASE_URL", pg_url)
    monkeypatch.setenv("KEPU_BROKER_URL", REDIS_URL)
    from review import create_app
    from review.db import db

    app = create_app({"TESTING": True})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_worker_json_lines_carry_the_submitting_request_id(
    pg_app: Any, worker_env: dict[str, str], instance: Path
) -> None:
    from review.db import db
    from review.models import Item

    factory = Factory()
    headers = {**factory.token(factory.user("editor")), "X-Request-ID": "trace-e2e-0042"}
    resp = pg_app.test_client().post(
        "/api/v1/items", headers=headers, json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY}
    )
    assert resp.status_code == 201
    item_id = resp.json["id"]
    resp = pg_app.test_client().post(f"/api/v1/items/{item_id}/submit", headers=headers)
    assert resp.status_code == 202

    worker = Worker(dict(worker_env, KEPU_LOG_FORMAT="json"), instance)
    try:

        def screened() -> bool:
            db.session.rollback()
            item = db.session.get(Item, item_id)
            return item is not None and item.state.value not in ("submitted", "screening")

        wait_until(screened, timeout=90)
        wait_until(lambda: "succeeded" in worker.log_text(), timeout=30)
    finally:
        worker.stop()
    lines = [line for line in worker.log_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message", "request_id"} <= set(entries[0])
    traced = [e for e in entries if e["request_id"] == "trace-e2e-0042"]
    assert any(
        "kepu.screen_version" in e["message"] and "succeeded" in e["message"] for e in traced
    ), lines
    # The relay runs from beat, not from a request: its lines carry no request id.
    relay = [
        e for e in entries if "kepu.relay_outbox" in e["message"] and "succeeded" in e["message"]
    ]
    assert relay and all(e["request_id"] is None for e in relay)

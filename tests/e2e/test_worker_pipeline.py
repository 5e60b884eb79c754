"""The whole path with a real Celery worker process on Redis and PostgreSQL (not eager)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from review.models import ScreeningReport
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, REDIS_URL, Factory, run_kepu, wait_until

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


def test_submit_screen_review_publish_with_real_worker(
    pg_app: Any, worker: Any, worker_env: dict[str, str], pg_url: str
) -> None:
    from review.db import db

    factory = Factory()
    editor = factory.user("editor")
    experts = [factory.expert(domains=("医学健康",), senior=i == 0) for i in range(2)]
    ed = factory.token(editor)
    client = pg_app.test_client()

    resp = client.post(
        "/api/v1/items",
        headers=ed,
        json={"kind": "article", "title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    assert resp.status_code == 201
    item_id = resp.json["id"]

    def reviewed() -> Any:
        db.session.rollback()
        data = client.get(f"/api/v1/items/{item_id}", headers=ed).json
        return data if data["state"] == "in_review" else None

    detail = wait_until(reviewed, timeout=60)
    assert detail["screening"]["findings"]
    assert "kepu.screen_version" in worker.log_text()

    states = []
    for expert in experts:
        ex = factory.token(expert)
        aid = client.get("/api/v1/assignments", headers=ex).json[0]["id"]
        assert client.post(f"/api/v1/assignments/{aid}/accept", headers=ex).status_code == 200
        resp = client.post(
            f"/api/v1/assignments/{aid}/decision",
            headers=ex,
            json={"decision": "approve", "comment": "已核实", "password": "correct-horse-1"},
        )
        assert resp.status_code == 200
        states.append(resp.json["item_state"])
    assert states == ["in_review", "approved"]
    resp = client.post(f"/api/v1/items/{item_id}/publish", headers=ed)
    assert resp.status_code == 200
    assert resp.json["receipt"]["experts"] == sorted(e.display_name for e in experts)

    # A redelivered (duplicate) screening message creates no second report.
    engine = create_engine(pg_url)
    with Session(engine) as s:
        version_id = s.scalar(select(ScreeningReport.version_id))
    sender = Celery(broker=REDIS_URL)
    sender.conf.broker_connection_retry_on_startup = True
    for _ in range(2):
        sender.send_task("kepu.screen_version", args=[version_id], queue="screening")
    wait_until(lambda: worker.log_text().count("'done'") >= 2, timeout=60)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ScreeningReport)) == 1
    engine.dispose()

    verify = run_kepu("audit", "verify", env=worker_env)
    assert "链完整" in verify.stdout

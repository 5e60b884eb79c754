"""RELIABILITY.md scenario 3 and the fault path of scenario 13: a request's transaction fails.

Either the code raises a database error after the item, outbox and audit rows were written,
or (PostgreSQL) the request's own connection is killed with ``pg_terminate_backend`` just before
COMMIT. The client gets a clean 503 (JSON for the API, a Chinese page for browsers) and nothing
is half-written: no item, no outbox row, no audit entry, no state change, nothing published.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from expert_pool.models import Assignment
from review.audit import AuditEvent
from review.models import Decision, Item, OutboxMessage, Version
from tests.conftest import PG_ADMIN_URL, PSEUDO_BODY, PSEUDO_TITLE, Factory

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

PASSWORD = "correct-horse-1"
UNAVAILABLE = {"error": "temporarily_unavailable", "retry": True}


@pytest.fixture
def broken_app(
    db_url: str, redis_srv: Any, instance: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The app on SQLite or PostgreSQL with the private Redis as its broker."""
    monkeypatch.setenv("KEPU_DATABASE_URL", db_url)
    monkeypatch.setenv("KEPU_BROKER_URL", redis_srv.url)
    from review import create_app
    from review.db import db

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def raise_db_error(session: Session) -> None:
    """A database failure at COMMIT time (what a dropped connection raises)."""
    raise OperationalError("COMMIT", {}, ConnectionError("fault injection: connection lost"))


def terminate_own_backend(session: Session) -> None:
    """PostgreSQL: kill this session's server process from outside, as an admin would."""
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        # The second argument waits (up to 5 s) until the backend is really gone.
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone() == (True,)


@contextlib.contextmanager
def fault_before_commit(action: Callable[[Session], None]) -> Iterator[list[int]]:
    """Run ``action`` once, in the next COMMIT of any session, after its rows were flushed.

    Yields a list that receives the number of audit entries the doomed transaction could see,
    which proves the fault came after the audit insert.
    """
    seen: list[int] = []

    def hook(session: Session) -> None:
        if seen:
            return
        session.flush()
        seen.append(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
        action(session)

    event.listen(Session, "before_commit", hook)
    try:
        yield seen
    finally:
        event.remove(Session, "before_commit", hook)


def counts() -> tuple[int, int, int, int]:
    from review.db import db

    db.session.rollback()
    return tuple(  # type: ignore[return-value]
        db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Item, Version, OutboxMessage, AuditEvent)
    )


def _faults(db_url: str) -> list[Callable[[Session], None]]:
    if db_url.startswith("postgresql"):
        return [raise_db_error, terminate_own_backend]
    return [raise_db_error]


def _login(app: Any, user: Any) -> Any:
    client = app.test_client()
    resp = client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 302
    return client


def test_submit_whose_transaction_fails_leaves_nothing(
    broken_app: Any, db_url: str, redis_srv: Any
) -> None:
    """Scenario 3, API and browser form: 503, no item/outbox/audit row, nothing published."""
    factory = Factory()
    editor = factory.user("editor")
    headers = factory.token(editor)
    browser = _login(broken_app, editor)
    for fault in _faults(db_url):
        before = counts()
        with fault_before_commit(fault) as seen:
            resp = broken_app.test_client().post(
                "/api/v1/items",
                headers=headers,
                json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
            )
        assert seen and seen[0] > before[3], "the fault must come after the audit insert"
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.is_json and {k: resp.json[k] for k in UNAVAILABLE} == UNAVAILABLE
        assert counts() == before

        with fault_before_commit(fault):
            page = browser.post(
                "/items/new", data={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "action": "submit"}
            )
        assert page.status_code == 503
        html = page.get_data(as_text=True)
        assert page.mimetype == "text/html" and "服务暂时不可用，请稍后重试" in html
        assert "Traceback" not in html
        assert counts() == before

    assert redis_srv.client().dbsize() == 0  # nothing was published for rows that never existed
    # The application is healthy afterwards: the same request now succeeds.
    resp = broken_app.test_client().post(
        "/api/v1/items",
        headers=headers,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    assert resp.status_code == 201
    assert counts()[0] == before[0] + 1


def test_approve_whose_commit_fails_changes_nothing(broken_app: Any, db_url: str) -> None:
    """Scenario 13, fault path: after the audit insert and before commit of the approve step."""
    from review.db import db
    from workers import screening

    factory = Factory()
    editor = factory.user("editor")
    experts = [factory.expert(senior=True), factory.expert()]
    client = broken_app.test_client()
    resp = client.post(
        "/api/v1/items",
        headers=factory.token(editor),
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    item_id = resp.json["id"]
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version_id is not None
    screening.screen_version(item.current_version_id)

    tokens = {expert.id: factory.token(expert) for expert in experts}

    def decide(expert: Any, *, accept: bool) -> Any:
        headers = tokens[expert.id]
        aid = client.get("/api/v1/assignments", headers=headers).json[0]["id"]
        if accept:
            resp = client.post(f"/api/v1/assignments/{aid}/accept", headers=headers)
            assert resp.status_code == 200
        return client.post(
            f"/api/v1/assignments/{aid}/decision",
            headers=headers,
            json={"decision": "approve", "comment": "已核实", "password": PASSWORD},
        )

    assert decide(experts[0], accept=True).json["item_state"] == "in_review"
    decide_first = True
    for fault in _faults(db_url):

        def snapshot() -> tuple[Any, ...]:
            db.session.rollback()
            row = db.session.get(Item, item_id)
            assert row is not None
            decisions = db.session.scalar(select(func.count()).select_from(Decision))
            states = tuple(a.state.value for a in db.session.scalars(select(Assignment)))
            return (row.state.value, row.lock_version, decisions, states, *counts())

        if decide_first:  # accept the offer first: the fault is for the approve step only
            headers = tokens[experts[1].id]
            aid = client.get("/api/v1/assignments", headers=headers).json[0]["id"]
            assert (
                client.post(f"/api/v1/assignments/{aid}/accept", headers=headers).status_code == 200
            )
            decide_first = False
        before = snapshot()
        with fault_before_commit(fault) as seen:
            resp = decide(experts[1], accept=False)
        assert seen and seen[0] > before[-1], "the fault must come after the audit insert"
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert {k: resp.json[k] for k in UNAVAILABLE} == UNAVAILABLE
        after = snapshot()
        assert after == before, "no state change and no audit entry"
        assert before[0] == "in_review"

    # Retried without the fault, the approval goes through exactly once.
    resp = decide(experts[1], accept=False)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["item_state"] == "approved"

"""Concurrent decisions, a stale page, double publish (RELIABILITY 29), on both databases.

Threads with their own application context (and so their own database session) post through
the test client at the same moment (``threading.Barrier``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from expert_pool.models import Assignment
from review.audit import AuditEvent
from review.db import db
from review.models import Decision, Item, Publication
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened

PASSWORD = "correct-horse-1"


def _together(app: Any, calls: list[Callable[[FlaskClient], Any]]) -> list[Any]:
    """Run each call in its own thread and app context, released at once; their responses."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    db.session.commit()  # end this thread's transaction: SQLite writers queue on one lock

    def run(n: int) -> None:
        with app.app_context():
            try:
                client = FlaskClient(app, app.response_class, use_cookies=False)
                barrier.wait(timeout=30)
                resp = calls[n](client)
                results[n] = (resp.status_code, resp.get_json(silent=True), dict(resp.headers))
            except BaseException as exc:  # surfaced by the assertion below
                results[n] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(r, tuple) for r in results), results
    db.session.expire_all()
    return results


def _count(model: Any, *where: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _events(item_id: int, action: str) -> int:
    return _count(AuditEvent, AuditEvent.subject_id == str(item_id), AuditEvent.action == action)


def _open(item_id: int) -> list[Assignment]:
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.item_id == item_id, Assignment.state.in_(["offered", "accepted"]))
            .order_by(Assignment.id)
        )
    )


def _accepted(app: Any, factory: Any, item_id: int) -> list[Assignment]:
    """The item's open assignments, each accepted by its expert (a decision needs that)."""
    rows = _open(item_id)
    for a in rows:
        token = factory.token(a.expert.user)
        resp = app.test_client().post(f"/api/v1/assignments/{a.id}/accept", headers=token)
        assert resp.status_code == 200, resp.json
    return rows


def _decision(token: dict[str, str], assignment_id: int, **extra: Any) -> Callable[..., Any]:
    body = {"decision": "approve", "password": PASSWORD} | extra
    return lambda c: c.post(
        f"/api/v1/assignments/{assignment_id}/decision", headers=token, json=body
    )


def test_two_tabs_decide_the_same_assignment_once(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    editor = factory.token(factory.user("editor"))
    for _ in range(8):
        item_id = submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
        mine = _accepted(app, factory, item_id)[0]
        token = factory.token(mine.expert.user)
        results = _together(
            app,
            [
                _decision(token, mine.id),
                _decision(token, mine.id, decision="request_changes", comment="请补充依据"),
            ],
        )
        statuses = sorted(r[0] for r in results)
        assert statuses == [200, 409], results
        refused = next(r[1] for r in results if r[0] == 409)
        assert refused["error"] in ("conflict", "illegal_transition"), refused
        assert _count(Decision, Decision.assignment_id == mine.id) == 1
        assert _events(item_id, "review.decided") == 1


def test_both_reviewers_at_once_conclude_the_item_once(app: Any, factory: Any) -> None:
    factory.expert(senior=True)
    factory.expert()
    editor = factory.token(factory.user("editor"))
    for _ in range(4):
        item_id = submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
        first, second = _accepted(app, factory, item_id)
        results = _together(
            app,
            [
                _decision(factory.token(first.expert.user), first.id),
                _decision(factory.token(second.expert.user), second.id),
            ],
        )
        assert {r[0] for r in results} <= {200, 409}, results
        decided = sum(r[0] == 200 for r in results)
        assert _count(Decision, Decision.item_id == item_id) == decided >= 1
        item = db.session.get(Item, item_id)
        assert item is not None
        if decided == 2:
            assert item.state.value == "approved" and _events(item_id, "item.approve") == 1
        else:  # the loser was told to reload: nothing of theirs was kept
            assert item.state.value == "in_review" and _events(item_id, "item.approve") == 0


def test_a_stale_page_cannot_overwrite(app: Any, factory: Any) -> None:
    """The expert's page showed lock_version L; someone else moved the item; L answers 409."""
    factory.expert(senior=True)
    factory.expert()
    item_id = submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    first, second = _accepted(app, factory, item_id)
    shown = db.session.get(Item, item_id).lock_version  # type: ignore[union-attr]
    c = app.test_client()
    other = c.post(
        f"/api/v1/assignments/{second.id}/decision",
        headers=factory.token(second.expert.user),
        json={"decision": "approve", "password": PASSWORD, "lock_version": shown},
    )
    assert other.status_code == 200
    db.session.expire_all()
    now = db.session.get(Item, item_id).lock_version  # type: ignore[union-attr]
    assert now > shown
    stale = c.post(
        f"/api/v1/assignments/{first.id}/decision",
        headers=factory.token(first.expert.user),
        json={"decision": "approve", "password": PASSWORD, "lock_version": shown},
    )
    assert stale.status_code == 409
    assert stale.json["error"] == "conflict" and stale.json["current_version"] == now
    assert _count(Decision, Decision.assignment_id == first.id) == 0
    # With the version the page shows after a reload, the decision goes through.
    fresh = c.post(
        f"/api/v1/assignments/{first.id}/decision",
        headers=factory.token(first.expert.user),
        json={"decision": "approve", "password": PASSWORD, "lock_version": now},
    )
    assert fresh.status_code == 200 and fresh.json["item_state"] == "approved"


def test_double_publish_with_one_key_publishes_once(app: Any, factory: Any) -> None:
    editor = factory.token(factory.user("editor"))
    for _ in range(6):
        item_id = submit_screened(app, editor, GENUINE_TITLE, GENUINE_BODY)
        assert db.session.get(Item, item_id).state.value == "cleared"  # type: ignore[union-attr]
        key = {"Idempotency-Key": f"click-{item_id}"}
        publish = lambda c, url=f"/api/v1/items/{item_id}/publish", h=editor | key: c.post(  # noqa: E731
            url, headers=h
        )
        results = _together(app, [publish, publish])
        assert [r[0] for r in results] == [200, 200], results
        assert results[0][1]["receipt"] == results[1][1]["receipt"]  # the first answer, twice
        assert _count(Publication, Publication.item_id == item_id) == 1
        assert _events(item_id, "item.publish") == 1
        assert _events(item_id, "publication.issued") == 1
        # A later retry with the key replays; a new key is a second publish: 409.
        c = app.test_client()
        again = c.post(f"/api/v1/items/{item_id}/publish", headers=editor | key)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        other = c.post(
            f"/api/v1/items/{item_id}/publish", headers=editor | {"Idempotency-Key": "other"}
        )
        assert other.status_code == 409 and other.json["error"] == "already_published"


def test_double_publish_with_two_keys_publishes_once(app: Any, factory: Any) -> None:
    editor = factory.token(factory.user("editor"))
    item_id = submit_screened(app, editor, GENUINE_TITLE, GENUINE_BODY)
    calls = [
        lambda c, k=k: c.post(
            f"/api/v1/items/{item_id}/publish", headers=editor | {"Idempotency-Key": k}
        )
        for k in ("a", "b")
    ]
    results = _together(app, calls)
    assert sorted(r[0] for r in results) == [200, 409], results
    assert _count(Publication, Publication.item_id == item_id) == 1
    assert _events(item_id, "item.publish") == 1


def test_a_bad_idempotency_key_is_refused(app: Any, factory: Any) -> None:
    editor = factory.token(factory.user("editor"))
    item_id = submit_screened(app, editor, GENUINE_TITLE, GENUINE_BODY)
    resp = app.test_client().post(
        f"/api/v1/items/{item_id}/publish", headers=editor | {"Idempotency-Key": "k" * 101}
    )
    assert resp.status_code == 400
    assert _count(Publication, Publication.item_id == item_id) == 0


def test_the_publish_button_publishes_once_however_often_it_is_pressed(
    app: Any, factory: Any
) -> None:
    """The item page's form carries a key made when the page was shown: two concurrent
    posts of it (a double click) and a later resend publish once and both answer the page."""
    import re

    user = factory.user("editor")
    item_id = submit_screened(app, factory.token(user), GENUINE_TITLE, GENUINE_BODY)
    page = app.test_client()
    login = {"username": user.username, "password": PASSWORD}
    assert page.post("/login", data=login).status_code == 302
    html = page.get(f"/items/{item_id}").get_data(as_text=True)
    form = {
        name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
        for name in ("idempotency_key", "content_sha256")
    }
    cookie = page.get_cookie("kepu_session")
    assert cookie is not None

    signed_in = {"Cookie": f"kepu_session={cookie.value}"}

    def click(c: FlaskClient) -> Any:
        return c.post(f"/items/{item_id}/publish", data=form, headers=signed_in)

    results = _together(app, [click, click])
    assert [r[0] for r in results] == [302, 302], results
    assert all(r[2]["Location"].endswith(f"/items/{item_id}") for r in results), results
    resent = page.post(f"/items/{item_id}/publish", data=form)  # later: still the first answer
    assert resent.status_code == 302 and resent.headers["Location"].endswith(f"/items/{item_id}")
    assert _count(Publication, Publication.item_id == item_id) == 1
    assert _events(item_id, "item.publish") == 1
    # The page shown again has a new key: publishing a published item is a conflict.
    again = dict(form, idempotency_key="a-new-rendering")
    assert page.post(f"/items/{item_id}/publish", data=again).status_code == 409

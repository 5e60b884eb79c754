"""Webhooks against a real HTTP receiver on 127.0.0.1: signed, retried, none lost, none doubled.

The receiver is a plain ``http.server`` in a thread; the signature is checked with an
independent HMAC implementation here (not the app's). Tasks are called directly with the app
context (tests/e2e/test_webhooks_worker.py runs one through a real Celery worker).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from review.audit import AuditEvent
from review.db import db, utcnow
from review.models import Item, OutboxMessage
from review.webhooks import (
    DELIVER_TASK,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    backoff,
    create_subscriber,
)
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened
from workers.tasks import deliver_webhook

SECRET = "test-secret-0123456789abcdef"
PASSWORD = "correct-horse-1"
PORT_A, PORT_B = 5101, 5102


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server; answers with the queued statuses, then ``default``."""

    port: int
    answers: list[int] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    location: str | None = None
    got: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def _serve(receiver: Receiver) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                receiver.got.append(Received(self.path, dict(self.headers.items()), body))
                status = receiver.answers.pop(0) if receiver.answers else receiver.default
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            if receiver.location and 300 <= status < 400:
                self.send_header("Location", receiver.location)
            reply = f"收到 {status}".encode()
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(PORT_A)
    server = _serve(rec)
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def other_host() -> Iterator[Receiver]:
    rec = Receiver(PORT_B)
    server = _serve(rec)
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """An independent check of X-Kepu-Signature (what a receiver would write)."""
    parts = dict(p.split("=", 1) for p in headers["X-Kepu-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def _subscribe(factory: Any, url: str, events: list[str], **kw: Any) -> Any:
    admin = factory.user("admin")
    sub = create_subscriber(url=url, events=events, actor=admin, secret=SECRET, **kw)
    db.session.commit()
    return sub


def _deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _due_messages() -> list[OutboxMessage]:
    """Unsent deliver-webhook outbox messages; marked sent as the relay would."""
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.task == DELIVER_TASK, OutboxMessage.sent_at.is_(None)
            )
        )
    )


def _run_outbox(wait_for_due: bool = True) -> list[str]:
    """Run every deliver-webhook message in the outbox, as the relay and a worker would."""
    results = []
    for msg in _due_messages():
        if wait_for_due:
            pause = (msg.available_at - utcnow()).total_seconds()
            if pause > 0:
                time.sleep(pause + 0.05)
        msg.sent_at = msg.available_at
        db.session.commit()
        results.append(deliver_webhook(*msg.args))
    return results


def test_a_flagged_item_is_posted_signed_and_once(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    sub = _subscribe(factory, receiver.url, ["item.flagged"])
    editor = factory.user("editor")
    item_id = submit_screened(app, factory.token(editor), PSEUDO_TITLE, PSEUDO_BODY)
    assert db.session.get(Item, item_id).state.value in ("flagged", "in_review")  # type: ignore[union-attr]

    [row] = _deliveries()
    assert (row.event, row.status, row.subscriber_id) == (
        "item.flagged",
        DeliveryStatus.pending,
        sub.id,
    )
    # The delivery was written with the audit event of the change, in its transaction.
    flag_event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "item.flag"))
    assert flag_event is not None and row.audit_seq == flag_event.seq

    assert _run_outbox() == ["delivered"]
    assert deliver_webhook(row.id) == "skipped"  # a redelivered message sends nothing twice
    assert len(receiver.got) == 1
    got = receiver.got[0]
    assert got.path == "/hook"
    assert got.headers["X-Kepu-Event"] == "item.flagged"
    assert got.headers["X-Kepu-Delivery"] == row.delivery_id
    assert verify(SECRET, got.headers, got.body)
    assert not verify("another-secret-0123456789", got.headers, got.body)
    assert not verify(SECRET, got.headers, got.body.replace(b"flagged", b"cleared"))
    payload = json.loads(got.body)
    assert payload["event"] == "item.flagged" and payload["id"] == row.delivery_id
    assert payload["item"]["id"] == item_id
    timestamp = int(got.headers["X-Kepu-Signature"].split(",")[0][2:])
    assert abs(timestamp - time.time()) < 600

    row = _deliveries()[0]
    assert row.status is DeliveryStatus.delivered and row.attempts == 1
    assert row.response_status == 200 and row.response_excerpt == "收到 200"
    assert row.duration_ms is not None and row.next_attempt_at is None


def test_retried_after_500_then_delivered_with_the_same_id(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    app.config["WEBHOOK_RETRY_SCHEDULE"] = (1, 1)
    _subscribe(factory, receiver.url, ["item.flagged"])
    receiver.answers = [500, 503]
    editor = factory.user("editor")
    submit_screened(app, factory.token(editor), PSEUDO_TITLE, PSEUDO_BODY)
    [row] = _deliveries()

    assert _run_outbox(wait_for_due=False) == ["retry"]
    row = _deliveries()[0]
    assert row.status is DeliveryStatus.pending and row.attempts == 1
    assert row.response_status == 500 and row.next_attempt_at is not None
    assert deliver_webhook(row.id) == "skipped"  # not due yet: nothing sent early
    assert len(receiver.got) == 1

    assert _run_outbox() == ["retry"]  # 503
    assert _run_outbox() == ["delivered"]
    assert _run_outbox() == []
    ids = {r.headers["X-Kepu-Delivery"] for r in receiver.got}
    assert len(receiver.got) == 3 and ids == {row.delivery_id}
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.got)
    row = _deliveries()[0]
    assert row.status is DeliveryStatus.delivered and row.attempts == 3
    codes = list(
        db.session.scalars(
            select(WebhookAttempt.status_code)
            .where(WebhookAttempt.delivery_pk == row.id)
            .order_by(WebhookAttempt.id)
        )
    )
    assert codes == [500, 503, 200]


def test_backoff_is_exponential_and_bounded() -> None:
    schedule = (60, 300, 1800, 7200, 21600)
    assert [backoff(n, schedule) for n in range(1, 8)] == [
        60,
        300,
        1800,
        7200,
        21600,
        21600,
        21600,
    ]


def test_gives_up_after_max_attempts_and_an_admin_resends(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    app.config.update(WEBHOOK_RETRY_SCHEDULE=(0,), WEBHOOK_MAX_ATTEMPTS=3)
    _subscribe(factory, receiver.url, ["item.flagged"])
    receiver.default = 500
    editor = factory.user("editor")
    submit_screened(app, factory.token(editor), PSEUDO_TITLE, PSEUDO_BODY)
    assert _run_outbox() == ["retry"]
    assert _run_outbox() == ["retry"]
    assert _run_outbox() == ["failed"]
    assert _run_outbox() == []
    [row] = _deliveries()
    assert row.status is DeliveryStatus.failed and row.attempts == 3
    assert len(receiver.got) == 3

    receiver.default = 200
    admin = factory.user("admin", username="hookadmin", password=PASSWORD)
    client = app.test_client()
    client.post("/login", data={"username": admin.username, "password": PASSWORD})
    page = client.get("/admin/webhooks/deliveries")
    assert page.status_code == 200 and "重新发送" in page.get_data(as_text=True)
    detail = client.get(f"/admin/webhooks/deliveries/{row.id}").get_data(as_text=True)
    assert detail.count("<td>500</td>") == 3 and "收到 500" in detail and row.delivery_id in detail
    assert SECRET not in detail
    resp = client.post(f"/admin/webhooks/deliveries/{row.id}/resend", data={"back": "detail"})
    assert resp.status_code == 302 and resp.location.endswith(f"/deliveries/{row.id}")
    assert _run_outbox() == ["delivered"]
    row = _deliveries()[0]
    assert row.status is DeliveryStatus.delivered
    assert {r.headers["X-Kepu-Delivery"] for r in receiver.got} == {row.delivery_id}
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .where(WebhookAttempt.delivery_pk == row.id)
        )
        == 4
    )
    assert (
        db.session.scalar(select(AuditEvent).where(AuditEvent.action == "webhook.delivery_resent"))
        is not None
    )


def test_redirect_to_another_host_is_not_followed(
    app: Any, factory: Any, receiver: Receiver, other_host: Receiver
) -> None:
    app.config.update(WEBHOOK_RETRY_SCHEDULE=(0,), WEBHOOK_MAX_ATTEMPTS=1)
    receiver.answers = [307]
    receiver.location = f"http://localhost:{PORT_B}/stolen"
    _subscribe(factory, receiver.url, ["item.flagged"])
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    assert _run_outbox() == ["failed"]
    assert other_host.got == []
    row = _deliveries()[0]
    assert row.response_status == 307 and "其他主机" in (row.last_error or "")


def test_redirect_on_the_same_host_keeps_the_post(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    receiver.answers = [308]
    receiver.location = "/moved"
    _subscribe(factory, receiver.url, ["item.flagged"])
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    assert _run_outbox() == ["delivered"]
    assert [r.path for r in receiver.got] == ["/hook", "/moved"]
    assert verify(SECRET, receiver.got[1].headers, receiver.got[1].body)


def test_a_hanging_receiver_times_out(app: Any, factory: Any, receiver: Receiver) -> None:
    app.config.update(WEBHOOK_TIMEOUT=0.5, WEBHOOK_RETRY_SCHEDULE=(60,))
    receiver.delay = 3
    _subscribe(factory, receiver.url, ["item.flagged"])
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    started = time.monotonic()
    assert _run_outbox() == ["retry"]
    assert time.monotonic() - started < 30  # generous: the point is that it does not hang
    row = _deliveries()[0]
    assert "超时" in (row.last_error or "") and row.response_status is None


def test_only_active_subscribers_of_the_event_get_deliveries(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    _subscribe(factory, receiver.url, ["item.published"])
    _subscribe(factory, receiver.url, ["item.flagged"], is_active=False)
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    assert _deliveries() == []


def test_many_events_none_lost_none_doubled(app: Any, factory: Any, receiver: Receiver) -> None:
    app.config.update(WEBHOOK_RETRY_SCHEDULE=(0,))
    _subscribe(factory, receiver.url, ["item.flagged"])
    receiver.answers = [500, 200, 500]  # some fail once
    ed = factory.token(factory.user("editor"))
    items = [submit_screened(app, ed, f"{PSEUDO_TITLE}{n}", PSEUDO_BODY) for n in range(5)]
    rows = _deliveries()
    assert len(rows) == 5
    for _ in range(4):  # the broker may deliver a message twice: run each one twice
        for msg in _due_messages():
            msg.sent_at = msg.available_at
            db.session.commit()
            deliver_webhook(*msg.args)
            deliver_webhook(*msg.args)
    rows = _deliveries()
    assert all(r.status is DeliveryStatus.delivered for r in rows)
    by_id: dict[str, int] = {}
    for r in receiver.got:
        by_id[r.headers["X-Kepu-Delivery"]] = by_id.get(r.headers["X-Kepu-Delivery"], 0) + 1
    assert set(by_id) == {r.delivery_id for r in rows}
    assert sum(by_id.values()) == 5 + 2  # each once, plus one retry for each of the two 500s
    assert {json.loads(r.body)["item"]["id"] for r in receiver.got} == set(items)


def test_every_event_of_the_workflow_is_announced(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    """flagged → assigned → decided → approved → published → recalled, each a delivery."""
    from review.webhooks import EVENTS

    _subscribe(factory, receiver.url, list(EVENTS))
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    experts = [factory.expert(senior=i == 0) for i in range(2)]
    auditor = factory.token(factory.user("auditor"))
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for expert in experts:
        token = factory.token(expert)
        for a in client.get("/api/v1/assignments", headers=token).json:
            client.post(f"/api/v1/assignments/{a['id']}/accept", headers=token)
            resp = client.post(
                f"/api/v1/assignments/{a['id']}/decision",
                headers=token,
                json={"decision": "approve", "password": PASSWORD},
            )
            assert resp.status_code == 200, resp.json
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    resp = client.post(f"/api/v1/items/{item_id}/recall", headers=auditor, json={"reason": "复核"})
    assert resp.status_code == 200, resp.json
    events = [r.event for r in _deliveries()]
    assert set(events) == set(EVENTS)
    assert events.count("review.decided") == 2 and events.count("item.assigned") == 2
    _run_outbox()
    assert sorted(r.headers["X-Kepu-Event"] for r in receiver.got) == sorted(events)
    published = next(
        json.loads(r.body) for r in receiver.got if r.headers["X-Kepu-Event"] == "item.published"
    )
    assert published["receipt"]["content_sha256"] == published["item"]["content_sha256"]
    # Event data tells the decision, not who made it (the signed receipt names the experts).
    for r in receiver.got:
        shown = json.dumps({k: v for k, v in json.loads(r.body).items() if k != "receipt"})
        for expert in experts:
            assert expert.display_name not in shown
    assert any(e.display_name in published["receipt"]["experts"] for e in experts)


def test_a_cleared_item_published_is_announced(app: Any, factory: Any, receiver: Receiver) -> None:
    _subscribe(factory, receiver.url, ["item.published", "item.flagged"])
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    assert _deliveries() == []
    assert app.test_client().post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    assert [r.event for r in _deliveries()] == ["item.published"]


def test_secrets_stay_out_of_logs_and_the_ledger(
    app: Any, factory: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.config["WEBHOOK_RETRY_SCHEDULE"] = (0,)
    receiver.answers = [500]
    url = receiver.url + "?token=query-secret-value"
    _subscribe(factory, url, ["item.flagged"])
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    _run_outbox()
    _run_outbox()
    assert len(receiver.got) == 2 and receiver.got[0].path == "/hook?token=query-secret-value"
    assert "webhook" in caplog.text
    assert SECRET not in caplog.text and "query-secret-value" not in caplog.text
    ledger = json.dumps([e.to_dict() for e in db.session.scalars(select(AuditEvent))])
    assert "webhook.subscriber_created" in ledger
    assert SECRET not in ledger and "query-secret-value" not in ledger


def test_admin_registers_a_subscriber_and_sees_the_secret_once(app: Any, factory: Any) -> None:
    admin = factory.user("admin", username="hookadmin", password=PASSWORD)
    auditor = factory.user("auditor", username="hookauditor", password=PASSWORD)
    client = app.test_client()
    client.post("/login", data={"username": admin.username, "password": PASSWORD})
    bad = client.post("/admin/webhooks", data={"url": "ftp://x", "events": ["item.flagged"]})
    assert bad.status_code == 400 and "http://" in bad.get_data(as_text=True)
    resp = client.post(
        "/admin/webhooks",
        data={
            "name": "市融媒体中心",
            "url": "https://cms.example.org/kepu?key=abc",
            "events": ["item.published", "item.recalled"],
            "is_active": "1",
        },
    )
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    page = resp.get_data(as_text=True)
    from review.webhooks import WebhookSubscriber

    sub = db.session.scalar(select(WebhookSubscriber))
    assert sub is not None and sub.secret.startswith("whsec_") and len(sub.secret) > 40
    assert sub.secret in page and "只显示这一次" in page
    listing = client.get("/admin/webhooks").get_data(as_text=True)
    assert "市融媒体中心" in listing and sub.secret not in listing
    assert sub.secret_hint in listing
    # Edit, then rotate: a new secret, shown once, the old one gone.
    resp = client.post(
        f"/admin/webhooks/{sub.id}",
        data={"name": "市融媒体中心", "url": sub.url, "events": ["item.published"]},
    )
    assert resp.status_code == 302
    db.session.expire_all()
    assert sub.events == ["item.published"] and sub.is_active is False
    old = sub.secret
    rotated = client.post(f"/admin/webhooks/{sub.id}/secret").get_data(as_text=True)
    db.session.expire_all()
    assert sub.secret != old and sub.secret in rotated
    assert client.get(f"/admin/webhooks/{sub.id}").status_code == 200

    viewer = app.test_client()
    viewer.post("/login", data={"username": auditor.username, "password": PASSWORD})
    listing = viewer.get("/admin/webhooks")
    assert listing.status_code == 200 and sub.secret not in listing.get_data(as_text=True)
    assert viewer.get("/admin/webhooks/deliveries").status_code == 200
    refused = viewer.post(
        "/admin/webhooks", data={"url": "http://127.0.0.1:5105/", "events": ["item.flagged"]}
    )
    assert refused.status_code == 403
    assert viewer.get(f"/admin/webhooks/{sub.id}").status_code == 403
    assert app.test_client().get("/admin/webhooks").status_code == 302  # login first


def test_a_delivery_whose_message_was_lost_is_requeued_by_the_reconciler(
    app: Any, factory: Any, receiver: Receiver
) -> None:
    """The broker lost the message (or the worker died mid-try): reconcile sends it later."""
    from datetime import timedelta

    from workers.tasks import reconcile

    _subscribe(factory, receiver.url, ["item.flagged"])
    submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    for msg in _due_messages():  # published to a broker that then lost it
        msg.sent_at = utcnow()
    db.session.commit()
    [row] = _deliveries()
    assert reconcile()["webhooks"] == 0  # not stale yet
    row.next_attempt_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert reconcile()["webhooks"] == 1
    assert _run_outbox() == ["delivered"]
    assert reconcile()["webhooks"] == 0
    assert len(receiver.got) == 1 and _deliveries()[0].status is DeliveryStatus.delivered


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_registers_and_lists_subscribers(app: Any, db_url: str, instance: Any) -> None:
    import os

    from review.webhooks import WebhookSubscriber
    from tests.conftest import run_kepu

    env = dict(os.environ, KEPU_DATABASE_URL=db_url, KEPU_INSTANCE_PATH=str(instance))
    out = run_kepu(
        "webhooks", "add", "http://127.0.0.1:5105/cli", "--event", "item.recalled", env=env
    )
    secret = out.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and "只显示这一次" in out.stderr
    listing = run_kepu("webhooks", "list", env=env).stdout
    assert "item.recalled" in listing and secret not in listing
    bad = run_kepu("webhooks", "add", "file:///etc/passwd", env=env, check=False)
    assert bad.returncode == 2 and "http://" in bad.stderr
    db.session.expire_all()
    [sub] = db.session.scalars(select(WebhookSubscriber)).all()
    assert sub.secret == secret and sub.events == ["item.recalled"]


def test_admin_sends_a_signed_ping(app: Any, factory: Any, receiver: Receiver) -> None:
    sub = _subscribe(factory, receiver.url, ["item.published"], is_active=False)
    admin = factory.user("admin", username="pingadmin", password=PASSWORD)
    client = app.test_client()
    client.post("/login", data={"username": admin.username, "password": PASSWORD})
    assert "发送测试事件" in client.get(f"/admin/webhooks/{sub.id}").get_data(as_text=True)
    resp = client.post(f"/admin/webhooks/{sub.id}/ping")
    assert resp.status_code == 302 and f"subscriber={sub.id}" in resp.location
    assert _run_outbox() == ["delivered"]
    [got] = receiver.got
    assert got.headers["X-Kepu-Event"] == "ping" and verify(SECRET, got.headers, got.body)
    assert json.loads(got.body)["data"] == {"subscriber": sub.id}

"""Notifications: in-app rows, and e-mail through a real SMTP receiver on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from expert_pool.models import Expert, Notification
from review.db import db
from review.models import Item, OutboxMessage
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from tests.e2e.conftest import free_port
from workers import screening, tasks


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
        )
        return "250 OK"


@pytest.fixture
def inbox(app: Any) -> Iterator[Inbox]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="kepu@example.org")
    try:
        yield handler
    finally:
        controller.stop()


def _flag(app: Any, factory: Any) -> int:
    ed = factory.token(factory.user("editor"))
    resp = app.test_client().post(
        "/api/v1/items",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    item = db.session.get(Item, resp.json["id"])
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    return int(resp.json["id"])


def _with_email(user: Any, address: str, mode: str = "immediate") -> None:
    user.email = address
    expert = Expert.for_user(user)
    assert expert is not None
    expert.notify_mode = mode
    db.session.commit()


def test_offer_is_emailed_once(app: Any, factory: Any, inbox: Inbox) -> None:
    a, b = factory.expert(senior=True), factory.expert()
    _with_email(a, "a@example.org")
    _with_email(b, "b@example.org")
    _flag(app, factory)
    notes = db.session.scalars(select(Notification).where(Notification.kind == "offer")).all()
    assert {n.user_id for n in notes} == {a.id, b.id}
    queued = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.task == "kepu.send_email")
    ).all()
    assert sorted(m.args[0] for m in queued) == sorted(n.id for n in notes)
    for note in notes:
        assert tasks.send_email.run(note.id) == "sent"
        assert tasks.send_email.run(note.id) == "done"  # a redelivered message sends nothing
    assert len(inbox.messages) == 2
    message = inbox.messages[0]
    assert "新的审核邀请" in message["Subject"] and PSEUDO_TITLE in message["Subject"]
    assert message["To"] in ("a@example.org", "b@example.org")
    assert "/items/" in message.get_content()
    assert all(n.emailed_at is not None for n in notes)


def test_digest_collects_everything_in_one_mail(app: Any, factory: Any, inbox: Inbox) -> None:
    a, b = factory.expert(senior=True), factory.expert()
    _with_email(a, "a@example.org", mode="digest")
    _with_email(b, "b@example.org", mode="digest")
    _flag(app, factory)
    _flag(app, factory)
    assert not db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.task == "kepu.send_email")
    ).all()
    assert tasks.send_digests.run() == 2
    assert len(inbox.messages) == 2
    assert all("2 条新通知" in m["Subject"] for m in inbox.messages)
    assert tasks.send_digests.run() == 0


def test_in_app_notifications_page_and_api(app: Any, factory: Any) -> None:
    expert = factory.expert(senior=True)
    factory.expert()
    _flag(app, factory)
    headers = factory.token(expert)
    c = app.test_client()
    notes = c.get("/api/v1/notifications", headers=headers).json
    assert len(notes) == 1 and notes[0]["kind"] == "offer" and not notes[0]["read"]
    assert c.post(f"/api/v1/notifications/{notes[0]['id']}/read", headers=headers).json["read"]
    assert c.get("/api/v1/notifications?unread=1", headers=headers).json == []
    other = factory.token(factory.user("editor"))
    assert c.post(f"/api/v1/notifications/{notes[0]['id']}/read", headers=other).status_code == 404


def test_without_smtp_nothing_is_sent(app: Any, factory: Any) -> None:
    a = factory.expert(senior=True)
    factory.expert()
    _with_email(a, "a@example.org")
    _flag(app, factory)
    note = db.session.scalar(select(Notification).where(Notification.user_id == a.id))
    assert note is not None
    assert tasks.send_email.run(note.id) == "no_smtp"
    assert note.emailed_at is None

"""Notifications: in-app rows, e-mailed at once or in a digest (through the outbox)."""

from __future__ import annotations

from sqlalchemy import select

from expert_pool.models import Expert, Notification
from review.db import db
from review.models import Item, User
from review.operations import enqueue

EMAIL_TASK = "kepu.send_email"

KIND_LABELS = {
    "offer": "新的审核邀请",
    "reminder": "审核期限提醒",
    "reassigned": "审核任务已转交",
    "outcome": "审核结果",
    "escalated": "需要管理员处理",
}


def notify(
    user: User,
    kind: str,
    *,
    title: str,
    body: str = "",
    item: Item | None = None,
    email: bool = True,
) -> Notification:
    """Create an in-app notification; queue an immediate e-mail unless the user chose a digest."""
    note = Notification(
        user_id=user.id, kind=kind, item_id=item.id if item else None, title=title[:300], body=body
    )
    db.session.add(note)
    db.session.flush()
    if email and user.email and _mode(user) == "immediate":
        enqueue(EMAIL_TASK, note.id)
    return note


def _mode(user: User) -> str:
    expert = db.session.scalar(select(Expert).where(Expert.user_id == user.id))
    return expert.notify_mode if expert else "immediate"


def unread_count(user: User) -> int:
    """How many notifications the user has not read."""
    from sqlalchemy import func

    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        )
        or 0
    )

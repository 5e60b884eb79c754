"""Notifications: in-app rows, e-mailed at once or in a digest (through the outbox)."""

from __future__ import annotations

from email.message import EmailMessage

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
    "revoked": "审核任务已撤销",
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


def compose(notes: list[Notification], *, to: str, sender: str, base_url: str) -> EmailMessage:
    """One e-mail for one notification, or a digest of several."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if len(notes) == 1:
        msg["Subject"] = f"【科普审查平台】{notes[0].title}"
    else:
        msg["Subject"] = f"【科普审查平台】{len(notes)} 条新通知"
    lines = []
    for note in notes:
        lines.append(f"· {KIND_LABELS.get(note.kind, note.kind)}：{note.title}")
        if note.body:
            lines.append(f"  {note.body}")
        if note.item_id:
            lines.append(f"  {base_url.rstrip('/')}/items/{note.item_id}")
    lines.append("")
    lines.append(f"登录平台查看全部通知：{base_url.rstrip('/')}/notifications")
    msg.set_content("\n".join(lines))
    return msg


def pending_digests() -> dict[int, list[Notification]]:
    """Unsent notifications of users who chose a digest (and have an e-mail address)."""
    rows = db.session.scalars(
        select(Notification)
        .join(User, User.id == Notification.user_id)
        .join(Expert, Expert.user_id == User.id)
        .where(
            Notification.emailed_at.is_(None),
            Expert.notify_mode == "digest",
            User.email.is_not(None),
        )
        .order_by(Notification.id)
    ).all()
    grouped: dict[int, list[Notification]] = {}
    for note in rows:
        grouped.setdefault(note.user_id, []).append(note)
    return grouped

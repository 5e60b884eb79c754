"""Task entry points: thin, named, JSON arguments, idempotent, commit at the end."""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import timedelta
from email.message import EmailMessage

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from expert_pool.models import OPEN_STATES, Assignment, Notification
from expert_pool.notifications import compose, pending_digests
from expert_pool.operations import assign_reviewers
from expert_pool.operations import sweep_deadlines as sweep
from review import policy, webhooks
from review.audit import SYSTEM
from review.db import db, utcnow
from review.lifecycle import ItemState
from review.models import Item, OutboxMessage
from review.operations import requeue_stuck
from workers import faults, media, screening
from workers.config import (
    MEDIA_SOFT_TIME_LIMIT,
    MEDIA_TIME_LIMIT,
    REQUEST_ID_HEADER,
    RETRY_BACKOFF_MAX,
    SCREENING_RETRY_MAX,
)

log = logging.getLogger(__name__)

RELAY_BATCH = 100
RELAY_LEASE_SECONDS = 30
#: A pending webhook delivery this far past its time lost its message (or its worker died).
WEBHOOK_STALE_AFTER = timedelta(minutes=10)


#: Errors worth another try: the network, the database or the broker was away, or the task ran
#: out of time on a busy machine. Anything else (a corrupt rule pack, a bug) fails at once.
TRANSIENT_ERRORS = (OSError, OperationalError, SoftTimeLimitExceeded)


@shared_task(name="kepu.screen_version", bind=True, max_retries=2)
def screen_version(self, version_id: int) -> str:  # type: ignore[no-untyped-def]
    """Screen one version with the rule engine and route it to cleared or flagged."""
    if (self.request.delivery_info or {}).get("redelivered"):
        log.info("screening of version %s: redelivered message", version_id)
    try:
        return screening.screen_version(int(version_id))
    except Exception as exc:
        db.session.rollback()
        if not isinstance(exc, TRANSIENT_ERRORS):
            # Permanent: retrying cannot help; experts see the version as "screening failed".
            log.exception("screening of version %s failed permanently", version_id)
            screening.give_up(int(version_id), f"初筛出错：{type(exc).__name__}")
            raise
        if self.request.retries >= self.max_retries:
            log.exception("screening of version %s failed for good", version_id)
            screening.give_up(int(version_id), f"初筛出错：{type(exc).__name__}")
            return "failed"
        countdown = min(2 ** (self.request.retries + 1), SCREENING_RETRY_MAX)
        log.warning(
            "screening of version %s failed (%s); retry %s in %s s",
            version_id,
            exc,
            self.request.retries + 1,
            countdown,
        )
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(
    name="kepu.process_media", time_limit=MEDIA_TIME_LIMIT, soft_time_limit=MEDIA_SOFT_TIME_LIMIT
)
def process_media(version_id: int) -> str:
    """Embedded subtitles, OCR and thumbnail of a video version, then hand it to screening."""
    return media.process_media(int(version_id))


#: Set by a SIGTERM handler (``kepu outbox relay --loop``): finish the current row, then stop.
relay_stopping = threading.Event()


def _publish_backoff(attempts: int) -> timedelta:
    """How long a row waits after a failed publish: 1, 2, 4, 8 s, then every 10 s."""
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), 10))


@shared_task(name="kepu.relay_outbox")
def relay_outbox() -> int:
    """Publish committed outbox rows to the broker; a row is marked sent only after publishing.

    Each row is claimed with a lease (so two relays never publish it at the same moment), then
    published, then marked sent. A relay that dies between the two publishes the row again
    later, which is harmless because every task is idempotent. When the broker is down or hung
    the publish fails within the socket timeouts; the row is released with a short backoff and
    the run ends (one WARNING, no error spam).
    """
    celery_app = current_app.extensions["celery"]
    now = utcnow()
    ids = db.session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.id)
        .limit(RELAY_BATCH)
    ).all()
    db.session.rollback()
    sent = 0
    for msg_id in ids:
        if relay_stopping.is_set():
            log.info("relay stopping: %s rows sent, the rest stay for the next run", sent)
            break
        # Claim with a lease, so concurrent relays do not both publish the same row.
        claimed = db.session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == msg_id,
                OutboxMessage.sent_at.is_(None),
                OutboxMessage.available_at <= now,
            )
            .values(
                attempts=OutboxMessage.attempts + 1,
                available_at=utcnow() + timedelta(seconds=RELAY_LEASE_SECONDS),
            )
        ).rowcount
        db.session.commit()
        if claimed != 1:
            continue
        msg = db.session.get(OutboxMessage, msg_id)
        assert msg is not None
        try:
            celery_app.send_task(
                msg.task,
                args=list(msg.args),
                task_id=f"outbox-{msg.id}-{msg.attempts}",
                headers={REQUEST_ID_HEADER: msg.request_id} if msg.request_id else None,
            )
        except Exception as exc:  # broker down or hung: release the row with a short backoff
            msg.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            msg.available_at = utcnow() + _publish_backoff(msg.attempts)
            db.session.commit()
            log.warning("broker unavailable, outbox row %s kept: %s", msg_id, exc)
            break
        faults.relay_point("relay_after_publish")  # tests only
        msg.sent_at = utcnow()
        db.session.commit()
        sent += 1
        faults.relay_point("relay_slow")  # tests only
    return sent


@shared_task(name="kepu.reconcile")
def reconcile() -> dict[str, int]:
    """Re-queue versions stuck in screening; offer flagged items that have no open review."""
    stuck_after = timedelta(seconds=policy.effective().stuck_after)
    media_after = timedelta(seconds=int(current_app.config.get("MEDIA_STUCK_AFTER", 600)))
    requeued = requeue_stuck(older_than=stuck_after, media_older_than=media_after)
    waiting = db.session.scalars(
        select(Item).where(Item.state == ItemState.flagged, Item.needs_admin.is_(False))
    ).all()
    offered = 0
    for item in waiting:
        has_open = db.session.scalar(
            select(Assignment.id).where(
                Assignment.item_id == item.id, Assignment.state.in_(OPEN_STATES)
            )
        )
        if not has_open:
            offered += len(assign_reviewers(item, deadlines=screening.deadlines_from_config()))
    hooks = webhooks.requeue_stale(older_than=WEBHOOK_STALE_AFTER)
    db.session.commit()
    return {"requeued": requeued, "offered": offered, "webhooks": hooks}


@shared_task(name="kepu.sweep_deadlines")
def sweep_deadlines() -> int:
    """Expire overdue offers and reviews and reassign them."""
    expired = sweep(deadlines=screening.deadlines_from_config())
    db.session.commit()
    return expired


def _send(message: EmailMessage) -> None:
    """Deliver through the configured SMTP server (bounded timeouts)."""
    cfg = current_app.config
    with smtplib.SMTP(str(cfg["SMTP_HOST"]), int(cfg["SMTP_PORT"]), timeout=15) as smtp:
        if cfg["SMTP_STARTTLS"]:
            smtp.starttls()
        if cfg["SMTP_USER"]:
            smtp.login(str(cfg["SMTP_USER"]), str(cfg["SMTP_PASSWORD"] or ""))
        smtp.send_message(message)


@shared_task(name="kepu.send_email", bind=True, max_retries=5)
def send_email(self, notification_id: int) -> str:  # type: ignore[no-untyped-def]
    """E-mail one notification at once; a redelivered message sends nothing twice."""
    cfg = current_app.config
    note = db.session.get(Notification, int(notification_id))
    if note is None or note.emailed_at is not None:
        return "done"
    if not cfg["SMTP_HOST"] or not note.user.email:
        return "no_smtp"
    message = compose(
        [note], to=note.user.email, sender=str(cfg["MAIL_FROM"]), base_url=str(cfg["BASE_URL"])
    )
    try:
        _send(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail to %s failed: %s", note.user.email, exc)
        raise self.retry(
            exc=exc, countdown=min(60 * 2**self.request.retries, RETRY_BACKOFF_MAX)
        ) from exc
    note.emailed_at = utcnow()
    db.session.commit()
    return "sent"


@shared_task(name="kepu.send_digests")
def send_digests() -> int:
    """One e-mail per digest user with everything not yet sent."""
    cfg = current_app.config
    if not cfg["SMTP_HOST"]:
        return 0
    sent = 0
    for notes in pending_digests().values():
        user = notes[0].user
        message = compose(
            notes, to=str(user.email), sender=str(cfg["MAIL_FROM"]), base_url=str(cfg["BASE_URL"])
        )
        try:
            _send(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("digest to %s failed: %s", user.email, exc)
            continue
        now = utcnow()
        for note in notes:
            note.emailed_at = now
        db.session.commit()
        sent += 1
    return sent


@shared_task(name="kepu.audit_checkpoint")
def audit_checkpoint() -> int:
    """Sign a checkpoint of the audit ledger (beat, hourly by default)."""
    from review.ledger import create_checkpoint

    row = create_checkpoint(
        signer=current_app.extensions["kepu_signer"],
        origin=str(current_app.config["LEDGER_ORIGIN"]),
        actor=SYSTEM,
    )
    db.session.commit()
    return row.tree_size


@shared_task(name="kepu.index_item")
def index_item(item_id: int) -> int:
    """Rebuild one item's search index (after a decision); harmless when repeated."""
    from review.search import index_item as rebuild

    item = db.session.get(Item, int(item_id))
    if item is None:
        return 0
    terms = rebuild(item)
    db.session.commit()
    return terms


@shared_task(name="kepu.deliver_webhook")
def deliver_webhook(delivery_pk: int) -> str:
    """POST one webhook delivery once; a duplicate or early message finds nothing due."""
    cfg = current_app.config
    timeout = float(cfg["WEBHOOK_TIMEOUT"])
    if not webhooks.claim(int(delivery_pk), lease_seconds=timeout + 60):
        db.session.rollback()
        return "skipped"
    db.session.commit()  # the claim (attempt counted) is durable before the receiver sees it
    outcome = webhooks.attempt(
        int(delivery_pk),
        timeout=timeout,
        schedule=tuple(cfg["WEBHOOK_RETRY_SCHEDULE"]),
        max_attempts=int(cfg["WEBHOOK_MAX_ATTEMPTS"]),
    )
    db.session.commit()
    return outcome

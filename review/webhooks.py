"""Outgoing webhooks: subscribers, signed deliveries written with the change, bounded retries.

A delivery row and the outbox message that sends it are written by ``record_event`` in the
same transaction as the state change it reports, so a committed change always has its
deliveries and a rolled-back one never does. The worker claims a delivery with a conditional
UPDATE (two copies of the task never send at once), posts it once, and either marks it
delivered or schedules the next attempt through the outbox (1 min, 5 min, 30 min, …); after
the last attempt it is 'failed' and waits for an admin's 重新发送. Receivers get at-least-once
delivery and recognise a repeat by its ``X-Kepu-Delivery`` id.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.audit import AuditEvent, record_event
from review.db import JSONType, UTCDateTime, db, utcnow
from review.errors import InvalidInput, NotFound
from review.i18n import N_
from review.models import Item, Publication

log = logging.getLogger(__name__)

DELIVER_TASK = "kepu.deliver_webhook"

#: The events a subscriber may choose, with the label the admin page shows.
EVENTS: dict[str, str] = {
    "item.flagged": N_("稿件被初筛标记为疑似伪科学"),
    "item.assigned": N_("稿件已分派给审核专家"),
    "review.decided": N_("专家签署了审核结论"),
    "item.approved": N_("稿件审核通过"),
    "item.published": N_("稿件已发布（含签名回执）"),
    "item.recalled": N_("已发布的稿件被下架"),
}

#: Audit actions (written where each change happens) -> the webhook event they announce.
#: ``item.assigned`` fires for every expert an item is offered to or claimed by, so a
#: reassignment after a decline or a missed deadline is announced too.
TRIGGERS: dict[str, str] = {
    "item.flag": "item.flagged",
    "assignment.offered": "item.assigned",
    "assignment.claimed": "item.assigned",
    "review.decided": "review.decided",
    "item.approve": "item.approved",
    "publication.issued": "item.published",
    "item.recall": "item.recalled",
}

#: Fields of an audit event's data that a subscriber may see (no expert names, no verdicts).
_FORWARDED = (
    "from",
    "to",
    "version",
    "content_sha256",
    "risk_level",
    "risk_score",
    "reason",
    "assignment",
    "kind",
    "decision",
    "key_id",
    "round",
    "due_at",
)

SIGNATURE_HEADER = "X-Kepu-Signature"
EVENT_HEADER = "X-Kepu-Event"
DELIVERY_HEADER = "X-Kepu-Delivery"
USER_AGENT = "kepu-review-webhooks/1"
EXCERPT_CHARS = 500
MAX_URL_CHARS = 2000
MAX_REDIRECTS = 3
_READ_LIMIT = 64 * 1024


class DeliveryStatus(StrEnum):
    """Where one delivery stands."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


STATUS_LABELS = {
    DeliveryStatus.pending: N_("待发送"),
    DeliveryStatus.delivered: N_("已送达"),
    DeliveryStatus.failed: N_("发送失败"),
}


class WebhookSubscriber(db.Model):
    """A receiver registered by an admin: URL, shared secret, chosen events, active flag."""

    __tablename__ = "webhook_subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(MAX_URL_CHARS))
    # Kept as given: HMAC needs the secret itself. Shown once, never logged or audited.
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def wants(self, event: str) -> bool:
        """True when this active subscriber chose ``event``."""
        return self.is_active and event in (self.events or [])

    @property
    def secret_hint(self) -> str:
        """The last four characters, enough to tell two secrets apart."""
        return "…" + self.secret[-4:] if len(self.secret) >= 12 else "…"


class WebhookDelivery(db.Model):
    """One event for one subscriber; its id is the ``X-Kepu-Delivery`` header of every try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (CheckConstraint("attempts >= 0", name="attempts_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscribers.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    audit_seq: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(
            DeliveryStatus,
            name="delivery_status",
            native_enum=False,
            create_constraint=True,
            length=32,
            values_callable=lambda cls: [m.value for m in cls],
            validate_strings=True,
        ),
        default=DeliveryStatus.pending,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    subscriber: Mapped[WebhookSubscriber] = relationship()
    tries: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", back_populates="delivery"
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


class WebhookAttempt(db.Model):
    """One HTTP try of a delivery: when, answer code, first bytes of the answer, duration."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_pk: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="tries")


# --- signing (pure) ----------------------------------------------------------------------------


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes posted: sorted-key compact UTF-8 JSON."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over ``"<timestamp>." + body`` with the subscriber's secret."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex>``, the value of X-Kepu-Signature."""
    return f"t={int(timestamp)},v1={sign(secret, timestamp, body)}"


def new_secret() -> str:
    """A random secret for a subscriber (256 bits, URL-safe)."""
    return "whsec_" + secrets.token_urlsafe(32)


def redact_url(url: str) -> str:
    """The URL without user info or query, for logs (a query may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --- subscribers (admin operations) ------------------------------------------------------------


def _clean_url(value: object) -> str:
    url = str(value or "").strip()
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"地址过长：最多 {MAX_URL_CHARS} 个字符", field="url", code="too_long")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise InvalidInput("接收地址格式不正确", field="url", code="invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            "接收地址必须是 http:// 或 https:// 开头的完整网址", field="url", code="invalid_url"
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidInput("接收地址不能含有空白或控制字符", field="url", code="invalid_url")
    return url


def _clean_events(values: Sequence[object]) -> list[str]:
    chosen = [str(v) for v in values if v]
    unknown = [v for v in chosen if v not in EVENTS]
    if unknown:
        raise InvalidInput(
            f"未知的事件：{'、'.join(unknown)}", field="events", code="invalid_event"
        )
    if not chosen:
        raise InvalidInput("请至少选择一个事件", field="events", code="required")
    return [e for e in EVENTS if e in chosen]


def _clean_secret(value: object) -> str:
    secret = str(value or "").strip()
    if not secret:
        return new_secret()
    if len(secret) < 16 or len(secret) > 200:
        raise InvalidInput(
            "密钥长度须在 16 到 200 个字符之间", field="secret", code="invalid_secret"
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) > 126 for ch in secret):
        raise InvalidInput("密钥只能由可见的 ASCII 字符组成", field="secret", code="invalid_secret")
    return secret


def _clean_name(value: object, url: str) -> str:
    from review.operations import clean_text

    name = clean_text(value, "name", "名称", max_chars=200).strip()
    return name or (urlsplit(url).hostname or url)


def create_subscriber(
    *,
    url: object,
    events: Sequence[object],
    actor: Any,
    name: object = "",
    secret: object = "",
    is_active: bool = True,
) -> WebhookSubscriber:
    """Register a receiver; a secret is generated when none is given (shown once by the caller)."""
    clean = _clean_url(url)
    sub = WebhookSubscriber(
        name=_clean_name(name, clean),
        url=clean,
        secret=_clean_secret(secret),
        events=_clean_events(events),
        is_active=bool(is_active),
        created_by_id=getattr(actor, "id", None),
    )
    db.session.add(sub)
    db.session.flush()
    record_event(
        "webhook.subscriber_created",
        actor=actor,
        subject_type="webhook",
        subject_id=sub.id,
        data={
            "name": sub.name,
            "url": redact_url(sub.url),
            "events": sub.events,
            "is_active": sub.is_active,
            "secret": "given" if str(secret or "").strip() else "generated",
        },
    )
    return sub


def update_subscriber(
    sub: WebhookSubscriber,
    *,
    actor: Any,
    url: object,
    events: Sequence[object],
    name: object,
    is_active: bool,
) -> dict[str, Any]:
    """Change a receiver's address, events, name or active flag; audited with before/after."""
    clean_url = _clean_url(url)
    changes = {
        "name": _clean_name(name, clean_url),
        "url": clean_url,
        "events": _clean_events(events),
        "is_active": bool(is_active),
    }
    diff: dict[str, Any] = {}
    for key, value in changes.items():
        before = getattr(sub, key)
        if before != value:
            shown = (redact_url(before), redact_url(value)) if key == "url" else (before, value)
            diff[key] = {"from": shown[0], "to": shown[1]}
            setattr(sub, key, value)
    if diff:
        sub.updated_at = utcnow()
        db.session.flush()
        record_event(
            "webhook.subscriber_updated",
            actor=actor,
            subject_type="webhook",
            subject_id=sub.id,
            data=diff,
        )
    return diff


def rotate_secret(sub: WebhookSubscriber, *, actor: Any) -> str:
    """Give a receiver a new random secret; returns it (shown once). The old one stops at once."""
    sub.secret = new_secret()
    sub.updated_at = utcnow()
    db.session.flush()
    record_event("webhook.secret_rotated", actor=actor, subject_type="webhook", subject_id=sub.id)
    return sub.secret


def get_subscriber(subscriber_id: int) -> WebhookSubscriber:
    """The subscriber or NotFound."""
    sub = db.session.get(WebhookSubscriber, subscriber_id)
    if sub is None:
        raise NotFound("找不到该订阅")
    return sub


def get_delivery(delivery_pk: int) -> WebhookDelivery:
    """The delivery or NotFound."""
    row = db.session.get(WebhookDelivery, delivery_pk)
    if row is None:
        raise NotFound("找不到该投递记录")
    return row


# --- creating deliveries (called by record_event, inside the changing transaction) -------------


def _item_summary(item: Item) -> dict[str, Any]:
    version = item.current_version
    return {
        "id": item.id,
        "kind": item.kind.value,
        "title": item.title if version is None else version.title,
        "state": item.state.value,
        "version": version.number if version else None,
        "content_sha256": version.content_sha256 if version else None,
    }


def build_payload(event: AuditEvent, name: str, delivery_id: str) -> dict[str, Any]:
    """The JSON a subscriber receives for ``event``."""
    data = {k: v for k, v in (event.data or {}).items() if k in _FORWARDED}
    payload: dict[str, Any] = {
        "id": delivery_id,
        "event": name,
        "occurred_at": event.at.isoformat(),
        "audit_seq": event.seq,
        "data": data,
    }
    if event.subject_type == "item":
        item = db.session.get(Item, int(event.subject_id))
        if item is not None:
            payload["item"] = _item_summary(item)
            if name == "item.published":
                pub = db.session.scalar(
                    select(Publication)
                    .where(Publication.item_id == item.id)
                    .order_by(Publication.id.desc())
                )
                if pub is not None:
                    payload["receipt"] = pub.receipt
    return payload


def queue_deliveries(event: AuditEvent) -> list[WebhookDelivery]:
    """One delivery (and its outbox message) per active subscriber of the event's webhook."""
    name = TRIGGERS.get(event.action)
    if name is None:
        return []
    subscribers = [
        s
        for s in db.session.scalars(
            select(WebhookSubscriber).where(WebhookSubscriber.is_active.is_(True))
        )
        if s.wants(name)
    ]
    if not subscribers:
        return []
    from review.operations import enqueue

    rows = []
    for sub in subscribers:
        delivery_id = str(uuid.uuid4())
        row = WebhookDelivery(
            delivery_id=delivery_id,
            subscriber_id=sub.id,
            event=name,
            audit_seq=event.seq,
            payload=build_payload(event, name, delivery_id),
            status=DeliveryStatus.pending,
            attempts=0,
            next_attempt_at=utcnow(),
        )
        db.session.add(row)
        db.session.flush()
        enqueue(DELIVER_TASK, row.id)
        rows.append(row)
    return rows


PING_EVENT = "ping"


def send_ping(sub: WebhookSubscriber, *, actor: Any) -> WebhookDelivery:
    """Queue a ``ping`` delivery to one subscriber (whatever its events), to test the receiver."""
    from review.operations import enqueue

    delivery_id = str(uuid.uuid4())
    row = WebhookDelivery(
        delivery_id=delivery_id,
        subscriber_id=sub.id,
        event=PING_EVENT,
        payload={
            "id": delivery_id,
            "event": PING_EVENT,
            "occurred_at": utcnow().isoformat(),
            "data": {"subscriber": sub.id},
        },
        status=DeliveryStatus.pending,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(row)
    db.session.flush()
    enqueue(DELIVER_TASK, row.id)
    record_event(
        "webhook.ping_sent",
        actor=actor,
        subject_type="webhook",
        subject_id=sub.id,
        data={"delivery": delivery_id},
    )
    return row


def resend(delivery: WebhookDelivery, *, actor: Any) -> None:
    """Send a delivery again now, with the same delivery id and a fresh round of attempts."""
    from review.operations import enqueue

    before = {"status": delivery.status.value, "attempts": delivery.attempts}
    delivery.status = DeliveryStatus.pending
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    db.session.flush()
    enqueue(DELIVER_TASK, delivery.id)
    record_event(
        "webhook.delivery_resent",
        actor=actor,
        subject_type="webhook",
        subject_id=delivery.subscriber_id,
        data={"delivery": delivery.delivery_id, "event": delivery.event, "before": before},
    )


def requeue_stale(*, older_than: timedelta) -> int:
    """Re-enqueue pending deliveries whose time passed long ago (the broker lost the message,
    or a worker died mid-send); the claim in the task keeps a second copy from sending twice."""
    cutoff = utcnow() - older_than
    from review.operations import enqueue

    rows = db.session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.status == DeliveryStatus.pending,
            WebhookDelivery.next_attempt_at < cutoff,
        )
    ).all()
    for row in rows:
        row.next_attempt_at = utcnow()
        enqueue(DELIVER_TASK, row.id)
    db.session.flush()
    return len(rows)


# --- sending (called by the worker) ------------------------------------------------------------


def claim(delivery_pk: int, *, lease_seconds: float) -> bool:
    """Take a due pending delivery for one try (conditional UPDATE); False when not due or done.

    The lease pushes ``next_attempt_at`` past the try, so a duplicate task arriving meanwhile
    finds nothing due; a worker that dies mid-try leaves it to ``requeue_stale``.
    """
    now = utcnow()
    moved = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_pk,
            WebhookDelivery.status == DeliveryStatus.pending,
            or_(
                WebhookDelivery.next_attempt_at.is_(None),
                WebhookDelivery.next_attempt_at <= now,
            ),
        )
        .values(
            attempts=WebhookDelivery.attempts + 1,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    return moved == 1


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP try gave."""

    ok: bool
    status_code: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None


def _excerpt(data: bytes) -> str:
    text = data[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


def post_signed(
    url: str, *, secret: str, event: str, delivery_id: str, body: bytes, timeout: float
) -> AttemptResult:
    """POST ``body`` once, signed; 2xx is success. Redirects are followed only when they keep
    the same scheme, host and port and the method (307/308), at most MAX_REDIRECTS times."""
    started = time.monotonic()
    deadline = started + timeout
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }
    origin = urlsplit(url)
    target = url

    def result(ok: bool, code: int | None, excerpt: str | None, error: str | None) -> AttemptResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return AttemptResult(ok, code, elapsed, excerpt, error)

    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(target)
        left = deadline - time.monotonic()
        if left <= 0:
            return result(False, None, None, "超时")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=left, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=left)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = b""
            while len(data) < _READ_LIMIT and time.monotonic() < deadline:
                chunk = response.read(4096)
                if not chunk:
                    break
                data += chunk
            code = response.status
            location = response.getheader("Location")
        except TimeoutError:
            return result(False, None, None, f"超时（{timeout:g} 秒内未得到应答）")
        except (OSError, http.client.HTTPException) as exc:
            return result(False, None, None, f"连接失败：{type(exc).__name__}")
        finally:
            conn.close()
        if 200 <= code < 300:
            return result(True, code, _excerpt(data), None)
        if 300 <= code < 400:
            if code not in (307, 308) or not location:
                return result(False, code, _excerpt(data), "不跟随改变请求方法的重定向")
            nxt = urlsplit(urljoin(target, location))
            if (nxt.scheme, nxt.hostname, nxt.port) != (
                origin.scheme,
                origin.hostname,
                origin.port,
            ):
                return result(False, code, _excerpt(data), "拒绝跟随指向其他主机的重定向")
            target = nxt.geturl()
            continue
        return result(False, code, _excerpt(data), None)
    return result(False, None, None, "重定向次数过多")


def attempt(delivery_pk: int, *, timeout: float, schedule: Sequence[int], max_attempts: int) -> str:
    """Send a claimed delivery once and record the outcome: 'delivered', 'retry' or 'failed'.

    The HTTP call happens here, between the claim's commit and the caller's commit.
    """
    row = db.session.get(WebhookDelivery, delivery_pk)
    if row is None:
        return "missing"
    sub = row.subscriber
    number = row.attempts
    if not sub.is_active and row.event != PING_EVENT:
        outcome = AttemptResult(False, None, 0, None, "订阅已停用")
    else:
        outcome = post_signed(
            sub.url,
            secret=sub.secret,
            event=row.event,
            delivery_id=row.delivery_id,
            body=encode_body(row.payload),
            timeout=timeout,
        )
    now = utcnow()
    db.session.add(
        WebhookAttempt(
            delivery_pk=row.id,
            number=number,
            at=now,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
    )
    row.response_status = outcome.status_code
    row.response_excerpt = outcome.excerpt
    row.last_error = outcome.error
    row.duration_ms = outcome.duration_ms
    if outcome.ok:
        row.status = DeliveryStatus.delivered
        row.delivered_at = now
        row.next_attempt_at = None
        db.session.flush()
        log.info("webhook %s delivered to %s", row.delivery_id, redact_url(sub.url))
        return "delivered"
    if number >= max_attempts or (not sub.is_active and row.event != PING_EVENT):
        row.status = DeliveryStatus.failed
        row.next_attempt_at = None
        db.session.flush()
        log.warning(
            "webhook %s to %s failed for good after %s attempts (%s %s)",
            row.delivery_id,
            redact_url(sub.url),
            number,
            outcome.status_code,
            outcome.error,
        )
        return "failed"
    from review.operations import enqueue

    delay = backoff(number, schedule)
    row.next_attempt_at = now + timedelta(seconds=delay)
    db.session.flush()
    enqueue(DELIVER_TASK, row.id, delay=delay)
    log.info(
        "webhook %s to %s attempt %s failed (%s %s); next in %ss",
        row.delivery_id,
        redact_url(sub.url),
        number,
        outcome.status_code,
        outcome.error,
        delay,
    )
    return "retry"


def backoff(failed_attempts: int, schedule: Sequence[int]) -> int:
    """Seconds before the next try after ``failed_attempts`` failures (the last step repeats)."""
    if not schedule:
        return 60
    return int(schedule[min(failed_attempts, len(schedule)) - 1])


def recent_deliveries(
    *, subscriber_id: int | None = None, status: str | None = None, limit: int = 200
) -> Sequence[WebhookDelivery]:
    """The newest deliveries, optionally of one subscriber or one status."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if subscriber_id is not None:
        query = query.where(WebhookDelivery.subscriber_id == subscriber_id)
    if status in {s.value for s in DeliveryStatus}:
        query = query.where(WebhookDelivery.status == DeliveryStatus(status))
    return db.session.scalars(query).all()


def subscribers() -> Sequence[WebhookSubscriber]:
    """Every subscriber, oldest first."""
    return db.session.scalars(select(WebhookSubscriber).order_by(WebhookSubscriber.id)).all()

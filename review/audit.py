"""The audit ledger: append-only, hash-chained events written in the changing transaction."""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from review.db import JSONType, UTCDateTime, db, utcnow

GENESIS_HASH = "0" * 64

#: Set by the web layer per request and by tasks per message; read when an event is written.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)


class AuditEvent(db.Model):
    """One ledger entry; the database refuses UPDATE and DELETE on this table (triggers)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def to_dict(self) -> dict[str, Any]:
        """The exported form; exactly the fields the hash covers, plus the hash."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor_id": self.actor_id,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "subject": f"{self.subject_type}:{self.subject_id}",
            "data": self.data,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class AuditHead(db.Model):
    """The one row holding the ledger's tip; locking it serialises appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=-1)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


def format_time(value: datetime) -> str:
    """The canonical timestamp text used in hashes (UTC, microseconds, 'Z')."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """Canonical JSON of an exported event without its own hash."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def event_hash(event: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical bytes (which include prev_hash, so the chain links)."""
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who did something: a user, or the system (workers, schedulers)."""

    id: int | None
    name: str
    role: str


SYSTEM = Actor(None, "system", "system")


def actor_of(user: Any) -> Actor:
    """An Actor from a User (or the system actor for None)."""
    if user is None:
        return SYSTEM
    if isinstance(user, Actor):
        return user
    return Actor(user.id, user.username, str(user.role))


def record_event(
    action: str,
    *,
    actor: Any,
    subject_type: str,
    subject_id: object,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the current transaction (never commits)."""
    who = actor_of(actor)
    head = db.session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=-1, hash=GENESIS_HASH)
        db.session.add(head)
        db.session.flush()
    event = AuditEvent(
        seq=head.seq + 1,
        at=utcnow(),
        actor_id=who.id,
        actor=who.name,
        role=who.role,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        data=json.loads(json.dumps(dict(data or {}), ensure_ascii=False, default=str)),
        request_id=current_request_id.get(),
        prev_hash=head.hash,
    )
    event.hash = event_hash(event.to_dict())
    head.seq, head.hash = event.seq, event.hash
    db.session.add(event)
    db.session.flush()
    from review import webhooks  # imported here: webhooks itself records events

    if action in webhooks.TRIGGERS:  # deliveries commit (or roll back) with the change
        webhooks.queue_deliveries(event)
    return event


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking a sequence of exported events."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    message: str = ""


def verify_events(events: Iterable[Mapping[str, Any]]) -> VerifyResult:
    """Recompute every hash and link; report the first event that does not match (pure)."""
    expected_prev = GENESIS_HASH
    checked = 0
    for expected_seq, event in enumerate(events):
        seq = event.get("seq")
        if seq != expected_seq:
            return VerifyResult(
                False, checked, expected_seq, f"序号不连续：期望 {expected_seq}，实际 {seq}"
            )
        if event.get("prev_hash") != expected_prev:
            return VerifyResult(False, checked, seq, f"事件 {seq} 的前一哈希与链不符")
        if event_hash(event) != event.get("hash"):
            return VerifyResult(False, checked, seq, f"事件 {seq} 的内容与其哈希不符（被修改）")
        expected_prev = str(event["hash"])
        checked += 1
    return VerifyResult(True, checked, None, f"已校验 {checked} 条审计事件，链完整")


def iter_exported_events(
    batch: int = 1000, *, below: int | None = None
) -> Iterable[dict[str, Any]]:
    """Every event in order (those with ``seq < below`` when given), in exported form, read in
    batches."""
    last = -1
    while True:
        query = select(AuditEvent).where(AuditEvent.seq > last)
        if below is not None:
            query = query.where(AuditEvent.seq < below)
        rows = db.session.scalars(query.order_by(AuditEvent.seq).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield row.to_dict()
        last = rows[-1].seq

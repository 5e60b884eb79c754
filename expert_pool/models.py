"""Experts of the pool and their review assignments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.db import JSONType, UTCDateTime, db, utcnow
from review.lifecycle import ItemState
from review.models import Item, Unit, User, Version, _enum


def leave_covers(leave_from: datetime | None, leave_until: datetime | None, now: datetime) -> bool:
    """True when a leave window (either end may be open) covers ``now``."""
    if leave_from is None and leave_until is None:
        return False
    started = leave_from is None or leave_from <= now
    ongoing = leave_until is None or leave_until > now
    return started and ongoing


class Expert(db.Model):
    """A member of the authoritative expert pool (权威专家队伍), bound to one user account."""

    __tablename__ = "experts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(100), default="")  # 职称
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    secondary_domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_senior: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    max_load: Mapped[int] = mapped_column(Integer, default=5)
    leave_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leave_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Declared conflicts: {"units": [unit names], "companies": [names], "people": [names]}.
    conflicts: Mapped[dict[str, list[str]]] = mapped_column(JSONType, default=dict)
    notify_mode: Mapped[str] = mapped_column(String(16), default="immediate")  # or "digest"
    #: The expert agreed to be named (name and title) on the public feed of published items.
    is_publicly_named: Mapped[bool] = mapped_column(Boolean, default=False)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()
    unit: Mapped[Unit | None] = relationship()

    def on_leave(self, now: datetime) -> bool:
        """True while the expert's leave lasts (an open-ended leave has no 'until')."""
        return leave_covers(self.leave_from, self.leave_until, now)

    def conflict_list(self, kind: str) -> list[str]:
        """Declared conflicts of one kind (units, companies, people)."""
        return list((self.conflicts or {}).get(kind, []))

    @staticmethod
    def for_user(user: User) -> Expert | None:
        """The pool entry of ``user``, if any."""
        return db.session.scalar(select(Expert).where(Expert.user_id == user.id))


class AssignmentState(StrEnum):
    """Where one offer to one expert stands."""

    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    revoked = "revoked"
    completed = "completed"


ASSIGNMENT_LABELS = {
    AssignmentState.offered: "待接受",
    AssignmentState.accepted: "审核中",
    AssignmentState.declined: "已谢绝",
    AssignmentState.expired: "已超时",
    AssignmentState.revoked: "已撤销",
    AssignmentState.completed: "已完成",
}

OPEN_STATES = (AssignmentState.offered, AssignmentState.accepted)


class Assignment(db.Model):
    """An offer of one version to one expert, with its deadline and how it ended."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16), default="review")  # review | arbitration
    risk_level: Mapped[str] = mapped_column(String(16), default="medium")
    state: Mapped[AssignmentState] = mapped_column(
        _enum(AssignmentState, "state"), default=AssignmentState.offered, index=True
    )
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(Text)

    item: Mapped[Item] = relationship()
    version: Mapped[Version] = relationship()
    expert: Mapped[Expert] = relationship()

    @property
    def state_label(self) -> str:
        return ASSIGNMENT_LABELS[self.state]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def shows_text(self) -> bool:
        """Whether this row lets its expert read the version: an offer while it stands, and
        whatever the expert accepted. An offer revoked, or on a withdrawn item, before the expert
        accepted it shows nothing: the text was taken back before it was ever assigned."""
        if self.accepted_at is not None:
            return True
        return self.state is not AssignmentState.revoked and (
            self.item.state is not ItemState.withdrawn
        )

    def to_dict(self) -> dict[str, object]:
        """API form of an assignment."""
        return {
            "id": self.id,
            "item_id": self.item_id,
            "version": self.version.number,
            "expert": self.expert.name,
            "state": self.state.value,
            "round": self.round,
            "kind": self.kind,
            "risk_level": self.risk_level,
            "offered_at": self.offered_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "ended_reason": self.ended_reason,
        }


class Selection(db.Model):
    """One run of reviewer selection for a version: who was chosen and why the others were not."""

    __tablename__ = "selections"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    kind: Mapped[str] = mapped_column(String(16), default="review")
    needed: Mapped[int] = mapped_column(Integer)
    chosen: Mapped[list[int]] = mapped_column(JSONType, default=list)
    #: expert id (as text) -> refusal code, e.g. {"12": "conflict_unit"}
    refused: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(db.Model):
    """An in-app message; e-mailed immediately or in a digest depending on the expert's choice."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship()


class QualitySample(db.Model):
    """质检: a random draw of decided versions for re-review by experts not involved."""

    __tablename__ = "quality_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    domain: Mapped[str | None] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)

    created_by: Mapped[User] = relationship()
    checks: Mapped[list[QualityCheck]] = relationship(
        back_populates="sample", order_by="QualityCheck.id"
    )


class QualityCheck(db.Model):
    """One sampled version, its original outcome and the re-reviewer's verdict."""

    __tablename__ = "quality_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("quality_samples.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    original_outcome: Mapped[str] = mapped_column(String(32))  # approve | reject | request_changes
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"), unique=True)
    result: Mapped[str | None] = mapped_column(String(32))
    is_overturned: Mapped[bool | None] = mapped_column(Boolean)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    sample: Mapped[QualitySample] = relationship(back_populates="checks")
    item: Mapped[Item] = relationship()
    assignment: Mapped[Assignment | None] = relationship()

"""Experts of the pool and their review assignments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.db import JSONType, UTCDateTime, db, utcnow
from review.models import Item, Unit, User, Version, _enum


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
    leave_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    conflict_unit_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()
    unit: Mapped[Unit | None] = relationship()

    def on_leave(self, now: datetime) -> bool:
        """True while the expert's leave lasts."""
        return self.leave_until is not None and self.leave_until > now

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
    state: Mapped[AssignmentState] = mapped_column(
        _enum(AssignmentState, "state"), default=AssignmentState.offered, index=True
    )
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
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

    def to_dict(self) -> dict[str, object]:
        """API form of an assignment."""
        return {
            "id": self.id,
            "item_id": self.item_id,
            "version": self.version.number,
            "expert": self.expert.name,
            "state": self.state.value,
            "round": self.round,
            "offered_at": self.offered_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "ended_reason": self.ended_reason,
        }

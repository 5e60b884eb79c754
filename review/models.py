"""Users, units, items and their immutable versions, screening, decisions, publications, outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.db import JSONType, UTCDateTime, db, utcnow
from review.lifecycle import ItemState
from review.receipts import content_sha256


def _enum(enum_cls: type[StrEnum], name: str) -> Enum:
    """A portable enum column: VARCHAR plus a named CHECK constraint."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )


class Role(StrEnum):
    """What a user may do (DESIGN.md, People and roles)."""

    editor = "editor"
    expert = "expert"
    auditor = "auditor"
    admin = "admin"


ROLE_LABELS = {
    Role.editor: "媒体编辑",
    Role.expert: "审核专家",
    Role.auditor: "审计（宣传部）",
    Role.admin: "管理员",
}


class Unit(db.Model):
    """A media unit or institution; editors see their unit's items only."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50), default="media")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(db.Model):
    """A person who signs in; one role each."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active_user: Mapped[bool] = mapped_column("is_active", Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    unit: Mapped[Unit | None] = relationship()

    # Flask-Login protocol; the session id, not the user id, is what the cookie holds.
    login_session_id = None  # set per request from the LoginSession; not a column

    @property
    def is_active(self) -> bool:
        return self.is_active_user

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str | None:
        return self.login_session_id

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]

    def has_role(self, *roles: Role | str) -> bool:
        """True when the user holds one of ``roles``."""
        return self.role in {Role(r) for r in roles}


class LoginSession(db.Model):
    """A server-side sign-in; deleting or revoking it logs the browser out for good."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class ApiToken(db.Model):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @staticmethod
    def hash_token(token: str) -> str:
        """The stored form of a token."""
        return hashlib.sha256(token.encode()).hexdigest()


class ItemKind(StrEnum):
    """Articles and videos."""

    article = "article"
    video = "video"


class Item(db.Model):
    """A 稿件: the mutable working copy plus its lifecycle state."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ItemKind] = mapped_column(_enum(ItemKind, "kind"), default=ItemKind.article)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[ItemState] = mapped_column(
        _enum(ItemState, "state"), default=ItemState.draft, index=True
    )
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_items_current_version_id_versions")
    )
    #: A video item's working copy of its file (the version keeps its own reference).
    media_asset_id: Mapped[int | None] = mapped_column(ForeignKey("media_assets.id"))
    screening_attempts: Mapped[int] = mapped_column(Integer, default=0)
    screening_failed: Mapped[bool] = mapped_column("is_screening_failed", Boolean, default=False)
    needs_admin: Mapped[bool] = mapped_column("is_needs_admin", Boolean, default=False)
    appeal_used: Mapped[bool] = mapped_column("is_appeal_used", Boolean, default=False)
    reviewers_needed: Mapped[int] = mapped_column(Integer, default=0)
    lock_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    unit: Mapped[Unit] = relationship()
    created_by: Mapped[User] = relationship()
    media_asset: Mapped[MediaAsset | None] = relationship()
    current_version: Mapped[Version | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )
    versions: Mapped[list[Version]] = relationship(
        back_populates="item", foreign_keys="Version.item_id", order_by="Version.number"
    )

    @property
    def state_label(self) -> str:
        from review.lifecycle import STATE_LABELS

        return STATE_LABELS[self.state]

    def is_visible_to(self, user: User) -> bool:
        """Editors see their unit's items; auditors and admins all (experts: expert_pool)."""
        if user.has_role(Role.auditor, Role.admin):
            return True
        if user.has_role(Role.editor):
            return user.unit_id == self.unit_id
        return False

    def can_edit(self, user: User) -> bool:
        """Editors of the owning unit change items; nobody else does."""
        return user.has_role(Role.editor) and user.unit_id == self.unit_id


class Version(db.Model):
    """An immutable snapshot frozen at submit; reviews and publication bind to its hash."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("item_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    media_asset_id: Mapped[int | None] = mapped_column(ForeignKey("media_assets.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    item: Mapped[Item] = relationship(back_populates="versions", foreign_keys=[item_id])
    media_asset: Mapped[MediaAsset | None] = relationship()
    reports: Mapped[list[ScreeningReport]] = relationship(
        back_populates="version", order_by="ScreeningReport.id"
    )

    @staticmethod
    def compute_sha256(title: str, body: str, media: Sequence[str] = ()) -> str:
        """Hash over everything that would be published (review.receipts.content_sha256, which
        ``kepu receipt verify`` recomputes offline)."""
        return content_sha256(title, body, media)

    @property
    def report(self) -> ScreeningReport | None:
        """The latest screening report of this version."""
        return self.reports[-1] if self.reports else None


class ScreeningReport(db.Model):
    """The outcome of screening one version with one ruleset version."""

    __tablename__ = "screening_reports"
    __table_args__ = (UniqueConstraint("version_id", "ruleset_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    ruleset_version: Mapped[str] = mapped_column(String(64))
    risk_score: Mapped[float] = mapped_column(Float, default=0.0)
    risk_level: Mapped[str] = mapped_column(String(16), default="none")
    domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    is_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    version: Mapped[Version] = relationship(back_populates="reports")
    findings: Mapped[list[Finding]] = relationship(
        back_populates="report", order_by="Finding.id", cascade="all, delete-orphan"
    )


class Finding(db.Model):
    """One suspicious span: from a rule, or added by an expert."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("screening_reports.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    rule_id: Mapped[str | None] = mapped_column(String(100))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str] = mapped_column(String(16), default="body")  # title | body
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    explanation: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[str | None] = mapped_column(String(50))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    start_time: Mapped[float | None] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    report: Mapped[ScreeningReport | None] = relationship(back_populates="findings")

    def to_dict(self) -> dict[str, Any]:
        """API form of a finding."""
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "category": self.category,
            "severity": self.severity,
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "explanation": self.explanation,
            "context": self.context,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }


class DecisionKind(StrEnum):
    """An expert's signed verdict on a version."""

    approve = "approve"
    request_changes = "request_changes"
    reject = "reject"


DECISION_LABELS = {
    DecisionKind.approve: "通过",
    DecisionKind.request_changes: "要求修改",
    DecisionKind.reject: "驳回",
}


class Decision(db.Model):
    """An expert's signed decision on one version, bound to its content hash."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    expert_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[DecisionKind] = mapped_column(_enum(DecisionKind, "decision"))
    comment: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[list[str]] = mapped_column(JSONType, default=list)
    finding_verdicts: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signature: Mapped[str] = mapped_column(Text)

    expert_user: Mapped[User] = relationship()
    version: Mapped[Version] = relationship()

    @property
    def label(self) -> str:
        return DECISION_LABELS[self.decision]


class Publication(db.Model):
    """A published version with its signed receipt."""

    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("item_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    # Not unique: a version taken down (下架) and approved again is published again.
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    published_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    receipt: Mapped[dict[str, Any]] = mapped_column(JSONType)
    is_recalled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The client's Idempotency-Key: a retried publish returns this publication's receipt.
    idempotency_key: Mapped[str | None] = mapped_column(String(100))


class OutboxMessage(db.Model):
    """Work to enqueue, written in the same transaction as the change that needs it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (CheckConstraint("attempts >= 0", name="attempts_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The web request (or task) that enqueued this work; the task's log lines carry it too.
    request_id: Mapped[str | None] = mapped_column(String(64))


class MediaAsset(db.Model):
    """A stored video file, named by its SHA-256; the same bytes uploaded twice are one asset."""

    __tablename__ = "media_assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    container: Mapped[str] = mapped_column(String(16))
    duration: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    video_codec: Mapped[str] = mapped_column(String(32))
    audio_codec: Mapped[str | None] = mapped_column(String(32))
    codecs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    subtitle_tracks: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    thumbnail: Mapped[str | None] = mapped_column(String(120))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def file_name(self) -> str:
        """The stored file's name inside the media folder."""
        return f"{self.sha256}.{self.container}"

    @property
    def mime_type(self) -> str:
        """The type the file is served with."""
        return {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}[self.container]


#: The category of a finding an expert marks by hand (a time range of a video).
CATEGORY_FOR_EXPERT = "专家补充"


class SubtitleKind(StrEnum):
    """Where a video's text came from."""

    supplied = "supplied"  # a subtitle file uploaded with the video
    embedded = "embedded"  # a text track inside the container
    ocr = "ocr"  # burned into the picture, read from sampled frames


SUBTITLE_KIND_LABELS = {
    SubtitleKind.supplied: "上传的字幕文件",
    SubtitleKind.embedded: "内嵌字幕轨",
    SubtitleKind.ocr: "画面字幕识别（OCR）",
}


class SubtitleSource(db.Model):
    """One labelled source of timed text for a video: its cues as ``[start, end, text]``.

    Supplied files belong to the item's working copy (``version_id`` empty) until a submit
    copies them onto the frozen version; embedded and OCR sources are made per version by the
    media worker.
    """

    __tablename__ = "subtitle_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), index=True)
    kind: Mapped[SubtitleKind] = mapped_column(_enum(SubtitleKind, "subtitle_kind"))
    label: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    cues: Mapped[list[list[Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def kind_label(self) -> str:
        return SUBTITLE_KIND_LABELS[self.kind]


class MediaStep(StrEnum):
    """The media worker's steps for one version, in order."""

    subtitles = "subtitles"  # embedded text tracks
    ocr = "ocr"  # burned-in subtitles
    thumbnail = "thumbnail"


MEDIA_STEP_LABELS = {
    MediaStep.subtitles: "提取内嵌字幕",
    MediaStep.ocr: "识别画面字幕",
    MediaStep.thumbnail: "生成缩略图",
}


class JobState(StrEnum):
    """Progress of one media step."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


JOB_STATE_LABELS = {
    JobState.pending: "排队中",
    JobState.running: "处理中",
    JobState.done: "已完成",
    JobState.failed: "失败",
}


class MediaJob(db.Model):
    """One step of a version's media processing: its state, attempts, progress and last error."""

    __tablename__ = "media_jobs"
    __table_args__ = (
        UniqueConstraint("version_id", "step"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    step: Mapped[MediaStep] = mapped_column(_enum(MediaStep, "media_step"))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def step_label(self) -> str:
        return MEDIA_STEP_LABELS[self.step]

    @property
    def state_label(self) -> str:
        return JOB_STATE_LABELS[self.state]

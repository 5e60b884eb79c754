"""Helpers shared by the pages and the API: loading with visibility, serialising, deadlines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import wraps
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import or_, select

from expert_pool.matching import REFUSAL_LABELS
from expert_pool.models import OPEN_STATES, Assignment, Expert, Notification, Selection
from expert_pool.operations import Deadlines, visible_to_expert
from review import policy
from review.db import db, utcnow
from review.errors import Forbidden, InvalidInput, NotFound
from review.lifecycle import ItemState
from review.models import Decision, Finding, Item, MediaAsset, Publication, Role, User, Version
from review.security import request_fields, security_event
from review.signing import Signer

F = TypeVar("F", bound=Callable[..., Any])


#: The largest id or number a query may carry: PostgreSQL's INTEGER (SQLite's is larger).
MAX_DB_INT = 2**31 - 1


def db_id(value: str) -> int:
    """A positive integer a database column can hold (``type=`` for ``request.args.get``: a
    ValueError makes the argument absent; 99999999999999999999 overflowed the driver, a 500)."""
    number = int(value)
    if not 0 < number <= MAX_DB_INT:
        raise ValueError(value)
    return number


def media_tools() -> Any:
    """ffmpeg and ffprobe as configured."""
    from review.media import Tools

    cfg = current_app.config
    return Tools(ffmpeg=str(cfg["FFMPEG"]), ffprobe=str(cfg["FFPROBE"]))


def parse_upload() -> Any:
    """Parse the multipart body (files stream to capped temp files); 413 in Chinese when over."""
    from flask import request
    from werkzeug.exceptions import RequestEntityTooLarge

    from review.media import too_large

    try:
        return request.files
    except RequestEntityTooLarge:
        raise too_large(int(current_app.config["MAX_VIDEO_BYTES"])) from None


def accept_video_upload(
    files: Any, *, actor: User, title: object, description: object
) -> tuple[MediaAsset, list[Any]]:
    """Check the item's fields, the uploaded video (``file``) and subtitle files
    (``subtitles``), and store the files.

    Everything that can be refused is checked before any file is kept: the title and
    description, the number of subtitle files, each subtitle file (they are small), then the
    video, which is linked into storage last but one, before the subtitle bytes; a refusal at
    any point leaves no file behind (the request's temporary files are deleted when it ends).
    The clients' file names are never used on disk, only as display labels.
    """
    from review import media, subtitles
    from review.videos import (
        MAX_SUBTITLE_FILES,
        SubtitleUpload,
        check_video_fields,
        display_name,
        register_asset,
    )

    cfg = current_app.config
    folder = str(cfg["MEDIA_FOLDER"])
    check_video_fields(title=title, description=description)
    video = files.get("file")
    if video is None or (not video.filename and _is_empty(video.stream)):
        raise InvalidInput("缺少视频文件（表单字段 file）", code="file_missing", field="file")
    parts = files.getlist("subtitles")
    if len(parts) > MAX_SUBTITLE_FILES:
        raise InvalidInput(
            f"字幕文件最多 {MAX_SUBTITLE_FILES} 个", code="too_many_files", field="subtitles"
        )
    limit = int(cfg["MAX_SUBTITLE_BYTES"])
    parsed: list[tuple[str, bytes, Any]] = []
    for n, part in enumerate(parts, start=1):
        raw = part.stream.read(limit + 1)
        if not raw and not part.filename:
            continue  # an empty file input
        name = display_name(part.filename, f"字幕{n}")
        if len(raw) > limit:
            raise InvalidInput(
                f"字幕文件“{name}”超过 {limit // 1024} KB", code="too_large", field="subtitles"
            )
        parsed.append((name, raw, subtitles.parse(raw, name=name)))
    info = media.ingest_video(video.stream, folder=folder, tools=media_tools())
    uploads = [
        SubtitleUpload(
            label=name,
            sha256=media.store_bytes(raw, folder=folder, ext=result.format),
            parsed=result,
        )
        for name, raw, result in parsed
    ]
    return register_asset(info, actor=actor), uploads


def _is_empty(stream: Any) -> bool:
    """True for a file part without a byte (a browser's file input left empty)."""
    pos = stream.tell()
    stream.seek(0, 2)
    empty = stream.tell() == 0
    stream.seek(pos)
    return bool(empty)


def video_asset(item: Item, number: int | None) -> MediaAsset | None:
    """The video of version ``number`` (default: the current one, or the draft's file)."""
    if number is not None:
        version = next((v for v in item.versions if v.number == number), None)
        return version.media_asset if version else None
    if item.current_version is not None and item.current_version.media_asset is not None:
        return item.current_version.media_asset
    return item.media_asset


def deadlines() -> Deadlines:
    """The expert deadlines of the running policy (configuration, or an admin's override)."""
    current = policy.effective()
    return Deadlines(accept_within=current.accept_within, decide_within=current.decide_within)


def signer() -> Signer:
    """The instance's signing key."""
    return current_app.extensions["kepu_signer"]  # type: ignore[no-any-return]


def can_see_item(user: User, item: Item) -> bool:
    """Visibility: own unit (editors), assigned (experts), everything (auditors, admins)."""
    if item.is_visible_to(user):
        return True
    return user.has_role(Role.expert) and visible_to_expert(item, user)


def load_item(user: User, item_id: int) -> Item:
    """The item, or NotFound when it does not exist or the user may not see it."""
    item = db.session.get(Item, item_id)
    if item is None:
        raise NotFound("找不到该稿件")
    if not can_see_item(user, item):
        # Same answer as a missing id, but the operators' log learns about the probe.
        security_event("hidden_object", object="item", id=item_id, **request_fields())
        raise NotFound("找不到该稿件")
    return item


def load_assignment(user: User, assignment_id: int, *, to_read: bool = True) -> Assignment:
    """The assignment when it is the user's own (admins and auditors may read any).

    Reading it shows the version's text, so an expert may read only a row that still shows it
    (``Assignment.shows_text``); ``to_read=False`` loads their own row for an action on it
    (accept, decline, decide), which the operation then refuses with 409 if it has ended.
    """
    assignment = db.session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound("找不到该审核任务")
    if user.has_role(Role.auditor, Role.admin):
        return assignment
    expert = Expert.for_user(user)
    if (
        expert is None
        or assignment.expert_id != expert.id
        or (to_read and not assignment.shows_text)
    ):
        security_event("hidden_object", object="assignment", id=assignment_id, **request_fields())
        raise NotFound("找不到该审核任务")
    return assignment


def require_role(user: User, *roles: Role) -> None:
    """Raise Forbidden unless the user holds one of ``roles``."""
    if not user.has_role(*roles):
        raise Forbidden("您的角色无权执行此操作")


def roles_required(*roles: Role) -> Callable[[F], F]:
    """View decorator: the current user must hold one of ``roles`` (403 otherwise)."""

    def decorator(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask_login import current_user

            require_role(current_user, *roles)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def item_assignments(item: Item) -> list[Assignment]:
    """Every assignment of the item, oldest first."""
    return list(
        db.session.scalars(
            select(Assignment).where(Assignment.item_id == item.id).order_by(Assignment.id)
        )
    )


def item_decisions(item: Item) -> list[Decision]:
    """Every signed decision on the item, oldest first."""
    return list(
        db.session.scalars(
            select(Decision).where(Decision.item_id == item.id).order_by(Decision.id)
        )
    )


def item_to_dict(item: Item, *, detail: bool = False) -> dict[str, Any]:
    """API form of an item."""
    version = item.current_version
    data: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind.value,
        "title": item.title,
        "state": item.state.value,
        "state_label": item.state_label,
        "unit": item.unit.name,
        "updated_at": item.updated_at.isoformat(),
        "needs_admin": item.needs_admin,
        "version": {"number": version.number, "content_sha256": version.content_sha256}
        if version
        else None,
    }
    if not detail:
        return data
    report = version.report if version else None
    data["body"] = item.body
    data["screening"] = (
        {
            "risk_level": report.risk_level,
            "risk_score": report.risk_score,
            "domains": report.domains,
            "ruleset_version": report.ruleset_version,
            "failed": report.is_failed,
            "error": report.error,
            "findings": [f.to_dict() for f in report.findings],
        }
        if report
        else None
    )
    data["assignments"] = [a.to_dict() for a in item_assignments(item)]
    data["decisions"] = [
        {
            "id": d.id,
            "assignment_id": d.assignment_id,
            "version_id": d.version_id,
            "content_sha256": d.content_sha256,
            "decision": d.decision.value,
            "comment": d.comment,
            "references": d.references,
            "finding_verdicts": d.finding_verdicts,
            "expert": d.expert_user.display_name,
            "signed_at": d.signed_at.isoformat(),
            "signature": d.signature,
        }
        for d in item_decisions(item)
    ]
    pub = latest_publication(item)
    data["publication"] = pub.receipt if pub else None
    if item.kind.value == "video":
        data["video"] = video_to_dict(item)
    return data


def video_to_dict(item: Item) -> dict[str, Any]:
    """A video item's file, media steps and labelled subtitle sources (API form)."""
    from review.operations import media_jobs, working_subtitles
    from review.videos import version_sources

    version = item.current_version
    asset = video_asset(item, None)
    sources = version_sources(version) if version else working_subtitles(item)
    return {
        "file": {
            "sha256": asset.sha256,
            "size": asset.size,
            "container": asset.container,
            "duration": asset.duration,
            "width": asset.width,
            "height": asset.height,
            "video_codec": asset.video_codec,
            "audio_codec": asset.audio_codec,
            "codecs": asset.codecs,
            "thumbnail": bool(asset.thumbnail),
        }
        if asset
        else None,
        "media_jobs": [
            {
                "step": j.step.value,
                "state": j.state.value,
                "attempts": j.attempts,
                "progress": j.progress,
                "error": j.error,
            }
            for j in (media_jobs(version) if version else [])
        ],
        "subtitles": [
            {
                "kind": s.kind.value,
                "label": s.label,
                "format": s.format,
                "encoding": s.encoding,
                "sha256": s.sha256,
                "cues": s.cues,
            }
            for s in sources
        ],
    }


#: States in which the worker or the experts move the item on without the editor; pages poll
#: an item's status only while it is in one of them.
WAITING_STATES = frozenset(
    {ItemState.submitted, ItemState.screening, ItemState.flagged, ItemState.in_review}
)


def latest_screened_version(item: Item) -> Version | None:
    """The newest version that has a screening report."""
    return next((v for v in reversed(item.versions) if v.report is not None), None)


def text_findings(version: Version | None) -> list[Finding]:
    """A version's findings on its title and body, in reading order."""
    if version is None or version.report is None:
        return []
    order = {"title": 0, "body": 1}
    return sorted(
        (f for f in version.report.findings if f.segment in order),
        key=lambda f: (order[f.segment], f.start, f.end),
    )


def item_status(item: Item) -> dict[str, Any]:
    """What the live pages follow: state, screening progress, findings, reviews (labels in
    Chinese; the web layer translates them)."""
    version = item.current_version
    report = version.report if version else None
    rows = item_assignments(item)
    current = [a for a in rows if version is not None and a.version_id == version.id]
    decisions = item_decisions(item)
    pending = item.state in (ItemState.submitted, ItemState.screening)
    status: dict[str, Any] = {
        "id": item.id,
        "state": item.state.value,
        "state_label": item.state_label,
        "terminal": item.state not in WAITING_STATES,
        "version": version.number if version else None,
        "screening": {
            "pending": pending,
            "attempts": item.screening_attempts,
            "failed": item.screening_failed,
        },
        "risk_level": report.risk_level if report else None,
        "findings": len(report.findings) if report else 0,
        "assignments": {
            "offered": sum(a.state.value == "offered" for a in current),
            "accepted": sum(a.state.value == "accepted" for a in current),
            "completed": sum(a.state.value == "completed" for a in current),
            "reviewers_needed": item.reviewers_needed,
        },
        "needs_admin": item.needs_admin,
        "decisions": len(decisions),
        "updated_at": item.updated_at.isoformat(),
    }
    # Changes when something the page shows beyond the badges changed: the page offers a reload.
    status["content_key"] = ":".join(
        str(part)
        for part in (
            item.state.value,
            status["version"],
            report.id if report else 0,
            len(decisions),
            ",".join(f"{a.id}{a.state.value}" for a in rows),
            int(item.needs_admin),
        )
    )
    return status


def latest_publication(item: Item) -> Publication | None:
    """The item's most recent publication, if any."""
    return db.session.scalar(
        select(Publication).where(Publication.item_id == item.id).order_by(Publication.id.desc())
    )


def expert_to_dict(expert: Expert, load: int) -> dict[str, Any]:
    """API form of a pool member."""
    return {
        "id": expert.id,
        "user": expert.user.username,
        "name": expert.name,
        "title": expert.title,
        "unit": expert.unit.name if expert.unit else None,
        "domains": expert.domains,
        "secondary_domains": expert.secondary_domains,
        "is_verified": expert.is_verified,
        "verified_at": expert.verified_at.isoformat() if expert.verified_at else None,
        "is_senior": expert.is_senior,
        "is_active": expert.is_active,
        "max_load": expert.max_load,
        "load": load,
        "leave_from": expert.leave_from.isoformat() if expert.leave_from else None,
        "leave_until": expert.leave_until.isoformat() if expert.leave_until else None,
        "conflicts": expert.conflicts,
        "notify_mode": expert.notify_mode,
        "is_publicly_named": expert.is_publicly_named,
        "last_assigned_at": expert.last_assigned_at.isoformat()
        if expert.last_assigned_at
        else None,
    }


def notification_to_dict(note: Notification) -> dict[str, Any]:
    """API form of a notification."""
    return {
        "id": note.id,
        "kind": note.kind,
        "item_id": note.item_id,
        "title": note.title,
        "body": note.body,
        "created_at": note.created_at.isoformat(),
        "read": note.read_at is not None,
    }


LOCAL_TZ = timezone(timedelta(hours=8))  # the users' clock (China Standard Time)


def parse_time(value: object, field: str, label: str | None = None) -> datetime:
    """An ISO date or datetime; naive values are China Standard Time (UTC+8). ``field`` is the
    field name an error reports, ``label`` how its message names it (default: the name)."""
    name = label or field
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} 须为 ISO 格式的日期或时间", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{name} 须为 ISO 格式的日期或时间，例如 2026-12-01T09:00", field=field
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LOCAL_TZ)
    return parsed.astimezone(UTC)


def queue_overview() -> dict[str, Any]:
    """What an admin needs to keep the queue moving."""
    now = utcnow()
    waiting = db.session.scalars(
        select(Item)
        .where(
            or_(
                Item.needs_admin.is_(True), Item.state.in_([ItemState.flagged, ItemState.in_review])
            )
        )
        .order_by(Item.state_changed_at)
    ).all()
    items = []
    for item in waiting:
        selection = db.session.scalar(
            select(Selection).where(Selection.item_id == item.id).order_by(Selection.id.desc())
        )
        open_rows = [a for a in item_assignments(item) if a.is_open]
        items.append(
            {
                "id": item.id,
                "title": item.title,
                "state": item.state.value,
                "needs_admin": item.needs_admin,
                "reviewers_needed": item.reviewers_needed,
                "open_assignments": len(open_rows),
                "waiting_seconds": int((now - item.state_changed_at).total_seconds()),
                "refused": {
                    eid: {"code": code, "label": REFUSAL_LABELS.get(code, code)}
                    for eid, code in (selection.refused if selection else {}).items()
                },
            }
        )
    overdue = db.session.scalars(
        select(Assignment)
        .where(Assignment.state.in_(OPEN_STATES), Assignment.due_at < now)
        .order_by(Assignment.due_at)
    ).all()
    return {"items": items, "overdue": [a.to_dict() for a in overdue]}

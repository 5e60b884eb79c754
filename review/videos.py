"""Operations on video items: create with the file and subtitles, retry media, timed findings.

Like ``review.operations``: mutate, flush, write the audit event, never commit. The file checks
themselves (``review.media``) run in the view before any row is written, so a refused upload
leaves no row and no file behind.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from review.audit import record_event
from review.db import db, utcnow
from review.errors import Conflict, Forbidden, InvalidInput
from review.lifecycle import ItemState
from review.media import VideoInfo
from review.models import (
    Finding,
    Item,
    ItemKind,
    JobState,
    MediaAsset,
    Role,
    SubtitleKind,
    SubtitleSource,
    User,
    Version,
)
from review.operations import (
    MEDIA_TASK,
    _body,
    _title,
    add_expert_finding,
    enqueue,
    media_jobs,
    submit_item,
)
from review.subtitles import ParsedSubtitles

MAX_SUBTITLE_FILES = 10


@dataclass(frozen=True)
class SubtitleUpload:
    """A parsed subtitle file with the hash of its stored bytes and a display label."""

    label: str
    sha256: str
    parsed: ParsedSubtitles


def display_name(name: str | None, fallback: str) -> str:
    """A client's file name made safe for display only (NFC, no controls); never used on disk."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = text.replace("/", "／").replace("\\", "＼").strip()
    return text[:120] or fallback


def check_video_fields(*, title: object, description: object) -> None:
    """Refuse a bad title or description before any uploaded file is kept."""
    _title(title)
    _body(description)


def register_asset(info: VideoInfo, *, actor: User) -> MediaAsset:
    """The asset row for checked video bytes; the same bytes uploaded again reuse it."""
    asset = db.session.scalar(select(MediaAsset).where(MediaAsset.sha256 == info.sha256))
    if asset is not None:
        return asset
    asset = MediaAsset(
        sha256=info.sha256,
        size=info.size,
        container=info.container,
        duration=info.duration,
        width=info.width,
        height=info.height,
        video_codec=info.video_codec,
        audio_codec=info.audio_codec,
        codecs=list(info.codecs),
        subtitle_tracks=[
            {"index": t.index, "codec": t.codec, "language": t.language, "title": t.title}
            for t in info.subtitle_tracks
        ],
        uploaded_by_id=actor.id,
    )
    try:
        with db.session.begin_nested():  # the same bytes may be arriving in another request
            db.session.add(asset)
    except IntegrityError:
        existing = db.session.scalar(select(MediaAsset).where(MediaAsset.sha256 == info.sha256))
        assert existing is not None
        return existing
    return asset


def create_video_item(
    *,
    title: object,
    description: object,
    asset: MediaAsset,
    subtitles: Sequence[SubtitleUpload],
    actor: User,
    submit: bool = False,
) -> Item:
    """Create a video item (a draft, or submitted at once) with its file and subtitle files."""
    if not actor.has_role(Role.editor) or actor.unit_id is None:
        raise Forbidden("只有隶属媒体单位的编辑可以创建稿件")
    if len(subtitles) > MAX_SUBTITLE_FILES:
        raise InvalidInput(
            f"字幕文件最多 {MAX_SUBTITLE_FILES} 个", code="too_many_files", field="subtitles"
        )
    item = Item(
        kind=ItemKind.video,
        unit_id=actor.unit_id,
        created_by_id=actor.id,
        title=_title(title),
        body=_body(description),
        state=ItemState.draft,
        media_asset_id=asset.id,
    )
    db.session.add(item)
    db.session.flush()
    item.media_asset = asset
    for upload in subtitles:
        db.session.add(
            SubtitleSource(
                item_id=item.id,
                version_id=None,
                kind=SubtitleKind.supplied,
                label=upload.label,
                format=upload.parsed.format,
                encoding=upload.parsed.encoding,
                sha256=upload.sha256,
                cues=[list(c) for c in upload.parsed.cues],
            )
        )
    db.session.flush()
    record_event(
        "item.created",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "kind": ItemKind.video.value,
            "title": item.title,
            "video_sha256": asset.sha256,
            "size": asset.size,
            "duration": asset.duration,
            "subtitles": [u.sha256 for u in subtitles],
        },
    )
    if submit:
        submit_item(item, actor=actor)
    return item


def retry_media(item: Item, *, actor: User) -> int:
    """Put the current version's failed media steps back in the queue; returns how many."""
    if not item.can_edit(actor):
        raise Forbidden("只有本单位的媒体编辑可以执行此操作")
    version = item.current_version
    if version is None or version.media_asset_id is None:
        raise Conflict("该稿件没有视频处理任务", code="no_media")
    if item.state not in (ItemState.submitted, ItemState.screening):
        raise Conflict("该版本的视频处理已经结束，无需重试", code="media_finished")
    failed = [j for j in media_jobs(version) if j.state is JobState.failed]
    if not failed:
        raise Conflict("没有失败的视频处理步骤", code="nothing_failed")
    for job in failed:
        job.state = JobState.pending
        job.attempts = 0
        job.progress = 0.0
    item.state_changed_at = utcnow()
    db.session.flush()
    enqueue(MEDIA_TASK, version.id)
    record_event(
        "media.retry",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={"version": version.number, "steps": [j.step.value for j in failed]},
    )
    return len(failed)


def add_timed_finding(
    version: Version, *, start_time: Any, end_time: Any, note: object, actor: User
) -> Finding:
    """An expert marks a time range of the video as a finding the rules missed."""
    if version.media_asset is None:
        raise InvalidInput("只有视频稿件可以按时间段标记", code="not_video")
    try:
        start, end = float(start_time), float(end_time)
    except (TypeError, ValueError):
        raise InvalidInput("开始和结束时间必须是秒数", code="invalid_time") from None
    duration = version.media_asset.duration
    if not (0 <= start < end <= duration + 1):
        raise InvalidInput(
            f"时间段无效：须满足 0 ≤ 开始 < 结束 ≤ 视频时长（{duration:.1f} 秒）",
            code="invalid_time",
        )
    return add_expert_finding(
        version,
        segment="cue",
        start=0,
        end=0,
        text="",  # a time range marks no text: the note is shown
        note=note,
        severity="medium",
        actor=actor,
        start_time=round(start, 3),
        end_time=round(end, 3),
        event={"start": start, "end": end},
    )


def version_sources(version: Version) -> list[SubtitleSource]:
    """Every labelled subtitle source of a version: supplied, embedded, then OCR."""
    order = list(SubtitleKind)
    rows = db.session.scalars(
        select(SubtitleSource).where(SubtitleSource.version_id == version.id)
    ).all()
    return sorted(rows, key=lambda s: (order.index(s.kind), s.id))

"""Media orchestration for one video version: embedded subtitles → OCR → thumbnail → screening.

Runs on the ``media`` queue so a long video never holds up text screening. Each step is a
``media_jobs`` row: its attempt is committed before the work starts, its result (subtitle
sources, thumbnail) is committed together with ``done``, so a redelivered task resumes at the
first unfinished step. A step that keeps failing is marked ``failed`` with its reason for the
editor, who can retry it; when every step is done the version is handed to screening through
the outbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from review import media, ocr, subtitles
from review.audit import SYSTEM, record_event
from review.db import db, utcnow
from review.lifecycle import ItemState
from review.models import (
    JobState,
    MediaAsset,
    MediaJob,
    MediaStep,
    SubtitleKind,
    SubtitleSource,
    Version,
)
from review.operations import MEDIA_TASK, SCREEN_TASK, enqueue, media_jobs

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between progress commits during OCR


def tools() -> media.Tools:
    """ffmpeg and ffprobe as configured."""
    cfg = current_app.config
    return media.Tools(ffmpeg=str(cfg["FFMPEG"]), ffprobe=str(cfg["FFPROBE"]))


def media_folder() -> Path:
    """Where video, subtitle and thumbnail files are kept."""
    return Path(str(current_app.config["MEDIA_FOLDER"]))


def _info(asset: MediaAsset) -> media.VideoInfo:
    return media.VideoInfo(
        sha256=asset.sha256,
        size=asset.size,
        container=asset.container,
        duration=asset.duration,
        width=asset.width,
        height=asset.height,
        video_codec=asset.video_codec,
        audio_codec=asset.audio_codec,
    )


def _reuse(version: Version, step: MediaStep) -> bool:
    """Copy a step's result from an earlier version with the same video bytes, if one has it."""
    earlier = db.session.scalar(
        select(MediaJob)
        .join(Version, Version.id == MediaJob.version_id)
        .where(
            Version.item_id == version.item_id,
            Version.media_asset_id == version.media_asset_id,
            Version.id != version.id,
            MediaJob.step == step,
            MediaJob.state == JobState.done,
        )
        .order_by(MediaJob.id.desc())
    )
    if earlier is None:
        return False
    kind = {MediaStep.subtitles: SubtitleKind.embedded, MediaStep.ocr: SubtitleKind.ocr}.get(step)
    if kind is not None:
        for src in db.session.scalars(
            select(SubtitleSource).where(
                SubtitleSource.version_id == earlier.version_id, SubtitleSource.kind == kind
            )
        ):
            db.session.add(
                SubtitleSource(
                    item_id=version.item_id,
                    version_id=version.id,
                    kind=src.kind,
                    label=src.label,
                    format=src.format,
                    encoding=src.encoding,
                    sha256=src.sha256,
                    cues=list(src.cues),
                )
            )
    return True


def _replace_sources(version: Version, kind: SubtitleKind, rows: list[SubtitleSource]) -> None:
    db.session.execute(
        delete(SubtitleSource).where(
            SubtitleSource.version_id == version.id, SubtitleSource.kind == kind
        )
    )
    for row in rows:
        db.session.add(row)


def run_subtitles(version: Version, asset: MediaAsset, job: MediaJob) -> dict[str, Any]:
    """Extract every embedded text subtitle track with ffmpeg and parse it."""
    path = str(media_folder() / asset.file_name)
    rows: list[SubtitleSource] = []
    skipped = []
    for track in asset.subtitle_tracks:
        if track["codec"] not in media.TEXT_SUBTITLE_CODECS:
            skipped.append(track["codec"])  # picture-based tracks (PGS, DVD) carry no text
            continue
        raw = media.extract_subtitle_track(path, int(track["index"]), tools())
        if not raw.strip():
            continue
        parsed = subtitles.parse(raw, name=f"track-{track['index']}.srt")
        sha = media.store_bytes(raw, folder=media_folder(), ext="srt")
        label = f"#{track['index']}"
        if track.get("language"):
            label += f" {track['language']}"
        if track.get("title"):
            label += f" {track['title']}"
        rows.append(
            SubtitleSource(
                item_id=version.item_id,
                version_id=version.id,
                kind=SubtitleKind.embedded,
                label=label[:200],
                format="srt",
                encoding=parsed.encoding,
                sha256=sha,
                cues=[list(c) for c in parsed.cues],
            )
        )
    _replace_sources(version, SubtitleKind.embedded, rows)
    return {"tracks": len(rows), "skipped": skipped}


def run_ocr(version: Version, asset: MediaAsset, job: MediaJob) -> dict[str, Any]:
    """Read burned-in subtitles from frames sampled in the bottom third of the picture."""
    fps = media.ocr_rate(
        float(current_app.config["OCR_FPS"]),
        asset.duration,
        int(current_app.config["OCR_MAX_FRAMES"]),
    )
    if fps <= 0:
        return {"skipped": "KEPU_OCR_FPS=0"}
    path = str(media_folder() / asset.file_name)
    last = [time.monotonic()]
    job_id = job.id

    def progress(at: float) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            row = db.session.get(MediaJob, job_id)
            if row is not None:
                row.progress = min(at / max(asset.duration, 0.001), 0.99)
                db.session.commit()

    started = time.monotonic()
    frames = media.sample_frames(path, _info(asset), fps=fps, tools=tools())
    cues, stats = ocr.read_frames(frames, step=1.0 / fps, progress=progress)
    version = db.session.get(Version, version.id)  # type: ignore[assignment]
    rows = []
    if cues:
        blob = json.dumps(cues, ensure_ascii=False).encode()
        rows.append(
            SubtitleSource(
                item_id=version.item_id,
                version_id=version.id,
                kind=SubtitleKind.ocr,
                label=f"{fps:.3g} fps",
                format="ocr",
                encoding=None,
                sha256=hashlib.sha256(blob).hexdigest(),
                cues=[list(c) for c in cues],
            )
        )
    _replace_sources(version, SubtitleKind.ocr, rows)
    return {
        **stats,
        "cues": len(cues),
        "fps": round(fps, 4),
        "seconds": round(time.monotonic() - started, 2),
    }


def run_thumbnail(version: Version, asset: MediaAsset, job: MediaJob) -> dict[str, Any]:
    """A small JPEG for lists and the review page, kept beside the video."""
    name = f"{asset.sha256}.thumb.jpg"
    target = media_folder() / name
    if not target.exists():
        media.make_thumbnail(str(media_folder() / asset.file_name), _info(asset), target, tools())
    asset.thumbnail = name
    return {"file": name}


STEPS: dict[MediaStep, Callable[[Version, MediaAsset, MediaJob], dict[str, Any]]] = {
    MediaStep.subtitles: run_subtitles,
    MediaStep.ocr: run_ocr,
    MediaStep.thumbnail: run_thumbnail,
}

STEP_ERRORS = {
    MediaStep.subtitles: "提取内嵌字幕失败",
    MediaStep.ocr: "识别画面字幕失败",
    MediaStep.thumbnail: "生成缩略图失败",
}


def process_media(version_id: int) -> str:
    """Run the version's unfinished media steps in order; idempotent and resumable."""
    version = db.session.get(Version, version_id)
    if version is None:
        return "missing"
    item = version.item
    if item.current_version_id != version.id or item.state not in (
        ItemState.submitted,
        ItemState.screening,
    ):
        return "done"  # superseded, withdrawn, or already screened
    max_attempts = int(current_app.config["MEDIA_MAX_ATTEMPTS"])
    for job in media_jobs(version):
        if job.state is JobState.done:
            continue
        if job.state is JobState.failed:
            return "failed"  # waits for the editor's retry
        asset = version.media_asset
        assert asset is not None
        job.state = JobState.running
        job.attempts += 1
        job.started_at = utcnow()
        job.error = None
        job_id, step = job.id, job.step
        reused = _reuse(version, step)
        if not reused:
            db.session.commit()  # the attempt counts even if the step kills the process
        try:
            detail = {"reused": True} if reused else STEPS[step](version, asset, job)
        except Exception as exc:
            db.session.rollback()
            return _step_failed(version_id, job_id, exc, max_attempts)
        job = db.session.get(MediaJob, job_id)  # type: ignore[assignment]
        assert job is not None
        job.state = JobState.done
        job.progress = 1.0
        job.finished_at = utcnow()
        job.detail = detail
        db.session.commit()
        version = db.session.get(Version, version_id)  # type: ignore[assignment]
        assert version is not None
    record_event(
        "media.processed",
        actor=SYSTEM,
        subject_type="item",
        subject_id=version.item_id,
        data={"version": version.number},
    )
    enqueue(SCREEN_TASK, version.id)
    db.session.commit()
    return "done"


def _step_failed(version_id: int, job_id: int, exc: Exception, max_attempts: int) -> str:
    job = db.session.get(MediaJob, job_id)
    version = db.session.get(Version, version_id)
    assert job is not None and version is not None
    reason = f"{STEP_ERRORS[job.step]}：{type(exc).__name__}: {exc}"[:2000]
    job.error = reason
    if job.attempts >= max_attempts:
        job.state = JobState.failed
        job.finished_at = utcnow()
        log.error("media step %s of version %s failed for good: %s", job.step, version_id, exc)
        record_event(
            "media.failed",
            actor=SYSTEM,
            subject_type="item",
            subject_id=version.item_id,
            data={"version": version.number, "step": job.step.value, "error": reason},
        )
        db.session.commit()
        return "failed"
    job.state = JobState.pending
    log.warning("media step %s of version %s failed (%s); retrying", job.step, version_id, exc)
    enqueue(MEDIA_TASK, version_id, delay=5 * 2 ** (job.attempts - 1))
    db.session.commit()
    return "retry"

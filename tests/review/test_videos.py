"""Videos end to end: upload checks, subtitles from a file, a track and the picture, screening on
cues with time ranges, media steps with retry, and playback with range requests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from review.db import db
from review.models import Item, MediaAsset, MediaJob, SubtitleSource, Version
from tests.media_files import (
    CLAIM,
    SRT,
    plain_video,
    video_with_burned_claim,
    video_with_embedded_track,
    webm_video,
)
from workers import media, screening

MOMENT = 4.0  # the claim is on screen (and in the subtitles) at this second


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test videos, made once per run with ffmpeg."""
    folder = tmp_path_factory.mktemp("clips")
    srt = folder / "claim.srt"
    srt.write_text(SRT, encoding="utf-8")
    plain = plain_video(folder / "plain.mp4")
    truncated = folder / "truncated.mp4"
    data = plain.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {
        "srt": srt,
        "plain": plain,
        "embedded": video_with_embedded_track(folder / "embedded.mp4", srt),
        "burned": video_with_burned_claim(folder / "burned.mp4"),
        "webm": webm_video(folder / "clip.webm"),
        "truncated": truncated,
    }


@pytest.fixture
def editor(app: Any, factory: Any) -> dict[str, str]:
    app.config["OCR_FPS"] = 0  # OCR only where a test asks for it (it is the slow step)
    return factory.token(factory.user("editor"))  # type: ignore[no-any-return]


def upload(
    app: Any, headers: dict[str, str], video: bytes, *, subtitles: list[tuple[bytes, str]] = (),  # type: ignore[assignment]
    submit: bool = True, name: str = "片子.mp4",
) -> Any:  # fmt: skip
    data: dict[str, Any] = {
        "kind": "video",
        "title": "健康节目",
        "description": "本期节目介绍饮水常识。",
        "submit": "true" if submit else "false",
        "file": (io.BytesIO(video), name),
    }
    if subtitles:
        data["subtitles"] = [(io.BytesIO(raw), fname) for raw, fname in subtitles]
    return app.test_client().post(
        "/api/v1/items", headers=headers, data=data, content_type="multipart/form-data"
    )


def process(item_id: int) -> Version:
    """Run the media steps and then screening, the way the two workers do."""
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version_id is not None
    version_id = item.current_version_id
    assert media.process_media(version_id) == "done"
    assert screening.screen_version(version_id) in ("flagged", "cleared")
    db.session.expire_all()
    version = db.session.get(Version, version_id)
    assert version is not None
    return version


def claim_finding(app: Any, headers: dict[str, str], item_id: int) -> dict[str, Any]:
    detail = app.test_client().get(f"/api/v1/items/{item_id}", headers=headers).json
    timed = [
        f
        for f in detail["screening"]["findings"]
        if f["start_time"] is not None and f["start_time"] <= MOMENT <= f["end_time"]
    ]
    assert timed, detail["screening"]["findings"]
    return timed[0]  # type: ignore[no-any-return]


def stored_files(app: Any) -> list[str]:
    folder = Path(app.config["MEDIA_FOLDER"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_video_with_srt_file_flags_the_claim_at_its_time(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    video, srt = clips["plain"].read_bytes(), clips["srt"].read_bytes()
    resp = upload(app, editor, video, subtitles=[(srt.decode().encode("gbk"), "字幕.srt")])
    assert resp.status_code == 201, resp.json
    item_id = resp.json["id"]
    video_sha = hashlib.sha256(video).hexdigest()
    assert resp.json["video"] == video_sha
    # Stored under content-addressed names only: never the client's file name.
    names = stored_files(app)
    assert f"{video_sha}.mp4" in names and not any("片子" in n or "字幕" in n for n in names)
    version = process(item_id)
    assert version.item.state.value == "flagged"
    found = claim_finding(app, editor, item_id)
    assert CLAIM[1:6] in found["text"] and found["segment"] == "cue"
    assert found["start_time"] == 3.0 and found["end_time"] == 6.0
    # The hash covers the video bytes and the subtitle file's bytes (GBK, as uploaded).
    sub_sha = hashlib.sha256(srt.decode().encode("gbk")).hexdigest()
    assert version.content_sha256 == Version.compute_sha256(
        "健康节目", "本期节目介绍饮水常识。", [f"video:{video_sha}", f"subtitle:{sub_sha}"]
    )
    detail = app.test_client().get(f"/api/v1/items/{item_id}", headers=editor).json
    assert detail["video"]["file"]["duration"] == pytest.approx(8, abs=0.2)
    assert detail["video"]["file"]["codecs"][:2] == ["video:h264", "audio:aac"]
    assert [(s["kind"], s["encoding"]) for s in detail["video"]["subtitles"]] == [
        ("supplied", "gb18030")
    ]
    assert [j["state"] for j in detail["video"]["media_jobs"]] == ["done"] * 3
    assert detail["video"]["file"]["thumbnail"] is True


def test_another_subtitle_file_makes_another_hash(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    video, srt = clips["plain"].read_bytes(), clips["srt"].read_bytes()
    a = upload(app, editor, video, subtitles=[(srt, "a.srt")]).json["id"]
    b = upload(app, editor, video, subtitles=[(srt.replace("谢谢".encode(), b"Bye"), "a.srt")])
    hashes = {
        db.session.get(Item, i).current_version.content_sha256  # type: ignore[union-attr]
        for i in (a, b.json["id"])
    }
    assert len(hashes) == 2
    assert db.session.scalar(select(func.count()).select_from(MediaAsset)) == 1  # same bytes


def test_embedded_subtitle_track_is_extracted_and_screened(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    resp = upload(app, editor, clips["embedded"].read_bytes())
    assert resp.status_code == 201, resp.json
    version = process(resp.json["id"])
    sources = db.session.scalars(
        select(SubtitleSource).where(SubtitleSource.version_id == version.id)
    ).all()
    assert [(s.kind.value, s.label) for s in sources] == [("embedded", "#0 chi")]
    assert [3.0, 6.0, CLAIM] in sources[0].cues
    found = claim_finding(app, editor, resp.json["id"])
    assert (found["start_time"], found["end_time"]) == (3.0, 6.0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_burned_in_chinese_subtitle_is_read_by_ocr(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    app.config["OCR_FPS"] = 1.0
    resp = upload(app, editor, clips["burned"].read_bytes())
    assert resp.status_code == 201, resp.json
    version = process(resp.json["id"])
    ocr = db.session.scalars(
        select(SubtitleSource).where(
            SubtitleSource.version_id == version.id, SubtitleSource.kind == "ocr"
        )
    ).all()
    assert len(ocr) == 1
    assert [c[2] for c in ocr[0].cues] == [CLAIM]
    start, end, _ = ocr[0].cues[0]
    assert start <= 3.0 + 1 and end >= 6.0 - 1
    found = claim_finding(app, editor, resp.json["id"])
    assert found["start_time"] <= MOMENT <= found["end_time"]
    job = db.session.scalar(
        select(MediaJob).where(MediaJob.version_id == version.id, MediaJob.step == "ocr")
    )
    assert job is not None and job.detail["frames"] == 8 and job.detail["cues"] == 1


def test_webm_is_accepted(app: Any, editor: dict[str, str], clips: dict[str, Path]) -> None:
    resp = upload(app, editor, clips["webm"].read_bytes(), name="x.webm", submit=False)
    assert resp.status_code == 201, resp.json
    asset = db.session.scalar(select(MediaAsset))
    assert asset is not None and (asset.container, asset.video_codec) == ("webm", "vp9")


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda c: b"<html><script>alert(1)</script></html>" * 50, "type_mismatch"),
        (lambda c: c["truncated"].read_bytes(), "invalid_media"),
        (lambda c: b"", "empty_file"),
        (lambda c: b"\x00\x00\x00\x18ftypisom" + b"\x00" * 4000, "invalid_media"),
    ],
    ids=["renamed-text", "truncated-mp4", "zero-bytes", "ftyp-then-garbage"],
)
def test_bad_files_are_refused_and_leave_nothing(
    app: Any, editor: dict[str, str], clips: dict[str, Path], make: Any, code: str
) -> None:
    resp = upload(app, editor, make(clips), name="clip.mp4")
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == code and resp.json["message"]
    assert stored_files(app) == []
    assert db.session.scalar(select(func.count()).select_from(Item)) == 0


def test_bad_subtitle_refuses_the_upload_before_the_video_is_stored(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    resp = upload(app, editor, clips["plain"].read_bytes(), subtitles=[(b"\xff\xfe\x00", "x.srt")])
    assert resp.status_code == 400 and resp.json["field"] == "subtitles"
    assert stored_files(app) == []


def test_oversize_upload_is_refused_while_streaming(
    app: Any, factory: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    app.config["MAX_VIDEO_BYTES"] = 20_000
    video = clips["plain"].read_bytes()
    assert len(video) > 20_000
    resp = upload(app, editor, video)
    assert resp.status_code == 413
    assert resp.json["error"] == "too_large" and "视频文件超过上限" in resp.json["message"]
    assert stored_files(app) == []
    assert db.session.scalar(select(func.count()).select_from(Item)) == 0
    factory.user("editor", username="big-editor")
    c = app.test_client()
    c.post("/login", data={"username": "big-editor", "password": "correct-horse-1"})
    page = c.post(
        "/items/new-video",
        data={"title": "大文件", "action": "save", "file": (io.BytesIO(video), "big.mp4")},
        content_type="multipart/form-data",
    )
    assert page.status_code == 413 and "视频文件超过上限" in page.get_data(as_text=True)
    assert stored_files(app) == []


def test_failed_step_says_why_and_can_be_retried(
    app: Any, factory: Any, clips: dict[str, Path]
) -> None:
    app.config.update(OCR_FPS=0, MEDIA_MAX_ATTEMPTS=1)
    user = factory.user("editor", username="vid-editor")
    headers = factory.token(user)
    item_id = upload(app, headers, clips["plain"].read_bytes()).json["id"]
    version_id = db.session.get(Item, item_id).current_version_id  # type: ignore[union-attr]
    app.config["FFMPEG"] = "/nonexistent/ffmpeg"
    assert media.process_media(version_id) == "failed"
    assert screening.screen_version(version_id) == "media"  # screening waits for the video
    jobs = app.test_client().get(f"/api/v1/items/{item_id}", headers=headers).json["video"]
    failed = [j for j in jobs["media_jobs"] if j["state"] == "failed"]
    assert [j["step"] for j in failed] == ["thumbnail"]
    assert "生成缩略图失败" in failed[0]["error"] and "ffmpeg" in failed[0]["error"]
    web = app.test_client()
    web.post("/login", data={"username": "vid-editor", "password": "correct-horse-1"})
    page = web.get(f"/items/{item_id}").get_data(as_text=True)
    assert "生成缩略图失败" in page and "重试失败的步骤" in page
    app.config["FFMPEG"] = "ffmpeg"
    assert web.post(f"/items/{item_id}/media/retry").status_code == 302
    db.session.expire_all()
    assert process(item_id).item.state.value in ("cleared", "flagged")


def test_video_plays_with_range_requests_for_those_who_may_see_it(
    app: Any, factory: Any, clips: dict[str, Path]
) -> None:
    owner = factory.user("editor", username="owner")
    factory.user("editor", username="other")
    video = clips["plain"].read_bytes()
    srt = [(clips["srt"].read_bytes(), "claim.srt")]
    item_id = upload(app, factory.token(owner), video, subtitles=srt).json["id"]
    process(item_id)
    c = app.test_client()
    c.post("/login", data={"username": "owner", "password": "correct-horse-1"})
    with c.get(f"/items/{item_id}/video", headers={"Range": "bytes=100-199"}) as part:
        assert part.status_code == 206 and part.data == video[100:200]
        assert part.headers["Content-Type"] == "video/mp4"
        assert "sandbox" in part.headers["Content-Security-Policy"]
    with c.get(f"/items/{item_id}/thumbnail.jpg") as thumb:
        assert thumb.data[:3] == b"\xff\xd8\xff"
    page = c.get(f"/items/{item_id}").get_data(as_text=True)
    assert 'data-seek="3.0"' in page and "video.js" in page
    d = app.test_client()
    d.post("/login", data={"username": "other", "password": "correct-horse-1"})
    assert d.get(f"/items/{item_id}/video").status_code == 404
    assert d.get(f"/items/{item_id}/thumbnail.jpg").status_code == 404


def test_upload_page_refuses_a_renamed_file_in_chinese_and_accepts_a_video(
    app: Any, factory: Any, clips: dict[str, Path]
) -> None:
    app.config["OCR_FPS"] = 0
    factory.user("editor", username="web-editor")
    c = app.test_client()
    c.post("/login", data={"username": "web-editor", "password": "correct-horse-1"})
    assert "multipart/form-data" in c.get("/items/new-video").get_data(as_text=True)
    bad = c.post(
        "/items/new-video",
        data={"title": "节目", "action": "submit", "file": (io.BytesIO(b"hello " * 99), "a.mp4")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400
    assert "文件内容不是 MP4、WebM 或 MOV 视频" in bad.get_data(as_text=True)
    assert stored_files(app) == []
    good = c.post(
        "/items/new-video",
        data={
            "title": "节目",
            "description": "简介",
            "action": "submit",
            "file": (io.BytesIO(clips["plain"].read_bytes()), "a.mp4"),
            "subtitles": (io.BytesIO(clips["srt"].read_bytes()), "a.srt"),
        },
        content_type="multipart/form-data",
    )
    assert good.status_code == 302, good.get_data(as_text=True)[:300]
    item = db.session.scalar(select(Item))
    assert item is not None and item.kind.value == "video" and item.state.value == "submitted"
    page = c.get(f"/items/{item.id}").get_data(as_text=True)
    assert "视频处理进度" in page and 'http-equiv="refresh"' in page


def test_expert_reviews_beside_the_transcript_and_marks_a_time_range(
    app: Any, factory: Any, clips: dict[str, Path]
) -> None:
    from expert_pool.models import Assignment

    app.config["OCR_FPS"] = 0
    expert = factory.expert(username="vid-expert")
    auditor = factory.user("auditor", username="vid-auditor")
    headers = factory.token(factory.user("editor"))
    srt = [(clips["srt"].read_bytes(), "claim.srt")]
    item_id = upload(app, headers, clips["plain"].read_bytes(), subtitles=srt).json["id"]
    process(item_id)
    assignment = db.session.scalar(select(Assignment).where(Assignment.item_id == item_id))
    assert assignment is not None
    c = app.test_client()
    c.post("/login", data={"username": "vid-expert", "password": "correct-horse-1"})
    c.post(f"/assignments/{assignment.id}/accept")
    page = c.get(f"/assignments/{assignment.id}").get_data(as_text=True)
    assert f'src="/items/{item_id}/video?version=1"' in page
    assert 'data-seek="3.0"' in page and CLAIM in page and "标记时间段为新发现" in page
    with c.get(f"/items/{item_id}/video", headers={"Range": "bytes=0-9"}) as part:
        assert part.status_code == 206
    refused = c.post(
        f"/assignments/{assignment.id}/findings",
        data={"start_time": "7", "end_time": "99", "note": "越界"},
    )
    assert refused.status_code == 303
    added = c.post(
        f"/assignments/{assignment.id}/findings",
        data={"start_time": "0.5", "end_time": "2.5", "note": "片头字幕宣称包治百病"},
    )
    assert added.status_code == 302
    findings = app.test_client().get(f"/api/v1/items/{item_id}", headers=headers).json
    mine = [f for f in findings["screening"]["findings"] if f["text"] == "片头字幕宣称包治百病"]
    assert [(f["start_time"], f["end_time"], f["rule_id"]) for f in mine] == [(0.5, 2.5, None)]
    assert expert is not None
    # An auditor may watch too; the first request of a viewing is an audited download.
    a = app.test_client()
    a.post("/login", data={"username": auditor.username, "password": "correct-horse-1"})
    from review.audit import AuditEvent

    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with a.get(f"/items/{item_id}/video") as whole:
        assert whole.status_code == 200
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == (before or 0) + 1


def test_reconciler_requeues_the_media_step_not_screening(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    from datetime import timedelta

    from review.db import utcnow
    from review.models import JobState, OutboxMessage
    from review.operations import MEDIA_TASK, requeue_stuck

    item_id = upload(app, editor, clips["plain"].read_bytes()).json["id"]
    item = db.session.get(Item, item_id)
    assert item is not None
    item.state_changed_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert requeue_stuck(older_than=timedelta(minutes=10)) == 1
    last = db.session.scalar(select(OutboxMessage).order_by(OutboxMessage.id.desc()))
    assert last is not None and last.task == MEDIA_TASK
    job = db.session.scalar(select(MediaJob).where(MediaJob.version_id == item.current_version_id))
    assert job is not None
    job.state = JobState.failed
    item.state_changed_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert requeue_stuck(older_than=timedelta(minutes=10)) == 0  # waits for the editor's retry


def test_a_line_in_two_sources_at_the_same_time_is_screened_once(
    app: Any, editor: dict[str, str], clips: dict[str, Path]
) -> None:
    from review.models import SubtitleKind

    srt = [(clips["srt"].read_bytes(), "claim.srt")]
    item_id = upload(app, editor, clips["plain"].read_bytes(), subtitles=srt).json["id"]
    version = process(item_id)
    db.session.add(
        SubtitleSource(
            item_id=item_id,
            version_id=version.id,
            kind=SubtitleKind.ocr,
            label="1 fps",
            format="ocr",
            sha256="0" * 64,
            cues=[[3.0, 5.0, CLAIM], [7.0, 8.0, "画面里的另一句"], [9.0, 10.0, CLAIM]],
        )
    )
    db.session.commit()
    cues = [(s.text, s.start_time) for s in screening.segments_of(version) if s.kind == "cue"]
    assert cues.count((CLAIM, 3.0)) == 1
    assert ("画面里的另一句", 7.0) in cues and (CLAIM, 9.0) in cues


def test_subtitles_are_searchable(app: Any, editor: dict[str, str], clips: dict[str, Path]) -> None:
    srt = [(clips["srt"].read_bytes(), "claim.srt")]
    item_id = upload(app, editor, clips["plain"].read_bytes(), subtitles=srt).json["id"]
    process(item_id)
    found = app.test_client().get("/api/v1/search?q=欢迎收看", headers=editor).json
    assert [i["id"] for i in found] == [item_id]


def test_json_video_without_a_file_points_to_multipart(app: Any, editor: dict[str, str]) -> None:
    resp = app.test_client().post(
        "/api/v1/items", headers=editor, json={"kind": "video", "title": "视频"}
    )
    assert resp.status_code == 400 and resp.json["error"] == "unsupported_kind"
    assert "multipart/form-data" in resp.json["message"]
    missing = app.test_client().post(
        "/api/v1/items",
        headers=editor,
        data={"kind": "video", "title": "视频"},
        content_type="multipart/form-data",
    )
    assert missing.status_code == 400 and missing.json["error"] == "file_missing"

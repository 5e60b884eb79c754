"""Videos with real workers: media work runs on its own queue, so articles are screened while a
video waits for (or occupies) the media worker; then the video is screened on its cues."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GENUINE_BODY, GENUINE_TITLE, Factory, wait_until
from tests.e2e.conftest import Worker
from tests.media_files import SRT, plain_video

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def pg_app(pg_url: str, instance: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.conftest import REDIS_URL

    monkeypatch.setenv("KEPU_DATABASE_URL", pg_url)
    monkeypatch.setenv("KEPU_BROKER_URL", REDIS_URL)
    from review import create_app
    from review.db import db

    app = create_app({"TESTING": True})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_media_queue_is_separate_from_text_screening(
    pg_app: Any, worker_env: dict[str, str], instance: Path, tmp_path: Path
) -> None:
    from review.db import db

    env = dict(worker_env, KEPU_OCR_FPS="1")
    text_worker = Worker(env, instance, queues="screening,control,notifications")
    media_worker: Worker | None = None
    try:
        wait_until(lambda: "ready." in text_worker.log_text(), timeout=60)
        factory = Factory()
        factory.expert()
        ed = factory.token(factory.user("editor"))
        client = pg_app.test_client()
        video = plain_video(tmp_path / "v.mp4").read_bytes()
        resp = client.post(
            "/api/v1/items",
            headers=ed,
            data={
                "kind": "video",
                "title": "健康节目",
                "submit": "true",
                "file": (io.BytesIO(video), "v.mp4"),
                "subtitles": (io.BytesIO(SRT.encode("gbk")), "v.srt"),
            },
            content_type="multipart/form-data",
        )
        assert resp.status_code == 201, resp.json
        video_id = resp.json["id"]
        article = client.post(
            "/api/v1/items",
            headers=ed,
            json={"title": GENUINE_TITLE, "body": GENUINE_BODY, "submit": True},
        ).json["id"]

        def state(item_id: int) -> str:
            db.session.rollback()
            return str(client.get(f"/api/v1/items/{item_id}", headers=ed).json["state"])

        # No worker consumes the media queue yet: the article is screened, the video waits.
        wait_until(lambda: state(article) == "cleared", timeout=60)
        assert state(video_id) == "submitted"
        assert "kepu.process_media" not in text_worker.log_text()

        media_worker = Worker(env, instance, queues="media", beat=False)
        wait_until(lambda: state(video_id) in ("flagged", "in_review"), timeout=120)
        assert "kepu.process_media" in media_worker.log_text()
        assert "kepu.process_media" not in text_worker.log_text()
        detail = client.get(f"/api/v1/items/{video_id}", headers=ed).json
        assert [j["state"] for j in detail["video"]["media_jobs"]] == ["done"] * 3
        timed = [f for f in detail["screening"]["findings"] if f["start_time"] is not None]
        assert any(f["start_time"] <= 4.0 <= f["end_time"] for f in timed), timed
    finally:
        text_worker.stop()
        if media_worker is not None:
            media_worker.stop()

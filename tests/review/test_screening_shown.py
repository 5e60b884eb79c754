"""Screening reads what readers see (#14 item 6): a claim hidden from the raw text by
character references, an invisible character, a line break or a look-alike character is
flagged, and its finding points at the stored characters (the highlights and the experts'
marks work on the stored text)."""

from __future__ import annotations

import html
from typing import Any

import pytest
from sqlalchemy import select

from review.db import db
from review.models import OutboxMessage
from review.videos import version_sources
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from tests.review import test_videos
from tests.review.test_videos import process, upload
from workers import screening

# The video tests' fixtures: the ffmpeg-made clips (once per run) and an editor's token.
video_clips = test_videos.clips
video_editor = test_videos.editor

TITLE = "健康小知识"
CLAIM = "每天喝小苏打水可以彻底根治癌症。"


def _references(text: str) -> str:
    """Every Chinese character of ``text`` as a decimal character reference."""
    return "".join(f"&#{ord(ch)};" if "\u4e00" <= ch <= "\u9fff" else ch for ch in text)


def _screen_pending() -> list[str]:
    """Run every queued screening message the way the worker does."""
    results = []
    for msg in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    ).all():
        if msg.task == "kepu.screen_version":
            msg.sent_at = msg.created_at
            db.session.commit()
            results.append(screening.screen_version(msg.args[0]))
    return results


def _as_read(stored: str) -> str:
    """The stored characters of a finding as a reader reads them."""
    return (
        html.unescape(stored)
        .replace("\u200b", "")
        .replace("\r\n", "")
        .replace("\n", "")
        .replace("冶", "治")
    )


EVASIONS = {
    "references": _references(CLAIM),
    "invisible": CLAIM.replace("根治", "根&#8203;治"),
    "line_break": CLAIM.replace("根治", "根\n治"),
    "line_break_crlf": "健康提示：\r\n" + CLAIM.replace("根治", "根\r\n治"),
    "look_alike": CLAIM.replace("根治", "根冶"),
}


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_a_hidden_claim_is_flagged_at_its_stored_offsets(app: Any, factory: Any, name: str) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    factory.expert(senior=True)
    factory.expert()
    body = EVASIONS[name]
    resp = client.post(
        "/api/v1/items", headers=ed, json={"title": TITLE, "body": body, "submit": True}
    )
    assert resp.status_code == 201, resp.json
    item_id = resp.json["id"]
    assert _screen_pending() == ["flagged"]

    detail = client.get(f"/api/v1/items/{item_id}", headers=ed).json
    assert detail["state"] == "in_review"
    findings = detail["screening"]["findings"]
    stored = detail["body"]  # the canonical form of what was sent (CRLF is stored as LF)
    for f in findings:  # offsets and text are the stored characters
        assert f["segment"] == "body"
        assert stored[f["start"] : f["end"]] == f["text"]
    assert any("根治癌症" in _as_read(f["text"]) for f in findings), findings


def test_a_revision_after_approval_written_with_references_is_flagged(
    app: Any, factory: Any
) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    reviewers = [factory.token(factory.expert(senior=i == 0)) for i in range(2)]
    resp = client.post(
        "/api/v1/items",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    item_id = resp.json["id"]
    assert _screen_pending() == ["flagged"]
    for headers in reviewers:
        aid = client.get("/api/v1/assignments", headers=headers).json[0]["id"]
        assert client.post(f"/api/v1/assignments/{aid}/accept", headers=headers).status_code == 200
        decided = client.post(
            f"/api/v1/assignments/{aid}/decision",
            headers=headers,
            json={"decision": "approve", "password": "correct-horse-1"},
        )
        assert decided.status_code == 200, decided.json
    assert client.get(f"/api/v1/items/{item_id}", headers=ed).json["state"] == "approved"

    revised = "已核实的健康提示。" + _references(CLAIM)
    resp = client.post(
        f"/api/v1/items/{item_id}/revise", headers=ed, json={"title": TITLE, "body": revised}
    )
    assert resp.status_code == 200, resp.json
    assert _screen_pending() == ["flagged"]
    detail = client.get(f"/api/v1/items/{item_id}", headers=ed).json
    assert detail["state"] == "in_review"
    assert detail["version"]["number"] == 2
    findings = detail["screening"]["findings"]
    assert any(_as_read(f["text"]).endswith("根治癌症") for f in findings), findings
    for f in findings:
        assert revised[f["start"] : f["end"]] == f["text"]
    # Nothing can publish it on the rules' word.
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 409


def test_a_video_claim_hidden_in_its_subtitles_is_flagged_at_the_cue_offsets(
    app: Any, video_editor: dict[str, str], video_clips: dict[str, Any]
) -> None:
    editor, clips = video_editor, video_clips
    claim = "喝小分子水能根治高血压"
    srt = (
        "1\n00:00:00,500 --> 00:00:02,500\n大家好\n\n"
        f"2\n00:00:03,000 --> 00:00:04,500\n{_references(claim)}\n\n"
        "3\n00:00:05,000 --> 00:00:07,500\n喝小分子水能根\n治高血压\n"
    )
    video = clips["plain"].read_bytes()
    item_id = upload(app, editor, video, subtitles=[(srt.encode(), "s.srt")]).json["id"]
    version = process(item_id)
    assert version.item.state.value == "flagged"
    cues = {start: text for source in version_sources(version) for start, _, text in source.cues}
    detail = app.test_client().get(f"/api/v1/items/{item_id}", headers=editor).json
    found = {}
    for f in detail["screening"]["findings"]:
        if f["segment"] == "cue":
            assert cues[f["start_time"]][f["start"] : f["end"]] == f["text"]
            found.setdefault(f["start_time"], []).append(_as_read(f["text"]))
    assert any("根治高血压" in text for text in found.get(3.0, [])), found
    assert any("根治高血压" in text for text in found.get(5.0, [])), found

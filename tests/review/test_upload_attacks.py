"""Malicious and malformed uploads (RELIABILITY.md scenario 28). The application accepts one
kind of upload: a video (MP4, WebM, MOV) with optional subtitle files, judged by content, never
by name or declared type. Each hostile file gets a specific 4xx with a Chinese message and
leaves nothing stored (the temporary file is gone too); a client's file name is never used on
disk, only as a cleaned display label; stored media is served with nosniff and a sandbox CSP.

Files are generated here (ffmpeg for the media, zipfile and bytes for the rest); none is
committed. The README of the report lists the cases that do not apply (no DOCX or image
uploads exist)."""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from review.db import db
from review.models import Item, SubtitleSource
from tests.media_files import FFMPEG, SRT, plain_video

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STORED_NAME = re.compile(r"^[0-9a-f]{64}\.(mp4|mov|webm|srt|vtt|ass)$")


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Every hostile file, made once."""
    folder = tmp_path_factory.mktemp("hostile")
    mp4 = plain_video(folder / "plain.mp4", seconds=2).read_bytes()
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1", str(folder / "x.jpg"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1", str(folder / "x.gif"))
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=blue:s=8192x64:d=1:r=5",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(folder / "wide.mp4"),
    )  # fmt: skip
    jpeg = (folder / "x.jpg").read_bytes()
    script = b"<script>alert(document.cookie)</script>"
    comment = b"\xff\xfe" + (len(script) + 2).to_bytes(2, "big") + script  # a COM segment
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("../../evil.txt", "zip slip")
        zf.writestr("word/document.xml", '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>')
    return {
        "plain": mp4,
        "html-named-mp4": b"<!doctype html><html><script>alert(1)</script></html>" * 40,
        "jpeg-html-polyglot": jpeg[:2] + comment + jpeg[2:] + b"<html>" + script + b"</html>",
        "gifar": (folder / "x.gif").read_bytes() + zipped.getvalue(),
        "svg-script": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script>'
        b"<foreignObject><body onload=alert(1)/></foreignObject></svg>",
        "docx-zip-slip-xxe": zipped.getvalue(),
        "eicar": EICAR,
        "html-then-mp4": b"<html><script>alert(1)</script></html>" + mp4,
        "mp4-then-html": mp4 + b"<html><script>alert(1)</script></html>",
        "truncated-mp4": mp4[: len(mp4) // 2],
        "ftyp-then-garbage": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\xde" * 5000,
        "pixel-flood-8192x64": (folder / "wide.mp4").read_bytes(),
        "empty": b"",
    }


@pytest.fixture
def editor(app: Any, factory: Any) -> Any:
    app.config["OCR_FPS"] = 0
    return factory.user("editor")


def _post(
    app: Any,
    headers: dict[str, str],
    video: bytes,
    name: str = "clip.mp4",
    subtitles: list[tuple[bytes, str]] | None = None,
    **fields: str,
) -> Any:
    parts: list[tuple[str, str | None, bytes]] = [
        ("kind", None, b"video"),
        ("title", None, fields.pop("title", "节目").encode()),
        ("submit", None, b"false"),
        *((key, None, value.encode()) for key, value in fields.items()),
        ("file", name, video),
        *(("subtitles", fname, raw) for raw, fname in subtitles or []),
    ]
    body, ctype = multipart(parts)
    return app.test_client().post("/api/v1/items", headers=headers, data=body, content_type=ctype)


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body built here: the test client spools bodies over 500 kB to a temporary
    file it never closes (a ResourceWarning, an error under ``filterwarnings = error``)."""
    out = io.BytesIO()
    for field, filename, content in parts:
        out.write(b'--BOUNDARY\r\nContent-Disposition: form-data; name="%s"' % field.encode())
        if filename is not None:
            quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
            out.write(b'; filename="%s"\r\nContent-Type: video/mp4' % quoted.encode())
        out.write(b"\r\n\r\n" + content + b"\r\n")
    out.write(b"--BOUNDARY--\r\n")
    return out.getvalue(), "multipart/form-data; boundary=BOUNDARY"


def _media(app: Any) -> list[str]:
    folder = Path(app.config["MEDIA_FOLDER"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _no_trace(app: Any) -> None:
    assert _media(app) == []  # neither stored nor a leftover temporary ".upload-*.part"
    assert db.session.scalar(select(func.count()).select_from(Item)) == 0


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("html-named-mp4", "type_mismatch"),
        ("jpeg-html-polyglot", "type_mismatch"),
        ("gifar", "type_mismatch"),
        ("svg-script", "type_mismatch"),
        ("docx-zip-slip-xxe", "type_mismatch"),
        ("eicar", "type_mismatch"),
        ("html-then-mp4", "type_mismatch"),
        ("mp4-then-html", "invalid_media"),
        ("truncated-mp4", "invalid_media"),
        ("ftyp-then-garbage", "invalid_media"),
        ("pixel-flood-8192x64", "resolution_too_large"),
        ("empty", "empty_file"),
    ],
)
def test_hostile_video_files_are_refused_and_leave_nothing(
    app: Any, factory: Any, editor: Any, files: dict[str, bytes], case: str, code: str
) -> None:
    resp = _post(app, factory.token(editor), files[case])
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == code and resp.json["field"] == "file"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in resp.json["message"])
    _no_trace(app)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "a.php\x00.mp4",
        "ｅｖｉｌ．ｐｈｐ",
        "审核报告.mp4",
        "\u202egnp.exe",
        "CON.txt",
        "名" * 300 + ".mp4",
        "",
    ],
    ids=["traversal", "nul", "fullwidth-php", "chinese", "bidi", "con", "300-chars", "empty"],
)
def test_file_names_are_display_metadata_only(
    app: Any, factory: Any, editor: Any, files: dict[str, bytes], name: str
) -> None:
    """The video is stored under its hash whatever its name; a subtitle file's name becomes a
    cleaned label (NFC, no controls or bidi overrides, no slashes, at most 120 characters)."""
    subtitle_name = name.replace(".mp4", ".srt")
    resp = _post(
        app,
        factory.token(editor),
        files["plain"],
        name=name,
        subtitles=[(SRT.encode("gbk"), subtitle_name)],
    )
    assert resp.status_code == 201, resp.json
    assert all(STORED_NAME.match(n) for n in _media(app)), _media(app)
    assert len(_media(app)) == 2
    instance = Path(app.config["MEDIA_FOLDER"]).parent
    assert not (instance / "etc").exists() and not (instance.parent / "etc").exists()
    label = db.session.scalar(select(SubtitleSource.label))
    assert label is not None and 0 < len(label) <= 120
    assert not any(ch in label for ch in "/\\\x00\u202e\u202c")
    if not name:
        assert label == "字幕1"
    page_client = app.test_client()
    page_client.post("/login", data={"username": editor.username, "password": "correct-horse-1"})
    page = page_client.get(f"/items/{resp.json['id']}").get_data(as_text=True)
    assert "\u202e" not in page and "\x00" not in page


def test_subtitle_content_decides_not_its_name(
    app: Any, factory: Any, editor: Any, files: dict[str, bytes]
) -> None:
    headers = factory.token(editor)
    for raw, name, code in [
        (b"<?php system($_GET['c']); ?>", "ｅｖｉｌ．ｐｈｐ", "invalid_subtitle_format"),
        (EICAR, "eicar.srt", "invalid_subtitle"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "x.srt", "invalid_subtitle"),
        (files["gifar"], "x.ass", "invalid_subtitle_encoding"),
    ]:
        resp = _post(app, headers, files["plain"], subtitles=[(raw, name)])
        assert resp.status_code == 400, (name, resp.json)
        assert resp.json["field"] == "subtitles" and resp.json["error"].startswith(code[:16])
        _no_trace(app)


def test_refusals_after_the_files_are_read_still_store_nothing(
    app: Any, factory: Any, editor: Any, files: dict[str, bytes]
) -> None:
    """Too many subtitle files, or a title or description refused, leave no file behind (the
    checks run before the video is linked into storage)."""
    headers = factory.token(editor)
    srt = SRT.encode()
    many = [(srt, f"{n}.srt") for n in range(11)]
    resp = _post(app, headers, files["plain"], subtitles=many)
    assert resp.status_code == 400 and resp.json["error"] == "too_many_files"
    _no_trace(app)
    resp = _post(app, headers, files["plain"], title="第一行\n第二行")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_text"
    _no_trace(app)
    resp = _post(app, headers, files["plain"], description="x" * 1_000_001)
    assert resp.status_code == 400 and resp.json["error"] == "too_long"
    _no_trace(app)


def test_an_empty_file_input_is_reported_as_missing(app: Any, editor: Any) -> None:
    c = app.test_client()
    c.post("/login", data={"username": editor.username, "password": "correct-horse-1"})
    resp = c.post(
        "/items/new-video",
        data={"title": "节目", "action": "save", "file": (io.BytesIO(b""), "")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400 and "缺少视频文件" in resp.get_data(as_text=True)
    _no_trace(app)


def test_stored_media_is_never_served_as_a_page(
    app: Any, factory: Any, editor: Any, files: dict[str, bytes]
) -> None:
    resp = _post(app, factory.token(editor), files["plain"], name="<script>.html")
    assert resp.status_code == 201
    c = app.test_client()
    c.post("/login", data={"username": editor.username, "password": "correct-horse-1"})
    with c.get(f"/items/{resp.json['id']}/video") as video:
        assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
        assert video.headers["X-Content-Type-Options"] == "nosniff"
        assert video.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"

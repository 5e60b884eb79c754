"""A video in a real browser on `kepu run`: upload through the form, the media worker and
screening run on the embedded broker, and clicking a finding seeks the player to its time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import PASSWORD, login, shot
from tests.media_files import SRT, plain_video

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_upload_video_then_seek_to_the_finding(
    live: tuple[str, dict[str, str], Path],
    browser: Any,
    tmp_path: Path,
) -> None:
    base, env, _log = live
    for args in (
        ("ved", "--role", "editor", "--unit", "威海电视台"),
        ("vex", "--role", "expert", "--unit", "某医院", "--domain", "医学健康", "--senior"),
    ):
        run_kepu("users", "create", *args, "--password", PASSWORD, env=env)
    video = plain_video(tmp_path / "节目.mp4")
    srt = tmp_path / "节目.srt"
    srt.write_bytes(SRT.encode("gbk"))

    editor = login(browser, base, "ved")
    editor.get_by_role("link", name="上传视频").first.click()
    editor.get_by_label("标题").fill("健康节目：饮水常识")
    editor.get_by_label("视频简介").fill("本期节目介绍饮水常识。")
    editor.get_by_label("视频文件").set_input_files(str(video))
    editor.get_by_label("字幕文件（可多选）").set_input_files(str(srt))
    editor.get_by_role("button", name="上传并提交审查").click()
    editor.wait_for_load_state()
    assert "视频已上传" in editor.content()
    assert "视频处理进度" in editor.content()
    item_id = int(re.search(r"/items/(\d+)", editor.url).group(1))  # type: ignore[union-attr]
    for _ in range(120):  # the media worker, then screening
        editor.goto(f"{base}/items/{item_id}")
        if "专家审核中" in editor.content() or "待分配专家" in editor.content():
            break
        editor.wait_for_timeout(1000)
    content = editor.content()
    assert "专家审核中" in content, content[-3000:]
    assert "上传的字幕文件" in content and "gb18030" in content
    seek = editor.locator("ol.findings button.seek").first
    assert seek.get_attribute("data-seek") == "3.0"
    editor.wait_for_function("document.getElementById('video').readyState >= 1")
    seek.click()
    editor.wait_for_function("document.getElementById('video').currentTime >= 3.0")
    shot(editor, "video-item")
    editor.goto(f"{base}/items")
    assert editor.locator("img.thumb").count() == 1

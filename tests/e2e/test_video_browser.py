"""A video the whole way in a real browser on `kepu run`: upload through the form, the media
worker and screening run on the embedded broker, clicking a finding seeks the player; the expert
accepts, seeks, marks a time range, approves with the password; the editor publishes and
downloads the receipt; the auditor reads the trail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import PASSWORD, login, shot
from tests.media_files import SRT, plain_video

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_video_goes_the_whole_way_in_the_browser(
    live: tuple[str, dict[str, str], Path],
    browser: Any,
    tmp_path: Path,
) -> None:
    base, env, _log = live
    for args in (
        ("ved", "--role", "editor", "--unit", "威海电视台"),
        ("vex", "--role", "expert", "--unit", "某医院", "--domain", "医学健康", "--senior"),
        ("vex2", "--role", "expert", "--unit", "某大学", "--domain", "医学健康"),
        ("vau", "--role", "auditor"),
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

    # A high-risk claim goes to two experts. The first seeks from a finding and marks a time
    # range the rules missed; both approve with their password.
    for username in ("vex", "vex2"):
        expert = login(browser, base, username)
        expert.goto(f"{base}/assignments")
        offers = expert.locator("main table").first.get_by_role("link", name="审核", exact=True)
        assert offers.count() >= 1, f"{username} was not offered the video"
        offers.first.click()
        expert.wait_for_load_state()
        expert.get_by_role("button", name="接受任务").click()
        expert.wait_for_load_state()
        assert "已接受审核任务" in expert.content()
        assert "上传的字幕文件" in expert.locator(".transcripts").inner_text()
        if username == "vex":
            expert.wait_for_function("document.getElementById('video').readyState >= 1")
            expert.locator("ol.findings button.seek").first.click()
            expert.wait_for_function("document.getElementById('video').currentTime >= 3.0")
            marking = expert.locator("form.mark-range")
            marking.get_by_label("开始（秒）").fill("6.5")
            marking.get_by_label("结束（秒）").fill("7.5")
            marking.get_by_label("说明").fill("片尾画面暗示产品疗效")
            marking.get_by_role("button", name="添加发现").click()
            expert.wait_for_load_state()
            assert "已添加时间段发现" in expert.content()
            marked = expert.locator("ol.findings li", has_text="片尾画面暗示产品疗效")
            assert marked.count() >= 1
            shot(expert, "video-expert-review")
        expert.get_by_label("通过", exact=True).check()
        expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
        expert.get_by_role("button", name="签署结论").click()
        expert.wait_for_load_state()
        assert "审核结论已签署" in expert.content()
        expert.context.close()

    # The editor publishes the approved video and downloads the signed receipt.
    editor.goto(f"{base}/items/{item_id}")
    assert "审核通过" in editor.locator("main .meta").first.inner_text()
    editor.get_by_role("button", name="发布").click()
    editor.wait_for_load_state()
    assert "已发布" in editor.locator("main .meta").first.inner_text()
    with editor.expect_download() as download:
        editor.get_by_role("link", name="下载签名发布回执").click()
    receipt = json.loads(Path(download.value.path()).read_text())
    assert receipt["receipt"]["version"] == 1

    # The auditor reads the trail, the time-range finding included.
    auditor = login(browser, base, "vau")
    auditor.goto(f"{base}/items/{item_id}")
    auditor.get_by_role("link", name="查看完整审计轨迹").click()
    auditor.wait_for_load_state()
    actions = auditor.locator(".timeline li strong").all_inner_texts()
    expected = ["item.submit", "item.flag", "finding.added", "review.decided", "item.publish"]
    positions = [actions.index(a) for a in expected]
    assert positions == sorted(positions), actions
    assert "链完整" in run_kepu("audit", "verify", env=env).stdout

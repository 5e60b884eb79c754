"""The whole workflow in a real browser (Debian's chromium driven by Playwright) on `kepu run`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, ROOT, run_kepu

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-1"


def _login(browser: Any, base: str, username: str) -> Any:
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(f"{base}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()
    return page


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_editor_expert_auditor_in_the_browser(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    # A critical claim needs two experts, one of them senior.
    for args in (
        ("ed", "--role", "editor", "--unit", "威海日报社"),
        ("ex", "--role", "expert", "--unit", "某大学", "--domain", "医学健康", "--name", "张专家"),
        ("ex2", "--role", "expert", "--unit", "某医院", "--domain", "医学健康", "--senior"),
        ("au", "--role", "auditor"),
    ):
        run_kepu("users", "create", *args, "--password", PASSWORD, env=env)

    # The editor writes and submits an article.
    editor = _login(browser, base, "ed")
    editor.get_by_role("link", name="新建稿件").first.click()
    editor.get_by_label("标题").fill(PSEUDO_TITLE)
    editor.get_by_label("正文").fill(PSEUDO_BODY)
    editor.get_by_role("button", name="提交审查").click()
    editor.wait_for_load_state()
    assert "正在进行机器初筛" in editor.content()
    item_id = int(re.search(r"/items/(\d+)", editor.url).group(1))  # type: ignore[union-attr]
    for _ in range(90):  # the worker screens it and offers it to the expert
        editor.reload()
        if "专家审核中" in editor.content():
            break
        editor.wait_for_timeout(1000)
    assert "专家审核中" in editor.content()
    assert editor.locator("mark").count() > 0
    _shot(editor, "editor-item-in-review")

    # Each expert sees the highlighted findings, accepts and approves with the password.
    for username in ("ex", "ex2"):
        expert = _login(browser, base, username)
        expert.get_by_role("link", name="审核", exact=True).first.click()
        expert.wait_for_load_state()
        assert expert.locator(".text mark").count() > 0
        expert.get_by_role("button", name="接受任务").click()
        expert.wait_for_load_state()
        assert "已接受审核任务" in expert.content()
        _shot(expert, f"expert-review-page-{username}")
        expert.get_by_label("通过").check()
        expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
        expert.get_by_role("button", name="签署结论").click()
        expert.wait_for_load_state()
        assert "审核结论已签署" in expert.content()

    # The editor publishes and can download the signed receipt.
    editor.goto(f"{base}/items/{item_id}")
    assert "审核通过" in editor.content()
    editor.get_by_role("button", name="发布").click()
    editor.wait_for_load_state()
    assert "已发布" in editor.content()
    with editor.expect_download() as download:
        editor.get_by_role("link", name="下载签名发布回执").click()
    assert download.value.suggested_filename == f"receipt-{item_id}-v1.json"
    _shot(editor, "editor-published")

    # The auditor reads the whole trail.
    auditor = _login(browser, base, "au")
    auditor.goto(f"{base}/audit/items/{item_id}")
    trail = auditor.content()
    for action in (
        "item.submit",
        "item.flag",
        "assignment.offered",
        "review.decided",
        "item.approve",
        "item.publish",
    ):
        assert action in trail, action
    _shot(auditor, "auditor-trail")
    assert "链完整" in run_kepu("audit", "verify", env=env).stdout

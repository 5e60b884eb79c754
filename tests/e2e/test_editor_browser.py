"""The editor's live pages in a real browser: screening progress without a reload, revising with
the findings beside the text, Markdown preview and the diff of a new version.

The web server runs without a worker, so the page is certainly showing "screening" before a
real Celery worker (on PostgreSQL and Redis) is started and screens the article.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, run_kepu, wait_until
from tests.e2e.conftest import PASSWORD, Http, Worker, free_port, login, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

STATE = "document.querySelector(\"#live-status [data-live='state']\").textContent"
OLD_CLAIM = "彻底根治高血压，100%有效，永不复发"


@pytest.fixture
def web(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`kepu run --no-worker` on the test's PostgreSQL and Redis: the base URL."""
    port = free_port()
    log = tmp_path / "web.log"
    kepu = str(Path(sys.executable).parent / "kepu")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [kepu, "run", "--no-worker", "--port", str(port)],
            env=worker_env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                return Http(base).call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=60)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _decide(base: str, token: str, item_id: int, body: dict[str, Any]) -> None:
    http = Http(base, token)
    status, rows = http.call("GET", "/api/v1/assignments")
    assert status == 200, rows
    aid = next(a["id"] for a in rows if a["item_id"] == item_id and a["state"] == "offered")
    assert http.call("POST", f"/api/v1/assignments/{aid}/accept")[0] == 200
    status, answer = http.call(
        "POST", f"/api/v1/assignments/{aid}/decision", {"password": PASSWORD, **body}
    )
    assert status == 200, answer


def test_editor_follows_screening_live_and_revises_beside_the_findings(
    web: str, worker_env: dict[str, str], instance: Path, browser: Any
) -> None:
    base, env = web, worker_env
    run_kepu("users", "create", "ed", "--role", "editor", "--unit", "威海日报社",
             "--password", PASSWORD, env=env)  # fmt: skip
    tokens = {}
    for name, unit, extra in (("ex", "某大学", ["--senior"]), ("ex2", "某医院", [])):
        out = run_kepu(
            "users", "create", name, "--role", "expert", "--unit", unit, "--domain", "医学健康",
            *extra, "--password", PASSWORD, "--token", env=env,
        ).stdout  # fmt: skip
        tokens[name] = out.strip().splitlines()[-1].strip()

    # The editor writes a Markdown article and submits it; no worker runs yet.
    editor = login(browser, base, "ed")
    editor.get_by_role("link", name="新建稿件").first.click()
    editor.get_by_label("标题").fill(PSEUDO_TITLE)
    editor.get_by_label("正文").fill(f"## 健康提示\n\n{PSEUDO_BODY}")
    editor.get_by_role("button", name="提交审查").click()
    editor.wait_for_load_state()
    item_id = int(re.search(r"/items/(\d+)", editor.url).group(1))  # type: ignore[union-attr]
    assert editor.evaluate(STATE) == "已提交"
    progress = editor.locator("#live-status [data-live='progress']")
    assert progress.is_visible() and "正在筛查" in progress.inner_text()
    assert editor.locator(".article h2").inner_text() == "健康提示"  # rendered Markdown
    editor.evaluate("window.kepuSamePage = 'not reloaded'")
    shot(editor, "editor-live-screening")
    listing = editor.context.new_page()
    listing.goto(f"{base}/items")
    row = f"#item-list tr[data-item-id='{item_id}']"
    assert listing.locator(f"{row} [data-live='progress']").is_visible()
    listing.evaluate("window.kepuSamePage = 'not reloaded'")

    # A real worker screens it; the open page follows without being reloaded.
    worker = Worker(env, instance)
    try:
        wait_until(lambda: "ready." in worker.log_text() or worker.proc.poll() is not None, 60)
        assert worker.proc.poll() is None, worker.log_text()
        editor.wait_for_function(
            f"() => ['疑似问题待审', '专家审核中'].includes({STATE})", timeout=120_000
        )
        assert editor.evaluate("window.kepuSamePage") == "not reloaded"
        editor.wait_for_function(
            "() => document.querySelector(\"#live-status [data-live='progress']\").hidden"
        )
        editor.wait_for_function(
            "() => Number(document.querySelector(\"[data-live='findings']\").textContent) > 0"
        )
        notice = editor.locator("#live-status [data-live='notice']")
        assert notice.is_visible() and "稿件状态已更新" in notice.inner_text()
        shot(editor, "editor-live-screened")
        # The item list follows too: badge, findings count, progress, and a reload notice.
        listing.wait_for_function(
            f"() => Number(document.querySelector(\"{row} [data-live='findings']\")"
            ".textContent) > 0"
        )
        assert listing.locator(f"{row} [data-live='state']").inner_text() in (
            "疑似问题待审",
            "专家审核中",
        )
        assert listing.locator(f"{row} [data-live='progress']").is_hidden()
        assert listing.locator("#list-notice").is_visible()
        assert listing.evaluate("window.kepuSamePage") == "not reloaded"
        shot(listing, "editor-live-list")
        listing.close()

        # Both experts decide; the page's badge follows again, still without a reload.
        _decide(base, tokens["ex"], item_id, {
            "decision": "request_changes",
            "comment": "请删去“根治”“100%有效”等绝对化说法",
            "references": ["《中国高血压防治指南》"],
        })  # fmt: skip
        _decide(base, tokens["ex2"], item_id, {"decision": "approve"})
        editor.wait_for_function(f"() => {STATE} === '需修改'", timeout=60_000)
        assert editor.evaluate("window.kepuSamePage") == "not reloaded"

        # The notice's link reloads; the editor revises with the findings beside the text.
        notice.get_by_role("link", name="重新加载页面").click()
        editor.wait_for_load_state()
        editor.get_by_role("link", name="修改后重新提交").click()
        editor.wait_for_load_state()
        side = editor.locator("aside.revise-side")
        assert "请删去“根治”“100%有效”等绝对化说法" in side.inner_text()
        assert "《中国高血压防治指南》" in side.inner_text()
        jump = editor.locator(".finding-jump[data-field='body']").first
        start, end = int(jump.get_attribute("data-start")), int(jump.get_attribute("data-end"))  # type: ignore[arg-type]
        text = jump.get_attribute("data-text")
        jump.click()
        selection = editor.evaluate(
            "() => { const b = document.getElementById('body');"
            " return [document.activeElement.id, b.selectionStart, b.selectionEnd,"
            " b.value.slice(b.selectionStart, b.selectionEnd)]; }"
        )
        assert selection == ["body", start, end, text]
        assert start > 0 and text
        editor.set_viewport_size({"width": 1280, "height": 900})
        form_box = editor.locator("#item-form").bounding_box()
        side_box = side.bounding_box()
        assert side_box["x"] >= form_box["x"] + form_box["width"]  # side by side on a laptop
        shot(editor, "editor-revise-beside-findings")
        editor.set_viewport_size({"width": 390, "height": 844})
        form_box, side_box = editor.locator("#item-form").bounding_box(), side.bounding_box()
        assert side_box["y"] >= form_box["y"] + form_box["height"]  # stacked on a phone
        shot(editor, "editor-revise-phone")
        editor.set_viewport_size({"width": 1280, "height": 900})

        # Preview, then submit a new version and read its diff on the item page.
        body = editor.get_by_label("正文")
        body.fill(body.input_value().replace(OLD_CLAIM, "帮助控制血压"))
        editor.get_by_role("button", name="预览").click()
        editor.locator("#preview h2").wait_for()
        assert editor.locator("#preview h2").inner_text() == "健康提示"
        editor.get_by_role("button", name="提交新版本").click()
        editor.wait_for_load_state()
        assert "新版本已提交" in editor.content()
        history = editor.locator("details.diff").first
        assert "与第 1 版比较" in history.inner_text()
        assert history.locator(".diff-text del").first.inner_text() == OLD_CLAIM
        assert history.locator(".diff-text ins").first.inner_text() == "帮助控制血压"
        editor.wait_for_function(
            f"() => ['初筛通过', '疑似问题待审', '专家审核中'].includes({STATE})",
            timeout=120_000,
        )
        shot(editor, "editor-version-diff")
    finally:
        worker.stop()

"""The whole workflow in a real browser (Debian's chromium driven by Playwright) on `kepu run`.

Editor submits → worker screens → experts are offered it → one rejects with a reference, the
other asks for changes → the editor revises → screened again → an expert approves (password
confirmed) → the editor publishes and downloads the signed receipt → the auditor reads the trail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import PASSWORD, login, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# A pseudo-science claim of our own: a food that "100%" cures cancer (critical → two experts).
GARLIC_TITLE = "震惊！每天吃大蒜能治愈癌症"
GARLIC_BODY = (
    "家住环翠区的李大爷坚持每天生吃三瓣大蒜，半年后肿瘤消失了。专家证实，大蒜素可以彻底杀死"
    "癌细胞，100%治愈癌症，不用再做化疗！赶紧转发给家人。"
)
# The revision drops the cure claims; one milder health claim remains (medium → one expert).
REVISED_TITLE = "大蒜与健康：别把食物当药"
REVISED_BODY = (
    "大蒜是常见的调味食材。有研究显示大蒜素有一定抑菌作用。每天吃大蒜可以增强免疫力，预防感冒。"
    "癌症患者应当在正规医院接受规范治疗。"
)
REFERENCE = "国家卫生健康委员会《癌症防治核心信息及知识要点》"


def _wait_for_state(page: Any, label: str, *, attempts: int = 90) -> None:
    for _ in range(attempts):  # the worker screens it and offers it to experts
        page.reload()
        if label in page.locator("main .meta").first.inner_text():
            return
        page.wait_for_timeout(1000)
    raise AssertionError(f"item never reached {label}: {page.content()}")


_SELECT = """(passage) => {
  const box = document.querySelector('.text[data-segment=body]');
  const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const i = node.data.indexOf(passage);
    if (i >= 0) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + passage.length);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      return true;
    }
  }
  return false;
}"""


def _mark_passage(expert: Any, passage: str) -> None:
    """The expert selects a passage the rules missed and marks it as a new finding."""
    form = expert.locator("#mark-text")
    assert form.get_by_role("button", name="添加发现").is_disabled()
    assert expert.evaluate(_SELECT, passage)
    expert.wait_for_function("!document.querySelector('#mark-text [data-role=submit]').disabled")
    assert form.locator("[data-role=selected]").inner_text() == passage
    form.get_by_label("严重度").select_option("high")
    form.get_by_label("说明").fill("生吃大蒜“消除肿瘤”没有证据")  # focus moves; the mark stays
    form.get_by_role("button", name="添加发现").click()
    expert.wait_for_load_state()
    assert "已把选中的文字标为新发现" in expert.content()
    assert expert.locator(".text mark.sev-high", has_text=passage).count() == 1
    assert expert.locator("ol.findings li", has_text="专家标记").count() == 1


def _open_offer(browser: Any, base: str, username: str) -> Any | None:
    """Sign in as ``username``; open its offered task, or None when it has none."""
    expert = login(browser, base, username)
    links = expert.locator("main table").first.get_by_role("link", name="审核", exact=True)
    if links.count() == 0:
        expert.context.close()
        return None
    links.first.click()
    expert.wait_for_load_state()
    return expert


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
    editor = login(browser, base, "ed")
    editor.get_by_role("link", name="新建稿件").first.click()
    editor.get_by_label("标题").fill(GARLIC_TITLE)
    editor.get_by_label("正文").fill(GARLIC_BODY)
    editor.get_by_role("button", name="提交审查").click()
    editor.wait_for_load_state()
    assert "正在进行机器初筛" in editor.content()
    item_id = int(re.search(r"/items/(\d+)", editor.url).group(1))  # type: ignore[union-attr]
    _wait_for_state(editor, "专家审核中")
    assert editor.locator(".text mark").count() > 0
    assert editor.locator("mark.sev-medium", has_text="100%治愈").count() > 0
    shot(editor, "editor-item-in-review")

    # Both experts receive the offer and see the highlighted findings. One rejects with a
    # reference; the other asks for changes — together the editor may revise (combine()).
    verdicts = {
        "ex": ("驳回", "大蒜不能治愈癌症，文中疗效说法没有依据。"),
        "ex2": ("要求修改", "请删除“治愈癌症”等绝对化说法。"),
    }
    for username, (decision, comment) in verdicts.items():
        expert = _open_offer(browser, base, username)
        assert expert is not None, f"{username} was not offered the item"
        assert expert.locator(".text mark").count() > 0
        assert expert.locator(".text mark", has_text="100%治愈").count() == 1
        expert.get_by_role("button", name="接受任务").click()
        expert.wait_for_load_state()
        assert "已接受审核任务" in expert.content()
        shot(expert, f"expert-review-page-{username}")
        if username == "ex":
            _mark_passage(expert, "坚持每天生吃三瓣大蒜")
        expert.get_by_label(decision, exact=True).check()
        expert.get_by_label("审核意见（驳回、要求修改时必填）").fill(comment)
        if decision == "驳回":
            # Without a reference the rejection is refused with a Chinese message.
            expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
            expert.get_by_role("button", name="签署结论").click()
            expert.wait_for_load_state()
            assert "驳回时至少需要提供一条参考依据" in expert.locator(".flash.error").inner_text()
            expert.get_by_label(decision, exact=True).check()
            expert.get_by_label("审核意见（驳回、要求修改时必填）").fill(comment)
            expert.get_by_label("参考依据（每行一条；驳回时至少一条）").fill(REFERENCE)
        expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
        expert.get_by_role("button", name="签署结论").click()
        expert.wait_for_load_state()
        assert "审核结论已签署" in expert.content()
        expert.context.close()

    # The editor sees the outcome with the experts' comments and revises the text.
    editor.goto(f"{base}/items/{item_id}")
    assert "需修改" in editor.locator("main .meta").first.inner_text()
    assert REFERENCE in editor.content() and "绝对化说法" in editor.content()
    editor.get_by_role("link", name="修改后重新提交").click()
    editor.get_by_label("标题").fill(REVISED_TITLE)
    editor.get_by_label("正文").fill(REVISED_BODY)
    editor.get_by_role("button", name="提交新版本").click()
    editor.wait_for_load_state()
    _wait_for_state(editor, "专家审核中")
    assert "第 2 版" in editor.locator("main .meta").first.inner_text()
    assert editor.locator(".text mark").count() > 0  # the milder claim is still flagged

    # The revision goes to one expert, who approves; a wrong password is refused first.
    offered = [e for e in (_open_offer(browser, base, u) for u in ("ex", "ex2")) if e is not None]
    assert len(offered) == 1, "the medium-risk revision needs exactly one reviewer"
    expert = offered[0]
    assert "第 2 版" in expert.locator("main .meta").first.inner_text()
    # Earlier versions and the diff are one click away; then back to the review.
    review_url = expert.url
    expert.get_by_role("link", name="查看此前 1 个版本及与上一版的差异").click()
    expert.wait_for_load_state()
    assert (
        expert.locator("#versions del").count() > 0 and expert.locator("#versions ins").count() > 0
    )
    expert.goto(review_url)
    expert.get_by_role("button", name="接受任务").click()
    expert.wait_for_load_state()
    expert.get_by_label("通过", exact=True).check()
    expert.get_by_label("再次输入登录密码以签署").fill("not-my-password")
    expert.get_by_role("button", name="签署结论").click()
    expert.wait_for_load_state()
    assert "密码确认失败" in expert.locator(".flash.error").inner_text()
    expert.get_by_label("通过", exact=True).check()
    expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
    expert.get_by_role("button", name="签署结论").click()
    expert.wait_for_load_state()
    assert "审核结论已签署" in expert.content()

    # The editor publishes and can download the signed receipt of version 2.
    editor.goto(f"{base}/items/{item_id}")
    assert "审核通过" in editor.locator("main .meta").first.inner_text()
    editor.get_by_role("button", name="发布").click()
    editor.wait_for_load_state()
    assert "已发布" in editor.locator("main .meta").first.inner_text()
    with editor.expect_download() as download:
        editor.get_by_role("link", name="下载签名发布回执").click()
    assert download.value.suggested_filename == f"receipt-{item_id}-v2.json"
    receipt = json.loads(Path(download.value.path()).read_text())
    assert receipt["receipt"]["version"] == 2 and "PUBLIC KEY" in receipt["public_key"]
    shot(editor, "editor-published")

    # The auditor reads the whole trail, in order.
    auditor = login(browser, base, "au")
    auditor.goto(f"{base}/items/{item_id}")
    auditor.get_by_role("link", name="查看完整审计轨迹").click()
    auditor.wait_for_load_state()
    actions = auditor.locator(".timeline li strong").all_inner_texts()
    expected = [
        "item.submit",
        "item.flag",
        "assignment.offered",
        "review.decided",
        "item.request_changes",
        "item.revise",
        "item.approve",
        "item.publish",
    ]
    positions = [actions.index(a) for a in expected]
    assert positions == sorted(positions), actions
    assert actions.count("review.decided") == 3
    trail = auditor.locator("main").inner_text()
    assert REFERENCE in trail and GARLIC_TITLE in trail and REVISED_TITLE in trail
    shot(auditor, "auditor-trail")
    assert "链完整" in run_kepu("audit", "verify", env=env).stdout

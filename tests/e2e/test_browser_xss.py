"""Stored XSS: hostile title, body, expert comment and reference never run in any page.

The browser context bypasses the CSP on purpose: the CSP would block inline scripts anyway,
so only with it switched off does "no dialog fired" prove that the templates escape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import PASSWORD, login, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

TITLE = '<script>alert("t1")</script>震惊！吃大蒜治愈癌症<img src=x onerror=alert("t2")>'
BODY = (
    "专家证实，每天生吃大蒜可以100%治愈癌症！"
    "<a href=\"javascript:alert('b1')\">点我看真相</a>"
    "<svg onload=alert('b2')></svg>"
    '"><iframe src="javascript:alert(\'b3\')"></iframe>'
    "</textarea><script>alert('b4')</script>"
)
COMMENT = (
    "<img src=x onerror=alert('c1')>文中疗效说法没有依据</textarea><script>alert('c2')</script>"
)
CHANGES = "<b onmouseover=alert('c3')>请删除绝对化说法</b>"
REFERENCE = "javascript:alert('r1')//《癌症防治核心信息》"

# What the DOM must never contain, whatever the page.
_INJECTED = """() => {
  const bad = [];
  for (const s of document.scripts)
    if (!s.src) bad.push('inline script: ' + s.textContent.slice(0, 40));
  for (const el of document.querySelectorAll('*'))
    for (const attr of el.getAttributeNames())
      if (attr.startsWith('on')) bad.push(el.tagName + ' ' + attr);
  for (const a of document.querySelectorAll('[href^="javascript:"], [src^="javascript:"]'))
    bad.push('javascript: url on ' + a.tagName);
  for (const tag of ['iframe', 'svg', 'img[src="x"]'])
    if (document.querySelector('main ' + tag)) bad.push('injected ' + tag);
  return bad;
}"""


class Watched:
    """A signed-in page that records every dialog (alert/confirm/prompt) it is shown."""

    def __init__(self, browser: Any, base: str, username: str) -> None:
        self.base = base
        self.page = login(browser, base, username, bypass_csp=True)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def visit(self, path: str, *shown: str, name: str) -> str:
        """Open ``path``, check nothing ran or was injected, and that ``shown`` texts are visible
        as text. Returns the main element's text."""
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        self.page.wait_for_load_state("networkidle")
        self.page.mouse.move(200, 200)  # hover-driven payloads get their chance too
        assert self.page.evaluate(_INJECTED) == [], path
        assert self.dialogs == [], (path, self.dialogs)
        text = str(self.page.locator("main").inner_text())
        for snippet in shown:
            assert snippet in text, (path, snippet)
        shot(self.page, f"xss-{name}")
        return text


def test_stored_xss_is_shown_as_text_everywhere(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    for args in (
        ("ed", "--role", "editor", "--unit", "威海日报社"),
        ("ex", "--role", "expert", "--unit", "某大学", "--domain", "医学健康", "--name", "张专家"),
        ("ex2", "--role", "expert", "--unit", "某医院", "--domain", "医学健康", "--senior"),
        ("au", "--role", "auditor"),
        ("ad", "--role", "admin"),
    ):
        run_kepu("users", "create", *args, "--password", PASSWORD, env=env)

    editor = Watched(browser, base, "ed")
    editor.visit("/items/new", name="new")
    editor.page.get_by_label("标题").fill(TITLE)
    editor.page.get_by_label("正文").fill(BODY)
    editor.page.get_by_role("button", name="提交审查").click()
    editor.page.wait_for_load_state()
    item_id = int(re.search(r"/items/(\d+)", editor.page.url).group(1))  # type: ignore[union-attr]
    for _ in range(90):
        text = editor.visit(f"/items/{item_id}", TITLE, BODY, name="item-screening")
        if "专家审核中" in text:
            break
        editor.page.wait_for_timeout(1000)
    assert "专家审核中" in text
    assert editor.page.title().startswith(TITLE)

    admin = Watched(browser, base, "ad")
    admin.visit("/admin/queue", name="queue")

    # Both experts see the hostile text as text, then write hostile comments of their own.
    assignments = {}
    for username, decision, comment in (("ex", "驳回", COMMENT), ("ex2", "要求修改", CHANGES)):
        expert = Watched(browser, base, username)
        expert.visit("/assignments", TITLE, name=f"assignments-{username}")
        expert.page.locator("main table").first.get_by_role("link", name="审核", exact=True).click()
        expert.page.wait_for_load_state()
        path = expert.page.url.removeprefix(base)
        assignments[username] = path
        expert.visit(path, TITLE, BODY, name=f"review-{username}")
        expert.page.get_by_role("button", name="接受任务").click()
        expert.page.wait_for_load_state()
        expert.page.get_by_label(decision, exact=True).check()
        expert.page.get_by_label("审核意见（驳回、要求修改时必填）").fill(comment)
        expert.page.get_by_label("参考依据（每行一条；驳回时至少一条）").fill(REFERENCE)
        expert.page.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
        expert.page.get_by_role("button", name="签署结论").click()
        expert.page.wait_for_load_state()
        assert "审核结论已签署" in expert.page.content()
        expert.visit(path, TITLE, BODY, comment, name=f"review-after-{username}")
        expert.visit("/assignments", TITLE, name=f"history-{username}")
        expert.page.context.close()

    # Every page that shows the title, body, comments or references.
    editor.visit("/items", TITLE, name="items-editor")
    editor.visit(f"/items/{item_id}", TITLE, BODY, COMMENT, CHANGES, REFERENCE, name="item-editor")
    editor.visit("/notifications", TITLE, name="notifications")
    editor.visit(f"/items/{item_id}/edit", name="edit")
    assert editor.page.get_by_label("标题").input_value() == TITLE
    assert editor.page.get_by_label("正文").input_value() == BODY

    auditor = Watched(browser, base, "au")
    auditor.visit("/items", TITLE, name="items-auditor")
    auditor.visit(f"/items/{item_id}", TITLE, BODY, COMMENT, REFERENCE, name="item-auditor")
    trail = auditor.visit(
        f"/audit/items/{item_id}", TITLE, COMMENT, CHANGES, REFERENCE, name="trail"
    )
    assert "review.decided" in trail
    log = auditor.visit(f"/audit?item={item_id}", name="audit-log")
    # The ledger's JSON is shown with < and > escaped for HTML (\u003c), never as markup.
    assert "\\u003cscript\\u003e" in log and "onerror" in log
    auditor.visit(assignments["ex"], TITLE, BODY, COMMENT, name="review-auditor")
    admin.visit(f"/items/{item_id}", TITLE, BODY, name="item-admin")

    # Search results (the index is written by the worker after each change).
    for _ in range(60):
        found = auditor.visit("/search?q=大蒜", name="search")
        if TITLE in found:
            break
        auditor.page.wait_for_timeout(1000)
    assert TITLE in found
    editor.visit("/search?q=大蒜", TITLE, name="search-editor")
    for watched in (editor, auditor, admin):
        assert watched.dialogs == []
        watched.page.context.close()

"""A claim written with character references, in chromium on `kepu run` (#14 item 6): the
worker screens what the page shows, and the expert's page highlights the stored passage that
shows the claim; marking a passage of that text still works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu, wait_until
from tests.e2e.conftest import PASSWORD, Http, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

TITLE = "健康小知识"
CLAIM = "每天喝小苏打水可以彻底根治癌症。"


def _references(text: str) -> str:
    return "".join(f"&#{ord(ch)};" if "\u4e00" <= ch <= "\u9fff" else ch for ch in text)


BODY = "多喝水有益健康。" + _references(CLAIM)
HIDDEN = _references("根治癌症")  # what the stored text holds where readers read 根治癌症

_OFFSET = """(mark) => {
  const box = mark.closest('[data-segment]');
  const range = document.createRange();
  range.setStart(box, 0);
  range.setEnd(mark, 0);
  return Array.from(range.toString()).length;
}"""

_SELECT = """(passage) => {
  const box = document.querySelector('.text[data-segment=body]');
  const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const i = node.data.indexOf(passage);
    if (i >= 0) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + passage.length);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      return true;
    }
  }
  return false;
}"""


def test_expert_page_highlights_a_claim_written_with_references(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    tokens = {}
    for args in (
        ("ed", "--role", "editor", "--unit", "威海日报社"),
        ("ex", "--role", "expert", "--unit", "某大学", "--domain", "医学健康", "--senior"),
        ("ex2", "--role", "expert", "--unit", "某医院", "--domain", "医学健康"),
    ):
        out = run_kepu("users", "create", *args, "--password", PASSWORD, "--token", env=env)
        tokens[args[0]] = out.stdout.strip().splitlines()[-1]
    editor = Http(base, tokens["ed"])
    status, item = editor.call(
        "POST", "/api/v1/items", {"title": TITLE, "body": BODY, "submit": True}
    )
    assert status == 201, item

    def screened() -> dict[str, Any] | None:
        detail = editor.call("GET", f"/api/v1/items/{item['id']}")[1]
        return detail if detail["state"] not in ("submitted", "screening") else None

    wait_until(lambda: screened() is not None, timeout=90)
    detail = screened()
    assert detail is not None and detail["state"] == "in_review", detail
    claim = [f for f in detail["screening"]["findings"] if f["text"] == HIDDEN]
    assert claim, detail["screening"]["findings"]
    start = BODY.index(HIDDEN)
    assert (claim[0]["start"], claim[0]["end"]) == (start, start + len(HIDDEN))

    expert = login(browser, base, "ex")
    offers = [a for a in Http(base, tokens["ex"]).call("GET", "/api/v1/assignments")[1]]
    assert [a["item_id"] for a in offers] == [item["id"]]
    expert.goto(f"{base}/assignments/{offers[0]['id']}")
    marks = expert.locator(".text[data-segment=body] mark")
    assert marks.count() >= 1
    # Each highlight is a finding's stored passage at the finding's offset in the stored text
    # the page shows; one of them holds the claim as it is stored.
    shown = [
        (marks.nth(i).evaluate(_OFFSET), marks.nth(i).inner_text()) for i in range(marks.count())
    ]
    spans = {(f["start"], f["text"]) for f in detail["screening"]["findings"]}
    assert set(shown) <= spans, (shown, spans)
    assert any(HIDDEN in text for _, text in shown), shown
    # Beside the stored passage the expert reads the claim as readers see it.
    seen = expert.locator("ol.findings .shown").all_inner_texts()
    assert any(text.startswith("读者看到：") and "根治癌症" in text for text in seen), seen

    # Marking a passage of that text still records the stored characters the expert selected.
    expert.get_by_role("button", name="接受任务").click()
    expert.wait_for_load_state()
    passage = _references("每天喝")
    assert expert.evaluate(_SELECT, passage)
    expert.wait_for_function("!document.querySelector('#mark-text [data-role=submit]').disabled")
    form = expert.locator("#mark-text")
    form.get_by_label("严重度").select_option("high")
    form.get_by_label("说明").fill("用字符引用写成的疗效说法")
    form.get_by_role("button", name="添加发现").click()
    expert.wait_for_load_state()
    assert "已把选中的文字标为新发现" in expert.content()
    findings = editor.call("GET", f"/api/v1/items/{item['id']}")[1]["screening"]["findings"]
    marked = [f for f in findings if f["text"] == passage]
    assert marked and marked[0]["start"] == BODY.index(passage), findings
    expert.context.close()

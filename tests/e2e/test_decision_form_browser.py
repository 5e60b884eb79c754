"""The review page in chromium: the decision form is inactive until the expert accepts the
offer (issue #14 item 2), on `kepu run` with its own worker screening the article."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu, wait_until
from tests.e2e.conftest import PASSWORD, Http, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TITLE = "震惊！每天吃大蒜能治愈癌症"
BODY = "专家证实，大蒜素可以彻底杀死癌细胞，100%治愈癌症，不用再做化疗！赶紧转发给家人。"


def test_decision_form_is_inactive_before_accepting(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    out = run_kepu(
        "users", "create", "ed", "--role", "editor", "--unit", "威海日报社",
        "--password", PASSWORD, "--token", env=env,
    )  # fmt: skip
    editor = Http(base, out.stdout.strip().splitlines()[-1])
    run_kepu(
        "users", "create", "ex", "--role", "expert", "--unit", "某大学",
        "--domain", "医学健康", "--password", PASSWORD, env=env,
    )  # fmt: skip
    status, item = editor.call(
        "POST", "/api/v1/items", {"title": TITLE, "body": BODY, "submit": True}
    )
    assert status == 201, item
    wait_until(
        lambda: editor.call("GET", f"/api/v1/items/{item['id']}")[1]["state"] == "in_review",
        timeout=90,
    )

    expert = login(browser, base, "ex")
    expert.locator("main table").first.get_by_role("link", name="审核", exact=True).click()
    expert.wait_for_load_state()
    sign = expert.get_by_role("button", name="签署结论")
    # Before 接受任务: the form is there to read, inactive, and says why.
    assert sign.is_disabled()
    assert expert.get_by_label("通过", exact=True).is_disabled()
    assert expert.get_by_label("再次输入登录密码以签署").is_disabled()
    assert "请先点击“接受任务”" in expert.locator("#decision-hint").inner_text()
    verdicts = expert.locator("fieldset.verdict input")
    assert verdicts.count() > 0 and all(
        verdicts.nth(i).is_disabled() for i in range(verdicts.count())
    )

    expert.get_by_role("button", name="接受任务").click()
    expert.wait_for_load_state()
    assert "已接受审核任务" in expert.content()
    # After: active, no hint, and the decision is signed.
    assert sign.is_enabled() and expert.get_by_label("通过", exact=True).is_enabled()
    assert expert.locator("#decision-hint").count() == 0
    expert.get_by_label("通过", exact=True).check()
    expert.get_by_label("再次输入登录密码以签署").fill(PASSWORD)
    sign.click()
    expert.wait_for_load_state()
    assert "审核结论已签署" in expert.content()
    expert.context.close()

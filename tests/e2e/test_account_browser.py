"""Passwords in chromium (issue #14 items 9 and 10), on `kepu run`: the password re-entered to
sign a decision is limited like sign-in, and a weak new password is refused on 修改密码 with a
message that names the rule, while a strong one is taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import PASSWORD, flagged_item_offered, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TITLE = "震惊！每天吃大蒜能治愈癌症"
BODY = "专家证实，大蒜素可以彻底杀死癌细胞，100%治愈癌症，不用再做化疗！赶紧转发给家人。"


def test_signing_passwords_are_limited_in_the_page(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    flagged_item_offered(base, env, TITLE, BODY)

    expert = login(browser, base, "ex")
    expert.locator("main table").first.get_by_role("link", name="审核", exact=True).click()
    expert.wait_for_load_state()
    review_url = expert.url
    expert.get_by_role("button", name="接受任务").click()
    expert.wait_for_load_state()

    def sign(password: str) -> tuple[int, str]:
        expert.goto(review_url)
        expert.get_by_label("通过", exact=True).check()
        expert.get_by_label("再次输入登录密码以签署").fill(password)
        with expert.expect_response(lambda r: r.request.method == "POST") as answer:
            expert.get_by_role("button", name="签署结论").click()
        expert.wait_for_load_state()
        return answer.value.status, expert.content()

    for _ in range(5):  # KEPU_LOGIN_MAX_FAILURES
        status, html = sign("not-my-password-9")
        assert status != 429 and "审核结论已签署" not in html
    status, html = sign(PASSWORD)  # the right one waits too: guessing has stopped paying
    assert status == 429 and "密码错误次数过多" in html, html
    assert "审核结论已签署" not in html
    expert.context.close()


def test_a_weak_new_password_is_refused_on_the_password_page(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    run_kepu(
        "users", "create", "qingdaowave", "--role", "editor", "--unit", "威海日报社",
        "--password", PASSWORD, env=env,
    )  # fmt: skip
    page = login(browser, base, "qingdaowave")
    page.goto(f"{base}/account/password")
    for weak, rule in (
        ("12345678", "至少 10"),
        ("password123", "太常见"),
        ("Qingdaowave-2026", "用户名"),
    ):
        page.get_by_label("当前密码").fill(PASSWORD)
        page.get_by_label("新密码", exact=False).first.fill(weak)
        page.get_by_label("再次输入新密码").fill(weak)
        page.get_by_role("button", name="修改密码").click()
        page.wait_for_load_state()
        assert rule in page.content(), (weak, page.content())
        assert "密码已修改" not in page.content()
    strong = "蓝色海湾-Tide-2026"
    page.get_by_label("当前密码").fill(PASSWORD)
    page.get_by_label("新密码", exact=False).first.fill(strong)
    page.get_by_label("再次输入新密码").fill(strong)
    page.get_by_role("button", name="修改密码").click()
    page.wait_for_load_state()
    assert "密码已修改" in page.content()
    page.context.close()


def test_withdrawing_in_the_page_takes_the_text_from_the_expert(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    """Issue #14 item 7 in chromium: the editor withdraws from the item page; the expert who
    was only offered the item can no longer open it, and the offer shows as revoked."""
    base, env, _log = live
    editor_api, item_id = flagged_item_offered(base, env, TITLE, BODY)
    item = {"id": item_id}
    expert = login(browser, base, "ex")
    expert.locator("main table").first.get_by_role("link", name="审核", exact=True).click()
    expert.wait_for_load_state()
    review_url = expert.url
    assert BODY[:10] in expert.content()

    editor = login(browser, base, "ed")
    editor.goto(f"{base}/items/{item['id']}")
    editor.get_by_label("撤稿原因").fill("选题取消")
    editor.get_by_role("button", name="撤稿").click()
    editor.wait_for_load_state()
    assert editor_api.call("GET", f"/api/v1/items/{item['id']}")[1]["state"] == "withdrawn"

    response = expert.goto(review_url)
    assert response is not None and response.status == 404
    assert BODY[:10] not in expert.content()
    expert.goto(f"{base}/assignments")
    assert expert.locator("main table").first.get_by_role("link", name="审核").count() == 0
    editor.context.close()
    expert.context.close()

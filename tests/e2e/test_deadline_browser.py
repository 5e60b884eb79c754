"""Issue #14 item 8 in chromium: an expert who presses 接受任务 after the offer's deadline is
refused with the reason, even with no sweep running, and the offer goes to another expert."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu, wait_until
from tests.e2e.conftest import PASSWORD, Http, cli_token, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TITLE = "震惊！每天吃大蒜能治愈癌症"
BODY = "专家证实，大蒜素可以彻底杀死癌细胞，100%治愈癌症，不用再做化疗！赶紧转发给家人。"


def test_accepting_after_the_deadline_is_refused_in_the_page(
    live: tuple[str, dict[str, str], Path], browser: Any
) -> None:
    base, env, _log = live
    editor = Http(base, cli_token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
    for name, unit in (("ex", "某大学"), ("ex2", "某医院"), ("ex3", "某研究所")):
        run_kepu(
            "users", "create", name, "--role", "expert", "--unit", unit,
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
    database = Path(env["KEPU_INSTANCE_PATH"]) / "kepu.sqlite"

    def offers() -> list[tuple[int, str, str]]:
        with closing(sqlite3.connect(database)) as conn:
            return conn.execute(
                "SELECT a.id, u.username, a.state FROM assignments a"
                " JOIN experts e ON e.id = a.expert_id JOIN users u ON u.id = e.user_id"
                " WHERE a.item_id = ? ORDER BY a.id",
                (item["id"],),
            ).fetchall()

    first = offers()
    offered = [name for _, name, state in first if state == "offered"]
    assert offered, first
    late = offered[0]
    page = login(browser, base, late)
    page.locator("main table").first.get_by_role("link", name="审核", exact=True).click()
    page.wait_for_load_state()
    # The deadline passes while the page is open (moved in the database: nothing sleeps).
    with closing(sqlite3.connect(database)) as conn:
        conn.execute(
            "UPDATE assignments SET due_at = '2000-01-01 00:00:00.000000'"
            " WHERE item_id = ? AND state = 'offered' AND expert_id ="
            " (SELECT e.id FROM experts e JOIN users u ON u.id = e.user_id WHERE u.username = ?)",
            (item["id"], late),
        )
        conn.commit()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="接受任务").click()
    page.wait_for_load_state()
    assert answer.value.status == 409
    assert "已超过接受的期限" in page.content()
    after = offers()
    assert any(name == late and state == "expired" for _, name, state in after), after
    newcomers = {name for _, name, state in after if state == "offered"} - {n for _, n, _ in first}
    assert newcomers, after  # offered on to an expert who had no offer
    page.context.close()

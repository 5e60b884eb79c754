"""Sign-off on the item page in chromium (issue #14, item 1): a version revised on an expert's
request waits for the experts however the rules screen it — no 发布 button until they sign —
and the editor can ask experts to look at a cleared item.

The web server runs without a worker (`kepu run --no-worker`, PostgreSQL and Redis); this test
screens each version in its own process the way the worker would, on the same database.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from expert_pool.models import Assignment
from review.db import db
from review.models import Item
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, wait_until
from tests.e2e.conftest import Http, free_port, login, shot
from workers import screening

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def db_url(pg_url: str) -> str:
    """The test and the web server share one PostgreSQL database."""
    return pg_url


@pytest.fixture
def web(app: Any, worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
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


def _screen(item_id: int) -> None:
    db.session.expire_all()
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version_id is not None
    screening.screen_version(item.current_version_id)
    db.session.expire_all()


def _decide(app: Any, factory: Any, item_id: int, decisions: dict[str, str]) -> None:
    """The experts (by user name) accept their open offers and decide, over the API."""
    db.session.expire_all()
    rows = db.session.scalars(
        select(Assignment).where(Assignment.item_id == item_id, Assignment.state == "offered")
    ).all()
    client = app.test_client()
    for a in rows:
        decision = decisions[a.expert.user.username]
        headers = factory.token(a.expert.user)
        assert client.post(f"/api/v1/assignments/{a.id}/accept", headers=headers).status_code == 200
        body = {"decision": decision, "password": "correct-horse-1"}
        if decision != "approve":
            body.update(comment="请删除“根治”“100%有效”等表述", references=["参考文献"])
        resp = client.post(f"/api/v1/assignments/{a.id}/decision", headers=headers, json=body)
        assert resp.status_code == 200, resp.json
    db.session.expire_all()


def _meta(page: Any) -> str:
    return str(page.locator("main .meta").first.inner_text())


def _meta_all(page: Any) -> str:
    return str(page.locator("#live-status").inner_text())


def test_revision_on_request_waits_for_the_experts_in_the_page(
    app: Any, factory: Any, web: str, browser: Any
) -> None:
    editor_user = factory.user("editor", username="ed")
    factory.expert(senior=True, username="asker")
    factory.expert(username="approver")
    ed = factory.token(editor_user)
    resp = app.test_client().post(
        "/api/v1/items",
        headers=ed,
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    item_id = int(resp.json["id"])
    _screen(item_id)
    _decide(app, factory, item_id, {"asker": "request_changes", "approver": "approve"})

    # The editor revises in the page, taking the claims out.
    editor = login(browser, web, "ed")
    editor.goto(f"{web}/items/{item_id}")
    assert "需修改" in _meta(editor)
    editor.get_by_role("link", name="修改后重新提交").click()
    editor.get_by_label("标题").fill(GENUINE_TITLE)
    editor.get_by_label("正文").fill(GENUINE_BODY)
    editor.get_by_role("button", name="提交新版本").click()
    editor.wait_for_load_state()
    assert re.search(rf"/items/{item_id}$", editor.url)
    assert editor.get_by_role("button", name="发布", exact=True).count() == 0

    # The rules find nothing in version 2: it still waits for the expert who asked.
    _screen(item_id)
    editor.reload()
    assert "专家审核中" in _meta(editor) and "第 2 版" in _meta(editor)
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version is not None
    assert item.current_version.report is not None and not item.current_version.report.is_flagged
    assert editor.locator("#signoff-required").is_visible()
    assert "须经专家审核通过后才能发布" in editor.locator("#signoff-required").inner_text()
    assert editor.get_by_role("button", name="发布", exact=True).count() == 0
    assert editor.get_by_role("button", name="请专家审核").count() == 0
    shot(editor, "signoff-revision-waits-for-experts")

    # The expert who asked signs version 2; now, and only now, it can be published.
    _decide(app, factory, item_id, {"asker": "approve"})
    editor.reload()
    assert "审核通过" in _meta(editor)
    assert editor.locator("#signoff-required").count() == 0
    editor.get_by_role("button", name="发布", exact=True).click()
    editor.wait_for_load_state()
    assert "已发布" in _meta(editor)
    editor.context.close()


def test_the_editor_asks_experts_about_a_cleared_item_in_the_page(
    app: Any, factory: Any, web: str, browser: Any
) -> None:
    editor_user = factory.user("editor", username="ed")
    factory.expert(username="reviewer")
    resp = app.test_client().post(
        "/api/v1/items",
        headers=factory.token(editor_user),
        json={"title": GENUINE_TITLE, "body": GENUINE_BODY, "submit": True},
    )
    item_id = int(resp.json["id"])
    _screen(item_id)

    editor = login(browser, web, "ed")
    editor.goto(f"{web}/items/{item_id}")
    assert "初筛通过" in _meta(editor)
    assert editor.get_by_role("button", name="发布", exact=True).count() == 1
    editor.get_by_label("请专家审核的说明").fill("涉及疫苗接种，请专家把关")
    editor.get_by_role("button", name="请专家审核").click()
    editor.wait_for_load_state()
    assert "已请专家审核" in editor.content()
    assert "专家审核中" in _meta(editor)
    assert editor.get_by_role("button", name="发布", exact=True).count() == 0
    assert "已邀请 1 位专家待接受" in _meta_all(editor)
    shot(editor, "signoff-editor-asked-experts")
    editor.context.close()

    db.session.expire_all()
    item = db.session.get(Item, item_id)
    assert item is not None and item.state.value == "in_review"
    offers = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
    assert [a.expert.user.username for a in offers] == ["reviewer"]

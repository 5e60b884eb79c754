"""Issue #14 item 3 in chromium: an article typed into the web form (the browser posts its
line breaks as CRLF) is published, and `kepu receipt verify` accepts the receipt against the
same article saved with LF, as a CMS would keep it; an edited copy fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kepu, wait_until
from tests.e2e.conftest import Http, cli_token, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TITLE = "秋季流感疫苗接种提示"
LINES = [
    "流感疫苗需要每年接种。",
    "",
    "六个月以上且没有禁忌证的人群都可以接种，接种后少数人会出现低热。",
]


def test_an_article_typed_in_the_form_verifies_against_its_lf_copy(
    live: tuple[str, dict[str, str], Path], browser: Any, tmp_path: Path
) -> None:
    base, env, _log = live
    api = Http(base, cli_token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
    page = login(browser, base, "ed")
    page.goto(f"{base}/items/new")
    page.get_by_label("标题").fill(TITLE)
    body = page.get_by_label("正文")
    body.click()
    for number, line in enumerate(LINES):  # typed, with Enter between the lines
        if number:
            body.press("Enter")
        body.type(line)
    with page.expect_request(lambda r: r.method == "POST") as sent:
        page.get_by_role("button", name="提交审查").click()
    assert b"%0D%0A" in (sent.value.post_data_buffer or b"")  # the form posted CRLF
    page.wait_for_load_state()
    item_id = int(page.url.rstrip("/").split("/")[-1])
    wait_until(lambda: api.call("GET", f"/api/v1/items/{item_id}")[1]["state"] == "cleared", 90)
    assert "\r" not in api.call("GET", f"/api/v1/items/{item_id}")[1]["body"]

    status, published = api.call("POST", f"/api/v1/items/{item_id}/publish")
    assert status == 200, published
    status, document = api.call("GET", f"/api/v1/items/{item_id}/receipt")
    assert status == 200
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(document["receipt"], ensure_ascii=False), encoding="utf-8")
    key = tmp_path / "key.pem"
    key.write_text(document["public_key"], encoding="utf-8")
    offline = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    offline["KEPU_INSTANCE_PATH"] = str(tmp_path / "verifier")

    def verify(text: str) -> int:
        content = tmp_path / "article.txt"
        content.write_bytes(text.encode("utf-8"))
        args = ("receipt", "verify", str(receipt), "--pubkey", str(key), "--content", str(content))
        return run_kepu(*args, env=offline, check=False).returncode

    assert verify("\n".join(LINES) + "\n") == 0  # the CMS's LF copy with a final newline
    assert verify("\n".join(LINES).replace("每年", "每两年")) != 0  # an edit is caught
    page.context.close()

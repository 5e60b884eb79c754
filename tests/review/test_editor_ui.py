"""The editor's pages: Markdown articles, revising beside the findings, diffs, live status."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest

from review.db import db
from review.diffing import Piece, diff_html, diff_text
from review.models import Item
from review.rendering import (
    ALLOWED_TAGS,
    field_text,
    render_markdown,
    sanitize,
    textarea_offset,
)
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE
from workers import screening

PASSWORD = "correct-horse-1"


# --- Markdown ------------------------------------------------------------------------------------


def test_markdown_renders_commonmark_with_tables() -> None:
    source = "# 标题\n\n**加粗** *斜体*\n\n- 一\n- 二\n\n| 甲 | 乙 |\n|---|---|\n| 1 | 2 |"
    html = str(render_markdown(source))
    assert "<h1>标题</h1>" in html
    assert "<strong>加粗</strong>" in html and "<em>斜体</em>" in html
    assert "<li>一</li>" in html and "<td>1</td>" in html


def test_single_newlines_stay_line_breaks() -> None:
    assert "第一行<br>" in str(render_markdown("第一行\n第二行"))


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "正文<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">点我</a>',
        "<b onclick=alert(1)>粗</b>",
        "<iframe src=https://evil.example/></iframe>",
        "<!-- 注释 --><style>body{}</style>",
    ],
)
def test_raw_html_is_shown_as_text_never_as_markup(source: str) -> None:
    html = str(render_markdown(source))
    for tag in re.findall(r"<\s*([a-zA-Z0-9]+)", html):
        assert tag in ALLOWED_TAGS, html
    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert "onclick=" not in html.replace("onclick=alert", "")  # only inside escaped text
    assert not re.search(r"<[^>]*\son\w+=", html), html
    assert unescape(re.sub(r"<[^>]+>", "", html)).strip()  # the text itself is still there


@pytest.mark.parametrize(
    "link",
    [
        "[点我](javascript:alert(1))",
        "[点我](JaVaScRiPt:alert(1))",
        "[点我](vbscript:msgbox(1))",
        "[点我](data:text/html;base64,PHNjcmlwdD4=)",
        "[点我](java&#x09;script:alert(1))",
    ],
)
def test_dangerous_links_are_not_links(link: str) -> None:
    html = str(render_markdown(link))
    hrefs = re.findall(r'href="([^"]*)"', html)
    # At most a harmless relative address is left ("java%09script:" is no scheme to a browser).
    schemes = [re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*):", h) for h in hrefs]
    assert [m.group(1) for m in schemes if m] == [], html


def test_links_get_rel_and_images_become_links() -> None:
    html = str(render_markdown('[科协](https://kx.example/a "官网") ![示意图](/export/audit.csv)'))
    assert (
        '<a href="https://kx.example/a" title="官网" rel="noopener noreferrer nofollow">科协</a>'
        in html
    )
    assert "<img" not in html
    assert '<a href="/export/audit.csv" rel="noopener noreferrer nofollow">示意图</a>' in html


def test_sanitizer_itself_strips_what_is_not_allowed() -> None:
    dirty = (
        '<p style="color:red" class="x" id="y">文</p><a href="javascript:x()" onclick="y()" '
        'rel="opener" target="_blank">链</a><script>bad()</script><svg onload=x()></svg>'
        '<a href="https://ok.example/">好</a>'
    )
    clean = sanitize(dirty)
    assert clean == (
        '<p>文</p><a rel="noopener noreferrer nofollow">链</a>'
        '<a href="https://ok.example/" rel="noopener noreferrer nofollow">好</a>'
    )


# --- diffs ---------------------------------------------------------------------------------------


def test_character_diff_of_chinese_reads_as_one_replacement() -> None:
    pieces = diff_text("喝小分子水可以根治高血压。", "喝水有助于控制血压。")
    assert pieces == [
        Piece("equal", "喝"),
        Piece("delete", "小分子水可以根治高"),
        Piece("insert", "水有助于控制"),
        Piece("equal", "血压。"),
    ]
    # Applying the pieces gives back both texts.
    assert "".join(p.text for p in pieces if p.op != "insert") == "喝小分子水可以根治高血压。"
    assert "".join(p.text for p in pieces if p.op != "delete") == "喝水有助于控制血压。"


def test_short_unchanged_runs_between_changes_are_folded() -> None:
    pieces = diff_text("甲乙丙丁戊", "子乙丑丁寅")
    # Single unchanged characters between changes do not split the change into fragments.
    assert [p.op for p in pieces] == ["delete", "insert"]
    assert pieces[0].text == "甲乙丙丁戊" and pieces[1].text == "子乙丑丁寅"


def test_unchanged_lines_stay_whole_and_only_the_edited_line_is_marked() -> None:
    old = "第一段不变。\n第二段说能根治。\n第三段不变。\n"
    new = "第一段不变。\n第二段说能缓解。\n第三段不变。\n新增一段。\n"
    pieces = diff_text(old, new)
    assert pieces[0] == Piece("equal", "第一段不变。\n第二段说能")
    assert Piece("delete", "根治") in pieces and Piece("insert", "缓解") in pieces
    assert pieces[-1] == Piece("insert", "新增一段。\n")
    assert diff_text("同样", "同样") == [Piece("equal", "同样")]
    assert diff_text("", "新") == [Piece("insert", "新")]
    assert diff_text("旧", "") == [Piece("delete", "旧")]


def test_diff_html_escapes_the_text() -> None:
    html = str(diff_html("<b>旧</b>", "<b>新</b><script>"))
    assert html == "&lt;b&gt;<del>旧</del><ins>新</ins>&lt;/b&gt;<ins>&lt;script&gt;</ins>"


def test_textarea_offsets_count_like_the_browser() -> None:
    text = "😀第一行\r\n第二行根治"
    start = text.index("根治")
    # The emoji is two UTF-16 units; the CRLF is one newline in a textarea's value.
    assert start == 9 and textarea_offset(text, start) == 9
    assert textarea_offset(text, start + 2) == 11
    assert textarea_offset(text, text.index("第二")) == 6
    assert field_text(text) == "😀第一行\n第二行根治"
    assert textarea_offset("abc", 2) == 2 and textarea_offset("", 0) == 0


# --- pages and endpoints -------------------------------------------------------------------------


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    resp = c.post("/login", data={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 302
    return c


@pytest.fixture
def world(app: Any, factory: Any) -> dict[str, Any]:
    """Two units' editors, two assigned experts and an unassigned one, an auditor; a flagged
    item under review and a submitted one waiting for screening."""
    unit_a, unit_b = factory.unit("甲报社"), factory.unit("乙电视台")
    users = {
        "owner": factory.user("editor", unit=unit_a),
        "other_editor": factory.user("editor", unit=unit_b),
        "expert": factory.expert(senior=True),
        "expert2": factory.expert(),
        "other_expert": factory.expert(domains=("交通",), max_load=1),
        "auditor": factory.user("auditor"),
        "admin": factory.user("admin"),
    }
    tokens = {k: factory.token(u) for k, u in users.items()}
    client = app.test_client()
    resp = client.post(
        "/api/v1/items",
        headers=tokens["owner"],
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    )
    flagged = resp.json["id"]
    item = db.session.get(Item, flagged)
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    pending = client.post(
        "/api/v1/items",
        headers=tokens["owner"],
        json={"title": GENUINE_TITLE, "body": GENUINE_BODY, "submit": True},
    ).json["id"]
    return {"users": users, "tokens": tokens, "flagged": flagged, "pending": pending}


def test_status_endpoint_follows_the_item_pages_access_rules(
    app: Any, world: dict[str, Any]
) -> None:
    flagged = world["flagged"]
    url = f"/items/{flagged}/status.json"
    expected = {"owner": 200, "other_editor": 404, "expert": 200, "other_expert": 404}
    expected |= {"auditor": 200, "admin": 200}
    for role, status in expected.items():
        c = _login(app, world["users"][role])
        page = c.get(f"/items/{flagged}").status_code
        resp = c.get(url)
        assert (resp.status_code, page) == (status, status), role
        assert resp.is_json, role
        if status == 404:
            assert resp.json["error"] == "not_found"
            assert "找不到" in resp.json["message"]
    # Read-only: it answers GET only.
    assert _login(app, world["users"]["auditor"]).post(url).status_code == 405
    anonymous = app.test_client().get(url)
    assert anonymous.status_code == 401 and anonymous.json["error"] == "unauthorized"
    assert app.test_client().get("/no-such/status.json").status_code == 404


def test_status_reports_screening_progress_findings_and_reviews(
    app: Any, world: dict[str, Any]
) -> None:
    c = _login(app, world["users"]["owner"])
    pending = c.get(f"/items/{world['pending']}/status.json").json
    assert pending["state"] == "submitted" and pending["state_label"] == "已提交"
    assert pending["screening"] == {"pending": True, "attempts": 0, "failed": False}
    assert pending["terminal"] is False and pending["findings"] == 0
    assert pending["queue_label"] == "正在筛查…"

    item = db.session.get(Item, world["pending"])
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    cleared = c.get(f"/items/{world['pending']}/status.json").json
    assert cleared["state"] == "cleared" and cleared["state_label"] == "初筛通过"
    assert cleared["screening"]["pending"] is False and cleared["screening"]["attempts"] == 1
    assert cleared["terminal"] is True
    assert cleared["content_key"] != pending["content_key"]

    flagged = c.get(f"/items/{world['flagged']}/status.json").json
    assert flagged["state"] == "in_review" and flagged["terminal"] is False
    assert flagged["findings"] > 0 and flagged["risk_level"] in ("high", "critical")
    assert flagged["assignments"] == {
        "offered": 2,
        "accepted": 0,
        "completed": 0,
        "reviewers_needed": 2,
    }
    assert flagged["queue_label"] == "已邀请 2 位专家待接受，0 位正在审核，0 位已签署结论"
    assert flagged["needs_admin"] is False
    assert flagged["updated_at"] and flagged["version"] == 1
    english = c.get(f"/items/{world['flagged']}/status.json?lang=en").json
    assert english["state_label"] == "Under expert review"


def test_batch_status_leaves_out_what_the_user_may_not_see(app: Any, world: dict[str, Any]) -> None:
    ids = f"id={world['flagged']}&id={world['pending']}&id=999999"
    owner = _login(app, world["users"]["owner"]).get(f"/items/status.json?{ids}")
    assert sorted(s["id"] for s in owner.json["items"]) == sorted(
        [world["flagged"], world["pending"]]
    )
    other = _login(app, world["users"]["other_editor"]).get(f"/items/status.json?{ids}")
    assert other.status_code == 200 and other.json["items"] == []
    expert = _login(app, world["users"]["expert"]).get(f"/items/status.json?{ids}")
    assert [s["id"] for s in expert.json["items"]] == [world["flagged"]]
    too_many = "&".join(f"id={n}" for n in range(1, 102))  # 101 valid ids (0 is none)
    resp = _login(app, world["users"]["owner"]).get(f"/items/status.json?{too_many}")
    assert resp.status_code == 400 and "最多" in resp.json["message"]


def test_item_page_renders_markdown_safely_and_keeps_the_marked_source(
    app: Any, world: dict[str, Any]
) -> None:
    c = _login(app, world["users"]["owner"])
    body = (
        "## 小标题\n\n每天喝小分子水可以根治高血压。\n\n"
        "<script>alert('x')</script> [点我](javascript:alert(1)) <b onmouseover=x()>粗</b>"
    )
    resp = c.post("/items/new", data={"title": "测试稿", "body": body, "action": "submit"})
    item_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    item = db.session.get(Item, item_id)
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    html = c.get(f"/items/{item_id}").get_data(as_text=True)
    assert "<h2>小标题</h2>" in html
    assert "<script>alert" not in html and "onmouseover=x()>" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    # The source with the findings marked, offsets into the stored text.
    assert re.search(r'<mark class="sev-\w+" title="[^"]*" id="f\d+">', html)
    assert "## 小标题" in html
    assert f'data-status-url="/items/{item_id}/status.json"' in html


def test_preview_renders_with_csrf_and_refuses_bad_input(app: Any, world: dict[str, Any]) -> None:
    c = _login(app, world["users"]["owner"])
    resp = c.post("/items/preview.json", data={"body": "**重点** <script>x()</script>"})
    assert resp.status_code == 200
    assert resp.json["html"] == "<p><strong>重点</strong> &lt;script&gt;x()&lt;/script&gt;</p>\n"
    too_long = c.post("/items/preview.json", data={"body": "长" * 1_000_001})
    assert too_long.status_code == 400 and "过长" in too_long.json["message"]
    auditor = _login(app, world["users"]["auditor"]).post("/items/preview.json", data={"body": "x"})
    assert auditor.status_code == 403 and auditor.is_json
    assert app.test_client().post("/items/preview.json", data={"body": "x"}).status_code == 401

    app.config["WTF_CSRF_ENABLED"] = True
    page = c.get("/items/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    missing = c.post("/items/preview.json", data={"body": "x"})
    assert missing.status_code == 400 and missing.json["error"] == "csrf"
    ok = c.post("/items/preview.json", data={"body": "*x*"}, headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and ok.json["html"] == "<p><em>x</em></p>\n"


def _decide(app: Any, world: dict[str, Any], who: str, body: dict[str, Any]) -> None:
    c = app.test_client()
    token = world["tokens"][who]
    aid = next(
        a["id"]
        for a in c.get("/api/v1/assignments", headers=token).json
        if a["item_id"] == world["flagged"]
    )
    c.post(f"/api/v1/assignments/{aid}/accept", headers=token)  # a decision needs it accepted
    resp = c.post(
        f"/api/v1/assignments/{aid}/decision",
        headers=token,
        json={"password": PASSWORD, **body},
    )
    assert resp.status_code == 200, resp.json


def _request_changes(app: Any, world: dict[str, Any]) -> None:
    """One expert asks for changes (with a verdict on the first finding), the other approves."""
    item = db.session.get(Item, world["flagged"])
    findings = item.current_version.report.findings  # type: ignore[union-attr]
    _decide(
        app,
        world,
        "expert",
        {
            "decision": "request_changes",
            "comment": "请删去“根治”“100%有效”的说法",
            "references": ["《中国高血压防治指南》"],
            "finding_verdicts": {str(findings[0].id): "confirmed"},
        },
    )
    _decide(app, world, "expert2", {"decision": "approve"})
    db.session.expire_all()


def test_revise_page_shows_findings_and_comments_beside_the_text(
    app: Any, world: dict[str, Any]
) -> None:
    _request_changes(app, world)
    item = db.session.get(Item, world["flagged"])
    assert item is not None and item.state.value == "changes_requested"
    findings = item.current_version.report.findings  # type: ignore[union-attr]
    c = _login(app, world["users"]["owner"])
    html = c.get(f"/items/{item.id}/edit").get_data(as_text=True)
    assert 'class="revise-grid"' in html and "修改参考" in html
    jumps = re.findall(
        r'class="finding-jump sev-\w+" data-field="(\w+)" data-start="(\d+)" '
        r'data-end="(\d+)" data-text="([^"]*)"',
        html,
    )
    assert len(jumps) == len([f for f in findings if f.segment in ("title", "body")]) > 0
    for field, start, end, text in jumps:
        source = item.title if field == "title" else item.body
        assert field_text(source)[int(start) : int(end)] == unescape(text)
    assert "请删去“根治”“100%有效”的说法" in html and "《中国高血压防治指南》" in html
    assert "专家判定：属实" in html
    assert "严重程度" in html and "类别" in html
    assert 'src="/static/editor.js"' in html
    # The rule's title in plain Chinese.
    from rules import load_default_ruleset

    title = load_default_ruleset().rule(findings[0].rule_id).title  # type: ignore[arg-type]
    assert title in html
    # A draft has nothing to revise against.
    draft = c.post("/items/new", data={"title": "草稿", "body": "正文", "action": "save"})
    assert "revise-grid" not in c.get(draft.headers["Location"] + "/edit").get_data(as_text=True)


def test_each_later_version_shows_its_diff_on_the_item_page(
    app: Any, world: dict[str, Any]
) -> None:
    _request_changes(app, world)
    c = _login(app, world["users"]["owner"])
    item_id = world["flagged"]
    new_body = PSEUDO_BODY.replace("彻底根治高血压，100%有效，永不复发", "帮助控制血压")
    resp = c.post(
        f"/items/{item_id}/edit",
        data={"title": PSEUDO_TITLE, "body": new_body, "action": "revise"},
    )
    assert resp.status_code == 302
    html = c.get(f"/items/{item_id}").get_data(as_text=True)
    assert "版本历史" in html and "与第 1 版比较" in html
    assert "<del>彻底根治高血压，100%有效，永不复发</del><ins>帮助控制血压</ins>" in html
    assert "标题未改动" in html
    # An illegal revision keeps its Chinese message.
    again = c.post(f"/items/{item_id}/edit", data={"title": "x", "body": "y", "action": "revise"})
    assert again.status_code == 409
    assert "不允许执行“修改后重新提交”操作" in again.get_data(as_text=True)


def test_item_list_carries_what_the_live_script_needs(app: Any, world: dict[str, Any]) -> None:
    html = _login(app, world["users"]["owner"]).get("/items").get_data(as_text=True)
    assert 'id="item-list" data-status-url="/items/status.json"' in html
    assert f'data-item-id="{world["pending"]}" data-terminal="false"' in html
    assert "正在筛查…" in html and 'src="/static/progress.js"' in html


def test_context_and_verdict_labels_cover_every_value() -> None:
    from expert_pool.operations import VERDICTS
    from review.i18n import CONTEXT_LABELS, VERDICT_LABELS
    from rules import CONTEXTS

    assert set(CONTEXT_LABELS) == set(CONTEXTS)
    assert set(VERDICT_LABELS) == set(VERDICTS)

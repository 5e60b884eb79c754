"""Every main page × every role in chromium: status, layout at 1280px and 390px, accessibility.

One `kepu run` serves the whole module; the world is built once through the CLI and the API,
and the tests only read it. The README screenshots are taken from the same world.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_kepu, wait_until
from tests.e2e.conftest import ARTIFACTS, PASSWORD, Http, login, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

GARLIC_TITLE = "震惊！每天吃大蒜能治愈癌症"
GARLIC_BODY = (
    "家住环翠区的李大爷坚持每天生吃三瓣大蒜，半年后肿瘤消失了。专家证实，大蒜素可以彻底杀死"
    "癌细胞，100%治愈癌症，还能根治高血压，不用再做化疗！赶紧转发给家人。"
)
GENUINE_TITLE = "秋季流感疫苗接种提示"
GENUINE_BODY = (
    "流感疫苗需要每年接种。六个月以上且没有禁忌证的人群都可以接种，接种后少数人会出现低热。"
)
SCREENSHOTS = ROOT / "review" / "static" / "docs" / "screenshots"

ROLES = ("anonymous", "editor", "other_unit_editor", "expert", "other_expert", "auditor", "admin")
USERS = {
    "editor": ("ed", "--role", "editor", "--unit", "威海日报社", "--name", "王编辑"),
    "other_unit_editor": ("ed2", "--role", "editor", "--unit", "威海电视台", "--name", "李编辑"),
    "expert": (
        "ex",
        "--role",
        "expert",
        "--unit",
        "某大学",
        "--domain",
        "医学健康",
        "--name",
        "张专家",
    ),
    "senior_expert": (
        "ex2",
        "--role",
        "expert",
        "--unit",
        "威海市立医院",
        "--domain",
        "医学健康",
        "--senior",
        "--name",
        "刘主任",
    ),  # fmt: skip
    "other_expert": (
        "exo",
        "--role",
        "expert",
        "--unit",
        "某研究所",
        "--domain",
        "交通",
        "--name",
        "周工",
    ),
    "auditor": ("au", "--role", "auditor", "--name", "宣传部审计员"),
    "admin": ("ad", "--role", "admin", "--name", "系统管理员"),
}


@pytest.fixture(scope="module")
def world(live_module: tuple[str, dict[str, str], Path]) -> dict[str, Any]:
    """Two units' editors, three experts, an auditor and an admin; a draft, an item under review
    (one expert has asked for changes, the other has accepted) and a published item."""
    base, env, _log = live_module
    tokens = {}
    for role, args in USERS.items():
        out = run_kepu("users", "create", *args, "--password", PASSWORD, "--token", env=env)
        tokens[role] = out.stdout.strip().splitlines()[-1]
    api = {role: Http(base, token) for role, token in tokens.items()}

    def call(role: str, method: str, path: str, body: Any = None) -> Any:
        status, data = api[role].call(method, "/api/v1" + path, body)
        assert status < 300, (role, method, path, status, data)
        return data

    draft = call(
        "editor", "POST", "/items", {"title": "台风来临前家庭应急准备清单", "body": "检查门窗。"}
    )
    flagged = call(
        "editor", "POST", "/items", {"title": GARLIC_TITLE, "body": GARLIC_BODY, "submit": True}
    )
    genuine = call(
        "editor", "POST", "/items", {"title": GENUINE_TITLE, "body": GENUINE_BODY, "submit": True}
    )

    def state(item: dict[str, Any]) -> str:
        return str(call("editor", "GET", f"/items/{item['id']}")["state"])

    wait_until(lambda: state(flagged) == "in_review" and state(genuine) == "cleared", timeout=90)
    item = call("editor", "GET", f"/items/{genuine['id']}")
    call(
        "editor",
        "POST",
        f"/items/{genuine['id']}/publish",
        {"content_sha256": item["version"]["content_sha256"]},
    )

    offers = {}
    for role in ("expert", "senior_expert"):
        rows = [a for a in call(role, "GET", "/assignments") if a["item_id"] == flagged["id"]]
        assert len(rows) == 1, (role, rows)
        offers[role] = rows[0]["id"]
        call(role, "POST", f"/assignments/{offers[role]}/accept")
    call(
        "senior_expert",
        "POST",
        f"/assignments/{offers['senior_expert']}/decision",
        {
            "decision": "request_changes",
            "password": PASSWORD,
            "comment": "请删除“100%治愈癌症”等绝对化说法，并注明研究来源。",
            "references": ["国家卫生健康委员会《癌症防治核心信息及知识要点》"],
        },
    )
    experts = {e["name"]: e["id"] for e in call("admin", "GET", "/experts")}
    return {
        "base": base,
        "draft": draft["id"],
        "flagged": flagged["id"],
        "published": genuine["id"],
        "assignment": offers["expert"],
        "expert_id": experts["周工"],
    }


# page → expected answer per role: a status, or "login" (redirected to the sign-in page).
# Mirrors tests/review/test_access.py::test_pages_answer_per_role, plus anonymous visitors,
# the other expert, the review page and the editor's edit page.
ALL_200 = {r: 200 for r in ROLES if r != "anonymous"}
AUDIT_ONLY = {
    "editor": 403, "other_unit_editor": 403, "expert": 403, "other_expert": 403,
    "auditor": 200, "admin": 200,
}  # fmt: skip
PAGES: dict[str, dict[str, int]] = {
    "/items": {**AUDIT_ONLY, "editor": 200, "other_unit_editor": 200},
    "/items/new": {
        "editor": 200,
        "other_unit_editor": 200,
        "expert": 403,
        "other_expert": 403,
        "auditor": 403,
        "admin": 403,
    },  # fmt: skip
    "/items/{flagged}": {
        "editor": 200,
        "other_unit_editor": 404,
        "expert": 200,
        "other_expert": 404,
        "auditor": 200,
        "admin": 200,
    },  # fmt: skip
    "/items/{draft}": {
        "editor": 200,
        "other_unit_editor": 404,
        "expert": 404,
        "other_expert": 404,
        "auditor": 200,
        "admin": 200,
    },  # fmt: skip
    "/items/{draft}/edit": {
        "editor": 200,
        "other_unit_editor": 404,
        "expert": 403,
        "other_expert": 403,
        "auditor": 403,
        "admin": 403,
    },  # fmt: skip
    "/items/{published}": {
        "editor": 200,
        "other_unit_editor": 404,
        "expert": 404,
        "other_expert": 404,
        "auditor": 200,
        "admin": 200,
    },  # fmt: skip
    "/items/999999": {
        "editor": 404,
        "other_unit_editor": 404,
        "expert": 404,
        "other_expert": 404,
        "auditor": 404,
        "admin": 404,
    },  # fmt: skip
    "/assignments": {
        "editor": 403,
        "other_unit_editor": 403,
        "expert": 200,
        "other_expert": 200,
        "auditor": 403,
        "admin": 403,
    },  # fmt: skip
    "/assignments/{assignment}": {
        "editor": 403,
        "other_unit_editor": 403,
        "expert": 200,
        "other_expert": 404,
        "auditor": 200,
        "admin": 200,
    },  # fmt: skip
    "/audit": AUDIT_ONLY,
    "/audit/items/{flagged}": AUDIT_ONLY,
    "/admin/users": {**AUDIT_ONLY, "auditor": 403},
    "/admin/experts": AUDIT_ONLY,
    "/admin/experts/{expert_id}": {**AUDIT_ONLY, "auditor": 403},
    "/admin/queue": AUDIT_ONLY,
    "/notifications": ALL_200,
    "/dashboard": AUDIT_ONLY,
    "/reports/monthly": AUDIT_ONLY,
    "/search?q=大蒜": ALL_200,
    "/audit/checkpoints": AUDIT_ONLY,
    "/quality": AUDIT_ONLY,
    "/admin/policies": AUDIT_ONLY,  # read-only for auditors
    "/admin/rules": AUDIT_ONLY,
    "/admin/rules/efficacy.folk-item-cures-disease": AUDIT_ONLY,
    "/items/new-video": {
        "editor": 200,
        "other_unit_editor": 200,
        "expert": 403,
        "other_expert": 403,
        "auditor": 403,
        "admin": 403,
    },  # fmt: skip
}
LOGINS = {role: args[0] for role, args in USERS.items()}


def _url(world: dict[str, Any], path: str) -> str:
    return world["base"] + path.format(**world)


# Checks run in the page: every visible form control has a label; actions are buttons in POST
# forms; nothing is clickable through javascript: links.
_A11Y_PROBLEMS = """() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    if (!named) problems.push('unlabelled ' + el.outerHTML.slice(0, 80));
  }
  for (const form of document.querySelectorAll('form')) {
    if (!form.querySelector('button')) problems.push('form without button ' + form.action);
    if (form.method.toLowerCase() === 'post' && !form.querySelector('input[name=csrf_token]'))
      problems.push('post form without CSRF token ' + form.action);
  }
  for (const a of document.querySelectorAll('a[href^="javascript:"], [onclick], [onerror]'))
    problems.push('script in markup ' + a.outerHTML.slice(0, 80));
  for (const img of document.querySelectorAll('img:not([alt])')) problems.push('img without alt');
  return problems;
}"""


def _check_layout(page: Any, signed_in: bool) -> None:
    """Landmarks, lang, skip link, focus ring and the header at the current viewport width."""
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "page scrolls sideways"
    if page.locator("body.report").count():  # the printable monthly report stands alone
        assert page.locator("main#main h1").count() == 1
        return
    assert page.locator("header.top").count() == 1
    assert page.locator("main#main").count() == 1
    assert page.locator("main h1").count() >= 1
    if signed_in:
        assert page.locator('header nav[aria-label="主导航"]').count() == 1  # hidden on phones
    assert page.evaluate(_A11Y_PROBLEMS) == []
    # The skip link comes first in the tab order (the first Tab reaches it unless a field has
    # autofocus, as on the sign-in page), its focus is drawn, and it moves focus to <main>.
    first = page.evaluate(
        "() => document.querySelector('a[href], button, input:not([type=hidden]), select,"
        " textarea, [tabindex]').className"
    )
    assert first == "skip-link", first
    if page.evaluate("document.activeElement === document.body"):
        page.keyboard.press("Tab")
    else:
        page.locator(".skip-link").focus()
    focused = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return [e.className, s.outlineStyle, parseFloat(s.outlineWidth),"
        " e.getBoundingClientRect().top]; }"
    )
    assert focused[0] == "skip-link" and focused[1] != "none" and focused[2] >= 2, focused
    assert focused[3] >= 0, "the focused skip link is on screen"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    toggle, menu = page.locator(".menu-toggle"), page.locator("#site-menu")
    if width < 760:
        assert toggle.is_visible() and not menu.is_visible()
        toggle.click()
        assert menu.is_visible() and toggle.get_attribute("aria-expanded") == "true"
        page.keyboard.press("Escape")
        assert not menu.is_visible() and toggle.get_attribute("aria-expanded") == "false"
    else:
        assert not toggle.is_visible() and menu.is_visible()


@pytest.fixture
def role_page(request: pytest.FixtureRequest, browser: Any, world: dict[str, Any]) -> Iterator[Any]:
    role = request.param
    if role == "anonymous":
        page = browser.new_context(locale="zh-CN").new_page()
    else:
        page = login(browser, world["base"], LOGINS[role])
    try:
        yield role, page
    finally:
        page.context.close()


@pytest.mark.parametrize("role_page", ROLES, indirect=True)
def test_pages_per_role_in_the_browser(role_page: tuple[str, Any], world: dict[str, Any]) -> None:
    role, page = role_page
    for path, expected in PAGES.items():
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 800})
            response = page.goto(_url(world, path))
            assert response is not None
            if role == "anonymous":
                assert response.request.redirected_from is not None, path
                assert page.url.startswith(world["base"] + "/login?next="), (path, page.url)
                assert response.status == 200
                assert page.get_by_label("用户名").is_visible()
            else:
                assert response.status == expected[role], (role, path, response.status)
                if response.status != 200:
                    assert f"出错了（{response.status}）" in page.locator("main h1").inner_text()
            _check_layout(page, signed_in=role != "anonymous")


def test_english_locale_sets_lang(browser: Any, world: dict[str, Any]) -> None:
    page = login(browser, world["base"], "ed")
    page.goto(world["base"] + "/items?lang=en")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_role("link", name="Skip to content").count() == 1
    assert page.get_by_role("navigation", name="Main navigation").count() == 1
    page.context.close()


def test_findings_and_states_are_styled(browser: Any, world: dict[str, Any]) -> None:
    """Severity marks and state badges get their colours (and high contrast) from style.css."""
    page = login(browser, world["base"], "ex")
    page.goto(_url(world, "/assignments/{assignment}"))
    colours = page.evaluate(
        """() => [...document.querySelectorAll('.text mark')].map(m => {
             const s = getComputedStyle(m);
             return [m.className, s.backgroundColor, s.color];
           })"""
    )
    assert {c[0] for c in colours} >= {"sev-low", "sev-medium", "sev-high"}, colours
    by_class = {c[0]: (c[1], c[2]) for c in colours}
    assert len({bg for bg, _fg in by_class.values()}) == len(by_class)  # one colour per severity
    for bg, fg in by_class.values():
        assert _contrast(bg, fg) >= 4.5, (bg, fg)
    badge = page.locator("main .meta .state").first
    assert "s-in_review" in (badge.get_attribute("class") or "")
    assert (
        _contrast(
            badge.evaluate("e => getComputedStyle(e).backgroundColor"),
            badge.evaluate("e => getComputedStyle(e).color"),
        )
        >= 4.5
    )
    page.context.close()


def _contrast(bg: str, fg: str) -> float:
    """WCAG contrast ratio of two `rgb(...)` colours."""

    def luminance(css: str) -> float:
        parts = [float(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        lin = [
            (c / 255 / 12.92) if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
            for c in parts
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(bg), luminance(fg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


README_SHOTS = [
    ("editor-items", "ed", "/items", 1280),
    ("item-findings", "ed", "/items/{flagged}", 1280),
    ("expert-review", "ex", "/assignments/{assignment}", 1280),
    ("audit-trail", "au", "/audit/items/{flagged}", 1280),
    ("dashboard", "au", "/dashboard", 1280),
    ("admin-users", "ad", "/admin/users", 1280),
    ("admin-experts", "ad", "/admin/experts", 1280),
    ("admin-queue", "ad", "/admin/queue", 1280),
    ("expert-review-phone", "ex", "/assignments/{assignment}", 390),
]


def test_readme_screenshots(browser: Any, world: dict[str, Any]) -> None:
    """Screenshots of the main pages at 1280px (and one at 390px) for the README.

    Every run writes them to test-artifacts/screenshots/; KEPU_UPDATE_SCREENSHOTS=1 also
    refreshes the committed copies in review/static/docs/screenshots/."""
    update = os.environ.get("KEPU_UPDATE_SCREENSHOTS") == "1"
    pages: dict[tuple[str, int], Any] = {}
    for name, username, path, width in README_SHOTS:
        key = (username, width)
        if key not in pages:
            height = 800 if width > 760 else 844
            viewport = {"width": width, "height": height}
            pages[key] = login(browser, world["base"], username, viewport=viewport)
        page = pages[key]
        assert page.goto(_url(world, path)).status == 200
        page.wait_for_load_state("networkidle")
        png = shot(page, f"screenshots/{name}", full_page=False)
        assert png.stat().st_size > 10_000  # a real rendering, not a blank page
        if update:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, SCREENSHOTS / f"{name}.png")
    for page in pages.values():
        page.context.close()
    committed = sorted(SCREENSHOTS.glob("*.png"))
    assert {p.stem for p in committed} == {shot[0] for shot in README_SHOTS}
    assert sum(p.stat().st_size for p in committed) < 1_500_000
    readme = (ROOT / "README.md").read_text()
    for p in committed:
        assert f"review/static/docs/screenshots/{p.name}" in readme, p.name
    assert ARTIFACTS.exists()

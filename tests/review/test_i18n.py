"""The i18n layer: every Chinese string goes through gettext, the English catalog is complete and
compiled, and pages follow ?lang=, the session and Accept-Language."""

from __future__ import annotations

import ast
import gettext as stdlib_gettext
import io
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import nodes
from sqlalchemy import select

from review import i18n
from review.db import db
from review.models import Item
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from workers import screening

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "review" / "templates"
TRANSLATIONS = ROOT / "review" / "translations"
PO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"
MO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.mo"
POT = TRANSLATIONS / "messages.pot"

#: Han ideographs, CJK punctuation (、。“” …) and full-width forms (（）：；，).
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
GETTEXT_CALLS = {"_", "gettext", "ngettext", "pgettext", "npgettext", "lazy_gettext", "N_"}
PASSWORD = "correct-horse-1"


# --- every Chinese string in templates goes through _() -----------------------------------------


def unwrapped_template_text(source: str) -> list[str]:
    """Chinese text in a template that is neither inside _()/gettext() nor a plain value."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])  # noqa: S701  (parsed, never rendered)
    tree = env.parse(source)
    wrapped: set[int] = set()
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in GETTEXT_CALLS:
            wrapped.update(id(arg) for arg in call.args if isinstance(arg, nodes.Const))
    problems = [
        node.data.strip()
        for node in tree.find_all(nodes.TemplateData)
        if CJK.search(node.data)  # raw text and attributes outside {{ }} / {% %}
    ]
    problems += [
        node.value
        for node in tree.find_all(nodes.Const)
        if isinstance(node.value, str) and CJK.search(node.value) and id(node) not in wrapped
    ]
    return problems


def test_the_template_check_catches_unwrapped_text() -> None:
    assert unwrapped_template_text("<p>登录</p>") == ["<p>登录</p>"]
    assert unwrapped_template_text('<input placeholder="必填">') == ['<input placeholder="必填">']
    assert unwrapped_template_text("{{ '是' if x else '' }}") == ["是"]
    assert unwrapped_template_text("{{ x|join('、') }}") == ["、"]
    assert unwrapped_template_text("<p>{{ _('登录') }} · {{ _('共 %(n)s 条', n=n) }}</p>") == []
    assert (
        unwrapped_template_text("{{ pgettext('ctx', '停用') }}{{ ngettext('位', '位', n) }}") == []
    )


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: p.name)
def test_templates_wrap_every_chinese_string(template: Path) -> None:
    assert unwrapped_template_text(template.read_text(encoding="utf-8")) == []


# --- and every Chinese string in the Python the web layer shows ---------------------------------


def _is_call_to(node: ast.AST, names: set[str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else ""
    )
    return name in names


def _translated(node: ast.AST, function: ast.AST | None) -> bool:
    """Text in the current language: a gettext call, a choice of them, or a domain message."""
    if _is_call_to(node, {"gettext", "_", "lazy_gettext"}):
        return True
    if isinstance(node, ast.IfExp):
        return _translated(node.body, function) and _translated(node.orelse, function)
    if isinstance(node, ast.Attribute) and node.attr == "message":
        return True  # DomainError.message: written by the operations, left in Chinese
    if isinstance(node, ast.Name) and function is not None:
        values = [
            assign.value
            for assign in ast.walk(function)
            if isinstance(assign, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == node.id for t in assign.targets)
        ]
        return bool(values) and all(_translated(v, function) for v in values)
    return False


def _functions(tree: ast.AST) -> Iterator[tuple[ast.AST | None, ast.AST]]:
    """Every node with its innermost enclosing function (or None at module level)."""
    stack: list[tuple[ast.AST | None, ast.AST]] = [(None, tree)]
    while stack:
        function, node = stack.pop()
        yield function, node
        inner = node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else function
        stack.extend((inner, child) for child in ast.iter_child_nodes(node))


def untranslated_flashes(source: str) -> list[str]:
    """flash() calls whose message is not the result of gettext (or a domain error's message)."""
    calls = [(fn, n) for fn, n in _functions(ast.parse(source)) if _is_call_to(n, {"flash"})]
    return [ast.unparse(n) for fn, n in calls if not _translated(n.args[0], fn)]  # type: ignore[attr-defined]


def test_the_flash_check_catches_plain_text() -> None:
    assert untranslated_flashes('def v():\n    flash("已保存", "info")') != []
    assert untranslated_flashes('def v(u):\n    flash(f"已创建用户 {u}")') != []
    assert untranslated_flashes('def v():\n    m = "已撤回"\n    flash(m)') != []
    ok = (
        "def v(a, e):\n"
        '    m = gettext("x")\n'
        "    flash(m)\n"
        '    flash(gettext("y") if a else gettext("z"))\n'
        "    flash(e.message)"
    )
    assert untranslated_flashes(ok) == []


def test_every_flash_is_translated() -> None:
    source = (ROOT / "review" / "views.py").read_text(encoding="utf-8")
    assert source.count("flash(") > 15
    assert untranslated_flashes(source) == []


#: Calls whose Chinese arguments are not our own text: labels that another module's (Chinese)
#: error message embeds, and the list separator accepted in pasted input.
NOT_DISPLAY_TEXT = {"parse_time", "clean_text", "replace"}


@pytest.mark.parametrize("module", ["views.py", "app.py", "__init__.py", "i18n.py", "inputs.py"])
def test_web_layer_strings_go_through_gettext(module: str) -> None:
    tree = ast.parse((ROOT / "review" / module).read_text(encoding="utf-8"))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if _is_call_to(node, GETTEXT_CALLS | NOT_DISPLAY_TEXT):
            allowed.update(id(arg) for arg in node.args)  # type: ignore[attr-defined]
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LANGUAGE_NAMES" for t in node.targets
        ):
            allowed.update(id(v) for v in ast.walk(node.value))  # autonyms: never translated
    bad = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and CJK.search(node.value)
        and id(node) not in allowed
    ]
    docstrings = {
        ast.get_docstring(n, clean=False)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
    }
    assert [s for s in bad if s not in docstrings] == []


def test_labels_of_other_modules_are_marked_for_translation() -> None:
    from expert_pool.matching import REFUSAL_LABELS
    from expert_pool.models import ASSIGNMENT_LABELS
    from review.lifecycle import STATE_LABELS
    from review.models import DECISION_LABELS, ROLE_LABELS
    from rules import CATEGORIES, DOMAINS

    assert set(STATE_LABELS.values()) == set(i18n.ITEM_STATE_LABELS)
    assert set(ROLE_LABELS.values()) == set(i18n.ROLE_LABELS)
    assert set(DECISION_LABELS.values()) == set(i18n.DECISION_LABELS)
    assert set(ASSIGNMENT_LABELS.values()) == set(i18n.ASSIGNMENT_LABELS)
    assert set(REFUSAL_LABELS.values()) == set(i18n.REFUSAL_LABELS)
    assert set(DOMAINS) == set(i18n.DOMAIN_LABELS)
    assert set(CATEGORIES) == set(i18n.CATEGORY_LABELS)


# --- the catalog --------------------------------------------------------------------------------


def _extracted() -> set[tuple[str | None, Any]]:
    method_map, options_map = parse_mapping_cfg(io.StringIO((ROOT / "babel.cfg").read_text()))
    keywords = {
        "_": None,
        "gettext": None,
        "ngettext": (1, 2),
        "pgettext": ((1, "c"), 2),
        "lazy_gettext": None,
        "N_": None,
    }
    found = set()
    for _filename, _lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add((context, message))
    return found


def _catalog(path: Path) -> Any:
    with path.open("rb") as f:
        return read_po(f)


def _ids(catalog: Any) -> set[tuple[str | None, Any]]:
    return {(m.context, m.id) for m in catalog if m.id}


def test_catalogs_hold_exactly_the_extracted_strings() -> None:
    extracted = _extracted()
    assert len(extracted) > 250
    assert _ids(_catalog(POT)) == extracted, "run pybabel extract and update (README)"
    assert _ids(_catalog(PO)) == extracted, "run pybabel update (README)"


def test_english_catalog_is_complete_and_consistent() -> None:
    catalog = _catalog(PO)
    assert not catalog.fuzzy
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(s.strip() for s in strings), f"untranslated: {message.id}"
        assert "fuzzy" not in message.flags, f"fuzzy: {message.id}"
        assert not any(CJK.search(s) for s in strings), f"Chinese in English: {message.id}"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []  # e.g. a %(placeholder)s missing from a translation


def test_compiled_catalog_matches_the_po_file() -> None:
    compiled = io.BytesIO()
    write_mo(compiled, _catalog(PO))
    compiled.seek(0)
    expected = stdlib_gettext.GNUTranslations(compiled)
    with MO.open("rb") as f:
        committed = stdlib_gettext.GNUTranslations(f)
    assert committed._catalog == expected._catalog, "run pybabel compile -d review/translations"  # type: ignore[attr-defined]


# --- pages in both languages --------------------------------------------------------------------


def _html_lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)">', html)
    assert match
    return match.group(1)


def test_chinese_is_the_default(app: Any) -> None:
    html = app.test_client().get("/login").get_data(as_text=True)
    assert _html_lang(html) == "zh-CN"
    assert '<button type="submit">登录</button>' in html
    assert '<label for="username">用户名</label>' in html


def test_lang_parameter_switches_and_the_session_remembers(app: Any) -> None:
    c = app.test_client()
    html = c.get("/login?lang=en").get_data(as_text=True)
    assert _html_lang(html) == "en"
    assert '<button type="submit">Sign in</button>' in html
    assert '<label for="password">Password</label>' in html
    html = c.get("/login").get_data(as_text=True)  # no parameter: the session remembers
    assert _html_lang(html) == "en" and "Sign in" in html
    html = c.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert _html_lang(html) == "en"  # an explicit choice beats the browser's preference
    html = c.get("/login?lang=zh").get_data(as_text=True)
    assert _html_lang(html) == "zh-CN" and "登录" in html
    assert _html_lang(c.get("/login").get_data(as_text=True)) == "zh-CN"
    assert _html_lang(c.get("/login?lang=fr").get_data(as_text=True)) == "zh-CN"  # ignored


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("en-US,en;q=0.9", "en"),
        ("en-GB", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en;q=0.5,zh-TW;q=0.9", "zh-CN"),
        ("fr-FR,de;q=0.8", "zh-CN"),
        ("fr-FR,en;q=0.8,zh;q=0.7", "en"),
        ("*", "zh-CN"),
        ("", "zh-CN"),
    ],
)
def test_accept_language_chooses_without_a_session_choice(
    app: Any, accept: str, expected: str
) -> None:
    headers = {"Accept-Language": accept} if accept else {}
    html = app.test_client().get("/login", headers=headers).get_data(as_text=True)
    assert _html_lang(html) == expected


def test_language_switch_links_keep_the_page(app: Any) -> None:
    html = app.test_client().get("/login?next=%2Fitems").get_data(as_text=True)
    assert 'href="/login?next=%2Fitems&amp;lang=en"' in html
    assert '<strong aria-current="true" lang="zh-CN">中文</strong>' in html


def test_the_choice_survives_signing_in_and_out(app: Any, factory: Any) -> None:
    factory.user("editor", username="en-editor", password=PASSWORD)
    c = app.test_client()
    c.get("/login?lang=en")
    resp = c.post("/login", data={"username": "en-editor", "password": "wrong-password"})
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.get_data(as_text=True)
    c.post("/login", data={"username": "en-editor", "password": PASSWORD})
    html = c.get("/items").get_data(as_text=True)
    assert _html_lang(html) == "en" and "My items" in html and "New item" in html
    c.post("/logout")
    html = c.get("/login").get_data(as_text=True)
    assert "You have signed out" in html and _html_lang(html) == "en"


def test_error_pages_and_api_messages(app: Any) -> None:
    c = app.test_client()
    resp = c.get("/no-such-page?lang=en")
    assert resp.status_code == 404 and "Page or object not found" in resp.get_data(as_text=True)
    resp = app.test_client().get("/no-such-page")
    assert "找不到该页面或对象" in resp.get_data(as_text=True)
    resp = app.test_client().get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and resp.json["message"] == "找不到该页面或对象"
    resp = app.test_client().get(
        "/api/v1/no-such-thing", headers={"Accept-Language": "en-US,en;q=0.9"}
    )
    assert resp.json["message"] == "Page or object not found"


# --- every page of every role, in English, shows no Chinese but the data -------------------------


class _Texts(HTMLParser):
    """Visible text nodes and the attributes people read (title, placeholder, aria-label)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("textarea", "script", "style"):
            self._skip += 1  # textarea content is the user's own text
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label", "alt") and value:
                self.texts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("textarea", "script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def _data_strings() -> list[str]:
    """Every string stored in the database (titles, names, findings, audit data...)."""
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                collect(k)
                collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)

    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)):
            collect(tuple(row))
    return sorted((s for s in found if CJK.search(s)), key=len, reverse=True)


def untranslated(html: str, data: list[str]) -> list[str]:
    """Chinese left on an English page once the stored data (and pieces of it) is taken away."""
    parser = _Texts()
    parser.feed(html)
    left = []
    for text in parser.texts:
        if not CJK.search(text) or text in i18n.LANGUAGE_NAMES.values():
            continue
        if any(text in d for d in data):
            continue  # a piece of highlighted text
        for d in data:
            text = text.replace(d, "")
        if CJK.search(text):
            left.append(text)
    return left


@pytest.fixture
def world(app: Any, factory: Any) -> dict[str, Any]:
    """An editor's flagged item decided by one expert and offered to another, plus staff."""
    unit = factory.unit("甲报社")
    users = {
        "editor": factory.user("editor", unit=unit),
        "expert": factory.expert(senior=True),
        "expert2": factory.expert(),
        "auditor": factory.user("auditor"),
        "admin": factory.user("admin"),
    }
    client = app.test_client()
    editor = factory.token(users["editor"])
    ids = []
    for n in range(2):
        resp = client.post(
            "/api/v1/items",
            headers=editor,
            json={"title": f"{PSEUDO_TITLE}{n}", "body": PSEUDO_BODY, "submit": True},
        )
        ids.append(resp.json["id"])
        item = db.session.get(Item, resp.json["id"])
        screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    expert = factory.token(users["expert"])
    offered = client.get("/api/v1/assignments", headers=expert).json
    first = next(a for a in offered if a["item_id"] == ids[0])
    client.post(f"/api/v1/assignments/{first['id']}/accept", headers=expert)
    resp = client.post(
        f"/api/v1/assignments/{first['id']}/decision",
        headers=expert,
        json={
            "decision": "request_changes",
            "password": PASSWORD,
            "comment": "请删去“根治”的说法",
            "references": ["《高血压防治指南》"],
        },
    )
    assert resp.status_code == 200, resp.json
    db.session.expire_all()
    from expert_pool.models import Expert

    expert_row = Expert.for_user(users["expert"])
    return {"users": users, "items": ids, "assignments": offered, "expert_id": expert_row.id}


def _pages(world: dict[str, Any]) -> dict[str, list[str]]:
    first, second = world["items"]
    aids = [a["id"] for a in world["assignments"]]
    return {
        "editor": [
            "/items",
            "/items/new",
            f"/items/{first}",
            f"/items/{second}",
            f"/items/{first}/edit",
            "/notifications",
        ],
        "expert": ["/assignments", *[f"/assignments/{a}" for a in aids], "/notifications"],
        "auditor": [
            "/audit",
            f"/audit/items/{first}",
            "/items",
            f"/items/{first}",
            "/admin/queue",
            "/admin/experts",
            f"/assignments/{aids[0]}",
        ],
        "admin": [
            "/admin/users",
            "/admin/experts",
            f"/admin/experts/{world['expert_id']}",
            "/admin/queue",
            "/items",
            f"/items/{second}",
        ],
    }


@pytest.mark.parametrize("role", ["editor", "expert", "auditor", "admin"])
def test_every_page_is_english_but_the_data(app: Any, world: dict[str, Any], role: str) -> None:
    c = app.test_client()
    user = world["users"][role]
    c.get("/login?lang=en")
    assert (
        c.post("/login", data={"username": user.username, "password": PASSWORD}).status_code == 302
    )
    data = _data_strings()
    for path in _pages(world)[role]:
        resp = c.get(path)
        assert resp.status_code == 200, (role, path)
        html = resp.get_data(as_text=True)
        assert _html_lang(html) == "en", path
        assert untranslated(html, data) == [], (role, path)
    zh = c.get(_pages(world)[role][0] + "?lang=zh").get_data(as_text=True)
    assert _html_lang(zh) == "zh-CN" and "科普信息科学性审查平台" in zh


def test_flash_messages_follow_the_language(app: Any, world: dict[str, Any]) -> None:
    c = app.test_client()
    c.get("/login?lang=en")
    c.post("/login", data={"username": world["users"]["editor"].username, "password": PASSWORD})
    resp = c.post("/items/new", data={"title": "草稿一", "body": "正文", "action": "save"})
    assert resp.status_code == 302
    html = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Draft saved" in html and "Submit for review" in html and "Edit draft" in html
    zh = app.test_client()
    zh.post("/login", data={"username": world["users"]["editor"].username, "password": PASSWORD})
    resp = zh.post("/items/new", data={"title": "草稿二", "body": "正文", "action": "save"})
    assert "草稿已保存" in zh.get(resp.headers["Location"]).get_data(as_text=True)

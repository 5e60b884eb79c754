"""The OpenAPI description is built from the routes and enforced by them: every /api/v1 route is
described, the roles it publishes are the roles it lets in, and bodies are checked against the
published schemas."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator

from review.models import Role
from review.openapi import build_document, undocumented

MISSING_ID = 987654


def _document(app: Any) -> dict[str, Any]:
    resp = app.test_client().get("/api/v1/openapi.json")  # no token: the spec is public
    assert resp.status_code == 200, resp.json
    return resp.json  # type: ignore[no-any-return]


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_every_api_route_is_described(app: Any) -> None:
    assert undocumented(app) == []
    doc = _document(app)
    described = {(p, m.upper()) for p, m, _ in _operations(doc)}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert described == routed
    assert len(described) >= 35


def test_a_route_without_a_description_is_caught() -> None:
    bare = Flask(__name__)
    bare.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "")
    bare.add_url_rule("/elsewhere", "elsewhere", lambda: "")
    assert undocumented(bare) == ["/api/v1/forgotten"]


def test_the_document_is_sound(app: Any) -> None:
    doc = _document(app)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', str(doc).replace("'", '"')))
    assert refs <= set(doc["components"]["schemas"])
    tags = {t["name"] for t in doc["tags"]}
    assert {op["tags"][0] for _, _, op in _operations(doc)} == tags
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for path, method, op in _operations(doc):
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), (path, method)
        public = op.get("security") == []
        assert ("401" in statuses) is not public, (path, method)
        if "{" in path:
            assert "404" in statuses, (path, method)
        for status, resp in op["responses"].items():
            assert resp["content"], (path, method, status)
            if not status.startswith("2"):
                assert resp["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }


def test_only_the_description_and_its_page_are_public(app: Any) -> None:
    doc = _document(app)
    public = {p for p, _, op in _operations(doc) if op.get("security") == []}
    assert public == {"/api/v1/openapi.json", "/api/v1/docs"}
    assert app.test_client().get("/api/v1/items").status_code == 401


def test_the_document_is_built_from_the_code(app: Any) -> None:
    from review import api_schemas
    from review.operations import MAX_TITLE_CHARS

    doc = build_document(app)
    title = doc["components"]["schemas"]["Item"]["properties"]["title"]
    assert title == {"type": "string"}
    new = doc["paths"]["/api/v1/items"]["post"]["requestBody"]["content"]
    assert new["application/json"]["schema"]["properties"]["title"]["maxLength"] == MAX_TITLE_CHARS
    assert new["multipart/form-data"]["schema"] == api_schemas.NEW_VIDEO


def _token_for(app: Any, factory: Any, role: str) -> dict[str, str]:
    if role == "expert":
        return factory.token(factory.expert())  # type: ignore[no-any-return]
    return factory.token(factory.user(role))  # type: ignore[no-any-return]


def test_published_roles_are_the_enforced_roles(app: Any, factory: Any) -> None:
    """Every role the spec leaves out of an operation gets 403 from it, before anything else."""
    doc = _document(app)
    headers = {role.value: _token_for(app, factory, role.value) for role in Role}
    client = app.test_client()
    checked = 0
    for path, method, op in _operations(doc):
        if op.get("security") == []:
            continue
        url = re.sub(r"\{fmt\}", "csv", re.sub(r"\{\w+_id\}", str(MISSING_ID), path))
        for role in set(headers) - set(op["x-roles"]):
            resp = client.open(url, method=method.upper(), headers=headers[role], json={})
            assert resp.status_code == 403, (role, method, url, resp.json)
            assert "403" in op["responses"]
            checked += 1
    assert checked >= 60


def test_bodies_are_checked_against_the_published_schema(app: Any, factory: Any) -> None:
    admin = factory.token(factory.user("admin"))
    expert = factory.expert()
    from expert_pool.models import Expert

    expert_id = Expert.for_user(expert).id
    client = app.test_client()
    # Regression: max_load "abc" reached int() inside the pool and answered 500.
    resp = client.patch(f"/api/v1/experts/{expert_id}", headers=admin, json={"max_load": "abc"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_field", resp.json
    assert resp.json["field"] == "max_load"
    # Regression: a non-boolean is_active was stored as given.
    resp = client.patch(f"/api/v1/experts/{expert_id}", headers=admin, json={"is_active": "no"})
    assert resp.status_code == 400 and resp.json["field"] == "is_active"
    resp = client.patch(f"/api/v1/experts/{expert_id}", headers=admin, json={"max_load": 3})
    assert resp.status_code == 200 and resp.json["max_load"] == 3
    resp = client.patch(f"/api/v1/experts/{expert_id}", headers=admin, json={"nickname": "x"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_field"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?after=abc", "after"),
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?after=1.5", "after"),
    ],
)
def test_query_parameters_are_checked(app: Any, factory: Any, query: str, field: str) -> None:
    auditor = factory.token(factory.user("auditor"))
    resp = app.test_client().get(f"/api/v1/audit/events{query}", headers=auditor)
    assert resp.status_code == 400, resp.json
    assert resp.json["field"] == field and resp.json["message"]


def test_an_unknown_state_is_refused_not_ignored(app: Any, factory: Any) -> None:
    editor = factory.token(factory.user("editor"))
    resp = app.test_client().get("/api/v1/items?state=lost", headers=editor)
    assert resp.status_code == 400 and resp.json["field"] == "state"
    assert app.test_client().get("/api/v1/items?state=draft", headers=editor).status_code == 200


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            src = dict(attrs).get("src")
            if src:
                self.sources.append(src)
            self._in_script = not src

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_the_docs_page_is_local_and_needs_no_inline_script(app: Any) -> None:
    resp = app.test_client().get("/api/v1/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    scripts = _Scripts()
    scripts.feed(resp.get_data(as_text=True))
    assert scripts.inline == []
    assert "/static/api_docs.js" in scripts.sources
    assert all(s.startswith("/") for s in scripts.sources)  # nothing from another site
    script = app.test_client().get("/static/api_docs.js")
    script.close()
    assert script.status_code == 200


# --- found by schemathesis (tests/review/test_api_schemathesis.py); one regression each --------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/items/80952572470959",
        "/api/v1/items/2147483648/receipt",
        "/items/80952572470959",  # the pages had the same route converter
    ],
)
def test_an_id_beyond_the_column_range_is_404_not_500(app: Any, factory: Any, url: str) -> None:
    # PostgreSQL answered "integer out of range" (DataError) and the request failed with 500.
    editor = factory.token(factory.user("editor"))
    resp = app.test_client().get(url, headers=editor)
    assert resp.status_code == 404


def test_a_decision_on_a_huge_assignment_id_is_404(app: Any, factory: Any) -> None:
    expert = factory.token(factory.expert())
    resp = app.test_client().post(
        "/api/v1/assignments/80952572470959/decision",
        headers=expert,
        json={"decision": "approve", "password": "x"},
    )
    assert resp.status_code == 404 and resp.json["error"] == "not_found"


def test_an_undeclared_query_parameter_is_refused(app: Any, factory: Any) -> None:
    # GET /items?stat=draft used to ignore the typo and list everything.
    editor = factory.token(factory.user("editor"))
    resp = app.test_client().get("/api/v1/items?stat=draft", headers=editor)
    assert resp.status_code == 400 and resp.json["field"] == "stat"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/items?state=", "state"),  # was taken as "no filter"
        ("/api/v1/items?state=draft&state=cleared", "state"),  # the second one was ignored
    ],
)
def test_empty_or_repeated_typed_parameters_are_refused(
    app: Any, factory: Any, url: str, field: str
) -> None:
    editor = factory.token(factory.user("editor"))
    resp = app.test_client().get(url, headers=editor)
    assert resp.status_code == 400 and resp.json["field"] == field


def test_an_empty_text_filter_still_means_no_filter(app: Any, factory: Any) -> None:
    auditor = factory.token(factory.user("auditor"))
    resp = app.test_client().get("/api/v1/audit/events?action=&from=", headers=auditor)
    assert resp.status_code == 200 and resp.json


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit/events?action=item%00",
        "/api/v1/audit/events?actor=a%00b",
        "/api/v1/search?q=a%00",
    ],
)
def test_nul_in_a_query_parameter_is_400_on_every_backend(app: Any, factory: Any, url: str) -> None:
    auditor = factory.token(factory.user("auditor"))
    resp = app.test_client().get(url, headers=auditor)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_text", resp.json

"""An error's ``field`` is always the API's field name (issue 14.4); the Chinese label is in the
message. Every POST/PATCH body property of the OpenAPI document is sent empty, missing and with
the wrong type, and whatever field an answer names must be one of the body's properties.

SQLite only: the subject is how errors name fields, which does not depend on the database.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import select

from expert_pool.models import Assignment, Expert
from review.db import db
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, submit_screened

PASSWORD = "correct-horse-1"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(doc["components"]["schemas"][ref.rsplit("/", 1)[1]], doc)
    return schema


def _types(schema: dict[str, Any], doc: dict[str, Any]) -> set[str]:
    schema = _resolve(schema, doc)
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, list):
        found.update(kind)
    elif kind:
        found.add(kind)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(option, doc)
    return found


def _valid(name: str, schema: dict[str, Any], doc: dict[str, Any], world: dict[str, Any]) -> Any:
    """A plausible valid value of a required property."""
    if name in world["values"]:
        return world["values"][name]
    schema = _resolve(schema, doc)
    if "enum" in schema:
        return schema["enum"][0]
    kinds = _types(schema, doc) - {"null"}
    if "string" in kinds:
        return "合理的文本"
    if "integer" in kinds:
        return 1
    if "boolean" in kinds:
        return False
    if "array" in kinds:
        return []
    return {}


@pytest.fixture
def world(app: Any, factory: Any) -> dict[str, Any]:
    """An editor's draft and flagged item, two experts with offers on it, an admin, an auditor."""
    app.config.update(LOGIN_MAX_FAILURES=10_000, LOGIN_MAX_FAILURES_PER_IP=10_000)
    editor = factory.token(factory.user("editor"))
    senior, other = factory.expert(senior=True), factory.expert()
    draft = app.test_client().post("/api/v1/items", headers=editor, json={"title": "草稿"})
    flagged = submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
    offer = db.session.scalar(select(Assignment).join(Expert).where(Expert.user_id == senior.id))
    assert offer is not None
    expert = factory.token(senior)
    app.test_client().post(f"/api/v1/assignments/{offer.id}/accept", headers=expert)
    other_expert = db.session.scalar(select(Expert).where(Expert.user_id == other.id))
    return {
        "tokens": {
            "editor": editor,
            "expert": expert,
            "admin": factory.token(factory.user("admin")),
            "auditor": factory.token(factory.user("auditor")),
        },
        "ids": {
            "item_id": flagged,
            "draft_id": draft.json["id"],
            "assignment_id": offer.id,
            "expert_id": other_expert.id if other_expert else 1,
            "note_id": 1,
        },
        "values": {"password": PASSWORD, "expert_id": other_expert.id if other_expert else 1},
    }


def _wrong_type(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    return 12 if "string" in _types(schema, doc) else "文本"


def test_every_body_field_error_names_the_schemas_property(app: Any, world: dict[str, Any]) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").json
    named: list[tuple[str, str, str, str]] = []  # (path, property, variant, field answered)
    wrong: list[tuple[str, str, str, int, Any]] = []
    for template, operations in doc["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content", {})
            if method not in ("post", "patch") or "application/json" not in content:
                continue
            schema = _resolve(content["application/json"]["schema"], doc)
            props: dict[str, Any] = schema.get("properties", {})
            required = schema.get("required", [])
            path = template
            for key, value in world["ids"].items():
                path = path.replace("{" + key + "}", str(value))
            if template.endswith(("/revise", "/withdraw", "/publish")):
                path = path.replace(str(world["ids"]["item_id"]), str(world["ids"]["draft_id"]))
            headers = world["tokens"][op["x-roles"][0]]
            base = {n: _valid(n, props[n], doc, world) for n in required}
            for name, prop in props.items():
                variants = {
                    "empty": {**base, name: ""},
                    "wrong_type": {**base, name: _wrong_type(prop, doc)},
                }
                if name in required:
                    variants["missing"] = {k: v for k, v in base.items() if k != name}
                for variant, body in variants.items():
                    resp = getattr(client, method)(path, headers=headers, json=body)
                    assert resp.status_code < 500, (template, name, variant)
                    field = (resp.json or {}).get("field") if resp.status_code >= 400 else None
                    if field is None:
                        continue
                    root = str(field).split(".")[0].split("[")[0]
                    if root not in props:
                        wrong.append((template, name, variant, resp.status_code, field))
                    named.append((template, name, variant, str(field)))
    assert wrong == []
    # The sweep reached the operations' own checks, not only the schema's.
    assert ("/api/v1/items", "title", "empty", "title") in named
    assert ("/api/v1/items", "title", "missing", "title") in named
    assert ("/api/v1/items", "title", "wrong_type", "title") in named
    assert len(named) >= 40, len(named)


def test_multipart_and_page_json_errors_name_the_field(
    app: Any, world: dict[str, Any], factory: Any
) -> None:
    editor = world["tokens"]["editor"]
    client = app.test_client()
    for form in ({"title": "", "kind": "video"}, {"kind": "video"}):
        form = {**form, "file": (io.BytesIO(b"\x00" * 64), "a.mp4")}
        resp = client.post(
            "/api/v1/items", headers=editor, data=form, content_type="multipart/form-data"
        )
        assert resp.status_code == 400 and resp.json["field"] == "title", resp.json
    user = factory.user("editor", username="fields-page")
    assert user is not None
    browser = app.test_client()
    browser.post("/login", data={"username": "fields-page", "password": PASSWORD})
    resp = browser.post("/items/preview.json", data={"body": "x" * 2_000_001})
    assert resp.status_code in (400, 413) and resp.json["field"] == "body", resp.json
    resp = client.post("/api/v1/items", headers=editor, json={"title": "   "})
    assert resp.json["field"] == "title" and "标题" in resp.json["message"]

"""Full-text search in Chinese over items and decisions, within what the caller may see."""

from __future__ import annotations

from typing import Any

from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened
from workers import tasks


def _ids(app: Any, headers: dict[str, str], q: str) -> list[int]:
    resp = app.test_client().get("/api/v1/search", headers=headers, query_string={"q": q})
    assert resp.status_code == 200, resp.json
    return [row["id"] for row in resp.json]


def test_search_items_and_decisions(app: Any, factory: Any) -> None:
    expert = factory.expert(senior=True)
    factory.expert()
    editor = factory.user("editor")
    ed = factory.token(editor)
    auditor = factory.token(factory.user("auditor"))
    pseudo = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    genuine = submit_screened(app, ed, GENUINE_TITLE, GENUINE_BODY)
    assert _ids(app, ed, "小分子水") == [pseudo]
    assert _ids(app, ed, "流感疫苗") == [genuine]
    assert _ids(app, ed, "流感 高血压") == []  # every term must occur
    assert _ids(app, ed, "流感疫苖") == []  # no match for a misspelling
    assert _ids(app, ed, "流感疫苗接種") == [genuine]  # traditional characters fold to simplified
    assert _ids(app, auditor, "疫苗") == [genuine]
    # Another unit's editor finds nothing; the expert finds only what was offered to them.
    other = factory.token(factory.user("editor"))
    assert _ids(app, other, "小分子水") == []
    assert _ids(app, factory.token(expert), "小分子水") == [pseudo]
    assert _ids(app, factory.token(expert), "流感疫苗") == []
    # A decision's comment becomes searchable once the index task ran.
    aid = app.test_client().get("/api/v1/assignments", headers=factory.token(expert)).json[0]["id"]
    app.test_client().post(f"/api/v1/assignments/{aid}/accept", headers=factory.token(expert))
    app.test_client().post(
        f"/api/v1/assignments/{aid}/decision",
        headers=factory.token(expert),
        json={
            "decision": "reject",
            "comment": "宣称根治高血压属于夸大疗效",
            "references": ["高血压防治指南"],
            "password": "correct-horse-1",
        },
    )
    assert _ids(app, auditor, "防治指南") == []
    assert tasks.index_item.run(pseudo) > 0
    assert _ids(app, auditor, "防治指南") == [pseudo]


def test_search_needs_a_query(app: Any, factory: Any) -> None:
    ed = factory.token(factory.user("editor"))
    resp = app.test_client().get("/api/v1/search", headers=ed, query_string={"q": "  "})
    assert resp.status_code == 400
    resp = app.test_client().get("/api/v1/search", headers=ed, query_string={"q": "a\x00b"})
    assert resp.status_code == 400

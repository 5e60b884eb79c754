"""The item list, in the page and the API: keyset pages with a total, filters in SQL, a
bounded number of queries whatever the length of the list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from review.db import db
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, submit_screened


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    statements: list[str] = []
    engine = db.engine

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _drafts(app: Any, headers: dict[str, str], count: int) -> list[int]:
    client = app.test_client()
    return [
        client.post("/api/v1/items", headers=headers, json={"title": f"草稿{n}"}).json["id"]
        for n in range(count)
    ]


def _next_link(resp: Any) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    match = re.fullmatch(r'<http://localhost(/api/v1/items\?[^>]+)>; rel="next"', link)
    assert match, link
    return match[1]


def test_api_pages_follow_the_link_header_to_the_end(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    headers = factory.token(editor)
    made = _drafts(app, headers, 7)
    client = app.test_client()

    resp = client.get("/api/v1/items?limit=3", headers=headers)
    assert resp.status_code == 200 and resp.headers["X-Total-Count"] == "7"
    seen = [i["id"] for i in resp.json]
    assert seen == sorted(made, reverse=True)[:3]  # newest first, as before
    later = _drafts(app, headers, 1)  # a new item must not shift what the next pages show
    url = _next_link(resp)
    while url:
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200
        seen += [i["id"] for i in resp.json]
        url = _next_link(resp)
    assert seen == sorted(made, reverse=True) and later[0] not in seen

    oldest = client.get("/api/v1/items?sort=oldest&limit=2", headers=headers)
    assert [i["id"] for i in oldest.json] == sorted(made)[:2]
    assert oldest.headers["X-Total-Count"] == "8"


def test_a_cursor_that_was_not_handed_out_is_a_400(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    headers = factory.token(editor)
    _drafts(app, headers, 3)
    client = app.test_client()
    first = client.get("/api/v1/items?limit=1", headers=headers)
    cursor = _next_link(first).split("cursor=")[1]  # type: ignore[union-attr]
    for bad in ("x", "%%%", cursor[:-3], "W10"):
        resp = client.get(f"/api/v1/items?cursor={bad}", headers=headers)
        assert resp.status_code == 400 and resp.json["field"] == "cursor", (bad, resp.json)
    # A cursor of one order is refused by another rather than silently skipping rows.
    other = client.get(f"/api/v1/items?sort=title&cursor={cursor}", headers=headers)
    assert other.status_code == 400
    client.post("/login", data={"username": editor.username, "password": "correct-horse-1"})
    page = client.get("/items?cursor=x")
    assert page.status_code == 400 and "分页位置无效" in page.get_data(as_text=True)


def test_domain_filter_runs_in_sql_on_both_databases(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    headers = factory.token(editor)
    medical = submit_screened(app, headers, "喝水能治百病", PSEUDO_BODY)
    drafts = _drafts(app, headers, 2)  # no report: never in a domain
    client = app.test_client()

    def domains(item_id: int) -> list[str]:
        screening = client.get(f"/api/v1/items/{item_id}", headers=headers).json["screening"]
        return screening["domains"] if screening else []

    assert "医学健康" in domains(medical)
    resp = client.get("/api/v1/items?domain=医学健康", headers=headers)
    assert [i["id"] for i in resp.json] == [medical] and resp.headers["X-Total-Count"] == "1"
    everything = client.get("/api/v1/items", headers=headers).json
    assert {i["id"] for i in everything} == {medical, *drafts}
    resp = client.get("/api/v1/items?domain=交通", headers=headers)
    assert resp.json == [] and resp.headers["X-Total-Count"] == "0"


def test_the_item_page_pages_and_says_how_many(app: Any, factory: Any) -> None:
    editor = factory.user("editor")
    _drafts(app, factory.token(editor), 5)
    client = app.test_client()
    client.post("/login", data={"username": editor.username, "password": "correct-horse-1"})
    html = client.get("/items?limit=2&sort=oldest").get_data(as_text=True)
    assert "共 5 篇" in html and "本页 2 篇" in html
    link = re.search(r'<a class="button secondary" rel="next" href="([^"]+)"', html)
    assert link, html
    second = client.get(link[1].replace("&amp;", "&")).get_data(as_text=True)
    assert "草稿2" in second and "草稿3" in second and "草稿0" not in second
    assert "回到第一页" in second
    # The state filter is kept in the links and shown as chosen (a template macro named
    # `state` used to hide the chosen value).
    drafts = client.get("/items?state=draft&limit=2").get_data(as_text=True)
    assert '<option value="draft" selected>' in drafts
    assert "state=draft" in re.search(r'rel="next" href="([^"]+)"', drafts)[1]  # type: ignore[index]


def _list_queries(app: Any, headers: dict[str, str], client: Any) -> tuple[int, int]:
    with counted_queries() as page_sql:
        assert client.get("/items").status_code == 200
    with counted_queries() as api_sql:
        assert app.test_client().get("/api/v1/items", headers=headers).status_code == 200
    return len(page_sql), len(api_sql)


def test_list_queries_do_not_grow_with_the_list(app: Any, factory: Any) -> None:
    """Measured 1,506 queries for a page of 500 items before: one per row and relation."""
    auditor = factory.user("auditor")
    client = app.test_client()
    client.post("/login", data={"username": auditor.username, "password": "correct-horse-1"})
    auditor_headers = factory.token(auditor)
    editor_headers = factory.token(factory.user("editor"))
    submit_screened(app, editor_headers, "喝水能治百病", PSEUDO_BODY)
    few = _list_queries(app, auditor_headers, client)
    for n in range(12):
        submit_screened(app, editor_headers, f"喝水能治百病{n}", PSEUDO_BODY)
        if n % 3 == 0:
            submit_screened(app, factory.token(factory.user("editor")), GENUINE_TITLE, GENUINE_BODY)
    many = _list_queries(app, auditor_headers, client)
    assert many == few, (few, many)

"""The public record: /published and /feed.atom, without login, naming only consenting experts."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from expert_pool.models import Expert
from expert_pool.pool import update_expert
from review.audit import SYSTEM
from review.db import db
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, submit_screened

PASSWORD = "correct-horse-1"
A = "{http://www.w3.org/2005/Atom}"


class World:
    """Items in every state that matters to the public record."""

    def __init__(self, app: Any, factory: Any) -> None:
        self.app, self.factory = app, factory
        self.client = app.test_client()
        self.ed = factory.token(factory.user("editor"))
        self.auditor = factory.token(factory.user("auditor"))
        self.named = factory.expert(senior=True)
        self.anonymous = factory.expert()
        row = Expert.for_user(self.named)
        assert row is not None
        update_expert(row, {"is_publicly_named": True, "title": "主任医师"}, actor=SYSTEM)
        db.session.commit()

    def approved(self, title: str, body: str = PSEUDO_BODY) -> int:
        item_id = submit_screened(self.app, self.ed, title, body)
        for expert in (self.named, self.anonymous):
            token = self.factory.token(expert)
            for a in self.client.get("/api/v1/assignments", headers=token).json:
                if a["item_id"] != item_id or a["state"] not in ("offered", "accepted"):
                    continue
                self.client.post(f"/api/v1/assignments/{a['id']}/accept", headers=token)
                resp = self.client.post(
                    f"/api/v1/assignments/{a['id']}/decision",
                    headers=token,
                    json={"decision": "approve", "password": PASSWORD},
                )
                assert resp.status_code == 200, resp.json
        return item_id

    def publish(self, item_id: int) -> None:
        resp = self.client.post(f"/api/v1/items/{item_id}/publish", headers=self.ed)
        assert resp.status_code == 200, resp.json

    def recall(self, item_id: int) -> None:
        resp = self.client.post(
            f"/api/v1/items/{item_id}/recall", headers=self.auditor, json={"reason": "复核"}
        )
        assert resp.status_code == 200, resp.json


def _setup(app: Any, factory: Any) -> tuple[World, dict[str, int]]:
    w = World(app, factory)
    ids = {
        "reviewed": w.approved("专家审过的稿件：喝水能治百病？"),
        "cleared": submit_screened(app, w.ed, GENUINE_TITLE, GENUINE_BODY),
        "unpublished": w.approved("已通过但未发布的稿件：喝水能治百病"),
        "recalled": w.approved("已下架的稿件：喝水能治百病"),
        "escaped": submit_screened(
            app, w.ed, 'A<b>&"转义"</b>标题', "正文含<script>alert(1)</script>与\x0b控制符 & 符号"
        ),
    }
    for key in ("reviewed", "cleared", "recalled", "escaped"):
        w.publish(ids[key])
    w.recall(ids["recalled"])
    return w, ids


def test_public_page_lists_only_published_items_and_consenting_experts(
    app: Any, factory: Any
) -> None:
    w, ids = _setup(app, factory)
    anonymous = app.test_client()
    page = anonymous.get("/published")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "专家审过的稿件" in html and GENUINE_TITLE in html
    assert "已通过但未发布" not in html and "已下架的稿件" not in html
    assert html.count("经专家审核") == 1  # the cleared items were not reviewed by experts
    assert f"{w.named.display_name}（主任医师）" in html
    assert w.anonymous.display_name not in html
    assert "<script>alert(1)" not in html and "&lt;b&gt;&amp;" in html
    assert 'type="application/atom+xml"' in html

    one = anonymous.get(f"/published/{ids['reviewed']}").get_data(as_text=True)
    assert w.named.display_name in one and w.anonymous.display_name not in one
    assert anonymous.get(f"/published/{ids['recalled']}").status_code == 404
    assert anonymous.get(f"/published/{ids['unpublished']}").status_code == 404
    escaped = anonymous.get(f"/published/{ids['escaped']}").get_data(as_text=True)
    assert "<script>" not in escaped


def test_atom_feed_is_valid_and_escaped(app: Any, factory: Any) -> None:
    w, ids = _setup(app, factory)
    resp = app.test_client().get("/feed.atom")
    assert resp.status_code == 200 and resp.mimetype == "application/atom+xml"
    raw = resp.get_data()
    assert raw.startswith(b"<?xml") and b"\x0b" not in raw
    root = ET.fromstring(raw)  # noqa: S314 (our own feed, parsed to check it is well-formed)
    assert root.tag == f"{A}feed"
    # RFC 4287 §4.1.1: exactly one id, title, updated; an author for entries lacking one.
    for tag in ("id", "title", "updated"):
        assert len(root.findall(f"{A}{tag}")) == 1, tag
    assert root.find(f"{A}author/{A}name") is not None
    links = {ln.get("rel"): ln.get("href") for ln in root.findall(f"{A}link")}
    assert links["self"].endswith("/feed.atom") and links["alternate"].endswith("/published")
    entries = root.findall(f"{A}entry")
    titles = [e.findtext(f"{A}title") for e in entries]
    assert sorted(titles) == sorted(
        ["专家审过的稿件：喝水能治百病？", GENUINE_TITLE, 'A<b>&"转义"</b>标题']
    )
    seen = set()
    newest = max(datetime.fromisoformat(e.findtext(f"{A}updated") or "") for e in entries)
    assert datetime.fromisoformat(root.findtext(f"{A}updated") or "") == newest
    for e in entries:
        for tag in ("id", "title", "updated", "published", "summary"):
            assert len(e.findall(f"{A}{tag}")) == 1, tag
        entry_id = e.findtext(f"{A}id")
        assert entry_id not in seen
        seen.add(entry_id)
        datetime.fromisoformat(e.findtext(f"{A}updated") or "")  # RFC 3339
        [alternate] = [ln for ln in e.findall(f"{A}link") if ln.get("rel") == "alternate"]
        assert "/published/" in (alternate.get("href") or "")
    text = raw.decode()
    assert w.named.display_name in text and "主任医师" in text
    assert w.anonymous.display_name not in text
    assert "已下架的稿件" not in text and "已通过但未发布" not in text
    reviewed = next(e for e in entries if "专家审过" in (e.findtext(f"{A}title") or ""))
    assert reviewed.find(f"{A}category").get("term") == "expert-reviewed"  # type: ignore[union-attr]
    escaped = next(e for e in entries if (e.findtext(f"{A}title") or "").startswith("A<b>"))
    assert "<script>alert(1)</script>" in (escaped.findtext(f"{A}summary") or "")  # as text
    assert b"<script>" not in raw


def test_consent_is_off_by_default_and_set_on_the_admin_page(app: Any, factory: Any) -> None:
    expert = factory.expert()
    row = Expert.for_user(expert)
    assert row is not None and row.is_publicly_named is False
    admin = factory.user("admin", username="feedadmin", password=PASSWORD)
    client = app.test_client()
    client.post("/login", data={"username": admin.username, "password": PASSWORD})
    assert "同意在公开发布页署名" in client.get(f"/admin/experts/{row.id}").get_data(as_text=True)
    resp = client.post(
        f"/admin/experts/{row.id}",
        data={"domains": ["医学健康"], "max_load": "5", "is_active": "1", "is_publicly_named": "1"},
    )
    assert resp.status_code == 302
    db.session.expire_all()
    assert row.is_publicly_named is True
    token = factory.token(admin)
    resp = client.patch(
        f"/api/v1/experts/{row.id}", headers=token, json={"is_publicly_named": "yes"}
    )
    assert resp.status_code == 400
    resp = client.patch(
        f"/api/v1/experts/{row.id}", headers=token, json={"is_publicly_named": False}
    )
    assert resp.status_code == 200 and resp.json["is_publicly_named"] is False

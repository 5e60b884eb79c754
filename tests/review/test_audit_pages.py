"""The auditors' pages: dashboard, monthly report, search, checkpoints, 质检, exports."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from review import ledger
from review.audit import AuditEvent
from review.db import db
from review.models import Item
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE
from workers import screening


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    assert (
        c.post(
            "/login", data={"username": user.username, "password": "correct-horse-1"}
        ).status_code
        == 302
    )
    return c


def _seed(app: Any, factory: Any) -> dict[str, Any]:
    factory.expert(senior=True)
    factory.expert()
    editor = factory.user("editor")
    ed = factory.token(editor)
    ids = []
    for title, body in ((PSEUDO_TITLE, PSEUDO_BODY), (GENUINE_TITLE, GENUINE_BODY)):
        resp = app.test_client().post(
            "/api/v1/items", headers=ed, json={"title": title, "body": body, "submit": True}
        )
        screening.screen_version(db.session.get(Item, resp.json["id"]).current_version_id)  # type: ignore[union-attr, arg-type]
        ids.append(resp.json["id"])
    return {"editor": editor, "ed": ed, "ids": ids, "auditor": factory.user("auditor")}


def test_dashboard_and_monthly_report(app: Any, factory: Any) -> None:
    world = _seed(app, factory)
    c = _login(app, world["auditor"])
    page = c.get("/dashboard").get_data(as_text=True)
    assert 'id="dashboard-data"' in page and "chart.umd.min.js" in page and "dashboard.js" in page
    assert "初筛标记率" in page and "医学健康" in page
    assert c.get("/dashboard?domain=海洋").status_code == 200
    static = c.get("/static/vendor/chart.umd.min.js")
    assert static.status_code == 200
    static.close()
    report = c.get("/reports/monthly").get_data(as_text=True)
    assert "月度报告" in report and "稿件版本" in report
    assert c.get("/reports/monthly?month=2026-13").status_code == 400
    assert _login(app, world["editor"]).get("/dashboard").status_code == 403


def test_search_page_respects_visibility(app: Any, factory: Any) -> None:
    world = _seed(app, factory)
    page = _login(app, world["editor"]).get("/search?q=小分子水").get_data(as_text=True)
    assert PSEUDO_TITLE in page and GENUINE_TITLE not in page
    stranger = factory.user("editor")
    assert PSEUDO_TITLE not in _login(app, stranger).get("/search?q=小分子水").get_data(
        as_text=True
    )


def test_checkpoints_page_signs_and_downloads(app: Any, factory: Any, tmp_path: Path) -> None:
    world = _seed(app, factory)
    c = _login(app, world["auditor"])
    assert c.post("/audit/checkpoints").status_code == 302
    row = db.session.scalar(select(ledger.AuditCheckpoint))
    assert row is not None and str(row.tree_size) in c.get("/audit/checkpoints").get_data(
        as_text=True
    )
    note = c.get(f"/audit/checkpoints/{row.tree_size}.txt")
    assert note.status_code == 200 and note.get_data(as_text=True) == row.note
    bundle = c.get("/export/ledger.zip")
    zipfile.ZipFile(io.BytesIO(bundle.data)).extractall(tmp_path)
    kept = ledger.parse_note(note.get_data(as_text=True))
    assert ledger.verify_bundle(tmp_path / "ledger", trusted=[kept]).ok
    downloads = db.session.scalars(
        select(AuditEvent.subject_id).where(AuditEvent.action == "audit.export")
    ).all()
    assert downloads == [f"checkpoint:{row.tree_size}", "ledger"]


def test_quality_recall_and_rereview_pages(app: Any, factory: Any) -> None:
    world = _seed(app, factory)
    admin = factory.user("admin")
    c = _login(app, admin)
    genuine = world["ids"][1]
    assert c.post(f"/items/{genuine}/rereview", data={"reason": "抽查"}).status_code == 302
    assert db.session.get(Item, genuine).state.value == "in_review"  # type: ignore[union-attr]
    page = c.post("/quality", data={"size": "3"}, follow_redirects=True).get_data(as_text=True)
    assert "质检抽样" in page
    auditor = _login(app, world["auditor"])
    assert "要求重新审核" not in auditor.get(f"/items/{world['ids'][0]}").get_data(as_text=True)
    assert auditor.get("/export/audit.csv?action=item.").status_code == 200
    assert _login(app, world["editor"]).get("/export/audit.csv").status_code == 403
    assert _login(app, world["editor"]).get("/export/items.csv").status_code == 200


def test_trail_shows_versions_findings_and_time_filter(app: Any, factory: Any) -> None:
    world = _seed(app, factory)
    c = _login(app, world["auditor"])
    page = c.get(f"/audit/items/{world['ids'][0]}").get_data(as_text=True)
    assert "第 1 版" in page and "<mark" in page and "item.flag" in page
    assert "efficacy." in page or "mechanism." in page  # rule ids of the findings
    assert "item.created" in c.get("/audit?from=2000-01-01").get_data(as_text=True)
    assert "item.created" not in c.get("/audit?to=2000-01-01").get_data(as_text=True)


def test_items_filter_by_domain(app: Any, factory: Any) -> None:
    world = _seed(app, factory)
    c = _login(app, world["auditor"])
    page = c.get("/items?domain=医学健康").get_data(as_text=True)
    assert PSEUDO_TITLE in page
    assert PSEUDO_TITLE not in c.get("/items?domain=交通").get_data(as_text=True)

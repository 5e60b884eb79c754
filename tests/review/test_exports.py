"""Exports open in spreadsheet tools, neutralise formulas, and every download is audited."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, select

from review import ledger
from review.audit import AuditEvent
from review.db import db


def _exports() -> int:
    return (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "audit.export")
        )
        or 0
    )


def test_item_exports(app: Any, factory: Any) -> None:
    ed = factory.token(factory.user("editor"))
    c = app.test_client()
    c.post("/api/v1/items", headers=ed, json={"title": '=HYPERLINK("http://x")', "body": "正文"})
    c.post("/api/v1/items", headers=ed, json={"title": "科普：秋季养生", "body": "正文"})
    resp = c.get("/api/v1/export/items.csv", headers=ed)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    text = resp.data.decode("utf-8")
    assert text.startswith("\ufeff编号,标题") and "科普：秋季养生" in text
    assert "'=HYPERLINK" in text  # a spreadsheet will not run it
    book = load_workbook(io.BytesIO(c.get("/api/v1/export/items.xlsx", headers=ed).data))
    rows = list(book.active.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert rows[0][:2] == ("编号", "标题") and len(rows) == 3
    assert _exports() == 2
    other = factory.token(factory.user("editor"))
    assert "科普" not in c.get("/api/v1/export/items.csv", headers=other).data.decode("utf-8")
    assert c.get("/api/v1/export/items.pdf", headers=ed).status_code == 404


def test_audit_and_dashboard_exports_for_auditors(app: Any, factory: Any) -> None:
    ed = factory.token(factory.user("editor"))
    auditor = factory.token(factory.user("auditor"))
    c = app.test_client()
    c.post("/api/v1/items", headers=ed, json={"title": "稿件", "body": "正文"})
    assert c.get("/api/v1/export/audit.csv", headers=ed).status_code == 403
    assert c.get("/api/v1/export/dashboard.xlsx", headers=ed).status_code == 403
    csv_text = c.get("/api/v1/export/audit.csv?action=item.", headers=auditor).data.decode("utf-8")
    assert "item.created" in csv_text and "user.created" not in csv_text
    book = load_workbook(io.BytesIO(c.get("/api/v1/export/dashboard.xlsx", headers=auditor).data))
    assert {"概览", "领域", "单位", "专家", "规则"} <= set(book.sheetnames)
    exported = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.export")
    ).all()
    assert [e.subject_id for e in exported] == ["audit_log", "dashboard"]
    assert exported[0].data["filters"] == {"action": "item."}


def test_ledger_zip_verifies_offline(app: Any, factory: Any, tmp_path: Path) -> None:
    auditor = factory.token(factory.user("auditor"))
    c = app.test_client()
    c.post("/api/v1/audit/checkpoints", headers=auditor)
    resp = c.get("/api/v1/audit/export.zip", headers=auditor)
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    zipfile.ZipFile(io.BytesIO(resp.data)).extractall(tmp_path)
    result = ledger.verify_bundle(tmp_path / "ledger")
    assert result.ok, result.messages

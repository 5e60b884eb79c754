"""Exports shared by the pages and the API; every download is written to the audit ledger."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select

from expert_pool.models import Assignment, Expert
from review import dashboard, exports, ledger
from review.audit import AuditEvent, record_event
from review.db import db
from review.errors import InvalidInput, NotFound
from review.lifecycle import ItemState
from review.models import Item, Role, User
from review.web import parse_time, signer

MIMETYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "zip": "application/zip",
    "txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Download:
    """A file to send."""

    body: bytes
    fmt: str
    name: str
    what: str


def visible_items(user: User) -> Any:
    """A select of the items ``user`` may see."""
    query = select(Item)
    if user.has_role(Role.editor):
        query = query.where(Item.unit_id == user.unit_id)
    elif user.has_role(Role.expert):
        expert = Expert.for_user(user)
        query = query.where(
            Item.id.in_(
                select(Assignment.item_id).where(
                    Assignment.expert_id == (expert.id if expert else -1)
                )
            )
        )
    return query


def audit_query(args: Mapping[str, str]) -> Any:
    """Ledger events filtered by action prefix, actor, item and time."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if args.get("action"):
        query = query.where(AuditEvent.action.like(f"{args['action']}%"))
    if args.get("actor"):
        query = query.where(AuditEvent.actor == args["actor"])
    if args.get("item"):
        query = query.where(
            AuditEvent.subject_type == "item", AuditEvent.subject_id == args["item"]
        )
    if args.get("from"):
        query = query.where(AuditEvent.at >= parse_time(args["from"], "from"))
    if args.get("to"):
        query = query.where(AuditEvent.at < parse_time(args["to"], "to"))
    return query


def item_state(value: str) -> ItemState:
    """A ``state`` filter from a query string (400 for a state that does not exist)."""
    try:
        return ItemState(value)
    except ValueError:
        raise InvalidInput(
            f"未知的稿件状态“{value[:40]}”；可用：{'、'.join(s.value for s in ItemState)}",
            code="invalid_field",
            field="state",
        ) from None


def period_from(args: Mapping[str, str]) -> dashboard.Period:
    """The ``from``/``to`` window of a request."""
    start = parse_time(args["from"], "from") if args.get("from") else None
    end = parse_time(args["to"], "to") if args.get("to") else None
    return dashboard.Period(start, end)


def build(kind: str, fmt: str, user: User, args: Mapping[str, str]) -> Download:
    """Build an export: items (visible ones), audit log, dashboard, ledger bundle."""
    if (kind, fmt) not in {
        ("items", "csv"),
        ("items", "xlsx"),
        ("audit", "csv"),
        ("audit", "xlsx"),
        ("dashboard", "xlsx"),
        ("ledger", "zip"),
    }:
        raise NotFound("不支持的导出")
    if kind == "items":
        query = visible_items(user).order_by(Item.id)
        if args.get("state"):
            query = query.where(Item.state == item_state(args["state"]))
        rows = list(exports.item_rows(db.session.scalars(query)))
        body = (
            exports.to_csv(exports.ITEM_HEADER, rows)
            if fmt == "csv"
            else exports.to_xlsx([("稿件", exports.ITEM_HEADER, rows)])
        )
        return Download(body, fmt, "items", "items")
    if kind == "audit":
        rows = list(exports.audit_rows(db.session.scalars(audit_query(args))))
        body = (
            exports.to_csv(exports.AUDIT_HEADER, rows)
            if fmt == "csv"
            else exports.to_xlsx([("审计日志", exports.AUDIT_HEADER, rows)])
        )
        return Download(body, fmt, "audit-log", "audit_log")
    if kind == "dashboard":
        data = dashboard.figures(period_from(args), domain=args.get("domain") or None)
        return Download(
            exports.to_xlsx(exports.dashboard_sheets(data)), fmt, "dashboard", "dashboard"
        )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ledger"
        ledger.export_bundle(
            folder,
            signer=signer(),
            checkpoint_origin=str(current_app.config["LEDGER_ORIGIN"]),
            actor=user,
        )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder.parent).as_posix())
    return Download(buffer.getvalue(), "zip", "ledger", "ledger")


def send(download: Download, *, user: User, filters: Mapping[str, Any]) -> Any:
    """Record the download in the ledger, commit, and send the file as an attachment."""
    record_event(
        "audit.export",
        actor=user,
        subject_type="export",
        subject_id=download.what,
        data={"format": download.fmt, "filters": dict(filters), "bytes": len(download.body)},
    )
    db.session.commit()
    return current_app.response_class(
        download.body,
        content_type=MIMETYPES[download.fmt],  # as written: mimetype= would add a 2nd charset
        headers={"Content-Disposition": f"attachment; filename={download.name}.{download.fmt}"},
    )

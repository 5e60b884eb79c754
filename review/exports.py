"""Tabular exports (CSV for Excel, XLSX) of items, the audit log and dashboard tables."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Plain cell values; text that a spreadsheet would run as a formula is neutralised."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 CSV with a byte-order mark, which Excel needs to read Chinese correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(sheets: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]) -> bytes:
    """An XLSX workbook with one sheet per (title, header, rows)."""
    book = Workbook(write_only=True)
    for title, header, rows in sheets:
        sheet = book.create_sheet(title=title[:31])
        sheet.append(list(header))
        for row in rows:
            sheet.append([_cell(v) if not isinstance(v, (int, float)) else v for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


ITEM_HEADER = [
    "编号",
    "标题",
    "单位",
    "状态",
    "版本",
    "内容哈希",
    "风险等级",
    "风险分",
    "领域",
    "更新时间(UTC)",
]
AUDIT_HEADER = ["序号", "时间(UTC)", "操作人", "角色", "动作", "对象", "详情", "哈希"]


def item_rows(items: Iterable[Any]) -> Iterable[list[Any]]:
    """One row per item, current version and its screening."""
    for item in items:
        version = item.current_version
        report = version.report if version else None
        yield [
            item.id,
            item.title,
            item.unit.name,
            item.state.value,
            version.number if version else None,
            version.content_sha256 if version else None,
            report.risk_level if report else None,
            report.risk_score if report else None,
            "、".join(report.domains) if report else None,
            item.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        ]


def audit_rows(events: Iterable[Any]) -> Iterable[list[Any]]:
    """One row per ledger event."""
    for e in events:
        yield [
            e.seq,
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.role,
            e.action,
            f"{e.subject_type}:{e.subject_id}",
            e.data,
            e.hash,
        ]


def dashboard_sheets(figures: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The dashboard's tables as sheets."""
    summary = [
        ["稿件版本数", figures["volume"]["versions"]],
        ["初筛数", figures["screening"]["screened"]],
        ["标记数", figures["screening"]["flagged"]],
        ["标记率", figures["screening"]["flag_rate"]],
        ["周转时长 p50（小时）", figures["turnaround_hours"]["p50"]],
        ["周转时长 p90（小时）", figures["turnaround_hours"]["p90"]],
        ["逾期任务", figures["overdue"]["assignments"]],
        ["双人审核一致率", figures["agreement"]["rate"]],
        *[[f"结论：{k}", v] for k, v in sorted(figures["decisions"].items())],
    ]
    return [
        ("概览", ["指标", "数值"], summary),
        (
            "领域",
            ["领域", "版本", "标记", "已决定", "标记率"],
            [
                [r["domain"], r["versions"], r["flagged"], r["decided"], r["flag_rate"]]
                for r in figures["by_domain"]
            ],
        ),
        (
            "单位",
            ["单位", "版本", "标记", "标记率"],
            [[r["unit"], r["versions"], r["flagged"], r["flag_rate"]] for r in figures["by_unit"]],
        ),
        (
            "专家",
            ["专家", "邀请", "已决定", "谢绝", "超时", "决定用时中位数（小时）"],
            [
                [
                    r["expert"],
                    r["offered"],
                    r["decided"],
                    r["declined"],
                    r["expired"],
                    r["median_hours_to_decide"],
                ]
                for r in figures["by_expert"]
            ],
        ),
        (
            "规则",
            ["规则", "发现", "属实", "误报", "不确定", "精确率"],
            [
                [
                    r["rule_id"],
                    r["findings"],
                    r["confirmed"],
                    r["false_positive"],
                    r["uncertain"],
                    r["precision"],
                ]
                for r in figures["rules"]
            ],
        ),
    ]

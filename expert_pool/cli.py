"""``kepu experts import FILE.csv`` / ``kepu experts export``: the pool as a spreadsheet."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from expert_pool.csv_io import (
    CsvEncodeError,
    CsvImportError,
    CsvReadError,
    export_experts,
    import_experts,
)
from expert_pool.models import Expert
from review.audit import SYSTEM
from review.db import db

#: Exit codes: 0 done, 1 invalid rows (nothing imported), 2 file unreadable.
EXIT_INVALID, EXIT_UNREADABLE = 1, 2


@click.group("experts")
def experts_group() -> None:
    """The expert pool: CSV import and export."""


@experts_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and report, then roll back.")
@with_appcontext
def experts_import(path: Path, dry_run: bool) -> None:
    """Create or update experts from a UTF-8 or GBK CSV; all rows or none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        click.echo(f"错误：无法读取文件 {path}：{exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    try:
        summary = import_experts(data, actor=SYSTEM)
    except CsvReadError as exc:
        db.session.rollback()
        click.echo(f"错误：{exc.message}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    except CsvImportError as exc:
        db.session.rollback()
        for error in exc.errors:
            click.echo(str(error), err=True)
        click.echo(f"共 {len(exc.errors)} 处错误，未导入任何数据。", err=True)
        raise SystemExit(EXIT_INVALID) from None
    except BaseException:
        db.session.rollback()
        raise
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    verb = "检查通过（未写入）" if dry_run else "导入完成"
    click.echo(
        f"{verb}：新增 {len(summary.created)} 位，更新 {len(summary.updated)} 位，"
        f"未变 {len(summary.unchanged)} 位专家；新建单位 {len(summary.units_created)} 个。"
    )
    if summary.passwords and not dry_run:
        click.echo("新用户的初始密码（只显示这一次，请安全转交并提醒修改）：")
        for username, password in summary.passwords.items():
            click.echo(f"  {username}\t{password}")


@experts_group.command("export")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.option(
    "--encoding",
    type=click.Choice(["utf-8", "gbk"]),
    default="utf-8",
    show_default=True,
    help="UTF-8 with BOM (Excel) or GBK.",
)
@with_appcontext
def experts_export(out: Path | None, encoding: str) -> None:
    """Write every expert as CSV with Chinese headers (re-importable unchanged)."""
    try:
        data = export_experts(encoding=encoding)
    except CsvEncodeError as exc:
        click.echo(f"错误：{exc.message}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    if out is None:
        click.echo(data, nl=False)  # bytes go to the binary stream untouched
        return
    out.write_bytes(data)
    count = db.session.scalar(select(func.count()).select_from(Expert))
    click.echo(f"已导出 {count} 位专家到 {out}", err=True)

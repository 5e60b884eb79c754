"""Expert pool CSV import and export (``kepu experts import`` / ``kepu experts export``).

The file format, for the admins who prepare it in Excel or WPS:

* A header row is required; Chinese or English column names (see ``COLUMNS``). Only 用户名
  is required. A column left out of the file leaves that field untouched for existing
  experts (and takes the default for new ones); a column present with an empty cell means
  "empty" for text, list and date fields (no 职称, no unit, no leave, no conflicts, no e-mail)
  and "unchanged / default" for 资深, 已认证, 启用, 最大负载 and 通知方式.
* Lists (domains, conflicts) are separated by 、 ; , or | (full-width forms too).
* Booleans: 是/否, true/false, 1/0, yes/no.
* Times are ISO dates or date-times. A time without an offset is Beijing time (UTC+8,
  Asia/Shanghai, which has had no daylight saving since 1991), the users' local time; it is
  stored as UTC. A bare date means the start of that day for 请假开始 and the whole day for
  请假结束 (the leave ends at 00:00 the next day). ``2026/1/5`` as Excel writes it is accepted.
* Files are read as UTF-8 (with or without BOM), else GB18030/GBK; exports are UTF-8 with a
  BOM (what Excel expects) or GBK.
* Export prefixes a cell that starts with = + - @ with an apostrophe so spreadsheets do not run
  it as a formula; import removes that apostrophe again, so export → import is lossless.

Import validates every row (and checks the usernames against the database) before it changes
anything; any bad row makes it raise ``CsvImportError`` listing every problem by line, and
nothing is written. The functions flush and write audit events but never commit: the caller
commits once, or rolls back when an error is raised.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from expert_pool.models import Expert
from expert_pool.pool import add_expert, update_expert
from review.audit import record_event
from review.auth import create_user
from review.db import db
from review.errors import DomainError
from review.models import ROLE_LABELS, Role, Unit, User
from review.operations import get_or_create_unit
from review.passwords import random_password
from rules import DOMAINS

#: Users' local time: China Standard Time, a fixed UTC+8 (no DST since 1991).
LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

#: field -> (Chinese header written on export, accepted aliases, normalised by ``_norm_header``)
COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "username": ("用户名", ("账号", "username", "user", "login")),
    "name": ("姓名", ("name", "display_name")),
    "title": ("职称", ("title",)),
    "unit": ("单位", ("所在单位", "unit")),
    "domains": ("主要领域", ("领域", "domains", "primary_domains")),
    "secondary_domains": ("次要领域", ("secondary_domains",)),
    "senior": ("资深", ("资深专家", "senior", "is_senior")),
    "max_load": ("最大负载", ("最大同时审核数", "max_load")),
    "verified": ("已认证", ("认证", "verified", "is_verified")),
    "active": ("启用", ("active", "is_active")),
    "leave_from": ("请假开始", ("leave_from",)),
    "leave_until": ("请假结束", ("leave_until",)),
    "conflict_units": ("冲突单位", ("conflict_units",)),
    "conflict_companies": ("冲突企业", ("conflict_companies",)),
    "conflict_people": ("冲突人员", ("conflict_people",)),
    "email": ("邮箱", ("电子邮箱", "email", "e_mail", "mail")),
    "notify_mode": ("通知方式", ("notify_mode",)),
}

CONFLICT_FIELDS = {
    "conflict_units": "units",
    "conflict_companies": "companies",
    "conflict_people": "people",
}

TRUE_WORDS = frozenset({"是", "true", "1", "yes", "y"})
FALSE_WORDS = frozenset({"否", "false", "0", "no", "n"})
NOTIFY_WORDS = {
    "immediate": "immediate",
    "即时": "immediate",
    "立即": "immediate",
    "实时": "immediate",
    "digest": "digest",
    "汇总": "digest",
    "摘要": "digest",
}
NOTIFY_LABELS = {"immediate": "即时", "digest": "汇总"}

LIST_SPLIT = re.compile(r"[、;；,，|｜\n]")
SLASH_DATE = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
)
FORMULA_START = ("=", "+", "-", "@")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_CHARS = {"username": 80, "name": 200, "title": 100, "unit": 200, "email": 320}
MAX_LOAD_LIMIT = 1000


def _norm_header(text: str) -> str:
    text = text.replace("\ufeff", "").strip().strip("*＊").strip()
    return re.sub(r"[\s\-]+", "_", text).casefold()


HEADER_LOOKUP: dict[str, str] = {
    _norm_header(alias): key
    for key, (label, aliases) in COLUMNS.items()
    for alias in (label, key, *aliases)
}


class CsvError(Exception):
    """A whole-file problem with a Chinese message for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsvReadError(CsvError):
    """The file cannot be read as a CSV at all (encoding, binary content, no header)."""


class CsvEncodeError(CsvError):
    """The export holds characters the chosen encoding (GBK) cannot represent."""


@dataclass(frozen=True)
class RowError:
    """One problem in the file: where (line of the file, column as headed there) and what."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"第 {self.line} 行 [{self.column}]：{self.message}"


class CsvImportError(Exception):
    """Some rows are invalid; nothing was (or, after a rollback, will be) imported."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class ExpertRow:
    """One validated row: the fields its file provides (parsed), and their headers there."""

    line: int
    username: str
    values: dict[str, Any]
    headers: dict[str, str]


@dataclass
class ImportSummary:
    """Usernames created, updated and unchanged, plus the one-time passwords of new users."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    units_created: list[str] = field(default_factory=list)


# --- reading -----------------------------------------------------------------------------------


def decode_csv(data: bytes) -> str:
    """Text of an uploaded CSV: UTF-8 (BOM optional), else GB18030/GBK; else CsvReadError."""
    if b"\x00" in data:
        raise CsvReadError(
            "文件含有空字符（NUL），不是文本 CSV；请另存为“CSV UTF-8”或 GBK 编码的 CSV"
        )
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CsvReadError("文件既不是 UTF-8 也不是 GBK 编码；请在 Excel 中另存为“CSV UTF-8”后重试")


def _unescape(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_START:
        return cell[1:]
    return cell


def _records(text: str) -> Iterable[tuple[int, list[str]]]:
    """(first line number, cells) per CSV record; quoted cells may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvReadError(f"第 {start} 行无法按 CSV 解析：{exc}") from None
        yield start, cells
        start = reader.line_num + 1


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in LIST_SPLIT.split(text) if part.strip()]


def _bool(text: str) -> bool:
    word = text.strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("应为 是/否（或 true/false、1/0、yes/no）")


def _int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("应为正整数") from None
    if not 1 <= value <= MAX_LOAD_LIMIT:
        raise ValueError(f"应在 1 到 {MAX_LOAD_LIMIT} 之间")
    return value


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time as aware UTC; naive means Beijing time (UTC+8).

    A bare date is 00:00 of that day, or with ``end_of_day`` 00:00 of the next day (a leave
    "until 5 January" includes 5 January).
    """
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    match = SLASH_DATE.match(text)
    parsed: datetime
    if match:
        y, mo, d, h, mi, s = (int(g) if g is not None else None for g in match.groups())
        try:
            day = date(y, mo, d)  # type: ignore[arg-type]
            if h is None:
                parsed = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time())
            else:
                parsed = datetime.combine(day, time(h, mi or 0, s or 0))
        except ValueError as exc:
            raise ValueError(f"不是有效的日期：{exc}") from None
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("应为日期（如 2026-01-05）或日期时间（如 2026-01-05 08:30）") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LOCAL_TZ)
    return parsed.astimezone(UTC)


def _domain_list(text: str) -> list[str]:
    values = _split_list(text)
    unknown = [v for v in values if v not in DOMAINS]
    if unknown:
        raise ValueError(f"未知领域“{'、'.join(unknown)}”；可选：{'、'.join(DOMAINS)}")
    return list(dict.fromkeys(values))


def _names(text: str) -> list[str]:
    values = _split_list(text)
    long = [v for v in values if len(v) > 200]
    if long:
        raise ValueError(f"名称过长（最多 200 字）：{long[0][:20]}…")
    return list(dict.fromkeys(values))


def _text(key: str) -> Callable[[str], str | None]:
    def parse(text: str) -> str | None:
        text = text.strip()
        if len(text) > MAX_CHARS[key]:
            raise ValueError(f"过长：最多 {MAX_CHARS[key]} 个字符")
        if any(ord(ch) < 32 for ch in text):
            raise ValueError("不能含有换行或控制字符")
        return text or None

    return parse


def _email(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_CHARS["email"] or not EMAIL.match(text):
        raise ValueError("不是有效的电子邮箱地址")
    return text


def _notify(text: str) -> str:
    mode = NOTIFY_WORDS.get(text.strip().casefold())
    if mode is None:
        raise ValueError("应为 即时（immediate）或 汇总（digest）")
    return mode


#: Cells whose emptiness means "leave as is / default" rather than "empty".
KEEP_WHEN_EMPTY = frozenset({"senior", "verified", "active", "max_load", "notify_mode", "name"})

PARSERS: dict[str, Callable[[str], Any]] = {
    "username": _text("username"),
    "name": _text("name"),
    "title": lambda t: _text("title")(t) or "",
    "unit": _text("unit"),
    "domains": _domain_list,
    "secondary_domains": _domain_list,
    "senior": _bool,
    "max_load": _int,
    "verified": _bool,
    "active": _bool,
    "leave_from": lambda t: parse_time(t) if t.strip() else None,
    "leave_until": lambda t: parse_time(t, end_of_day=True) if t.strip() else None,
    "conflict_units": _names,
    "conflict_companies": _names,
    "conflict_people": _names,
    "email": _email,
    "notify_mode": _notify,
}


def parse_experts_csv(data: bytes) -> list[ExpertRow]:
    """Decode and validate every row (no database); CsvImportError lists all bad rows."""
    records = iter(_records(decode_csv(data)))
    header_line, header = next(records, (1, []))
    if not any(h.strip() for h in header):
        raise CsvReadError("文件为空或缺少表头行（第一行应为列名，如 用户名,姓名,主要领域…）")
    errors: list[RowError] = []
    keys: list[str | None] = []
    headers: dict[str, str] = {}
    for raw in header:
        label = raw.replace("\ufeff", "").strip()
        key = HEADER_LOOKUP.get(_norm_header(raw))
        if not label:
            keys.append(None)
            continue
        if key is None:
            known = "、".join(label for label, _ in COLUMNS.values())
            errors.append(RowError(header_line, label[:40], f"无法识别的列名；可用的列：{known}"))
        elif key in headers:
            errors.append(RowError(header_line, label, f"与“{headers[key]}”重复"))
        else:
            headers[key] = label
        keys.append(key)
    if "username" not in headers:
        errors.append(RowError(header_line, "用户名", "缺少必填列“用户名”（username）"))
    if errors:
        raise CsvImportError(errors)

    rows: list[ExpertRow] = []
    seen: dict[str, int] = {}
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue  # blank lines and Excel's trailing ",,,," rows
        if len(cells) > len(keys) and any(c.strip() for c in cells[len(keys) :]):
            errors.append(RowError(line, "整行", f"有 {len(cells)} 列，表头只有 {len(keys)} 列"))
            continue
        if len(cells) < len(keys):
            errors.append(RowError(line, "整行", f"只有 {len(cells)} 列，表头有 {len(keys)} 列"))
            continue
        values: dict[str, Any] = {}
        row_ok = True
        for key, cell in zip(keys, cells, strict=False):
            if key is None:
                continue
            cell = _unescape(cell)
            if key in KEEP_WHEN_EMPTY and not cell.strip():
                continue
            try:
                values[key] = PARSERS[key](cell)
            except ValueError as exc:
                errors.append(RowError(line, headers[key], str(exc)))
                row_ok = False
        username = values.get("username")
        if username is None:
            if "username" in values:  # empty; a too-long one was reported above
                errors.append(RowError(line, headers["username"], "不能为空"))
            continue
        if username in seen:
            errors.append(RowError(line, headers["username"], f"与第 {seen[username]} 行重复"))
            continue
        seen[username] = line
        if not row_ok:
            continue
        start, until = values.get("leave_from"), values.get("leave_until")
        if start is not None and until is not None and until <= start:
            errors.append(RowError(line, headers["leave_until"], "请假结束须晚于请假开始"))
            continue
        rows.append(ExpertRow(line, username, values, headers))
    if errors:
        raise CsvImportError(errors)
    return rows


# --- importing ---------------------------------------------------------------------------------


def _check_database(rows: list[ExpertRow]) -> list[RowError]:
    """Usernames that exist but do not belong to experts cannot be imported."""
    users = {
        u.username: u
        for u in db.session.scalars(
            select(User).where(User.username.in_([r.username for r in rows]))
        )
    }
    errors = []
    for row in rows:
        user = users.get(row.username)
        if user is not None and not user.has_role(Role.expert):
            errors.append(
                RowError(
                    row.line,
                    row.headers["username"],
                    f"用户“{row.username}”已存在且角色为{ROLE_LABELS[user.role]}，不是审核专家",
                )
            )
    return errors


def import_experts(data: bytes, *, actor: Any) -> ImportSummary:
    """Create or update every expert of the CSV, all or nothing; flushes, never commits.

    On ``CsvImportError`` raised after changes began (a rule only the operations check), the
    caller must roll back; validation catches everything else before the first write.
    """
    rows = parse_experts_csv(data)
    errors = _check_database(rows)
    if errors:
        raise CsvImportError(errors)
    summary = ImportSummary()
    for row in rows:
        try:
            _apply(row, summary, actor=actor)
        except DomainError as exc:
            column = row.headers.get(str(exc.extra.get("field", "")), "整行")
            errors.append(RowError(row.line, column, exc.message))
    if errors:
        raise CsvImportError(errors)
    return summary


def _unit(row: ExpertRow, summary: ImportSummary, actor: Any) -> Unit | None:
    name = row.values.get("unit")
    if not name:
        return None
    existing = db.session.scalar(select(Unit).where(Unit.name == name))
    if existing is not None:
        return existing
    summary.units_created.append(name)
    return get_or_create_unit(name, actor=actor)


def _apply(row: ExpertRow, summary: ImportSummary, *, actor: Any) -> None:
    values = row.values
    unit = _unit(row, summary, actor)
    user = db.session.scalar(select(User).where(User.username == row.username))
    if user is None:
        password = random_password(names=(row.username, values.get("name")))
        user = create_user(
            row.username,
            role=Role.expert.value,
            password=password,
            display_name=values.get("name") or row.username,
            unit=unit,
            actor=actor,
        )
        summary.passwords[row.username] = password
    expert = Expert.for_user(user)
    created = expert is None
    if expert is None:
        expert = add_expert(
            user,
            domains=values.get("domains", []),
            secondary_domains=values.get("secondary_domains", []),
            title=values.get("title", ""),
            unit=unit,
            max_load=values.get("max_load", 5),
            is_senior=values.get("senior", False),
            verified=values.get("verified", True),
            conflicts={kind: values.get(key, []) for key, kind in CONFLICT_FIELDS.items()},
            actor=actor,
        )
    changes: dict[str, Any] = {}
    for key, attr in (
        ("title", "title"),
        ("domains", "domains"),
        ("secondary_domains", "secondary_domains"),
        ("verified", "is_verified"),
        ("senior", "is_senior"),
        ("active", "is_active"),
        ("max_load", "max_load"),
        ("leave_from", "leave_from"),
        ("leave_until", "leave_until"),
        ("notify_mode", "notify_mode"),
    ):
        if key in values:
            changes[attr] = values[key]
    if any(key in values for key in CONFLICT_FIELDS):
        changes["conflicts"] = {
            kind: values[key] if key in values else expert.conflict_list(kind)
            for key, kind in CONFLICT_FIELDS.items()
        }
    diff = update_expert(expert, changes, actor=actor)
    diff.update(_update_identity(expert, user, row, unit, actor=actor))
    if created:
        summary.created.append(row.username)
    elif diff:
        summary.updated.append(row.username)
    else:
        summary.unchanged.append(row.username)


def _update_identity(
    expert: Expert, user: User, row: ExpertRow, unit: Unit | None, *, actor: Any
) -> dict[str, Any]:
    """Name, unit and e-mail are not pool fields of update_expert; changed and audited here."""
    values = row.values
    diff: dict[str, Any] = {}
    name = values.get("name")
    if name and expert.name != name:
        diff["name"] = {"from": expert.name, "to": name}
        expert.name = name
        user.display_name = name
    if "unit" in values:
        wanted = unit.id if unit else None
        if expert.unit_id != wanted:
            before = db.session.get(Unit, expert.unit_id) if expert.unit_id else None
            diff["unit"] = {
                "from": before.name if before else None,
                "to": unit.name if unit else None,
            }
            expert.unit_id = wanted
    if "email" in values and user.email != values["email"]:
        diff["email"] = {"from": user.email, "to": values["email"]}
        user.email = values["email"]
    if diff:
        db.session.flush()
        record_event(
            "pool.expert_updated",
            actor=actor,
            subject_type="expert",
            subject_id=expert.id,
            data={**diff, "source": "csv"},
        )
    return diff


# --- exporting ---------------------------------------------------------------------------------


def _escape(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def format_time(value: datetime | None, *, end_of_day: bool = False) -> str:
    """Beijing time for people; a local midnight is written as a bare date (as it was read)."""
    if value is None:
        return ""
    local = value.astimezone(LOCAL_TZ)
    if local.time() == time():
        day = local.date() - timedelta(days=1) if end_of_day else local.date()
        return day.isoformat()
    return local.replace(tzinfo=None).isoformat(sep=" ")


def _yes(value: bool) -> str:
    return "是" if value else "否"


def export_rows() -> list[list[str]]:
    """The header and one row per expert (ordered by id), as exported."""
    experts = db.session.scalars(
        select(Expert)
        .options(selectinload(Expert.user), selectinload(Expert.unit))
        .order_by(Expert.id)
    ).all()
    rows = [[label for label, _ in COLUMNS.values()]]
    for e in experts:
        row = {
            "username": e.user.username,
            "name": e.name,
            "title": e.title,
            "unit": e.unit.name if e.unit else "",
            "domains": "、".join(e.domains or []),
            "secondary_domains": "、".join(e.secondary_domains or []),
            "senior": _yes(e.is_senior),
            "max_load": str(e.max_load),
            "verified": _yes(e.is_verified),
            "active": _yes(e.is_active),
            "leave_from": format_time(e.leave_from),
            "leave_until": format_time(e.leave_until, end_of_day=True),
            "conflict_units": "、".join(e.conflict_list("units")),
            "conflict_companies": "、".join(e.conflict_list("companies")),
            "conflict_people": "、".join(e.conflict_list("people")),
            "email": e.user.email or "",
            "notify_mode": NOTIFY_LABELS.get(e.notify_mode, e.notify_mode),
        }
        rows.append([_escape(row[key]) for key in COLUMNS])
    return rows


def export_experts(*, encoding: str = "utf-8") -> bytes:
    """All experts as CSV bytes: UTF-8 with a BOM (Excel), or GBK (CsvEncodeError if it can't)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(export_rows())
    text = out.getvalue()
    if encoding == "utf-8":
        return text.encode("utf-8-sig")
    if encoding != "gbk":
        raise ValueError(f"unsupported encoding {encoding!r}")
    try:
        return text.encode("gbk")
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise CsvEncodeError(
            f"第 {line} 行含有 GBK 无法表示的字符“{text[exc.start : exc.end]}”；请改用 UTF-8 导出"
        ) from None

"""The expert pool itself: adding and editing experts, their load, and matching candidates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from expert_pool.matching import Candidate
from expert_pool.models import OPEN_STATES, Assignment, Expert, leave_covers
from review.audit import record_event
from review.db import db, utcnow
from review.errors import Conflict, InvalidInput
from review.models import Role, Unit, User
from review.operations import clean_text
from rules import DOMAINS

CONFLICT_KINDS = ("units", "companies", "people")
NOTIFY_MODES = ("immediate", "digest")


#: The highest load cap (the same bound as the CSV import's).
MAX_LOAD = 1000


def _domains(values: Sequence[str], field: str) -> list[str]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidInput("领域须为文本列表", code="invalid_field", field=field)
    out = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if value not in DOMAINS:
            raise InvalidInput(f"未知领域“{value}”；可选：{'、'.join(DOMAINS)}", field=field)
        out.append(value)
    return list(dict.fromkeys(out))


def _conflicts(value: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    if value is not None and (
        not isinstance(value, Mapping)
        or not all(isinstance(value.get(kind, []), list | tuple) for kind in CONFLICT_KINDS)
    ):
        raise InvalidInput(
            f"利益冲突须为对象，各项（{'、'.join(CONFLICT_KINDS)}）为文本列表",
            code="invalid_field",
            field="conflicts",
        )
    result: dict[str, list[str]] = {}
    for kind in CONFLICT_KINDS:
        names = [
            clean_text(n, "conflicts", "利益冲突", max_chars=200).strip()
            for n in (value or {}).get(kind, [])
        ]
        result[kind] = [n for n in dict.fromkeys(names) if n]
    return result


def add_expert(
    user: User,
    *,
    domains: Sequence[str],
    secondary_domains: Sequence[str] = (),
    title: str = "",
    unit: Unit | None = None,
    max_load: int = 5,
    is_senior: bool = False,
    verified: bool = True,
    conflicts: Mapping[str, Sequence[str]] | None = None,
    actor: Any,
) -> Expert:
    """Put ``user`` (role expert) into the pool."""
    if not user.has_role(Role.expert):
        raise InvalidInput("只有角色为审核专家的用户可以加入专家库", field="role")
    if Expert.for_user(user) is not None:
        raise Conflict("该用户已在专家库中", code="exists")
    if max_load < 1:
        raise InvalidInput("最大同时审核数至少为 1", field="max_load")
    expert = Expert(
        user_id=user.id,
        name=user.display_name,
        title=clean_text(title, "title", "职称", max_chars=100),
        unit_id=unit.id if unit else user.unit_id,
        domains=_domains(domains, "domains"),
        secondary_domains=_domains(secondary_domains, "secondary_domains"),
        is_verified=verified,
        verified_at=utcnow() if verified else None,
        is_senior=is_senior,
        max_load=max_load,
        conflicts=_conflicts(conflicts),
    )
    db.session.add(expert)
    db.session.flush()
    record_event(
        "pool.expert_added",
        actor=actor,
        subject_type="expert",
        subject_id=expert.id,
        data={
            "user": user.username,
            "domains": expert.domains,
            "senior": is_senior,
            "max_load": max_load,
        },
    )
    return expert


EDITABLE = (
    "title",
    "domains",
    "secondary_domains",
    "is_verified",
    "is_senior",
    "is_active",
    "max_load",
    "leave_from",
    "leave_until",
    "conflicts",
    "notify_mode",
    "is_publicly_named",
)


def update_expert(expert: Expert, changes: Mapping[str, Any], *, actor: Any) -> dict[str, Any]:
    """Change pool fields (admin); returns the before/after of what changed, audited."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"不能修改的字段：{'、'.join(sorted(unknown))}", field="fields")
    diff: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("domains", "secondary_domains"):
            value = _domains(value, key)
        elif key == "conflicts":
            value = _conflicts(value)
        elif key == "max_load":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput("最大同时审核数须为整数", code="invalid_field", field=key)
            if not 1 <= value <= MAX_LOAD:
                raise InvalidInput(f"最大同时审核数须在 1 到 {MAX_LOAD} 之间", field="max_load")
        elif key in ("is_verified", "is_senior", "is_active") and not isinstance(value, bool):
            raise InvalidInput(f"{key} 须为 true 或 false", code="invalid_field", field=key)
        elif key == "title":
            value = clean_text(value, "title", "职称", max_chars=100)
        elif key == "is_publicly_named" and not isinstance(value, bool):
            raise InvalidInput("是否公开署名须为 true 或 false", field="is_publicly_named")
        elif key == "notify_mode" and value not in NOTIFY_MODES:
            raise InvalidInput("通知方式只能是 immediate 或 digest", field="notify_mode")
        elif (
            key in ("leave_from", "leave_until")
            and value is not None
            and (not isinstance(value, datetime) or value.tzinfo is None)
        ):
            raise InvalidInput("请假时间须为带时区的时间", field=key)
        before = getattr(expert, key)
        if before != value:
            diff[key] = {"from": _plain(before), "to": _plain(value)}
            setattr(expert, key, value)
    if "is_verified" in diff and expert.is_verified:
        expert.verified_at = utcnow()
    if (
        expert.leave_from is not None
        and expert.leave_until is not None
        and expert.leave_until <= expert.leave_from
    ):
        raise InvalidInput("请假结束时间须晚于开始时间", field="leave_until")
    db.session.flush()
    if diff:
        record_event(
            "pool.expert_updated",
            actor=actor,
            subject_type="expert",
            subject_id=expert.id,
            data=diff,
        )
    return diff


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def expert_loads() -> dict[int, int]:
    """Open assignments per expert."""
    rows = db.session.execute(
        select(Assignment.expert_id, func.count())
        .where(Assignment.state.in_(OPEN_STATES))
        .group_by(Assignment.expert_id)
    ).all()
    return {expert_id: count for expert_id, count in rows}


def candidates(experts: Sequence[Expert] | None = None) -> list[Candidate]:
    """Every pool member (or the given ones) as a matching candidate, with current load.

    The whole-pool path reads only the columns matching needs, with the open-assignment
    counts joined in, in one query (it runs for every version that needs reviewers).
    """
    now = utcnow()
    if experts is not None:
        loads = expert_loads()
        return [
            _candidate(
                e.id,
                e.user_id,
                e.unit_id,
                e.domains,
                e.secondary_domains,
                e.is_active and e.user.is_active_user,
                e.is_verified,
                e.is_senior,
                leave_covers(e.leave_from, e.leave_until, now),
                loads.get(e.id, 0),
                e.max_load,
                e.conflicts,
                e.last_assigned_at,
            )
            for e in experts
        ]
    load = (
        select(Assignment.expert_id, func.count().label("n"))
        .where(Assignment.state.in_(OPEN_STATES))
        .group_by(Assignment.expert_id)
        .subquery()
    )
    rows = db.session.execute(
        select(
            Expert.id,
            Expert.user_id,
            Expert.unit_id,
            Expert.domains,
            Expert.secondary_domains,
            Expert.is_active,
            User.is_active_user,
            Expert.is_verified,
            Expert.is_senior,
            Expert.leave_from,
            Expert.leave_until,
            func.coalesce(load.c.n, 0),
            Expert.max_load,
            Expert.conflicts,
            Expert.last_assigned_at,
        )
        .join(User, User.id == Expert.user_id)
        .outerjoin(load, load.c.expert_id == Expert.id)
        .order_by(Expert.id)
    ).all()
    return [
        _candidate(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5] and r[6],
            r[7],
            r[8],
            leave_covers(r[9], r[10], now),
            int(r[11]),
            r[12],
            r[13],
            r[14],
        )
        for r in rows
    ]


def _candidate(
    expert_id: int,
    user_id: int,
    unit_id: int | None,
    domains: Sequence[str],
    secondary: Sequence[str],
    active: bool,
    verified: bool,
    senior: bool,
    on_leave: bool,
    load: int,
    max_load: int,
    conflicts: Mapping[str, Sequence[str]] | None,
    last_assigned_at: datetime | None,
) -> Candidate:
    conflicts = conflicts or {}
    return Candidate(
        expert_id=expert_id,
        user_id=user_id,
        unit_id=unit_id,
        primary_domains=frozenset(domains),
        secondary_domains=frozenset(secondary),
        is_active=bool(active),
        is_verified=verified,
        is_senior=senior,
        on_leave=on_leave,
        load=load,
        max_load=max_load,
        conflict_units=frozenset(conflicts.get("units", [])),
        conflict_companies=frozenset(conflicts.get("companies", [])),
        conflict_people=frozenset(conflicts.get("people", [])),
        last_assigned_at=last_assigned_at,
    )


def public_reviewers(user_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Name and title (职称) of those experts among ``user_ids`` who agreed to be named in
    public; everyone else is left out (the default)."""
    ids = set(user_ids)
    if not ids:
        return {}
    return {
        e.user_id: (e.name, e.title or "")
        for e in db.session.scalars(
            select(Expert).where(Expert.user_id.in_(ids), Expert.is_publicly_named.is_(True))
        )
    }

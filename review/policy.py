"""The running policy: thresholds an admin may change, stored as overrides over the configuration.

The configuration (``KEPU_FLAG_LEVEL``, ``KEPU_ACCEPT_WITHIN`` …) gives the defaults; a row in
``policy_settings`` overrides one of them until it is reset.  Screening, assignment and the
deadline sweep read :func:`effective` (workers and the web layer build their ``Thresholds`` and
``Deadlines`` from it), so a change applies to the next screening or offer without a restart.
Every change and reset is written to the audit ledger with the old and the new value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from flask_babel import gettext
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column

import rules
from review.audit import record_event
from review.db import JSONType, UTCDateTime, db, utcnow
from review.i18n import N_


class PolicySetting(db.Model):
    """One admin override of a configured policy value (absent: the configuration applies)."""

    __tablename__ = "policy_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


@dataclass(frozen=True)
class Field:
    """A tunable value: its configuration key, how the form shows it and its allowed range."""

    key: str
    config_key: str
    label: str  # N_() marked; translated where shown
    help: str  # N_() marked
    unit: str  # "level", "hours", "minutes" or "count"
    low: float = 0
    high: float = 0

    @property
    def scale(self) -> int:
        """Seconds per form unit (values are stored in the configuration's unit)."""
        return {"hours": 3600, "minutes": 60}.get(self.unit, 1)


FIELDS: tuple[Field, ...] = (
    Field(
        "flag_level",
        "FLAG_LEVEL",
        N_("送交专家的风险等级"),
        N_(
            "机器初筛的风险等级达到此级别（含）时，稿件送交专家审核；低于此级别的稿件直接通过初筛。"
        ),
        "level",
    ),
    Field(
        "accept_within",
        "ACCEPT_WITHIN",
        N_("接受邀请期限"),
        N_("专家须在此时间内接受审核邀请，否则邀请超时并转给其他专家（高风险稿件按比例缩短）。"),
        "hours",
        1,
        30 * 24,
    ),
    Field(
        "decide_within",
        "DECIDE_WITHIN",
        N_("签署结论期限"),
        N_("专家接受后须在此时间内签署结论（高风险稿件按比例缩短）。"),
        "hours",
        1,
        90 * 24,
    ),
    Field(
        "screening_max_attempts",
        "SCREENING_MAX_ATTEMPTS",
        N_("机器初筛最多尝试次数"),
        N_("初筛连续出错达到此次数后，稿件标记为初筛失败并直接送交专家。"),
        "count",
        1,
        10,
    ),
    Field(
        "stuck_after",
        "STUCK_AFTER",
        N_("初筛卡住判定时间"),
        N_("稿件停留在“机器初筛中”超过此时间，巡检任务会重新安排初筛。"),
        "minutes",
        1,
        24 * 60,
    ),
)
FIELD_BY_KEY = {f.key: f for f in FIELDS}


@dataclass(frozen=True)
class Policy:
    """The effective values (seconds for durations)."""

    flag_level: str
    accept_within: int
    decide_within: int
    screening_max_attempts: int
    stuck_after: int

    def thresholds(self) -> rules.Thresholds:
        """The screening thresholds of this policy."""
        return rules.Thresholds(flag_level=self.flag_level)


def defaults() -> dict[str, Any]:
    """The configured values."""
    config = current_app.config
    out: dict[str, Any] = {}
    for f in FIELDS:
        raw = config[f.config_key]
        out[f.key] = str(raw) if f.unit == "level" else int(raw)
    return out


def overrides() -> dict[str, PolicySetting]:
    """The stored overrides of known keys."""
    rows = db.session.scalars(select(PolicySetting)).all()
    return {r.key: r for r in rows if r.key in FIELD_BY_KEY}


def values() -> dict[str, Any]:
    """The effective values by key: the override where one exists, else the configuration."""
    out = defaults()
    out.update({key: row.value for key, row in overrides().items()})
    return out


def effective() -> Policy:
    """The effective policy, read anew (one small query) each time it is needed."""
    return Policy(**values())


def to_form(field: Field, value: Any) -> str:
    """A stored value in the form's unit (hours and minutes may have decimals)."""
    if field.unit == "level":
        return str(value)
    shown = value / field.scale
    return f"{shown:.2f}".rstrip("0").rstrip(".") if shown != int(shown) else str(int(shown))


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Values (stored units) and per-field error messages from the policy form."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in FIELDS:
        raw = str(form.get(f.key, "")).strip()
        label = gettext(f.label)
        if f.unit == "level":
            if raw not in rules.LEVELS:
                errors[f.key] = gettext("请选择有效的%(label)s", label=label)
            else:
                parsed[f.key] = raw
            continue
        try:
            number = float(raw) if f.unit in ("hours", "minutes") else int(raw)
        except ValueError:
            errors[f.key] = (
                gettext("%(label)s必须是数字", label=label)
                if f.unit in ("hours", "minutes")
                else gettext("%(label)s必须是整数", label=label)
            )
            continue
        if number != number or not f.low <= number <= f.high:  # NaN fails the first test
            errors[f.key] = gettext(
                "%(label)s须在 %(low)s 到 %(high)s 之间",
                label=label,
                low=f"{f.low:g}",
                high=f"{f.high:g}",
            )
            continue
        parsed[f.key] = round(number * f.scale)
    return parsed, errors


def update_policy(new_values: Mapping[str, Any], *, actor: Any) -> dict[str, dict[str, Any]]:
    """Store the values that differ from the effective ones; one audit event lists the changes."""
    current = values()
    stored = overrides()
    changes: dict[str, dict[str, Any]] = {}
    for key, value in new_values.items():
        if key not in FIELD_BY_KEY or current[key] == value:
            continue
        row = stored.get(key)
        if row is None:
            row = PolicySetting(key=key)
            db.session.add(row)
        row.value = value
        row.updated_at = utcnow()
        row.updated_by_id = getattr(actor, "id", None)
        changes[key] = {"old": current[key], "new": value}
    if changes:
        db.session.flush()
        record_event(
            "policy.changed",
            actor=actor,
            subject_type="policy",
            subject_id="running",
            data={"changes": changes},
        )
    return changes


def reset_policy(keys: list[str] | None, *, actor: Any) -> dict[str, dict[str, Any]]:
    """Remove overrides (all, or of ``keys``) so the configuration applies again; audited."""
    current = values()
    config = defaults()
    changes: dict[str, dict[str, Any]] = {}
    for key, row in overrides().items():
        if keys is not None and key not in keys:
            continue
        changes[key] = {"old": current[key], "new": config[key]}
        db.session.delete(row)
    if changes:
        db.session.flush()
        record_event(
            "policy.reset",
            actor=actor,
            subject_type="policy",
            subject_id="running",
            data={"changes": changes},
        )
    return changes

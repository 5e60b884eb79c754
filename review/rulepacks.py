"""Rule packs as admins see them: switching single rules off and on, and what each rule produced.

The packs themselves are files (``rules/packs``); the database holds only which rules an admin
has switched off and why.  Screening uses :func:`effective_ruleset`: the loaded ruleset without
those rules, whose derived version every report records, so earlier reports keep naming the
ruleset that produced them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask_babel import gettext
from sqlalchemy import ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

import rules
from review.audit import record_event
from review.db import UTCDateTime, db, utcnow
from review.errors import InvalidInput, NotFound
from review.models import Decision, Finding, ScreeningReport, Version
from review.operations import clean_text

#: The per-finding verdicts experts give (expert_pool.operations.VERDICTS).
VERDICTS = ("confirmed", "false_positive", "uncertain")
RECENT_DAYS = 30


class DisabledRule(db.Model):
    """A rule an admin switched off; deleting the row switches it on again."""

    __tablename__ = "disabled_rules"

    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


def disabled_rules() -> dict[str, DisabledRule]:
    """Every switched-off rule by id (including ids no longer in the packs)."""
    return {r.rule_id: r for r in db.session.scalars(select(DisabledRule))}


def disabled_ids() -> frozenset[str]:
    """The ids of the switched-off rules."""
    return frozenset(db.session.scalars(select(DisabledRule.rule_id)))


def effective_ruleset() -> rules.Ruleset:
    """The default ruleset without the switched-off rules (built once per distinct set)."""
    base = rules.load_default_ruleset()
    dropped = disabled_ids() & known_ids()
    if not dropped:
        return base
    return _reduced(base.version, frozenset(dropped))


@lru_cache(maxsize=16)
def _reduced(base_version: str, dropped: frozenset[str]) -> rules.Ruleset:
    # base_version keys the cache: a reloaded pack directory must not reuse an old reduction.
    base = rules.load_default_ruleset()
    assert base.version == base_version
    return base.without(dropped)


def known_ids() -> frozenset[str]:
    """The ids of every rule in the loaded packs."""
    return frozenset(r.id for r in rules.load_default_ruleset().rules)


def get_rule(rule_id: str) -> rules.Rule:
    """A rule of the loaded ruleset, or NotFound."""
    try:
        return rules.load_default_ruleset().rule(rule_id)
    except KeyError:
        raise NotFound(gettext("找不到该规则")) from None


def set_rule_enabled(rule_id: str, enabled: bool, *, reason: object, actor: Any) -> bool:
    """Switch a rule on or off with a reason; audited.  False when it already was so."""
    row = db.session.get(DisabledRule, rule_id)
    if row is None and rule_id not in known_ids():
        raise NotFound(gettext("找不到该规则"))
    text = clean_text(reason, "reason", gettext("原因"), max_chars=2000).strip()
    if not text:
        raise InvalidInput(
            gettext("请填写启用规则的原因")
            if enabled
            else gettext("请填写停用规则的原因（将记入审计日志）"),
            field="reason",
        )
    if enabled == (row is None):
        return False
    if enabled:
        assert row is not None
        db.session.delete(row)
    else:
        db.session.add(
            DisabledRule(
                rule_id=rule_id,
                reason=text,
                disabled_at=utcnow(),
                disabled_by_id=getattr(actor, "id", None),
            )
        )
    db.session.flush()
    record_event(
        "rules.rule_enabled" if enabled else "rules.rule_disabled",
        actor=actor,
        subject_type="rule",
        subject_id=rule_id,
        data={
            "reason": text,
            "old": "disabled" if enabled else "enabled",
            "new": "enabled" if enabled else "disabled",
            "ruleset_version": effective_ruleset().version,
        },
    )
    return True


def finding_counts() -> dict[str, int]:
    """How many findings each rule produced, over every report."""
    rows = db.session.execute(
        select(Finding.rule_id, func.count())
        .where(Finding.rule_id.is_not(None))
        .group_by(Finding.rule_id)
    )
    return {str(rule_id): int(n) for rule_id, n in rows}


@dataclass
class RuleStatistics:
    """What one rule produced and how experts judged it."""

    findings: int
    findings_recent: int
    versions: int
    items: int
    verdicts: dict[str, int]
    judged_findings: int
    decisions: dict[str, int]
    recent: list[tuple[Finding, Version, datetime]]

    @property
    def confirmed_share(self) -> float | None:
        """Confirmed among confirmed and dismissed verdicts (None before any)."""
        judged = self.verdicts["confirmed"] + self.verdicts["false_positive"]
        return self.verdicts["confirmed"] / judged if judged else None


def statistics(rule_id: str, *, now: datetime | None = None) -> RuleStatistics:
    """Counts from the database for one rule id."""
    since = (now or utcnow()) - timedelta(days=RECENT_DAYS)
    of_rule = Finding.rule_id == rule_id
    findings = db.session.scalar(select(func.count()).select_from(Finding).where(of_rule)) or 0
    recent_count = (
        db.session.scalar(
            select(func.count())
            .select_from(Finding)
            .join(ScreeningReport, Finding.report_id == ScreeningReport.id)
            .where(of_rule, ScreeningReport.created_at >= since)
        )
        or 0
    )
    versions = (
        db.session.scalar(select(func.count(func.distinct(Finding.version_id))).where(of_rule)) or 0
    )
    items = (
        db.session.scalar(
            select(func.count(func.distinct(Version.item_id)))
            .select_from(Finding)
            .join(Version, Finding.version_id == Version.id)
            .where(of_rule)
        )
        or 0
    )
    finding_ids = {str(i) for i in db.session.scalars(select(Finding.id).where(of_rule))}
    version_ids = select(Finding.version_id).where(of_rule).distinct()
    verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    judged: set[str] = set()
    decisions: Counter[str] = Counter()
    for decision in db.session.scalars(
        select(Decision).where(Decision.version_id.in_(version_ids))
    ):
        decisions[decision.decision.value] += 1
        for fid, verdict in (decision.finding_verdicts or {}).items():
            if fid in finding_ids and verdict in VERDICTS:
                verdicts[verdict] += 1
                judged.add(fid)
    recent = [
        (f, v, at)
        for f, v, at in db.session.execute(
            select(Finding, Version, ScreeningReport.created_at)
            .join(Version, Finding.version_id == Version.id)
            .join(ScreeningReport, Finding.report_id == ScreeningReport.id)
            .where(of_rule)
            .order_by(Finding.id.desc())
            .limit(20)
        )
    ]
    return RuleStatistics(
        findings=int(findings),
        findings_recent=int(recent_count),
        versions=int(versions),
        items=int(items),
        verdicts=dict(verdicts),
        judged_findings=len(judged),
        decisions={k: decisions.get(k, 0) for k in ("approve", "request_changes", "reject")},
        recent=recent,
    )

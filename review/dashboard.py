"""Read-only figures for the auditors' and admins' dashboard (a boundary module)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from expert_pool.models import OPEN_STATES, Assignment, Expert
from review.db import db, utcnow
from review.models import Decision, Finding, Item, ScreeningReport, Unit, Version

#: A rule needs this many expert verdicts before its precision is ranked.
MIN_VERDICTS = 3


@dataclass(frozen=True)
class Period:
    """A half-open time window [start, end); None means unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        """True when ``moment`` falls in the window."""
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..1) by linear interpolation; None for no values."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q
    low, high = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures(
    period: Period, *, domain: str | None = None, unit_id: int | None = None
) -> dict[str, Any]:
    """Every dashboard figure for the period, optionally for one domain or unit."""
    versions = [
        v
        for v in db.session.scalars(select(Version).order_by(Version.id))
        if period.contains(v.created_at)
    ]
    items = {i.id: i for i in db.session.scalars(select(Item))}
    reports = {
        r.version_id: r
        for r in db.session.scalars(select(ScreeningReport).order_by(ScreeningReport.id))
    }

    def keep(version: Version) -> bool:
        item = items[version.item_id]
        if unit_id is not None and item.unit_id != unit_id:
            return False
        report = reports.get(version.id)
        return domain is None or bool(report and domain in report.domains)

    versions = [v for v in versions if keep(v)]
    version_ids = {v.id for v in versions}
    screened = [reports[v.id] for v in versions if v.id in reports]
    assignments = [
        a
        for a in db.session.scalars(select(Assignment).order_by(Assignment.id))
        if a.version_id in version_ids and a.kind != "quality"  # 质检 has its own report
    ]
    workflow = {a.id for a in assignments}
    decisions = [
        d
        for d in db.session.scalars(select(Decision).order_by(Decision.id))
        if d.assignment_id in workflow
    ]
    return {
        "period": {
            "start": period.start.isoformat() if period.start else None,
            "end": period.end.isoformat() if period.end else None,
            "domain": domain,
            "unit_id": unit_id,
        },
        "volume": {"versions": len(versions), "items": len({v.item_id for v in versions})},
        "screening": {
            "screened": len(screened),
            "flagged": sum(r.is_flagged for r in screened),
            "flag_rate": _rate(sum(r.is_flagged for r in screened), len(screened)),
            "failed": sum(r.is_failed for r in screened),
        },
        "decisions": dict(Counter(d.decision.value for d in decisions)),
        "turnaround_hours": _turnaround(versions, decisions),
        "overdue": _overdue(assignments),
        "by_domain": _by_domain(versions, reports, decisions, assignments),
        "by_unit": _by_unit(versions, items, reports),
        "by_expert": _by_expert(assignments, decisions),
        "rules": _rules(version_ids, decisions),
        "agreement": _agreement(assignments, decisions),
    }


def _turnaround(versions: list[Version], decisions: list[Decision]) -> dict[str, Any]:
    last: dict[int, datetime] = {}
    for d in decisions:
        last[d.version_id] = max(last.get(d.version_id, d.signed_at), d.signed_at)
    created = {v.id: v.created_at for v in versions}
    hours = [(t - created[vid]).total_seconds() / 3600 for vid, t in last.items() if vid in created]
    return {
        "n": len(hours),
        "p50": _round(percentile(hours, 0.5)),
        "p90": _round(percentile(hours, 0.9)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _overdue(assignments: list[Assignment]) -> dict[str, Any]:
    now = utcnow()
    rows = [a for a in assignments if a.state in OPEN_STATES and a.due_at < now]
    return {"assignments": len(rows), "items": len({a.item_id for a in rows})}


def _by_domain(
    versions: list[Version],
    reports: dict[int, ScreeningReport],
    decisions: list[Decision],
    assignments: list[Assignment],
) -> list[dict[str, Any]]:
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    decided = {d.version_id for d in decisions}
    now = utcnow()
    overdue = {a.version_id for a in assignments if a.state in OPEN_STATES and a.due_at < now}
    for v in versions:
        report = reports.get(v.id)
        for name in report.domains if report and report.domains else ["（未识别）"]:
            rows[name]["versions"] += 1
            rows[name]["flagged"] += int(bool(report and report.is_flagged))
            rows[name]["decided"] += int(v.id in decided)
            rows[name]["overdue"] += int(v.id in overdue)
    return [
        {"domain": name, **counts, "flag_rate": _rate(counts["flagged"], counts["versions"])}
        for name, counts in sorted(rows.items(), key=lambda kv: -kv[1]["versions"])
    ]


def _by_unit(
    versions: list[Version], items: dict[int, Item], reports: dict[int, ScreeningReport]
) -> list[dict[str, Any]]:
    names = {u.id: u.name for u in db.session.scalars(select(Unit))}
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for v in versions:
        name = names.get(items[v.item_id].unit_id, "?")
        rows[name]["versions"] += 1
        report = reports.get(v.id)
        rows[name]["flagged"] += int(bool(report and report.is_flagged))
    return [
        {"unit": name, **counts, "flag_rate": _rate(counts["flagged"], counts["versions"])}
        for name, counts in sorted(rows.items(), key=lambda kv: -kv[1]["versions"])
    ]


def _by_expert(assignments: list[Assignment], decisions: list[Decision]) -> list[dict[str, Any]]:
    experts = {e.id: e for e in db.session.scalars(select(Expert))}
    by_assignment = {d.assignment_id: d for d in decisions}
    now = utcnow()
    rows: dict[int, dict[str, Any]] = {}
    for a in assignments:
        row = rows.setdefault(
            a.expert_id,
            {
                "expert": experts[a.expert_id].name if a.expert_id in experts else str(a.expert_id),
                "offered": 0,
                "decided": 0,
                "declined": 0,
                "expired": 0,
                "overdue": 0,
                "hours": [],
            },
        )
        row["offered"] += 1
        if a.state.value in ("declined", "expired"):
            row[a.state.value] += 1
        if a.state in OPEN_STATES and a.due_at < now:
            row["overdue"] += 1
        decision = by_assignment.get(a.id)
        if decision is not None:
            row["decided"] += 1
            row["hours"].append((decision.signed_at - a.offered_at).total_seconds() / 3600)
    out = []
    for row in rows.values():
        hours = row.pop("hours")
        row["median_hours_to_decide"] = _round(percentile(hours, 0.5))
        out.append(row)
    return sorted(out, key=lambda r: -r["decided"])


def _rules(version_ids: set[int], decisions: list[Decision]) -> list[dict[str, Any]]:
    findings = {
        f.id: f
        for f in db.session.scalars(select(Finding))
        if f.version_id in version_ids and f.rule_id
    }
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for f in findings.values():
        counts[str(f.rule_id)]["findings"] += 1
    for d in decisions:
        for finding_id, verdict in (d.finding_verdicts or {}).items():
            f = findings.get(int(finding_id))
            if f is not None:
                counts[str(f.rule_id)][verdict] += 1
    rows = []
    for rule_id, c in counts.items():
        judged = c["confirmed"] + c["false_positive"]
        rows.append(
            {
                "rule_id": rule_id,
                "findings": c["findings"],
                "confirmed": c["confirmed"],
                "false_positive": c["false_positive"],
                "uncertain": c["uncertain"],
                "precision": _rate(c["confirmed"], judged),
                "ranked": judged >= MIN_VERDICTS,
            }
        )
    # Noisiest first: lowest precision among rules with enough verdicts, then most findings.
    return sorted(
        rows,
        key=lambda r: (
            not r["ranked"],
            r["precision"] if r["precision"] is not None else 2,
            -r["findings"],
        ),
    )


def _agreement(assignments: list[Assignment], decisions: list[Decision]) -> dict[str, Any]:
    by_assignment = {d.assignment_id: d for d in decisions}
    rounds: dict[tuple[int, int], list[str]] = defaultdict(list)
    for a in assignments:
        d = by_assignment.get(a.id)
        if a.kind == "review" and d is not None:
            rounds[(a.version_id, a.round)].append(d.decision.value)
    double = [kinds for kinds in rounds.values() if len(kinds) >= 2]
    agreed = sum(len(set(kinds)) == 1 for kinds in double)
    return {"double_reviewed": len(double), "agreed": agreed, "rate": _rate(agreed, len(double))}

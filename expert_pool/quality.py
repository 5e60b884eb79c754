"""质检 quality sampling: re-review a random sample of decided versions and report overturns."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from expert_pool.matching import Request, select_reviewers
from expert_pool.models import Assignment, AssignmentState, Expert, QualityCheck, QualitySample
from expert_pool.notifications import notify
from expert_pool.operations import QUALITY, Deadlines, _involved_experts
from expert_pool.pool import candidates
from review.audit import record_event
from review.db import db, utcnow
from review.errors import Forbidden, InvalidInput
from review.models import Decision, DecisionKind, Item, Role, ScreeningReport, User, Version

MAX_SAMPLE = 200


@dataclass(frozen=True)
class Outcome:
    """A decided version and what was decided (or cleared by screening)."""

    version: Version
    outcome: str


def decided_versions(start: Any, end: Any, domain: str | None) -> list[Outcome]:
    """Versions whose review concluded (or that screening cleared) inside the window."""
    outcomes: dict[int, Outcome] = {}
    last: dict[int, Decision] = {}
    for d in db.session.scalars(select(Decision).order_by(Decision.id)):
        last[d.version_id] = d
    for version_id, d in last.items():
        if (start is None or d.signed_at >= start) and (end is None or d.signed_at < end):
            outcomes[version_id] = Outcome(d.version, d.decision.value)
    for report in db.session.scalars(
        select(ScreeningReport).where(ScreeningReport.is_flagged.is_(False))
    ):
        if report.version_id in outcomes:
            continue
        if (start is None or report.created_at >= start) and (
            end is None or report.created_at < end
        ):
            outcomes[report.version_id] = Outcome(report.version, "approve")
    if domain:
        reports = {r.version_id: r for r in db.session.scalars(select(ScreeningReport))}
        outcomes = {
            vid: o
            for vid, o in outcomes.items()
            if vid in reports and domain in reports[vid].domains
        }
    return [outcomes[k] for k in sorted(outcomes)]


def draw_sample(
    *,
    actor: User,
    size: int,
    start: Any = None,
    end: Any = None,
    domain: str | None = None,
    deadlines: Deadlines,
    seed: int | None = None,
) -> QualitySample:
    """Draw up to ``size`` decided versions at random and offer each to one uninvolved expert."""
    if not actor.has_role(Role.auditor, Role.admin):
        raise Forbidden("只有审计人员或管理员可以发起质检抽样")
    if not 1 <= size <= MAX_SAMPLE:
        raise InvalidInput(f"抽样数量须在 1 到 {MAX_SAMPLE} 之间", field="size")
    seed = seed if seed is not None else secrets.randbelow(2**31)
    population = decided_versions(start, end, domain)
    # A seeded generator so the recorded seed reproduces the draw; the seed itself comes from
    # `secrets`, which is what makes the sample unpredictable.
    chosen = random.Random(seed).sample(population, min(size, len(population)))  # nosec B311
    sample = QualitySample(
        created_by_id=actor.id,
        period_start=start,
        period_end=end,
        domain=domain,
        size=len(chosen),
        seed=seed,
    )
    db.session.add(sample)
    db.session.flush()
    pool = candidates()
    for entry in chosen:
        item = db.session.get(Item, entry.version.item_id)
        assert item is not None
        check = QualityCheck(
            sample_id=sample.id,
            item_id=item.id,
            version_id=entry.version.id,
            original_outcome=entry.outcome,
        )
        db.session.add(check)
        request = Request(
            domains=frozenset(),
            submitter_user_id=entry.version.created_by_id,
            submitter_unit_id=item.unit_id,
            submitter_unit_name=item.unit.name,
            excluded_expert_ids=frozenset(_involved_experts(item, None, None)),
        )
        selection = select_reviewers(pool, request, needed=1)
        if selection.chosen:
            expert = db.session.get(Expert, selection.chosen[0].expert_id)
            assert expert is not None
            now = utcnow()
            assignment = Assignment(
                item_id=item.id,
                version_id=entry.version.id,
                expert_id=expert.id,
                round=0,
                kind=QUALITY,
                risk_level="medium",
                state=AssignmentState.offered,
                offered_at=now,
                due_at=now + deadlines.accept("medium"),
            )
            db.session.add(assignment)
            db.session.flush()
            check.assignment_id = assignment.id
            notify(expert.user, "offer", item=item, title=f"质检复审邀请：{item.title}")
        db.session.flush()
    record_event(
        "quality.sample_drawn",
        actor=actor,
        subject_type="quality_sample",
        subject_id=sample.id,
        data={
            "size": sample.size,
            "requested": size,
            "domain": domain,
            "seed": seed,
            "population": len(population),
            "items": [c.item_id for c in sample.checks],
        },
    )
    return sample


def record_result(assignment: Assignment, decision: Decision) -> QualityCheck | None:
    """Store the re-reviewer's verdict; an overturn is a different outcome than the original."""
    check = db.session.scalar(
        select(QualityCheck).where(QualityCheck.assignment_id == assignment.id)
    )
    if check is None:
        return None
    check.result = decision.decision.value
    check.is_overturned = decision.decision is not DecisionKind(check.original_outcome)
    check.decided_at = decision.signed_at
    db.session.flush()
    return check


def sample_report(sample: QualitySample) -> dict[str, Any]:
    """Progress and overturn rate of one sample."""
    decided = [c for c in sample.checks if c.result is not None]
    overturned = sum(bool(c.is_overturned) for c in decided)
    return {
        "id": sample.id,
        "created_at": sample.created_at.isoformat(),
        "created_by": sample.created_by.username,
        "domain": sample.domain,
        "period_start": sample.period_start.isoformat() if sample.period_start else None,
        "period_end": sample.period_end.isoformat() if sample.period_end else None,
        "size": sample.size,
        "decided": len(decided),
        "overturned": overturned,
        "overturn_rate": round(overturned / len(decided), 4) if decided else None,
        "checks": [
            {
                "item_id": c.item_id,
                "version_id": c.version_id,
                "original": c.original_outcome,
                "result": c.result,
                "overturned": c.is_overturned,
                "assignment_id": c.assignment_id,
            }
            for c in sample.checks
        ],
    }

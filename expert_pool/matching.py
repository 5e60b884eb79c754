"""Pure reviewer selection: eligibility with recorded reasons, then ranking (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

RISK_REVIEWERS = {"none": 1, "low": 1, "medium": 1, "high": 2, "critical": 2}


@dataclass(frozen=True)
class Candidate:
    """What matching needs to know about one expert."""

    expert_id: int
    user_id: int
    unit_id: int | None
    primary_domains: frozenset[str]
    secondary_domains: frozenset[str] = frozenset()
    is_active: bool = True
    is_verified: bool = True
    is_senior: bool = False
    on_leave: bool = False
    load: int = 0
    max_load: int = 5
    conflict_units: frozenset[int] = frozenset()
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Request:
    """What is to be reviewed and by whom it must not be."""

    domains: frozenset[str]
    submitter_user_id: int
    submitter_unit_id: int
    risk_level: str = "medium"
    excluded_expert_ids: frozenset[int] = frozenset()


@dataclass
class Selection:
    """Chosen experts plus, for every expert not chosen, why."""

    chosen: list[Candidate] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    needed: int = 1

    @property
    def complete(self) -> bool:
        return len(self.chosen) >= self.needed


def refusal_reason(c: Candidate, req: Request) -> str | None:
    """Why ``c`` may not review ``req`` (None when eligible)."""
    if not c.is_active:
        return "inactive"
    if not c.is_verified:
        return "unverified"
    if c.on_leave:
        return "on_leave"
    if c.expert_id in req.excluded_expert_ids:
        return "already_involved"
    if c.user_id == req.submitter_user_id:
        return "conflict_submitter"
    if c.unit_id is not None and c.unit_id == req.submitter_unit_id:
        return "conflict_unit"
    if req.submitter_unit_id in c.conflict_units:
        return "conflict_declared"
    if c.load >= c.max_load:
        return "at_capacity"
    if req.domains and not (req.domains & (c.primary_domains | c.secondary_domains)):
        return "domain_mismatch"
    return None


def _rank_key(c: Candidate, req: Request) -> tuple[int, int, float]:
    fit = 0 if req.domains & c.primary_domains else 1
    waited = c.last_assigned_at.timestamp() if c.last_assigned_at else float("-inf")
    return (fit, c.load, waited)


def select_reviewers(
    candidates: Iterable[Candidate], req: Request, *, needed: int | None = None
) -> Selection:
    """Pick reviewers: primary domain first, then lowest load, then longest wait since last."""
    wanted = needed if needed is not None else RISK_REVIEWERS.get(req.risk_level, 1)
    selection = Selection(needed=wanted)
    eligible: list[Candidate] = []
    for c in candidates:
        reason = refusal_reason(c, req)
        if reason is None:
            eligible.append(c)
        else:
            selection.refused[c.expert_id] = reason
    eligible.sort(key=lambda c: _rank_key(c, req))
    if req.risk_level == "critical" and wanted >= 2:
        seniors = [c for c in eligible if c.is_senior]
        if seniors:
            selection.chosen.append(seniors[0])
    for c in eligible:
        if len(selection.chosen) >= wanted:
            break
        if c not in selection.chosen:
            selection.chosen.append(c)
    for c in eligible:
        if c not in selection.chosen:
            selection.refused[c.expert_id] = "ranked_lower"
    return selection


def ranked(candidates: Sequence[Candidate], req: Request) -> list[Candidate]:
    """All eligible candidates in rank order (for pull-mode previews and admin views)."""
    return sorted(
        (c for c in candidates if refusal_reason(c, req) is None), key=lambda c: _rank_key(c, req)
    )

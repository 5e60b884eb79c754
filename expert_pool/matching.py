"""Pure reviewer selection: eligibility with recorded reasons, then ranking (no I/O)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

#: Reviewers a version needs, by screening risk level.
RISK_REVIEWERS = {"none": 1, "low": 1, "medium": 1, "high": 2, "critical": 2}

#: Deadlines shrink for riskier versions (multiplier of the configured seconds).
RISK_DEADLINE_FACTOR = {"none": 1.0, "low": 1.0, "medium": 1.0, "high": 0.5, "critical": 0.25}

REFUSAL_LABELS = {
    "inactive": "已停用",
    "unverified": "未认证",
    "on_leave": "休假中",
    "already_involved": "已参与过此稿件（申诉/仲裁须回避）",
    "conflict_submitter": "利益冲突：提交人本人",
    "conflict_unit": "利益冲突：与提交单位相同",
    "conflict_declared_unit": "利益冲突：申报的单位",
    "conflict_declared_person": "利益冲突：申报的人员",
    "conflict_declared_company": "利益冲突：稿件涉及申报的企业",
    "at_capacity": "已达最大同时审核数",
    "domain_mismatch": "领域不匹配",
    "not_senior": "仲裁须由资深专家担任",
    "ranked_lower": "符合条件但排序靠后",
}


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
    conflict_units: frozenset[str] = frozenset()
    conflict_companies: frozenset[str] = frozenset()
    conflict_people: frozenset[str] = frozenset()
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Request:
    """What is to be reviewed and by whom it must not be."""

    domains: frozenset[str]
    submitter_user_id: int
    submitter_unit_id: int
    risk_level: str = "medium"
    excluded_expert_ids: frozenset[int] = frozenset()
    submitter_unit_name: str = ""
    submitter_names: frozenset[str] = frozenset()
    text: str = ""
    preferred_expert_ids: tuple[int, ...] = ()
    seniors_only: bool = False

    @functools.cached_property
    def folded_text(self) -> str:
        """The text case-folded once per request (company conflicts are matched in it)."""
        return self.text.casefold()


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
    if req.submitter_unit_name and req.submitter_unit_name in c.conflict_units:
        return "conflict_declared_unit"
    if c.conflict_people & req.submitter_names:
        return "conflict_declared_person"
    if c.conflict_companies and any(
        name.casefold() in req.folded_text or name == req.submitter_unit_name
        for name in c.conflict_companies
        if name
    ):
        return "conflict_declared_company"
    if req.seniors_only and not c.is_senior:
        return "not_senior"
    if c.load >= c.max_load:
        return "at_capacity"
    if (
        req.domains
        and not (req.domains & (c.primary_domains | c.secondary_domains))
        and c.expert_id not in req.preferred_expert_ids  # a revision goes back to who asked
    ):
        return "domain_mismatch"
    return None


def _rank_key(c: Candidate, req: Request) -> tuple[int, int, int, float]:
    preferred = 0 if c.expert_id in req.preferred_expert_ids else 1
    fit = 0 if (not req.domains or req.domains & c.primary_domains) else 1
    waited = c.last_assigned_at.timestamp() if c.last_assigned_at else float("-inf")
    return (preferred, fit, c.load, waited)


def select_reviewers(
    candidates: Iterable[Candidate], req: Request, *, needed: int | None = None
) -> Selection:
    """Pick reviewers: earlier reviewers of a revision first, primary domain, load, longest wait."""
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
    eligible = (c for c in candidates if refusal_reason(c, req) is None)
    return sorted(eligible, key=lambda c: _rank_key(c, req))

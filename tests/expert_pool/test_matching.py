"""Pure reviewer selection: eligibility reasons and rank order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from expert_pool.matching import Candidate, Request, refusal_reason, select_reviewers

REQ = Request(
    domains=frozenset({"医学健康"}),
    submitter_user_id=100,
    submitter_unit_id=7,
    submitter_unit_name="甲报社",
    submitter_names=frozenset({"wang", "王编辑"}),
    text="某某保健品公司的新产品宣传",
)


def cand(expert_id: int, **kw: object) -> Candidate:
    base: dict[str, object] = {
        "expert_id": expert_id,
        "user_id": expert_id + 1000,
        "unit_id": 1,
        "primary_domains": frozenset({"医学健康"}),
    }
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (cand(1), None),
        (cand(1, is_active=False), "inactive"),
        (cand(1, is_verified=False), "unverified"),
        (cand(1, on_leave=True), "on_leave"),
        (cand(1, user_id=100), "conflict_submitter"),
        (cand(1, unit_id=7), "conflict_unit"),
        (cand(1, conflict_units=frozenset({"甲报社"})), "conflict_declared_unit"),
        (cand(1, conflict_units=frozenset({"乙电视台"})), None),
        (cand(1, conflict_people=frozenset({"王编辑"})), "conflict_declared_person"),
        (cand(1, conflict_companies=frozenset({"某某保健品公司"})), "conflict_declared_company"),
        (cand(1, conflict_companies=frozenset({"甲报社"})), "conflict_declared_company"),
        (cand(1, conflict_companies=frozenset({"无关公司"})), None),
        (cand(1, load=4, max_load=5), None),
        (cand(1, load=5, max_load=5), "at_capacity"),
        (cand(1, primary_domains=frozenset({"交通"})), "domain_mismatch"),
        (
            cand(1, primary_domains=frozenset({"交通"}), secondary_domains=frozenset({"医学健康"})),
            None,
        ),
    ],
)
def test_eligibility(candidate: Candidate, reason: str | None) -> None:
    assert refusal_reason(candidate, REQ) == reason


def test_seniors_only_for_arbitration() -> None:
    req = Request(
        domains=REQ.domains, submitter_user_id=100, submitter_unit_id=7, seniors_only=True
    )
    assert refusal_reason(cand(1), req) == "not_senior"
    assert refusal_reason(cand(1, is_senior=True), req) is None


def test_revision_goes_back_to_who_asked_for_changes() -> None:
    req = Request(
        domains=REQ.domains, submitter_user_id=100, submitter_unit_id=7, preferred_expert_ids=(3,)
    )
    pool = [
        cand(1),
        cand(2),
        cand(3, load=4, primary_domains=frozenset(), secondary_domains=frozenset({"医学健康"})),
    ]
    assert [c.expert_id for c in select_reviewers(pool, req, needed=1).chosen] == [3]


def test_excluded_experts_are_refused() -> None:
    req = Request(
        domains=REQ.domains,
        submitter_user_id=100,
        submitter_unit_id=7,
        excluded_expert_ids=frozenset({1}),
    )
    assert refusal_reason(cand(1), req) == "already_involved"


def test_rank_primary_then_load_then_longest_wait() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 6, 1, tzinfo=UTC)
    pool = [
        cand(1, primary_domains=frozenset(), secondary_domains=frozenset({"医学健康"})),
        cand(2, load=2),
        cand(3, load=1, last_assigned_at=late),
        cand(4, load=1, last_assigned_at=early),
    ]
    chosen = select_reviewers(pool, REQ, needed=4).chosen
    assert [c.expert_id for c in chosen] == [4, 3, 2, 1]


@pytest.mark.parametrize(("risk", "needed"), [("medium", 1), ("high", 2), ("critical", 2)])
def test_reviewers_by_risk(risk: str, needed: int) -> None:
    req = Request(domains=REQ.domains, submitter_user_id=100, submitter_unit_id=7, risk_level=risk)
    selection = select_reviewers([cand(i) for i in range(1, 5)], req)
    assert len(selection.chosen) == needed and selection.complete


def test_critical_includes_a_senior() -> None:
    req = Request(
        domains=REQ.domains, submitter_user_id=100, submitter_unit_id=7, risk_level="critical"
    )
    pool = [cand(1), cand(2), cand(3, is_senior=True, load=3)]
    chosen = select_reviewers(pool, req).chosen
    assert any(c.is_senior for c in chosen) and len(chosen) == 2


def test_refusals_are_recorded_and_incomplete_is_reported() -> None:
    selection = select_reviewers([cand(1, unit_id=7), cand(2, is_verified=False)], REQ)
    assert not selection.complete
    assert selection.refused == {1: "conflict_unit", 2: "unverified"}


def test_every_refusal_has_a_chinese_label() -> None:
    from expert_pool.matching import REFUSAL_LABELS

    codes = {
        "inactive",
        "unverified",
        "on_leave",
        "already_involved",
        "conflict_submitter",
        "conflict_unit",
        "conflict_declared_unit",
        "conflict_declared_person",
        "conflict_declared_company",
        "at_capacity",
        "domain_mismatch",
        "not_senior",
        "ranked_lower",
    }
    assert codes == set(REFUSAL_LABELS)

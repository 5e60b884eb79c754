"""Queue operations: offer flagged versions to experts, accept/decline, decide, expire."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from expert_pool.matching import RISK_REVIEWERS, Candidate, Request, select_reviewers
from expert_pool.models import OPEN_STATES, Assignment, AssignmentState, Expert
from review.audit import SYSTEM, record_event
from review.db import db, utcnow
from review.errors import Conflict, Forbidden, InvalidInput
from review.lifecycle import Action, ItemState
from review.models import Decision, DecisionKind, Finding, Item, Role, ScreeningReport, Unit, User
from review.operations import clean_text, conclude_review, decision_payload, transition
from review.signing import Signer

log = logging.getLogger(__name__)

VERDICTS = ("confirmed", "false_positive", "uncertain")


@dataclass(frozen=True)
class Deadlines:
    """Seconds to accept an offer and to decide after accepting."""

    accept_within: int
    decide_within: int


# --- the pool ----------------------------------------------------------------------------------


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
        title=clean_text(title, "职称", max_chars=100),
        unit_id=unit.id if unit else user.unit_id,
        domains=list(dict.fromkeys(domains)),
        secondary_domains=list(dict.fromkeys(secondary_domains)),
        is_verified=verified,
        verified_at=utcnow() if verified else None,
        is_senior=is_senior,
        max_load=max_load,
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


def expert_loads() -> dict[int, int]:
    """Open assignments per expert."""
    rows = db.session.execute(
        select(Assignment.expert_id, func.count())
        .where(Assignment.state.in_(OPEN_STATES))
        .group_by(Assignment.expert_id)
    ).all()
    return {expert_id: count for expert_id, count in rows}


def _candidates() -> list[Candidate]:
    now = utcnow()
    loads = expert_loads()
    return [
        Candidate(
            expert_id=e.id,
            user_id=e.user_id,
            unit_id=e.unit_id,
            primary_domains=frozenset(e.domains),
            secondary_domains=frozenset(e.secondary_domains),
            is_active=e.is_active and e.user.is_active_user,
            is_verified=e.is_verified,
            is_senior=e.is_senior,
            on_leave=e.on_leave(now),
            load=loads.get(e.id, 0),
            max_load=e.max_load,
            conflict_units=frozenset(e.conflict_unit_ids),
            last_assigned_at=e.last_assigned_at,
        )
        for e in db.session.scalars(select(Expert).order_by(Expert.id))
    ]


def visible_to_expert(item: Item, user: User) -> bool:
    """Experts see only items offered or assigned to them."""
    expert = Expert.for_user(user)
    if expert is None:
        return False
    return bool(
        db.session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.item_id == item.id, Assignment.expert_id == expert.id)
        )
    )


# --- offering ----------------------------------------------------------------------------------


def _current_round(item: Item) -> int:
    return (
        db.session.scalar(select(func.max(Assignment.round)).where(Assignment.item_id == item.id))
        or 1
    )


def _offer(
    item: Item, expert: Expert, *, round_: int, deadlines: Deadlines, actor: Any
) -> Assignment:
    now = utcnow()
    assert item.current_version_id is not None
    assignment = Assignment(
        item_id=item.id,
        version_id=item.current_version_id,
        expert_id=expert.id,
        round=round_,
        state=AssignmentState.offered,
        offered_at=now,
        due_at=now + timedelta(seconds=deadlines.accept_within),
    )
    expert.last_assigned_at = now
    db.session.add(assignment)
    db.session.flush()
    record_event(
        "assignment.offered",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "assignment": assignment.id,
            "expert": expert.name,
            "version": item.current_version.number if item.current_version else None,
            "due_at": assignment.due_at.isoformat(),
        },
    )
    return assignment


def assign_reviewers(item: Item, *, deadlines: Deadlines, actor: Any = SYSTEM) -> list[Assignment]:
    """Offer the item's current version to as many eligible experts as its risk needs.

    A flagged item moves to in_review once somebody is offered it; when nobody (or too few)
    is eligible the item is marked as needing an admin, never dropped.
    """
    version = item.current_version
    if version is None:
        raise Conflict("稿件没有可审核的版本")
    report = db.session.scalar(
        select(ScreeningReport)
        .where(ScreeningReport.version_id == version.id)
        .order_by(ScreeningReport.id.desc())
    )
    risk = report.risk_level if report else "medium"
    round_ = _current_round(item)
    existing = db.session.scalars(
        select(Assignment).where(Assignment.version_id == version.id, Assignment.round == round_)
    ).all()
    open_or_done = [a for a in existing if a.state in (*OPEN_STATES, AssignmentState.completed)]
    needed = max(RISK_REVIEWERS.get(risk, 1) - len(open_or_done), 0)
    if needed == 0:
        return []
    excluded = {a.expert_id for a in existing}
    if round_ > 1:  # an appeal: nobody who decided before
        excluded |= set(
            db.session.scalars(
                select(Assignment.expert_id).where(
                    Assignment.item_id == item.id, Assignment.round < round_
                )
            )
        )
    request = Request(
        domains=frozenset(report.domains if report else ()),
        submitter_user_id=version.created_by_id,
        submitter_unit_id=item.unit_id,
        risk_level=risk,
        excluded_expert_ids=frozenset(excluded),
    )
    selection = select_reviewers(_candidates(), request, needed=needed)
    if not selection.chosen and request.domains:
        # Nobody in the detected domains: any eligible expert is better than nobody.
        selection = select_reviewers(
            _candidates(),
            Request(
                domains=frozenset(),
                submitter_user_id=request.submitter_user_id,
                submitter_unit_id=request.submitter_unit_id,
                risk_level=risk,
                excluded_expert_ids=request.excluded_expert_ids,
            ),
            needed=needed,
        )
    experts = {
        e.id: e
        for e in db.session.scalars(
            select(Expert).where(Expert.id.in_([c.expert_id for c in selection.chosen]))
        )
    }
    offered = [
        _offer(item, experts[c.expert_id], round_=round_, deadlines=deadlines, actor=actor)
        for c in selection.chosen
    ]
    if offered and item.state in (ItemState.flagged, ItemState.cleared, ItemState.recalled):
        transition(
            item,
            Action.assign,
            actor=actor,
            data={"experts": [experts[c.expert_id].name for c in selection.chosen]},
        )
    if not selection.complete:
        item.needs_admin = True
        record_event(
            "queue.needs_admin",
            actor=actor,
            subject_type="item",
            subject_id=item.id,
            data={
                "needed": needed,
                "offered": len(offered),
                "refused": {str(k): v for k, v in selection.refused.items()},
            },
        )
    return offered


# --- the expert's side -------------------------------------------------------------------------


def _own(assignment: Assignment, actor: User) -> Expert:
    expert = Expert.for_user(actor)
    if expert is None or assignment.expert_id != expert.id:
        raise Forbidden("这不是分配给您的审核任务")
    return expert


def accept_assignment(assignment: Assignment, *, actor: User, deadlines: Deadlines) -> None:
    """The expert takes the offer; the decision deadline starts."""
    _own(assignment, actor)
    if assignment.state is not AssignmentState.offered:
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能接受", code="illegal_transition"
        )
    now = utcnow()
    assignment.state = AssignmentState.accepted
    assignment.accepted_at = now
    assignment.due_at = now + timedelta(seconds=deadlines.decide_within)
    db.session.flush()
    record_event(
        "assignment.accepted",
        actor=actor,
        subject_type="item",
        subject_id=assignment.item_id,
        data={"assignment": assignment.id},
    )


def _end(assignment: Assignment, state: AssignmentState, reason: str, *, actor: Any) -> None:
    assignment.state = state
    assignment.ended_at = utcnow()
    assignment.ended_reason = reason
    db.session.flush()
    record_event(
        f"assignment.{state.value}",
        actor=actor,
        subject_type="item",
        subject_id=assignment.item_id,
        data={"assignment": assignment.id, "reason": reason},
    )


def decline_assignment(
    assignment: Assignment, *, actor: User, reason: object, deadlines: Deadlines
) -> list[Assignment]:
    """The expert declines with a reason; the version is offered to the next eligible expert."""
    _own(assignment, actor)
    if assignment.state not in OPEN_STATES:
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能谢绝", code="illegal_transition"
        )
    text = clean_text(reason, "谢绝原因", max_chars=2000, required=True)
    _end(assignment, AssignmentState.declined, f"declined: {text}", actor=actor)
    return assign_reviewers(assignment.item, deadlines=deadlines, actor=actor)


def sweep_deadlines(*, deadlines: Deadlines) -> int:
    """Expire overdue offers and reviews and reassign them; returns how many expired."""
    now = utcnow()
    overdue = db.session.scalars(
        select(Assignment).where(Assignment.state.in_(OPEN_STATES), Assignment.due_at < now)
    ).all()
    for assignment in overdue:
        reason = (
            "expired: not accepted in time"
            if assignment.state is AssignmentState.offered
            else "expired: no decision in time"
        )
        _end(assignment, AssignmentState.expired, reason, actor=SYSTEM)
        assign_reviewers(assignment.item, deadlines=deadlines)
    return len(overdue)


def decide(
    assignment: Assignment,
    *,
    actor: User,
    decision: object,
    comment: object,
    references: object,
    finding_verdicts: object,
    password_ok: bool,
    signer: Signer,
    expected_lock_version: int | None = None,
) -> Decision:
    """Sign one expert's decision on the assigned version; conclude when all reviewers are in."""
    expert = _own(assignment, actor)
    if not password_ok:
        raise Forbidden(
            "密码确认失败：签署审核结论需要重新输入您的登录密码", code="password_required"
        )
    try:
        kind = DecisionKind(str(decision))
    except ValueError:
        raise InvalidInput(
            "审核结论只能是 approve、request_changes 或 reject", field="decision"
        ) from None
    text = clean_text(comment, "审核意见", max_chars=20_000)
    if kind in (DecisionKind.reject, DecisionKind.request_changes) and not text.strip():
        raise InvalidInput("驳回或要求修改时必须填写审核意见", field="comment")
    refs = _references(references)
    if kind is DecisionKind.reject and not refs:
        raise InvalidInput("驳回时至少需要提供一条参考依据", field="references")
    verdicts = _verdicts(finding_verdicts, assignment)

    item = assignment.item
    if assignment.state not in OPEN_STATES:
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能再签署结论", code="illegal_transition"
        )
    if item.current_version_id != assignment.version_id:
        raise Conflict("稿件已有新版本，此任务对应的版本已失效", code="stale_version")
    # Serialise deciders on the item row: of two concurrent decisions, the second sees the first.
    conditions = [Item.id == item.id, Item.state == ItemState.in_review]
    if expected_lock_version is not None:
        conditions.append(Item.lock_version == expected_lock_version)
    moved = db.session.execute(
        update(Item)
        .where(*conditions)
        .values(lock_version=Item.lock_version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise Conflict("稿件已被其他操作改变（或不在审核中），请刷新页面后重试", code="conflict")
    db.session.refresh(item)
    db.session.refresh(assignment)
    if assignment.state not in OPEN_STATES:
        raise Conflict("该任务已签署过结论", code="conflict")

    version = assignment.version
    row = Decision(
        assignment_id=assignment.id,
        item_id=item.id,
        version_id=version.id,
        content_sha256=version.content_sha256,
        expert_user_id=actor.id,
        decision=kind,
        comment=text,
        references=refs,
        finding_verdicts=verdicts,
        signed_at=utcnow(),
        signature="",
    )
    row.signature = signer.sign(decision_payload(row))
    db.session.add(row)
    if assignment.state is AssignmentState.offered:
        assignment.accepted_at = utcnow()
    assignment.state = AssignmentState.completed
    assignment.ended_at = utcnow()
    assignment.ended_reason = "decided"
    db.session.flush()
    record_event(
        "review.decided",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "assignment": assignment.id,
            "decision": kind.value,
            "version": version.number,
            "content_sha256": version.content_sha256,
            "expert": expert.name,
            "verdicts": verdicts,
            "references": refs,
        },
    )
    _maybe_conclude(item, assignment, actor=actor)
    return row


def _maybe_conclude(item: Item, assignment: Assignment, *, actor: User) -> None:
    round_assignments = db.session.scalars(
        select(Assignment).where(
            Assignment.version_id == assignment.version_id, Assignment.round == assignment.round
        )
    ).all()
    if any(a.is_open for a in round_assignments):
        return
    decisions = db.session.scalars(
        select(Decision).where(Decision.assignment_id.in_([a.id for a in round_assignments]))
    ).all()
    kinds = {d.decision for d in decisions}
    # Request changes wins over approve; a reject stands (arbitration comes with the queue work).
    if DecisionKind.reject in kinds:
        outcome = DecisionKind.reject
    elif DecisionKind.request_changes in kinds:
        outcome = DecisionKind.request_changes
    else:
        outcome = DecisionKind.approve
    conclude_review(item, outcome, actor=actor, data={"decisions": [d.id for d in decisions]})


def _references(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [line for line in value.splitlines()]
    if not isinstance(value, list):
        raise InvalidInput("参考依据必须是文本列表", field="references")
    refs = [clean_text(v, "参考依据", max_chars=2000).strip() for v in value]
    return [r for r in refs if r][:50]


def _verdicts(value: object, assignment: Assignment) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("逐条判定必须是对象：{发现编号: 判定}", field="finding_verdicts")
    allowed_ids = {
        str(fid)
        for fid in db.session.scalars(
            select(Finding.id).where(Finding.version_id == assignment.version_id)
        )
    }
    out: dict[str, str] = {}
    for key, verdict in value.items():
        if str(key) not in allowed_ids:
            raise InvalidInput(f"发现编号 {key} 不属于此版本", field="finding_verdicts")
        if verdict not in VERDICTS:
            raise InvalidInput(
                "判定只能是 confirmed、false_positive 或 uncertain", field="finding_verdicts"
            )
        out[str(key)] = str(verdict)
    return out

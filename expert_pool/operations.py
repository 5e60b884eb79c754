"""Queue operations: offer, claim, accept/decline, remind, expire, decide, arbitrate, appeal."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from expert_pool.matching import (
    RISK_DEADLINE_FACTOR,
    RISK_REVIEWERS,
    Request,
    ranked,
    select_reviewers,
)
from expert_pool.models import OPEN_STATES, Assignment, AssignmentState, Expert, Selection
from expert_pool.notifications import notify
from expert_pool.pool import candidates
from review import operations as review_ops
from review.audit import SYSTEM, record_event
from review.db import db, utcnow
from review.errors import Conflict, Forbidden, InvalidInput, NotFound
from review.lifecycle import Action, ItemState
from review.models import (
    DECISION_LABELS,
    Decision,
    DecisionKind,
    Finding,
    Item,
    Publication,
    Role,
    ScreeningReport,
    User,
    Version,
)
from review.operations import clean_text, conclude_review, decision_payload, enqueue, transition
from review.signing import Signer

log = logging.getLogger(__name__)

VERDICTS = ("confirmed", "false_positive", "uncertain")
#: After this many declined or expired offers for one version, an admin takes over.
MAX_FAILED_OFFERS = 3
#: A reminder goes out once this share of the window has passed.
REMIND_AT = 0.75

REVIEW, ARBITRATION, QUALITY = "review", "arbitration", "quality"


@dataclass(frozen=True)
class Deadlines:
    """Seconds to accept an offer and to decide after accepting (before the risk factor)."""

    accept_within: int
    decide_within: int

    def accept(self, risk: str) -> timedelta:
        """Time to accept an offer on a version of this risk."""
        return timedelta(seconds=self.accept_within * RISK_DEADLINE_FACTOR.get(risk, 1.0))

    def decide(self, risk: str) -> timedelta:
        """Time to decide once accepted."""
        return timedelta(seconds=self.decide_within * RISK_DEADLINE_FACTOR.get(risk, 1.0))


def visible_to_expert(item: Item, user: User) -> bool:
    """Experts see only items offered or assigned to them (see ``Assignment.shows_text``: a
    revoked offer, or an offer of a withdrawn item, that they never accepted shows nothing)."""
    expert = Expert.for_user(user)
    if expert is None:
        return False
    rows = db.session.scalars(
        select(Assignment).where(Assignment.item_id == item.id, Assignment.expert_id == expert.id)
    )
    return any(a.shows_text for a in rows)


# --- choosing reviewers ------------------------------------------------------------------------


def _report(version: Version) -> ScreeningReport | None:
    return db.session.scalar(
        select(ScreeningReport)
        .where(ScreeningReport.version_id == version.id)
        .order_by(ScreeningReport.id.desc())
    )


def current_round(item: Item) -> int:
    """The review round: 1, then 2 after an appeal."""
    return (
        db.session.scalar(select(func.max(Assignment.round)).where(Assignment.item_id == item.id))
        or 1
    )


def _round_assignments(
    item: Item, version_id: int, round_: int, kind: str | None = None
) -> list[Assignment]:
    query = select(Assignment).where(
        Assignment.item_id == item.id,
        Assignment.version_id == version_id,
        Assignment.round == round_,
    )
    if kind:
        query = query.where(Assignment.kind == kind)
    return list(db.session.scalars(query.order_by(Assignment.id)))


def _request(
    item: Item,
    version: Version,
    risk: str,
    *,
    excluded: set[int],
    seniors_only: bool = False,
    with_domains: bool = True,
) -> Request:
    report = _report(version)
    submitter = db.session.get(User, version.created_by_id)
    preferred = tuple(
        db.session.scalars(
            select(Assignment.expert_id)
            .join(Decision, Decision.assignment_id == Assignment.id)
            .where(Decision.item_id == item.id, Decision.decision == DecisionKind.request_changes)
            .order_by(Decision.id.desc())
        )
    )
    return Request(
        domains=frozenset(report.domains if (report and with_domains) else ()),
        submitter_user_id=version.created_by_id,
        submitter_unit_id=item.unit_id,
        risk_level=risk,
        excluded_expert_ids=frozenset(excluded),
        submitter_unit_name=item.unit.name,
        submitter_names=frozenset(
            n for n in ((submitter.username, submitter.display_name) if submitter else ()) if n
        ),
        text=f"{version.title}\n{version.body}",
        preferred_expert_ids=preferred,
        seniors_only=seniors_only,
    )


def _offer(
    item: Item,
    expert: Expert,
    *,
    round_: int,
    kind: str,
    risk: str,
    deadlines: Deadlines,
    actor: Any,
    accepted: bool = False,
) -> Assignment:
    now = utcnow()
    assert item.current_version_id is not None
    assignment = Assignment(
        item_id=item.id,
        version_id=item.current_version_id,
        expert_id=expert.id,
        round=round_,
        kind=kind,
        risk_level=risk,
        state=AssignmentState.accepted if accepted else AssignmentState.offered,
        offered_at=now,
        accepted_at=now if accepted else None,
        due_at=now + (deadlines.decide(risk) if accepted else deadlines.accept(risk)),
    )
    expert.last_assigned_at = now
    db.session.add(assignment)
    db.session.flush()
    record_event(
        "assignment.claimed" if accepted else "assignment.offered",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "assignment": assignment.id,
            "expert": expert.name,
            "kind": kind,
            "round": round_,
            "version": item.current_version.number if item.current_version else None,
            "due_at": assignment.due_at.isoformat(),
        },
    )
    if not accepted:
        what = "仲裁" if kind == ARBITRATION else "审核"
        notify(
            expert.user,
            "offer",
            item=item,
            title=f"新的{what}邀请：{item.title}",
            body=f"请在 {assignment.due_at:%Y-%m-%d %H:%M} UTC 前接受或谢绝。",
        )
    return assignment


def _record_selection(
    item: Item,
    version: Version,
    kind: str,
    needed: int,
    chosen: list[int],
    refused: Mapping[int, str],
    actor: Any,
) -> None:
    """Keep every refusal reason in ``selections``; the ledger gets the counts and the row id."""
    row = Selection(
        item_id=item.id,
        version_id=version.id,
        kind=kind,
        needed=needed,
        chosen=chosen,
        refused={str(k): v for k, v in refused.items()},
    )
    db.session.add(row)
    db.session.flush()
    record_event(
        "queue.selection",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "selection": row.id,
            "kind": kind,
            "needed": needed,
            "chosen": chosen,
            "refused_by_reason": dict(Counter(refused.values())),
        },
    )


def _escalate(item: Item, reason: str, *, actor: Any) -> None:
    if item.needs_admin:
        return
    item.needs_admin = True
    db.session.flush()
    record_event(
        "queue.escalated",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={"reason": reason},
    )
    for admin in db.session.scalars(
        select(User).where(User.role == Role.admin, User.is_active_user.is_(True))
    ):
        notify(
            admin,
            "escalated",
            item=item,
            title=f"稿件需要管理员处理：{item.title}",
            body=reason,
            email=False,
        )


def assign_reviewers(item: Item, *, deadlines: Deadlines, actor: Any = SYSTEM) -> list[Assignment]:
    """Offer the current version to as many eligible experts as its risk needs.

    A flagged item moves to in_review once somebody is offered it. When nobody (or too few)
    is eligible, or offers failed three times, the item is marked as needing an admin: never
    dropped, never decided automatically.
    """
    version = item.current_version
    if version is None:
        raise Conflict("稿件没有可审核的版本")
    if item.needs_admin or item.state is ItemState.withdrawn:
        return []  # a withdrawn text is never offered to anyone
    report = _report(version)
    risk = report.risk_level if report else "medium"
    round_ = current_round(item)
    kind = _stage(item, version.id, round_)
    existing = _round_assignments(item, version.id, round_, kind)
    needed_total = 1 if kind == ARBITRATION else RISK_REVIEWERS.get(risk, 1)
    if kind == REVIEW:
        # A revision answering a change request goes back to every expert who asked, even
        # when the rules now rate it lower (or clear it).
        needed_total = max(needed_total, len(_askers(item, version.id, round_)))
        item.reviewers_needed = needed_total
    active = [a for a in existing if a.state in (*OPEN_STATES, AssignmentState.completed)]
    needed = max(needed_total - len(active), 0)
    if needed == 0:
        return []
    failed = sum(a.state in (AssignmentState.declined, AssignmentState.expired) for a in existing)
    if failed >= MAX_FAILED_OFFERS:
        _escalate(item, f"已有 {failed} 次邀请被谢绝或超时", actor=actor)
        return []
    excluded = (
        _involved_experts(item, version.id, round_)
        if kind == ARBITRATION
        else {a.expert_id for a in existing}
    )
    if kind == ARBITRATION:  # arbitration: nobody who was involved before
        excluded |= _involved_experts(item, None, None)
    elif round_ > 1:  # an appeal or re-review round: nobody from the rounds before it
        excluded |= _earlier_rounds_experts(item, round_)
    pool = candidates()
    request = _request(item, version, risk, excluded=excluded, seniors_only=kind == ARBITRATION)
    selection = select_reviewers(pool, request, needed=needed)
    if not selection.chosen and request.domains:
        # Nobody in the detected domains: any eligible expert is better than nobody.
        request = _request(
            item,
            version,
            risk,
            excluded=excluded,
            seniors_only=kind == ARBITRATION,
            with_domains=False,
        )
        selection = select_reviewers(pool, request, needed=needed)
    _record_selection(
        item,
        version,
        kind,
        needed,
        [c.expert_id for c in selection.chosen],
        selection.refused,
        actor,
    )
    experts = {
        e.id: e
        for e in db.session.scalars(
            select(Expert).where(Expert.id.in_([c.expert_id for c in selection.chosen]))
        )
    }
    offered = [
        _offer(
            item,
            experts[c.expert_id],
            round_=round_,
            kind=kind,
            risk=risk,
            deadlines=deadlines,
            actor=actor,
        )
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
        _escalate(item, f"需要 {needed} 位专家，只有 {len(offered)} 位符合条件", actor=actor)
    return offered


def _earlier_rounds_experts(item: Item, round_: int) -> set[int]:
    """Experts of the rounds before ``round_``: an appeal or re-review round never has them,
    while a revision inside the round goes back to the round's own experts."""
    return set(
        db.session.scalars(
            select(Assignment.expert_id).where(
                Assignment.item_id == item.id, Assignment.round < round_
            )
        )
    )


def _askers(item: Item, version_id: int, round_: int) -> set[int]:
    """The experts of this round who asked for changes on the latest earlier version that had
    such a request (the experts a revision goes back to)."""
    asked = (
        select(Assignment.expert_id, Decision.version_id)
        .join(Decision, Decision.assignment_id == Assignment.id)
        .where(
            Assignment.item_id == item.id,
            Assignment.round == round_,
            Assignment.kind == REVIEW,
            Assignment.version_id != version_id,
            Decision.decision == DecisionKind.request_changes,
        )
    )
    rows = db.session.execute(asked).all()
    if not rows:
        return set()
    latest = max(v for _e, v in rows)
    return {e for e, v in rows if v == latest}


def _involved_experts(item: Item, version_id: int | None, round_: int | None) -> set[int]:
    query = select(Assignment.expert_id).where(Assignment.item_id == item.id)
    if version_id is not None:
        query = query.where(Assignment.version_id == version_id)
    if round_ is not None:
        query = query.where(Assignment.round == round_)
    return set(db.session.scalars(query))


def admin_assign(item: Item, expert: Expert, *, actor: User, deadlines: Deadlines) -> Assignment:
    """An admin hands a waiting version to a chosen expert (eligibility still applies)."""
    if not actor.has_role(Role.admin):
        raise Forbidden("只有管理员可以手动分配")
    version = item.current_version
    if version is None or item.state not in (
        ItemState.flagged,
        ItemState.in_review,
        ItemState.cleared,
    ):
        raise Conflict("该稿件当前不在等待审核的状态", code="illegal_transition")
    report = _report(version)
    risk = report.risk_level if report else "medium"
    round_ = current_round(item)
    kind = _stage(item, version.id, round_)
    excluded = {a.expert_id for a in _round_assignments(item, version.id, round_) if a.is_open}
    if kind == ARBITRATION:
        excluded |= _involved_experts(item, None, None)
    elif round_ > 1:
        excluded |= _earlier_rounds_experts(item, round_)
    request = _request(
        item, version, risk, excluded=excluded, seniors_only=kind == ARBITRATION, with_domains=False
    )
    from expert_pool.matching import refusal_reason

    reason = refusal_reason(candidates([expert])[0], request)
    if reason is not None:
        from expert_pool.matching import REFUSAL_LABELS

        raise Conflict(f"不能分配给该专家：{REFUSAL_LABELS.get(reason, reason)}", code="ineligible")
    assignment = _offer(
        item, expert, round_=round_, kind=kind, risk=risk, deadlines=deadlines, actor=actor
    )
    item.needs_admin = False
    if item.state in (ItemState.flagged, ItemState.cleared):
        transition(item, Action.assign, actor=actor, data={"experts": [expert.name], "by": "admin"})
    return assignment


# --- pull mode ---------------------------------------------------------------------------------


def waiting_items(limit: int = 200) -> list[Item]:
    """Versions that still need reviewers, oldest first (flagged, or in review but short)."""
    open_or_done = (
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.item_id == Item.id,
            Assignment.version_id == Item.current_version_id,
            Assignment.state.in_([*OPEN_STATES, AssignmentState.completed]),
            Assignment.kind == REVIEW,
        )
        .correlate(Item)
        .scalar_subquery()
    )
    return list(
        db.session.scalars(
            select(Item)
            .where(Item.state.in_([ItemState.flagged, ItemState.in_review]))
            .where(open_or_done < Item.reviewers_needed)
            .order_by(Item.state_changed_at, Item.id)
            .limit(limit)
        )
    )


def claim_next(user: User, *, deadlines: Deadlines) -> Assignment | None:
    """Pull mode: the expert takes the oldest waiting version they may review; never twice.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on the item row, so a row another claimer holds is
    skipped. SQLite: transactions take the write lock at BEGIN, so claims run one at a time.
    Both: a conditional UPDATE of the item's lock_version guards against stale reads.
    """
    expert = Expert.for_user(user)
    if expert is None:
        raise Forbidden("您尚未加入专家库")
    me = candidates([expert])[0]
    for item in waiting_items():
        version = item.current_version
        if version is None:
            continue
        report = _report(version)
        risk = report.risk_level if report else "medium"
        round_ = current_round(item)
        existing = _round_assignments(item, version.id, round_, REVIEW)
        excluded = {a.expert_id for a in existing}
        if round_ > 1:
            excluded |= _earlier_rounds_experts(item, round_)
        if not ranked([me], _request(item, version, risk, excluded=excluded)):
            continue
        # Lock the row without waiting (PostgreSQL; SQLite already holds its write lock):
        # a row another claimer holds is skipped, so claimers never queue up or deadlock.
        locked = db.session.scalar(
            select(Item.id)
            .where(Item.id == item.id, Item.state.in_([ItemState.flagged, ItemState.in_review]))
            .with_for_update(skip_locked=True)
        )
        if locked is None:
            continue
        db.session.refresh(item)
        won = db.session.execute(
            update(Item)
            .where(Item.id == item.id, Item.lock_version == item.lock_version)
            .values(lock_version=Item.lock_version + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            continue
        db.session.refresh(item)
        needed = max(item.reviewers_needed, 1)
        active = [
            a
            for a in _round_assignments(item, version.id, round_, REVIEW)
            if a.state in (*OPEN_STATES, AssignmentState.completed)
        ]
        if len(active) >= needed or any(a.expert_id == expert.id for a in active):
            continue
        assignment = _offer(
            item,
            expert,
            round_=round_,
            kind=REVIEW,
            risk=risk,
            deadlines=deadlines,
            actor=user,
            accepted=True,
        )
        if item.state is ItemState.flagged:
            transition(
                item, Action.assign, actor=user, data={"experts": [expert.name], "by": "claim"}
            )
        if len(active) + 1 >= needed:
            item.needs_admin = False
        return assignment
    return None


# --- the expert's side -------------------------------------------------------------------------


def _own(assignment: Assignment, actor: User) -> Expert:
    expert = Expert.for_user(actor)
    if expert is None or assignment.expert_id != expert.id:
        raise Forbidden("这不是分配给您的审核任务")
    return expert


def accept_assignment(assignment: Assignment, *, actor: User, deadlines: Deadlines) -> None:
    """The expert takes the offer, inside its deadline; the decision deadline starts.

    An offer found past its deadline (or on a withdrawn or superseded version) is ended here the
    way the sweep would end it, and ``AssignmentEnded`` (409) is raised: the caller commits that
    end, so the item is reassigned whether or not the sweep runs.
    """
    _own(assignment, actor)
    if assignment.state is not AssignmentState.offered:
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能接受", code="illegal_transition"
        )
    _end_if_lapsed(assignment, deadlines=deadlines)
    now = utcnow()
    # Compare-and-set: an offer the sweep (or a second tab) ended meanwhile is not revived.
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.state == AssignmentState.offered)
        .values(
            state=AssignmentState.accepted,
            accepted_at=now,
            due_at=now + deadlines.decide(assignment.risk_level),
            reminded_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(assignment)
    if moved != 1:
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能接受", code="illegal_transition"
        )
    record_event(
        "assignment.accepted",
        actor=actor,
        subject_type="item",
        subject_id=assignment.item_id,
        data={"assignment": assignment.id},
    )


class AssignmentEnded(Conflict):
    """The request found its assignment past its deadline, or its version withdrawn or
    superseded, and ended it as the sweep would (expired and reassigned, or revoked).

    The caller commits before answering 409: the end and the reassignment must stand.
    """

    code = "assignment_ended"


def _end(assignment: Assignment, state: AssignmentState, reason: str, *, actor: Any) -> bool:
    """Close an open assignment and audit it; False when someone else closed it first."""
    # Compare-and-set on the row: of two enders (the sweep and a request, two sweeps) exactly
    # one moves it, so an expiry is never reassigned twice.
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.state.in_(OPEN_STATES))
        .values(state=state, ended_at=utcnow(), ended_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(assignment)
    if moved != 1:
        return False
    record_event(
        f"assignment.{state.value}",
        actor=actor,
        subject_type="item",
        subject_id=assignment.item_id,
        data={"assignment": assignment.id, "reason": reason},
    )
    return True


def _stale_reason(assignment: Assignment) -> str | None:
    """Why an open assignment no longer stands: its item was withdrawn, or (review work) its
    version was superseded by a newer one. None while it stands."""
    item = assignment.item
    if item.state is ItemState.withdrawn:
        return "revoked: item withdrawn"
    if assignment.kind != QUALITY and assignment.version_id != item.current_version_id:
        number = item.current_version.number if item.current_version else None
        return f"revoked: superseded by version {number}"
    return None


def _revoke(assignment: Assignment, reason: str, *, actor: Any) -> bool:
    """End an open offer or accepted assignment as revoked and tell the expert."""
    if not _end(assignment, AssignmentState.revoked, reason, actor=actor):
        return False
    item = assignment.item
    notify(
        assignment.expert.user,
        "revoked",
        # A link only for an expert who still may open the item (they had accepted it).
        item=item if assignment.shows_text else None,
        title=f"审核任务已撤销：{item.title}",
        body=REVOKE_TEXT.get(reason.split(" by ")[0], "稿件已撤回或已有新版本，无需再审核。"),
    )
    return True


REVOKE_TEXT = {
    "revoked: item withdrawn": "编辑已撤回该稿件，无需再审核。",
    "revoked: superseded": "编辑已提交新版本，此任务对应的旧版本无需再审核。",
    "revoked: publication recalled": "该稿件的发布已被撤回，原审核任务已撤销。",
}


def revoke_open_assignments(
    item: Item,
    reason: str,
    *,
    actor: Any,
    kinds: tuple[str, ...] = (REVIEW, ARBITRATION, QUALITY),
    keep_version_id: int | None = None,
) -> list[Assignment]:
    """Revoke the item's open offers and accepted assignments (of ``kinds``; all versions but
    ``keep_version_id``), each audited and its expert notified."""
    query = select(Assignment).where(
        Assignment.item_id == item.id,
        Assignment.state.in_(OPEN_STATES),
        Assignment.kind.in_(kinds),
    )
    if keep_version_id is not None:
        query = query.where(Assignment.version_id != keep_version_id)
    rows = list(db.session.scalars(query.order_by(Assignment.id)))
    return [a for a in rows if _revoke(a, reason, actor=actor)]


def withdraw_item(item: Item, *, actor: User, reason: str = "") -> list[Assignment]:
    """Withdraw an unpublished item and revoke every open offer and assignment on it (review,
    arbitration and quality re-review): nobody is asked to read a text taken back."""
    review_ops.withdraw_item(item, actor=actor, reason=reason)
    return revoke_open_assignments(item, "revoked: item withdrawn", actor=actor)


def revise_item(item: Item, *, title: object, body: object, actor: User) -> Version:
    """Freeze a new version and revoke the open review and arbitration work on the versions it
    supersedes (a quality re-review judges a decision already taken and stays)."""
    version = review_ops.revise_item(item, title=title, body=body, actor=actor)
    revoke_open_assignments(
        item,
        f"revoked: superseded by version {version.number}",
        actor=actor,
        kinds=(REVIEW, ARBITRATION),
        keep_version_id=version.id,
    )
    return version


def _expire(assignment: Assignment, *, deadlines: Deadlines) -> bool:
    """End an overdue assignment as expired and offer the version to the next expert (never
    silently dropped); False when someone else ended it first."""
    offered = assignment.state is AssignmentState.offered
    reason = "expired: not accepted in time" if offered else "expired: no decision in time"
    if not _end(assignment, AssignmentState.expired, reason, actor=SYSTEM):
        return False
    if assignment.kind == QUALITY:
        return True  # a quality re-review that nobody took is reported, not reassigned
    item = assignment.item
    notify(
        assignment.expert.user,
        "reassigned",
        item=item,
        title=f"审核任务已超时并转交他人：{item.title}",
    )
    if item.state in (ItemState.flagged, ItemState.in_review):
        assign_reviewers(item, deadlines=deadlines)
    return True


def _end_if_lapsed(assignment: Assignment, *, deadlines: Deadlines) -> None:
    """Refuse (AssignmentEnded, 409) an open assignment that no longer stands or is past its
    deadline, ending it first exactly as the sweep would."""
    stale = _stale_reason(assignment)
    if stale is not None:
        _revoke(assignment, stale, actor=SYSTEM)
        raise AssignmentEnded(
            "该审核任务已撤销：稿件已撤回或已有新版本，无需再审核", code="revoked"
        )
    if assignment.due_at < utcnow():
        offered = assignment.state is AssignmentState.offered
        due = assignment.due_at
        _expire(assignment, deadlines=deadlines)
        what = "接受" if offered else "签署结论"
        then = "" if assignment.kind == QUALITY else "，已转交其他专家"
        raise AssignmentEnded(
            f"已超过{what}的期限（{due:%Y-%m-%d %H:%M} UTC），该任务已结束{then}",
            code="deadline_passed",
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
    text = clean_text(reason, "reason", "谢绝原因", max_chars=2000, required=True)
    if not _end(assignment, AssignmentState.declined, f"declined: {text}", actor=actor):
        raise Conflict(
            f"该任务当前为“{assignment.state_label}”，不能谢绝", code="illegal_transition"
        )
    if assignment.item.state not in (ItemState.flagged, ItemState.in_review):
        return []  # nothing to reassign: the item left review (withdrawn, concluded)
    return assign_reviewers(assignment.item, deadlines=deadlines, actor=actor)


def sweep_deadlines(*, deadlines: Deadlines) -> int:
    """Revoke what no longer stands, send reminders, expire overdue offers and reviews and
    reassign them; returns how many expired."""
    now = utcnow()
    open_rows = db.session.scalars(
        select(Assignment).where(Assignment.state.in_(OPEN_STATES)).order_by(Assignment.due_at)
    ).all()
    expired = 0
    for assignment in open_rows:
        if assignment.state not in OPEN_STATES:
            continue  # ended earlier in this sweep
        start = assignment.accepted_at or assignment.offered_at
        stale = _stale_reason(assignment)
        if stale is not None:
            # A withdrawn or superseded version is never offered on: revoke, do not reassign.
            _revoke(assignment, stale, actor=SYSTEM)
        elif assignment.due_at < now:
            expired += int(_expire(assignment, deadlines=deadlines))
        elif (
            assignment.reminded_at is None
            and now >= start + (assignment.due_at - start) * REMIND_AT
        ):
            assignment.reminded_at = now
            record_event(
                "assignment.reminded",
                actor=SYSTEM,
                subject_type="item",
                subject_id=assignment.item_id,
                data={"assignment": assignment.id, "due_at": assignment.due_at.isoformat()},
            )
            notify(
                assignment.expert.user,
                "reminder",
                item=assignment.item,
                title=f"审核即将到期：{assignment.item.title}",
                body=f"期限 {assignment.due_at:%Y-%m-%d %H:%M} UTC",
            )
    db.session.flush()
    return expired


# --- decisions ---------------------------------------------------------------------------------


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
    deadlines: Deadlines,
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
    text = clean_text(comment, "comment", "审核意见", max_chars=20_000)
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
    _end_if_lapsed(assignment, deadlines=deadlines)
    if assignment.state is not AssignmentState.accepted:
        raise Conflict("请先接受该审核任务，再签署结论", code="not_accepted")
    if assignment.kind == QUALITY:
        # A quality re-review judges the sampled version; the item's workflow is untouched.
        _lock_assignment(assignment)
    else:
        _lock_item_for_decision(item, assignment, expected_lock_version)
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
            "kind": assignment.kind,
            "decision": kind.value,
            "version": version.number,
            "content_sha256": version.content_sha256,
            "expert": expert.name,
            "verdicts": verdicts,
            "references": refs,
        },
    )
    enqueue("kepu.index_item", item.id)  # decisions' comments and references are searchable
    if assignment.kind == QUALITY:
        from expert_pool.quality import record_result

        record_result(assignment, row)
    else:
        _maybe_conclude(item, assignment, actor=actor, deadlines=deadlines)
    return row


def _lock_assignment(assignment: Assignment) -> None:
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.state == AssignmentState.accepted)
        .values(ended_reason="deciding")
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise Conflict("该任务已签署过结论", code="conflict")
    db.session.refresh(assignment)


def _lock_item_for_decision(item: Item, assignment: Assignment, expected: int | None) -> None:
    """Serialise deciders on the item row: of two concurrent decisions the second sees the first."""
    if item.current_version_id != assignment.version_id:
        raise Conflict("稿件已有新版本，此任务对应的版本已失效", code="stale_version")
    conditions = [Item.id == item.id, Item.state == ItemState.in_review]
    if expected is not None:
        conditions.append(Item.lock_version == expected)
    moved = db.session.execute(
        update(Item)
        .where(*conditions)
        .values(lock_version=Item.lock_version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise Conflict(
            "稿件已被其他操作改变（或不在审核中），请刷新页面后重试",
            code="conflict",
            current_version=db.session.scalar(select(Item.lock_version).where(Item.id == item.id)),
        )
    db.session.refresh(item)
    db.session.refresh(assignment)
    if assignment.state is not AssignmentState.accepted:
        raise Conflict("该任务已签署过结论", code="conflict")


def combine(kinds: list[DecisionKind]) -> DecisionKind | None:
    """The outcome of one round; None means the reviewers disagree and a senior must arbitrate.

    Approve with reject → arbitration; otherwise request changes wins over approve and over
    reject (the editor can still fix the text), and unanimous decisions stand.
    """
    found = set(kinds)
    if DecisionKind.approve in found and DecisionKind.reject in found:
        return None
    if DecisionKind.request_changes in found:
        return DecisionKind.request_changes
    if found == {DecisionKind.reject}:
        return DecisionKind.reject
    return DecisionKind.approve


def _maybe_conclude(
    item: Item, assignment: Assignment, *, actor: User, deadlines: Deadlines
) -> None:
    if assignment.kind == ARBITRATION:
        decision = db.session.scalar(
            select(Decision).where(Decision.assignment_id == assignment.id)
        )
        assert decision is not None
        _conclude(item, decision.decision, [decision], actor=actor, arbitrated=True)
        return
    rows = _round_assignments(item, assignment.version_id, assignment.round, REVIEW)
    if any(a.is_open for a in rows):
        return
    done = [a for a in rows if a.state is AssignmentState.completed]
    if len(done) < max(item.reviewers_needed, 1):
        return  # a reviewer is still missing (an admin was asked to find one)
    decisions = list(
        db.session.scalars(
            select(Decision)
            .where(Decision.assignment_id.in_([a.id for a in done]))
            .order_by(Decision.id)
        )
    )
    outcome = combine([d.decision for d in decisions])
    if outcome is None:
        record_event(
            "review.disagreement",
            actor=actor,
            subject_type="item",
            subject_id=item.id,
            data={"decisions": [d.id for d in decisions]},
        )
        assign_reviewers(item, deadlines=deadlines, actor=actor)  # finds a senior arbiter
        return
    _conclude(item, outcome, decisions, actor=actor)


def _stage(item: Item, version_id: int, round_: int) -> str:
    """'arbitration' once the round's reviewers are all in and disagree; else 'review'."""
    rows = _round_assignments(item, version_id, round_, REVIEW)
    done = [a for a in rows if a.state is AssignmentState.completed]
    if any(a.is_open for a in rows) or len(done) < max(item.reviewers_needed, 1):
        return REVIEW
    kinds = db.session.scalars(
        select(Decision.decision).where(Decision.assignment_id.in_([a.id for a in done]))
    ).all()
    return ARBITRATION if combine(list(kinds)) is None else REVIEW


def _conclude(
    item: Item,
    outcome: DecisionKind,
    decisions: list[Decision],
    *,
    actor: User,
    arbitrated: bool = False,
) -> None:
    conclude_review(
        item,
        outcome,
        actor=actor,
        data={"decisions": [d.id for d in decisions], "arbitrated": arbitrated},
    )
    label = DECISION_LABELS[outcome]
    notify(item.created_by, "outcome", item=item, title=f"审核结果：{label} — {item.title}")
    for d in decisions:
        if d.expert_user_id != actor.id:
            notify(
                d.expert_user, "outcome", item=item, title=f"稿件审核已结束：{label} — {item.title}"
            )


def appeal(item: Item, *, actor: User, reason: object, deadlines: Deadlines) -> list[Assignment]:
    """An editor appeals a rejection once; different experts review it in a new round."""
    if not item.can_edit(actor):
        raise Forbidden("只有本单位的媒体编辑可以申诉")
    if item.appeal_used:
        raise Conflict("每篇稿件只能申诉一次", code="appeal_used")
    text = clean_text(reason, "reason", "申诉理由", max_chars=5000, required=True)
    offered = _new_round(item, Action.appeal, actor=actor, reason=text, deadlines=deadlines)
    item.appeal_used = True
    return offered


def request_rereview(
    item: Item, *, actor: User, reason: object, deadlines: Deadlines
) -> list[Assignment]:
    """An auditor or admin asks experts not involved before to review a decided version again."""
    if not actor.has_role(Role.auditor, Role.admin):
        raise Forbidden("只有审计人员或管理员可以要求重新审核")
    text = clean_text(reason, "reason", "重新审核理由", max_chars=5000, required=True)
    offered = _new_round(item, Action.rereview, actor=actor, reason=text, deadlines=deadlines)
    notify(
        item.created_by, "outcome", item=item, title=f"稿件被要求重新审核：{item.title}", body=text
    )
    return offered


def request_expert_review(
    item: Item, *, actor: User, reason: object, deadlines: Deadlines
) -> list[Assignment]:
    """The editor asks experts to look at a cleared version before publishing it; it is routed
    like a flagged one (offers by domain and risk, an admin when nobody is eligible)."""
    if not item.can_edit(actor):
        raise Forbidden("只有本单位的媒体编辑可以请专家审核")
    if item.state is not ItemState.cleared:
        raise Conflict("只有初筛通过、尚未发布的稿件可以请专家审核", code="illegal_transition")
    text = clean_text(reason, "reason", "说明", max_chars=5000)
    version = item.current_version
    assert version is not None
    # In review from now on, even while nobody is found yet: the rules' word no longer publishes.
    transition(
        item,
        Action.assign,
        actor=actor,
        data={"by": "editor", "version": version.number, "reason": text},
    )
    item.needs_admin = False
    return assign_reviewers(item, deadlines=deadlines, actor=actor)


def recall_item(item: Item, *, actor: User, reason: object) -> None:
    """Take a published item down (下架) with a reason; its publication is marked recalled."""
    if not actor.has_role(Role.auditor, Role.admin):
        raise Forbidden("只有审计人员或管理员可以下架稿件")
    text = clean_text(reason, "reason", "下架理由", max_chars=5000, required=True)
    transition(item, Action.recall, actor=actor, data={"reason": text})
    revoke_open_assignments(
        item, "revoked: publication recalled", actor=actor, kinds=(REVIEW, ARBITRATION)
    )
    for publication in db.session.scalars(
        select(Publication).where(
            Publication.item_id == item.id, Publication.is_recalled.is_(False)
        )
    ):
        publication.is_recalled = True
    db.session.flush()
    notify(item.created_by, "outcome", item=item, title=f"稿件已被下架：{item.title}", body=text)


def _new_round(
    item: Item, action: Action, *, actor: User, reason: str, deadlines: Deadlines
) -> list[Assignment]:
    """Start a new review round with experts who were never involved with the item."""
    round_ = current_round(item) + 1
    transition(item, action, actor=actor, data={"reason": reason, "round": round_})
    item.needs_admin = False
    version = item.current_version
    assert version is not None
    report = _report(version)
    risk = report.risk_level if report else "medium"
    item.reviewers_needed = RISK_REVIEWERS.get(risk, 1)
    excluded = _involved_experts(item, None, None)
    request = _request(item, version, risk, excluded=excluded)
    selection = select_reviewers(candidates(), request, needed=item.reviewers_needed)
    if not selection.chosen and request.domains:
        request = _request(item, version, risk, excluded=excluded, with_domains=False)
        selection = select_reviewers(candidates(), request, needed=item.reviewers_needed)
    chosen = [c.expert_id for c in selection.chosen]
    _record_selection(item, version, REVIEW, selection.needed, chosen, selection.refused, actor)
    experts = {e.id: e for e in db.session.scalars(select(Expert).where(Expert.id.in_(chosen)))}
    offered = [
        _offer(
            item,
            experts[eid],
            round_=round_,
            kind=REVIEW,
            risk=risk,
            deadlines=deadlines,
            actor=actor,
        )
        for eid in chosen
    ]
    if not selection.complete:
        _escalate(item, "复审的专家不足", actor=actor)
    return offered


def _references(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list):
        raise InvalidInput("参考依据必须是文本列表", field="references")
    refs = [clean_text(v, "references", "参考依据", max_chars=2000).strip() for v in value]
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


def get_expert(expert_id: int) -> Expert:
    """The expert or NotFound."""
    expert = db.session.get(Expert, expert_id)
    if expert is None:
        raise NotFound("找不到该专家")
    return expert

"""The item lifecycle: states, actions and the one transition table (DESIGN.md)."""

from __future__ import annotations

from enum import StrEnum

from review.errors import IllegalTransition


class ItemState(StrEnum):
    """Where an item (稿件) stands in the review workflow."""

    draft = "draft"
    submitted = "submitted"
    screening = "screening"
    cleared = "cleared"
    flagged = "flagged"
    in_review = "in_review"
    approved = "approved"
    changes_requested = "changes_requested"
    rejected = "rejected"
    published = "published"
    recalled = "recalled"
    withdrawn = "withdrawn"


class Action(StrEnum):
    """Things that move an item from one state to another."""

    submit = "submit"
    revise = "revise"
    start_screening = "start_screening"
    clear = "clear"
    flag = "flag"
    assign = "assign"
    approve = "approve"
    request_changes = "request_changes"
    reject = "reject"
    appeal = "appeal"
    publish = "publish"
    recall = "recall"
    rereview = "rereview"
    withdraw = "withdraw"


S, A = ItemState, Action

_BEFORE_PUBLISHED = (
    S.draft,
    S.submitted,
    S.screening,
    S.cleared,
    S.flagged,
    S.in_review,
    S.approved,
    S.changes_requested,
    S.rejected,
)

#: (state, action) -> next state.  Everything not listed is refused with 409.
TRANSITIONS: dict[tuple[ItemState, Action], ItemState] = {
    (S.draft, A.submit): S.submitted,
    # A revision freezes a new version that is screened again; after approval
    # this is what invalidates the approval.
    (S.changes_requested, A.revise): S.submitted,
    (S.cleared, A.revise): S.submitted,
    (S.approved, A.revise): S.submitted,
    (S.submitted, A.start_screening): S.screening,
    (S.screening, A.start_screening): S.screening,  # a redelivered or re-queued screening
    (S.screening, A.clear): S.cleared,
    (S.screening, A.flag): S.flagged,
    (S.flagged, A.assign): S.in_review,
    (S.cleared, A.assign): S.in_review,  # spot check, or the editor asks for review
    (S.recalled, A.assign): S.in_review,
    (S.in_review, A.approve): S.approved,
    (S.in_review, A.request_changes): S.changes_requested,
    (S.in_review, A.reject): S.rejected,
    (S.rejected, A.appeal): S.in_review,
    (S.cleared, A.publish): S.published,
    (S.approved, A.publish): S.published,
    (S.published, A.recall): S.recalled,
    # An auditor or admin asks for another look at a decided (or recalled) version.
    (S.approved, A.rereview): S.in_review,
    (S.rejected, A.rereview): S.in_review,
    (S.changes_requested, A.rereview): S.in_review,
    (S.cleared, A.rereview): S.in_review,
    (S.recalled, A.rereview): S.in_review,
    **{(state, A.withdraw): S.withdrawn for state in _BEFORE_PUBLISHED},
}

STATE_LABELS: dict[ItemState, str] = {
    S.draft: "草稿",
    S.submitted: "已提交",
    S.screening: "机器初筛中",
    S.cleared: "初筛通过",
    S.flagged: "疑似问题待审",
    S.in_review: "专家审核中",
    S.approved: "审核通过",
    S.changes_requested: "需修改",
    S.rejected: "未通过",
    S.published: "已发布",
    S.recalled: "已撤回发布",
    S.withdrawn: "已撤稿",
}

ACTION_LABELS: dict[Action, str] = {
    A.submit: "提交",
    A.revise: "修改后重新提交",
    A.start_screening: "开始初筛",
    A.clear: "初筛通过",
    A.flag: "标记疑似问题",
    A.assign: "分配专家",
    A.approve: "通过",
    A.request_changes: "要求修改",
    A.reject: "驳回",
    A.appeal: "申诉",
    A.publish: "发布",
    A.recall: "撤回发布",
    A.rereview: "重新审核",
    A.withdraw: "撤稿",
}


def next_state(state: ItemState | str, action: Action | str) -> ItemState:
    """Return the state after ``action``, or raise IllegalTransition (HTTP 409)."""
    state, action = ItemState(state), Action(action)
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise IllegalTransition(
            f"当前状态“{STATE_LABELS[state]}”不允许执行“{ACTION_LABELS[action]}”操作",
            state=state.value,
            action=action.value,
        ) from None


def allowed_actions(state: ItemState | str) -> list[Action]:
    """Actions the table allows from ``state`` (roles are checked elsewhere)."""
    state = ItemState(state)
    return [action for (s, action) in TRANSITIONS if s == state]

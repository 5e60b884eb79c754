"""The transition table: allowed and refused moves."""

from __future__ import annotations

import pytest

from review.errors import IllegalTransition
from review.lifecycle import TRANSITIONS, Action, ItemState, allowed_actions, next_state

S, A = ItemState, Action

ALLOWED = [
    (S.draft, A.submit, S.submitted),
    (S.submitted, A.start_screening, S.screening),
    (S.screening, A.clear, S.cleared),
    (S.screening, A.flag, S.flagged),
    (S.flagged, A.assign, S.in_review),
    (S.cleared, A.assign, S.in_review),
    (S.cleared, A.publish, S.published),
    (S.in_review, A.approve, S.approved),
    (S.in_review, A.request_changes, S.changes_requested),
    (S.in_review, A.reject, S.rejected),
    (S.changes_requested, A.revise, S.submitted),
    (S.approved, A.revise, S.submitted),
    (S.approved, A.publish, S.published),
    (S.rejected, A.appeal, S.in_review),
    (S.published, A.recall, S.recalled),
    (S.recalled, A.assign, S.in_review),
    (S.in_review, A.withdraw, S.withdrawn),
    (S.draft, A.withdraw, S.withdrawn),
    (S.approved, A.rereview, S.in_review),
    (S.rejected, A.rereview, S.in_review),
    (S.recalled, A.rereview, S.in_review),
]

REFUSED = [
    (S.draft, A.publish),
    (S.flagged, A.publish),
    (S.in_review, A.publish),
    (S.submitted, A.approve),
    (S.screening, A.approve),
    (S.published, A.withdraw),
    (S.withdrawn, A.submit),
    (S.rejected, A.publish),
    (S.published, A.publish),
    (S.changes_requested, A.publish),
    (S.draft, A.revise),
    (S.published, A.rereview),
    (S.in_review, A.rereview),
    (S.draft, A.recall),
]


@pytest.mark.parametrize(("state", "action", "expected"), ALLOWED)
def test_allowed(state: ItemState, action: Action, expected: ItemState) -> None:
    assert next_state(state, action) is expected
    assert action in allowed_actions(state)


@pytest.mark.parametrize(("state", "action"), REFUSED)
def test_refused_with_chinese_message(state: ItemState, action: Action) -> None:
    with pytest.raises(IllegalTransition) as err:
        next_state(state, action)
    assert err.value.status == 409
    assert "不允许" in err.value.message


def test_every_state_but_terminal_ones_can_leave() -> None:
    sources = {s for (s, _a) in TRANSITIONS}
    assert set(ItemState) - sources == {S.withdrawn}


def test_withdraw_only_before_publication() -> None:
    withdrawable = {s for (s, a) in TRANSITIONS if a is A.withdraw}
    assert S.published not in withdrawable and S.recalled not in withdrawable
    assert S.draft in withdrawable and S.approved in withdrawable

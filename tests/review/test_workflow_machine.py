"""A Hypothesis state machine drives the real app with random actions by random actors
(RELIABILITY 30c): submit, screen, claim, accept, decide, publish, withdraw, disable a user.

After every step: at most the needed reviewers per version and nobody twice; a publication
only of a cleared version or one approved by experts outside the submitting unit; every state
change of every item in the ledger as an unbroken from→to chain; no action outside the policy
succeeded. At the end of each run the hash chain verifies.

SQLite only, on purpose: the machine is about the workflow's rules; the databases' behaviour
under concurrency has its own tests on both (test_concurrency, test_review_rounds).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update

from expert_pool.models import OPEN_STATES, Assignment, Expert
from review.audit import AuditEvent, iter_exported_events, verify_events
from review.db import db
from review.models import Decision, Item, Publication, User
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE
from workers import screening

PASSWORD = "correct-horse-1"
ACTORS = ("editor_a", "editor_b", "expert1", "expert2", "expert_a", "auditor", "admin")
DENIED = {401, 403, 404}
RUNS = itertools.count()
#: Random actors, but most often the one who may act, so that runs get somewhere.
SOMEONE = st.sampled_from(["owner"] * 4 + list(ACTORS))


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only (see the module docstring)."""
    return sqlite_url


def test_random_actions_keep_the_invariants(app: Any, factory: Any) -> None:
    done: dict[str, int] = {}  # successful actions over all runs: the machine reached the end

    class Workflow(RuleBasedStateMachine):
        """One run: fresh units and people in the shared test database."""

        @initialize()
        def world(self) -> None:
            run = next(RUNS)
            # Earlier runs' experts leave the pool, so offers go to this run's people.
            db.session.execute(update(Expert).values(is_active=False))
            db.session.commit()
            unit_a, unit_b = factory.unit(f"甲{run}"), factory.unit(f"乙{run}")
            self.users: dict[str, Any] = {
                "editor_a": factory.user("editor", unit=unit_a),
                "editor_b": factory.user("editor", unit=unit_b),
                "expert1": factory.expert(senior=True, max_load=3),
                "expert2": factory.expert(max_load=3),
                "expert_a": factory.expert(unit=unit_a, max_load=3),  # the submitters' colleague
                "auditor": factory.user("auditor"),
                "admin": factory.user("admin"),
            }
            self.tokens = {k: factory.token(u) for k, u in self.users.items()}
            self.disabled: set[str] = set()
            self.items: list[int] = []
            self.client = app.test_client()

        # --- helpers ---------------------------------------------------------------------

        def user(self, name: str) -> User:
            user = db.session.get(User, self.users[name].id)
            assert user is not None
            return user

        def call(self, actor: str, method: str, url: str, body: Any = None) -> Any:
            resp = self.client.open(url, method=method, headers=self.tokens[actor], json=body)
            assert resp.status_code < 500, (actor, url, resp.get_data(as_text=True)[:300])
            if resp.status_code < 300:
                what = url.rsplit("/", 1)[-1]
                done[what] = done.get(what, 0) + 1
            db.session.expire_all()
            if actor in self.disabled:
                assert resp.status_code == 401, (actor, url, resp.status_code)
            return resp

        def refused_unless(self, allowed: bool, resp: Any) -> None:
            if not allowed:
                assert resp.status_code in DENIED, resp.status_code

        def expert_of(self, assignment: Assignment) -> str:
            return next(
                (k for k, u in self.users.items() if u.id == assignment.expert.user_id), "admin"
            )

        def assignments(self) -> list[Assignment]:
            if not self.items:
                return []
            return list(
                db.session.scalars(select(Assignment).where(Assignment.item_id.in_(self.items)))
            )

        # --- rules -----------------------------------------------------------------------

        @rule(actor=st.sampled_from(["editor_a", "editor_b", *ACTORS]), pseudo=st.booleans())
        def submit(self, actor: str, pseudo: bool) -> None:
            title, body = (PSEUDO_TITLE, PSEUDO_BODY) if pseudo else (GENUINE_TITLE, GENUINE_BODY)
            resp = self.call(
                actor, "POST", "/api/v1/items", {"title": title, "body": body, "submit": True}
            )
            editor = actor.startswith("editor") and actor not in self.disabled
            self.refused_unless(editor, resp)
            if editor:
                assert resp.status_code == 201
                self.items.append(resp.json["id"])
                item = db.session.get(Item, resp.json["id"])
                screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
                db.session.expire_all()

        @precondition(lambda self: bool(self.items))
        @rule(data=st.data())
        def screen_again(self, data: Any) -> None:
            """A redelivered screening message: harmless."""
            item = db.session.get(Item, data.draw(st.sampled_from(self.items)))
            if item is not None and item.current_version_id is not None:
                screening.screen_version(item.current_version_id)
                db.session.expire_all()

        @rule(actor=st.sampled_from(["expert1", "expert2", *ACTORS]))
        def claim(self, actor: str) -> None:
            resp = self.call(actor, "POST", "/api/v1/assignments/claim")
            self.refused_unless(actor.startswith("expert") and actor not in self.disabled, resp)

        @precondition(lambda self: bool(self.assignments()))
        @rule(actor=SOMEONE, data=st.data())
        def accept(self, actor: str, data: Any) -> None:
            target = data.draw(st.sampled_from(self.assignments()))
            actor = self.expert_of(target) if actor == "owner" else actor
            own = target.expert.user_id == self.users[actor].id
            resp = self.call(actor, "POST", f"/api/v1/assignments/{target.id}/accept")
            self.refused_unless(own and actor not in self.disabled, resp)

        @precondition(lambda self: bool(self.assignments()))
        @rule(
            actor=SOMEONE,
            verdict=st.sampled_from(["approve", "approve", "request_changes", "reject"]),
            accept_first=st.sampled_from([True, True, True, False]),
            data=st.data(),
        )
        def decide(self, actor: str, verdict: str, accept_first: bool, data: Any) -> None:
            target = data.draw(st.sampled_from(self.assignments()))
            actor = self.expert_of(target) if actor == "owner" else actor
            own = target.expert.user_id == self.users[actor].id
            if accept_first:  # a decision needs an accepted assignment
                self.call(actor, "POST", f"/api/v1/assignments/{target.id}/accept")
            offered = db.session.get(Assignment, target.id).state.value == "offered"  # type: ignore[union-attr]
            body = {
                "decision": verdict,
                "password": PASSWORD,
                "comment": "意见",
                "references": ["依据"],
            }
            resp = self.call(actor, "POST", f"/api/v1/assignments/{target.id}/decision", body)
            self.refused_unless(own and actor not in self.disabled, resp)
            if offered:  # never accepted: the decision does not count
                assert resp.status_code >= 400, resp.status_code

        @precondition(lambda self: bool(self.items))
        @rule(actor=SOMEONE, data=st.data(), withdraw=st.sampled_from([False, False, True]))
        def publish_or_withdraw(self, actor: str, data: Any, withdraw: bool) -> None:
            item = db.session.get(Item, data.draw(st.sampled_from(self.items)))
            assert item is not None
            if actor == "owner":
                actor = "editor_a" if item.unit_id == self.users["editor_a"].unit_id else "editor_b"
            may = item.can_edit(self.user(actor)) and actor not in self.disabled
            action = "withdraw" if withdraw else "publish"
            resp = self.call(actor, "POST", f"/api/v1/items/{item.id}/{action}", {"reason": "撤"})
            self.refused_unless(may, resp)

        @precondition(lambda self: not self.disabled)
        @rule(name=st.sampled_from(ACTORS[:-1]))
        def disable(self, name: str) -> None:
            from review.audit import SYSTEM
            from review.auth import set_active

            set_active(self.user(name), False, actor=SYSTEM)
            db.session.commit()
            self.disabled.add(name)

        # --- invariants ------------------------------------------------------------------

        @invariant()
        def reviewers_per_version(self) -> None:
            open_rows = [a for a in self.assignments() if a.state in OPEN_STATES]
            by_version: dict[int, list[int]] = {}
            for a in open_rows:
                by_version.setdefault(a.version_id, []).append(a.expert_id)
            for version_id, experts in by_version.items():
                assert len(experts) == len(set(experts)), version_id
                item = db.session.get(Item, open_rows[0].item_id)
                assert item is not None and len(experts) <= max(item.reviewers_needed, 1) + 1

        @invariant()
        def nobody_reviews_their_own_unit(self) -> None:
            for a in self.assignments():
                expert = db.session.get(Expert, a.expert_id)
                assert expert is not None and expert.user.unit_id != a.item.unit_id

        @invariant()
        def published_means_cleared_or_approved_by_others(self) -> None:
            for item_id in self.items:
                for pub in db.session.scalars(
                    select(Publication).where(Publication.item_id == item_id)
                ):
                    item = db.session.get(Item, item_id)
                    assert item is not None
                    publisher = db.session.get(User, pub.published_by_id)
                    assert publisher is not None and item.can_edit(publisher)
                    if pub.receipt["decision"] == "approved":
                        rows = db.session.scalars(
                            select(Decision).where(Decision.version_id == pub.version_id)
                        ).all()
                        assert rows and all(d.decision.value == "approve" for d in rows)
                        assert all(d.expert_user_id != item.created_by_id for d in rows)
                        assert all(d.expert_user.unit_id != item.unit_id for d in rows)
                    else:
                        assert pub.receipt["decision"] == "cleared"

        @invariant()
        def every_state_change_is_in_the_ledger(self) -> None:
            for item_id in self.items:
                events = db.session.scalars(
                    select(AuditEvent)
                    .where(
                        AuditEvent.subject_type == "item",
                        AuditEvent.subject_id == str(item_id),
                        AuditEvent.action.like("item.%"),
                    )
                    .order_by(AuditEvent.seq)
                ).all()
                chain = [e.data for e in events if "from" in (e.data or {})]
                state = "draft"
                for step in chain:
                    assert step["from"] == state, (item_id, chain)
                    state = step["to"]
                item = db.session.get(Item, item_id)
                assert item is not None and item.state.value == state, (item_id, chain)

        def teardown(self) -> None:
            assert verify_events(iter_exported_events()).ok

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=5,
            stateful_step_count=25,
            derandomize=True,  # the same runs every time: a CI failure reproduces
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The machine got somewhere: items were reviewed or published, not only refused.
    assert done.get("items") and done.get("decision", 0) + done.get("publish", 0) > 0, done

"""Every route that changes state writes its audit event, in the same transaction as the change.

The table below classifies every mutating endpoint of the URL map; a new endpoint that is not
classified fails ``test_every_mutating_route_is_classified``. Each case runs the request once
normally (the expected event appears) and once with the ledger failing at its first write
(the request fails and nothing it changed is left behind).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text

import review.audit
from expert_pool.models import Assignment, Expert
from review.audit import AuditEvent
from review.db import db
from review.models import Item
from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE
from workers import screening

PASSWORD = "correct-horse-1"

#: Endpoints that change nothing another person relies on, so they write no event.
EXEMPT = {
    "api.read_notification": "marks the caller's own notification read",
    "web.notifications_read": "marks the caller's own notifications read",
    "web.preview_markdown": "renders the caller's Markdown as HTML; stores nothing",
    "web.set_language": "the caller's interface language",
}


@dataclass
class World:
    """Users, tokens and items for the cases."""

    app: Any
    factory: Any
    tokens: dict[str, dict[str, str]]
    users: dict[str, Any]

    def item(self, state: str) -> int:
        """A fresh item of the editor's unit in ``state``."""
        c = self.app.test_client()
        ed = self.tokens["editor"]
        if state == "draft":
            return int(
                c.post("/api/v1/items", headers=ed, json={"title": "草稿", "body": "x"}).json["id"]
            )
        title, body = (
            (GENUINE_TITLE, GENUINE_BODY)
            if state in ("cleared", "published")
            else (PSEUDO_TITLE, PSEUDO_BODY)
        )
        item_id = int(
            c.post(
                "/api/v1/items", headers=ed, json={"title": title, "body": body, "submit": True}
            ).json["id"]
        )
        if state == "submitted":
            return item_id
        screening.screen_version(db.session.get(Item, item_id).current_version_id)  # type: ignore[union-attr, arg-type]
        if state in ("cleared", "in_review"):
            return item_id
        if state == "published":
            c.post(f"/api/v1/items/{item_id}/publish", headers=ed)
            return item_id
        for a in self.open_assignments(item_id):
            body2: dict[str, Any] = {
                "decision": "reject" if state == "rejected" else "approve",
                "password": PASSWORD,
            }
            if state == "rejected":
                body2.update(comment="伪科学", references=["依据"])
            token = self.factory.token(a.expert.user)
            c.post(f"/api/v1/assignments/{a.id}/accept", headers=token)
            c.post(f"/api/v1/assignments/{a.id}/decision", headers=token, json=body2)
        return item_id

    def open_assignments(self, item_id: int) -> list[Assignment]:
        return list(
            db.session.scalars(
                select(Assignment)
                .where(Assignment.item_id == item_id, Assignment.state.in_(["offered", "accepted"]))
                .order_by(Assignment.id)
            )
        )

    def assignment_of(self, item_id: int, username: str = "expert1") -> int:
        expert = Expert.for_user(self.users[username])
        assert expert is not None
        return next(a.id for a in self.open_assignments(item_id) if a.expert_id == expert.id)

    def accepted_of(self, item_id: int, username: str = "expert1") -> int:
        """The expert's assignment on the item, accepted (a decision needs that)."""
        aid = self.assignment_of(item_id, username)
        token = self.factory.token(self.users[username])
        self.app.test_client().post(f"/api/v1/assignments/{aid}/accept", headers=token)
        return aid


@dataclass(frozen=True)
class Case:
    """One mutating request: who, how, and the event it must write."""

    endpoint: str
    role: str
    prepare: Callable[[World], tuple[str, Any]]  # -> (url, json body or form data)
    action: str
    web: bool = False


CASES = [
    Case(
        "api.create_item",
        "editor",
        lambda w: ("/api/v1/items", {"title": "新稿", "body": "正文"}),
        "item.created",
    ),
    Case(
        "api.submit_item",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('draft')}/submit", {}),
        "item.submit",
    ),
    Case(
        "api.revise_item",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('cleared')}/revise", {"body": "新正文"}),
        "item.revise",
    ),
    Case(
        "api.withdraw_item",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('draft')}/withdraw", {"reason": "不发了"}),
        "item.withdraw",
    ),
    Case(
        "api.publish_item",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('cleared')}/publish", {}),
        "item.publish",
    ),
    Case(
        "api.appeal_item",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('rejected')}/appeal", {"reason": "有依据"}),
        "item.appeal",
    ),
    Case(
        "api.request_review",
        "editor",
        lambda w: (f"/api/v1/items/{w.item('cleared')}/request-review", {"reason": "请专家把关"}),
        "item.assign",
    ),
    Case(
        "api.accept_assignment",
        "expert1",
        lambda w: (f"/api/v1/assignments/{w.assignment_of(w.item('in_review'))}/accept", {}),
        "assignment.accepted",
    ),
    Case(
        "api.decline_assignment",
        "expert1",
        lambda w: (
            f"/api/v1/assignments/{w.assignment_of(w.item('in_review'))}/decline",
            {"reason": "出差"},
        ),
        "assignment.declined",
    ),
    Case(
        "api.decide",
        "expert1",
        lambda w: (
            f"/api/v1/assignments/{w.accepted_of(w.item('in_review'))}/decision",
            {"decision": "approve", "password": PASSWORD},
        ),
        "review.decided",
    ),
    Case("api.claim_next", "expert3", lambda w: (w.claimable(), {}), "assignment.claimed"),
    Case(
        "api.patch_expert",
        "admin",
        lambda w: (f"/api/v1/experts/{Expert.for_user(w.users['expert1']).id}", {"max_load": 9}),
        "pool.expert_updated",
    ),  # type: ignore[union-attr]
    Case(
        "api.admin_assign",
        "admin",
        lambda w: (
            f"/api/v1/items/{w.item('in_review')}/assign",
            {"expert_id": Expert.for_user(w.late_expert()).id},
        ),
        "assignment.offered",
    ),  # type: ignore[union-attr]
    Case(
        "api.make_checkpoint",
        "auditor",
        lambda w: ("/api/v1/audit/checkpoints", {}),
        "audit.checkpoint",
    ),
    Case(
        "api.draw_quality_sample",
        "auditor",
        lambda w: (w.decided("/api/v1/quality/samples"), {"size": 1}),
        "quality.sample_drawn",
    ),
    Case(
        "api.rereview_item",
        "auditor",
        lambda w: (f"/api/v1/items/{w.item('approved')}/rereview", {"reason": "复核"}),
        "item.rereview",
    ),
    Case(
        "api.recall_item",
        "auditor",
        lambda w: (f"/api/v1/items/{w.item('published')}/recall", {"reason": "下架"}),
        "item.recall",
    ),
    Case(
        "web.checkpoints_page",
        "auditor",
        lambda w: ("/audit/checkpoints", {}),
        "audit.checkpoint",
        web=True,
    ),
    Case(
        "web.quality_page",
        "auditor",
        lambda w: (w.decided("/quality"), {"size": "1"}),
        "quality.sample_drawn",
        web=True,
    ),
    Case(
        "web.recall_item",
        "auditor",
        lambda w: (f"/items/{w.item('published')}/recall", {"reason": "下架"}),
        "item.recall",
        web=True,
    ),
    Case(
        "web.rereview_item",
        "admin",
        lambda w: (f"/items/{w.item('approved')}/rereview", {"reason": "复核"}),
        "item.rereview",
        web=True,
    ),
    Case(
        "web.login",
        "anonymous",
        lambda w: ("/login", {"username": "editor", "password": PASSWORD}),
        "auth.login",
        web=True,
    ),
    Case("web.logout", "editor", lambda w: ("/logout", {}), "auth.logout", web=True),
    Case(
        "web.account_password",
        "editor",
        lambda w: (
            "/account/password",
            {"current_password": PASSWORD, "new_password": "new-horse-2", "confirm": "new-horse-2"},
        ),
        "auth.password_changed",
        web=True,
    ),
    Case(
        "web.admin_reset_password",
        "admin",
        lambda w: (f"/admin/users/{w.users['editor'].id}/password", {"password": "new-horse-3"}),
        "user.password_reset",
        web=True,
    ),
    Case(
        "web.new_item",
        "editor",
        lambda w: ("/items/new", {"title": "网页稿", "body": "正文", "action": "save"}),
        "item.created",
        web=True,
    ),
    Case(
        "web.new_video",
        "editor",
        lambda w: ("/items/new-video", _video_form()),
        "item.created",
        web=True,
    ),
    Case(
        "web.retry_media",
        "editor",
        lambda w: (w.failed_video(), {}),  # type: ignore[attr-defined]
        "media.retry",
        web=True,
    ),
    Case(
        "web.add_video_finding",
        "expert1",
        lambda w: (
            w.video_review(),  # type: ignore[attr-defined]
            {"start_time": "0.5", "end_time": "1.5", "note": "画面宣称包治百病"},
        ),
        "finding.added",
        web=True,
    ),
    Case(
        "web.add_text_finding",
        "expert1",
        lambda w: (
            w.text_review(),  # type: ignore[attr-defined]
            {
                "segment": "body",
                "start": "0",
                "end": "4",
                "severity": "high",
                "note": "专家认为这里夸大了疗效",
            },
        ),
        "finding.added",
        web=True,
    ),
    Case(
        "web.edit_item",
        "editor",
        lambda w: (f"/items/{w.item('draft')}/edit", {"title": "改", "body": "改"}),
        "item.edited",
        web=True,
    ),
    Case(
        "web.submit_item",
        "editor",
        lambda w: (f"/items/{w.item('draft')}/submit", {}),
        "item.submit",
        web=True,
    ),
    Case(
        "web.withdraw_item",
        "editor",
        lambda w: (f"/items/{w.item('draft')}/withdraw", {"reason": "x"}),
        "item.withdraw",
        web=True,
    ),
    Case(
        "web.publish_item",
        "editor",
        lambda w: (f"/items/{w.item('cleared')}/publish", {}),
        "item.publish",
        web=True,
    ),
    Case(
        "web.appeal_item",
        "editor",
        lambda w: (f"/items/{w.item('rejected')}/appeal", {"reason": "有依据"}),
        "item.appeal",
        web=True,
    ),
    Case(
        "web.request_review",
        "editor",
        lambda w: (f"/items/{w.item('cleared')}/request-review", {"reason": "请专家把关"}),
        "item.assign",
        web=True,
    ),
    Case(
        "web.accept",
        "expert1",
        lambda w: (f"/assignments/{w.assignment_of(w.item('in_review'))}/accept", {}),
        "assignment.accepted",
        web=True,
    ),
    Case(
        "web.decline",
        "expert1",
        lambda w: (
            f"/assignments/{w.assignment_of(w.item('in_review'))}/decline",
            {"reason": "忙"},
        ),
        "assignment.declined",
        web=True,
    ),
    Case(
        "web.decision",
        "expert1",
        lambda w: (
            f"/assignments/{w.accepted_of(w.item('in_review'))}/decision",
            {"decision": "approve", "password": PASSWORD},
        ),
        "review.decided",
        web=True,
    ),
    Case(
        "web.claim",
        "expert3",
        lambda w: (w.claimable("/assignments/claim"), {}),
        "assignment.claimed",
        web=True,
    ),
    Case(
        "web.admin_users",
        "admin",
        lambda w: (
            "/admin/users",
            {"username": "newbie", "role": "auditor", "password": "longenough1"},
        ),
        "user.created",
        web=True,
    ),
    Case(
        "web.admin_toggle_user",
        "admin",
        lambda w: (f"/admin/users/{w.users['auditor'].id}/active", {}),
        "user.disabled",
        web=True,
    ),
    Case(
        "web.admin_expert_edit",
        "admin",
        lambda w: (
            f"/admin/experts/{Expert.for_user(w.users['expert1']).id}",
            {"domains": ["医学健康"], "max_load": "8", "is_verified": "1", "is_active": "1"},
        ),
        "pool.expert_updated",
        web=True,
    ),  # type: ignore[union-attr]
    Case(
        "web.admin_expert_new",
        "admin",
        lambda w: (
            "/admin/experts/new",
            {"user_id": str(w.pool_candidate().id), "domains": ["海洋"], "max_load": "3"},
        ),
        "pool.expert_added",
        web=True,
    ),
    Case(
        "web.admin_assign",
        "admin",
        lambda w: (
            f"/admin/items/{w.item('in_review')}/assign",
            {"expert_id": Expert.for_user(w.late_expert()).id},
        ),
        "assignment.offered",
        web=True,
    ),  # type: ignore[union-attr]
    Case(
        "web.admin_policies",
        "admin",
        lambda w: (
            "/admin/policies",
            {
                "flag_level": "high",
                "accept_within": "24",
                "decide_within": "72",
                "screening_max_attempts": "4",
                "stuck_after": "15",
            },
        ),
        "policy.changed",
        web=True,
    ),
    Case(
        "web.admin_policies_reset",
        "admin",
        lambda w: w.overridden("/admin/policies/reset"),
        "policy.reset",
        web=True,
    ),
    Case(
        "hooks.admin_webhooks",
        "admin",
        lambda w: (
            "/admin/webhooks",
            {"url": "http://127.0.0.1:5105/hook", "events": ["item.flagged"], "is_active": "1"},
        ),
        "webhook.subscriber_created",
        web=True,
    ),
    Case(
        "hooks.admin_webhook_edit",
        "admin",
        lambda w: (
            f"/admin/webhooks/{w.webhook()}",
            {"url": "http://127.0.0.1:5105/other", "events": ["item.published"]},
        ),
        "webhook.subscriber_updated",
        web=True,
    ),
    Case(
        "hooks.admin_webhook_rotate",
        "admin",
        lambda w: (f"/admin/webhooks/{w.webhook()}/secret", {}),
        "webhook.secret_rotated",
        web=True,
    ),
    Case(
        "hooks.admin_webhook_ping",
        "admin",
        lambda w: (f"/admin/webhooks/{w.webhook()}/ping", {}),
        "webhook.ping_sent",
        web=True,
    ),
    Case(
        "hooks.admin_webhook_resend",
        "admin",
        lambda w: (f"/admin/webhooks/deliveries/{w.webhook_delivery()}/resend", {}),
        "webhook.delivery_resent",
        web=True,
    ),
    Case(
        "web.admin_rule_switch",
        "admin",
        lambda w: (
            "/admin/rules/mechanism.special-water/switch",
            {"action": "disable", "reason": "误报太多"},
        ),
        "rules.rule_disabled",
        web=True,
    ),
]


def _video_form() -> dict[str, Any]:
    import io

    return {
        "title": "视频稿",
        "description": "简介",
        "action": "save",
        "file": (io.BytesIO(_clip().read_bytes()), "clip.mp4"),
    }


def _clip() -> Any:
    """A small test video, made once per run."""
    import tempfile
    from pathlib import Path

    from tests.media_files import plain_video

    path = Path(tempfile.gettempdir()) / f"kepu-audit-clip-{os.getpid()}.mp4"
    if not path.exists():
        plain_video(path, seconds=2)
    return path


def _failed_video(self: World) -> str:
    """A submitted video whose thumbnail step failed for good."""
    from review.models import JobState, MediaJob

    resp = self.app.test_client().post(
        "/api/v1/items",
        headers=self.tokens["editor"],
        data={"title": "视频", "submit": "true", "file": (_clip().open("rb"), "c.mp4")},
        content_type="multipart/form-data",
    )
    item = db.session.get(Item, resp.json["id"])
    job = db.session.scalar(
        select(MediaJob).where(
            MediaJob.version_id == item.current_version_id,  # type: ignore[union-attr]
            MediaJob.step == "thumbnail",
        )
    )
    job.state, job.error = JobState.failed, "生成缩略图失败：测试"  # type: ignore[union-attr]
    db.session.commit()
    return f"/items/{resp.json['id']}/media/retry"


def _video_review(self: World) -> str:
    """An accepted review of a flagged video; returns the URL that marks a time range."""
    from workers import media

    resp = self.app.test_client().post(
        "/api/v1/items",
        headers=self.tokens["editor"],
        data={
            "title": "喝小分子水能根治高血压",
            "submit": "true",
            "file": (_clip().open("rb"), "c.mp4"),
        },
        content_type="multipart/form-data",
    )
    item_id = resp.json["id"]
    self.app.config["OCR_FPS"] = 0
    version_id = db.session.get(Item, item_id).current_version_id  # type: ignore[union-attr]
    media.process_media(version_id)
    screening.screen_version(version_id)
    assignment = self.assignment_of(item_id)
    self.app.test_client().post(
        f"/api/v1/assignments/{assignment}/accept", headers=self.tokens["expert1"]
    )
    return f"/assignments/{assignment}/findings"


World.failed_video = _failed_video  # type: ignore[attr-defined]
World.video_review = _video_review  # type: ignore[attr-defined]


def _text_review(self: World) -> str:
    """An accepted review of a flagged article; returns the URL that marks a passage."""
    item_id = self.item("in_review")
    assignment = self.assignment_of(item_id)
    self.app.test_client().post(
        f"/api/v1/assignments/{assignment}/accept", headers=self.tokens["expert1"]
    )
    return f"/assignments/{assignment}/text-findings"


World.text_review = _text_review  # type: ignore[attr-defined]


def _late_expert(self: World) -> Any:
    """expert3 joins the pool after the items were offered, so it is free to take one."""
    if "expert3" not in self.users:
        self.users["expert3"] = self.factory.expert(username="expert3")
        self.tokens["expert3"] = self.factory.token(self.users["expert3"])
    return self.users["expert3"]


def _claimable(self: World, url: str = "/api/v1/assignments/claim") -> str:
    """A flagged item short of reviewers, and an expert who may claim it."""
    item_id = self.item("in_review")
    item = db.session.get(Item, item_id)
    assert item is not None
    item.reviewers_needed = 3
    db.session.commit()
    self.late_expert()  # type: ignore[attr-defined]
    return url


def _decided(self: World, url: str) -> str:
    self.item("approved")
    return url


def _overridden(self: World, url: str) -> tuple[str, dict[str, str]]:
    """A policy override to reset."""
    from review import policy
    from review.audit import SYSTEM

    policy.update_policy({"flag_level": "critical"}, actor=SYSTEM)
    db.session.commit()
    return url, {}


def _webhook(self: World) -> int:
    """A subscriber of item.flagged (its receiver need not exist for these cases)."""
    from review.audit import SYSTEM
    from review.webhooks import create_subscriber

    sub = create_subscriber(url="http://127.0.0.1:5105/hook", events=["item.flagged"], actor=SYSTEM)
    db.session.commit()
    return int(sub.id)


def _webhook_delivery(self: World) -> int:
    """A delivery of a flagged item to a subscriber."""
    from review.webhooks import WebhookDelivery

    self.webhook()  # type: ignore[attr-defined]
    self.item("in_review")
    row = db.session.scalar(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()))
    assert row is not None
    return int(row.id)


def _pool_candidate(self: World) -> Any:
    """An account with the expert role that is not in the pool yet (添加专家)."""
    return self.factory.user("expert", unit=self.factory.unit(), username="newexpert")


World.pool_candidate = _pool_candidate  # type: ignore[attr-defined]
World.webhook = _webhook  # type: ignore[attr-defined]
World.webhook_delivery = _webhook_delivery  # type: ignore[attr-defined]
World.overridden = _overridden  # type: ignore[attr-defined]
World.claimable = _claimable  # type: ignore[attr-defined]
World.late_expert = _late_expert  # type: ignore[attr-defined]
World.decided = _decided  # type: ignore[attr-defined]


@pytest.fixture
def world(app: Any, factory: Any) -> World:
    users = {
        "editor": factory.user("editor", username="editor", password=PASSWORD),
        "expert1": factory.expert(senior=True, username="expert1"),
        "expert2": factory.expert(username="expert2"),
        "auditor": factory.user("auditor", username="auditor", password=PASSWORD),
        "admin": factory.user("admin", username="admin", password=PASSWORD),
    }
    world = World(app, factory, {k: factory.token(u) for k, u in users.items()}, users)
    return world


def _mutating_endpoints(app: Any) -> set[str]:
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods & {"POST", "PUT", "PATCH", "DELETE"} and rule.endpoint != "static"
    }


def test_every_mutating_route_is_classified(app: Any) -> None:
    classified = {c.endpoint for c in CASES} | set(EXEMPT)
    missing = _mutating_endpoints(app) - classified
    assert not missing, (
        f"classify these routes in tests/review/test_audit_coverage.py: {sorted(missing)}"
    )


def _send(world: World, case: Case) -> Any:
    url, payload = case.prepare(world)
    if case.web:
        client = world.app.test_client()
        if case.role != "anonymous":
            client.post(
                "/login", data={"username": world.users[case.role].username, "password": PASSWORD}
            )
        db.session.commit()
        return client.post(url, data=payload)
    db.session.commit()
    method = "patch" if case.endpoint == "api.patch_expert" else "post"
    return getattr(world.app.test_client(), method)(
        url, json=payload, headers=world.tokens[case.role]
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.endpoint)
def test_route_writes_its_event(world: World, case: Case) -> None:
    before = db.session.scalar(select(func.max(AuditEvent.seq))) or -1
    resp = _send(world, case)
    assert resp.status_code < 400, (resp.status_code, resp.get_data(as_text=True)[:500])
    db.session.expire_all()
    actions = list(db.session.scalars(select(AuditEvent.action).where(AuditEvent.seq > before)))
    assert case.action in actions, actions


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.endpoint != "web.logout"], ids=lambda c: c.endpoint
)
def test_failed_ledger_write_leaves_nothing_behind(
    world: World, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_payload_world = world  # prepare the data first, with a working ledger
    original = review.audit.record_event
    armed = {"on": False}

    def failing(action: str, **kwargs: Any) -> Any:
        if armed["on"] and action == case.action:
            raise RuntimeError("ledger unavailable")
        return original(action, **kwargs)

    # Every module that imported record_event by name gets the failing one.
    import sys

    for module in list(sys.modules.values()):
        if (
            getattr(module, "__name__", "").startswith(("review", "expert_pool", "workers"))
            and getattr(module, "record_event", None) is original
        ):
            monkeypatch.setattr(module, "record_event", failing)
    url, payload = case.prepare(url_payload_world)
    db.session.commit()
    snapshot = _snapshot()
    armed["on"] = True
    client = world.app.test_client()
    if case.web:
        if case.role != "anonymous":
            armed["on"] = False
            client.post(
                "/login", data={"username": world.users[case.role].username, "password": PASSWORD}
            )
            armed["on"] = True
            snapshot = _snapshot()
        resp = client.post(url, data=payload)
    else:
        method = "patch" if case.endpoint == "api.patch_expert" else "post"
        resp = getattr(client, method)(url, json=payload, headers=world.tokens.get(case.role, {}))
    armed["on"] = False
    assert resp.status_code >= 500, resp.status_code
    db.session.expire_all()
    assert _snapshot() == snapshot


def _snapshot() -> dict[str, int]:
    """Row counts and the sum of every item's lock_version: what any change would move."""
    tables = [
        "items",
        "versions",
        "assignments",
        "decisions",
        "publications",
        "audit_events",
        "users",
        "experts",
        "outbox_messages",
        "audit_checkpoints",
        "quality_samples",
        "login_sessions",
        "policy_settings",
        "disabled_rules",
        "media_assets",
        "media_jobs",
        "subtitle_sources",
        "findings",
        "webhook_subscribers",
        "webhook_deliveries",
        "webhook_attempts",
    ]
    counts = {
        t: db.session.scalar(select(func.count()).select_from(db.metadata.tables[t])) or 0
        for t in tables
    }
    counts["lock"] = db.session.scalar(select(func.coalesce(func.sum(Item.lock_version), 0))) or 0
    counts["states"] = hash(tuple(db.session.scalars(select(Item.state).order_by(Item.id))))
    counts["assignment_states"] = hash(
        tuple(db.session.scalars(select(Assignment.state).order_by(Assignment.id)))
    )
    counts["max_load"] = db.session.scalar(select(func.sum(Expert.max_load))) or 0
    counts["webhooks"] = hash(
        repr(
            db.session.execute(
                text("SELECT url, secret, events, is_active FROM webhook_subscribers ORDER BY id")
            ).all()
        )
    )
    counts["deliveries"] = hash(
        tuple(
            db.session.execute(
                text("SELECT status, attempts FROM webhook_deliveries ORDER BY id")
            ).all()
        )
    )
    return counts


AUDITOR_MAY = {
    "api.make_checkpoint",
    "api.draw_quality_sample",
    "api.rereview_item",
    "api.recall_item",
    "web.login",
    "web.logout",
    "web.account_password",
    "web.checkpoints_page",
    "web.quality_page",
    "web.recall_item",
    "web.rereview_item",
}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.endpoint not in AUDITOR_MAY], ids=lambda c: c.endpoint
)
def test_auditors_change_nothing(world: World, case: Case) -> None:
    """Outside their few audit actions, every mutating route refuses an auditor (403 or 404)."""
    url, payload = case.prepare(world)
    db.session.commit()
    snapshot = _snapshot()
    if case.web:
        client = world.app.test_client()
        client.post("/login", data={"username": "auditor", "password": PASSWORD})
        snapshot = _snapshot()
        resp = client.post(url, data=payload)
    else:
        method = "patch" if case.endpoint == "api.patch_expert" else "post"
        resp = getattr(world.app.test_client(), method)(
            url, json=payload, headers=world.tokens["auditor"]
        )
    assert resp.status_code in (403, 404), (resp.status_code, resp.get_data(as_text=True)[:300])
    db.session.expire_all()
    assert _snapshot() == snapshot


def test_screening_task_writes_its_events_in_its_transaction(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's state changes and their events commit together, or not at all."""
    item_id = world.item("submitted")
    version_id = db.session.get(Item, item_id).current_version_id  # type: ignore[union-attr]
    original = review.audit.record_event

    def failing(action: str, **kwargs: Any) -> Any:
        if action in ("item.flag", "item.clear"):
            raise RuntimeError("ledger unavailable")
        return original(action, **kwargs)

    import review.operations as operations

    monkeypatch.setattr(operations, "record_event", failing)
    before = _snapshot()
    with pytest.raises(RuntimeError):
        screening.screen_version(version_id)  # type: ignore[arg-type]
    db.session.rollback()
    after = _snapshot()
    # Only the attempt counter's own transaction (item.start_screening) was committed.
    assert after["versions"] == before["versions"] and after["assignments"] == before["assignments"]
    assert (
        db.session.scalar(select(func.count()).select_from(db.metadata.tables["screening_reports"]))
        == 0
    )
    monkeypatch.setattr(operations, "record_event", original)
    assert screening.screen_version(version_id) in ("flagged", "cleared")  # type: ignore[arg-type]
    actions = list(
        db.session.scalars(select(AuditEvent.action).where(AuditEvent.subject_id == str(item_id)))
    )
    assert actions.count("item.start_screening") == 1 and (
        "item.flag" in actions or "item.clear" in actions
    )

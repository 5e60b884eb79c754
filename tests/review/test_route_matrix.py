"""Every route × method × role × owned/foreign object, deny by default (RELIABILITY 18).

The table is generated from ``app.url_map``: a route without a ``POLICY`` entry fails
``test_every_route_has_a_policy``. Expected answers follow the project's rule — an object the
user may not see answers 404 (exactly as a nonexistent id does), a role that may not take an
action answers 403, anonymous and disabled users are sent to sign in (401 for the API and
JSON) — and nothing answers 5xx. Every 403 leaves a line in the security log.

It runs on SQLite only, on purpose: the subject is the authorisation of the views, which does
not depend on the database, and every mutating request starts from the same world by copying
the database file back (milliseconds) — on PostgreSQL that would be a CREATE DATABASE per
request, several hundred of them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from expert_pool.models import Assignment, Expert, Notification
from review.audit import SYSTEM
from review.auth import set_active
from review.db import db
from review.models import Item
from rules import load_default_ruleset
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE
from workers import screening

PASSWORD = "correct-horse-1"
ROLES = (
    "anonymous",
    "editor",
    "other_editor",
    "expert",
    "other_expert",
    "auditor",
    "admin",
    "disabled",
)
E, X, AU, AD = "editor", "expert", "auditor", "admin"
ALL = frozenset({E, X, AU, AD})
PUBLIC = frozenset({"public"})
KIND = {
    "editor": E,
    "other_editor": E,
    "expert": X,
    "other_expert": X,
    "auditor": AU,
    "admin": AD,
}
#: Mutating routes an auditor may use: the audit actions and their own account.
AUDITOR_MAY = {
    "api.make_checkpoint",
    "api.draw_quality_sample",
    "api.rereview_item",
    "api.recall_item",
    "api.read_notification",
    "web.checkpoints_page",
    "web.quality_page",
    "web.recall_item",
    "web.rereview_item",
    "web.login",
    "web.logout",
    "web.account_password",
    "web.notifications_read",
}
#: What "allowed" may answer besides success: bad input, illegal state, or (``missing``) an
#: object that has no such file yet (a draft's receipt or video). Never 401/403/5xx.
ALLOWED = {200, 201, 202, 204, 302, 303, 400, 409}


@dataclass(frozen=True)
class P:
    """Who may use one route and method, and what object its URL names."""

    roles: frozenset[str]
    obj: str | None = None
    missing: bool = False  # 404 is a fine answer for an allowed user (no file, no sample)
    body: dict[str, Any] = field(default_factory=dict, hash=False)


def r(*roles: str) -> frozenset[str]:
    return frozenset(roles)


# API bodies are checked against the published schema before the object is loaded (400 for
# any caller), so the POST entries below send a well-formed body: what is tested is who may
# act on which object.
POLICY: dict[tuple[str, str], P] = {
    ("static", "GET"): P(PUBLIC),
    ("web.healthz", "GET"): P(PUBLIC),
    # Readiness and metrics need no sign-in; /metrics answers only allowed networks (the test
    # client comes from 127.0.0.1, which is allowed by default; tests/review/test_monitoring).
    ("monitoring.readyz", "GET"): P(PUBLIC),
    ("monitoring.metrics", "GET"): P(PUBLIC),
    # The public record of published items (an unpublished or recalled item answers 404).
    ("web.published", "GET"): P(PUBLIC),
    ("web.feed_atom", "GET"): P(PUBLIC),
    ("web.published_item", "GET"): P(PUBLIC, "item", missing=True),
    ("web.login", "GET"): P(PUBLIC),
    ("web.login", "POST"): P(PUBLIC),
    ("web.logout", "POST"): P(ALL),
    ("web.home", "GET"): P(ALL),
    ("web.account_password", "GET"): P(ALL),
    ("web.account_password", "POST"): P(ALL),
    ("web.notifications", "GET"): P(ALL),
    ("web.notifications_read", "POST"): P(ALL),
    ("web.search_page", "GET"): P(ALL),
    # editors
    ("web.items", "GET"): P(r(E, AU, AD)),
    ("web.items_status_json", "GET"): P(ALL),
    ("web.item_detail", "GET"): P(ALL, "item"),
    ("web.item_status_json", "GET"): P(ALL, "item"),
    ("web.receipt", "GET"): P(ALL, "item", missing=True),
    ("web.item_thumbnail", "GET"): P(ALL, "item", missing=True),
    ("web.item_video", "GET"): P(ALL, "item", missing=True),
    ("web.new_item", "GET"): P(r(E)),
    ("web.new_item", "POST"): P(r(E)),
    ("web.new_video", "GET"): P(r(E)),
    ("web.new_video", "POST"): P(r(E)),
    ("web.preview_markdown", "POST"): P(r(E)),
    ("web.edit_item", "GET"): P(r(E), "item"),
    ("web.edit_item", "POST"): P(r(E), "item"),
    ("web.submit_item", "POST"): P(r(E), "item"),
    ("web.withdraw_item", "POST"): P(r(E), "item"),
    ("web.publish_item", "POST"): P(r(E), "item"),
    ("web.appeal_item", "POST"): P(r(E), "item"),
    ("web.request_review", "POST"): P(r(E), "item"),
    ("web.retry_media", "POST"): P(r(E), "item"),
    # experts
    ("web.assignments", "GET"): P(r(X)),
    ("web.claim", "POST"): P(r(X)),
    ("web.review_page", "GET"): P(r(X, AU, AD), "assignment"),
    ("web.accept", "POST"): P(r(X), "assignment"),
    ("web.decline", "POST"): P(r(X), "assignment"),
    ("web.decision", "POST"): P(r(X), "assignment", body={"password": PASSWORD}),
    ("web.add_video_finding", "POST"): P(r(X), "assignment"),
    ("web.add_text_finding", "POST"): P(r(X), "assignment"),
    # auditors (and admins)
    ("web.audit_log", "GET"): P(r(AU, AD)),
    ("web.audit_trail", "GET"): P(r(AU, AD), "item"),
    ("web.dashboard_page", "GET"): P(r(AU, AD)),
    ("web.monthly_report", "GET"): P(r(AU, AD)),
    ("web.export_download", "GET"): P(ALL, "export"),
    ("web.checkpoints_page", "GET"): P(r(AU, AD)),
    ("web.checkpoints_page", "POST"): P(r(AU, AD)),
    ("web.checkpoint_download", "GET"): P(r(AU, AD), "checkpoint"),
    ("web.quality_page", "GET"): P(r(AU, AD)),
    ("web.quality_page", "POST"): P(r(AU, AD)),
    ("web.recall_item", "POST"): P(r(AU, AD), "item"),
    ("web.rereview_item", "POST"): P(r(AU, AD), "item"),
    ("web.admin_experts", "GET"): P(r(AU, AD)),
    ("web.admin_queue", "GET"): P(r(AU, AD)),
    ("web.admin_policies", "GET"): P(r(AU, AD)),
    ("web.admin_rules", "GET"): P(r(AU, AD)),
    ("web.admin_rule", "GET"): P(r(AU, AD), "rule"),
    # admins
    ("web.admin_users", "GET"): P(r(AD)),
    ("web.admin_users", "POST"): P(r(AD)),
    ("web.admin_toggle_user", "POST"): P(r(AD), "user"),
    ("web.admin_reset_password", "POST"): P(r(AD), "user"),
    ("web.admin_expert_new", "GET"): P(r(AD)),
    ("web.admin_expert_new", "POST"): P(r(AD)),
    ("web.admin_expert_edit", "GET"): P(r(AD), "expert"),
    ("web.admin_expert_edit", "POST"): P(r(AD), "expert"),
    ("web.admin_assign", "POST"): P(r(AD), "item"),
    ("web.admin_policies", "POST"): P(r(AD)),
    ("web.admin_policies_reset", "POST"): P(r(AD)),
    ("web.admin_rule_switch", "POST"): P(r(AD), "rule"),
    # webhooks: auditors read the subscribers and the delivery log; admins change them
    ("hooks.admin_webhooks", "GET"): P(r(AU, AD)),
    ("hooks.admin_webhooks", "POST"): P(r(AD)),
    ("hooks.admin_webhook_edit", "GET"): P(r(AD), "webhook"),
    ("hooks.admin_webhook_edit", "POST"): P(r(AD), "webhook"),
    ("hooks.admin_webhook_rotate", "POST"): P(r(AD), "webhook"),
    ("hooks.admin_webhook_ping", "POST"): P(r(AD), "webhook"),
    ("hooks.admin_webhook_deliveries", "GET"): P(r(AU, AD)),
    ("hooks.admin_webhook_delivery", "GET"): P(r(AU, AD), "delivery"),
    ("hooks.admin_webhook_resend", "POST"): P(r(AD), "delivery"),
    # API
    ("api.list_items", "GET"): P(ALL),
    ("api.get_item", "GET"): P(ALL, "item"),
    ("api.get_receipt", "GET"): P(ALL, "item", missing=True),
    ("api.search", "GET"): P(ALL),
    ("api.list_notifications", "GET"): P(ALL),
    ("api.read_notification", "POST"): P(ALL, "note"),
    ("api.create_item", "POST"): P(r(E)),
    ("api.submit_item", "POST"): P(r(E), "item"),
    ("api.revise_item", "POST"): P(r(E), "item"),
    ("api.withdraw_item", "POST"): P(r(E), "item"),
    ("api.publish_item", "POST"): P(r(E), "item"),
    ("api.appeal_item", "POST"): P(r(E), "item", body={"reason": "申诉理由"}),
    ("api.request_review", "POST"): P(r(E), "item", body={}),
    ("api.list_assignments", "GET"): P(r(X)),
    ("api.claim_next", "POST"): P(r(X)),
    ("api.accept_assignment", "POST"): P(r(X), "assignment"),
    ("api.decline_assignment", "POST"): P(r(X), "assignment", body={"reason": "没空"}),
    ("api.decide", "POST"): P(
        r(X), "assignment", body={"password": PASSWORD, "decision": "approve"}
    ),
    ("api.audit_events", "GET"): P(r(AU, AD)),
    ("api.list_checkpoints", "GET"): P(r(AU, AD)),
    ("api.make_checkpoint", "POST"): P(r(AU, AD)),
    ("api.export_ledger", "GET"): P(r(AU, AD)),
    ("api.public_key", "GET"): P(r(AU, AD)),
    ("api.dashboard_figures", "GET"): P(r(AU, AD)),
    ("api.export_items", "GET"): P(ALL),
    ("api.export_audit", "GET"): P(r(AU, AD)),
    ("api.export_dashboard", "GET"): P(r(AU, AD)),
    # The API's own description and its documentation page are public.
    ("api.openapi_document", "GET"): P(PUBLIC),
    ("api.docs_page", "GET"): P(PUBLIC),
    ("api.queue", "GET"): P(r(AU, AD)),
    ("api.list_experts", "GET"): P(r(AU, AD)),
    ("api.draw_quality_sample", "POST"): P(r(AU, AD)),
    ("api.list_quality_samples", "GET"): P(r(AU, AD)),
    ("api.get_quality_sample", "GET"): P(r(AU, AD), "sample", missing=True),
    ("api.rereview_item", "POST"): P(r(AU, AD), "item", body={"reason": "抽查"}),
    ("api.recall_item", "POST"): P(r(AU, AD), "item", body={"reason": "撤回"}),
    ("api.patch_expert", "PATCH"): P(r(AD), "expert"),
    ("api.admin_assign", "POST"): P(r(AD), "item", body={"expert_id": 1}),
}

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def route_methods(app: Any) -> set[tuple[str, str]]:
    """Every (endpoint, method) the URL map serves (HEAD and OPTIONS are Flask's own)."""
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method in METHODS
    }


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only (see the module docstring)."""
    return sqlite_url


def test_every_route_has_a_policy(app: Any) -> None:
    served = route_methods(app)
    missing = served - set(POLICY)
    assert not missing, f"add these to POLICY in {__file__}: {sorted(missing)}"
    assert not set(POLICY) - served, f"stale POLICY entries: {sorted(set(POLICY) - served)}"


def test_auditors_are_read_only_in_the_policy() -> None:
    writes = {ep for (ep, method), p in POLICY.items() if method != "GET" and AU in p.roles}
    assert writes <= AUDITOR_MAY, sorted(writes - AUDITOR_MAY)
    assert all(
        method == "GET" or p.roles != PUBLIC or ep == "web.login"
        for (ep, method), p in POLICY.items()
    )


# --- the world --------------------------------------------------------------------------------


@dataclass
class World:
    app: Any
    objects: dict[str, dict[str, Any]]  # kind -> name -> URL value
    visible: dict[str, dict[str, set[str]]]  # kind -> role -> names it may see
    clients: dict[str, Any]
    cookies: dict[str, str]
    tokens: dict[str, dict[str, str]]
    db_file: Path
    snapshot: Path

    def restore(self) -> None:
        """Put the database back as it was when the world was built."""
        _copy(self.snapshot, self.db_file)


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy whatever sits in the WAL."""
    db.session.remove()
    db.engine.dispose()
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@pytest.fixture
def world(app: Any, factory: Any, tmp_path: Path) -> Iterator[World]:
    app.config.update(LOGIN_MAX_FAILURES=10_000, LOGIN_MAX_FAILURES_PER_IP=10_000)
    unit_a, unit_b = factory.unit("甲报社"), factory.unit("乙电视台")
    users = {
        "editor": factory.user("editor", unit=unit_a),
        "other_editor": factory.user("editor", unit=unit_b),
        "expert": factory.expert(),
        "other_expert": factory.expert(domains=("交通",)),
        "auditor": factory.user("auditor"),
        "admin": factory.user("admin"),
        "disabled": factory.user("editor", unit=unit_a),
    }
    from review.webhooks import WebhookDelivery, create_subscriber

    hook = create_subscriber(
        url="http://127.0.0.1:5105/matrix", events=["item.flagged"], actor=SYSTEM
    )
    db.session.commit()
    third = factory.expert()  # the second reviewer of the high-risk item
    target = factory.user("editor", unit=unit_b)  # what the admin user routes act on
    tokens = {k: factory.token(u) for k, u in users.items()}
    api = app.test_client()
    a_item = api.post(
        "/api/v1/items",
        headers=tokens["editor"],
        json={"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
    ).json["id"]
    screening.screen_version(db.session.get(Item, a_item).current_version_id)  # type: ignore[union-attr, arg-type]
    b_item = api.post(
        "/api/v1/items", headers=tokens["other_editor"], json={"title": "草稿", "body": "正文"}
    ).json["id"]
    mine = Expert.for_user(users["expert"])
    theirs = Expert.for_user(third)
    assert mine is not None and theirs is not None
    by_expert = {
        a.expert_id: a.id
        for a in db.session.scalars(select(Assignment).where(Assignment.item_id == a_item))
    }
    assert set(by_expert) == {mine.id, theirs.id}, by_expert
    note = db.session.scalar(
        select(Notification.id).where(Notification.user_id == users["expert"].id)
    )
    assert note is not None
    size = api.post("/api/v1/audit/checkpoints", headers=tokens["auditor"]).json["tree_size"]
    rule_id = load_default_ruleset().rules[0].id
    objects = {
        "item": {"A": a_item, "B": b_item, "none": 999_999},
        "assignment": {"X": by_expert[mine.id], "Y": by_expert[theirs.id], "none": 999_999},
        "note": {"N": note, "none": 999_999},
        "user": {"T": target.id, "none": 999_999},
        "expert": {"M": mine.id, "none": 999_999},
        "rule": {"R": rule_id, "none": "no-such-rule"},
        "checkpoint": {"C": size, "none": 999_999},
        "sample": {"none": 999_999},
        "webhook": {"W": hook.id, "none": 999_999},
        "delivery": {"D": db.session.scalar(select(WebhookDelivery.id)), "none": 999_999},
        # Everyone may export the items they see; the audit log is for auditors and admins.
        "export": {"items": ("items", "csv"), "audit": ("audit", "csv")},
    }
    everyone = {"auditor", "admin"}
    visible = {
        "item": {"editor": {"A"}, "other_editor": {"B"}, "expert": {"A"}}
        | {k: {"A", "B"} for k in everyone},
        "assignment": {"expert": {"X"}} | {k: {"X", "Y"} for k in everyone},
        "note": {"expert": {"N"}},
    }
    clients: dict[str, Any] = {"anonymous": app.test_client()}
    for name, user in users.items():
        client = app.test_client()
        resp = client.post("/login", data={"username": user.username, "password": PASSWORD})
        assert resp.status_code == 302, name
        clients[name] = client
    set_active(users["disabled"], False, actor=SYSTEM)
    db.session.commit()
    db_file = Path(str(app.config["SQLALCHEMY_DATABASE_URI"]).removeprefix("sqlite:///"))
    snapshot = tmp_path / "world.sqlite"
    _copy(db_file, snapshot)
    cookies = {
        name: client.get_cookie("kepu_session").value
        for name, client in clients.items()
        if name != "anonymous"
    }
    yield World(app, objects, visible, clients, cookies, tokens, db_file, snapshot)


# --- the matrix -------------------------------------------------------------------------------


def _url(app: Any, endpoint: str, obj_kind: str | None, value: Any) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    args: dict[str, Any] = {}
    for arg in rule.arguments:
        if endpoint == "static":
            args[arg] = "style.css"
        elif obj_kind == "export":
            args.update(kind=value[0], fmt=value[1])
        elif arg == "fmt":  # the API's export routes name their format in the path
            args[arg] = "csv"
        else:
            args[arg] = value
    with app.test_request_context():
        from flask import url_for

        return url_for(endpoint, **args)


def _send(w: World, role: str, endpoint: str, method: str, url: str, p: P) -> Any:
    if endpoint.startswith("api."):
        client = w.app.test_client()
        headers = w.tokens.get(role, {})
        return client.open(url, method=method, headers=headers, json=p.body or None)
    client = w.clients[role]
    if role in w.cookies:  # the sign-in as it was (a logout or password change ends it)
        client.set_cookie("kepu_session", w.cookies[role])
    if method == "GET":
        return client.get(url)
    return client.open(url, method=method, data=p.body)


def _expected(
    role: str, endpoint: str, method: str, p: P, name: str, visible: bool | None
) -> set[int]:
    """The statuses the policy allows for this request."""
    api = endpoint.startswith("api.")
    if p.roles == PUBLIC:
        if endpoint == "web.login":
            return ALLOWED | {401}
        return {200, 404} if p.missing else {200}
    if role in ("anonymous", "disabled"):
        return {401} if api or endpoint.endswith("_json") or "preview" in endpoint else {302}
    roles = r(AU, AD) if p.obj == "export" and name == "audit" else p.roles
    allowed_role = KIND[role] in roles
    if visible is False:
        # Not visible: 404 like a nonexistent id (a role check that answers 403 first reveals
        # nothing either; the equality with a nonexistent id is asserted separately).
        return {404} if allowed_role else {403, 404}
    if not allowed_role:
        return {403}
    return ALLOWED | ({404} if p.missing else set())


def _cases(w: World) -> Iterator[tuple[str, str, str, P, str | None, str, bool | None]]:
    # Reads first, so that what they did is still there when the writes begin.
    for (endpoint, method), p in sorted(POLICY.items(), key=lambda kv: (kv[0][1] != "GET", kv[0])):
        if p.obj is None:
            yield endpoint, method, "-", p, None, "", None
            continue
        for name, value in w.objects[p.obj].items():
            yield endpoint, method, name, p, p.obj, value, None


def test_route_matrix(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """All roles in one test: one world (built once, restored after every mutating request)."""
    caplog.set_level(logging.WARNING, logger="kepu.security")
    failures: list[str] = []
    for role in ROLES:
        failures += _check_role(world, role, caplog)
    assert not failures, f"{len(failures)} answers differ from POLICY:\n" + "\n".join(failures)


#: Tables a GET may write: download audit events (Decision 5) and the sign-in's last_seen_at.
#: Reads that write: the audit trail of downloads and sign-ins, and the signed checkpoint a
#: ledger export makes of exactly what it exports (issue #14 item 5).
GET_MAY_WRITE = {"audit_events", "audit_head", "audit_checkpoints", "login_sessions"}


def _fingerprint() -> dict[str, Any]:
    """Every other table's rows, to show that reading changed nothing."""
    db.session.expire_all()
    return {
        name: sorted(tuple(map(str, row)) for row in db.session.execute(table.select()))
        for name, table in db.metadata.tables.items()
        if name not in GET_MAY_WRITE
    }


def _check_role(w: World, role: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    failures: list[str] = []
    before = _fingerprint()
    after: dict[str, Any] | None = None
    forbidden = 0
    answers: dict[tuple[str, str, str], int] = {}
    for endpoint, method, name, p, kind, value, _ in _cases(w):
        if role == "disabled" and endpoint == "web.login":
            continue
        url = _url(w.app, endpoint, kind, value)
        if method != "GET" and after is None:
            after = _fingerprint()
        resp = _send(w, role, endpoint, method, url, p)
        status = resp.status_code
        resp.close()
        if method != "GET":
            w.restore()
        answers[(endpoint, method, name)] = status
        forbidden += status == 403
        if kind is None or kind == "export":
            visible: bool | None = None
        elif name == "none":
            visible = False
        elif kind in w.visible:
            visible = name in w.visible[kind].get(role, set())
        else:
            visible = None  # admin-only objects: the role decides
        expected = _expected(role, endpoint, method, p, name, visible)
        if status not in expected or status >= 500:
            failures.append(
                f"{role:13} {method:5} {url:45} {name:5} -> {status}, want {sorted(expected)}"
            )
    # An object the role may not see answers exactly like one that does not exist.
    for (endpoint, method, name), status in answers.items():
        kind = POLICY[(endpoint, method)].obj
        hidden = kind in w.visible and name not in w.visible[kind].get(role, set())
        if hidden and name != "none" and status != answers[(endpoint, method, "none")]:
            failures.append(
                f"{role:13} {method:5} {endpoint} {name}: {status} but a missing id gives "
                f"{answers[(endpoint, method, 'none')]} (discloses existence)"
            )
    # Everything the reads did, before the first write: nothing (downloads are audited only).
    assert after is not None
    failures += [
        f"{role}: GET requests changed {name}" for name in before if before[name] != after[name]
    ]
    denials = [
        rec
        for rec in caplog.records
        if rec.name == "kepu.security" and "status=403" in rec.getMessage()
    ]
    if len(denials) != forbidden:  # ASVS 16.3.2: every 403 is in the security log
        failures.append(f"{role}: {forbidden} answers 403 but {len(denials)} security-log lines")
    return failures

"""The admins' policy and rule-pack pages: who may do what, validation, audit, and their effect."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

import rules
from expert_pool.models import Assignment
from review import policy, rulepacks
from review.audit import AuditEvent
from review.db import db, utcnow
from review.models import Finding, Item, ScreeningReport
from tests.conftest import submit_screened

PASSWORD = "correct-horse-1"
#: Screens "medium" on the shipped packs: two rules fire, a detox claim and special water.
MEDIUM_TITLE = "健康小常识"
MEDIUM_BODY = "喝小分子水可以排毒。"
WATER_RULE = "mechanism.special-water"
DETOX_RULE = "mechanism.detox"


def _login(app: Any, user: Any) -> Any:
    c = app.test_client()
    resp = c.post("/login", data={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 302
    return c


def _events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


def _form(**overrides: str) -> dict[str, str]:
    form = {
        "flag_level": "medium",
        "accept_within": "48",
        "decide_within": "120",
        "screening_max_attempts": "3",
        "stuck_after": "1",
    }
    form.update(overrides)
    return form


def _rule_ids(item_id: int) -> set[str]:
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version is not None
    report = item.current_version.report
    assert report is not None
    return {f.rule_id for f in report.findings if f.rule_id}


@pytest.fixture
def people(app: Any, factory: Any) -> dict[str, Any]:
    return {
        "admin": factory.user("admin"),
        "auditor": factory.user("auditor"),
        "editor": factory.user("editor"),
        "expert": factory.expert(),
    }


# --- who may see and change what ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "admin_forms"),
    [("/admin/policies", True), ("/admin/rules", False), (f"/admin/rules/{WATER_RULE}", True)],
)
def test_role_table_for_the_pages(
    app: Any, people: dict[str, Any], url: str, admin_forms: bool
) -> None:
    admin_page = _login(app, people["admin"]).get(url)
    assert admin_page.status_code == 200
    main = admin_page.get_data(as_text=True).split("<main", 1)[1]
    assert ('method="post"' in main) is admin_forms
    auditor_page = _login(app, people["auditor"]).get(url)
    assert auditor_page.status_code == 200
    assert 'method="post"' not in auditor_page.get_data(as_text=True).split("<main", 1)[1]
    assert _login(app, people["editor"]).get(url).status_code == 403
    assert _login(app, people["expert"]).get(url).status_code == 403
    anonymous = app.test_client().get(url)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_navigation_links(app: Any, people: dict[str, Any]) -> None:
    for role in ("admin", "auditor"):
        page = _login(app, people[role]).get("/search").get_data(as_text=True)
        assert 'href="/admin/policies"' in page and 'href="/admin/rules"' in page
    page = _login(app, people["editor"]).get("/search").get_data(as_text=True)
    assert "/admin/policies" not in page and "/admin/rules" not in page


def test_only_admins_post(app: Any, people: dict[str, Any]) -> None:
    for role in ("auditor", "editor", "expert"):
        c = _login(app, people[role])
        assert c.post("/admin/policies", data=_form(flag_level="high")).status_code == 403
        assert c.post("/admin/policies/reset").status_code == 403
        resp = c.post(
            f"/admin/rules/{WATER_RULE}/switch", data={"action": "disable", "reason": "误报多"}
        )
        assert resp.status_code == 403
    assert db.session.scalars(select(policy.PolicySetting)).all() == []
    assert rulepacks.disabled_ids() == frozenset()
    assert policy.effective().flag_level == "medium"


# --- the policy page ---------------------------------------------------------------------------


def test_change_is_stored_audited_and_shown(app: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["admin"])
    resp = c.post("/admin/policies", data=_form(flag_level="high", accept_within="12.5"))
    assert resp.status_code == 302
    current = policy.effective()
    assert current.flag_level == "high" and current.accept_within == 45000
    assert current.decide_within == 5 * 24 * 3600  # unchanged: no override stored
    assert {r.key for r in db.session.scalars(select(policy.PolicySetting))} == {
        "flag_level",
        "accept_within",
    }
    [event] = _events("policy.changed")
    assert event.data["changes"] == {
        "flag_level": {"old": "medium", "new": "high"},
        "accept_within": {"old": 2 * 24 * 3600, "new": 45000},
    }
    assert event.actor_id == people["admin"].id
    page = c.get("/admin/policies").get_data(as_text=True)
    assert 'value="12.5"' in page and "已修改" in page
    # Saving the same values again changes nothing and writes no event.
    assert (
        c.post("/admin/policies", data=_form(flag_level="high", accept_within="12.5")).status_code
        == 302
    )
    assert len(_events("policy.changed")) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("flag_level", "extreme", "请选择有效的送交专家的风险等级"),
        ("accept_within", "abc", "接受邀请期限必须是数字"),
        ("accept_within", "0.5", "接受邀请期限须在 1 到 720 之间"),
        ("decide_within", "nan", "签署结论期限须在 1 到 2160 之间"),
        ("screening_max_attempts", "2.5", "机器初筛最多尝试次数必须是整数"),
        ("screening_max_attempts", "0", "机器初筛最多尝试次数须在 1 到 10 之间"),
        ("stuck_after", "", "初筛卡住判定时间必须是数字"),
    ],
)
def test_validation_errors(
    app: Any, people: dict[str, Any], field: str, value: str, message: str
) -> None:
    c = _login(app, people["admin"])
    resp = c.post("/admin/policies", data=_form(**{"flag_level": "high", field: value}))
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert message in page and "策略未保存" in page
    assert db.session.scalars(select(policy.PolicySetting)).all() == []  # nothing half-saved
    assert _events("policy.changed") == []


def test_reset_to_default(app: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["admin"])
    c.post(
        "/admin/policies", data=_form(flag_level="critical", decide_within="24", stuck_after="5")
    )
    assert c.post("/admin/policies/reset", data={"key": "stuck_after"}).status_code == 302
    assert policy.effective().stuck_after == 60 and policy.effective().flag_level == "critical"
    assert c.post("/admin/policies/reset").status_code == 302
    assert policy.effective() == policy.Policy(**policy.defaults())
    assert db.session.scalars(select(policy.PolicySetting)).all() == []
    one, everything = _events("policy.reset")
    assert one.data["changes"] == {"stuck_after": {"old": 300, "new": 60}}
    assert everything.data["changes"] == {
        "flag_level": {"old": "critical", "new": "medium"},
        "decide_within": {"old": 24 * 3600, "new": 5 * 24 * 3600},
    }
    # Nothing left to reset: no event.
    c.post("/admin/policies/reset")
    assert len(_events("policy.reset")) == 2
    assert c.post("/admin/policies/reset", data={"key": "nonsense"}).status_code == 400


def test_configuration_gives_the_defaults(app: Any) -> None:
    app.config["FLAG_LEVEL"] = "low"
    app.config["ACCEPT_WITHIN"] = 7200
    assert policy.effective().flag_level == "low"
    assert policy.effective().accept_within == 7200


# --- the effective policy is what screening and assignment use ---------------------------------


def test_flag_level_decides_routing(app: Any, factory: Any, people: dict[str, Any]) -> None:
    ed = factory.token(people["editor"])
    routed = submit_screened(app, ed, MEDIUM_TITLE, MEDIUM_BODY)
    assert db.session.get(Item, routed).state.value == "in_review"  # type: ignore[union-attr]
    c = _login(app, people["admin"])
    assert c.post("/admin/policies", data=_form(flag_level="high")).status_code == 302
    kept = submit_screened(app, ed, MEDIUM_TITLE + "（二）", MEDIUM_BODY)
    item = db.session.get(Item, kept)
    assert item is not None and item.state.value == "cleared"
    assert item.current_version.report.risk_level == "medium"  # type: ignore[union-attr]
    assert not item.current_version.report.is_flagged  # type: ignore[union-attr]
    # The earlier item's routing is not revisited.
    assert db.session.get(Item, routed).state.value == "in_review"  # type: ignore[union-attr]


def test_deadlines_apply_to_new_assignments(app: Any, factory: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["admin"])
    assert c.post("/admin/policies", data=_form(accept_within="3")).status_code == 302
    item_id = submit_screened(app, factory.token(people["editor"]), MEDIUM_TITLE, MEDIUM_BODY)
    [offer] = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
    assert offer.risk_level == "medium"  # deadline factor 1.0
    assert offer.due_at - offer.offered_at == timedelta(hours=3)
    # Accepting uses the decide-within of the moment.
    assert (
        c.post("/admin/policies", data=_form(accept_within="3", decide_within="7")).status_code
        == 302
    )
    resp = app.test_client().post(
        f"/api/v1/assignments/{offer.id}/accept", headers=factory.token(people["expert"])
    )
    assert resp.status_code == 200, resp.json
    db.session.refresh(offer)
    assert offer.accepted_at is not None
    assert offer.due_at - offer.accepted_at == timedelta(hours=7)


def test_max_attempts_comes_from_the_policy(app: Any, people: dict[str, Any]) -> None:
    from workers import screening

    policy.update_policy({"screening_max_attempts": 7, "stuck_after": 120}, actor=people["admin"])
    db.session.commit()
    assert policy.effective().screening_max_attempts == 7
    assert screening.deadlines_from_config().accept_within == 2 * 24 * 3600
    assert screening.thresholds_from_config().flag_level == "medium"


# --- rules: switching off and on ---------------------------------------------------------------


def test_disabled_rule_stops_firing_and_the_version_says_so(
    app: Any, factory: Any, people: dict[str, Any]
) -> None:
    ed = factory.token(people["editor"])
    base = rules.load_default_ruleset()
    before = submit_screened(app, ed, MEDIUM_TITLE, MEDIUM_BODY)
    assert {WATER_RULE, DETOX_RULE} <= _rule_ids(before)

    c = _login(app, people["admin"])
    missing_reason = c.post(
        f"/admin/rules/{WATER_RULE}/switch", data={"action": "disable", "reason": "  "}
    )
    assert missing_reason.status_code == 400
    assert "请填写停用规则的原因" in missing_reason.get_data(as_text=True)
    assert rulepacks.disabled_ids() == frozenset()

    resp = c.post(
        f"/admin/rules/{WATER_RULE}/switch", data={"action": "disable", "reason": "误报太多"}
    )
    assert resp.status_code == 302
    [event] = _events("rules.rule_disabled")
    reduced = base.without([WATER_RULE])
    assert event.subject_id == WATER_RULE
    assert event.data["old"] == "enabled" and event.data["new"] == "disabled"
    assert event.data["reason"] == "误报太多"
    assert event.data["ruleset_version"] == reduced.version != base.version
    assert rulepacks.effective_ruleset() is rulepacks.effective_ruleset()  # built once

    during = submit_screened(app, ed, MEDIUM_TITLE + "（二）", MEDIUM_BODY)
    assert WATER_RULE not in _rule_ids(during) and DETOX_RULE in _rule_ids(during)
    report = db.session.get(Item, during).current_version.report  # type: ignore[union-attr]
    assert report.ruleset_version == reduced.version  # type: ignore[union-attr]
    in_use = db.session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "rules.ruleset_in_use", AuditEvent.subject_id == reduced.version
        )
    )
    assert in_use is not None and in_use.data["rules"] == len(base) - 1
    # The earlier report is untouched.
    assert WATER_RULE in _rule_ids(before)
    page = c.get(f"/admin/rules/{WATER_RULE}").get_data(as_text=True)
    assert "误报太多" in page and "启用此规则" in page
    listing = c.get("/admin/rules?enabled=0").get_data(as_text=True)
    assert WATER_RULE in listing and DETOX_RULE not in listing

    resp = c.post(
        f"/admin/rules/{WATER_RULE}/switch", data={"action": "enable", "reason": "已修正规则"}
    )
    assert resp.status_code == 302
    [enabled] = _events("rules.rule_enabled")
    assert enabled.data["old"] == "disabled" and enabled.data["new"] == "enabled"
    assert enabled.data["ruleset_version"] == base.version
    after = submit_screened(app, ed, MEDIUM_TITLE + "（三）", MEDIUM_BODY)
    assert WATER_RULE in _rule_ids(after)
    assert db.session.get(Item, after).current_version.report.ruleset_version == base.version  # type: ignore[union-attr]


def test_switching_an_unknown_rule_or_twice(app: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["admin"])
    assert c.get("/admin/rules/no.such-rule").status_code == 404
    assert (
        c.post("/admin/rules/no.such-rule/switch", data={"action": "disable", "reason": "x"})
    ).status_code == 404
    data = {"action": "enable", "reason": "本来就启用"}
    assert c.post(f"/admin/rules/{WATER_RULE}/switch", data=data).status_code == 302
    assert _events("rules.rule_enabled") == []


def test_rule_list_filters(app: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["auditor"])
    base = rules.load_default_ruleset()
    water = base.rule(WATER_RULE)

    def ids(query: str) -> set[str]:
        page = c.get("/admin/rules" + query).get_data(as_text=True)
        return {r.id for r in base.rules if f"<code>{r.id}</code>" in page}

    assert ids("") == {r.id for r in base.rules}
    assert ids(f"?pack={water.source}") == {r.id for r in base.rules if r.source == water.source}
    assert ids(f"?category={water.category}") == {
        r.id for r in base.rules if r.category == water.category
    }
    assert ids("?domain=交通") == {r.id for r in base.rules if "交通" in r.domains}
    assert ids("?q=special-water") == {r.id for r in base.rules if "special-water" in r.id}
    assert WATER_RULE in ids("?q=" + water.title)
    assert ids("?enabled=0") == set()


# --- statistics --------------------------------------------------------------------------------


def test_statistics_match_the_seeded_findings(
    app: Any, factory: Any, people: dict[str, Any]
) -> None:
    ed = factory.token(people["editor"])
    first = submit_screened(app, ed, MEDIUM_TITLE, MEDIUM_BODY)
    second = submit_screened(app, ed, MEDIUM_TITLE + "（二）", MEDIUM_BODY)
    submit_screened(app, ed, "无关", "今天天气不错，适合散步。")
    expert_headers = factory.token(people["expert"])
    for item_id, verdict, kind in (
        (first, "confirmed", "reject"),
        (second, "false_positive", "approve"),
    ):
        [offer] = db.session.scalars(select(Assignment).where(Assignment.item_id == item_id)).all()
        water = db.session.scalar(
            select(Finding.id).where(
                Finding.version_id == offer.version_id, Finding.rule_id == WATER_RULE
            )
        )
        detox = db.session.scalar(
            select(Finding.id).where(
                Finding.version_id == offer.version_id, Finding.rule_id == DETOX_RULE
            )
        )
        body: dict[str, Any] = {
            "decision": kind,
            "password": PASSWORD,
            "finding_verdicts": {str(water): verdict, str(detox): "uncertain"},
        }
        if kind != "approve":
            body.update(comment="伪科学说法", references=["医学教科书"])
        app.test_client().post(f"/api/v1/assignments/{offer.id}/accept", headers=expert_headers)
        resp = app.test_client().post(
            f"/api/v1/assignments/{offer.id}/decision", headers=expert_headers, json=body
        )
        assert resp.status_code == 200, resp.json
    # The first item's report is older than the recent window.
    first_version = db.session.get(Item, first).current_version_id  # type: ignore[union-attr]
    db.session.execute(
        update(ScreeningReport)
        .where(ScreeningReport.version_id == first_version)
        .values(created_at=utcnow() - timedelta(days=40))
    )
    db.session.commit()

    stats = rulepacks.statistics(WATER_RULE)
    assert (stats.findings, stats.findings_recent, stats.items, stats.versions) == (2, 1, 2, 2)
    assert stats.verdicts == {"confirmed": 1, "false_positive": 1, "uncertain": 0}
    assert stats.judged_findings == 2 and stats.confirmed_share == 0.5
    assert stats.decisions == {"approve": 1, "request_changes": 0, "reject": 1}
    detox = rulepacks.statistics(DETOX_RULE)
    assert detox.verdicts == {"confirmed": 0, "false_positive": 0, "uncertain": 2}
    assert detox.confirmed_share is None
    assert rulepacks.finding_counts()[WATER_RULE] == 2

    page = _login(app, people["auditor"]).get(f"/admin/rules/{WATER_RULE}").get_data(as_text=True)
    assert "50%" in page and "小分子水" in page
    assert f"/items/{first}" in page and f"/items/{second}" in page
    unused = next(
        r.id for r in rules.load_default_ruleset().rules if r.id not in rulepacks.finding_counts()
    )
    assert rulepacks.statistics(unused).findings == 0


def test_pages_in_english(app: Any, people: dict[str, Any]) -> None:
    c = _login(app, people["admin"])
    page = c.get("/admin/policies?lang=en").get_data(as_text=True)
    assert "Risk level that goes to experts" in page and "Restore defaults" in page
    page = c.get(f"/admin/rules/{WATER_RULE}?lang=en").get_data(as_text=True)
    assert "Statistics" in page and "Disable this rule" in page
    page = c.get("/admin/rules?lang=en").get_data(as_text=True)
    assert "Rule packs" in page and "Pseudo-mechanism" in page

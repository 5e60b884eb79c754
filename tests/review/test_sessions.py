"""Sign-ins (RELIABILITY 20): revocation, fixation, timeouts, cookie flags and their config."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

import config
from review.audit import AuditEvent
from review.auth import check_password
from review.db import db, utcnow
from review.models import LoginSession, User

PASSWORD = "correct-horse-1"
COOKIE = "kepu_session"


def _login(app: Any, username: str, password: str = PASSWORD, **kwargs: Any) -> Any:
    client = app.test_client(**kwargs)
    resp = client.post("/login", data={"username": username, "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return client


def _signed_in(client: Any) -> bool:
    resp = client.get("/notifications")
    assert resp.status_code in (200, 302)
    return resp.status_code == 200


def _actions(action: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0


def test_password_change_ends_other_sign_ins_and_keeps_this_one(app: Any, factory: Any) -> None:
    user = factory.user("expert", username="pw1")
    laptop, phone = _login(app, "pw1"), _login(app, "pw1")
    old_cookie = laptop.get_cookie(COOKIE).value
    resp = laptop.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "new-horse-22",
            "confirm": "new-horse-22",
        },
    )
    assert resp.status_code == 302
    assert _signed_in(laptop)  # this browser carries on, with a new sign-in
    assert laptop.get_cookie(COOKIE).value != old_cookie
    assert not _signed_in(phone)  # the other one is signed out
    thief = app.test_client()
    thief.set_cookie(COOKIE, old_cookie)
    assert not _signed_in(thief)  # and the cookie from before the change is dead
    db.session.expire_all()
    assert check_password(db.session.get(User, user.id), "new-horse-22")
    assert _actions("auth.password_changed") == 1
    live = db.session.scalar(
        select(func.count()).where(
            LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None)
        )
    )
    assert live == 1
    assert _login(app, "pw1", "new-horse-22")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"current_password": "wrong-horse", "new_password": "n" * 10, "confirm": "n" * 10},
            "当前密码不正确",
        ),
        (
            {"current_password": PASSWORD, "new_password": "short", "confirm": "short"},
            "至少 10 个字符",
        ),
        (
            {
                "current_password": PASSWORD,
                "new_password": "new-horse-22",
                "confirm": "new-horse-2",
            },
            "不一致",
        ),
    ],
)
def test_password_change_refusals_change_nothing(
    app: Any, factory: Any, form: dict[str, str], message: str
) -> None:
    factory.user("editor", username="pw2")
    client, other = _login(app, "pw2"), _login(app, "pw2")
    resp = client.post("/account/password", data=form)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert _signed_in(client) and _signed_in(other)
    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.username == "pw2"))
    assert check_password(user, PASSWORD)
    assert _actions("auth.password_changed") == 0
    assert _actions("auth.password_change_refused") == (
        1 if "wrong" in form["current_password"] else 0
    )


def test_every_role_has_the_password_page(app: Any, factory: Any) -> None:
    for role in ("editor", "expert", "auditor", "admin"):
        user = factory.user(role)
        page = _login(app, user.username).get("/account/password")
        assert page.status_code == 200 and 'name="current_password"' in page.get_data(as_text=True)
    assert app.test_client().get("/account/password").status_code == 302


def test_admin_password_reset_ends_the_users_sign_ins(app: Any, factory: Any) -> None:
    user = factory.user("editor", username="pw3")
    factory.user("admin", username="boss")
    victim = _login(app, "pw3")
    admin = _login(app, "boss")
    assert (
        admin.post(f"/admin/users/{user.id}/password", data={"password": "short"}).status_code
        == 302
    )
    assert _signed_in(victim) and _actions("user.password_reset") == 0  # too short: refused
    resp = admin.post(f"/admin/users/{user.id}/password", data={"password": "reset-horse-3"})
    assert resp.status_code == 302
    assert not _signed_in(victim)
    assert _actions("user.password_reset") == 1
    assert _login(app, "pw3", "reset-horse-3")
    assert _signed_in(admin)


def test_session_changes_at_login_and_a_planted_cookie_stays_anonymous(
    app: Any, factory: Any
) -> None:
    factory.user("editor", username="fix1")
    victim = app.test_client()
    victim.get("/login?lang=zh")  # a pre-login session cookie (language remembered)
    planted = victim.get_cookie(COOKIE).value
    resp = victim.post("/login", data={"username": "fix1", "password": PASSWORD})
    assert resp.status_code == 302
    assert victim.get_cookie(COOKIE).value != planted
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, planted)
    assert not _signed_in(attacker)
    # Two sign-ins of one user are two server-side sessions with different ids.
    again = _login(app, "fix1")
    ids = db.session.scalars(select(LoginSession.id)).all()
    assert len(set(ids)) == len(ids) == 2
    assert _signed_in(again) and _signed_in(victim)


def test_idle_timeout_and_absolute_lifetime(app: Any, factory: Any) -> None:
    factory.user("editor", username="idle1")
    idle = _login(app, "idle1")
    old = _login(app, "idle1")
    busy = _login(app, "idle1")
    rows = db.session.scalars(select(LoginSession).order_by(LoginSession.created_at)).all()
    idle_id, old_id, busy_id = (r.id for r in rows)
    now = utcnow()
    limit = app.config["SESSION_IDLE_TIMEOUT"]
    assert limit == timedelta(minutes=30)
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.id == idle_id)
        .values(last_seen_at=now - limit - timedelta(minutes=1))
    )
    db.session.execute(  # active all along, but signed in longer ago than the lifetime
        update(LoginSession)
        .where(LoginSession.id == old_id)
        .values(created_at=now - timedelta(hours=12, minutes=1), last_seen_at=now)
    )
    db.session.execute(  # quiet for 29 minutes: still inside the idle window
        update(LoginSession)
        .where(LoginSession.id == busy_id)
        .values(last_seen_at=now - timedelta(minutes=29))
    )
    db.session.commit()
    assert not _signed_in(idle)
    assert not _signed_in(old)
    assert _signed_in(busy)
    db.session.expire_all()
    touched = db.session.get(LoginSession, busy_id)
    assert touched is not None and utcnow() - touched.last_seen_at < timedelta(minutes=1)


def test_timeouts_are_configurable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("KEPU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("KEPU_SESSION_IDLE_MINUTES", "5")
    monkeypatch.setenv("KEPU_SESSION_HOURS", "2")
    settings = config.load()
    assert settings["SESSION_IDLE_TIMEOUT"] == timedelta(minutes=5)
    assert settings["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=2)


def test_production_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The configuration as deployed (no overrides): the cookie and session invariants."""
    monkeypatch.setenv("KEPU_INSTANCE_PATH", str(tmp_path))
    for name in ("SECURE_COOKIES", "SESSION_IDLE_MINUTES", "SESSION_HOURS", "SECRET_KEY"):
        monkeypatch.delenv(f"KEPU_{name}", raising=False)
    s = config.load()
    assert s["SESSION_COOKIE_SECURE"] is True and s["HSTS"] is True
    assert str(s["SESSION_COOKIE_NAME"]).startswith("__Host-")
    assert s["SESSION_COOKIE_PATH"] == "/" and s["SESSION_COOKIE_DOMAIN"] is None
    assert s["SESSION_COOKIE_HTTPONLY"] is True
    assert s["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert s["PERMANENT_SESSION_LIFETIME"] <= timedelta(hours=12)  # type: ignore[operator]
    assert s["SESSION_IDLE_TIMEOUT"] <= timedelta(minutes=30)  # type: ignore[operator]
    assert s.get("WTF_CSRF_ENABLED", True) is True and not s.get("DEBUG")
    assert len(str(s["SECRET_KEY"])) >= 32
    assert s["MAX_CONTENT_LENGTH"] and s["MAX_FORM_MEMORY_SIZE"] and s["MAX_FORM_PARTS"]
    monkeypatch.setenv("KEPU_SECURE_COOKIES", "false")  # the embedded http://127.0.0.1 run
    plain = config.load()
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["HSTS"] is False
    assert plain["SESSION_COOKIE_NAME"] == "kepu_session"
    assert plain["SESSION_COOKIE_HTTPONLY"] is True and plain["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config.cookie_settings(False) == {k: plain[k] for k in config.cookie_settings(False)}


def _set_cookie(resp: Any, name: str) -> str:
    headers = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, resp.headers.getlist("Set-Cookie")
    return headers[0]


def test_https_cookie_flags_and_hsts(app: Any, factory: Any) -> None:
    factory.user("editor", username="tls1")
    app.config.update(config.cookie_settings(True))
    client = app.test_client()
    resp = client.post(
        "/login",
        data={"username": "tls1", "password": PASSWORD},
        base_url="https://localhost",
    )
    assert resp.status_code == 302
    header = _set_cookie(resp, "__Host-kepu")
    parts = [p.strip() for p in header.split(";")]
    assert "Secure" in parts and "HttpOnly" in parts and "SameSite=Lax" in parts
    assert "Path=/" in parts and not any(p.lower().startswith("domain=") for p in parts)
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    page = client.get("/notifications", base_url="https://localhost")
    assert page.status_code == 200  # the __Host- cookie comes back over HTTPS


def test_plain_http_cookie_flags(app: Any, factory: Any) -> None:
    factory.user("editor", username="tls2")
    resp = app.test_client().post("/login", data={"username": "tls2", "password": PASSWORD})
    parts = [p.strip() for p in _set_cookie(resp, COOKIE).split(";")]
    assert "HttpOnly" in parts and "SameSite=Lax" in parts and "Secure" not in parts
    assert "Strict-Transport-Security" not in resp.headers


# --- new passwords must be strong (issue 14.10) -------------------------------------------------

#: Refused everywhere a password is set, each with the rule it breaks.
WEAK = [
    ("12345678", "至少 10 个字符"),
    ("password", "至少 10 个字符"),
    ("aaaaaaaa", "至少 10 个字符"),
    (" " * 8, "至少 10 个字符"),
    (" " * 12, "全是空格"),
    ("aaaaaaaaaaaa", "重复"),
    ("abababababab", "重复"),
    ("1234567890", "太常见"),
    ("qwertyuiop", "太常见"),
    ("Password2024!", "太常见"),
    ("woaini1314520", "太常见"),
    ("1qaz2wsx3edc", "太常见"),
    ("!!Superman123", "太常见"),
    ("zhangwei2024", "太常见"),
    ("{username}", "用户名"),
    ("{username}-2024!", "用户名"),
    ("my-{display}-pass", "用户名"),
    ("{email}-horse-9", "用户名"),
]


def _weak(template: str, user: User) -> str:
    local = (user.email or "").split("@")[0]
    return template.format(username=user.username, display=user.display_name, email=local)


def _strong_user(factory: Any, username: str) -> User:
    user = factory.user("editor", username=username)
    user.display_name = "Zhaoyunlong"
    user.email = "yunlong.zhao@example.cn"
    db.session.commit()
    return user  # type: ignore[no-any-return]


@pytest.mark.parametrize(("template", "rule"), WEAK)
def test_weak_new_passwords_are_refused_on_every_page(
    app: Any, factory: Any, template: str, rule: str
) -> None:
    user = _strong_user(factory, "liuchangjiang")
    factory.user("admin", username="boss")
    password = _weak(template, user)
    own, admin = _login(app, "liuchangjiang"), _login(app, "boss")
    resp = own.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": password, "confirm": password},
    )
    assert resp.status_code == 400 and rule in resp.get_data(as_text=True), password
    resp = admin.post(
        f"/admin/users/{user.id}/password", data={"password": password}, follow_redirects=True
    )
    assert rule in resp.get_data(as_text=True), password
    new_user = template.format(username="wuxiaofeng", display="wuxiaofeng", email="wuxiaofeng")
    resp = admin.post(
        "/admin/users",
        data={"username": "wuxiaofeng", "role": "auditor", "password": new_user},
        follow_redirects=True,
    )
    assert rule in resp.get_data(as_text=True), new_user
    db.session.expire_all()
    assert check_password(db.session.get(User, user.id), PASSWORD)
    assert db.session.scalar(select(User).where(User.username == "wuxiaofeng")) is None
    assert _actions("auth.password_changed") + _actions("user.password_reset") == 0


def test_weak_passwords_are_refused_by_the_cli(app: Any, factory: Any) -> None:
    runner = app.test_cli_runner()
    for password in ("12345678", "password", "aaaaaaaa", " " * 8, "wangming-1", "Qwerty123456"):
        result = runner.invoke(
            args=["users", "create", "wangming", "--role", "auditor", "--password", password]
        )
        assert result.exit_code != 0 and "密码" in result.output, password
    assert db.session.scalar(select(User).where(User.username == "wangming")) is None
    result = runner.invoke(
        args=["users", "create", "wangming", "--role", "auditor", "--password", "gleaming-otter-42"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "create", "zhoujie", "--role", "auditor"])
    assert result.exit_code == 0, result.output  # a random password is strong


def test_a_strong_password_is_accepted(app: Any, factory: Any) -> None:
    user = _strong_user(factory, "strong1")
    client = _login(app, "strong1")
    new = "violet-harbour-lantern"
    resp = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": new, "confirm": new},
    )
    assert resp.status_code == 302
    db.session.expire_all()
    assert check_password(db.session.get(User, user.id), new)


def test_demo_accounts_meet_the_password_rules(app: Any) -> None:
    from review.passwords import password_problem

    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[1:] if line.strip()]
    assert len(rows) > 6
    for username, password, _role in rows:
        user = db.session.scalar(select(User).where(User.username == username))
        names = (username, user.display_name, user.email)
        assert password_problem(password, names=names) is None, username
    assert _login(app, rows[0][0], rows[0][1])

"""Accounts: argon2 passwords, revocable server-side sign-ins and API tokens."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from review.audit import record_event
from review.db import db, utcnow
from review.errors import Conflict, InvalidInput
from review.models import ApiToken, LoginSession, Role, Unit, User
from review.operations import clean_text
from review.passwords import password_problem
from review.security import security_event

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    """True when ``password`` matches; never raises for a bad hash."""
    return _verify(user.password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy_hash: list[str] = []


def _dummy_password_hash() -> str:
    """A hash of a random password with the same parameters as real ones (made once)."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash(secrets.token_urlsafe(24)))
    return _dummy_hash[0]


def authenticate(username: str, password: str) -> User | None:
    """The active user whose name and password match, else None.

    Exactly one argon2 verification runs whatever the outcome — against a dummy hash when
    the name is unknown and against the real one when the account is disabled — so the time
    of an answer does not tell which user names exist.
    """
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    ok = _verify(user.password_hash if user is not None else _dummy_password_hash(), password)
    if user is None or not ok or not user.is_active_user:
        return None
    return user


def create_user(
    username: str,
    *,
    role: str,
    password: str,
    display_name: str | None = None,
    unit: Unit | None = None,
    actor: Any,
) -> User:
    """Create an account; the role must be one of editor/expert/auditor/admin."""
    username = clean_text(username, "username", "用户名", max_chars=80, required=True).strip()
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidInput("角色只能是 editor、expert、auditor 或 admin", field="role") from None
    problem = password_problem(password, names=(username, display_name))
    if problem:
        raise InvalidInput(problem, code="weak_password", field="password")
    if role_value is Role.editor and unit is None:
        raise InvalidInput("媒体编辑必须隶属一个单位", field="unit")
    if db.session.scalar(select(User).where(User.username == username)):
        raise Conflict(f"用户名“{username}”已存在", code="exists")
    user = User(
        username=username,
        display_name=display_name or username,
        role=role_value,
        unit_id=unit.id if unit else None,
        password_hash=hash_password(password),
    )
    db.session.add(user)
    db.session.flush()
    record_event(
        "user.created",
        actor=actor,
        subject_type="user",
        subject_id=user.id,
        data={"username": username, "role": role_value.value, "unit": unit.name if unit else None},
    )
    return user


def start_login_session(user: User) -> LoginSession:
    """Record a sign-in; the returned id goes into the session cookie."""
    login = LoginSession(id=secrets.token_urlsafe(32), user_id=user.id)
    db.session.add(login)
    db.session.flush()
    user.login_session_id = login.id
    record_event("auth.login", actor=user, subject_type="user", subject_id=user.id)
    return login


def record_failed_login(username: str, *, ip: str | None = None) -> None:
    """A failed sign-in is an audit event too (the username as typed, truncated)."""
    security_event("login_failed", username=username[:80], ip=ip)
    record_event(
        "auth.login_failed",
        actor=None,
        subject_type="user",
        subject_id="-",
        data={"username": username[:80], "ip": ip},
    )


def record_limited_login(username: str, *, ip: str | None, retry_after: int) -> None:
    """A sign-in refused by the rate limit, before its password was checked."""
    security_event("login_limited", username=username[:80], ip=ip, retry_after=retry_after)
    record_event(
        "auth.login_limited",
        actor=None,
        subject_type="user",
        subject_id="-",
        data={"username": username[:80], "ip": ip, "retry_after": retry_after},
    )


def record_limited_reauth(user: User, *, purpose: str, ip: str | None, retry_after: int) -> None:
    """A password re-entry (signing, changing the password) refused by the rate limit."""
    security_event(
        "reauth_limited", username=user.username, purpose=purpose, ip=ip, retry_after=retry_after
    )
    record_event(
        "auth.reauth_limited",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        data={"purpose": purpose, "ip": ip, "retry_after": retry_after},
    )


#: ``last_seen_at`` is written at most this often, not on every request.
TOUCH_EVERY = timedelta(seconds=60)


def user_for_session(
    session_id: str,
    *,
    idle_timeout: timedelta | None = None,
    lifetime: timedelta | None = None,
) -> User | None:
    """The user behind a live sign-in, or None when it was revoked, idle too long, too old,
    or the user disabled or their password changed since."""
    login = db.session.get(LoginSession, session_id)
    if login is None or login.revoked_at is not None:
        return None
    now = utcnow()
    if idle_timeout is not None and now - login.last_seen_at > idle_timeout:
        return None
    if lifetime is not None and now - login.created_at > lifetime:
        return None
    user = login.user
    if not user.is_active_user or login.created_at < user.password_changed_at:
        return None
    user.login_session_id = login.id
    return user


def touch_login_session(session_id: str) -> bool:
    """Move the sign-in's ``last_seen_at`` to now (at most once a minute); True when written."""
    now = utcnow()
    moved = db.session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.last_seen_at < now - TOUCH_EVERY)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(moved)


def _check_new_password(
    user: User, password: object, confirm: object | None = None, *, field: str = "new_password"
) -> str:
    problem = password_problem(password, names=(user.username, user.display_name, user.email))
    if problem:
        raise InvalidInput(problem, code="weak_password", field=field)
    if confirm is not None and confirm != password:
        raise InvalidInput("两次输入的新密码不一致", field="confirm")
    assert isinstance(password, str)  # password_problem refuses anything else
    return password


def _revoke_sign_ins(user: User, *, keep: str | None = None) -> int:
    query = update(LoginSession).where(
        LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(LoginSession.id != keep)
    return int(
        db.session.execute(
            query.values(revoked_at=utcnow()).execution_options(synchronize_session=False)
        ).rowcount
    )


def change_password(user: User, *, current: object, new: object, confirm: object) -> LoginSession:
    """The user changes their own password (the current one re-entered); every sign-in of
    theirs ends and a fresh one is returned for the browser that made the change."""
    if not isinstance(current, str) or not check_password(user, current):
        raise InvalidInput("当前密码不正确", code="password_required", field="current_password")
    password = _check_new_password(user, new, confirm)
    if check_password(user, password):
        raise InvalidInput("新密码不能与当前密码相同", field="new_password")
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    ended = _revoke_sign_ins(user)
    db.session.flush()
    record_event(
        "auth.password_changed",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        data={"sessions_ended": ended},
    )
    # A new sign-in, started after the change, for the browser that made it (a new cookie).
    login = LoginSession(id=secrets.token_urlsafe(32), user_id=user.id)
    db.session.add(login)
    db.session.flush()
    user.login_session_id = login.id
    return login


def reset_password(user: User, *, new: object, actor: Any) -> int:
    """An admin sets a new password for ``user``; all of the user's sign-ins end."""
    password = _check_new_password(user, new, field="password")
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    ended = _revoke_sign_ins(user)
    db.session.flush()
    record_event(
        "user.password_reset",
        actor=actor,
        subject_type="user",
        subject_id=user.id,
        data={"username": user.username, "sessions_ended": ended},
    )
    return ended


def end_login_session(user: User) -> None:
    """Revoke the current sign-in so a copied cookie stops working."""
    if user.login_session_id:
        login = db.session.get(LoginSession, user.login_session_id)
        if login is not None and login.revoked_at is None:
            login.revoked_at = utcnow()
    record_event("auth.logout", actor=user, subject_type="user", subject_id=user.id)


def set_active(user: User, active: bool, *, actor: Any) -> None:
    """Enable or disable an account; disabling ends all its sign-ins and tokens."""
    user.is_active_user = active
    if not active:
        now = utcnow()
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    db.session.flush()
    record_event(
        "user.enabled" if active else "user.disabled",
        actor=actor,
        subject_type="user",
        subject_id=user.id,
    )


def issue_token(user: User, *, name: str = "", actor: Any) -> str:
    """Create an API token for ``user``; the plain token is returned once and never stored."""
    token = "kp_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=ApiToken.hash_token(token)))
    db.session.flush()
    record_event(
        "token.issued", actor=actor, subject_type="user", subject_id=user.id, data={"name": name}
    )
    return token


def user_for_token(token: str) -> User | None:
    """The active user owning a live token, or None."""
    row = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == ApiToken.hash_token(token))
    )
    if row is None or row.revoked_at is not None or not row.user.is_active_user:
        return None
    return row.user

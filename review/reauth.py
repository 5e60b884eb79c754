"""Password re-entry (signing a decision, changing one's password), limited like sign-in.

A signed-in session is enough to guess the account's password through any form that asks for
it again, so those forms count wrong passwords exactly as sign-in does — per account and per
address, in the shared limiter (Redis, or per process when Redis is down) — and past the limit
refuse every attempt, the right password included, with 429 and ``Retry-After``.
"""

from __future__ import annotations

from flask import current_app, request
from flask_babel import gettext

from review import ratelimit
from review.auth import check_password, record_limited_reauth
from review.db import db
from review.errors import TooManyAttempts
from review.models import User
from review.security import security_event


def _keys(user: User, ip: str) -> list[tuple[str, int]]:
    cfg = current_app.config
    return [
        (f"reauth:account:{user.id}", int(cfg["LOGIN_MAX_FAILURES"])),
        (f"reauth:ip:{ip}", int(cfg["LOGIN_MAX_FAILURES_PER_IP"])),
    ]


def confirm_password(user: User, password: object, *, purpose: str) -> bool:
    """True when ``password`` is the user's; counts a wrong one.

    Past the limit raises TooManyAttempts before the password is checked, after committing
    the ``auth.reauth_limited`` audit event (the caller has changed nothing yet).
    """
    ip = request.remote_addr or "-"
    limiter = ratelimit.for_app(current_app)
    keys = _keys(user, ip)
    wait = limiter.blocked(keys)
    if wait:
        record_limited_reauth(user, purpose=purpose, ip=ip, retry_after=wait)
        db.session.commit()
        raise TooManyAttempts(
            gettext("密码错误次数过多，请 %(seconds)s 秒后再试", seconds=wait),
            retry_after=wait,
        )
    ok = isinstance(password, str) and check_password(user, password)
    if ok:
        limiter.reset(keys[0][0])
    else:
        limiter.hit([key for key, _ in keys], int(current_app.config["LOGIN_WINDOW"]))
        security_event("reauth_failed", username=user.username, purpose=purpose, ip=ip)
    return ok

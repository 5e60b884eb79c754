"""Sign-in throttling (RELIABILITY 22): per account and address, per address, shared through
Redis by every web process, and still counted per process when Redis is down."""

from __future__ import annotations

import http.cookiejar
import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from review import ratelimit
from review.audit import AuditEvent
from review.db import db
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, REDIS_URL, submit_screened, wait_until

PASSWORD = "correct-horse-1"
#: Private ports of this test module (never the shared 6379 / 5000).
REDIS_PORT = int(os.environ.get("KEPU_TEST_LIMITER_REDIS_PORT", "6395"))
WEB_PORT = int(os.environ.get("KEPU_TEST_LIMITER_WEB_PORT", "5095"))


def _attempt(client: Any, username: str, password: str, ip: str = "10.0.0.1") -> Any:
    return client.post(
        "/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def _count(action: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0


def test_limiter_uses_the_configured_redis(app: Any) -> None:
    limiter = ratelimit.for_app(app)
    assert app.config["RATELIMIT_URL"] == REDIS_URL and limiter.redis is not None
    assert limiter.redis.ping()
    limiter.hit(["probe:a", "probe:b"], 60)
    pattern = f"kepu:rl:{limiter.namespace}:*"
    assert len(list(limiter.redis.scan_iter(pattern))) == 2
    assert limiter.blocked([("probe:a", 1)]) > 0 and limiter.blocked([("probe:a", 2)]) == 0
    limiter.clear()  # what the app fixture does at teardown
    assert list(limiter.redis.scan_iter(pattern)) == []


def test_wrong_passwords_then_even_the_right_one_waits(
    app: Any, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    factory.user("editor", username="bf1")
    factory.user("editor", username="bf2")
    app.config["LOGIN_WINDOW"] = 3  # a short window so the test can see it end
    client = app.test_client()
    caplog.set_level(logging.WARNING, logger="kepu.security")
    limit = app.config["LOGIN_MAX_FAILURES"]
    assert limit == 5
    for _ in range(limit):
        assert _attempt(client, "bf1", "wrong-horse").status_code == 401
    for password in ("wrong-horse", PASSWORD):
        resp = _attempt(client, "bf1", password)
        assert resp.status_code == 429, resp.status_code
        assert 1 <= int(resp.headers["Retry-After"]) <= 3
        assert "登录失败次数过多" in resp.get_data(as_text=True)
    # Other accounts from the same address, and this account from elsewhere, still sign in.
    assert _attempt(app.test_client(), "bf2", PASSWORD).status_code == 302
    assert _attempt(app.test_client(), "bf1", PASSWORD, ip="10.0.0.2").status_code == 302
    assert _count("auth.login_failed") == limit
    assert _count("auth.login_limited") == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "kepu.security"]
    assert sum("login_failed" in m and "'bf1'" in m for m in logged) == limit
    assert sum("login_limited" in m and "'bf1'" in m for m in logged) == 2
    time.sleep(3.5)  # the window passes
    assert _attempt(client, "bf1", PASSWORD).status_code == 302


def test_many_accounts_from_one_address_hit_the_address_limit(app: Any, factory: Any) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_IP"] = 12
    names = [factory.user("expert", username=f"spray{n}").username for n in range(6)]
    client = app.test_client()
    statuses = [
        _attempt(client, names[n % 6], "wrong-horse", ip="10.0.0.9").status_code for n in range(20)
    ]
    assert statuses[:12] == [401] * 12 and set(statuses[12:]) == {429}
    fresh = factory.user("expert", username="spray-new").username
    assert _attempt(client, fresh, PASSWORD, ip="10.0.0.9").status_code == 429
    assert _attempt(client, fresh, PASSWORD, ip="10.0.0.10").status_code == 302


def test_success_clears_the_accounts_failures(app: Any, factory: Any) -> None:
    factory.user("editor", username="ok1")
    client = app.test_client()
    for _ in range(4):
        assert _attempt(client, "ok1", "wrong-horse").status_code == 401
    assert _attempt(app.test_client(), "ok1", PASSWORD).status_code == 302
    for _ in range(4):  # a fresh count: four more failures are still below the limit
        assert _attempt(client, "ok1", "wrong-horse").status_code == 401


# --- the password re-entered to sign a decision or change the password (issue 14.9) ----------


def _expert_with_assignment(app: Any, factory: Any, username: str) -> tuple[Any, int]:
    """An expert (signed in through the API) holding an accepted assignment on a flagged item."""
    editor = factory.token(factory.user("editor"))
    expert = factory.expert(username=username)
    other = factory.expert(senior=True)
    assert other is not None
    headers = factory.token(expert)
    submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
    client = app.test_client()
    aid = client.get("/api/v1/assignments", headers=headers).json[0]["id"]
    assert client.post(f"/api/v1/assignments/{aid}/accept", headers=headers).status_code == 200
    return headers, int(aid)


def _page_client(app: Any, username: str) -> Any:
    client = app.test_client()
    resp = client.post("/login", data={"username": username, "password": PASSWORD})
    assert resp.status_code == 302
    return client


def test_wrong_signing_passwords_over_the_api_then_even_the_right_one_waits(
    app: Any, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    headers, aid = _expert_with_assignment(app, factory, "sig1")
    client = app.test_client()
    caplog.set_level(logging.WARNING, logger="kepu.security")

    def sign(password: str, ip: str = "10.0.1.1") -> Any:
        return client.post(
            f"/api/v1/assignments/{aid}/decision",
            headers=headers,
            json={"decision": "approve", "password": password},
            environ_base={"REMOTE_ADDR": ip},
        )

    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        resp = sign("wrong-horse")
        assert resp.status_code == 403 and resp.json["error"] == "password_required"
    for password in ("wrong-horse", PASSWORD, PASSWORD):
        resp = sign(password, ip="10.0.1.2")  # another address does not help: per account
        assert resp.status_code == 429, resp.json
        assert resp.json["error"] == "too_many_attempts"
        assert "密码错误次数过多" in resp.json["message"]
        assert 1 <= int(resp.headers["Retry-After"]) <= app.config["LOGIN_WINDOW"]
    assert _count("review.signature_refused") == limit
    assert _count("auth.reauth_limited") == 3
    assert _count("review.decided") == 0
    logged = [r.getMessage() for r in caplog.records if r.name == "kepu.security"]
    assert sum("reauth_failed" in m and "'sig1'" in m for m in logged) == limit
    assert sum("reauth_limited" in m and "'sig1'" in m for m in logged) == 3
    # The counters are shared: any other web process (its own limiter) refuses as well.
    limiter = ratelimit.for_app(app)
    other_process = ratelimit.Limiter(app.config["RATELIMIT_URL"], namespace=limiter.namespace)
    assert other_process.blocked([(f"reauth:account:{_user_id('sig1')}", limit)]) > 0
    limiter.clear()  # the window passes
    assert sign(PASSWORD).status_code == 200


def _user_id(username: str) -> int:
    from review.models import User

    return int(db.session.scalar(select(User.id).where(User.username == username)))


def test_wrong_signing_passwords_in_the_page_are_limited(app: Any, factory: Any) -> None:
    _, aid = _expert_with_assignment(app, factory, "sig2")
    browser = _page_client(app, "sig2")

    def sign(password: str) -> Any:
        return browser.post(
            f"/assignments/{aid}/decision", data={"decision": "approve", "password": password}
        )

    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert sign("wrong-horse").status_code == 303
    for password in ("wrong-horse", PASSWORD):
        resp = sign(password)
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert "密码错误次数过多" in resp.get_data(as_text=True)
    assert _count("review.signature_refused") == 5 and _count("auth.reauth_limited") == 2


def test_wrong_current_passwords_on_the_password_page_are_limited(app: Any, factory: Any) -> None:
    factory.user("auditor", username="chg1")
    browser = _page_client(app, "chg1")
    new = "a-much-newer-horse-7"

    def change(current: str) -> Any:
        return browser.post(
            "/account/password",
            data={"current_password": current, "new_password": new, "confirm": new},
        )

    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert change("wrong-horse").status_code == 400
    for current in ("wrong-horse", PASSWORD):
        resp = change(current)
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert "密码错误次数过多" in resp.get_data(as_text=True)
    assert _count("auth.password_change_refused") == 5
    assert _count("auth.reauth_limited") == 2 and _count("auth.password_changed") == 0
    ratelimit.for_app(app).clear()  # the window passes
    assert change(PASSWORD).status_code == 302


def test_reentry_is_limited_per_address_across_accounts(app: Any, factory: Any) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_IP"] = 3
    for name in ("addr1", "addr2"):
        factory.user("auditor", username=name)
    one, two = _page_client(app, "addr1"), _page_client(app, "addr2")

    def change(browser: Any, current: str) -> int:
        data = {"current_password": current, "new_password": "n" * 12, "confirm": "n" * 12}
        return int(browser.post("/account/password", data=data).status_code)

    assert [change(one, "wrong-horse"), change(two, "wrong-horse"), change(one, "x")] == [400] * 3
    assert change(two, PASSWORD) == 429  # the address is spent, for every account


@pytest.mark.timeout(120)
def test_reentry_limit_falls_back_to_the_process_when_redis_is_down(
    app: Any, factory: Any, redis_srv: PrivateRedis
) -> None:
    headers, aid = _expert_with_assignment(app, factory, "sig3")
    app.config["RATELIMIT_URL"] = redis_srv.url
    app.extensions.pop("kepu_limiter", None)
    client = app.test_client()

    def sign(password: str) -> int:
        body = {"decision": "approve", "password": password}
        url = f"/api/v1/assignments/{aid}/decision"
        return int(client.post(url, headers=headers, json=body).status_code)

    assert sign("wrong-horse") == 403
    assert len(redis.Redis.from_url(redis_srv.url).keys("kepu:rl:*reauth*")) == 2
    redis_srv.stop()
    assert [sign("wrong-horse") for _ in range(6)] == [403] * 5 + [429]
    assert sign(PASSWORD) == 429


# --- sign-in takes the same work whether or not the user exists (issue 14.11) ---------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification the app runs, as the hash it checked against."""
    from argon2 import PasswordHasher

    seen: list[str] = []
    real = PasswordHasher.verify

    def counting(self: Any, password_hash: Any, password: Any) -> Any:
        seen.append(str(password_hash))
        return real(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return seen


def test_every_sign_in_runs_one_argon2_verification(
    app: Any, factory: Any, verifications: list[str]
) -> None:
    from review.audit import SYSTEM
    from review.auth import set_active

    factory.user("editor", username="known")
    gone = factory.user("editor", username="gone")
    set_active(gone, False, actor=SYSTEM)
    db.session.commit()
    client = app.test_client()
    cases = [
        ("known", "wrong-horse", 401),
        ("nobody-by-this-name", "wrong-horse", 401),
        ("gone", PASSWORD, 401),
        ("gone", "wrong-horse", 401),
        ("", "wrong-horse", 401),
        ("known", PASSWORD, 302),
    ]
    for n, (username, password, status) in enumerate(cases):
        before = len(verifications)
        resp = _attempt(client, username, password, ip=f"10.0.2.{n}")
        assert resp.status_code == status, (username, resp.status_code)
        assert len(verifications) - before == 1, username
    # The hash checked for a missing user has the same argon2 parameters as a real one.
    real = verifications[0].rsplit("$", 2)[0]
    assert verifications[1].rsplit("$", 2)[0] == real and verifications[1] != verifications[0]


# --- Redis down -------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test alone, on a private port."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_until(lambda: self._pings(client), timeout=15)

    @staticmethod
    def _pings(client: Any) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(REDIS_PORT, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_redis_down_falls_back_to_counting_in_process(
    app: Any, factory: Any, redis_srv: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    factory.user("editor", username="down1")
    app.config["RATELIMIT_URL"] = redis_srv.url
    app.extensions.pop("kepu_limiter", None)
    client = app.test_client()
    for _ in range(2):
        assert _attempt(client, "down1", "wrong-horse").status_code == 401
    keys = redis.Redis.from_url(redis_srv.url).keys("kepu:rl:*")
    assert len(keys) == 2  # the account+address and the address counters live in Redis
    redis_srv.stop()
    caplog.set_level(logging.WARNING, logger="review.ratelimit")
    # Sign-in keeps working without Redis ...
    assert _attempt(app.test_client(), "down1", PASSWORD).status_code == 302
    warnings = [r for r in caplog.records if r.name == "review.ratelimit"]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "Redis unreachable" in warnings[0].getMessage()
    # ... and failures are still limited, counted in this process from zero.
    statuses = [_attempt(client, "down1", "wrong-horse").status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert _attempt(client, "down1", PASSWORD).status_code == 429


# --- two gunicorn workers share the counters -------------------------------------------------


class Browser:
    """A cookie-keeping HTTP client for the live server (stdlib only)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, Any, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(  # noqa: S310 — a fixed http://127.0.0.1 address
            self.base + path, data=body, headers={"Connection": "close"}
        )
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def live_gunicorn(app: Any, instance: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The app under gunicorn with 2 workers on the test's database and Redis."""
    log = tmp_path / "access.log"
    env = dict(
        os.environ,
        KEPU_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        KEPU_BROKER_URL=REDIS_URL,
        KEPU_INSTANCE_PATH=str(instance),
        KEPU_SECURE_COOKIES="false",
    )
    err = open(tmp_path / "gunicorn.err", "wb")  # noqa: SIM115 — closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{WEB_PORT}"]
        + ["--access-logfile", str(log), "--access-logformat", "%(p)s %(s)s %(m)s %(U)s"]
        + ["review:create_app()"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    base = f"http://127.0.0.1:{WEB_PORT}"
    try:
        wait_until(lambda: _answers(base), timeout=90, interval=0.5)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        err.close()


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_gunicorn_workers_share_the_limit(
    app: Any, factory: Any, live_gunicorn: tuple[str, Path]
) -> None:
    base, log = live_gunicorn
    factory.user("editor", username="live1")
    browser = Browser(base)
    status, _, page = browser.request("/login")
    assert status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def attempt(password: str) -> tuple[int, Any]:
        code, headers, _ = browser.request(
            "/login", {"csrf_token": token, "username": "live1", "password": password}
        )
        return code, headers

    assert [attempt("wrong-horse")[0] for _ in range(5)] == [401] * 5
    # From now on every worker refuses, whichever one the connection lands on.
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def burst() -> None:
        outcome = attempt(PASSWORD)
        with lock:
            results.append(outcome)

    def limited_pids() -> set[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        return {ln.split()[0] for ln in lines if " 429 POST /login" in ln}

    for _ in range(10):  # at most 100 requests in all
        threads = [threading.Thread(target=burst) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if len(limited_pids()) >= 2:
            break
    assert results and {code for code, _ in results} == {429}, [c for c, _ in results]
    assert all(int(headers["Retry-After"]) > 0 for _, headers in results)
    assert len(limited_pids()) == 2  # both worker processes answered 429
    assert _count("auth.login_failed") == 5 and _count("auth.login_limited") == len(results)

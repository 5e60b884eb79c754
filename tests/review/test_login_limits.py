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
from tests.conftest import REDIS_URL, wait_until

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

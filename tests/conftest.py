"""Shared fixtures: real PostgreSQL and SQLite databases, the app, users and API clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import g
from flask.testing import FlaskClient

PG_ADMIN_URL = os.environ.get("KEPU_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KEPU_TEST_REDIS", "redis://127.0.0.1:6379/13")
ROOT = Path(__file__).resolve().parent.parent


def _sa_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def run_kepu(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``kepu`` console script in a subprocess."""
    kepu = Path(sys.executable).parent / "kepu"
    proc = subprocess.run(
        [str(kepu), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kepu {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def _migrate(url: str, instance: Path) -> None:
    env = dict(os.environ, KEPU_DATABASE_URL=url, KEPU_INSTANCE_PATH=str(instance))
    run_kepu("db", "upgrade", env=env)


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database used as the template for every test database."""
    name = f"kepu_tpl_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        _migrate(_sa_url(name), tmp_path_factory.mktemp("pg-tpl"))
        yield name
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for every test."""
    folder = tmp_path_factory.mktemp("sqlite-tpl")
    path = folder / "template.sqlite"
    _migrate(f"sqlite:///{path}", folder)
    return path


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database (copied from the migrated template)."""
    name = f"kepu_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield _sa_url(name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    path = tmp_path / "kepu.sqlite"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each DB-level test runs on both backends."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")  # type: ignore[no-any-return]
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private instance folder for the test."""
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setenv("KEPU_INSTANCE_PATH", str(folder))
    return folder


@pytest.fixture
def app(db_url: str, instance: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The application on a fresh database; CSRF off for the test client (one test turns it on)."""
    monkeypatch.setenv("KEPU_DATABASE_URL", db_url)
    monkeypatch.setenv("KEPU_BROKER_URL", REDIS_URL)
    monkeypatch.setenv("KEPU_SECURE_COOKIES", "false")  # the test client speaks plain HTTP
    from review import create_app
    from review.db import db

    application = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    application.test_client_class = FreshUserClient
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()
        limiter = application.extensions.get("kepu_limiter")
        if limiter is not None:
            limiter.clear()  # sign-in counters this test left in the shared Redis


class FreshUserClient(FlaskClient):
    """A test client that, like a real server, loads the signed-in user anew for every request.

    The fixture keeps one app context pushed for the whole test (so tests can use the session),
    and Flask reuses it for requests; Flask-Login would otherwise keep the user cached in ``g``,
    Flask-WTF another client's CSRF token, and the API the last bearer's user.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        for key in ("_login_user", "csrf_token", "api_user"):
            g.pop(key, None)
        return super().open(*args, **kwargs)


@pytest.fixture
def factory(app: Any) -> Any:
    """Builders for units, users, experts and tokens."""
    return Factory()


class Factory:
    """`create_*` helpers in the Indico manner; each commits."""

    def __init__(self) -> None:
        self.counter = 0

    def unit(self, name: str | None = None) -> Any:
        from review.audit import SYSTEM
        from review.db import db
        from review.operations import get_or_create_unit

        self.counter += 1
        unit = get_or_create_unit(name or f"单位{self.counter}", actor=SYSTEM)
        db.session.commit()
        return unit

    def user(
        self,
        role: str,
        *,
        unit: Any = None,
        username: str | None = None,
        password: str = "correct-horse-1",
    ) -> Any:
        from review.audit import SYSTEM
        from review.auth import create_user
        from review.db import db

        self.counter += 1
        if role == "editor" and unit is None:
            unit = self.unit()
        user = create_user(
            username or f"{role}{self.counter}",
            role=role,
            password=password,
            display_name=f"{role}-{self.counter}",
            unit=unit,
            actor=SYSTEM,
        )
        db.session.commit()
        return user

    def expert(
        self,
        *,
        domains: tuple[str, ...] = ("医学健康",),
        unit: Any = None,
        senior: bool = False,
        max_load: int = 5,
        username: str | None = None,
    ) -> Any:
        from expert_pool.pool import add_expert
        from review.audit import SYSTEM
        from review.db import db

        user = self.user("expert", unit=unit or self.unit(), username=username)
        add_expert(user, domains=list(domains), is_senior=senior, max_load=max_load, actor=SYSTEM)
        db.session.commit()
        return user

    def token(self, user: Any) -> dict[str, str]:
        from review.audit import SYSTEM
        from review.auth import issue_token
        from review.db import db

        plain = issue_token(user, actor=SYSTEM)
        db.session.commit()
        return {"Authorization": f"Bearer {plain}"}


PSEUDO_TITLE = "震惊！喝这种水能治百病"
PSEUDO_BODY = (
    "专家证实，每天喝小分子水可以排毒养颜，还能彻底根治高血压，100%有效，永不复发！赶紧转发！"
)
GENUINE_TITLE = "秋季流感疫苗接种提示"
GENUINE_BODY = (
    "流感疫苗需要每年接种。六个月以上且没有禁忌证的人群都可以接种，接种后少数人会出现低热。"
)


def submit_screened(app: Any, headers: dict[str, str], title: str, body: str) -> int:
    """Submit an article through the API and run its screening the way the worker does."""
    from review.db import db
    from review.models import Item
    from workers import screening

    resp = app.test_client().post(
        "/api/v1/items", headers=headers, json={"title": title, "body": body, "submit": True}
    )
    assert resp.status_code == 201, resp.json
    item = db.session.get(Item, resp.json["id"])
    assert item is not None and item.current_version_id is not None
    screening.screen_version(item.current_version_id)
    return int(resp.json["id"])

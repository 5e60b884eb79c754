"""The fault-test harness of RELIABILITY.md: a private redis-server, real Celery workers, the relay.

Every process here is our own: a ``redis-server`` on a free port in KEPU_FAULT_REDIS_PORTS
(6390–6394 by default), ``celery worker`` processes and ``kepu outbox relay --loop`` processes
pointed at it and at a fresh PostgreSQL database. The shared Redis on 6379 is never touched.
Run these tests serially (``pytest -m fault -p no:randomly``); they own ports and processes.

The relay runs as ``kepu outbox relay --loop``: the same ``relay_outbox`` function the beat task
``kepu.relay_outbox`` runs in production, in a process of its own so a test can kill it, stop it
with SIGTERM or give it a fault point, without a beat scheduler whose own publishes would need
the very broker the tests break.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from tests.conftest import ROOT, run_kepu, wait_until

PORTS = [
    int(p) for p in os.environ.get("KEPU_FAULT_REDIS_PORTS", "6390,6391,6392,6393,6394").split(",")
]

#: RELIABILITY.md "Fault-test Celery config": a short visibility timeout so redelivery after
#: a lost worker takes seconds, a restore sweep every second, short time limits and socket
#: timeouts, and the test-only screening fault markers (workers/faults.py).
FAULT_SETTINGS = {
    "KEPU_VISIBILITY_TIMEOUT": "10",
    "KEPU_UNACKED_RESTORE_INTERVAL": "1",
    "KEPU_TASK_TIME_LIMIT": "8",
    "KEPU_TASK_SOFT_TIME_LIMIT": "6",
    "KEPU_BROKER_SOCKET_TIMEOUT": "2",
    "KEPU_BROKER_CONNECT_TIMEOUT": "1",
    "KEPU_WORKER_SOFT_SHUTDOWN_TIMEOUT": "5",
    "KEPU_FAULT_INJECTION": "screening",
    "KEPU_STUCK_AFTER": "600",
    # Fault injection is refused together with secure (HTTPS) cookies, the production default.
    "KEPU_SECURE_COOKIES": "false",
}

TEXT = "流感疫苗需要每年接种。六个月以上且没有禁忌证的人群都可以接种，接种后少数人会出现低热。"


def _port_free(port: int) -> bool:
    """Nobody listens on the port. SO_REUSEADDR as redis-server itself sets it: connections of
    a server killed a moment ago linger in TIME_WAIT for a minute and must not count as a
    listener, or a run of fault tests soon finds all five ports "busy"."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """Our own redis-server: stop/kill (down), freeze/thaw (hung), restart (same port and dir)."""

    def __init__(self, folder: Path, appendonly: str = "no") -> None:
        self.folder, self.appendonly = folder, appendonly
        free = [p for p in PORTS if _port_free(p)]
        if not free:
            raise AssertionError(f"no free port for redis-server among {PORTS}")
        self.port = free[0]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.start()

    def start(self) -> None:
        """Start (again) on the same port and data folder; waits until it answers PING."""
        assert self.proc is None or self.proc.poll() is not None
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", self.appendonly, "--appendfsync", "always"]
                + ["--dir", str(self.folder), "--maxmemory-policy", "noeviction"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._pings, timeout=10, interval=0.05)

    def _pings(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "redis-server died"
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (the port is closed: connection refused)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash; without AOF everything in memory is gone."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        self.thaw()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=15)

    def freeze(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.frozen = False

    def restart(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.start()

    def flushall(self) -> None:
        self.client().flushall()

    def llen(self, queue: str) -> int:
        return int(self.client().llen(queue))

    def hlen(self, key: str) -> int:
        return int(self.client().hlen(key))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def redis_srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server; parametrize indirectly with "no"/"yes" for appendonly."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, getattr(request, "param", "no"))
    try:
        yield server
    finally:
        server.close()


class Worker:
    """A real ``celery worker`` (prefork, -c N) on the private Redis and the test database."""

    def __init__(self, env: dict[str, str], folder: Path, concurrency: int = 1) -> None:
        self.name = f"w{uuid.uuid4().hex[:8]}"
        self.log = folder / f"{self.name}.log"
        with open(folder / f"{self.name}.err", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"]
                + ["-P", "prefork", "-c", str(concurrency), "-Q", "screening"]
                + ["-n", f"{self.name}@%h", "--without-mingle", "--without-gossip"]
                + ["--without-heartbeat", "-l", "INFO", "--logfile", str(self.log)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, pattern: str, timeout: float, count: int = 1) -> None:
        """Wait until ``pattern`` (a regular expression) occurs ``count`` times in the log."""
        wait_until(lambda: len(re.findall(pattern, self.log_text())) >= count, timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_text()}")
            return " ready." in self.log_text()

        wait_until(ready, timeout)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_child(self) -> int:
        """SIGKILL the pool child (a crash in the middle of a task); returns its pid."""
        children = self.children()
        assert len(children) == 1, children
        children[0].send_signal(signal.SIGKILL)
        return int(children[0].pid)

    def kill_all(self) -> None:
        """SIGKILL the main process and its children (the machine went away)."""
        procs = [*self.children()]
        self.proc.send_signal(signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        psutil.wait_procs(procs, timeout=10)

    def term(self) -> None:
        """SIGTERM: Celery's warm shutdown (a deploy)."""
        self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Teardown: no grace needed, the test is over (and its database is dropped next)."""
        if self.proc.poll() is None:
            self.kill_all()


class Relay:
    """``kepu outbox relay --loop``: the outbox relay in a process of its own."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.log = folder / f"relay-{uuid.uuid4().hex[:6]}.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "kepu"), "outbox", "relay", "--loop"],
                env=env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ps = psutil.Process(self.proc.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def term(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Harness:
    """Starts workers and relays for one test and stops every one of them afterwards."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.workers: list[Worker] = []
        self.relays: list[Relay] = []

    def worker(self, *, concurrency: int = 1, ready: bool = True, **extra: str) -> Worker:
        w = Worker({**self.env, **extra}, self.folder, concurrency)
        self.workers.append(w)
        if ready:
            w.wait_ready()
        return w

    def relay(self, **extra: str) -> Relay:
        r = Relay({**self.env, **extra}, self.folder)
        self.relays.append(r)
        return r

    def close(self) -> None:
        for r in self.relays:
            r.close()
        for w in self.workers:
            w.close()


@pytest.fixture
def fault_env(pg_url: str, redis_srv: RedisServer, instance: Path) -> dict[str, str]:
    """Environment of every process of the test: its database, the private Redis, fault config."""
    return {
        **os.environ,
        "KEPU_DATABASE_URL": pg_url,
        "KEPU_BROKER_URL": redis_srv.url,
        "KEPU_INSTANCE_PATH": str(instance),
        **FAULT_SETTINGS,
    }


@pytest.fixture
def procs(fault_env: dict[str, str], tmp_path: Path) -> Iterator[Harness]:
    """``procs.worker()`` / ``procs.relay()``; all are stopped (or killed) at teardown."""
    harness = Harness(fault_env, tmp_path)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def worker(procs: Harness) -> Worker:
    """One ready worker (prefork, -c 1) on the screening queue; more through ``procs.worker()``."""
    return procs.worker()


@pytest.fixture
def relay(procs: Harness) -> Relay:
    """One running relay (``kepu outbox relay --loop``); more through ``procs.relay()``."""
    return procs.relay()


@pytest.fixture
def fault_app(fault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Flask app in the test process, on the same database and broker as the workers."""
    for key, value in fault_env.items():
        if key.startswith("KEPU_"):
            monkeypatch.setenv(key, value)
    from review import create_app
    from review.db import db

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def editor(fault_app: Any) -> dict[str, str]:
    """Bearer headers of an editor in a media unit."""
    from tests.conftest import Factory

    return Factory().token(Factory().user("editor"))  # type: ignore[no-any-return]


def submit(app: Any, headers: dict[str, str], title: str, body: str = TEXT) -> int:
    """Submit an article through the API; returns the item id."""
    resp = app.test_client().post(
        "/api/v1/items", headers=headers, json={"title": title, "body": body, "submit": True}
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.json["state"] == "submitted"
    return int(resp.json["id"])


def fresh(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` on a fresh snapshot of the database (other processes commit meanwhile)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        from review.db import db

        db.session.rollback()
        db.session.expire_all()
        return fn(*args, **kwargs)

    return wrapped


@fresh
def states(item_ids: Iterable[int]) -> dict[int, str]:
    from review.db import db
    from review.models import Item

    return {i: db.session.get(Item, i).state.value for i in item_ids}  # type: ignore[union-attr]


SCREENED = {"cleared", "flagged", "in_review"}


def wait_screened(item_ids: list[int], timeout: float) -> None:
    """Wait (bounded) until every item left submitted/screening."""
    wait_until(lambda: set(states(item_ids).values()) <= SCREENED, timeout, interval=0.3)


@fresh
def count(model: Any, *where: Any) -> int:
    from sqlalchemy import func, select

    from review.db import db

    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@fresh
def attempts(item_id: int) -> int:
    from review.db import db
    from review.models import Item

    return int(db.session.get(Item, item_id).screening_attempts)  # type: ignore[union-attr]


def assert_no_loss(
    item_ids: list[int], env: dict[str, str], *, expected: set[str] = SCREENED, timeout: float = 30
) -> None:
    """RELIABILITY.md's global invariant after a fault test.

    Every submitted item reaches an expected state within the bound; each one's current
    version has exactly one screening report; no outbox row is left unsent; the audit ledger
    verifies (``kepu audit verify`` exits 0).
    """
    from sqlalchemy import func, select

    from review.db import db
    from review.models import Item, OutboxMessage, ScreeningReport

    wait_until(lambda: set(states(item_ids).values()) <= expected, timeout, interval=0.3)
    for item_id in item_ids:
        item = db.session.get(Item, item_id)
        assert item is not None
        reports = db.session.scalar(
            select(func.count())
            .select_from(ScreeningReport)
            .where(ScreeningReport.version_id == item.current_version_id)
        )
        assert reports == 1, (item_id, reports)
    wait_until(lambda: count(OutboxMessage, OutboxMessage.sent_at.is_(None)) == 0, timeout)
    verify = run_kepu("audit", "verify", env=env, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def audit_actions(item_id: int) -> list[str]:
    """The audit actions recorded for one item, in order."""
    from sqlalchemy import select

    from review.audit import AuditEvent
    from review.db import db

    db.session.rollback()
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject_type == "item", AuditEvent.subject_id == str(item_id))
            .order_by(AuditEvent.seq)
        )
    )


def elapsed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value

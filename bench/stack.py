"""The production set-up on 127.0.0.1 for the benchmarks, started and cleaned up as one unit.

gunicorn (deploy/gunicorn.conf.py) with N workers, a fresh PostgreSQL database on the shared
server, a PRIVATE redis-server on its own port, one Celery worker for the screening, control
and notifications queues, and Celery beat (which runs the outbox relay). Everything started
here is stopped, and the database dropped, on exit — also after an error or Ctrl+C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("KEPU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench-password-1"  # noqa: S105 (throwaway accounts in a throwaway database)

#: Articles for the benchmarks: pseudo-science claims (flagged) and plain ones (cleared).
PSEUDO = [
    (
        "震惊！喝这种水能治百病",
        "专家证实，每天喝小分子水可以排毒养颜，还能彻底根治高血压，100%有效，永不复发！",
    ),
    ("量子能量水的秘密", "量子共振能量水能调节酸碱体质，癌细胞在碱性体质中无法生存，三天见效。"),
    ("隔夜菜致癌，赶紧扔掉", "隔夜菜含有大量亚硝酸盐，吃一口就会致癌，转发给你关心的人！"),
]
GENUINE = [
    (
        "秋季流感疫苗接种提示",
        "流感疫苗需要每年接种。六个月以上且没有禁忌证的人群都可以接种，接种后少数人会出现低热。",
    ),
    ("海洋潮汐的形成", "潮汐主要由月球和太阳的引力共同作用形成，每天通常有两次涨潮和两次落潮。"),
    ("防汛知识", "暴雨来临前要关注气象预警，远离河道和低洼地带，不要在桥下或涵洞中停留。"),
]


def article(n: int) -> tuple[str, str]:
    """The n-th benchmark article: alternately pseudo-science and plain, each text unique."""
    title, body = (PSEUDO if n % 2 == 0 else GENUINE)[(n // 2) % 3]
    return f"{title}（{n}）", f"{body}\n\n第{n}篇。"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: list[float]) -> str:
    """``n=…, p50/p95/p99`` in milliseconds."""
    if not values:
        return "n=0"
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms)} p50={percentile(ms, 50):.0f}ms p95={percentile(ms, 95):.0f}ms "
        f"p99={percentile(ms, 99):.0f}ms mean={statistics.fmean(ms):.0f}ms"
    )


class Http:
    """A small JSON client with a bearer token (loopback only)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (loopback)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw or b"null")
            except ValueError:
                return err.code, raw.decode(errors="replace")


class Stack:
    """Start with ``with Stack(...) as stack:``; ``stack.env`` reaches the same database."""

    def __init__(
        self,
        *,
        redis_port: int,
        web_port: int,
        web_workers: int = 2,
        worker_concurrency: int = 2,
        quiet: bool = True,
    ) -> None:
        self.redis_port, self.web_port = redis_port, web_port
        self.web_workers, self.worker_concurrency = web_workers, worker_concurrency
        self.quiet = quiet
        self.folder = Path(tempfile.mkdtemp(prefix="kepu-bench-"))
        self.dbname = f"kepu_bench_{uuid.uuid4().hex[:10]}"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.base = f"http://127.0.0.1:{web_port}"
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        self.database_url = f"{base}/{self.dbname}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
        self.env.update(
            KEPU_DATABASE_URL=self.database_url,
            KEPU_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            KEPU_INSTANCE_PATH=str(self.folder / "instance"),
            KEPU_RELAY_EVERY="1",
            KEPU_BIND=f"127.0.0.1:{web_port}",
            KEPU_WEB_WORKERS=str(web_workers),
            KEPU_LOG_LEVEL="warning",
            PYTHONPATH=str(ROOT),
        )
        self.db_created = False

    # --- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait(self, what: str, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready within {timeout}s")
            time.sleep(0.2)

    def start(self) -> None:
        import psycopg
        import redis

        self._spawn(
            "redis",
            [shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port)]
            + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--maxmemory-policy", "noeviction", "--dir", str(self.folder)],
        )

        def redis_up() -> bool:
            try:
                return bool(redis.Redis(port=self.redis_port, socket_timeout=1).ping())
            except redis.ConnectionError:
                return False

        self._wait("redis", redis_up, 20)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')  # type: ignore[arg-type]
        self.db_created = True
        subprocess.run(
            [str(BIN / "kepu"), "db", "upgrade"], env=self.env, check=True, capture_output=True
        )
        self._spawn(
            "gunicorn", [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py")]
        )
        celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app"]
        self._spawn(
            "worker",
            [*celery, "worker", "-Q", "screening,control,notifications"]
            + ["-c", str(self.worker_concurrency), "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"]
            + ["--without-mingle", "--without-gossip", "-l", "INFO"],
        )
        self._spawn(
            "beat", [*celery, "beat", "-s", str(self.folder / "beat-schedule"), "-l", "INFO"]
        )

        def web_up() -> bool:
            try:
                return Http(self.base).call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        self._wait("gunicorn", web_up, 60)
        self._wait("the worker", lambda: "ready." in self.log("worker"), 90)

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.db_created:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')  # type: ignore[arg-type]
            self.db_created = False
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- data -----------------------------------------------------------------------------

    def create_accounts(self, editors: int, experts: int) -> tuple[list[str], list[str]]:
        """Editors (each in its own unit) and verified experts; returns their API tokens."""
        script = f"""
import json
from review import create_app
from review.audit import SYSTEM
from review.auth import create_user, issue_token
from review.db import db
from review.operations import get_or_create_unit
from expert_pool.pool import add_expert
app = create_app()
out = {{"editors": [], "experts": []}}
with app.app_context():
    for i in range({editors}):
        unit = get_or_create_unit(f"媒体{{i}}", actor=SYSTEM)
        u = create_user(f"editor{{i}}", role="editor", password={PASSWORD!r}, unit=unit,
                        display_name=f"编辑{{i}}", actor=SYSTEM)
        out["editors"].append(issue_token(u, actor=SYSTEM))
    domains = ["医学健康", "食品药品安全", "生态环境", "海洋", "防灾减灾与应急"]
    for i in range({experts}):
        unit = get_or_create_unit(f"研究所{{i}}", actor=SYSTEM)
        u = create_user(f"expert{{i}}", role="expert", password={PASSWORD!r}, unit=unit,
                        display_name=f"专家{{i}}", actor=SYSTEM)
        add_expert(u, domains=domains, is_senior=i < 2, max_load=50, unit=unit, actor=SYSTEM)
        out["experts"].append(issue_token(u, actor=SYSTEM))
    db.session.commit()
print(json.dumps(out))
"""
        proc = subprocess.run(
            [sys.executable, "-c", script], env=self.env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return data["editors"], data["experts"]

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the benchmark database."""
        import psycopg

        url = self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url) as conn:
            return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]

    def audit_verify(self) -> tuple[int, str]:
        """`kepu audit verify` against the benchmark database: (exit code, output)."""
        proc = subprocess.run(
            [str(BIN / "kepu"), "audit", "verify"], env=self.env, capture_output=True, text=True
        )
        return proc.returncode, (proc.stdout + proc.stderr).strip()

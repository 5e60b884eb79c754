"""The pipeline and load benchmarks still run (tiny configuration; figures are not checked)."""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: This branch's private ports: redis 6398, web 5107 (pipeline) and 5108 (load).
REDIS_PORT = 6398


def _bench_databases() -> set[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'kepu_bench_%'")
        return {r[0] for r in rows}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _run(script: str, *args: str) -> str:
    before = _bench_databases()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Everything it started is gone: its database, its redis-server and its web server.
    assert _bench_databases() <= before
    assert _port_free(REDIS_PORT)
    return proc.stdout


def test_pipeline_bench_runs() -> None:
    out = _run(
        "pipeline.py",
        "--rates",
        "2",
        "--duration",
        "2",
        "--redis-port",
        str(REDIS_PORT),
        "--web-port",
        "5107",
    )
    assert "accepted 4/4" in out
    assert "submit → screened    n=4" in out
    assert "engine alone" in out and "pipeline p50" in out
    assert _port_free(5107)


def test_load_bench_runs_and_checks_the_invariants() -> None:
    out = _run(
        "load.py",
        "--editors",
        "1",
        "--experts",
        "2",
        "--duration",
        "3",
        "--grace",
        "60",
        "--redis-port",
        str(REDIS_PORT),
        "--web-port",
        "5108",
    )
    assert "submit " in out and "p99=" in out
    assert "checks: one screening report per submission, expected states, audit verify — ok" in out
    assert _port_free(5108)

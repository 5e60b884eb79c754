"""Processes for end-to-end tests: a real Celery worker, and the whole `kepu run`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """A `celery worker -B` subprocess with its own log file."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.log = folder / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "worker",
                "-B",
                "-s",
                str(folder / "beat-schedule"),
                "-Q",
                "screening,media,control,notifications",
                "-c",
                "1",
                "-n",
                f"w{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
                "--logfile",
                str(self.log),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_env(pg_url: str, instance: Path) -> dict[str, str]:
    """Environment for processes that share the test's PostgreSQL database and Redis."""
    import redis

    from tests.conftest import REDIS_URL

    redis.Redis.from_url(REDIS_URL).flushdb()  # our own test database number only
    return dict(
        os.environ,
        KEPU_DATABASE_URL=pg_url,
        KEPU_BROKER_URL=REDIS_URL,
        KEPU_INSTANCE_PATH=str(instance),
        KEPU_RELAY_EVERY="1",
    )


@pytest.fixture
def worker(worker_env: dict[str, str], instance: Path) -> Iterator[Worker]:
    w = Worker(worker_env, instance)
    try:
        wait_until(lambda: "ready." in w.log_text() or w.proc.poll() is not None, timeout=60)
        assert w.proc.poll() is None, w.log_text()
        yield w
    finally:
        w.stop()


class Http:
    """A tiny JSON client for a live server."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback only)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`kepu run` on the embedded defaults in a fresh instance folder: (base URL, env, log)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env.update(KEPU_INSTANCE_PATH=str(tmp_path / "instance"), KEPU_RELAY_EVERY="1")
    port = free_port()
    kepu = str(Path(sys.executable).parent / "kepu")
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [kepu, "run", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                return Http(base).call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=60)
        yield base, env, log
    finally:
        proc.terminate()  # kepu run stops its own worker on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        _reap_group(proc.pid)


def _reap_group(pgid: int) -> None:
    """Fail loudly if `kepu run` left processes behind, then make sure none survive."""
    import signal as _signal
    import time as _time

    deadline = _time.monotonic() + 30
    while _time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        _time.sleep(0.5)
    os.killpg(pgid, _signal.SIGKILL)
    raise AssertionError("kepu run left its worker running after SIGTERM")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            b.close()

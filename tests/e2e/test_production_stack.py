"""The production path as written: the systemd units' own commands start the documented stack
(migration, gunicorn with 2 workers, one Celery worker per queue, beat) on PostgreSQL and Redis,
and one item walks from submission to a signed publication through it.

The commands are read from deploy/systemd/*.service and the environment from
deploy/systemd/kepu.env.example, exactly as systemd would expand them; the only departures are
the addresses (this test's PostgreSQL database, Redis database and a free port), the paths
(/opt/kepu → the checkout, /var/lib/kepu → a temporary folder), plain-HTTP cookies, and the two
secrets the example leaves for the operator to make (made here the way its comments say).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, ROOT, wait_until
from tests.e2e.conftest import Http, free_port, walk_item_to_publication

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = Path(sys.executable).parent


def _service_section(unit: Path) -> list[tuple[str, str]]:
    """(key, value) pairs of a unit's [Service] section, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", unit.read_text(encoding="utf-8"))
    pairs, section = [], None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class Stack:
    """The installation's environment file and paths, mapped onto this test's resources."""

    def __init__(self, folder: Path, pg_url: str) -> None:
        self.folder = folder
        self.instance = folder / "var-lib-kepu"
        self.instance.mkdir()
        example = _env_file(UNITS / "kepu.env.example")
        assert example["KEPU_ENV"] == "production"
        key = self.instance / "signing_key.pem"
        # The command the example's comment gives for the shared signing key.
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True
        )
        self.port = free_port()
        self.env_file = {
            **example,
            "KEPU_DATABASE_URL": pg_url,
            "KEPU_BROKER_URL": REDIS_URL,
            "KEPU_SECRET_KEY": secrets.token_urlsafe(48),
            "KEPU_SIGNING_KEY_PATH": str(key),
            "KEPU_INSTANCE_PATH": str(self.instance),
            "KEPU_SECURE_COOKIES": "false",  # the test speaks plain HTTP to gunicorn
            "KEPU_RELAY_EVERY": "1",
        }
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def _path(self, value: str) -> str:
        return (
            value.replace("/opt/kepu/.venv/bin/", f"{VENV_BIN}/")
            .replace("/opt/kepu", str(ROOT))
            .replace("/var/lib/kepu", str(self.instance))
        )

    def command(self, unit_name: str, instance: str = "") -> tuple[list[list[str]], dict[str, str]]:
        """The unit's ExecStartPre and ExecStart argv lists and its environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
        env.update(self.env_file)
        argvs = []
        for key, value in _service_section(UNITS / unit_name):
            value = value.replace("%i", instance).replace("%%", "%")
            if key == "Environment":
                name, _, setting = value.partition("=")
                env[name] = setting
            elif key == "EnvironmentFile":
                assert value == "/etc/kepu/kepu.env"
            elif key == "WorkingDirectory":
                assert value == "/opt/kepu"
            elif key in {"ExecStartPre", "ExecStart"}:
                words = [self._path(w) for w in shlex.split(value)]
                argvs.append([re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], w) for w in words])
        if unit_name == "kepu-web.service":
            env["KEPU_BIND"] = f"127.0.0.1:{self.port}"
            env["KEPU_WEB_WORKERS"] = "2"
        return argvs, env

    def run_oneshot(self, unit_name: str) -> subprocess.CompletedProcess[str]:
        (argv,), env = self.command(unit_name)
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    def start(self, unit_name: str, instance: str = "") -> subprocess.Popen[bytes]:
        argvs, env = self.command(unit_name, instance)
        *pre, argv = argvs
        assert pre == [], f"{unit_name} runs something before it starts: {pre}"
        log = self.folder / f"{unit_name}{instance}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((unit_name + instance, proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"== {n}\n{log.read_text(errors='replace')[-3000:]}" for n, _, log in self.procs
        )

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[Stack]:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    running = Stack(tmp_path, pg_url)
    try:
        yield running
    finally:
        running.stop()


def test_worker_unit_names_the_worker_by_host_and_soft_stops() -> None:
    """`%%h` reaches Celery as `%h` (the host); `%%H` would stop it with 'Unknown format %H'."""
    pairs = _service_section(UNITS / "kepu-worker@.service")
    start = dict(pairs)["ExecStart"].replace("%i", "screening").replace("%%", "%")
    assert "-n screening@%h " in start
    environment = [value for key, value in pairs if key == "Environment"]
    assert "REMAP_SIGTERM=SIGQUIT" in environment  # SIGTERM → Celery's soft shutdown
    for unit in ("kepu-web.service", "kepu-worker@.service", "kepu-beat.service"):
        keys = dict(_service_section(UNITS / unit))
        assert "ExecStartPre" not in keys, f"{unit} migrates on its own"
        assert "kepu-migrate.service" in (UNITS / unit).read_text()


def test_two_nodes_migrating_at_once_both_succeed(stack: Stack) -> None:
    """Every node's migration unit may start together: one migrates, the other waits."""
    results: list[subprocess.CompletedProcess[str]] = []
    runners = [
        threading.Thread(target=lambda: results.append(stack.run_oneshot("kepu-migrate.service")))
        for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]


def test_production_refuses_to_start_without_the_shared_keys(stack: Stack) -> None:
    del stack.env_file["KEPU_SECRET_KEY"]
    Path(stack.env_file["KEPU_SIGNING_KEY_PATH"]).unlink()
    done = stack.run_oneshot("kepu-migrate.service")
    assert done.returncode != 0
    assert "KEPU_ENV=production refuses to start" in done.stderr
    assert "KEPU_SECRET_KEY" in done.stderr and "KEPU_SIGNING_KEY_PATH" in done.stderr
    assert not Path(stack.env_file["KEPU_SIGNING_KEY_PATH"]).exists()  # nothing made up

    web = stack.start("kepu-web.service")
    assert web.wait(timeout=60) != 0
    assert "refuses to start" in stack.logs()


def test_the_documented_stack_walks_an_item_to_publication(stack: Stack) -> None:
    migrated = stack.run_oneshot("kepu-migrate.service")
    assert migrated.returncode == 0, migrated.stderr
    stack.start("kepu-web.service")
    # The worker instances the template's comment enables, and exactly one beat.
    for queue in ("screening", "control", "notifications"):
        stack.start("kepu-worker@.service", queue)
    stack.start("kepu-beat.service")
    base = f"http://127.0.0.1:{stack.port}"

    def up() -> bool:
        for name, proc, _ in stack.procs:
            assert proc.poll() is None, f"{name} exited\n{stack.logs()}"
        try:
            return Http(base).call("GET", "/readyz")[0] == 200
        except OSError:
            return False

    wait_until(up, timeout=90)
    _argv, env = stack.command("kepu-migrate.service")
    walk_item_to_publication(base, env)
    web_log = next(log for name, _, log in stack.procs if name == "kepu-web.service")
    assert web_log.read_text().count("Booting worker") == 2  # KEPU_WEB_WORKERS

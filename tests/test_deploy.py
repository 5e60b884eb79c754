"""deploy/gunicorn.conf.py serves the app; with KEPU_LOG_FORMAT=json its access log is JSON."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: One of this branch's private web ports.
PORT = 5106


def test_gunicorn_config_json_access_log(sqlite_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env.update(
        KEPU_DATABASE_URL=sqlite_url,
        KEPU_INSTANCE_PATH=str(tmp_path / "instance"),
        KEPU_BIND=f"127.0.0.1:{PORT}",
        KEPU_WEB_WORKERS="2",
        KEPU_LOG_FORMAT="json",
    )
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            [gunicorn, "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            env=env,
            stdout=fo,
            stderr=fe,
            cwd=ROOT,
            start_new_session=True,
        )
    try:

        def answered() -> str | None:
            assert proc.poll() is None, err.read_text()
            req = urllib.request.Request(  # noqa: S310 (loopback)
                f"http://127.0.0.1:{PORT}/healthz", headers={"X-Request-ID": "gun-1"}
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
                    return str(resp.headers["X-Request-ID"])
            except OSError:
                return None

        assert wait_until(answered, timeout=60) == "gun-1"

        def access_line() -> dict[str, object] | None:
            for line in out.read_text().splitlines():
                entry = json.loads(line)  # every access line is a JSON object
                if entry.get("request_id") == "gun-1":
                    return entry  # type: ignore[no-any-return]
            return None

        entry = wait_until(access_line, timeout=20)
        assert entry["logger"] == "gunicorn.access"
        assert entry["path"] == "/healthz" and entry["status"] == 200
        assert entry["method"] == "GET" and isinstance(entry["duration_ms"], float)
        boot = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]
        assert any(e["logger"] == "gunicorn.error" for e in boot)
        workers = [e for e in boot if "Booting worker" in str(e["message"])]
        assert len(workers) == 2
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_compose_runs_the_documented_stack_in_order() -> None:
    """The compose file builds its image, migrates once before anything else starts, soft-stops
    workers, trusts one proxy and runs in production mode with shared keys."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    kepu = {n: s for n, s in services.items() if s.get("image") == "kepu-review:latest"}
    assert set(kepu) >= {"migrate", "web", "beat", "worker-screening", "worker-control"}
    for name, service in kepu.items():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        env = service["environment"]
        assert env["KEPU_ENV"] == "production" and env["KEPU_SIGNING_KEY_PATH"]
        if name == "migrate":
            assert service["command"] == ["kepu", "db", "upgrade"]
            continue
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        if name.startswith("worker-"):
            assert env["REMAP_SIGTERM"] == "SIGQUIT" and service["stop_grace_period"]
    assert services["web"]["environment"]["KEPU_PROXY_HOPS"] == "1"
    assert [n for n, s in kepu.items() if "beat" in s["command"]] == ["beat"]


def test_dockerfile_installs_the_locked_application() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -c requirements.lock ." in dockerfile
    for source in re.findall(r"^COPY (.+?) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), name
    for package in ("review", "rules", "expert_pool", "workers", "migrations", "config.py"):
        assert package in dockerfile
    for debian in ("ffmpeg", "libgl1", "libglib2.0-0"):  # what .ci/run installs for videos
        assert debian in dockerfile

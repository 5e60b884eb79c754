"""deploy/gunicorn.conf.py serves the app; with KEPU_LOG_FORMAT=json its access log is JSON."""

from __future__ import annotations

import contextlib
import json
import os
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

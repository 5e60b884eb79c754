"""A slowly streamed 50 MB upload against a live server (RELIABILITY.md scenario 27): the
server's memory does not grow with it (the file part streams into a capped temporary file,
never memory), /healthz keeps answering meanwhile, and the refused upload leaves no file.

Loopback only, on the private port 5099 (override with KEPU_TEST_UPLOAD_PORT); the upload is
bounded in size and time and the server is stopped at the end."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import run_kepu, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PORT = int(os.environ.get("KEPU_TEST_UPLOAD_PORT", "5099"))
TOTAL = 50 * 1024 * 1024
CHUNK = 512 * 1024
PAUSE = 0.1  # 100 chunks × 0.1 s: the upload takes about 10 s or more
GROWTH_LIMIT = 50 * 1024 * 1024


def _get(path: str, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[dict[str, str], psutil.Process, Path]]:
    """`kepu run --no-worker` (the web server alone) on a fresh embedded instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env["KEPU_INSTANCE_PATH"] = str(tmp_path / "instance")
    kepu = str(Path(sys.executable).parent / "kepu")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [kepu, "run", "--no-worker", "--port", str(PORT)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(log.read_text(errors="replace"))
            try:
                return _get("/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=90)
        yield env, psutil.Process(proc.pid), tmp_path / "instance" / "media"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that just ended
            total += p.memory_info().rss
    return total


def _stream_upload(token: str, result: dict[str, Any]) -> None:
    """POST a 50 MB multipart video part in 512 kB chunks with pauses (not a video: refused)."""
    boundary = "kepuSTREAM"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nvideo\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n大文件\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"'
        "\r\nContent-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    try:
        conn.putrequest("POST", "/api/v1/items")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + TOTAL + len(tail)))
        conn.endheaders()
        conn.send(head)
        chunk = bytes(range(256)) * (CHUNK // 256)
        sent = 0
        while sent < TOTAL:
            conn.send(chunk)
            sent += len(chunk)
            result["sent"] = sent
            time.sleep(PAUSE)
        conn.send(tail)
        resp = conn.getresponse()
        result["status"] = resp.status
        result["body"] = json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_slow_large_upload_keeps_memory_flat_and_the_server_responsive(
    server: tuple[dict[str, str], psutil.Process, Path],
) -> None:
    env, proc, media = server
    created = run_kepu(
        "users", "create", "stream-editor", "--role", "editor", "--unit", "测试台",
        "--password", "correct-horse-1", "--token", env=env,
    )  # fmt: skip
    token = created.stdout.strip().splitlines()[-1]
    assert _get("/healthz")[0] == 200
    baseline = _tree_rss(proc)
    result: dict[str, Any] = {}
    uploader = threading.Thread(target=_stream_upload, args=(token, result), daemon=True)
    started = time.monotonic()
    uploader.start()
    peak, health = baseline, []
    while uploader.is_alive() and time.monotonic() - started < 150:
        peak = max(peak, _tree_rss(proc))
        t0 = time.monotonic()
        status, _ = _get("/healthz", timeout=10)
        health.append((status, time.monotonic() - t0, result.get("sent", 0)))
        time.sleep(0.5)
    uploader.join(timeout=30)
    assert not uploader.is_alive(), "the upload did not finish in time"
    assert result.get("status") == 400, result  # random bytes: not a video
    assert result["body"]["error"] == "type_mismatch"
    mid_upload = [h for h in health if 0 < h[2] < TOTAL]
    assert len(mid_upload) >= 5, health  # /healthz was really asked while bytes were arriving
    assert all(status == 200 and seconds < 5 for status, seconds, _ in mid_upload), health
    assert peak - baseline < GROWTH_LIMIT, (baseline, peak)
    leftovers = [p.name for p in media.iterdir()] if media.exists() else []
    assert leftovers == [], leftovers  # the temporary file was deleted with the refusal

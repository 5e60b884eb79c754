"""Processes for end-to-end tests: a real Celery worker, and the whole `kepu run`."""

from __future__ import annotations

import contextlib
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

from tests.conftest import ROOT, wait_until


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """A `celery worker -B` subprocess with its own log file."""

    def __init__(
        self,
        env: dict[str, str],
        folder: Path,
        queues: str = "screening,media,control,notifications",
        beat: bool = True,
    ) -> None:
        self.log = folder / f"worker-{uuid.uuid4().hex[:6]}.log"
        schedule = ["-B", "-s", str(folder / "beat-schedule")] if beat else []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "worker",
                *schedule,
                "-Q",
                queues,
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


def processes() -> dict[int, tuple[int, str]]:
    """Every live (not zombie) process: pid -> (parent pid, command line)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            out[int(entry.name)] = (int(ppid), cmdline)
    return out


def descendants(pid: int) -> dict[int, str]:
    """The live processes below ``pid``, with their command lines."""
    procs = processes()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, cmdline) in procs.items():
            if ppid == parent and child not in found:
                found[child] = cmdline
                todo.append(child)
    return found


def survivors(pids: set[int]) -> set[int]:
    return pids & set(processes())


@contextlib.contextmanager
def kepu_run(
    folder: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`kepu run` on the embedded defaults in a fresh instance folder: (base URL, env, log);
    its pid is in ``folder/run.pid``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env.update(KEPU_INSTANCE_PATH=str(folder / "instance"), KEPU_RELAY_EVERY="1")
    env.update(extra_env or {})
    port = free_port()
    kepu = str(Path(sys.executable).parent / "kepu")
    log = folder / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [kepu, "run", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (folder / "run.pid").write_text(str(proc.pid))
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
        children = set(descendants(proc.pid))
        proc.terminate()  # kepu run stops its workers and scheduler on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        _reap_group(proc.pid)
        _reap_children(children)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`kepu run` for one test."""
    with kepu_run(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def live_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`kepu run` shared by the tests of one module (they build one world and only read it)."""
    with kepu_run(tmp_path_factory.mktemp("live")) as running:
        yield running


# --- the browser: Debian's chromium driven by Playwright (no browser download) ----------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
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


def login(browser: Any, base: str, username: str, **context: Any) -> Any:
    """A new browser context signed in as ``username`` (Chinese UI unless told otherwise)."""
    context.setdefault("locale", "zh-CN")
    page = browser.new_context(**context).new_page()
    page.goto(f"{base}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()
    return page


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artefact (test-artifacts/<name>.png)."""
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _reap_children(pids: set[int]) -> None:
    """Fail loudly if a child of `kepu run` (each in its own process group) outlived it."""
    import signal as _signal
    import time as _time

    deadline = _time.monotonic() + 30
    while survivors(pids) and _time.monotonic() < deadline:
        _time.sleep(0.5)
    left = survivors(pids)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _signal.SIGKILL)
    assert not left, f"kepu run left children running: {sorted(left)}"


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


def cli_token(env: dict[str, str], *args: str) -> str:
    from tests.conftest import run_kepu

    return (
        run_kepu("users", "create", *args, "--password", PASSWORD, "--token", env=env)
        .stdout.strip()
        .splitlines()[-1]
    )


def walk_item_to_publication(base: str, env: dict[str, str]) -> None:
    """Through a live server: accounts made with the CLI, a pseudo-science article submitted
    over the API, screened and offered to two experts by the workers, approved by both with
    their passwords, published with a receipt; the ledger verifies."""
    from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, run_kepu

    editor = Http(base, cli_token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
    experts = [
        Http(
            base,
            cli_token(
                env, name, "--role", "expert", "--unit", unit, "--domain", "医学健康", *extra
            ),
        )
        for name, unit, extra in (("ex", "某大学", ()), ("ex2", "某医院", ("--senior",)))
    ]

    status, body = editor.call(
        "POST", "/api/v1/items", {"title": PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True}
    )
    assert status == 201, body
    item_id = body["id"]
    wait_until(
        lambda: editor.call("GET", f"/api/v1/items/{item_id}")[1]["state"] == "in_review",
        timeout=90,
    )

    for number, expert in enumerate(experts, 1):
        status, offers = expert.call("GET", "/api/v1/assignments")
        assert status == 200 and len(offers) == 1
        aid = offers[0]["id"]
        assert expert.call("POST", f"/api/v1/assignments/{aid}/accept")[0] == 200
        status, body = expert.call(
            "POST",
            f"/api/v1/assignments/{aid}/decision",
            {"decision": "approve", "password": PASSWORD},
        )
        assert status == 200, body
        assert body["item_state"] == ("approved" if number == 2 else "in_review"), body
    status, body = editor.call("POST", f"/api/v1/items/{item_id}/publish")
    assert status == 200 and body["receipt"]["item_id"] == item_id

    assert "链完整" in run_kepu("audit", "verify", env=env).stdout


def flagged_item_offered(
    base: str, env: dict[str, str], title: str, body: str, experts: tuple[str, ...] = ("ex",)
) -> tuple[Http, int]:
    """On a live server: an editor `ed` (API token) and expert accounts in 医学健康 made with the
    CLI; the editor submits a pseudo-science article, which the workers screen and offer to the
    experts. Returns the editor's client and the item id."""
    from tests.conftest import run_kepu

    editor = Http(base, cli_token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
    for number, name in enumerate(experts):
        run_kepu(
            "users", "create", name, "--role", "expert", "--unit", f"专家单位{number}",
            "--domain", "医学健康", "--password", PASSWORD, env=env,
        )  # fmt: skip
    status, item = editor.call(
        "POST", "/api/v1/items", {"title": title, "body": body, "submit": True}
    )
    assert status == 201, item
    wait_until(
        lambda: editor.call("GET", f"/api/v1/items/{item['id']}")[1]["state"] == "in_review",
        timeout=90,
    )
    return editor, int(item["id"])

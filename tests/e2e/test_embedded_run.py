"""`kepu run` on the embedded defaults: SQLite, the embedded broker, web + worker + scheduler."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, run_kepu, wait_until
from tests.e2e.conftest import (
    Http,
    cli_token,
    descendants,
    kepu_run,
    survivors,
    walk_item_to_publication,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_whole_path_on_embedded_defaults(live: tuple[str, dict[str, str], Path]) -> None:
    base, env, log = live
    assert "sqlite" in log.read_text() and "sqla+sqlite" in log.read_text()
    walk_item_to_publication(base, env)


def test_seed_demo_is_idempotent(live: tuple[str, dict[str, str], Path]) -> None:
    base, env, _log = live
    first = run_kepu("seed-demo", env=env).stdout
    second = run_kepu("seed-demo", env=env).stdout
    assert first == second  # same accounts, same passwords, nothing duplicated
    for name in ("admin", "auditor", "editor", "expert"):
        assert f"  {name} " in first
    editor = Http(base, run_kepu("users", "token", "editor", env=env).stdout.strip())
    status, items = editor.call("GET", "/api/v1/items")
    assert status == 200
    states = {i["state"] for i in items}
    assert {"draft", "published"} <= states and len(items) >= 3, states
    assert "链完整" in run_kepu("audit", "verify", env=env).stdout


# --- `kepu run` supervises its children (issue #14 item 14) -----------------------------------


def _started(log: Path, name: str) -> int:
    found = re.findall(rf"started {name} \(pid (\d+)\)", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


@pytest.mark.timeout(420)
def test_a_killed_worker_is_restarted_and_its_lost_screening_comes_back(tmp_path: Path) -> None:
    """kill -9 of the screening worker in the middle of a screening: `kepu run` restarts it
    with a warning, the reconciler re-queues the lost screening within about a minute, and
    one scheduler runs throughout. Then kill -9 of `kepu run` itself leaves no child behind."""

    faults = {"KEPU_FAULT_INJECTION": "screening", "KEPU_SECURE_COOKIES": "false"}
    with kepu_run(tmp_path, faults) as (base, env, log):
        run_pid = int((tmp_path / "run.pid").read_text())
        wait_until(lambda: _started(log, "scheduler") and _started(log, "screening worker"), 60)
        editor = Http(base, cli_token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
        status, body = editor.call(
            "POST",
            "/api/v1/items",
            {"title": "[fault:stall=600] " + PSEUDO_TITLE, "body": PSEUDO_BODY, "submit": True},
        )
        assert status == 201, body
        item_id = body["id"]
        wait_until(lambda: "fault injection: stall" in log.read_text(errors="replace"), 90)
        assert editor.call("GET", f"/api/v1/items/{item_id}")[1]["state"] == "screening"

        worker = _started(log, "screening worker")
        os.kill(worker, signal.SIGKILL)  # the worker's pool dies with it (PDEATHSIG)
        wait_until(lambda: _started(log, "screening worker") != worker, 60)
        assert f"WARNING: screening worker (pid {worker}) exited" in log.read_text()
        # The lost screening is retried (its second attempt does not stall) and routed.
        wait_until(
            lambda: (
                editor.call("GET", f"/api/v1/items/{item_id}")[1]["state"]
                in {"flagged", "in_review"}
            ),
            timeout=150,
        )
        children = descendants(run_pid)
        schedulers = [c for c in children.values() if " beat " in c]
        assert len(schedulers) == 1, children

        os.kill(run_pid, signal.SIGKILL)
        wait_until(lambda: not survivors(set(children)), timeout=30)


@pytest.mark.timeout(240)
def test_stopping_kepu_run_stops_every_child(tmp_path: Path) -> None:
    """SIGTERM (a service manager, Ctrl+C alike): workers, their pools and the scheduler all
    end; none is left to send relay-outbox on its own."""

    with kepu_run(tmp_path) as (_base, _env, log):
        run_pid = int((tmp_path / "run.pid").read_text())
        wait_until(lambda: _started(log, "scheduler") and _started(log, "media worker"), 60)
        wait_until(lambda: len(descendants(run_pid)) >= 4, 60)  # 3 children and a pool
        children = descendants(run_pid)
        os.kill(run_pid, signal.SIGTERM)
        wait_until(lambda: not survivors({run_pid, *children}), timeout=60)

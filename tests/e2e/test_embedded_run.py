"""`kepu run` on the embedded defaults: SQLite, the embedded broker, web + worker + scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_kepu
from tests.e2e.conftest import Http, walk_item_to_publication

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

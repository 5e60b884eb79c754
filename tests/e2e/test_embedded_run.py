"""`kepu run` on the embedded defaults: SQLite, the embedded broker, web + worker + scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, run_kepu, wait_until
from tests.e2e.conftest import Http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _token(env: dict[str, str], *args: str) -> str:
    return (
        run_kepu("users", "create", *args, "--password", "correct-horse-1", "--token", env=env)
        .stdout.strip()
        .splitlines()[-1]
    )


def test_whole_path_on_embedded_defaults(live: tuple[str, dict[str, str], Path]) -> None:
    base, env, log = live
    assert "sqlite" in log.read_text() and "sqla+sqlite" in log.read_text()
    editor = Http(base, _token(env, "ed", "--role", "editor", "--unit", "威海日报社"))
    experts = [
        Http(
            base,
            _token(env, name, "--role", "expert", "--unit", unit, "--domain", "医学健康", *extra),
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
            {"decision": "approve", "password": "correct-horse-1"},
        )
        assert status == 200, body
        assert body["item_state"] == ("approved" if number == 2 else "in_review"), body
    status, body = editor.call("POST", f"/api/v1/items/{item_id}/publish")
    assert status == 200 and body["receipt"]["item_id"] == item_id

    assert "链完整" in run_kepu("audit", "verify", env=env).stdout


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

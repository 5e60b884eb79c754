"""The ledger: append-only in the database, and any changed row makes `audit verify` fail there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from review.audit import SYSTEM, iter_exported_events, record_event, verify_events
from review.db import db
from tests.conftest import run_kepu


def _events(n: int) -> None:
    for i in range(n):
        record_event(
            "test.event",
            actor=SYSTEM,
            subject_type="item",
            subject_id=i,
            data={"审核": "審核", "n": i, "emoji": "👩‍🔬"},
        )
    db.session.commit()


def test_chain_verifies_and_links(app: Any) -> None:
    _events(5)
    events = list(iter_exported_events())
    assert [e["seq"] for e in events] == [0, 1, 2, 3, 4]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:], strict=False))
    assert verify_events(events).ok


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET actor = 'x' WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1"],
)
def test_database_refuses_update_and_delete(app: Any, statement: str) -> None:
    _events(3)
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
        db.session.flush()
    db.session.rollback()
    assert len(list(iter_exported_events())) == 3


def _bypass_triggers_and_change(seq: int) -> None:
    """What someone with owner rights could do: drop the protection and edit a row."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
        )
    else:
        db.session.execute(text("DROP TRIGGER audit_events_no_update"))
    db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": seq})
    db.session.commit()


@pytest.mark.parametrize("seq", [0, 3, 5])
def test_changed_row_fails_verification_at_that_row(app: Any, seq: int, instance: Path) -> None:
    _events(6)
    _bypass_triggers_and_change(seq)
    result = verify_events(iter_exported_events())
    assert not result.ok and result.first_bad_seq == seq
    db.session.rollback()  # end our read transaction before another process opens the file
    env = _env(app, instance)
    proc = run_kepu("audit", "verify", env=env, check=False)
    assert proc.returncode == 1
    assert f"seq {seq}" in proc.stderr


def test_recomputed_hash_breaks_the_next_link(app: Any) -> None:
    from review.audit import event_hash

    _events(4)
    events = list(iter_exported_events())
    forged = dict(events[1], actor="mallory")
    forged["hash"] = event_hash(forged)
    result = verify_events([events[0], forged, events[2], events[3]])
    assert not result.ok and result.first_bad_seq == 2


def test_export_then_verify_offline(app: Any, instance: Path, tmp_path: Path) -> None:
    _events(3)
    db.session.rollback()
    env = _env(app, instance)
    out = tmp_path / "export"
    run_kepu("audit", "export", "--out", str(out), env=env)
    assert run_kepu("audit", "verify", str(out), env=env).returncode == 0
    path = out / "events.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    event = json.loads(lines[1])
    event["data"]["n"] = 99
    lines[1] = json.dumps(event, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_kepu("audit", "verify", str(out), env=env, check=False)
    assert proc.returncode == 1 and "seq 1" in proc.stderr


def _env(app: Any, instance: Path) -> dict[str, str]:
    import os

    return dict(
        os.environ,
        KEPU_DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        KEPU_INSTANCE_PATH=str(instance),
    )


def _unprotect() -> None:
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
        )
    else:
        db.session.execute(text("DROP TRIGGER audit_events_no_update"))
        db.session.execute(text("DROP TRIGGER audit_events_no_delete"))


SQL_TAMPERS = {
    # Delete event 3: the chain breaks where it was.
    "delete": ["DELETE FROM audit_events WHERE seq = 3"],
    # Swap the contents of events 3 and 4 (reorder) while keeping their seq numbers.
    "reorder": [
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    ],
    # Insert a forged copy of event 2 as event 3 after moving the rest up by one.
    "insert": [
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000",
        "INSERT INTO audit_events (seq, at, actor_id, actor, role, action, subject_type,"
        " subject_id, data, request_id, prev_hash, hash)"
        " SELECT 3, at, actor_id, 'mallory', role, action, subject_type, subject_id, data,"
        " request_id, hash, (CASE WHEN substr(hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END)"
        " || substr(hash, 2) FROM audit_events WHERE seq = 2",
    ],
}


@pytest.mark.parametrize("tamper", sorted(SQL_TAMPERS))
def test_sql_tamper_bypassing_the_app_is_detected(app: Any, tamper: str) -> None:
    _events(6)
    _unprotect()
    for statement in SQL_TAMPERS[tamper]:
        db.session.execute(text(statement))
    db.session.commit()
    result = verify_events(iter_exported_events())
    assert not result.ok and result.first_bad_seq == 3, result


#: Texts whose bytes are easy to change by accident on the way through a database: CJK in
#: both scripts, a decomposed é (NFD, kept as two code points), an emoji ZWJ sequence, a
#: variation selector and an astral ideograph.
TRICKY = ["审核", "審核", "e\u0301", "👩\u200d🔬", "☺\ufe0f", "𠀋"]


def test_same_logical_log_hashes_the_same_on_both_databases(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY.md scenario 17: the canonical bytes (so every hash, and the Merkle root)
    do not depend on the backend — the same constant on SQLite and PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    import review.audit as audit

    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    ticks = iter(range(100))
    monkeypatch.setattr(audit, "utcnow", lambda: start + timedelta(seconds=next(ticks)))
    for i, value in enumerate(TRICKY):
        record_event(
            "test.tricky",
            actor=SYSTEM,
            subject_type="item",
            subject_id=i,
            data={"reason": value, "nested": {"键": [value, i]}},
        )
    db.session.commit()
    db.session.expire_all()
    events = list(iter_exported_events())
    assert [e["data"]["reason"] for e in events] == TRICKY  # stored exactly, not normalised
    assert verify_events(events).ok
    assert events[0]["at"] == "2026-01-02T03:04:05.678901Z"
    assert events[-1]["hash"] == EXPECTED_TIP


EXPECTED_TIP = "b923e773f6ebc914861747a7e2eb4cdb842ff5eac20c9094073a4b5d8520fec7"

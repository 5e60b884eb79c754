"""Signed checkpoints and offline verification: every single-point tamper is caught."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from review import ledger
from review.audit import SYSTEM, event_hash, iter_exported_events, record_event, verify_events
from review.db import db, utcnow
from review.signing import Signer
from tests.conftest import run_kepu

ORIGIN = "kepu-review/audit"


def _events(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        record_event(
            "test.event",
            actor=SYSTEM,
            subject_type="item",
            subject_id=i,
            data={"n": i, "审核": "✓"},
        )
    db.session.commit()


def _checkpoint(app: Any) -> ledger.AuditCheckpoint:
    row = ledger.create_checkpoint(
        signer=app.extensions["kepu_signer"], origin=ORIGIN, actor=SYSTEM
    )
    db.session.commit()
    return row


def _export(app: Any, tmp_path: Path, name: str = "bundle") -> Path:
    out = tmp_path / name
    ledger.export_bundle(out, signer=app.extensions["kepu_signer"])
    return out


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(x) for x in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def _write(folder: Path, events: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in events)
    (folder / "events.jsonl").write_text(text, encoding="utf-8")


def _rechain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an attacker with the database would do: recompute every hash after an edit."""
    prev = "0" * 64
    out = []
    for seq, e in enumerate(events):
        e = dict(e, seq=seq, prev_hash=prev)
        e["hash"] = event_hash(e)
        prev = e["hash"]
        out.append(e)
    return out


def test_checkpoint_note_signature(app: Any) -> None:
    _events(3)
    row = _checkpoint(app)
    note = ledger.parse_note(row.note)
    assert note.origin == ORIGIN and note.size == 3 and note.root_hex == row.root_hash
    key = app.extensions["kepu_signer"].public_key
    assert ledger.verify_note(note, key)
    forged = ledger.parse_note(row.note.replace("\n3\n", "\n2\n", 1))
    assert not ledger.verify_note(forged, key)
    assert not ledger.verify_note(note, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ledger.NoteError):
        ledger.parse_note("garbage")


def test_checkpoint_is_idempotent_per_size_and_audited(app: Any) -> None:
    _events(2)
    first = _checkpoint(app)
    assert _checkpoint(app).tree_size == first.tree_size + 1  # the checkpoint event itself
    actions = [e["action"] for e in iter_exported_events()]
    assert actions.count("audit.checkpoint") == 2


def test_bundle_verifies(app: Any, tmp_path: Path) -> None:
    _events(10)
    _checkpoint(app)
    _events(5, 10)
    _checkpoint(app)
    result = ledger.verify_bundle(_export(app, tmp_path))
    assert result.ok, result.messages


MUTATIONS = {
    "edit": lambda ev: [*ev[:7], dict(ev[7], actor="mallory"), *ev[8:]],
    "delete": lambda ev: [*ev[:7], *ev[8:]],
    "duplicate": lambda ev: [*ev[:8], ev[7], *ev[8:]],
    "swap": lambda ev: [*ev[:7], ev[8], ev[7], *ev[9:]],
    "insert": lambda ev: [*ev[:7], dict(ev[7], action="forged"), *ev[7:]],
    "backdate": lambda ev: [*ev[:7], dict(ev[7], at="2020-01-01T00:00:00.000000Z"), *ev[8:]],
    "nfd": lambda ev: [*ev[:7], dict(ev[7], data={**ev[7]["data"], "审核": "✓\u0301"}), *ev[8:]],
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_single_point_tamper_names_the_first_bad_event(
    app: Any, tmp_path: Path, mutation: str
) -> None:
    _events(12)
    folder = _export(app, tmp_path)
    _write(folder, MUTATIONS[mutation](_lines(folder)))
    result = ledger.verify_bundle(folder)
    assert not result.ok
    assert result.first_bad_seq in (7, 8)


def test_full_rewrite_is_caught_by_the_auditors_checkpoint(app: Any, tmp_path: Path) -> None:
    _events(30)
    kept = ledger.parse_note(_checkpoint(app).note, source="auditor-copy")
    _events(20, 30)
    folder = _export(app, tmp_path)
    events = _lines(folder)
    events[5]["data"]["n"] = 555
    _write(folder, _rechain(events))
    # The chain alone looks fine after the rewrite...
    assert verify_events(_lines(folder)).ok
    # ...but not against the checkpoint the auditor kept (nor the ones in the bundle).
    result = ledger.verify_bundle(folder, trusted=[kept])
    assert not result.ok and "不一致" in result.messages[-1]
    # Even with the stored checkpoints removed and re-signed with a stolen key.
    for path in (folder / "checkpoints").glob("*.txt"):
        path.unlink()
    result = ledger.verify_bundle(folder, trusted=[kept])
    assert not result.ok and "树大小 30" in result.messages[-1]


def test_truncation_is_caught_against_an_earlier_checkpoint(app: Any, tmp_path: Path) -> None:
    _events(20)
    kept = ledger.parse_note(_checkpoint(app).note)
    folder = _export(app, tmp_path)
    for path in (folder / "checkpoints").glob("*.txt"):
        path.unlink()
    _write(folder, _lines(folder)[:15])
    result = ledger.verify_bundle(folder, trusted=[kept])
    assert not result.ok and "截断" in result.messages[-1]


def test_a_replaced_key_is_caught_with_the_trusted_key(app: Any, tmp_path: Path) -> None:
    _events(5)
    kept = ledger.parse_note(_checkpoint(app).note)
    trusted_pem = app.extensions["kepu_signer"].public_pem()
    folder = _export(app, tmp_path)
    impostor = Signer(Ed25519PrivateKey.generate())
    (folder / "public_key.pem").write_text(impostor.public_pem(), encoding="utf-8")
    for path in (folder / "checkpoints").glob("*.txt"):
        cp = ledger.parse_note(path.read_text(encoding="utf-8"))
        path.write_text(ledger.sign_note(cp.body, name=ORIGIN, signer=impostor), encoding="utf-8")
    assert ledger.verify_bundle(folder).ok  # self-consistent with its own (replaced) key
    result = ledger.verify_bundle(folder, trusted=[kept], public_key_pem=trusted_pem)
    assert not result.ok and "签名无效" in result.messages[-1]


def test_fork_between_two_checkpoints(app: Any) -> None:
    _events(4)
    a = ledger.parse_note(_checkpoint(app).note)
    signer = app.extensions["kepu_signer"]
    body = ledger.checkpoint_body(
        ORIGIN,
        a.size,
        b"\x01" * 32,
        utcnow(),
    )
    b = ledger.parse_note(ledger.sign_note(body, name=ORIGIN, signer=signer))
    assert ledger.compare_checkpoints(a, b) is not None
    assert ledger.compare_checkpoints(a, a) is None


def test_cli_export_and_verify_offline(app: Any, instance: Path, tmp_path: Path) -> None:
    _events(6)
    kept = tmp_path / "kept.txt"
    kept.write_text(_checkpoint(app).note, encoding="utf-8")
    db.session.rollback()
    env = dict(
        os.environ,
        KEPU_DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        KEPU_INSTANCE_PATH=str(instance),
    )
    assert run_kepu("audit", "verify", env=env).returncode == 0
    out = tmp_path / "export"
    run_kepu("audit", "export", "--out", str(out), env=env)
    ok = run_kepu("audit", "verify", str(out), "--checkpoint", str(kept), env=env)
    assert "受信任的检查点" in ok.stdout
    events = _lines(out)
    events[2]["actor"] = "mallory"
    _write(out, events)
    bad = run_kepu("audit", "verify", str(out), "--checkpoint", str(kept), env=env, check=False)
    assert bad.returncode == 1 and "seq 2" in bad.stderr
    fork = tmp_path / "fork.txt"
    cp = ledger.parse_note(kept.read_text(encoding="utf-8"))
    fork.write_text(
        ledger.sign_note(
            cp.body.replace(cp.body.split("\n")[2], "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="),
            name=ORIGIN,
            signer=app.extensions["kepu_signer"],
        ),
        encoding="utf-8",
    )
    forked = run_kepu("audit", "verify", "--compare", str(kept), str(fork), env=env, check=False)
    assert forked.returncode == 1 and "分叉" in forked.stderr


def test_sixteen_threads_leave_a_gapless_verifiable_ledger(app: Any) -> None:
    db.session.commit()
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                for i in range(25):
                    record_event(
                        "test.concurrent", actor=SYSTEM, subject_type="item", subject_id=n * 100 + i
                    )
                    db.session.commit()
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    events = list(iter_exported_events())
    assert [e["seq"] for e in events] == list(range(400))
    assert verify_events(events).ok
    assert ledger.verify_note(
        ledger.parse_note(_checkpoint(app).note), app.extensions["kepu_signer"].public_key
    )


def _cli_env(app: Any, instance: Path) -> dict[str, str]:
    return dict(
        os.environ,
        KEPU_DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        KEPU_INSTANCE_PATH=str(instance),
    )


def test_a_fresh_export_carries_a_checkpoint_so_truncation_is_caught_at_once(
    app: Any, instance: Path, tmp_path: Path
) -> None:
    """No hourly checkpoint yet: `kepu audit export` signs one of exactly what it exports
    (audited), so dropping the newest lines of the export fails verification at once."""
    from sqlalchemy import select

    from review.audit import AuditEvent

    _events(5)
    assert db.session.scalar(select(ledger.AuditCheckpoint)) is None
    db.session.rollback()  # no read transaction open while the command writes (SQLite)
    env = _cli_env(app, instance)
    out = tmp_path / "export"
    run_kepu("audit", "export", "--out", str(out), env=env)
    notes = sorted((out / "checkpoints").glob("*.txt"))
    assert [ledger.parse_note(n.read_text(encoding="utf-8")).size for n in notes] == [5]
    db.session.rollback()
    audited = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.checkpoint")
    ).all()
    assert [e.data["tree_size"] for e in audited] == [5]
    assert ledger.verify_bundle(out).ok
    events = _lines(out)
    _write(out, events[:-1])  # the newest event removed from the file
    bad = run_kepu("audit", "verify", str(out), env=env, check=False)
    assert bad.returncode == 1 and "截断" in bad.stderr, bad.stdout + bad.stderr


def _unprotect() -> None:
    from sqlalchemy import text

    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
        )
    else:
        db.session.execute(text("DROP TRIGGER audit_events_no_update"))
        db.session.execute(text("DROP TRIGGER audit_events_no_delete"))


def test_deleting_the_newest_events_is_caught_against_the_head(app: Any, instance: Path) -> None:
    """A DBA drops the triggers and deletes the newest events: the chain that is left is
    whole, but audit_head still records the higher sequence. Verify says so, and names the
    events after the last checkpoint it cannot vouch for."""
    from sqlalchemy import text

    _events(4)
    _checkpoint(app)  # tree size 4; its own audit event is seq 4
    _events(3)  # seq 5, 6, 7
    env = _cli_env(app, instance)
    ok = run_kepu("audit", "verify", env=env)
    assert "audit_head 一致" in ok.stdout
    assert "之后的 4 条事件（seq 4–7）没有检查点担保" in ok.stdout, ok.stdout
    _unprotect()
    db.session.execute(text("DELETE FROM audit_events WHERE seq >= 6"))
    db.session.commit()
    bad = run_kepu("audit", "verify", env=env, check=False)
    assert bad.returncode == 1, bad.stdout
    assert "audit_head 记录到第 7 条，链只到第 5 条" in bad.stderr, bad.stderr
    assert "first bad event: seq 6" in bad.stderr


def test_offline_verify_names_the_events_no_checkpoint_covers(app: Any, tmp_path: Path) -> None:
    _events(3)
    bare = _export(app, tmp_path, "bare")  # the bundle without an export checkpoint
    result = ledger.verify_bundle(bare)
    assert result.ok and "没有签名检查点" in result.messages[-1]
    _checkpoint(app)
    _events(2)
    later = _export(app, tmp_path, "later")
    result = ledger.verify_bundle(later)
    assert result.ok and "seq 3–5" in result.messages[-1], result.messages


@pytest.mark.parametrize(
    ("count", "at_head", "head_seq", "ok", "first_bad"),
    [
        (8, "h7", 7, True, None),  # the chain ends at the head
        (9, "h7", 7, True, None),  # one event appended after the head was read: no alarm
        (6, None, 7, False, 6),  # the newest two deleted
        (8, "forged", 7, False, 7),  # the newest replaced by another with a recomputed hash
        (0, None, -1, True, None),  # an empty ledger
    ],
)
def test_check_head(
    count: int, at_head: str | None, head_seq: int, ok: bool, first_bad: int | None
) -> None:
    result = ledger.check_head(count, at_head, head_seq, "h7" if head_seq >= 0 else "0" * 64)
    assert (result.ok, result.first_bad_seq) == (ok, first_bad), result.messages

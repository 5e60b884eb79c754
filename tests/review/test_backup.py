"""`kepu backup` / `kepu restore`: a populated instance comes back whole in a fresh one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import (
    GENUINE_BODY,
    GENUINE_TITLE,
    PSEUDO_BODY,
    PSEUDO_TITLE,
    _pg_admin,
    _sa_url,
    run_kepu,
    submit_screened,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def empty_target(db_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as the source (PostgreSQL: no tables at all)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'kepu.sqlite'}"
        return
    name = f"kepu_restore_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _sa_url(name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(url: str, instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env.update(KEPU_DATABASE_URL=url, KEPU_INSTANCE_PATH=str(instance))
    return env


def _counts(url: str) -> dict[str, Any]:
    from review.models import Item, ScreeningReport

    engine = create_engine(url)
    try:
        with Session(engine) as s:
            return {
                "items": sorted(
                    (i.id, i.title, i.state.value) for i in s.scalars(select(Item)).all()
                ),
                "reports": s.scalar(select(func.count(ScreeningReport.id))),
            }
    finally:
        engine.dispose()


def test_backup_and_restore_into_a_fresh_instance(
    app: Any, factory: Any, db_url: str, instance: Path, empty_target: str, tmp_path: Path
) -> None:
    from review import ledger
    from review.audit import SYSTEM
    from review.db import db

    editor = factory.token(factory.user("editor"))
    submit_screened(app, editor, PSEUDO_TITLE, PSEUDO_BODY)
    submit_screened(app, editor, GENUINE_TITLE, GENUINE_BODY)
    ledger.create_checkpoint(
        signer=app.extensions["kepu_signer"], origin="kepu-review/audit", actor=SYSTEM
    )
    db.session.commit()
    uploads, media = Path(app.config["UPLOAD_FOLDER"]), Path(app.config["MEDIA_FOLDER"])
    (uploads / "2026").mkdir(parents=True)
    (uploads / "2026" / "report.docx").write_bytes(b"docx bytes \x00\x01")
    media.mkdir(parents=True, exist_ok=True)
    (media / ("ab" * 32 + ".mp4")).write_bytes(os.urandom(4096))
    (media / ".upload-streaming.part").write_bytes(b"half an upload")  # never backed up
    before = _counts(db_url)
    db.session.remove()
    db.engine.dispose()

    out = tmp_path / "backup"
    result = run_kepu("backup", "--out", str(out), env=_env(db_url, instance))
    assert "backup written" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["items"] == 2 and manifest["counts"]["audit_checkpoints"] == 1
    assert "files/uploads/2026/report.docx" in manifest["files"]
    assert not any(".upload-" in name for name in manifest["files"])
    assert "keys/signing_key.pem" in manifest["files"]
    again = run_kepu("backup", "--out", str(out), env=_env(db_url, instance), check=False)
    assert again.returncode == 2 and "not empty" in again.stderr

    fresh = tmp_path / "fresh-instance"
    env = _env(empty_target, fresh)
    restored = run_kepu("restore", str(out), env=env)
    assert "restored" in restored.stdout
    assert _counts(empty_target) == before
    assert (fresh / "uploads" / "2026" / "report.docx").read_bytes() == b"docx bytes \x00\x01"
    assert (fresh / "media" / ("ab" * 32 + ".mp4")).read_bytes() == (
        media / ("ab" * 32 + ".mp4")
    ).read_bytes()
    assert (fresh / "signing_key.pem").read_bytes() == (instance / "signing_key.pem").read_bytes()
    assert (fresh / "secret_key").read_text() == (instance / "secret_key").read_text()
    verify = run_kepu("audit", "verify", env=env, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The restored instance is not empty any more: a second restore is refused ...
    refused = run_kepu("restore", str(out), env=env, check=False)
    assert refused.returncode == 2 and "not empty" in refused.stderr
    # ... unless forced, which gives the same instance again.
    run_kepu("restore", "--force", str(out), env=env)
    assert _counts(empty_target) == before
    assert run_kepu("audit", "verify", env=env, check=False).returncode == 0

    # A backup altered after it was written is refused before anything is touched.
    (out / "files" / "uploads" / "2026" / "report.docx").write_bytes(b"tampered")
    tampered = run_kepu("restore", "--force", str(out), env=env, check=False)
    assert tampered.returncode == 2 and "checksum mismatch" in tampered.stderr
    assert (fresh / "uploads" / "2026" / "report.docx").read_bytes() == b"docx bytes \x00\x01"

"""The migrations build exactly the models' schema, and every downgrade works, on both databases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from review.db import db
from tests.conftest import run_kepu


def test_models_match_migrations(app: Any) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(app: Any, instance: Path) -> None:
    db.session.remove()
    db.engine.dispose()
    env = dict(
        os.environ,
        KEPU_DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        KEPU_INSTANCE_PATH=str(instance),
    )
    run_kepu("db", "downgrade", "base", env=env)
    run_kepu("db", "upgrade", env=env)
    assert "链完整" in run_kepu("audit", "verify", env=env).stdout

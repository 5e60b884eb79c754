"""Backup and restore of one instance: database, uploaded and media files, instance keys.

A backup folder holds ``database.dump`` (PostgreSQL: ``pg_dump`` custom format) or
``database.sqlite`` (SQLite: the online backup API, consistent while the app runs), then
``files/uploads`` and ``files/media``, ``keys/`` (session secret and the Ed25519 signing key),
and last ``manifest.json`` with the SHA-256 of every file — a folder without a manifest is an
unfinished backup and is refused.

The database is dumped *before* the files are copied: files are content-addressed and never
rewritten, so every file a dumped row names is in the backup (later files are merely extra).
The broker is not backed up: the outbox table in the database is the source of truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess  # nosec B404  # runs pg_dump / pg_restore with a fixed argv (below)
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url

MANIFEST = "manifest.json"
FORMAT = 1
#: Tables whose row counts the manifest records and restore checks.
COUNTED = (
    "users",
    "items",
    "versions",
    "screening_reports",
    "findings",
    "decisions",
    "publications",
    "audit_events",
    "audit_checkpoints",
    "media_assets",
)


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


@dataclass(frozen=True)
class Instance:
    """Where one instance keeps its state (from the Flask configuration)."""

    database_url: str
    upload_folder: Path
    media_folder: Path
    secret_key_file: Path | None  # None when KEPU_SECRET_KEY is given in the environment
    signing_key_file: Path

    @classmethod
    def from_config(cls, cfg: Any) -> Instance:
        """The parts named by the app's configuration."""
        secret = Path(cfg["INSTANCE_PATH"]) / "secret_key"
        return cls(
            database_url=str(cfg["SQLALCHEMY_DATABASE_URI"]),
            upload_folder=Path(cfg["UPLOAD_FOLDER"]),
            media_folder=Path(cfg["MEDIA_FOLDER"]),
            secret_key_file=None if os.environ.get("KEPU_SECRET_KEY") else secret,
            signing_key_file=Path(cfg["SIGNING_KEY_PATH"]),
        )

    @property
    def kind(self) -> str:
        """``postgresql`` or ``sqlite``."""
        backend = make_url(self.database_url).get_backend_name()
        if backend not in ("postgresql", "sqlite"):
            raise BackupError(f"unsupported database: {backend}")
        return backend


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URL for pg_dump/pg_restore, the password passed in the environment."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _major(version_text: str) -> int:
    found = re.search(r"(\d+)(?:\.\d+)?", version_text)
    if not found:
        raise BackupError(f"cannot read a version from {version_text!r}")
    return int(found.group(1))


def _pg_tool(name: str) -> str:
    exe = shutil.which(name)
    if not exe:
        raise BackupError(f"{name} is not installed (PostgreSQL client programs are needed)")
    return exe


def _run(argv: list[str], env: dict[str, str]) -> str:
    # argv is built here from the configured URL's parts, never from a shell string.
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)  # nosec B603
    if proc.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def counts(engine: Engine) -> dict[str, int]:
    """Row counts of the tables the manifest records (missing tables are left out)."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        found = {
            # table comes from the fixed COUNTED tuple, filtered by the inspector's names.
            table: int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())  # noqa: S608  # nosec B608
            for table in COUNTED
            if table in present
        }
        conn.rollback()
    return found


def _revision(engine: Engine) -> str | None:
    if "alembic_version" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.rollback()
    return str(value) if value else None


def _files(folder: Path) -> list[Path]:
    """Stored files under ``folder``; dot-files are uploads still streaming in, never data."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def create_backup(out: Path, instance: Instance, engine: Engine) -> dict[str, Any]:
    """Write a backup of ``instance`` into the new or empty folder ``out``; return the manifest."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    kind = instance.kind
    database: dict[str, Any] = {"kind": kind, "alembic_revision": _revision(engine)}
    record = counts(engine)
    if kind == "postgresql":
        dump = out / "database.dump"
        url, env = _libpq(instance.database_url)
        tool = _run([_pg_tool("pg_dump"), "--version"], env).strip()
        with engine.connect() as conn:
            server = str(conn.execute(text("SHOW server_version")).scalar_one())
            conn.rollback()
        if _major(tool.split("(PostgreSQL)", 1)[-1]) < _major(server):
            raise BackupError(f"{tool} is older than the server ({server}); use a newer pg_dump")
        _run(
            [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
            + ["--file", str(dump), "--dbname", url],
            env,
        )
        database.update(file=dump.name, pg_dump=tool, server_version=server)
    else:
        dump = out / "database.sqlite"
        source = sqlite3.connect(str(make_url(instance.database_url).database), timeout=30)
        target = sqlite3.connect(str(dump))
        try:
            source.backup(target)  # a consistent copy while other processes keep writing
        finally:
            target.close()
            source.close()
        database.update(file=dump.name)
    for name, folder in (("uploads", instance.upload_folder), ("media", instance.media_folder)):
        for path in _files(folder):
            dest = out / "files" / name / path.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    keys = out / "keys"
    keys.mkdir()
    os.chmod(keys, 0o700)
    for name, path in (
        ("secret_key", instance.secret_key_file),
        ("signing_key.pem", instance.signing_key_file),
    ):
        if path is not None and path.is_file():
            shutil.copy2(path, keys / name)
            os.chmod(keys / name, 0o600)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database,
        "counts": record,
        "files": {
            str(p.relative_to(out)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(out.rglob("*"))
            if p.is_file()
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` after checking every listed file's size and SHA-256."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} has no {MANIFEST}: not a finished backup")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    for rel, meta in manifest["files"].items():
        file = folder / rel
        if not file.is_file():
            raise BackupError(f"missing from the backup: {rel}")
        if file.stat().st_size != meta["size"] or sha256_file(file) != meta["sha256"]:
            raise BackupError(f"checksum mismatch: {rel}")
    return manifest


def database_is_empty(engine: Engine) -> bool:
    """True when the target database has no tables at all."""
    return not inspect(engine).get_table_names()


def restore_backup(
    folder: Path, instance: Instance, engine: Engine, *, force: bool = False
) -> dict[str, Any]:
    """Restore ``folder`` into ``instance``: refuses a non-empty target unless ``force``."""
    manifest = read_manifest(folder)
    database = manifest["database"]
    if database["kind"] != instance.kind:
        raise BackupError(f"the backup holds {database['kind']}, the target is {instance.kind}")
    if instance.kind == "sqlite":
        Path(str(make_url(instance.database_url).database)).parent.mkdir(
            parents=True, exist_ok=True
        )
    occupied = []
    if not database_is_empty(engine):
        occupied.append("database")
    for label, target in (("uploads", instance.upload_folder), ("media", instance.media_folder)):
        if _files(target):
            occupied.append(f"{label} folder {target}")
    if occupied and not force:
        raise BackupError("the target is not empty (" + ", ".join(occupied) + "); use --force")
    engine.dispose()
    dump = folder / database["file"]
    if database["kind"] == "postgresql":
        url, env = _libpq(instance.database_url)
        argv = [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
        if force:
            argv += ["--clean", "--if-exists"]
        _run([*argv, "--dbname", url, str(dump)], env)
    else:
        target_path = Path(str(make_url(instance.database_url).database))
        target_path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target_path}{suffix}").unlink(missing_ok=True)
        source = sqlite3.connect(str(dump))
        target = sqlite3.connect(str(target_path))
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    for label, dest in (("uploads", instance.upload_folder), ("media", instance.media_folder)):
        base = folder / "files" / label
        for path in _files(base):
            out = dest / path.relative_to(base)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
    # An empty target's own keys signed nothing yet, so the backup's keys replace them.
    for name, path in (
        ("secret_key", instance.secret_key_file),
        ("signing_key.pem", instance.signing_key_file),
    ):
        source_key = folder / "keys" / name
        if path is not None and source_key.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_key, path)
            os.chmod(path, 0o600)
    restored = counts(engine)
    if restored != manifest["counts"]:
        raise BackupError(f"row counts differ after restore: {restored} != {manifest['counts']}")
    engine.dispose()
    return manifest

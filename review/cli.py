"""The ``kepu`` command: Flask's CLI group plus run, seed-demo, users, audit, rules, outbox."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, routes_command, shell_command, with_appcontext

import config
from review.receipt_cli import receipt_group
from review.rules_cli import rules_group

# The app's modules (SQLAlchemy, Flask extensions) are imported inside the commands that need
# them. The pure `kepu rules ...` commands do not even import Flask (see review.entry).
ROLES = ("editor", "expert", "auditor", "admin")


def _make_app(*_: Any) -> Flask:
    from review import create_app

    return create_app()


class KepuGroup(FlaskGroup):
    """Flask's group without its development ``run`` (ours starts web, worker and scheduler)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(create_app=_make_app, add_default_commands=False, **kwargs)
        self.add_command(shell_command)
        self.add_command(routes_command)
        # The screening tools are pure: they run without building the app (fast start-up).
        self.add_command(rules_group)
        self.add_command(receipt_group)


def main() -> None:
    """The whole command group (review.entry.main is the console script)."""
    KepuGroup(name="kepu", help="科普信息科学性审查平台 command line.")()


def register_cli(app: Flask) -> None:
    """Attach the project's commands to ``app.cli``."""
    from expert_pool.cli import experts_group

    for command in (
        run_command,
        seed_demo,
        users_group,
        audit_group,
        outbox_group,
        experts_group,
        search_group,
        webhooks_group,
        backup_command,
        restore_command,
    ):
        app.cli.add_command(command)


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    raise SystemExit(code)


# --- run ---------------------------------------------------------------------------------------


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Start only the web server.")
@with_appcontext
def run_command(host: str, port: int, no_worker: bool) -> None:
    """Start the web server plus a Celery worker with the scheduler, on the configured parts."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not config.secure_cookies_given():
        # This server speaks plain HTTP on 127.0.0.1: a Secure (__Host-) cookie would never
        # come back, so the embedded run defaults to ordinary cookies and no HSTS.
        app.config.update(config.cookie_settings(False))
    _upgrade_if_empty()
    supervisor = None
    if not no_worker:
        from review.supervise import Supervisor

        instance = Path(app.instance_path)
        env = dict(os.environ, KEPU_INSTANCE_PATH=app.instance_path)
        name = secrets.token_hex(3)
        celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app"]
        worker = [*celery, "worker", "--loglevel", "INFO"]
        # Text screening and control work in one worker; videos in their own, so a long video
        # never holds up the screening of articles. The scheduler is a child of its own (not
        # the worker's -B), so a dead worker never leaves it orphaned; its pid file refuses a
        # second scheduler on the same instance.
        supervisor = Supervisor(
            {
                "screening worker": [
                    *worker,
                    *("-Q", "screening,control,notifications", "-c", "2"),
                    *("-n", f"kepu-{name}@%h"),
                ],
                "media worker": [*worker, "-Q", "media", "-c", "1", "-n", f"kepu-media-{name}@%h"],
                "scheduler": [
                    *celery,
                    "beat",
                    *("-s", str(instance / "celerybeat-schedule")),
                    *("--pidfile", str(instance / "celerybeat.pid")),
                    *("--loglevel", "INFO"),
                ],
            },
            env=env,
            echo=lambda line: click.echo(line, err=True),
        )
    click.echo(f"科普信息科学性审查平台 正在运行：http://{host}:{port}/  (Ctrl+C 停止)", err=False)
    database, broker = app.config["SQLALCHEMY_DATABASE_URI"], app.config["BROKER_URL"]
    click.echo(f"数据库：{_redact(database)}  队列：{_redact(broker)}")
    # SIGTERM (service managers, tests) must stop the children too, not leave them orphaned.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if supervisor is not None:
            supervisor.start()
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if supervisor is not None:
            supervisor.stop()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _redact(url: object) -> str:
    text = str(url)
    if "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text


def _upgrade_if_empty() -> None:
    """Embedded default: create the schema on first start so `kepu run` works on a new machine."""
    from flask_migrate import upgrade
    from sqlalchemy import inspect

    from review.db import db

    if "alembic_version" not in inspect(db.engine).get_table_names():
        upgrade()


# --- users -------------------------------------------------------------------------------------


@click.group("users")
def users_group() -> None:
    """Manage accounts."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--unit", default=None, help="Unit name (created when missing).")
@click.option("--name", "display_name", default=None, help="Display name.")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    help="Expert domain (repeatable); makes a verified expert.",
)
@click.option("--max-load", type=int, default=5, show_default=True)
@click.option("--senior", is_flag=True)
@click.option("--title", default="", help="Expert title (职称).")
@click.option("--password", default=None, help="Password (random when omitted, printed).")
@click.option("--token", is_flag=True, help="Also issue an API token (printed last).")
@with_appcontext
def users_create(
    username: str,
    role: str,
    unit: str | None,
    display_name: str | None,
    domains: tuple[str, ...],
    max_load: int,
    senior: bool,
    title: str,
    password: str | None,
    token: bool,
) -> None:
    """Create a user; experts with --domain join the pool verified."""
    from expert_pool.pool import add_expert
    from review.audit import SYSTEM
    from review.auth import create_user, issue_token
    from review.db import db
    from review.errors import DomainError
    from review.models import Role
    from review.operations import get_or_create_unit
    from review.passwords import random_password

    given = password if password is not None else random_password(names=(username, display_name))
    try:
        unit_row = get_or_create_unit(unit, actor=SYSTEM) if unit else None
        user = create_user(
            username,
            role=role,
            password=given,
            display_name=display_name,
            unit=unit_row,
            actor=SYSTEM,
        )
        if role == Role.expert.value and (domains or senior):
            add_expert(
                user,
                domains=list(domains),
                title=title,
                max_load=max_load,
                is_senior=senior,
                unit=unit_row,
                actor=SYSTEM,
            )
        plain = issue_token(user, name="cli", actor=SYSTEM) if token else None
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        _fail(f"错误：{exc.message}", 2)
        return
    click.echo(f"created {role} {username}")
    if password is None:
        click.echo(f"password: {given}")
    if plain:
        click.echo(plain)


@users_group.command("token")
@click.argument("username")
@with_appcontext
def users_token(username: str) -> None:
    """Issue a new API token for an existing user (printed once)."""
    from sqlalchemy import select

    from review.audit import SYSTEM
    from review.auth import issue_token
    from review.db import db
    from review.models import User

    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        _fail(f"no such user: {username}", 2)
        return
    plain = issue_token(user, name="cli", actor=SYSTEM)
    db.session.commit()
    click.echo(plain)


# --- audit -------------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The audit ledger."""


@audit_group.command("verify")
@click.argument(
    "folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you kept earlier (repeatable); the export must agree with it.",
)
@click.option(
    "--pubkey",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The public key you trust (default: the one in the export folder).",
)
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Compare two checkpoints of the same size: different roots prove a fork.",
)
def audit_verify(
    folder: Path | None,
    checkpoints: tuple[Path, ...],
    pubkey: Path | None,
    compare: tuple[Path, Path] | None,
) -> None:
    """Verify the ledger: hash chain, Merkle roots and signed checkpoints; exit 1 on any fault.

    With FOLDER (from `kepu audit export`) no database or network is needed.
    """
    from review import ledger

    try:
        trusted = [
            ledger.parse_note(p.read_text(encoding="utf-8"), source=p.name) for p in checkpoints
        ]
        if compare:
            a, b = (
                ledger.parse_note(p.read_text(encoding="utf-8"), source=p.name) for p in compare
            )
            fork = ledger.compare_checkpoints(a, b)
            if fork:
                click.echo(fork, err=True)
                raise SystemExit(1)
            click.echo("两个检查点没有分叉")
            if folder is None:
                return
    except ledger.NoteError as exc:
        _fail(f"错误：{exc}", 2)
        return
    pem = pubkey.read_text(encoding="utf-8") if pubkey else None
    if folder is not None:
        result = ledger.verify_bundle(folder, trusted=trusted, public_key_pem=pem)
    else:
        app = click.get_current_context().ensure_object(ScriptInfo).load_app()
        with app.app_context():
            result = _verify_database(trusted, pem)
    for message in result.messages[:-1] if not result.ok else result.messages:
        click.echo(message)
    if not result.ok:
        click.echo(result.messages[-1] if result.messages else "校验失败", err=True)
        if result.first_bad_seq is not None:
            click.echo(f"first bad event: seq {result.first_bad_seq}", err=True)
        raise SystemExit(1)


def _verify_database(trusted: list[Any], pem: str | None) -> Any:
    from sqlalchemy import select

    from review import ledger
    from review.audit import (
        GENESIS_HASH,
        AuditEvent,
        AuditHead,
        iter_exported_events,
        verify_events,
    )
    from review.db import db

    # The head first: events appended while the chain is read are then no false alarm.
    head_row = db.session.get(AuditHead, 1)
    head_seq, head_hash = (head_row.seq, head_row.hash) if head_row else (-1, GENESIS_HASH)
    chain = verify_events(iter_exported_events())
    if not chain.ok:
        return ledger.BundleResult(False, [chain.message], chain.first_bad_seq)
    leaves = ledger.leaf_hashes()
    at_head = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == head_seq))
    head = ledger.check_head(len(leaves), at_head, head_seq, head_hash)
    if not head.ok:
        return head
    signer = current_app.extensions["kepu_signer"]
    key = ledger.load_public_key(pem or signer.public_pem())
    stored = [
        ledger.parse_note(cp.note, source=f"#{cp.tree_size}")
        for cp in db.session.scalars(
            select(ledger.AuditCheckpoint).order_by(ledger.AuditCheckpoint.tree_size)
        )
    ]
    messages = [chain.message, *head.messages]
    for label, group in (("数据库中的检查点", stored), ("受信任的检查点", trusted)):
        result = ledger.check_checkpoints(leaves, group, key, label=label)
        if not result.ok:
            return result
        messages.extend(result.messages)
    messages.append(ledger.unvouched(len(leaves), (cp.size for cp in [*stored, *trusted])))
    return ledger.BundleResult(True, messages)


@audit_group.command("export")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write events.jsonl, checkpoints/ and public_key.pem into.",
)
@with_appcontext
def audit_export(out: Path) -> None:
    """Export the ledger for offline verification, with a checkpoint signed of what it exports."""
    from review import ledger
    from review.audit import SYSTEM
    from review.db import db

    count = ledger.export_bundle(
        out,
        signer=current_app.extensions["kepu_signer"],
        checkpoint_origin=str(current_app.config["LEDGER_ORIGIN"]),
        actor=SYSTEM,
    )
    db.session.commit()
    click.echo(f"exported {count} events to {out} (checkpoint signed at tree size {count})")


@audit_group.command("checkpoint")
@with_appcontext
def audit_checkpoint() -> None:
    """Sign a checkpoint of the ledger now and print it (keep a copy outside the system)."""
    from review import ledger
    from review.audit import SYSTEM
    from review.db import db

    row = ledger.create_checkpoint(
        signer=current_app.extensions["kepu_signer"],
        origin=str(current_app.config["LEDGER_ORIGIN"]),
        actor=SYSTEM,
    )
    db.session.commit()
    click.echo(row.note, nl=False)


# --- backup and restore ------------------------------------------------------------------------


@click.command("backup")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty folder for the backup.",
)
@with_appcontext
def backup_command(out: Path) -> None:
    """Back up the database, uploaded and media files and instance keys, with SHA-256 manifest."""
    from review.backup import BackupError, Instance, create_backup
    from review.db import db

    try:
        manifest = create_backup(out, Instance.from_config(current_app.config), db.engine)
    except BackupError as exc:
        _fail(f"backup failed: {exc}", 2)
        return
    click.echo(
        f"backup written to {out}: {manifest['database']['kind']} database, "
        f"{len(manifest['files'])} files, counts {json.dumps(manifest['counts'])}"
    )


@click.command("restore")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a database or folders that hold data.")
@with_appcontext
def restore_command(folder: Path, force: bool) -> None:
    """Restore a backup into an empty database and instance (checks every file's SHA-256)."""
    from review.backup import BackupError, Instance, restore_backup
    from review.db import db

    try:
        manifest = restore_backup(
            folder, Instance.from_config(current_app.config), db.engine, force=force
        )
    except BackupError as exc:
        _fail(f"restore refused: {exc}", 2)
        return
    click.echo(f"restored {folder}: counts {json.dumps(manifest['counts'])}")
    click.echo("run `kepu audit verify` to check the ledger and its signed checkpoints")


# --- outbox and housekeeping -------------------------------------------------------------------


@click.group("outbox")
def outbox_group() -> None:
    """The transactional outbox (normally relayed by the scheduler)."""


@outbox_group.command("relay")
@click.option("--loop", is_flag=True, help="Keep relaying every second until interrupted.")
@with_appcontext
def outbox_relay(loop: bool) -> None:
    """Publish pending outbox rows to the broker.

    With ``--loop`` SIGTERM (a deploy) lets the current row finish: it is published and marked
    sent, or left unclaimed, never left leased; then the command exits 0.
    """
    from workers.celery_app import celery  # noqa: F401  (configures the broker)
    from workers.tasks import relay_outbox, relay_stopping

    if loop:
        signal.signal(signal.SIGTERM, lambda signum, frame: relay_stopping.set())
    while True:
        sent = relay_outbox()
        if sent or not loop:
            click.echo(f"sent {sent}")
        if not loop:
            return
        if relay_stopping.is_set() or relay_stopping.wait(1):
            click.echo("relay stopped (SIGTERM)")
            return


@outbox_group.command("reconcile")
@with_appcontext
def outbox_reconcile() -> None:
    """Re-queue stuck screenings and offer flagged items that wait without a reviewer."""
    from workers.tasks import reconcile

    click.echo(json.dumps(reconcile()))


# --- webhooks ----------------------------------------------------------------------------------


@click.group("webhooks")
def webhooks_group() -> None:
    """Outgoing webhooks (also on the admin page /admin/webhooks)."""


@webhooks_group.command("add")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    help="Event to send (repeatable): item.flagged, item.assigned, review.decided, "
    "item.approved, item.published, item.recalled. Default: all.",
)
@click.option("--name", default="", help="A name for the subscriber.")
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the signing secret from this file (generated and printed when omitted).",
)
@click.option("--inactive", is_flag=True, help="Register it switched off.")
@with_appcontext
def webhooks_add(
    url: str, events: tuple[str, ...], name: str, secret_file: Path | None, inactive: bool
) -> None:
    """Register a subscriber; a generated secret is printed once, on the last line."""
    from review import webhooks
    from review.audit import SYSTEM
    from review.db import db
    from review.errors import DomainError

    secret = secret_file.read_text(encoding="utf-8").strip() if secret_file else ""
    try:
        sub = webhooks.create_subscriber(
            url=url,
            events=list(events) or list(webhooks.EVENTS),
            name=name,
            secret=secret,
            is_active=not inactive,
            actor=SYSTEM,
        )
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        _fail(f"错误：{exc.message}", 2)
        return
    click.echo(f"subscriber {sub.id}: {webhooks.redact_url(sub.url)} {','.join(sub.events)}")
    if not secret:
        click.echo("签名密钥（只显示这一次，请妥善保存）：", err=True)
        click.echo(sub.secret)


@webhooks_group.command("list")
@with_appcontext
def webhooks_list() -> None:
    """Subscribers with their events and the delivery counts by status (no secrets)."""
    from sqlalchemy import func, select

    from review import webhooks
    from review.db import db

    counts = {
        (sid, status.value): n
        for sid, status, n in db.session.execute(
            select(
                webhooks.WebhookDelivery.subscriber_id,
                webhooks.WebhookDelivery.status,
                func.count(),
            ).group_by(webhooks.WebhookDelivery.subscriber_id, webhooks.WebhookDelivery.status)
        )
    }
    for sub in webhooks.subscribers():
        tally = " ".join(
            f"{s.value}={counts.get((sub.id, s.value), 0)}" for s in webhooks.DeliveryStatus
        )
        state = "active" if sub.is_active else "inactive"
        click.echo(
            f"{sub.id}\t{state}\t{webhooks.redact_url(sub.url)}\t{','.join(sub.events)}\t{tally}"
        )


# --- demo data ---------------------------------------------------------------------------------


@click.group("search")
def search_group() -> None:
    """The full-text search index."""


@search_group.command("reindex")
@with_appcontext
def search_reindex() -> None:
    """Rebuild the search index of every item."""
    from sqlalchemy import select

    from review.db import db
    from review.models import Item
    from review.search import index_item

    count = 0
    for item in db.session.scalars(select(Item).order_by(Item.id)).all():
        index_item(item)
        count += 1
    db.session.commit()
    click.echo(f"indexed {count} items")


@click.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Create demo units, one account per role, experts in every domain and sample items."""
    from review.demo import seed

    accounts = seed(Path(current_app.instance_path))
    click.echo("演示账号（用户名 / 密码 / 角色）：")
    for username, password, role in accounts:
        click.echo(f"  {username:<14} {password:<20} {role}")

"""The ``kepu`` command: Flask's CLI group plus run, seed-demo, users, audit, rules, outbox."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess  # nosec B404  # starts our own Celery workers (fixed argv, below)
import sys
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, routes_command, shell_command, with_appcontext

# The app's modules (SQLAlchemy, Flask extensions) are imported inside the commands that need
# them, so the pure `kepu rules ...` commands start as fast as `python -m rules`.
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


def main() -> None:
    """Console-script entry point."""
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
    _upgrade_if_empty()
    workers: list[subprocess.Popen[bytes]] = []
    if not no_worker:
        env = dict(os.environ, KEPU_INSTANCE_PATH=app.instance_path)
        schedule = Path(app.instance_path) / "celerybeat-schedule"
        name = secrets.token_hex(3)
        base = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"]
        # Text screening and control work in one worker (with beat); videos in their own, so a
        # long video never holds up the screening of articles.
        # Fixed argv (this interpreter, our Celery app, generated names): no user input.
        workers.append(
            subprocess.Popen(  # nosec B603
                [*base, "-B", "-s", str(schedule), "-Q", "screening,control,notifications"]
                + ["-c", "2", "--loglevel", "INFO", "-n", f"kepu-{name}@%h"],
                env=env,
            )
        )
        workers.append(
            subprocess.Popen(  # nosec B603
                [*base, "-Q", "media", "-c", "1", "--loglevel", "INFO"]
                + ["-n", f"kepu-media-{name}@%h"],
                env=env,
            )
        )
    click.echo(f"科普信息科学性审查平台 正在运行：http://{host}:{port}/  (Ctrl+C 停止)", err=False)
    database, broker = app.config["SQLALCHEMY_DATABASE_URI"], app.config["BROKER_URL"]
    click.echo(f"数据库：{_redact(database)}  队列：{_redact(broker)}")
    # SIGTERM (service managers, tests) must stop the worker too, not leave it orphaned.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()


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

    given = password or secrets.token_urlsafe(12)
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
    from review.audit import iter_exported_events, verify_events
    from review.db import db

    chain = verify_events(iter_exported_events())
    if not chain.ok:
        return ledger.BundleResult(False, [chain.message], chain.first_bad_seq)
    signer = current_app.extensions["kepu_signer"]
    key = ledger.load_public_key(pem or signer.public_pem())
    leaves = ledger.leaf_hashes()
    stored = [
        ledger.parse_note(cp.note, source=f"#{cp.tree_size}")
        for cp in db.session.scalars(
            select(ledger.AuditCheckpoint).order_by(ledger.AuditCheckpoint.tree_size)
        )
    ]
    messages = [chain.message]
    for label, group in (("数据库中的检查点", stored), ("受信任的检查点", trusted)):
        result = ledger.check_checkpoints(leaves, group, key, label=label)
        if not result.ok:
            return result
        messages.extend(result.messages)
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
    """Export the ledger for offline verification."""
    from review import ledger

    count = ledger.export_bundle(out, signer=current_app.extensions["kepu_signer"])
    click.echo(f"exported {count} events to {out}")


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


# --- rules -------------------------------------------------------------------------------------


@click.group("rules")
def rules_group() -> None:
    """The screening engine."""


@rules_group.command("test")
def rules_test() -> None:
    """Run every rule's must-flag and must-pass examples; name each failure."""
    import rules

    ruleset = rules.load_default_ruleset()
    failures = rules.run_examples(ruleset)
    for f in failures:
        click.echo(f"FAIL {f.rule_id} {f.kind}: {f.text}  ({f.detail})")
    click.echo(f"{len(ruleset)} rules, {len(failures)} failing examples")
    if failures:
        raise SystemExit(1)


@rules_group.command("scan")
@click.argument("source", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--summary", is_flag=True, help="Print only the level, score and counts.")
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Processes for a large text (0 = one per CPU); the report is the same.",
)
def rules_scan(source: Any, as_json: bool, summary: bool, jobs: int) -> None:
    """Screen a UTF-8 text file (or - for standard input) and print the findings."""
    import rules

    raw = source.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        _fail("错误：输入不是合法的 UTF-8 文本", 2)
        return
    segments = rules.segments_from_text(text)
    report = rules.screen(
        segments, rules.load_default_ruleset(), jobs=jobs or (os.cpu_count() or 1)
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    elif summary:
        click.echo(
            f"{report.risk_level} {report.risk_score} findings={len(report.findings)}"
            f" suppressed={len(report.suppressed)}"
        )
    else:
        click.echo(rules.format_scan(report, segments))


@rules_group.command("eval")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary.")
def rules_eval(path: str, as_json: bool) -> None:
    """Measure flag rates per label and subset on a JSON-lines file of labelled texts."""
    import rules

    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                _fail(f"错误：第 {number} 行不是合法的 JSON", 2)
    result = rules.evaluate(records, rules.load_default_ruleset())
    if as_json:
        summary = {k: v for k, v in result.items() if k not in ("misses", "false_alarms")}
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"rules: {result['rules']}")
    for label, row in result["by_label"].items():
        click.echo(
            f"{label:<11} n={row['n']:<5} flagged={row['flagged']:<5} rate={row['rate']:.1%}"
        )
    click.echo("by subset:")
    for subset, labels in result["by_subset"].items():
        parts = ", ".join(
            f"{lb} {r['flagged']}/{r['n']} ({r['rate']:.0%})" for lb, r in labels.items()
        )
        click.echo(f"  {subset}: {parts}")
    click.echo(
        f"precision={result['precision']:.3f} recall={result['recall']:.3f} f1={result['f1']:.3f}"
    )
    for key, title in (("misses", "misses (pseudo not flagged)"), ("false_alarms", "false alarms")):
        rows = result.get(key) or []
        click.echo(f"\n{title}: {len(rows)}")
        for row in rows[:200]:
            click.echo(f"  - {json.dumps(row, ensure_ascii=False)[:300]}")


# --- outbox and housekeeping -------------------------------------------------------------------


@click.group("outbox")
def outbox_group() -> None:
    """The transactional outbox (normally relayed by the scheduler)."""


@outbox_group.command("relay")
@click.option("--loop", is_flag=True, help="Keep relaying every second until interrupted.")
@with_appcontext
def outbox_relay(loop: bool) -> None:
    """Publish pending outbox rows to the broker."""
    from workers.celery_app import celery  # noqa: F401  (configures the broker)
    from workers.tasks import relay_outbox

    while True:
        sent = relay_outbox()
        click.echo(f"sent {sent}")
        if not loop:
            return
        time.sleep(1)


@outbox_group.command("reconcile")
@with_appcontext
def outbox_reconcile() -> None:
    """Re-queue stuck screenings and offer flagged items that wait without a reviewer."""
    from workers.tasks import reconcile

    click.echo(json.dumps(reconcile()))


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

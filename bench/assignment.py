"""Benchmark of reviewer assignment (issue 4, Tests). Run: python bench/assignment.py [--pg]

Builds its own data in a temporary SQLite database (and, with --pg, a temporary PostgreSQL
database on postgresql://postgres@127.0.0.1:5432, dropped at the end), migrated with the app's
own migrations: 1,000 experts, 10,000 open assignments on 5,000 versions in review, and 5,000
flagged versions waiting. Fixtures are bulk-inserted with SQLAlchemy core. Then, per backend:

  1. ``expert_pool.operations.assign_reviewers`` for one flagged version (the whole DB path:
     loading the pool and loads, the request, selection, offers, audit, notifications),
     median of several rounds, each rolled back; plus its parts ``candidates()`` and
     ``_request()`` and the number of SQL statements it runs;
  2. the pure ``matching.select_reviewers`` alone on the same candidates and request
     (and once with an empty text, which shows what the per-candidate text scan costs);
  3. the backlog: every flagged version assigned one after another, one commit each, as the
     queue task would (total, per version, p50/p95, how many were escalated, DB growth).

It prints a table with the times and ratios. Nothing here is asserted as a timing test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("KEPU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

SENTENCES = [
    "研究人员对城市居民的饮食结构进行了为期三年的跟踪调查。",
    "结果显示，均衡膳食与规律运动对维持健康体重有明显帮助。",
    "专家提醒，任何保健品都不能替代药物治疗，出现症状应及时就医。",
    "气象部门表示，今年汛期降水偏多，各地需提前做好防汛准备。",
    "海洋观测数据显示，近海水温较常年同期偏高零点五摄氏度。",
    "新能源汽车的电池回收体系正在逐步完善，相关标准陆续出台。",
    "转基因作物上市前须经过严格的安全评价，这是国际通行做法。",
    "人工智能模型的训练需要大量数据，数据质量直接影响模型效果。",
    "据称喝某种水可以排毒养颜，还能根治高血压，这种说法没有科学依据。",
    "地质灾害隐患点的监测预警设备覆盖范围进一步扩大。",
]
COMPANIES = ["康源保健品公司", "绿洲水业", "量子能量科技", "神奇磁疗器械厂", "天然酵素集团"]


def _text(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        s = rng.choice(SENTENCES)
        if rng.random() < 0.02:
            s = f"{rng.choice(COMPANIES)}宣称其产品效果显著。"
        parts.append(s)
        size += len(s)
    return "".join(parts)[:chars]


# --- fixtures ----------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Bulk-insert units, users, experts, items, versions, reports and open assignments."""
    from sqlalchemy import insert, update

    from expert_pool.models import Assignment, AssignmentState, Expert
    from review.db import db, utcnow
    from review.lifecycle import ItemState
    from review.models import Item, ItemKind, Role, ScreeningReport, Unit, User, Version
    from rules import DOMAINS

    rng = random.Random(20261128)
    now = utcnow()
    n_experts, n_open, n_backlog = args.experts, args.open, args.backlog
    n_media, n_inst, n_editors = 100, 200, 100

    units = [{"id": i, "name": f"媒体单位{i}", "kind": "media"} for i in range(1, n_media + 1)] + [
        {"id": n_media + i, "name": f"研究机构{i}", "kind": "institution"}
        for i in range(1, n_inst + 1)
    ]
    users: list[dict[str, Any]] = []
    experts: list[dict[str, Any]] = []
    for i in range(1, n_experts + 1):
        in_media = rng.random() < 0.03  # an expert working for a media unit: conflict_unit
        unit_id = (
            rng.randint(1, n_media) if in_media else rng.randint(n_media + 1, n_media + n_inst)
        )
        users.append(
            {
                "id": i,
                "username": f"expert{i}",
                "display_name": f"专家{i}",
                "email": f"expert{i}@example.cn" if rng.random() < 0.5 else None,
                "role": Role.expert,
                "unit_id": unit_id,
                "password_hash": "!bench",
            }
        )
        primary = rng.sample(DOMAINS, rng.choice((1, 1, 2)))
        secondary = [d for d in rng.sample(DOMAINS, rng.choice((0, 1, 2))) if d not in primary]
        leave = rng.random() < 0.03
        experts.append(
            {
                "id": i,
                "user_id": i,
                "name": f"专家{i}",
                "title": rng.choice(["研究员", "教授", "主任医师", "高级工程师"]),
                "unit_id": unit_id,
                "domains": primary,
                "secondary_domains": secondary,
                "is_verified": rng.random() < 0.95,
                "verified_at": now,
                "is_senior": rng.random() < 0.15,
                "is_active": rng.random() < 0.98,
                "max_load": rng.randint(20, 40),
                "leave_from": now - timedelta(days=2) if leave else None,
                "leave_until": now + timedelta(days=5) if leave else None,
                "conflicts": {
                    "units": [f"媒体单位{rng.randint(1, n_media)}"] if rng.random() < 0.1 else [],
                    "companies": [rng.choice(COMPANIES)] if rng.random() < 0.05 else [],
                    "people": [f"编辑{rng.randint(1, n_editors)}"] if rng.random() < 0.05 else [],
                },
                "notify_mode": rng.choice(["immediate", "digest"]),
                "last_assigned_at": now - timedelta(minutes=rng.randint(1, 100_000)),
            }
        )
    editor_ids = list(range(n_experts + 1, n_experts + n_editors + 1))
    for k, uid in enumerate(editor_ids, 1):
        users.append(
            {
                "id": uid,
                "username": f"editor{k}",
                "display_name": f"编辑{k}",
                "email": None,
                "role": Role.editor,
                "unit_id": 1 + (k - 1) % n_media,
                "password_hash": "!bench",
            }
        )
    for k in (1, 2):
        users.append(
            {
                "id": n_experts + n_editors + k,
                "username": f"admin{k}",
                "display_name": f"管理员{k}",
                "email": None,
                "role": Role.admin,
                "unit_id": None,
                "password_hash": "!bench",
            }
        )

    in_review = n_open // 2
    items, versions, reports, assignments = [], [], [], []
    loads = [0] * (n_experts + 1)
    max_load = [0] + [e["max_load"] for e in experts]
    body_chars = args.body_chars
    for item_id in range(1, in_review + n_backlog + 1):
        editor = rng.choice(editor_ids)
        unit_id = users[editor - 1]["unit_id"]
        flagged = item_id > in_review
        title = f"稿件{item_id}：{rng.choice(SENTENCES)[:20]}"
        body = _text(rng, body_chars)
        items.append(
            {
                "id": item_id,
                "kind": ItemKind.article,
                "unit_id": unit_id,
                "created_by_id": editor,
                "title": title,
                "body": body,
                "state": ItemState.flagged if flagged else ItemState.in_review,
                "reviewers_needed": 0 if flagged else 2,
                "state_changed_at": now - timedelta(seconds=item_id),
            }
        )
        versions.append(
            {
                "id": item_id,
                "item_id": item_id,
                "number": 1,
                "title": title,
                "body": body,
                "content_sha256": Version.compute_sha256(title, body),
                "created_by_id": editor,
            }
        )
        risk = rng.choices(["medium", "high", "critical"], weights=[50, 35, 15])[0]
        reports.append(
            {
                "version_id": item_id,
                "ruleset_version": "bench",
                "risk_score": 0.7,
                "risk_level": risk if flagged else "high",
                "domains": rng.sample(DOMAINS, rng.choice((1, 1, 2))),
                "is_flagged": True,
            }
        )
        if not flagged:
            chosen: set[int] = set()
            while len(chosen) < 2:
                e = rng.randint(1, n_experts)
                if e not in chosen and loads[e] < max_load[e]:
                    chosen.add(e)
                    loads[e] += 1
            for e in sorted(chosen):
                accepted = rng.random() < 0.5
                assignments.append(
                    {
                        "item_id": item_id,
                        "version_id": item_id,
                        "expert_id": e,
                        "round": 1,
                        "kind": "review",
                        "risk_level": "high",
                        "state": AssignmentState.accepted if accepted else AssignmentState.offered,
                        "offered_at": now - timedelta(hours=1),
                        "accepted_at": now if accepted else None,
                        "due_at": now + timedelta(days=3),
                    }
                )

    def bulk(model: Any, rows: list[dict[str, Any]], chunk: int = 2000) -> None:
        for start in range(0, len(rows), chunk):
            db.session.execute(insert(model.__table__), rows[start : start + chunk])

    bulk(Unit, units)
    bulk(User, users)
    bulk(Expert, experts)
    bulk(Item, items, 500)
    bulk(Version, versions, 500)
    db.session.execute(update(Item.__table__).values(current_version_id=Item.__table__.c.id))
    bulk(ScreeningReport, reports)
    bulk(Assignment, assignments)
    db.session.commit()
    return {"backlog_ids": list(range(in_review + 1, in_review + n_backlog + 1))}


# --- measuring ---------------------------------------------------------------------------------


@contextmanager
def count_statements() -> Iterator[list[int]]:
    """Count SQL statements the engine executes inside the block."""
    from sqlalchemy import event

    from review.db import db

    box = [0]

    def _count(*_: Any) -> None:
        box[0] += 1

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield box
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)


def _median_ms(fn: Callable[[], Any], rounds: int, reset: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
        if reset:
            reset()
    return statistics.median(times)


def _db_bytes(url: str) -> int:
    from sqlalchemy import text

    from review.db import db

    if url.startswith("sqlite"):  # pages in use, WAL included
        pages = db.session.scalar(text("PRAGMA page_count")) or 0
        return int(pages) * int(db.session.scalar(text("PRAGMA page_size")) or 0)
    return int(db.session.scalar(text("SELECT pg_database_size(current_database())")) or 0)


def measure(url: str, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Build the data on ``url`` and return the result rows for the table."""
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from expert_pool.matching import RISK_REVIEWERS, select_reviewers
    from expert_pool.models import OPEN_STATES, Assignment, Selection
    from expert_pool.operations import Deadlines, _report, _request, assign_reviewers
    from expert_pool.pool import candidates, expert_loads
    from review import create_app
    from review.audit import AuditEvent
    from review.db import db
    from review.models import Item

    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="kepu-bench-") as folder:
        os.environ["KEPU_DATABASE_URL"] = url
        os.environ["KEPU_INSTANCE_PATH"] = folder
        app = create_app({"TESTING": True})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            start = time.perf_counter()
            built = build(args)
            open_count = db.session.scalar(select(func.count()).select_from(Assignment))
            print(
                f"[{backend}] fixtures: {args.experts} experts, {open_count} open assignments, "
                f"{args.backlog} flagged versions in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
            deadlines = Deadlines(accept_within=2 * 86400, decide_within=5 * 86400)
            item_id = built["backlog_ids"][0]

            # 1. The whole DB path for one version, rolled back each round.
            def one() -> Any:
                item = db.session.get(Item, item_id)
                return assign_reviewers(item, deadlines=deadlines)

            one()  # warm caches (compiled statements, imports)
            db.session.rollback()
            with count_statements() as statements:
                offered = one()
            db.session.rollback()
            assign_ms = _median_ms(one, args.rounds, db.session.rollback)
            pool_ms = _median_ms(candidates, args.rounds, db.session.rollback)
            loads_ms = _median_ms(expert_loads, args.rounds, db.session.rollback)

            item = db.session.get(Item, item_id)
            version = item.current_version
            report = _report(version)
            risk = report.risk_level if report else "medium"
            request_ms = _median_ms(
                lambda: _request(item, version, risk, excluded=set()), args.rounds
            )

            # 2. Pure matching on the same candidates and request.
            pool = candidates()
            request = _request(item, version, risk, excluded=set())
            needed = RISK_REVIEWERS.get(risk, 1)
            pure_rounds = max(args.rounds * 5, 25)
            pure_ms = _median_ms(
                lambda: select_reviewers(pool, request, needed=needed), pure_rounds
            )
            from dataclasses import replace

            no_text = replace(request, text="")
            pure_no_text_ms = _median_ms(
                lambda: select_reviewers(pool, no_text, needed=needed), pure_rounds
            )
            db.session.rollback()

            rows += [
                (
                    "1. assign_reviewers, one version (DB path)",
                    f"{assign_ms:9.2f} ms",
                    f"{statements[0]} SQL, {len(offered)} offered, risk {risk}",
                    f"{assign_ms / pure_ms:6.1f}x pure",
                ),
                ("   of which candidates() (pool + loads)", f"{pool_ms:9.2f} ms", "", ""),
                ("   of which expert_loads() alone", f"{loads_ms:9.2f} ms", "", ""),
                ("   of which _request()", f"{request_ms:9.2f} ms", "", ""),
                (
                    "2. matching.select_reviewers (pure)",
                    f"{pure_ms:9.3f} ms",
                    f"{len(pool)} candidates, {len(request.text)} chars",
                    "1.0x",
                ),
                (
                    "   pure, same request with text=''",
                    f"{pure_no_text_ms:9.3f} ms",
                    "shows the per-candidate casefold",
                    f"{pure_no_text_ms / pure_ms:6.2f}x",
                ),
            ]

            # 3. The backlog, one version after another, one commit each.
            size_before = _db_bytes(url)
            events_before = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
            per_version: list[float] = []
            escalated = 0
            total_start = time.perf_counter()
            for i, backlog_id in enumerate(built["backlog_ids"], 1):
                start = time.perf_counter()
                item = db.session.get(Item, backlog_id)
                assign_reviewers(item, deadlines=deadlines)
                escalated += bool(item.needs_admin)
                db.session.commit()
                per_version.append((time.perf_counter() - start) * 1000)
                if args.progress and i % 500 == 0:
                    print(f"  [{backend}] backlog {i}/{len(built['backlog_ids'])}", flush=True)
            total_s = time.perf_counter() - total_start
            open_after = db.session.scalar(
                select(func.count())
                .select_from(Assignment)
                .where(Assignment.state.in_(OPEN_STATES))
            )
            events_after = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
            selections = db.session.scalar(select(func.count()).select_from(Selection)) or 0
            size_after = _db_bytes(url)
            qs = statistics.quantiles(per_version, n=20)
            growth = (size_after - size_before) / max(len(per_version), 1) / 1024
            rows += [
                (
                    f"3. backlog of {len(per_version)} versions, total",
                    f"{total_s:9.1f} s ",
                    f"{escalated} escalated, {open_after} open after",
                    "",
                ),
                (
                    "   per version: mean / p50 / p95",
                    f"{statistics.mean(per_version):9.2f} ms",
                    f"p50 {qs[9]:.2f} ms, p95 {qs[18]:.2f} ms, max {max(per_version):.1f} ms",
                    f"{statistics.mean(per_version) / pure_ms:6.1f}x pure",
                ),
                (
                    "   first 500 vs last 500 (mean)",
                    f"{statistics.mean(per_version[:500]):9.2f} ms",
                    f"last 500: {statistics.mean(per_version[-500:]):.2f} ms",
                    "",
                ),
                (
                    "   database growth per version",
                    f"{growth:9.1f} KiB",
                    f"{events_after - events_before} audit events, {selections} selections",
                    "",
                ),
            ]
            db.session.remove()
            db.engine.dispose()
    return rows


def _pg_database() -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"kepu_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", drop


def main() -> None:
    """Parse options, run each backend, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", action="store_true", help="Also run on a temporary PostgreSQL DB.")
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite run.")
    parser.add_argument("--experts", type=int, default=1000)
    parser.add_argument("--open", type=int, default=10_000, help="Open assignments.")
    parser.add_argument("--backlog", type=int, default=5000, help="Flagged versions to assign.")
    parser.add_argument("--rounds", type=int, default=7, help="Rounds for the medians.")
    parser.add_argument("--body-chars", type=int, default=3000, help="Characters per version.")
    parser.add_argument("--progress", action="store_true", help="Print backlog progress.")
    args = parser.parse_args()

    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    results: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="kepu-bench-db-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.sqlite'}"
            results.append(("sqlite", measure(url, args)))
    if args.pg:
        url, drop = _pg_database()
        try:
            results.append(("postgresql", measure(url, args)))
        finally:
            drop()

    print()
    print(
        f"Reviewer assignment: {args.experts} experts, {args.open} open assignments, "
        f"backlog {args.backlog}, bodies {args.body_chars} chars, medians of {args.rounds} rounds"
    )
    for backend, rows in results:
        print()
        print(f"== {backend} ==")
        print(f"{'measure':<46} {'time':>13}  {'ratio':>12}  notes")
        for label, value, note, ratio in rows:
            print(f"{label:<46} {value:>13}  {ratio:>12}  {note}")


if __name__ == "__main__":
    main()

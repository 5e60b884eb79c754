"""Readiness (``/readyz``) and Prometheus metrics (``/metrics``) for operators.

Every figure is computed at scrape time from the database and the broker, never kept in a
process's memory: any number of gunicorn workers and Celery workers on any number of machines
give the same answer, whichever process is scraped.

``/metrics`` answers only to a client inside ``KEPU_METRICS_ALLOW`` (networks, default loopback)
or one that sends ``Authorization: Bearer <KEPU_METRICS_TOKEN>``; anyone else gets 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, select

from expert_pool.models import OPEN_STATES, Assignment, AssignmentState
from review.db import db, utcnow
from review.lifecycle import ItemState
from review.models import Item, JobState, MediaJob, OutboxMessage, ScreeningReport, Version

log = logging.getLogger(__name__)

bp = Blueprint("monitoring", __name__)

QUEUES = ("screening", "media", "control", "notifications")
#: kombu's Redis transport keeps a priority's messages in "<queue>\x06\x16<step>".
REDIS_PRIORITY_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
#: Submit → screened, in seconds.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


# --- the broker ---------------------------------------------------------------------------------


def broker_kind(url: str) -> str:
    """``redis`` or ``sqlite`` (the embedded broker) or ``other``."""
    if url.startswith(("redis://", "rediss://")):
        return "redis"
    if url.startswith("sqla+sqlite:"):
        return "sqlite"
    return "other"


def _sqlite_broker_path(url: str) -> str:
    return unquote(url.split("sqla+sqlite:///", 1)[1])


def _redis(url: str, timeout: float) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _sqlite_broker(url: str, timeout: float) -> sqlite3.Connection:
    """Open the embedded broker's file read-only; a missing file is an error, never created."""
    path = _sqlite_broker_path(url)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


def check_broker(url: str, timeout: float) -> None:
    """Raise when the broker does not answer within ``timeout`` seconds."""
    kind = broker_kind(url)
    if kind == "redis":
        client = _redis(url, timeout)
        try:
            client.ping()
        finally:
            client.close()
    elif kind == "sqlite":
        conn = _sqlite_broker(url, timeout)
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
    else:
        raise RuntimeError(f"unsupported broker {urlsplit(url).scheme}")


def queue_depths(url: str, timeout: float) -> dict[str, int]:
    """Messages waiting in each Celery queue (not counting ones a worker holds unacked)."""
    kind = broker_kind(url)
    if kind == "redis":
        client = _redis(url, timeout)
        try:
            pipe = client.pipeline()
            for queue in QUEUES:
                for step in REDIS_PRIORITY_STEPS:
                    pipe.llen(f"{queue}{REDIS_PRIORITY_SEP}{step}" if step else queue)
            sizes = pipe.execute()
        finally:
            client.close()
        n = len(REDIS_PRIORITY_STEPS)
        return {q: int(sum(sizes[i * n : (i + 1) * n])) for i, q in enumerate(QUEUES)}
    if kind == "sqlite":
        conn = _sqlite_broker(url, timeout)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not {"kombu_queue", "kombu_message"} <= tables:
                return dict.fromkeys(QUEUES, 0)  # no worker has declared a queue yet
            rows = conn.execute(
                "SELECT q.name, COUNT(m.id) FROM kombu_queue q LEFT JOIN kombu_message m "
                "ON m.queue_id = q.id AND m.visible = 1 GROUP BY q.name"
            ).fetchall()
        finally:
            conn.close()
        found = {str(name): int(count) for name, count in rows}
        return {q: found.get(q, 0) for q in QUEUES}
    raise RuntimeError("queue depth is not available for this broker")


def redis_unacked(url: str, timeout: float) -> int:
    """Messages delivered to a worker and not yet acknowledged (kombu's ``unacked`` hash)."""
    client = _redis(url, timeout)
    try:
        return int(client.hlen("unacked"))
    finally:
        client.close()


# --- the database -------------------------------------------------------------------------------


def check_database(timeout: float) -> None:
    """Raise when the database does not answer ``SELECT 1`` within ``timeout`` seconds.

    A raw pooled connection, so SQLite takes no write lock (the engine begins its transactions
    with BEGIN IMMEDIATE) and a busy writer cannot hold the check for the 30 s lock timeout.
    """
    conn = db.engine.raw_connection()
    try:
        cursor = conn.cursor()
        if db.engine.dialect.name == "postgresql":
            cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
        cursor.execute("SELECT 1")
        cursor.fetchone()
        cursor.close()
        conn.rollback()
    finally:
        conn.close()


def _seconds_between(later: Any, earlier: Any) -> Any:
    """``later - earlier`` in seconds, in the database's own dialect."""
    if db.engine.dialect.name == "postgresql":
        return func.date_part("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * literal(86400.0)


class KepuCollector(Collector):
    """Reads the figures from the database and the broker at every scrape."""

    def __init__(self, broker_url: str, timeout: float) -> None:
        self.broker_url = broker_url
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        """All families; a part that fails is reported as down, not as an error page."""
        yield from self._broker()
        try:
            yield from self._database()
        finally:
            db.session.rollback()

    def _broker(self) -> Iterator[Metric]:
        kind = broker_kind(self.broker_url)
        up = GaugeMetricFamily(
            "kepu_broker_up", "1 when the Celery broker answers", labels=["kind"]
        )
        try:
            check_broker(self.broker_url, self.timeout)
            ok = True
        except Exception as exc:
            log.warning("metrics: broker unavailable: %s", exc)
            ok = False
        up.add_metric([kind], 1.0 if ok else 0.0)
        yield up
        if not ok:
            return
        depth = GaugeMetricFamily(
            "kepu_queue_depth", "Messages waiting in a Celery queue", labels=["queue"]
        )
        try:
            for queue, size in queue_depths(self.broker_url, self.timeout).items():
                depth.add_metric([queue], float(size))
            yield depth
            if kind == "redis":
                yield GaugeMetricFamily(
                    "kepu_broker_unacked",
                    "Messages held by workers, not yet acknowledged",
                    value=float(redis_unacked(self.broker_url, self.timeout)),
                )
        except Exception as exc:
            log.warning("metrics: queue depth unavailable: %s", exc)

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kepu_database_up", "1 when the database answers")
        try:
            check_database(self.timeout)
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        now = utcnow()
        session = db.session

        unsent, oldest = session.execute(
            select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.sent_at.is_(None)
            )
        ).one()
        yield GaugeMetricFamily(
            "kepu_outbox_unsent", "Outbox rows not yet published to the broker", value=unsent
        )
        yield GaugeMetricFamily(
            "kepu_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none)",
            value=_age(now, oldest),
        )
        failing = session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.last_error.is_not(None)
            )
        )
        yield GaugeMetricFamily(
            "kepu_outbox_failing",
            "Unpublished outbox rows whose last publish attempt failed",
            value=failing or 0,
        )

        items = GaugeMetricFamily("kepu_items", "Items by workflow state", labels=["state"])
        for state, count in session.execute(
            select(Item.state, func.count(Item.id)).group_by(Item.state)
        ):
            items.add_metric([str(getattr(state, "value", state))], count)
        yield items

        assignments = GaugeMetricFamily(
            "kepu_assignments_open", "Open expert assignments by state", labels=["state"]
        )
        counts = dict(
            session.execute(
                select(Assignment.state, func.count(Assignment.id))
                .where(Assignment.state.in_(OPEN_STATES))
                .group_by(Assignment.state)
            ).all()
        )
        for state in OPEN_STATES:
            assignments.add_metric([state.value], counts.get(state, 0))
        yield assignments
        overdue = GaugeMetricFamily(
            "kepu_assignments_overdue",
            "Open assignments past their deadline (offer not accepted / review not decided)",
            labels=["state"],
        )
        late = dict(
            session.execute(
                select(Assignment.state, func.count(Assignment.id))
                .where(Assignment.state.in_(OPEN_STATES), Assignment.due_at < now)
                .group_by(Assignment.state)
            ).all()
        )
        for state in OPEN_STATES:
            overdue.add_metric([state.value], late.get(state, 0))
        yield overdue
        waiting = session.scalar(
            select(func.count(Item.id)).where(
                Item.state == ItemState.flagged,
                ~select(Assignment.id)
                .where(Assignment.item_id == Item.id, Assignment.state.in_(OPEN_STATES))
                .exists(),
            )
        )
        yield GaugeMetricFamily(
            "kepu_items_waiting_for_expert",
            "Flagged items with no open assignment (no eligible expert yet)",
            value=waiting or 0,
        )

        yield from self._failures()
        yield self._latency()

    def _failures(self) -> Iterator[Metric]:
        session = db.session
        screening = CounterMetricFamily(
            "kepu_task_failures",
            "Failures the database records (screening given up, media steps failed)",
            labels=["kind"],
        )
        screening.add_metric(
            ["screening"],
            session.scalar(
                select(func.count(ScreeningReport.id)).where(ScreeningReport.is_failed.is_(True))
            )
            or 0,
        )
        screening.add_metric(
            ["media"],
            session.scalar(select(func.count(MediaJob.id)).where(MediaJob.state == JobState.failed))
            or 0,
        )
        yield screening
        yield GaugeMetricFamily(
            "kepu_outbox_max_attempts",
            "Most publish attempts of any unpublished outbox row (a stuck row keeps growing)",
            value=session.scalar(
                select(func.coalesce(func.max(OutboxMessage.attempts), 0)).where(
                    OutboxMessage.sent_at.is_(None)
                )
            )
            or 0,
        )
        yield GaugeMetricFamily(
            "kepu_assignments_expired",
            "Assignments that ran out of time (each was reassigned)",
            value=session.scalar(
                select(func.count(Assignment.id)).where(Assignment.state == AssignmentState.expired)
            )
            or 0,
        )

    def _latency(self) -> Metric:
        """Histogram of submit (version frozen) → first screening report, from timestamps."""
        seconds = _seconds_between(ScreeningReport.created_at, Version.created_at)
        columns = [
            func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0)
            for bound in LATENCY_BUCKETS
        ]
        row = db.session.execute(
            select(func.count(ScreeningReport.id), func.coalesce(func.sum(seconds), 0), *columns)
            .join(Version, Version.id == ScreeningReport.version_id)
            .where(ScreeningReport.is_failed.is_(False))
        ).one()
        count, total, *cumulative = row
        buckets = [(str(b), float(c)) for b, c in zip(LATENCY_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", float(count)))
        family = HistogramMetricFamily(
            "kepu_screening_latency_seconds",
            "Seconds from submit (version frozen) to its screening report",
        )
        family.add_metric([], buckets, sum_value=float(total or 0))
        return family


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max((now - then).total_seconds(), 0.0)


# --- endpoints ----------------------------------------------------------------------------------


def _metrics_allowed() -> bool:
    """A bearer token equal to KEPU_METRICS_TOKEN, or a client address in KEPU_METRICS_ALLOW."""
    token = current_app.config.get("METRICS_TOKEN")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), str(token).encode())
    try:
        client = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    for net in str(current_app.config.get("METRICS_ALLOW") or "").split(","):
        net = net.strip()
        if not net:
            continue
        try:
            if client in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            log.warning("KEPU_METRICS_ALLOW: not a network: %r", net)
    return False


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus text exposition of the queue, outbox, review and failure figures."""
    if not _metrics_allowed():
        abort(404)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        KepuCollector(
            str(current_app.config["BROKER_URL"]), float(current_app.config["HEALTH_TIMEOUT"])
        )
    )
    return Response(
        generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8"
    )


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness: the database and the broker each answer within KEPU_HEALTH_TIMEOUT, else 503."""
    timeout = float(current_app.config["HEALTH_TIMEOUT"])
    checks: dict[str, dict[str, Any]] = {}
    for name, check in (
        ("database", lambda: check_database(timeout)),
        ("broker", lambda: check_broker(str(current_app.config["BROKER_URL"]), timeout)),
    ):
        started = time.perf_counter()
        try:
            check()
            checks[name] = {"ok": True}
        except Exception as exc:
            log.warning("readiness: %s unavailable: %s", name, exc)
            checks[name] = {"ok": False, "error": type(exc).__name__}
        checks[name]["seconds"] = round(time.perf_counter() - started, 3)
    failed = [name for name, result in checks.items() if not result["ok"]]
    body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}
    return jsonify(body), 503 if failed else 200

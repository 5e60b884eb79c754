"""RELIABILITY.md scenarios 5, 6, 7 (live run), 8, 9 and 12: workers and the relay fail.

Workers are real ``celery worker`` processes (prefork) on a private redis-server with the
fault-test Celery settings (visibility timeout 10 s, restore sweep every second). The
screening task obeys ``[fault:...]`` title markers because the tests switch on the test-only
``screening`` fault point (workers/faults.py).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sqlalchemy import select

from review.models import Item, OutboxMessage, ScreeningReport
from tests.conftest import wait_until
from tests.faults.conftest import (
    assert_no_loss,
    attempts,
    audit_actions,
    count,
    states,
    submit,
    wait_screened,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


def started(worker: Any, item_count: int = 1) -> None:
    """Wait until the screening fault hook ran ``item_count`` times (a task is in progress)."""
    worker.wait_log(r"fault injection: slow", timeout=30, count=item_count)


def test_pool_child_killed_mid_screening(
    fault_app: Any, editor: dict[str, str], worker: Any, relay: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 5: SIGKILL of the pool child; the message is redelivered and screened once.

    Text screening writes no temporary files, so "no partial artefacts" is the database only:
    one report, the attempt counter at 2.
    """
    item_id = submit(fault_app, editor, "接种提示 [fault:slow=4]")
    started(worker)
    time.sleep(1)
    killed_at = time.monotonic()
    worker.kill_child()
    wait_screened([item_id], timeout=4 + 10)
    assert time.monotonic() - killed_at < 4 + 10
    assert attempts(item_id) == 2
    log = worker.log_text()
    assert "WorkerLostError" in log
    assert "redelivered message" in log  # delivery_info['redelivered'] of the second delivery
    assert worker.proc.poll() is None  # the main process respawned its child
    assert_no_loss([item_id], fault_env)
    assert relay.proc.poll() is None


def test_whole_worker_killed_second_worker_takes_over(
    fault_app: Any,
    editor: dict[str, str],
    redis_srv: Any,
    procs: Any,
    fault_env: dict[str, str],
) -> None:
    """Scenario 6: W1 SIGKILLed with work in flight; W2 finishes everything within VT + bounds."""
    w1 = procs.worker()
    procs.relay()
    ids = [submit(fault_app, editor, f"接种提示（{n}） [fault:slow=2]") for n in range(5)]
    started(w1)
    assert redis_srv.hlen("unacked") == 1  # prefetch 1: one message in flight on W1
    w1.kill_all()
    killed_at = time.monotonic()
    procs.worker()  # W2
    # VT (10 s) + 2 x restore interval (1 s) + task time (5 x 2 s) + 5 s; asserted <= 25 s.
    wait_screened(ids, timeout=25)
    assert time.monotonic() - killed_at <= 25
    wait_until(lambda: redis_srv.hlen("unacked") == 0, timeout=5)
    assert_no_loss(ids, fault_env)


def test_visibility_timeout_below_runtime_duplicates_are_absorbed(
    fault_app: Any, editor: dict[str, str], procs: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 7, live run: a deliberately bad VT (3 s) for a 5 s task; one result stands.

    celery_config refuses such a configuration unless test-only fault injection is on.
    """
    worker = procs.worker(concurrency=2, KEPU_VISIBILITY_TIMEOUT="3")
    procs.relay()
    item_id = submit(fault_app, editor, "接种提示 [fault:slow=5]")
    started(worker, item_count=2)  # the message was restored and ran again while still running
    wait_screened([item_id], timeout=30)
    time.sleep(4)  # a late duplicate (restored once more) has time to arrive and end as done
    executions = len(re.findall(r"fault injection: slow", worker.log_text()))
    assert executions >= 2
    assert count(ScreeningReport) == 1
    assert_no_loss([item_id], fault_env)


def test_poison_message_goes_to_experts_after_three_attempts(
    fault_app: Any, editor: dict[str, str], procs: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 8: every attempt kills the pool child; after 3 the item is 'screening failed'."""
    from review.db import db

    worker = procs.worker()
    procs.relay()
    poison = submit(fault_app, editor, "接种提示 [fault:crash]")
    normal = [submit(fault_app, editor, f"接种提示（{n}）") for n in range(3)]
    wait_screened([poison, *normal], timeout=60)
    assert set(states(normal).values()) == {"cleared"}
    db.session.rollback()
    item = db.session.get(Item, poison)
    assert (
        item is not None
        and item.screening_failed
        and item.state.value
        in {
            "flagged",
            "in_review",
        }
    )
    assert item.screening_attempts == 4  # three crashes, the fourth delivery gives up
    report = db.session.scalar(
        select(ScreeningReport).where(ScreeningReport.version_id == item.current_version_id)
    )
    assert report is not None and report.is_failed
    assert "item.flag" in audit_actions(poison)
    log = worker.log_text()
    deaths = log.count("exited with 'exitcode 1'")
    assert deaths == log.count("Task handler raised error: WorkerLostError") == 3
    assert re.search(r"ERROR.*gave up after 3 attempts", log)  # the operators' alert
    assert_no_loss([poison, *normal], fault_env)


def test_transient_errors_retry_permanent_errors_fail_at_once(
    fault_app: Any, editor: dict[str, str], procs: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 9: ConnectionError twice then success; ValueError fails without a retry."""
    from review.db import db

    worker = procs.worker()
    procs.relay()
    started_at = time.monotonic()
    transient = submit(fault_app, editor, "接种提示 [fault:transient=2]")
    corrupt = submit(fault_app, editor, "接种提示 [fault:corrupt]")
    wait_screened([transient, corrupt], timeout=40)
    assert time.monotonic() - started_at < 40

    db.session.rollback()
    ok = db.session.get(Item, transient)
    assert ok is not None and ok.state.value == "cleared" and not ok.screening_failed
    assert ok.screening_attempts == 3
    log = worker.log_text()
    assert "retry 1 in 2 s" in log and "retry 2 in 4 s" in log

    bad = db.session.get(Item, corrupt)
    assert bad is not None and bad.screening_failed and bad.screening_attempts == 1
    assert db.session.scalar(
        select(ScreeningReport.is_failed).where(
            ScreeningReport.version_id == bad.current_version_id
        )
    )
    assert "failed permanently" in log and re.search(r"raised unexpected: ValueError", log)
    flag = [a for a in audit_actions(corrupt) if a == "item.flag"]
    assert flag, audit_actions(corrupt)
    assert_no_loss([transient, corrupt], fault_env)


def test_graceful_shutdown_of_worker_and_relay(
    fault_app: Any,
    editor: dict[str, str],
    redis_srv: Any,
    procs: Any,
    fault_env: dict[str, str],
) -> None:
    """Scenario 12: SIGTERM to a busy worker (soft shutdown) and to the relay mid-batch."""
    from review.db import db
    from review.models import utcnow

    # The relay first: a slow batch of 20 rows, SIGTERM after a few were sent.
    ids = [submit(fault_app, editor, f"接种提示（{n}）") for n in range(20)]
    relay = procs.relay(KEPU_FAULT_INJECTION="relay_slow")
    wait_until(lambda: count(OutboxMessage, OutboxMessage.sent_at.is_not(None)) >= 3, 20)
    relay.term()
    assert relay.proc.wait(timeout=10) == 0
    assert "relay stopped (SIGTERM)" in relay.log_text()
    db.session.rollback()
    leased = db.session.scalars(
        select(OutboxMessage.id).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.available_at > utcnow()
        )
    ).all()
    assert leased == []  # the current row was finished; nothing stays claimed
    sent = count(OutboxMessage, OutboxMessage.sent_at.is_not(None))
    assert 3 <= sent < 20
    assert redis_srv.llen("screening") == sent  # every sent row was published exactly once

    # Now the worker: SIGTERM while a long task runs (Celery's soft shutdown, remapped to
    # SIGQUIT as Celery recommends for Redis; see README).
    slow = submit(fault_app, editor, "接种提示 [fault:stall=5]")  # 5 s in attempt 1 only
    procs.relay()
    w1 = procs.worker(REMAP_SIGTERM="SIGQUIT", KEPU_WORKER_SOFT_SHUTDOWN_TIMEOUT="2")
    wait_until(lambda: states([slow])[slow] == "screening", timeout=60)
    w1.wait_log(r"fault injection: stall", timeout=30)
    w1.term()
    assert w1.proc.wait(timeout=20) is not None
    assert "Soft Shutdown" in w1.log_text()
    # The unacked message went back to the queue at once, not after the visibility timeout.
    assert redis_srv.hlen("unacked") == 0
    assert attempts(slow) == 1 and states([slow])[slow] == "screening"
    w2 = procs.worker()
    ready_at = time.monotonic()
    wait_screened([slow], timeout=10 + 5)
    assert time.monotonic() - ready_at < 10 + 5
    assert attempts(slow) == 2
    wait_screened(ids, timeout=30)
    assert_no_loss([*ids, slow], fault_env)
    assert w2.proc.poll() is None

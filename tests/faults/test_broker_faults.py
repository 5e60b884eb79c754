"""RELIABILITY.md scenarios 1, 2, 4, 10, 11: the broker is down, hung or loses its data.

The database is the source of truth: a web request writes an outbox row in its own
transaction and never talks to Redis; the relay publishes; the reconciler re-queues what the
broker lost; every task is idempotent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from review.models import OutboxMessage, ScreeningReport
from tests.conftest import wait_until
from tests.faults.conftest import (
    assert_no_loss,
    audit_actions,
    count,
    elapsed,
    states,
    submit,
    wait_screened,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

#: "answers within N s" where N is far above normal (a submit takes ~50 ms); a request that
#: touched a hung broker would block for 10 s or more.
REQUEST_BOUND = 3.0


def test_submit_while_redis_is_down(
    fault_app: Any, editor: dict[str, str], redis_srv: Any, procs: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 1: connection refused; submits succeed; all are screened once Redis is back."""
    redis_srv.stop()
    ids = []
    for n in range(20):
        took, item_id = elapsed(lambda n=n: submit(fault_app, editor, f"流感疫苗接种提示（{n}）"))
        assert took < REQUEST_BOUND, took
        ids.append(item_id)
    assert count(OutboxMessage, OutboxMessage.sent_at.is_(None)) == 20
    assert set(states(ids).values()) == {"submitted"}

    relay = procs.relay()  # starts while the broker is still down: it must keep trying
    wait_until(lambda: "broker unavailable" in relay.log_text(), timeout=20)
    assert count(OutboxMessage, OutboxMessage.sent_at.is_(None)) == 20
    redis_srv.restart()
    procs.worker()
    wait_screened(ids, timeout=60)
    assert count(ScreeningReport) == 20
    for item_id in ids:
        assert audit_actions(item_id).count("item.submit") == 1
    assert_no_loss(ids, fault_env)
    assert relay.proc.poll() is None  # the relay kept running through the outage


def test_submit_while_redis_is_hung(
    fault_app: Any, editor: dict[str, str], redis_srv: Any, procs: Any, fault_env: dict[str, str]
) -> None:
    """Scenario 2: SIGSTOP; requests never wait on Redis; the relay fails fast and recovers."""
    worker = procs.worker()
    relay = procs.relay()
    warm = submit(fault_app, editor, "接种提示（预热）")
    wait_screened([warm], timeout=30)

    redis_srv.freeze()
    frozen_at = time.monotonic()
    ids, latencies = [], []
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:  # the relay's resources while it fights the hung broker
        while not stop.wait(0.5):
            samples.append((relay.ps.memory_info().rss, relay.ps.num_threads()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for n in range(10):
            took, item_id = elapsed(lambda n=n: submit(fault_app, editor, f"接种提示（{n}）"))
            latencies.append(took)
            ids.append(item_id)
            time.sleep(0.5)
        assert max(latencies) < REQUEST_BOUND, latencies
        # The relay tries, fails within its socket timeouts and logs a warning per try.
        wait_until(lambda: "broker unavailable" in relay.log_text(), timeout=25)
        wait_until(lambda: time.monotonic() - frozen_at > 30, timeout=35, interval=1)
    finally:
        redis_srv.thaw()
        stop.set()
        watcher.join()
    assert set(states(ids).values()) <= {"submitted"}  # nothing screened while hung
    wait_screened(ids, timeout=60)
    assert_no_loss([warm, *ids], fault_env)

    log = relay.log_text()
    tries = log.count("broker unavailable")
    # About one try per socket timeout cycle, not a busy loop: bounded both ways.
    assert 1 <= tries <= 15, log
    assert "ERROR" not in log and "Traceback" not in log, log
    rss = [s[0] for s in samples]
    threads = [s[1] for s in samples]
    assert max(threads) <= 8, threads  # no pile of blocked publisher threads
    assert max(rss) < min(rss) + 50 * 1024 * 1024, rss
    assert worker.proc.poll() is None

"""Load benchmark (issue 8): N editors submit while M experts accept and decide, for a fixed time.

Run: python bench/load.py [--editors 4] [--experts 4] [--duration 60]

Same set-up as bench/pipeline.py (bench/stack.py). Editors submit articles at a steady pace;
experts poll their assignments, accept offers and sign decisions (approve, or request changes
for every fifth). After the time is up the clients stop, the workers get a bounded grace
period, and the run is checked:
  * every submission has exactly one screening report;
  * every item ends in an expected state (never stuck in submitted/screening);
  * `kepu audit verify` passes.
It prints throughput and p50/p95/p99 per operation, and exits 1 when a check fails.
No figure is asserted.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import PASSWORD, Http, Stack, article, summary  # noqa: E402

#: Where an item may rest once screening is done (nothing waits in submitted/screening).
EXPECTED = {"cleared", "flagged", "in_review", "approved", "changes_requested", "rejected"}


class Recorder:
    """Latencies and error counts per operation, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def call(self, http: Http, op: str, method: str, path: str, body: object = None) -> tuple:
        started = time.perf_counter()
        status, data = http.call(method, path, body)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[op].append(elapsed)
            if status >= 400:
                self.errors[op][status] += 1
        return status, data


def editor_loop(
    rec: Recorder, http: Http, first: int, step: int, pace: float, stop: threading.Event
) -> list[int]:
    """Submit one article every ``pace`` seconds until ``stop``; return the item ids."""
    ids, n = [], first
    while not stop.is_set():
        title, body = article(n)
        status, data = rec.call(
            http, "submit", "POST", "/api/v1/items", {"title": title, "body": body, "submit": True}
        )
        if status == 201:
            ids.append(int(data["id"]))
        n += step
        stop.wait(pace)
    return ids


def expert_loop(rec: Recorder, http: Http, stop: threading.Event, counter: list[int]) -> None:
    """Poll the assignments; accept offers; decide accepted ones."""
    while not stop.is_set():
        status, mine = rec.call(http, "list_assignments", "GET", "/api/v1/assignments")
        if status != 200:
            stop.wait(0.5)
            continue
        acted = False
        for a in mine:
            if stop.is_set():
                return
            if a["state"] == "offered":
                rec.call(http, "accept", "POST", f"/api/v1/assignments/{a['id']}/accept")
                acted = True
            elif a["state"] == "accepted":
                counter[0] += 1
                changes = counter[0] % 5 == 0
                body = {
                    "decision": "request_changes" if changes else "approve",
                    "comment": "请补充权威来源" if changes else "已核实",
                    "password": PASSWORD,
                }
                rec.call(http, "decide", "POST", f"/api/v1/assignments/{a['id']}/decision", body)
                acted = True
        if not acted:
            stop.wait(0.5)


def check(stack: Stack, ids: list[int], grace: float) -> list[str]:
    """The invariants after the run; returns the problems found (empty = all good)."""
    problems: list[str] = []
    deadline = time.monotonic() + grace
    while True:
        pending = stack.sql(
            "SELECT count(*) FROM items WHERE id = ANY(%s) AND state IN ('submitted','screening')",
            (ids,),
        )[0][0]
        if pending == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    reports = dict(
        stack.sql(
            "SELECT v.item_id, count(r.id) FROM versions v "
            "LEFT JOIN screening_reports r ON r.version_id = v.id "
            "WHERE v.item_id = ANY(%s) AND v.number = 1 GROUP BY v.item_id",
            (ids,),
        )
    )
    wrong = {i: reports.get(i, 0) for i in ids if reports.get(i, 0) != 1}
    if wrong:
        problems.append(f"{len(wrong)} submissions without exactly one report: {wrong}")
    states = dict(stack.sql("SELECT id, state FROM items WHERE id = ANY(%s)", (ids,)))
    unexpected = {i: s for i, s in states.items() if s not in EXPECTED}
    if unexpected:
        problems.append(f"{len(unexpected)} items in unexpected states: {unexpected}")
    if len(states) != len(ids):
        problems.append(f"{len(ids) - len(states)} accepted submissions have no item row")
    code, output = stack.audit_verify()
    if code != 0:
        problems.append(f"kepu audit verify failed ({code}): {output[-500:]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the load, print the figures and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editors", type=int, default=4)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="seconds between one editor's submits"
    )
    parser.add_argument("--grace", type=float, default=90.0, help="seconds to let screening finish")
    parser.add_argument("--redis-port", type=int, default=6398)
    parser.add_argument("--web-port", type=int, default=5108)
    args = parser.parse_args(argv)

    with Stack(redis_port=args.redis_port, web_port=args.web_port) as stack:
        editor_tokens, expert_tokens = stack.create_accounts(args.editors, max(args.experts, 2))
        expert_tokens = expert_tokens[: args.experts]
        rec = Recorder()
        stop = threading.Event()
        results: list[list[int]] = [[] for _ in editor_tokens]
        counter = [0]
        threads = [
            threading.Thread(
                target=lambda i=i, t=t: results[i].extend(
                    editor_loop(rec, Http(stack.base, t), i, len(editor_tokens), args.pace, stop)
                )
            )
            for i, t in enumerate(editor_tokens)
        ] + [
            threading.Thread(target=expert_loop, args=(rec, Http(stack.base, t), stop, counter))
            for t in expert_tokens
        ]
        began = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.duration)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        wall = time.perf_counter() - began
        ids = [i for chunk in results for i in chunk]
        print(
            f"load: {args.editors} editors (one submit per {args.pace:g}s each), "
            f"{args.experts} experts, {args.duration:g}s; gunicorn ×2, celery worker -c 2 + beat"
        )
        for op in ("submit", "list_assignments", "accept", "decide"):
            values = rec.latency.get(op, [])
            errors = dict(rec.errors.get(op, {}))
            print(
                f"  {op:<17} {len(values) / wall:6.2f}/s  {summary(values)}"
                + (f"  errors {errors}" if errors else "")
            )
        problems = check(stack, ids, args.grace)
        states = stack.sql(
            "SELECT state, count(*) FROM items WHERE id = ANY(%s) GROUP BY state ORDER BY state",
            (ids,),
        )
        print(f"  items by state after the run: {dict(states)}")
        decided = stack.sql("SELECT count(*) FROM decisions")[0][0]
        print(f"  submissions {len(ids)}, decisions {decided}")
        if problems:
            for p in problems:
                print(f"CHECK FAILED: {p}", file=sys.stderr)
            return 1
        print("checks: one screening report per submission, expected states, audit verify — ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

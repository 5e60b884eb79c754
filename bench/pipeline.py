"""Pipeline benchmark (issue 9): HTTP submit → outbox → relay → Redis → worker → screened/assigned.

Run: python bench/pipeline.py [--rates 2,5,10] [--duration 20]

Starts the production set-up on 127.0.0.1 (bench/stack.py: gunicorn with 2 workers, a fresh
PostgreSQL database, a private redis-server, a Celery worker for screening plus beat for the
relay), submits articles through /api/v1 at increasing rates, and prints for each rate:
accepted/s, screened/s, and p50/p95 from submit to screened and to the first expert offer
(from database timestamps). Then the engine alone (rules.screen in this process on the same
texts) so the pipeline's cost around the engine shows as a ratio. Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Http, Stack, article, percentile, summary  # noqa: E402


def run_rate(stack: Stack, token: str, rate: float, duration: float, start_n: int) -> dict:
    """Submit at ``rate``/s for ``duration`` s (open loop); wait for screening; measure."""
    http = Http(stack.base, token)
    total = max(1, round(rate * duration))
    ids: list[int] = []
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()

    def submit(n: int) -> None:
        nonlocal failures
        title, body = article(n)
        started = time.perf_counter()
        status, data = http.call(
            "POST", "/api/v1/items", {"title": title, "body": body, "submit": True}
        )
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            if status == 201:
                ids.append(int(data["id"]))
            else:
                failures += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(submit, start_n + i)
    accept_wall = time.perf_counter() - began
    deadline = time.monotonic() + max(60.0, duration * 6)
    screened = 0
    while time.monotonic() < deadline:
        screened = stack.sql(
            "SELECT count(*) FROM screening_reports r JOIN versions v ON v.id = r.version_id "
            "WHERE v.item_id = ANY(%s)",
            (ids,),
        )[0][0]
        if screened >= len(ids):
            break
        time.sleep(0.5)
    rows = stack.sql(
        "SELECT extract(epoch FROM r.created_at - v.created_at), "
        "extract(epoch FROM r.created_at), extract(epoch FROM v.created_at) "
        "FROM screening_reports r JOIN versions v ON v.id = r.version_id "
        "WHERE v.item_id = ANY(%s)",
        (ids,),
    )
    to_screened = [float(r[0]) for r in rows]
    assigned = stack.sql(
        "SELECT extract(epoch FROM min(a.offered_at) - v.created_at) "
        "FROM assignments a JOIN versions v ON v.id = a.version_id "
        "WHERE v.item_id = ANY(%s) GROUP BY v.id",
        (ids,),
    )
    to_assigned = [float(r[0]) for r in assigned]
    span = (max(float(r[1]) for r in rows) - min(float(r[2]) for r in rows)) if rows else 0.0
    return {
        "rate": rate,
        "submitted": total,
        "accepted": len(ids),
        "failed": failures,
        "accepted_per_s": len(ids) / accept_wall if accept_wall else 0.0,
        "screened": len(rows),
        "screened_per_s": len(rows) / span if span else 0.0,
        "submit_http": latencies,
        "to_screened": to_screened,
        "to_assigned": to_assigned,
    }


def engine_alone(count: int, start_n: int) -> tuple[float, list[float]]:
    """rules.screen on the same texts in this process: (texts per second, latencies)."""
    import rules

    ruleset = rules.load_default_ruleset()
    texts = [article(start_n + i) for i in range(count)]
    for title, body in texts[:6]:  # warm up: segmenter and automata are built on first use
        rules.screen([rules.Segment("title", title), rules.Segment("body", body)], ruleset)
    latencies = []
    began = time.perf_counter()
    for _round in range(3):
        for title, body in texts:
            t = time.perf_counter()
            rules.screen([rules.Segment("title", title), rules.Segment("body", body)], ruleset)
            latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - began
    return (len(latencies) / wall if wall else 0.0), latencies


def main(argv: list[str] | None = None) -> int:
    """Print the pipeline figures; exit 1 only when the set-up fails or nothing is screened."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2,5,10", help="submissions per second, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--redis-port", type=int, default=6398)
    parser.add_argument("--web-port", type=int, default=5107)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    with Stack(
        redis_port=args.redis_port,
        web_port=args.web_port,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
    ) as stack:
        editors, _experts = stack.create_accounts(editors=1, experts=4)
        print(
            f"set-up: gunicorn ×{args.web_workers}, celery worker -c {args.worker_concurrency} "
            f"(screening,control,notifications) + beat (relay every 1 s), PostgreSQL, "
            f"private Redis :{args.redis_port}"
        )
        results = []
        n = 0
        for rate in rates:
            result = run_rate(stack, editors[0], rate, args.duration, n)
            n += result["submitted"]
            results.append(result)
            print(
                f"\nrate {rate:g}/s for {args.duration:g}s: accepted {result['accepted']}"
                f"/{result['submitted']} ({result['accepted_per_s']:.1f}/s), "
                f"screened {result['screened']} ({result['screened_per_s']:.1f}/s)"
            )
            print(f"  HTTP submit          {summary(result['submit_http'])}")
            print(f"  submit → screened    {summary(result['to_screened'])}")
            print(f"  submit → assigned    {summary(result['to_assigned'])}")
        per_s, engine_lat = engine_alone(max(n, 20), 0)
        print(f"\nengine alone (rules.screen in process, same texts): {per_s:.1f} texts/s")
        print(f"  rules.screen         {summary(engine_lat)}")
        all_screened = [x for r in results for x in r["to_screened"]]
        if all_screened and engine_lat:
            ratio = percentile(all_screened, 50) / percentile(engine_lat, 50)
            print(
                f"  pipeline p50 (submit → screened) / engine p50 = {ratio:.0f}× "
                "(outbox relay interval, broker hop, worker start-up of the task, DB writes)"
            )
        if not all_screened:
            print("nothing was screened", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

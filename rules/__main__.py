"""`python -m rules scan FILE|-` / `python -m rules test`: the engine without the app.

The application's `kepu rules ...` commands are the supported interface; this entry point
exists so the engine can be measured and debugged as a bare process (see bench/screening.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import format_scan, load_default_ruleset, run_examples, screen, segments_from_text


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; exit status 0 unless an error occurs."""
    parser = argparse.ArgumentParser(prog="python -m rules")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="screen a text file (or - for stdin)")
    scan.add_argument("file")
    scan.add_argument("--json", action="store_true")
    scan.add_argument("--segmenter", default="auto")
    scan.add_argument("--summary", action="store_true", help="print only level and counts")
    scan.add_argument(
        "--jobs", type=int, default=0, help="processes for a large text (0 = one per CPU)"
    )
    sub.add_parser("test", help="run every rule's must_flag / must_pass example")
    args = parser.parse_args(argv)
    ruleset = load_default_ruleset()
    if args.command == "test":
        failures = run_examples(ruleset)
        for f in failures:
            print(f"FAIL {f.rule_id} {f.kind}: {f.text} — {f.detail}")
        print(f"{len(ruleset)} rules, {len(failures)} failing examples")
        return 1 if failures else 0
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    segments = segments_from_text(text)
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    report = screen(segments, ruleset, segmenter=args.segmenter, jobs=jobs)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif args.summary:
        print(f"{report.risk_level} {report.risk_score} findings={len(report.findings)}")
    else:
        print(format_scan(report, segments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

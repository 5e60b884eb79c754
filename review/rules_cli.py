"""`kepu rules ...`: the screening engine's commands (scan, eval, test).

They need neither Flask nor the database, and `kepu rules` is dispatched here before Flask is
imported (review.entry), so a scan starts as fast as `python -m rules`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    raise SystemExit(code)


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


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                _fail(f"错误：{path} 第 {number} 行不是合法的 JSON", 2)
    return records


def _echo_eval(result: dict[str, Any], misses: bool) -> None:
    click.echo(f"rules: {result['rules']}")
    for label, row in result["by_label"].items():
        click.echo(
            f"{label:<11} n={row['n']:<5} flagged={row['flagged']:<5} rate={row['rate']:.1%}"
        )
    click.echo("by subset:")
    for subset, labels in result["by_subset"].items():
        parts = ", ".join(
            f"{lb} {r['flagged']}/{r['n']} ({r['rate']:.1%})" for lb, r in labels.items()
        )
        click.echo(f"  {subset}: {parts}")
    click.echo(
        f"precision={result['precision']:.3f} recall={result['recall']:.3f} f1={result['f1']:.3f}"
    )
    if not misses:
        return
    for key, title in (("misses", "misses (pseudo not flagged)"), ("false_alarms", "false alarms")):
        rows = result.get(key) or []
        click.echo(f"\n{title}: {len(rows)}")
        for row in rows[:200]:
            click.echo(f"  - {json.dumps(row, ensure_ascii=False)[:300]}")


def _echo_articles(result: dict[str, Any]) -> None:
    if "claims" not in result or not isinstance(result["claims"], dict):
        click.echo(
            f"claims in articles: needs pseudo texts and genuine texts of at least"
            f" {result.get('min_chars', '')} characters ({result.get('claims')} claims,"
            f" {result.get('articles')} articles)"
        )
        return
    alone = result["articles_flagged_alone"]
    click.echo(
        f"claims in articles ({result['articles']} genuine articles of >= {result['min_chars']}"
        f" characters): articles alone flagged {alone['flagged']}/{alone['n']}"
        f" ({alone['rate']:.1%})"
    )
    rows = [("all", result["claims"]), *result["by_subset"].items()]
    for name, row in rows:
        click.echo(
            f"  {name}: with claim {row['flagged_with_claim']}/{row['n']}"
            f" ({row['rate_with_claim']:.1%}); claim alone {row['claim_alone_flagged']}/{row['n']};"
            f" kept in article {row['kept_in_article']:.1%}"
        )


@rules_group.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary.")
@click.option(
    "--misses", is_flag=True, help="Also list the misses and false alarms (texts cut to 120)."
)
@click.option(
    "--in-articles",
    is_flag=True,
    help="Also put each pseudo text inside a long genuine article of the same file and"
    " report flagged with vs without the claim.",
)
def rules_eval(paths: tuple[str, ...], as_json: bool, misses: bool, in_articles: bool) -> None:
    """Measure flag rates per label and subset on JSON-lines files of labelled texts (each
    file reported on its own: e.g. a study half and a check half)."""
    import rules

    ruleset = rules.load_default_ruleset()
    summaries: dict[str, dict[str, Any]] = {}
    for n, path in enumerate(paths):
        records = _read_jsonl(path)
        result = rules.evaluate(records, ruleset)
        if in_articles:
            result["in_articles"] = rules.evaluate_in_articles(records, ruleset)
        if as_json:
            summaries[path] = {
                k: v for k, v in result.items() if k not in ("misses", "false_alarms")
            }
            continue
        if len(paths) > 1:
            click.echo(("\n" if n else "") + f"== {path}")
        _echo_eval(result, misses)
        if in_articles:
            _echo_articles(result["in_articles"])
    if as_json:
        out = summaries[paths[0]] if len(paths) == 1 else {"files": summaries}
        click.echo(json.dumps(out, ensure_ascii=False))

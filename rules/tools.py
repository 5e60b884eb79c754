"""Helpers around screen(): plain-text input, example runner, evaluation and scan output."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .engine import screen
from .model import Report, Segment, Thresholds
from .ruleset import Ruleset

LABELS: tuple[str, ...] = ("pseudo", "genuine", "refutation")
_LINE = re.compile(r"[^\r\n]+")


def segments_from_text(text: str, *, title: str | None = None) -> list[Segment]:
    """Split a plain article into a title segment and one body segment per non-blank line."""
    segments: list[Segment] = []
    if title is not None and title.strip():
        segments.append(Segment("title", title))
    for m in _LINE.finditer(text):
        line = m.group(0)
        if line.strip():
            segments.append(Segment("body", line))
    return segments


@dataclass(frozen=True)
class ExampleFailure:
    """A must_flag example that did not fire its rule, or a must_pass example that did."""

    rule_id: str
    kind: str
    text: str
    detail: str


def run_examples(ruleset: Ruleset, *, segmenter: str = "auto") -> list[ExampleFailure]:
    """Screen every rule's must_flag / must_pass example and list the ones that misbehave."""
    failures: list[ExampleFailure] = []
    for rule in ruleset.rules:
        for text in rule.must_flag:
            report = screen(segments_from_text(text), ruleset, segmenter=segmenter)
            if not any(f.rule_id == rule.id for f in report.findings):
                held = [f for f in report.suppressed if f.rule_id == rule.id]
                detail = (
                    f"matched but suppressed by context {held[0].context!r}"
                    if held
                    else "rule did not match"
                )
                failures.append(ExampleFailure(rule.id, "must_flag", text, detail))
        for text in rule.must_pass:
            report = screen(segments_from_text(text), ruleset, segmenter=segmenter)
            fired = [f for f in report.findings if f.rule_id == rule.id]
            if fired:
                failures.append(
                    ExampleFailure(rule.id, "must_pass", text, f"rule fired on {fired[0].text!r}")
                )
    return failures


def _rate(n: int, flagged: int) -> dict[str, float | int]:
    return {"n": n, "flagged": flagged, "rate": round(flagged / n, 4) if n else 0.0}


def evaluate(
    records: Iterable[Mapping[str, str]],
    ruleset: Ruleset,
    *,
    thresholds: Thresholds | None = None,
    segmenter: str = "auto",
) -> dict[str, object]:
    """Screen labelled texts; report per label and subset, precision/recall/F1 (pseudo positive)."""
    th = thresholds or Thresholds()
    counts: dict[str, list[int]] = {label: [0, 0] for label in LABELS}
    subsets: dict[str, dict[str, list[int]]] = {}
    misses: list[dict[str, object]] = []
    false_alarms: list[dict[str, object]] = []
    for i, record in enumerate(records):
        text = record.get("text")
        label = record.get("label")
        if not isinstance(text, str) or label not in LABELS:
            raise ValueError(f"record {i}: needs a string 'text' and a label in {LABELS}")
        subset = str(record.get("subset") or "-")
        report = screen(segments_from_text(text), ruleset, thresholds=th, segmenter=segmenter)
        flagged = report.routes_to_experts(th)
        counts[label][0] += 1
        counts[label][1] += int(flagged)
        per = subsets.setdefault(subset, {})
        cell = per.setdefault(label, [0, 0])
        cell[0] += 1
        cell[1] += int(flagged)
        if (label == "pseudo") != flagged:
            entry: dict[str, object] = {
                "text": text[:120],
                "label": label,
                "subset": subset,
                "risk_score": report.risk_score,
                "rules": sorted({f.rule_id for f in report.findings}),
                "suppressed": sorted({f"{f.rule_id}({f.context})" for f in report.suppressed}),
            }
            (misses if label == "pseudo" else false_alarms).append(entry)
    tp = counts["pseudo"][1]
    fp = counts["genuine"][1] + counts["refutation"][1]
    fn = counts["pseudo"][0] - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "rules": len(ruleset),
        "by_label": {label: _rate(*counts[label]) for label in LABELS},
        "by_subset": {
            name: {label: _rate(*cell) for label, cell in sorted(per.items())}
            for name, per in sorted(subsets.items())
        },
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "misses": misses,
        "false_alarms": false_alarms,
    }


ARTICLE_MIN_CHARS = 1500


def _flagged(text: str, ruleset: Ruleset, th: Thresholds, segmenter: str) -> bool:
    return screen(
        segments_from_text(text), ruleset, thresholds=th, segmenter=segmenter
    ).routes_to_experts(th)


def embed_claim(article: str, claim: str) -> str:
    """The article with the claim as its own paragraph between the two middle paragraphs
    (after the middle line of a one-line article's sentences when it has no line breaks)."""
    lines = [ln for ln in article.splitlines() if ln.strip()]
    if len(lines) < 2:
        sentences = re.findall(r"[^。！？!?]*[。！？!?]*", article)
        lines = [s for s in sentences if s]
    mid = len(lines) // 2
    return "\n".join([*lines[:mid], claim.replace("\n", " "), *lines[mid:]])


def evaluate_in_articles(
    records: Iterable[Mapping[str, str]],
    ruleset: Ruleset,
    *,
    min_chars: int = ARTICLE_MIN_CHARS,
    thresholds: Thresholds | None = None,
    segmenter: str = "auto",
) -> dict[str, object]:
    """Claims inside long articles: each pseudo text of the set is put, as a paragraph of its
    own, between the two middle paragraphs of a long genuine article of the same set (the
    articles taken in turn). Reports how often the article is flagged with the claim and
    without it, and how often the claim is flagged on its own, overall and per claim subset.
    The texts are read at run time; nothing is kept."""
    th = thresholds or Thresholds()
    rows = list(records)
    claims = [r for r in rows if r.get("label") == "pseudo" and isinstance(r.get("text"), str)]
    articles = [
        r["text"]
        for r in rows
        if r.get("label") == "genuine" and len(str(r.get("text") or "")) >= min_chars
    ]
    if not claims or not articles:
        return {"claims": len(claims), "articles": len(articles)}
    alone = [_flagged(a, ruleset, th, segmenter) for a in articles]
    per: dict[str, list[int]] = {}
    total = [0, 0, 0, 0]  # n, flagged with, claim flagged alone, flagged with | alone
    for i, record in enumerate(claims):
        claim = record["text"]
        with_claim = _flagged(
            embed_claim(articles[i % len(articles)], claim), ruleset, th, segmenter
        )
        by_itself = _flagged(claim, ruleset, th, segmenter)
        for cell in (total, per.setdefault(str(record.get("subset") or "-"), [0, 0, 0, 0])):
            cell[0] += 1
            cell[1] += int(with_claim)
            cell[2] += int(by_itself)
            cell[3] += int(with_claim and by_itself)

    def row(cell: list[int]) -> dict[str, float | int]:
        n, with_claim, by_itself, both = cell
        return {
            "n": n,
            "flagged_with_claim": with_claim,
            "rate_with_claim": round(with_claim / n, 4) if n else 0.0,
            "claim_alone_flagged": by_itself,
            "kept_in_article": round(both / by_itself, 4) if by_itself else 0.0,
        }

    return {
        "articles": len(articles),
        "min_chars": min_chars,
        "articles_flagged_alone": _rate(len(articles), sum(alone)),
        "claims": row(total),
        "by_subset": {name: row(cell) for name, cell in sorted(per.items())},
    }


def format_scan(report: Report, segments: Sequence[Segment], *, context_chars: int = 30) -> str:
    """Render a report for people: each finding with its span in 【】, rule, context, reason."""
    lines = [
        f"风险等级 risk: {report.risk_level} (score {report.risk_score})",
        f"领域 domains: {'、'.join(report.domains) or '-'}",
        f"规则集 ruleset: {report.ruleset_version}",
    ]
    if report.document_context:
        lines.append(f"文档语境 document context: {report.document_context}")
    groups = (("计入 findings", report.findings), ("已抵消 suppressed", report.suppressed))
    for heading, findings in groups:
        lines.append(f"{heading}: {len(findings)}")
        for n, f in enumerate(findings, 1):
            text = segments[f.segment].text
            a = max(0, f.start - context_chars)
            b = min(len(text), f.end + context_chars)
            snippet = (
                ("…" if a > 0 else "")
                + text[a : f.start]
                + "【"
                + text[f.start : f.end]
                + "】"
                + text[f.end : b]
                + ("…" if b < len(text) else "")
            ).replace("\n", " ")
            where = f"segment {f.segment} [{f.start}:{f.end}]"
            if f.start_time is not None:
                where += f" {f.start_time:.1f}s–{(f.end_time or f.start_time):.1f}s"
            lines.append(
                f"  {n}. {f.rule_id} v{f.rule_version} {f.title} · {f.category} · {f.severity}"
                f" · context={f.context or '-'} · score={f.score}"
            )
            lines.append(f"     {where}: {snippet}")
            lines.append(f"     说明：{f.explanation}")
    return "\n".join(lines)

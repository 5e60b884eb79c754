"""Screening orchestration: engine → report → cleared/flagged → experts (used by task and CLI)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import rules
from expert_pool.operations import Deadlines, assign_reviewers
from review import policy, rulepacks
from review.audit import SYSTEM, AuditEvent, record_event
from review.db import db
from review.errors import IllegalTransition
from review.models import ScreeningReport, Version
from review.operations import begin_screening, fail_screening, record_screening
from review.rendering import Visible, decode_references, visible_text
from review.search import index_item
from review.videos import version_sources
from workers import faults

log = logging.getLogger(__name__)

SEGMENT_KINDS = ("title", "body")


def deadlines_from_config() -> Deadlines:
    """Expert deadlines of the running policy (configuration, or an admin's override)."""
    current = policy.effective()
    return Deadlines(accept_within=current.accept_within, decide_within=current.decide_within)


def thresholds_from_config() -> rules.Thresholds:
    """Screening thresholds of the running policy (configuration, or an admin's override)."""
    return policy.effective().thresholds()


def shown_segments(version: Version, *, join: bool = True) -> list[tuple[rules.Segment, Visible]]:
    """The version's text as readers see it, as engine segments, each with the map from its
    text back to the stored text: title, then the whole body (or a video's description) as
    the page renders it, then every cue of every subtitle source (supplied, embedded, OCR)
    with its time range, so findings carry it too.

    The body is Markdown: screening reads its rendered text (character references decoded,
    markup removed), never the raw source a reader does not see. Titles and cues are plain
    text that a browser, player or CMS may show as HTML, so their character references are
    decoded too. ``join``: a line break inside a paragraph or cue is read as a wrapped line
    (see `visible_text`), else as a line break."""
    title = decode_references(version.title, join=join)
    body = visible_text(version.body, join=join)
    if version.media_asset_id is None:
        return [
            (rules.Segment("title", title.text), title),
            (rules.Segment("body", body.text), body),
        ]
    segments = [
        (rules.Segment("title", title.text), title),
        (rules.Segment("description", body.text), body),
    ]
    # The same line at the same time in two sources (a supplied file and the picture's OCR) is
    # screened once, from the first source: the expert judges one finding, not two.
    seen: dict[str, list[tuple[float, float]]] = {}
    for source in version_sources(version):
        for start, end, text in source.cues:
            key = "".join(str(text).split())
            begin, finish = float(start), float(end)
            if any(a < finish and begin < b for a, b in seen.get(key, [])):
                continue
            seen.setdefault(key, []).append((begin, max(finish, begin + 0.001)))
            cue = decode_references(str(text), join=join)
            segments.append((rules.Segment("cue", cue.text, begin, finish), cue))
    return segments


def segments_of(version: Version) -> list[rules.Segment]:
    """The engine segments of a version: its text as readers see it (see shown_segments)."""
    return [segment for segment, _ in shown_segments(version)]


def screen_as_shown(
    version: Version, ruleset: rules.Ruleset, *, thresholds: rules.Thresholds
) -> tuple[rules.Report, list[rules.Segment]]:
    """Screen the text readers see and return the report with its findings located in the
    stored text (offsets into the stored title, body or cue, the stored characters as the
    finding's text), so the pages highlight, and experts mark, the stored source.

    A line break inside a paragraph is read both ways: as a line break (a heading line over
    its debunk stays apart from it), and as a wrapped line. The wrapped reading decides when
    one of its findings runs across a joined break — a claim split over two lines
    (根, a line break, 治癌症) that the first reading cannot see."""
    shown = shown_segments(version)
    if any(visible.joins for _, visible in shown):
        report = _screen(shown, ruleset, thresholds)
        if any(shown[f.segment][1].crosses_join(f.start, f.end) for f in report.findings):
            return _stored(report, shown), [segment for segment, _ in shown]
        shown = shown_segments(version, join=False)
    return _stored(_screen(shown, ruleset, thresholds), shown), [s for s, _ in shown]


def _screen(
    shown: list[tuple[rules.Segment, Visible]], ruleset: rules.Ruleset, th: rules.Thresholds
) -> rules.Report:
    return rules.screen([segment for segment, _ in shown], ruleset, thresholds=th)


def _stored(report: rules.Report, shown: list[tuple[rules.Segment, Visible]]) -> rules.Report:
    """The report with its findings at stored offsets."""

    def stored(finding: rules.Finding) -> rules.Finding:
        visible = shown[finding.segment][1]
        start, end = visible.to_source(finding.start, finding.end)
        return replace(finding, start=start, end=end, text=visible.source[start:end])

    return replace(
        report,
        findings=tuple(stored(f) for f in report.findings),
        suppressed=tuple(stored(f) for f in report.suppressed),
    )


#: How each engine segment kind is stored on a finding (a description is the version's body).
STORED_KIND = {"title": "title", "body": "body", "description": "body", "cue": "cue"}


def report_to_row_data(
    report: rules.Report, segments: list[rules.Segment] | None = None
) -> dict[str, Any]:
    """The engine's report in the shape record_screening stores."""
    data = report.to_dict()
    findings = []
    for f in report.findings:
        entry = f.to_dict()
        kind = segments[f.segment].kind if segments is not None else SEGMENT_KINDS[f.segment]
        entry["segment_kind"] = STORED_KIND[kind]
        findings.append(entry)
    data["findings"] = findings
    return data


def screen_version(version_id: int, *, max_attempts: int | None = None) -> str:
    """Screen one version and commit; idempotent: a repeated call for a version does nothing."""
    version = db.session.get(Version, version_id)
    if version is None:
        log.warning("screening: version %s does not exist", version_id)
        return "missing"
    attempts = max_attempts or policy.effective().screening_max_attempts
    status = begin_screening(version, max_attempts=attempts)
    if status == "failed":
        _assign_if_flagged(version)
    db.session.commit()  # the attempt counts even if the engine crashes the process
    if status == "failed":
        # An operator alert: this version crashed the screening again and again.
        log.error(
            "screening of version %s gave up after %s attempts; it goes to experts as "
            "screening failed",
            version_id,
            attempts,
        )
    if status != "screen":
        return status
    faults.screening_point(version.title, version.item.screening_attempts)  # tests only
    thresholds = thresholds_from_config()
    # The packs without the rules admins switched off; the report records this reduced version.
    ruleset = rulepacks.effective_ruleset()
    report, segments = screen_as_shown(version, ruleset, thresholds=thresholds)
    flagged = report.routes_to_experts(thresholds)
    try:
        version = db.session.get(Version, version_id)
        assert version is not None
        if db.session.query(ScreeningReport.id).filter_by(version_id=version.id).first():
            db.session.rollback()
            return "done"
        note_ruleset(ruleset)
        record_screening(version, report_to_row_data(report, segments), flagged=flagged)
        index_item(version.item)
        _assign_if_flagged(version)
        db.session.commit()
    except (IntegrityError, IllegalTransition):
        # Another delivery of the same message won the race; its report stands.
        db.session.rollback()
        log.info("screening: version %s already screened by another delivery", version_id)
        return "done"
    # "flagged" when the version went to experts: by the rules, or because experts had objected.
    return "flagged" if flagged or version.item.state.value != "cleared" else "cleared"


def give_up(version_id: int, error: str) -> None:
    """After repeated errors the version goes to experts as flagged (screening failed)."""
    version = db.session.get(Version, version_id)
    if version is None or version.report is not None:
        return
    fail_screening(version, error=error)
    _assign_if_flagged(version)
    db.session.commit()


def _assign_if_flagged(version: Version) -> None:
    if version.item.state.value == "flagged":
        assign_reviewers(version.item, deadlines=deadlines_from_config())


def note_ruleset(ruleset: rules.Ruleset) -> None:
    """The first screening with a new rule-pack version writes it to the ledger (a rule change)."""
    seen = db.session.scalar(
        select(AuditEvent.seq).where(
            AuditEvent.action == "rules.ruleset_in_use", AuditEvent.subject_id == ruleset.version
        )
    )
    if seen is None:
        record_event(
            "rules.ruleset_in_use",
            actor=SYSTEM,
            subject_type="ruleset",
            subject_id=ruleset.version,
            data={"rules": len(ruleset), "rule_ids_sha256": _rule_ids_digest(ruleset)},
        )


def _rule_ids_digest(ruleset: rules.Ruleset) -> str:
    import hashlib

    ids = sorted(f"{r.id}@{r.version}" for r in ruleset.rules)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()

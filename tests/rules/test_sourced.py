"""not_document: an event claim in a text that names its source is a report, not a rumour."""

from __future__ import annotations

import pytest

import rules

RUMOUR = "听说城西已经爆发疫情了，大家这几天别出门。"


def _screen(*texts: str) -> rules.Report:
    return rules.screen(
        [rules.Segment("title" if i == 0 else "body", t) for i, t in enumerate(texts)],
        rules.load_default_ruleset(),
    )


def test_unsourced_event_claim_is_counted() -> None:
    report = _screen("紧急消息", RUMOUR)
    hit = [f for f in report.findings if f.rule_id == "event.outbreak-unsourced"]
    assert hit and hit[0].context is None and hit[0].score > 0
    assert hit[0].text in RUMOUR


@pytest.mark.parametrize("source", ["记者从市卫健委获悉，", "（据新华社报道）"])
def test_a_source_anywhere_in_the_version_makes_it_sourced(source: str) -> None:
    # The source is in another segment than the claim: the whole version counts.
    report = _screen(source + "城西疫情防控情况", RUMOUR)
    assert "event.outbreak-unsourced" not in {f.rule_id for f in report.findings}
    kept = [f for f in report.suppressed if f.rule_id == "event.outbreak-unsourced"]
    assert kept and kept[0].context == "sourced" and kept[0].score == 0


def test_not_document_is_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.toml").write_text(
        '[[rule]]\nid = "x.y"\nversion = 1\ntitle = "标题"\ncategory = "恐慌与标题党"\n'
        'domains = ["医学健康"]\nseverity = "low"\nexplanation = "说明"\n'
        'must_flag = ["爆发疫情"]\nmust_pass = ["没有"]\n'
        'pattern = { any = ["爆发疫情"], not_document = ["re:记者"] }\n',
        encoding="utf-8",
    )
    with pytest.raises(rules.RulePackError) as err:
        rules.load_ruleset(tmp_path)
    assert "not_document" in str(err.value)

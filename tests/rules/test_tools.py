"""segments_from_text, format_scan, run_examples and evaluate."""

from __future__ import annotations

import json

from rules import (
    evaluate,
    evaluate_in_articles,
    format_scan,
    run_examples,
    screen,
    segments_from_text,
)
from rules.ruleset import Ruleset
from rules.tools import embed_claim


def test_segments_from_text_keeps_original_lines() -> None:
    text = "第一段 排*毒\r\n\n  \n第二段。\n"
    segs = segments_from_text(text, title="标题")
    assert [(s.kind, s.text) for s in segs] == [
        ("title", "标题"),
        ("body", "第一段 排*毒"),
        ("body", "第二段。"),
    ]
    assert segments_from_text("") == []


def test_format_scan_highlights_the_span(ruleset: Ruleset) -> None:
    segs = segments_from_text("这款茶能帮你排 毒养颜，包治百病。")
    out = format_scan(screen(segs, ruleset), segs)
    assert "【排 毒" in out or "【排 毒养颜】" in out
    assert "【包治百病】" in out
    assert "mechanism.detox" in out and "说明：" in out


def test_run_examples_passes_on_the_repository_packs(ruleset: Ruleset) -> None:
    assert run_examples(ruleset) == []


def test_evaluate_shape(ruleset: Ruleset) -> None:
    records = [
        {
            "text": "这款茶能帮你排毒养颜，包治百病，根治糖尿病永不复发。",
            "label": "pseudo",
            "subset": "a",
        },
        {"text": "今天气温回升，适合户外散步。", "label": "genuine", "subset": "a"},
        {
            "text": "辟谣：排毒茶包治百病？这是谣言，没有科学依据。",
            "label": "refutation",
            "subset": "b",
        },
    ]
    result = evaluate(records, ruleset)
    assert result["rules"] == len(ruleset)
    assert result["by_label"] == {
        "pseudo": {"n": 1, "flagged": 1, "rate": 1.0},
        "genuine": {"n": 1, "flagged": 0, "rate": 0.0},
        "refutation": {"n": 1, "flagged": 0, "rate": 0.0},
    }
    assert set(result["by_subset"]) == {"a", "b"}  # type: ignore[arg-type]
    assert result["precision"] == 1.0 and result["recall"] == 1.0 and result["f1"] == 1.0
    assert result["misses"] == [] and result["false_alarms"] == []
    json.dumps(result, ensure_ascii=False)


def test_embed_claim_puts_the_claim_between_the_middle_paragraphs() -> None:
    assert embed_claim("一\n二\n三\n四", "主张") == "一\n二\n主张\n三\n四"
    assert embed_claim("甲句。乙句。", "主张") == "甲句。\n主张\n乙句。"


def test_evaluate_in_articles_counts_claims_per_subset(ruleset: Ruleset) -> None:
    article = "\n".join(["规律作息、均衡饮食和适量运动有益健康。" * 10] * 8)
    records = [
        {"text": article, "label": "genuine", "subset": "g"},
        {"text": "短文。", "label": "genuine", "subset": "g"},
        {"text": "糖尿病患者可以停用胰岛素，改喝苦瓜汁。", "label": "pseudo", "subset": "x"},
    ]
    result = evaluate_in_articles(records, ruleset)
    assert result["articles"] == 1
    assert result["by_subset"]["x"]["flagged_with_claim"] == 1  # type: ignore[index]
    assert evaluate_in_articles(records[1:], ruleset) == {"claims": 1, "articles": 0}

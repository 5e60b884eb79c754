"""screen(): contexts, offsets, transcript times, risk levels, domains, backends, bad input."""

from __future__ import annotations

import json

import pytest

from rules import (
    Report,
    ScreeningInputError,
    Segment,
    Thresholds,
    screen,
    segments_from_text,
)
from rules.ruleset import Ruleset
from rules.segmenter import rjieba_available

CLAIM = "每天喝一杯淡盐水漱口，可以杀死喉咙里的新冠病毒。"


def _report(ruleset: Ruleset, *texts: str, title: str | None = None) -> Report:
    segments = ([Segment("title", title)] if title else []) + [Segment("body", t) for t in texts]
    return screen(segments, ruleset)


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("喝淡盐水能杀死新冠病毒，这是谣言。", "refutation"),
        ("喝淡盐水能杀死新冠病毒的说法没有科学依据。", "refutation"),
        ("喝淡盐水不能杀灭新冠病毒。", "negation"),
        ("并没有研究表明喝淡盐水能杀死新冠病毒。", "refutation"),
        ("喝淡盐水并不能杀灭新冠病毒。", "negation"),
        ("喝淡盐水真的能杀死新冠病毒吗？", "question"),
        ("喝淡盐水能杀死新冠病毒？", "question"),
        # 竟然/居然 with a question mark exclaims; a question word still asks.
        ("喝淡盐水竟然能杀死新冠病毒？", None),
        ("喝淡盐水居然能杀死新冠病毒吗？", "question"),
        ("网传喝淡盐水能杀死新冠病毒。", "attribution"),
        ("有人说喝淡盐水能杀死新冠病毒。", "attribution"),
        ("研究显示喝淡盐水可能有助于杀死新冠病毒，仍需更多证据。", "hedged"),
        ("喝淡盐水能杀死新冠病毒。", None),
    ],
)
def test_context_of_a_claim(ruleset: Ruleset, text: str, context: str | None) -> None:
    report = _report(ruleset, text)
    hits = [
        f
        for f in report.findings + report.suppressed
        if f.rule_id == "efficacy.folk-item-kills-covid"
    ]
    assert hits, text
    assert hits[0].context == context
    counted = any(f.rule_id == "efficacy.folk-item-kills-covid" for f in report.findings)
    assert counted == (context in (None, "attribution", "hedged"))


def test_debunk_document_title_cancels_claims(ruleset: Ruleset) -> None:
    report = _report(
        ruleset, CLAIM, "事实上，漱口只能让口腔干净些。", title="辟谣：淡盐水漱口防新冠？"
    )
    assert report.findings == ()
    body = [f for f in report.suppressed if f.segment == 1]
    assert body and all(f.context == "debunk_document" for f in body)
    assert report.document_context == "debunk_document"
    assert report.risk_level == "none"


def test_debunk_document_by_cues_in_body(ruleset: Ruleset) -> None:
    text = CLAIM + "这种说法没有任何依据。事实上，漱口挡不住病毒，纯属谣言。"
    report = _report(ruleset, text)
    assert report.findings == ()
    assert report.document_context == "debunk_document"


def test_plain_claim_routes_to_experts(ruleset: Ruleset) -> None:
    report = _report(ruleset, CLAIM)
    assert report.findings
    assert report.risk_level in ("medium", "high", "critical")
    assert report.routes_to_experts(Thresholds())
    assert not report.routes_to_experts(Thresholds(flag_level="critical"))
    assert "医学健康" in report.domains


def test_findings_carry_original_offsets_and_cue_times(ruleset: Ruleset) -> None:
    segments = [
        Segment("title", "健康小知识"),
        Segment("cue", "大家好，今天讲一个小窍门。", 0.0, 3.5),
        Segment("cue", "這款茶能幫你排 * 毒養顏，", 3.5, 7.25),
    ]
    report = screen(segments, ruleset)
    f = next(f for f in report.findings if f.rule_id == "mechanism.detox")
    assert f.segment == 2
    assert segments[2].text[f.start : f.end] == f.text == "排 * 毒"
    assert (f.start_time, f.end_time) == (3.5, 7.25)


def test_no_hit_text_still_gets_domains(ruleset: Ruleset) -> None:
    report = _report(ruleset, "台风即将登陆，气象台发布暴雨预警，请市民做好防灾准备和应急避险。")
    assert report.findings == ()
    assert report.risk_level == "none"
    assert "气象与气候" in report.domains or "防灾减灾与应急" in report.domains


def test_report_is_json_serialisable(ruleset: Ruleset) -> None:
    report = _report(ruleset, CLAIM)
    data = report.to_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False))["risk_level"] == report.risk_level
    assert data["ruleset_version"] == ruleset.version
    assert report.findings[0].to_dict()["rule_id"]


def test_thresholds_levels() -> None:
    th = Thresholds()
    assert [th.level_for(s) for s in (0, 0.5, 1, 3, 6)] == [
        "none",
        "low",
        "medium",
        "high",
        "critical",
    ]
    with pytest.raises(ValueError):
        Thresholds(flag_level="urgent")
    with pytest.raises(ValueError):
        Thresholds(medium_at=5, high_at=3)


def test_risk_grows_with_more_rules(ruleset: Ruleset) -> None:
    one = _report(ruleset, CLAIM)
    two = _report(ruleset, CLAIM, "震惊！赶紧转发给家人！")
    assert two.risk_score > one.risk_score


SAMPLES = [
    CLAIM,
    "这款茶能帮你排*毒养颜，量子能量鞋垫调理全身，包治百病！",
    "吃转基因大豆油会导致不孕不育。网传5G基站传播新冠病毒。",
    "辟谣：味精致癌？其实味精是安全的调味品。",
    "台风来了，请注意防灾避险。",
]


@pytest.mark.skipif(not rjieba_available(), reason="rjieba not installed")
@pytest.mark.parametrize("text", SAMPLES)
def test_backends_give_identical_findings(ruleset: Ruleset, text: str) -> None:
    segs = segments_from_text(text, title="标题")
    a = screen(segs, ruleset, segmenter="jieba")
    b = screen(segs, ruleset, segmenter="rjieba")
    assert a == b


@pytest.mark.skipif(not rjieba_available(), reason="rjieba not installed")
def test_backends_give_identical_tokens_on_every_example(ruleset: Ruleset) -> None:
    from rules import normalise

    jb = ruleset.segmenter("jieba")
    rj = ruleset.segmenter("rjieba")
    for rule in ruleset.rules:
        for text in rule.must_flag + rule.must_pass:
            norm = normalise(text).text
            assert jb.cut(norm) == rj.cut(norm), text


def test_unknown_segmenter_is_a_clear_error(ruleset: Ruleset) -> None:
    with pytest.raises(ValueError, match="unknown segmenter"):
        screen([Segment("body", CLAIM)], ruleset, segmenter="thulac")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        "啊" * 10_000_000,
        "排" * 2_000_000,
        "\ud800\udc00\udfff排毒\ud83d",
        "\x00\x01\x02排\x07毒\x1b[31m红色\x7f",
        "Mixed 文字 with русский, العربية, 日本語のテキスト and emoji 😀 排毒",
        "a" * 1_000_000 + "排毒",
        "，。！？" * 100_000,
    ],
    ids=[
        "empty",
        "blank",
        "10MB-one-char",
        "2M-term-char",
        "surrogates",
        "controls",
        "mixed",
        "long-ascii",
        "punct",
    ],
)
def test_bad_input_never_crashes(ruleset: Ruleset, text: str) -> None:
    report = screen([Segment("body", text)], ruleset)
    assert report.risk_level in ("none", "low", "medium", "high", "critical")
    for f in report.findings:
        assert text[f.start : f.end] == f.text


def test_no_segments_gives_empty_report(ruleset: Ruleset) -> None:
    report = screen([], ruleset)
    assert report.findings == () and report.risk_level == "none" and report.domains == ()


@pytest.mark.parametrize(
    "segments",
    [
        "a plain string",
        [("body", "text")],
        [Segment("chapter", "text")],
        [Segment("body", b"bytes")],  # type: ignore[arg-type]
    ],
)
def test_wrong_input_types_are_clear_errors(ruleset: Ruleset, segments: object) -> None:
    with pytest.raises(ScreeningInputError):
        screen(segments, ruleset)  # type: ignore[arg-type]


def test_pure_python_term_index_gives_identical_reports(
    ruleset: Ruleset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rules.matcher
    from rules.ruleset import Ruleset as RulesetClass

    monkeypatch.setattr(rules.matcher, "has_automaton", lambda: False)
    fallback = RulesetClass(
        ruleset.rules,
        ruleset.version,
        ruleset.domain_keywords,
        keep_whole=ruleset.keep_whole,
        vocabulary=ruleset.vocabulary,
    )
    assert fallback.term_index.backend == "python"
    texts = [t for r in ruleset.rules for t in r.must_flag + r.must_pass] + SAMPLES
    for text in texts:
        segs = segments_from_text(text, title="标题")
        assert screen(segs, ruleset) == screen(segs, fallback), text


def test_auto_segmenter_falls_back_to_jieba(monkeypatch: pytest.MonkeyPatch) -> None:
    import rules.segmenter

    monkeypatch.setattr(rules.segmenter, "rjieba_available", lambda: False)
    assert rules.segmenter.resolve_backend("auto") == "jieba"
    with pytest.raises(ValueError, match="not installed"):
        rules.segmenter.resolve_backend("rjieba")


@pytest.mark.parametrize(
    ("text", "debunk"),
    [
        ("喝淡盐水能杀死新冠病毒\n漱口并不能清除呼吸道里的病毒，目前没有证据支持这种做法。", True),
        ("喝淡盐水能杀死新冠病毒\n每天早晚各一次，坚持一周效果最好。", False),
        (
            "量子鞋垫真的能治病吗\n商家宣称量子鞋垫能调节能量场、降低血压。"
            "\n记者调查发现，这些产品与量子力学毫无关系，已被立案查处。",
            True,
        ),
        ("喝淡盐水能杀死新冠病毒  经核查，漱口并不能清除呼吸道里的病毒。", True),
        ("喝淡盐水能杀死新冠病毒  每天早晚各一次，坚持一周效果最好。", False),
        ("据说喝淡盐水能杀死新冠病毒。 经核查，这一说法不对。", False),
    ],
    ids=[
        "headline-rebutted",
        "headline-supported",
        "question-headline",
        "heading-on-the-body-line",
        "heading-on-the-body-line-supported",
        "spaces-inside-a-sentence",
    ],
)
def test_headline_followed_by_rebuttal_is_a_debunk(
    ruleset: Ruleset, text: str, debunk: bool
) -> None:
    report = screen(segments_from_text(text), ruleset)
    assert (report.document_context == "debunk_document") == debunk
    assert report.routes_to_experts(Thresholds()) != debunk


def test_findings_per_rule_are_capped(ruleset: Ruleset) -> None:
    from rules.engine import MAX_FINDINGS_PER_RULE

    text = "这款茶能帮你排毒养颜。" * (MAX_FINDINGS_PER_RULE + 15)
    report = screen([Segment("body", text)], ruleset)
    detox = [f for f in report.findings if f.rule_id == "mechanism.detox"]
    assert len(detox) == MAX_FINDINGS_PER_RULE
    assert report.routes_to_experts(Thresholds())

"""Issue 15: the claim structure (vocabulary classes), the three named cases, word
boundaries for one-character terms, and debunk context that applies to the claims it governs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import LEVELS, Segment, load_ruleset, normalise, screen, segments_from_text
from rules.ruleset import PACK_DIR, RulePackError, Ruleset


def _level(ruleset: Ruleset, text: str) -> tuple[str, float]:
    report = screen(segments_from_text(text), ruleset)
    return report.risk_level, report.risk_score


def _fired(ruleset: Ruleset, text: str) -> set[str]:
    return {f.rule_id for f in screen(segments_from_text(text), ruleset).findings}


CLAIMS = [
    "糖尿病患者可以停用胰岛素，改喝苦瓜汁。",
    "每天喝一杯淡盐水漱口，可以杀死喉咙里的新冠病毒。",
    "天天吃生姜，流感病毒就近不了身。",
    "这款茶能帮你排毒养颜。",
    "醋泡黑豆可以根治糖尿病。",
]


@pytest.mark.parametrize("opening", ["最新研究发现，", "研究发现，", "研究表明，", "研究显示，"])
@pytest.mark.parametrize("claim", CLAIMS)
def test_an_appeal_to_research_never_lowers_the_risk(
    ruleset: Ruleset, opening: str, claim: str
) -> None:
    plain_level, plain_score = _level(ruleset, claim)
    level, score = _level(ruleset, opening + claim)
    assert plain_level != "none", claim
    assert score >= plain_score
    assert LEVELS.index(level) >= LEVELS.index(plain_level)


def test_a_fake_appeal_to_research_raises_the_risk_of_the_claim_it_introduces(
    ruleset: Ruleset,
) -> None:
    claim = "每天吃一把黑豆，糖尿病就能逆转。"
    _, plain = _level(ruleset, claim)
    _, score = _level(ruleset, "最新研究发现，" + claim)
    assert score > plain
    assert "claim.fake-research-appeal" in _fired(ruleset, "最新研究发现，" + claim)


@pytest.mark.parametrize(
    ("inside", "alone"),
    [
        ("脊髓灰质炎减毒活疫苗是口服的糖丸。", "疫苗就是毒，打了伤身。"),
        ("脊髓灰质炎减\u200b毒活疫苗是口服的糖丸。", "疫\u200b苗就是毒，打了伤身。"),
        ("脊髓灰质炎减*毒活疫苗是口服的糖丸。", "疫苗就是*毒，打了伤身。"),
        ("脊髓灰质炎减毒活疫苗是口服的糖丸。", "疫苗就是毒，打了伤身。"),
        ("脊髓灰質炎減毒活疫苗是口服的糖丸。", "疫苗就是毒，打了傷身。"),
    ],
    ids=["plain", "zero-width", "separator", "full-width", "traditional"],
)
def test_a_one_character_term_does_not_fire_inside_a_longer_word(
    ruleset: Ruleset, inside: str, alone: str
) -> None:
    assert _level(ruleset, inside) == ("none", 0.0)
    assert "covid.vaccine-fear" in _fired(ruleset, alone)  # a word of its own still counts


def test_every_kept_word_hides_the_one_character_terms_inside_it(ruleset: Ruleset) -> None:
    singles = {t for r in ruleset.rules for g in r.groups for t in g.terms if len(t) == 1}
    seg = ruleset.segmenter()
    checked = 0
    for word in sorted(ruleset.keep_whole):
        inside = singles & set(word)
        if not inside:
            continue
        tokens = seg.cut(normalise("我们说的" + word + "是这样的").text)
        assert word in tokens, word
        assert not inside & set(tokens), word
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize(
    ("text", "counter"),
    [
        ("糖尿病患者可以停用胰岛素，改喝苦瓜汁。", "糖尿病患者千万不要擅自停用胰岛素。"),
        ("高血压不用吃药了，每天喝芹菜汁就能降下来。", "在医生指导下，部分患者可以减药。"),
        (
            "得了肺癌别做化疗，天天喝灵芝孢子粉就行。",
            "网传苦瓜汁能代替胰岛素，这是谣言，停药有生命危险。",
        ),
        ("痛风病人把药扔了吧，多喝苏打水就好。", "糖尿病患者可以停用胰岛素改喝苦瓜汁吗？"),
        ("这个偏方能代替降糖药，老病号都改用它了。", "高血压患者不能停药改喝芹菜汁。"),
    ],
)
def test_stop_treatment_advice_is_critical(ruleset: Ruleset, text: str, counter: str) -> None:
    assert _level(ruleset, text)[0] == "critical", text
    assert "claim.stop-treatment" in _fired(ruleset, text)
    # advice against stopping, a debunk or a question is not stop-treatment advice
    assert "claim.stop-treatment" not in _fired(ruleset, counter)


def test_evidence_status_of_the_agent_decides(ruleset: Ruleset) -> None:
    rule = "claim.unbacked-agent-prevents-virus"
    for text in ("在屋里熏一熏白醋，流感病毒全都能杀死。", "喝高度白酒能杀灭身体里的新冠病毒。"):
        assert rule in _fired(ruleset, text), text
    for text in (
        "接种流感疫苗可以预防流感。",
        "勤洗手能降低感染病毒的风险。",
        "用75%酒精擦手可以杀灭病毒。",
    ):
        assert rule not in _fired(ruleset, text), text


def test_vocabulary_classes_are_data_with_kind_and_evidence(ruleset: Ruleset) -> None:
    vocab = ruleset.vocabulary
    assert vocab["agent.food"][0] == "agent" and vocab["agent.food"][2] == "not_backed"
    assert vocab["agent.evidence_based"][2] == "backed"
    assert "醋" in vocab["agent.food"][3] and "疫苗" in vocab["agent.evidence_based"][3]
    kinds = {kind for kind, _, _, _ in vocab.values()}
    assert kinds == {"agent", "effect", "target", "marker"}


def _pack_dir(tmp_path: Path, vocabulary: str) -> Path:
    for name in ("lexicon.toml", "domains.toml"):
        (tmp_path / name).write_text((PACK_DIR / name).read_text("utf-8"), "utf-8")
    (tmp_path / "v.toml").write_text(vocabulary, "utf-8")
    return tmp_path


RULE = """
[[rule]]
id = "t.rule"
version = 1
title = "测试"
category = "夸大疗效"
domains = ["医学健康"]
severity = "high"
pattern = { all = [["@agent:not_backed"], ["@effect"], ["@target.virus"]], window = 10 }
explanation = "测试用规则。"
must_flag = ["喝醋能杀死病毒。"]
must_pass = ["接种疫苗可以预防流感。"]
"""


def test_vocabulary_classes_are_named_from_patterns(tmp_path: Path) -> None:
    text = (
        """
[vocabulary.agent.food]
evidence = "not_backed"
terms = ["醋"]
[vocabulary.agent.vaccine]
evidence = "backed"
terms = ["疫苗"]
[vocabulary.effect.kill]
terms = ["杀死", "预防"]
[vocabulary.target.virus]
terms = ["病毒", "流感"]
"""
        + RULE
    )
    ruleset = load_ruleset(_pack_dir(tmp_path, text))
    assert ruleset.rule("t.rule").groups[0].terms == ("醋",)
    assert _fired(ruleset, "喝醋能杀死病毒。") == {"t.rule"}
    assert _fired(ruleset, "接种疫苗可以预防流感。") == set()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[vocabulary.agent.food]\nterms = ["醋"]\n', "vocabulary.agent.food.evidence"),
        ('[vocabulary.agent.food]\nevidence = "maybe"\nterms = ["醋"]\n', "evidence"),
        ('[vocabulary.effect.kill]\nevidence = "backed"\nterms = ["杀"]\n', "evidence"),
        ('[vocabulary.thing.food]\nterms = ["醋"]\n', "vocabulary.thing"),
        ('[vocabulary.agent.food]\nevidence = "backed"\nterms = []\n', "terms"),
        ("[segmentation]\nwords = []\n", "only 'keep_whole'"),
    ],
)
def test_bad_vocabulary_is_a_clear_error(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(RulePackError, match=field.replace(".", r"\.")):
        load_ruleset(_pack_dir(tmp_path, text))


FILLER = [
    "睡眠是身体修复的重要时间，成年人每晚宜睡七到八小时。",
    "规律作息有助于维持生物钟稳定，白天适当运动也能改善夜间睡眠质量。",
    "睡前一小时尽量少看屏幕，卧室保持安静、黑暗和适宜的温度。",
    "如果长期入睡困难、早醒或白天明显困倦，应当到正规医院的睡眠门诊就诊。",
]


def _article(claim: str, *, title: str) -> list[Segment]:
    paragraphs = [FILLER[i % 4] * 3 for i in range(8)]
    paragraphs.insert(4, claim)
    return [Segment("title", title), *(Segment("body", p) for p in paragraphs)]


def test_an_unrelated_claim_in_a_long_debunk_article_is_still_flagged(
    ruleset: Ruleset,
) -> None:
    claim = "糖尿病患者可以停用胰岛素，改喝苦瓜汁。"
    report = screen(_article(claim, title="辟谣：关于睡眠的五个误区"), ruleset)
    assert report.document_context == "debunk_document"
    assert any(f.rule_id == "claim.stop-treatment" for f in report.findings)
    assert report.risk_level == "critical"


def test_a_debunk_still_cancels_the_claims_it_refutes(ruleset: Ruleset) -> None:
    claim = "糖尿病患者可以停用胰岛素，改喝苦瓜汁。"
    refuted = "网上流传糖尿病患者可以停用胰岛素改喝苦瓜汁，其实这是谣言。"
    assert screen(_article(refuted, title="辟谣：关于睡眠的五个误区"), ruleset).findings == ()
    discussed = _article(claim, title="辟谣：胰岛素不能停")
    discussed.append(Segment("body", "胰岛素是糖尿病治疗的基础，停用胰岛素可能引发酮症酸中毒。"))
    assert screen(discussed, ruleset).findings == ()
    short = [Segment("title", "辟谣：这些说法都不对"), Segment("body", claim)]
    assert screen(short, ruleset).findings == ()
    # the same claim with nothing about it in a long debunk article counts
    assert screen(_article(claim, title="辟谣：关于睡眠的五个误区"), ruleset).findings

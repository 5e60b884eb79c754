"""Normalisation: evasion variants collapse, and offsets map back to the original text."""

from __future__ import annotations

import pytest

from rules import Segment, normalise, screen
from rules.ruleset import Ruleset


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("排毒", "排毒"),
        ("排*毒", "排毒"),
        ("排 毒", "排毒"),
        ("排-毒", "排毒"),
        ("排_毒", "排毒"),
        ("排·毒", "排毒"),
        ("排\u200b毒", "排毒"),
        ("排\u200d\ufe0f毒", "排毒"),
        ("排 * 毒", "排毒"),
        ("排\u3000毒", "排毒"),
        ("排毒養顏", "排毒养颜"),
        ("ＷｉＦｉ輻射", "wifi辐射"),
        ("５Ｇ基站", "5g基站"),
        ("量子\u00ad養生", "量子养生"),
        ("衞生巾裏有熒光劑", "卫生巾里有荧光剂"),  # Hong Kong variant forms
        ("發佈通知", "发布通知"),
        ("排\U000110bd毒\U0001bca0", "排毒"),  # format characters outside the BMP
        ("养\U0001d167生", "养生"),
    ],
)
def test_evasion_variants_normalise(raw: str, expected: str) -> None:
    assert normalise(raw).text == expected


@pytest.mark.parametrize(
    "raw",
    [
        "前面的话。排*毒养颜，后面",
        "ＡＢＣ排\u200b毒，排 - 毒",
        "\ud800排\udfff毒\x00end",
        "無*關 字符\u200b測試，體內毒素",
        "",
        "abc def",
    ],
)
def test_offset_map_points_at_original_characters(raw: str) -> None:
    norm = normalise(raw)
    assert norm.original_length == len(raw)
    last = -1
    for i, ch in enumerate(norm.text):
        j = norm.to_original(i)
        assert j > last
        last = j
        orig = raw[j]
        # the original character normalises to this one (alone, without its neighbours)
        assert normalise(orig).text in (ch, ch.lower()) or orig.lower() == ch


def test_span_maps_back_across_removed_separators() -> None:
    raw = "试试这款茶，排 * 毒养颜效果好"
    norm = normalise(raw)
    i = norm.text.index("排毒")
    start, end = norm.span_to_original(i, i + 2)
    assert raw[start:end] == "排 * 毒"


@pytest.mark.parametrize(
    "text",
    [
        "这款茶能帮你排毒养颜。",
        "这款茶能帮你排*毒养颜。",
        "这款茶能帮你排 毒养颜。",
        "这款茶能帮你排-毒养颜。",
        "这款茶能帮你排\u200b毒养颜。",
        "這款茶能幫你排毒養顏。",
        "这款茶能帮你ｐａｉ排毒养颜。",
    ],
)
def test_evasion_variants_are_flagged_with_original_offsets(ruleset: Ruleset, text: str) -> None:
    report = screen([Segment("body", text)], ruleset)
    hits = [f for f in report.findings if f.rule_id == "mechanism.detox"]
    assert hits, text
    f = hits[0]
    assert f.text == text[f.start : f.end]
    assert f.text.startswith("排") and f.text.endswith("毒") or "毒" in f.text


def test_normalise_many_equals_normalising_each_text() -> None:
    import random

    from rules.normalize import normalise_many

    rng = random.Random(5)
    alphabet = (
        "排毒養顏 *-_·.\u200b\ufe0f\ud800ＡＢ，！？\n乾隆頭髮abc量子5G\x00\t冶金己自经巳末来○о01"
    )
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    texts += ["", "排 毒", "\n", "養 顏\n排*毒"]
    batch = normalise_many(texts)
    for text, got in zip(texts, batch, strict=True):
        want = normalise(text)
        assert got.text == want.text, repr(text)
        assert got.original_length == want.original_length
        assert [got.to_original(i) for i in range(len(got.text))] == [
            want.to_original(i) for i in range(len(want.text))
        ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("喝小苏打能根冶癌症", "喝小苏打能根治癌症"),  # 冶 for 治
        ("这己经被证实", "这已经被证实"),  # 己 for 已
        ("巳被证实", "已被证实"),  # 巳 for 已
        ("预知末来", "预知未来"),  # 末 for 未
        ("二○二○年", "二〇二〇年"),  # a white circle for the ideographic zero
        ("vаccine", "vaccine"),  # Cyrillic а inside a Latin word
        ("Vaccіne", "vaccine"),  # Cyrillic і
        ("νaccine", "vaccine"),  # Greek ν
        ("c0vid-19", "covid-19"),  # a zero between two letters
        ("b1ood", "blood"),  # a one between two letters reads as l
    ],
)
def test_look_alike_characters_fold(raw: str, expected: str) -> None:
    assert normalise(raw).text == expected


@pytest.mark.parametrize(
    "raw",
    [
        "陶冶情操，冶金工业，冶炼厂",
        "自己经常锻炼，知己被人理解",
        "巳时出发，辛巳年",
        "周末来玩，期末被表扬，粉末",
        "卫戍部队",
        "β-胡萝卜素和γ射线，αβγ",
        "mp3、b12、co2、5g、2019-ncov",
        "100%有效",
    ],
)
def test_ordinary_text_keeps_its_characters(raw: str) -> None:
    assert normalise(raw).text == normalise(raw).text.lower()
    assert normalise(raw).text == raw.lower().replace("，", ",").replace("、", "、")


def test_a_claim_written_with_a_look_alike_is_flagged(ruleset: Ruleset) -> None:
    report = screen([Segment("body", "喝小苏打能根冶癌症。")], ruleset)
    assert any(f.text == "根冶癌症" for f in report.findings)

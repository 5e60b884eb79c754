"""Hypothesis properties of the normaliser and the engine (RELIABILITY.md scenario 26):
normalising is idempotent, format characters slipped into a claim change nothing that is
flagged, traditional (OpenCC standard and Hong Kong) spellings are flagged like simplified
ones, and every offset points back into the original text.

Derandomised (the same examples every run, as CI needs) with modest example counts; the whole
module runs in well under a minute.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import opencc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import Ruleset, Segment, load_default_ruleset, normalise, screen

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Every format character (Cf) in Unicode, astral planes included, plus the invisible
#: combining characters people use the same way (variation selectors, combining grapheme
#: joiner).
CF_CHARS = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cf"] + [
    *(chr(cp) for cp in range(0xFE00, 0xFE10)),
    "\u034f",
    "\U000e0100",
]

#: Pieces of text that exercise every step of the normaliser: CJK (simplified, traditional,
#: compatibility and Kangxi forms), separators, full-width and ASCII, surrogates and controls.
FRAGMENTS = [
    "排毒", "排*毒", "排 毒", "養顏", "量子", "能量", "审核", "審核", "⾦", "⼈", "豈", "ＷｉＦｉ",
    "５Ｇ", "100%", "１００％", "根治", "高血压", "癌症", "疫苗", "转基因", "辟谣", "并非",
    "。", "，", "！", "？", " ", "\u3000", "\n", "\t", "-", "·", "*", "_", "~", "a", "Z",
    "\u200b", "\u00ad", "\ud800", "\x00", "e\u0301", "👩\u200d🔬", "\U00020000", "𝐀",
]  # fmt: skip

vocabulary_text = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=200), vocabulary_text)


def _insert(text: str, inserts: list[tuple[int, str]]) -> str:
    for pos, ch in sorted(inserts, key=lambda p: p[0], reverse=True):
        at = pos % (len(text) + 1)
        text = text[:at] + ch + text[at:]
    return text


@lru_cache(maxsize=4)
def _opencc(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


@lru_cache(maxsize=1)
def _ruleset() -> Ruleset:
    """The repository's rules (not the session fixture: Hypothesis would print its repr)."""
    return load_default_ruleset()


@lru_cache(maxsize=1)
def _examples() -> list[str]:
    rules = _ruleset().rules
    return sorted({ex for rule in rules for ex in (*rule.must_flag, *rule.must_pass)})


def _rule_ids(text: str) -> list[str]:
    return sorted(f.rule_id for f in screen([Segment("body", text)], _ruleset()).findings)


@PROPS
@given(any_text)
def test_normalising_is_idempotent(text: str) -> None:
    once = normalise(text).text
    assert normalise(once).text == once


@PROPS
@given(any_text)
def test_every_normalised_character_maps_back_into_the_original(text: str) -> None:
    norm = normalise(text)
    assert norm.original_length == len(text)
    positions = [norm.to_original(i) for i in range(len(norm.text))]
    assert positions == sorted(set(positions))  # strictly increasing
    assert all(0 <= p < len(text) for p in positions)
    start, end = norm.span_to_original(0, len(norm.text))
    assert 0 <= start <= end <= len(text)


@PROPS
@given(vocabulary_text, st.lists(st.tuples(st.integers(0, 400), st.sampled_from(CF_CHARS))))
def test_format_characters_are_invisible_to_the_normaliser(
    text: str, inserts: list[tuple[int, str]]
) -> None:
    assert normalise(_insert(text, inserts)).text == normalise(text).text


@PROPS
@given(
    st.data(),
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from(CF_CHARS)), min_size=1, max_size=6),
)
def test_format_characters_do_not_change_findings(
    data: st.DataObject, inserts: list[tuple[int, str]]
) -> None:
    clean = data.draw(st.sampled_from(_examples()))
    dirty = _insert(clean, inserts)
    clean_report = screen([Segment("body", clean)], _ruleset())
    dirty_report = screen([Segment("body", dirty)], _ruleset())
    assert sorted(f.rule_id for f in dirty_report.findings) == sorted(
        f.rule_id for f in clean_report.findings
    )
    inserted = {ch for _, ch in inserts}
    clean_texts = sorted((f.rule_id, f.text) for f in clean_report.findings)
    dirty_texts = []
    for f in dirty_report.findings:
        assert f.text == dirty[f.start : f.end]  # offsets into the text as sent
        dirty_texts.append((f.rule_id, "".join(ch for ch in f.text if ch not in inserted)))
    assert sorted(dirty_texts) == clean_texts


@PROPS
@given(st.data(), st.sampled_from(["s2t", "s2hk"]))
def test_traditional_spellings_are_flagged_the_same(data: st.DataObject, config: str) -> None:
    simplified = data.draw(st.sampled_from(_examples()))
    traditional = _opencc(config).convert(simplified)
    assert _rule_ids(traditional) == _rule_ids(simplified)


@PROPS
@given(st.lists(st.one_of(vocabulary_text, st.text(max_size=20)), min_size=1, max_size=4))
def test_findings_point_into_the_original_segments(texts: list[str]) -> None:
    segments = [Segment("title" if n == 0 else "body", t) for n, t in enumerate(texts)]
    for f in screen(segments, _ruleset()).findings:
        assert 0 <= f.start <= f.end <= len(texts[f.segment])
        assert f.text == texts[f.segment][f.start : f.end]

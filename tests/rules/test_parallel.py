"""screen(jobs=N) on a large text gives exactly the report of one process."""

from __future__ import annotations

import pytest

import rules
from rules.engine import PARALLEL_MIN_CHARS

PARAGRAPHS = [
    "周末我们在科技馆参观了天文展览，大家都很有收获。",
    "喝小分子水可以治疗糖尿病，效果百分之百。",
    "听说城西已经爆发疫情了，大家这几天别出门。",
    "规律作息、均衡饮食有助于健康。",
    "每天吃三瓣生大蒜就能根治高血压，再也不用吃药。",
    # Traditional characters, a zero-width space and a separator: the forked processes
    # normalise their own segments and must map the offsets back the same way.
    "喝小分子水可以治療糖尿\u200b病，排*毒養顏，效果百分之百。",
]


def _big(with_source: bool) -> list[rules.Segment]:
    segments = [rules.Segment("title", "生活里的健康知识")]
    size = 0
    i = 0
    while size < PARALLEL_MIN_CHARS * 1.2:
        text = PARAGRAPHS[i % len(PARAGRAPHS)] * 3
        if with_source and i % len(PARAGRAPHS) == 2:  # a source beside the event it reports
            text += "（记者从市卫健委获悉）"
        segments.append(rules.Segment("body", text))
        size += len(text)
        i += 1
    # One rebuttal, far from the lead (after a neutral paragraph, so it rebuts nothing else):
    # only that claim counts as discussed.
    segments.append(rules.Segment("body", PARAGRAPHS[0]))
    segments.append(rules.Segment("body", "网传喝醋能软化血管，这是谣言，没有科学依据。"))
    if with_source:  # a source far from every claim vouches for none of them (long text)
        segments.append(rules.Segment("body", "（记者从市卫健委获悉）"))
    # A second title far down the text (the document-level checks read every title).
    segments.append(rules.Segment("title", "附：读者来信"))
    segments.append(rules.Segment("body", PARAGRAPHS[4]))
    return segments


@pytest.mark.parametrize("with_source", [False, True])
def test_parallel_report_equals_serial(with_source: bool) -> None:
    ruleset = rules.load_default_ruleset()
    segments = _big(with_source)
    serial = rules.screen(segments, ruleset)
    parallel = rules.screen(segments, ruleset, jobs=3)
    assert parallel == serial
    assert serial.findings, "the text holds claims"
    contexts = {f.context for f in serial.suppressed}
    assert "refutation" in contexts
    assert ("sourced" in contexts) is with_source
    # Offsets point into the original text, also in the segments with removed characters.
    for f in serial.findings + serial.suppressed:
        assert segments[f.segment].text[f.start : f.end] == f.text
    assert any("\u200b" in f.text or "療" in f.text for f in parallel.findings)


def test_small_texts_stay_in_one_process() -> None:
    ruleset = rules.load_default_ruleset()
    segments = [rules.Segment("body", PARAGRAPHS[1])]
    assert rules.screen(segments, ruleset, jobs=4) == rules.screen(segments, ruleset)


def test_parallel_report_equals_serial_in_a_long_debunk_document() -> None:
    """The debunk context of a long document is scoped to the claims it governs (a cue near
    the claim, or the claim's subject named in the scanned prefix): the forked processes
    must decide it exactly as one process does, also far beyond the prefix."""
    ruleset = rules.load_default_ruleset()
    segments = [rules.Segment("title", "辟谣：这些健康说法不靠谱")] + _big(False)[1:]
    # A claim whose subject the document does not discuss (the paragraphs above speak of
    # 糖尿病 and 高血压, so those claims count as discussed).
    segments.append(rules.Segment("body", "得了肺癌别做化疗，天天喝灵芝孢子粉就行。"))
    serial = rules.screen(segments, ruleset)
    assert serial.document_context == "debunk_document"
    assert rules.screen(segments, ruleset, jobs=3) == serial
    assert any(f.rule_id == "claim.stop-treatment" for f in serial.findings)
    assert any(f.context == "debunk_document" for f in serial.suppressed)

"""Hypothesis properties of the parsers that read what clients upload or write (RELIABILITY.md
scenario 26): subtitle files (any bytes give cues or a Chinese refusal; written cues read back
exactly in UTF-8, UTF-8 with BOM and GB18030), Markdown articles (no script, event handler,
foreign tag or dangerous URL survives rendering) and the expert CSV import (any bytes give rows
or a listed refusal; Chinese cells round-trip, formula escapes included). Pure: no app, no
database. Derandomised with modest example counts."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expert_pool.csv_io import CsvError, CsvImportError, _escape, parse_experts_csv
from review.errors import InvalidInput
from review.rendering import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, URL_SCHEMES, render_markdown
from review.subtitles import parse, to_srt

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
LINE_CHARS = st.one_of(
    CJK,
    st.sampled_from(list("abcXYZ0123456789，。！？“”、（）《》%·—… ")),
)
line = st.text(LINE_CHARS, min_size=1, max_size=30).map(str.strip).filter(bool)


# --- subtitles ----------------------------------------------------------------------------------


@st.composite
def cue_lists(draw: st.DrawFn) -> list[tuple[float, float, str]]:
    cues = []
    at = draw(st.integers(0, 5000))
    for _ in range(draw(st.integers(1, 8))):
        length = draw(st.integers(0, 8000))
        text = "\n".join(draw(st.lists(line, min_size=1, max_size=2)))
        cues.append((at / 1000, (at + length) / 1000, text))
        at += length + draw(st.integers(0, 3000))
    return cues


@PROPS
@given(cue_lists(), st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_written_cues_read_back_exactly(
    cues: list[tuple[float, float, str]], encoding: str
) -> None:
    parsed = parse(to_srt(cues).encode(encoding), name="x.srt")
    assert parsed.format == "srt"
    assert parsed.cues == cues


SUBTITLE_PIECES = [
    "1\n", "00:00:01,000 --> 00:00:02,000\n", "00:00:03.5 --> 00:00:01.0\n", "WEBVTT\n\n",
    "NOTE x\n", "[Script Info]\n", "[Events]\n", "Format: Start, End, Text\n",
    "Dialogue: 0:00:01.00,0:00:02.00,{\\b1}喝水\\N排毒\n", "Dialogue: x,y\n", "-->", "\n\n",
    "<i>量子</i>", "根治高血压", "\x00", "\r\n", "99:99:99,999 --> 1:2\n", "\ufeff",
]  # fmt: skip
subtitle_text = st.lists(st.sampled_from(SUBTITLE_PIECES), max_size=20).map("".join)


@PROPS
@given(
    st.one_of(
        st.binary(max_size=300),
        subtitle_text.map(lambda t: t.encode("utf-8")),
        subtitle_text.map(lambda t: t.encode("gb18030")),
        subtitle_text.map(lambda t: t.encode("utf-16")),
    )
)
def test_any_bytes_give_cues_or_a_chinese_refusal(raw: bytes) -> None:
    try:
        parsed = parse(raw, name="字幕.srt")
    except InvalidInput as exc:
        assert exc.extra.get("field") == "subtitles"
        assert any("\u4e00" <= ch <= "\u9fff" for ch in exc.message)
        return
    assert parsed.cues and parsed.format in ("srt", "vtt", "ass")
    for start, end, text in parsed.cues:
        assert 0 <= start <= end
        assert text and "\x00" not in text
        text.encode("utf-8")  # storable: no lone surrogate


# --- Markdown rendering -------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))", "[x](java\nscript:alert(1))", "![i](javascript:alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)", "[x](vbscript:msgbox)",
    "<a href='javascript:alert(1)'>a</a>", "<svg onload=alert(1)>", "<iframe src=//x></iframe>",
    "<style>*{}</style>", "<div onclick=alert(1)>d</div>", "<object data=x>", "&lt;script&gt;",
    "[x](&#106;avascript:alert(1))", "<math><mi xlink:href=javascript:1>", "`<script>`",
    "**粗体**", "# 标题\n", "> 引用\n", "- 列表\n", "1. 一\n", "\n\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "~~删除~~", "[链接](https://example.org/a?b=1&c=<x>)", "<", ">", "\"", "'", "喝水排毒",
    "<scr<script>ipt>", "<a href=\"https://x\" onmouseover=\"alert(1)\">y</a>", "\\", "*", "_",
]  # fmt: skip
markdown = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=10)), max_size=25).map(
    "".join
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@PROPS
@given(markdown)
def test_no_script_survives_rendering(source: str) -> None:
    html = str(render_markdown(source))
    collector = _Collector()
    collector.feed(html)
    collector.close()
    for tag, attrs in collector.tags:
        assert tag in ALLOWED_TAGS, (tag, html)
        for name, value in attrs:
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()) | {"rel"}, (tag, name, html)
            if name == "href" and value:
                scheme = value.split(":", 1)[0].lower() if ":" in value.split("/", 1)[0] else ""
                assert scheme in ("", *URL_SCHEMES), (value, html)
    lowered = html.lower()
    assert "<script" not in lowered and "<iframe" not in lowered and "<svg" not in lowered


# --- expert CSV import ---------------------------------------------------------------------------


@PROPS
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.sampled_from(["用户名", "姓名", ",", "\n", '"', "=1+1", "\x00", "是", "医学健康"])
        )
        .map("".join)
        .map(lambda t: t.encode("gb18030")),
    )
)
def test_any_csv_bytes_give_rows_or_a_listed_refusal(raw: bytes) -> None:
    try:
        rows = parse_experts_csv(raw)
    except CsvImportError as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return
    except CsvError as exc:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in str(exc))
        return
    for row in rows:
        assert row.username and "\x00" not in row.username


cell = st.text(st.one_of(CJK, st.sampled_from(list("=+-@'·（）abc 0"))), max_size=20).map(str.strip)


@PROPS
@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9_]{2,15}", fullmatch=True), cell, cell),
        min_size=1,
        max_size=6,
        unique_by=lambda r: r[0],
    ),
    st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
)
def test_chinese_cells_round_trip_through_csv(
    rows: list[tuple[str, str, str]], encoding: str
) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["用户名", "姓名", "职称"])
    for username, name, title in rows:
        writer.writerow([username, _escape(name), _escape(title)])
    parsed = parse_experts_csv(out.getvalue().encode(encoding))
    # an empty 姓名 keeps the stored name (absent), an empty 职称 clears it ("")
    assert [(r.username, r.values.get("name"), r.values.get("title")) for r in parsed] == [
        (u, n or None, t) for u, n, t in rows
    ]

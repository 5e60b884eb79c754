"""visible_text: what screening reads is what the page shows, mapped back to the stored text.

Properties over arbitrary Markdown (CJK, Latin, markup, character references, CRLF): every
visible character comes from a stored span that produces it, the spans run forward, and the
visible text holds exactly the characters of the rendered page."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from review.rendering import decode_references, render_markdown, shown_passages, visible_text

_PIECES = st.sampled_from(
    [
        "根",
        "治",
        "癌",
        "症",
        "喝",
        "。",
        "，",
        "a",
        "b",
        "1",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\n\n",
        "*",
        "**",
        "_",
        "`",
        "``",
        "~~",
        "#",
        "# ",
        "> ",
        "- ",
        "1. ",
        "    ",
        "```\n",
        "|",
        "|-|-|\n",
        "[",
        "]",
        "(",
        ")",
        "](u)",
        '](u "t a")',
        "![",
        "!",
        "\\",
        "\\*",
        "&",
        ";",
        "&#",
        "&#26681;",
        "&#x6CBB;",
        "&amp;",
        "&lt;",
        "&nbsp;",
        "&#8203;",
        "&bogus;",
        "<",
        ">",
        "<b>",
        "<http://a.b/c>",
        "\u200b",
    ]
)
MARKDOWN = st.lists(_PIECES, max_size=40).map("".join)


def _produces(stored: str, shown: str) -> bool:
    """True when the stored characters are what the page turns into ``shown``."""
    if stored == shown or (shown == "\n" and stored in ("\r\n", "\r")):
        return True
    if stored.startswith("&") and stored.endswith(";"):
        return shown in html.unescape(stored)
    if stored.startswith("\\"):  # an escape: "\\*" shows "*", "\\根" shows both
        return shown in stored
    if shown in " \n" and stored.strip(" \\") in ("\n", "\r\n", "\r"):
        return True  # a line break shown as a space (inline code, Latin text) or a break
    if shown == "\ufffd" and stored == "\0":
        return True
    return stored.startswith("![")  # an image without alt text is shown as its address


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _page_text(source: str) -> str:
    parser = _Text()
    parser.feed(str(render_markdown(source)))
    parser.close()
    return "".join(parser.parts)


def _ink(text: str) -> str:
    return re.sub(r"\s", "", text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(MARKDOWN, st.booleans())
@example("&#26681;&#27835;&#30284;&#30151;", True)
@example("[根](u '治 根') 根\r\n治", True)
def test_every_visible_character_maps_to_stored_text_that_produces_it(
    source: str, join: bool
) -> None:
    shown = visible_text(source, join=join)
    assert len(shown.starts) == len(shown.ends) == len(shown.text)
    previous = 0
    for ch, start, end in zip(shown.text, shown.starts, shown.ends, strict=True):
        assert 0 <= start <= end <= len(source)
        assert start >= previous, (source, shown.text)
        previous = start
        if start == end:
            assert ch in "\n，", (source, shown.text, ch)  # added by the page itself
        else:
            assert _produces(source[start:end], ch), (source, shown.text, ch, source[start:end])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(MARKDOWN)
def test_visible_text_holds_exactly_the_characters_of_the_page(source: str) -> None:
    shown = visible_text(source)
    added = "".join(
        ch if start != end or ch != "，" else ""
        for ch, start, end in zip(shown.text, shown.starts, shown.ends, strict=True)
    )
    assert _ink(added) == _ink(_page_text(source)), source


@pytest.mark.parametrize(
    ("source", "shown", "claim", "stored"),
    [
        ("文中说&#21917;&#23567;苏打。", "文中说喝小苏打。", "喝小", "&#21917;&#23567;"),
        ("根&#8203;治癌症", "根\u200b治癌症", "根\u200b治", "根&#8203;治"),
        ("喝小苏打能根\n治癌症", "喝小苏打能根治癌症", "根治", "根\n治"),
        ("喝小苏打能根\r\n治癌症", "喝小苏打能根治癌症", "根治", "根\r\n治"),
        ("**根**治*癌症*", "根治癌症", "根治", "根**治"),
        ("# [根治](http://x)癌症", "根治癌症", "治癌", "治](http://x)癌"),
        ("> 根`治`癌症", "根治癌症", "根治", "根`治"),
        ("| 根 | &#27835; |\n|-|-|\n", "根，治", "根，治", "根 | &#27835;"),
    ],
)
def test_evasions_read_as_shown_and_map_back(
    source: str, shown: str, claim: str, stored: str
) -> None:
    visible = visible_text(source)
    assert visible.text == shown
    at = shown.index(claim)
    start, end = visible.to_source(at, at + len(claim))
    assert source[start:end] == stored


def test_a_line_break_is_read_as_a_wrapped_line_or_as_a_break() -> None:
    wrapped = visible_text("喝小苏打能根\n治癌症。\n这是谣言")
    assert wrapped.text == "喝小苏打能根治癌症。\n这是谣言"
    assert wrapped.joins == (6,)
    assert wrapped.crosses_join(5, 9) and not wrapped.crosses_join(6, 9)
    lines = visible_text("喝小苏打能根\n治癌症。\n这是谣言", join=False)
    assert lines.text == "喝小苏打能根\n治癌症。\n这是谣言"
    assert lines.joins == ()


def test_a_heading_and_a_paragraph_stay_apart() -> None:
    assert visible_text("# 根\n\n治癌症").text == "根\n治癌症"
    assert visible_text("Vitamin C\ncures cancer").text == "Vitamin C cures cancer"
    assert visible_text("健康提示：\n每天喝水").text == "健康提示：\n每天喝水"


def test_references_in_plain_text_are_decoded_with_their_span() -> None:
    decoded = decode_references("根&#27835;癌症 &bogus; &amp")
    assert decoded.text == "根治癌症 &bogus; &amp"
    assert decoded.to_source(0, 2) == (0, 9)
    cue = decode_references("根\r\n治癌症\nab\ncd")
    assert cue.text == "根治癌症\nab cd"
    assert cue.to_source(0, 2) == (0, 4)
    assert decode_references("根\n治", join=False).text == "根\n治"


def test_pages_show_what_readers_see_of_a_finding_written_otherwise() -> None:
    class F:
        def __init__(self, id: int, segment: str, start: int, end: int, text: str) -> None:
            self.id, self.segment, self.start, self.end, self.text = id, segment, start, end, text

    body = "多喝水。&#26681;&#27835;癌症，根**治**。"
    title = "&#26681;治"
    findings = [
        F(1, "body", 4, 20, body[4:20]),
        F(2, "body", 4, 22, body[4:22]),
        F(3, "title", 0, len(title), title),
        F(4, "body", 0, 3, "多喝水"),  # written as read: nothing to add
        F(5, "cue", 0, 0, "&#27835;愈"),
    ]
    assert shown_passages(title, body, findings) == {1: "根治", 2: "根治癌症", 3: "根治", 5: "治愈"}

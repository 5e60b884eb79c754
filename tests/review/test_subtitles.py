"""Subtitle files: SRT, WebVTT and ASS in UTF-8 (with or without BOM) and GBK/GB18030."""

from __future__ import annotations

import pytest

from review.errors import InvalidInput
from review.subtitles import merge_lines, parse, to_srt

SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\n第一句\n\n"
    "2\n00:00:03,000 --> 00:00:06,000\n喝小分子水能根治高血压\n"
)
VTT = (
    "WEBVTT\n\nNOTE 注释不是字幕\n\n00:01.000 --> 00:02.500 align:start\n<v 主持人>第一句</v>\n\n"
    "cue-2\n00:00:03.000 --> 00:00:06.000\n喝小分子水能根治高血压\n"
)
ASS = (
    "[Script Info]\nTitle: 测试\n\n[V4+ Styles]\nFormat: Name, Fontname\nStyle: Default,Arial\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    "Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\b1}第一句\n"
    "Dialogue: 0,0:00:03.00,0:00:06.00,Default,,0,0,0,,喝小分子水能根治高血压，\\N一次见效\n"
)
EXPECTED = [(1.0, 2.5, "第一句"), (3.0, 6.0, "喝小分子水能根治高血压")]


@pytest.mark.parametrize(
    ("raw", "fmt", "encoding"),
    [
        (SRT.encode("utf-8"), "srt", "utf-8"),
        (b"\xef\xbb\xbf" + SRT.replace("\n", "\r\n").encode("utf-8"), "srt", "utf-8-sig"),
        (SRT.encode("gbk"), "srt", "gb18030"),
        (SRT.encode("gb18030"), "srt", "gb18030"),
        (VTT.encode("utf-8"), "vtt", "utf-8"),
        (VTT.encode("gbk"), "vtt", "gb18030"),
    ],
    ids=["srt-utf8", "srt-bom-crlf", "srt-gbk", "srt-gb18030", "vtt-utf8", "vtt-gbk"],
)
def test_srt_and_vtt_give_the_same_cues(raw: bytes, fmt: str, encoding: str) -> None:
    parsed = parse(raw, name="x")
    assert (parsed.format, parsed.encoding) == (fmt, encoding)
    assert parsed.cues == EXPECTED


def test_ass_dialogue_lines_without_override_tags() -> None:
    parsed = parse(ASS.encode("gbk"), name="a.ass")
    assert parsed.format == "ass" and parsed.encoding == "gb18030"
    assert parsed.cues == [(1.0, 2.5, "第一句"), (3.0, 6.0, "喝小分子水能根治高血压，\n一次见效")]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_subtitle"),
        ("一些没有时间轴的文字".encode(), "invalid_subtitle"),
        (bytes(range(128, 256)) * 4, "invalid_subtitle_encoding"),
        (b"1\n00:00:01,000 --> xx\nabc\n", "invalid_subtitle"),
    ],
    ids=["empty", "no-timing", "binary", "bad-timing"],
)
def test_bad_files_are_refused_in_chinese(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(raw, name="坏字幕.srt")
    assert info.value.code == code
    assert "坏字幕.srt" in info.value.message


def test_ocr_lines_merge_into_cues() -> None:
    samples = [(0.0, ""), (1.0, "第一句"), (2.0, "第一句"), (3.0, "第 二句"), (4.0, "")]
    assert merge_lines(samples, step=1.0) == [(1.0, 3.0, "第一句"), (3.0, 4.0, "第 二句")]
    # A gap longer than a step splits a repeated line into two cues.
    assert merge_lines([(0.0, "甲"), (5.0, "甲")], step=1.0) == [(0.0, 1.0, "甲"), (5.0, 6.0, "甲")]


def test_srt_round_trip() -> None:
    assert parse(to_srt(EXPECTED).encode(), name="r.srt").cues == EXPECTED


@pytest.mark.parametrize(
    ("fps", "duration", "max_frames", "expected"),
    [
        (1.0, 60.0, 7200, 1.0),  # a short video: every second
        (1.0, 4 * 3600.0, 7200, 0.5),  # four hours: every other second, 7,200 frames in all
        (2.0, 10.0, 4, 0.4),
        (0.0, 60.0, 7200, 0.0),  # OCR off
        (1.0, 60.0, 0, 0.0),
        (1.0, 0.0, 7200, 1.0),  # unknown duration
    ],
)
def test_ocr_rate_keeps_long_videos_inside_the_frame_budget(
    fps: float, duration: float, max_frames: int, expected: float
) -> None:
    from review.media import ocr_rate

    rate = ocr_rate(fps, duration, max_frames)
    assert rate == pytest.approx(expected)
    if rate and duration:
        assert rate * duration <= max_frames + 1e-9

"""Subtitle files (SRT, WebVTT, ASS/SSA) decoded and parsed into cues; pure, no I/O.

A cue is ``(start_seconds, end_seconds, text)``. Files arrive in UTF-8 (with or without a BOM),
or in GBK/GB18030 as many Chinese subtitle tools still write them; anything else is refused
with a Chinese message rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from review.errors import InvalidInput

Cue = tuple[float, float, str]

FORMATS = ("srt", "vtt", "ass")
_FORMAT_OF_EXTENSION = {"srt": "srt", "vtt": "vtt", "webvtt": "vtt", "ass": "ass", "ssa": "ass"}


@dataclass(frozen=True)
class ParsedSubtitles:
    """A decoded and parsed subtitle file."""

    format: str
    encoding: str
    cues: list[Cue]


def decode(raw: bytes, *, name: str = "") -> tuple[str, str]:
    """Text and encoding: UTF-8 (BOM stripped), else GB18030 (a superset of GBK), else refuse."""
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            pass
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    else:
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
        try:
            return raw.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            pass
    raise InvalidInput(
        f"字幕文件“{name}”的编码无法识别：请使用 UTF-8 或 GBK/GB18030 编码保存",
        code="invalid_subtitle_encoding",
        field="subtitles",
    )


def sniff_format(text: str, *, name: str = "") -> str:
    """The subtitle format from the content, falling back to the file extension."""
    head = text.lstrip("\ufeff \t\r\n")[:2000]
    if head.startswith("WEBVTT"):
        return "vtt"
    if "[Script Info]" in head or re.search(r"^\[V4\+? Styles\]", head, re.M):
        return "ass"
    if re.match(r"\d+\s*\r?\n\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->", head):
        return "srt"
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _FORMAT_OF_EXTENSION:
        return _FORMAT_OF_EXTENSION[ext]
    raise InvalidInput(
        f"无法识别字幕文件“{name}”的格式：支持 SRT、WebVTT 和 ASS",
        code="invalid_subtitle_format",
        field="subtitles",
    )


_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?")
_TAG = re.compile(r"<[^>]{0,200}>")
_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")


def _seconds(stamp: str) -> float:
    match = _TIME.fullmatch(stamp.strip())
    if not match:
        raise ValueError(stamp)
    hours, minutes, seconds, frac = match.groups()
    # whole milliseconds first: 1 + 243/1000 would give 1.2429999999999999, not 1.243
    ms = (int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)) * 1000
    ms += int(frac.ljust(3, "0")) if frac else 0
    return ms / 1000


def _clean(text: str) -> str:
    lines = [_TAG.sub("", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def _parse_blocks(text: str, *, name: str, vtt: bool) -> list[Cue]:
    cues: list[Cue] = []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    for block in blocks:
        lines = [line for line in block.strip("\n").split("\n")]
        arrow = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if arrow is None:
            continue  # WEBVTT header, NOTE, STYLE, REGION or a stray number
        if vtt and lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        left, _, right = lines[arrow].partition("-->")
        right = right.strip().split()[0] if right.strip() else ""  # drop VTT cue settings
        try:
            start, end = _seconds(left), _seconds(right)
        except ValueError:
            raise InvalidInput(
                f"字幕文件“{name}”的时间轴格式错误：{lines[arrow].strip()[:80]}",
                code="invalid_subtitle",
                field="subtitles",
            ) from None
        body = _clean("\n".join(lines[arrow + 1 :]))
        if body and end >= start:
            cues.append((start, end, body))
    return cues


def _parse_ass(text: str, *, name: str) -> list[Cue]:
    cues: list[Cue] = []
    fields: list[str] | None = None
    section = ""
    for raw_line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw_line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.lower()
            continue
        if section != "[events]":
            continue
        key, _, value = line.partition(":")
        if key == "Format":
            fields = [f.strip().lower() for f in value.split(",")]
        elif key == "Dialogue" and fields:
            parts = value.split(",", len(fields) - 1)
            if len(parts) < len(fields):
                continue
            row = dict(zip(fields, (p.strip() for p in parts), strict=True))
            try:
                start, end = _seconds(row["start"]), _seconds(row["end"])
            except (KeyError, ValueError):
                raise InvalidInput(
                    f"字幕文件“{name}”的对白行格式错误：{line[:80]}",
                    code="invalid_subtitle",
                    field="subtitles",
                ) from None
            body = _ASS_OVERRIDE.sub("", row.get("text", ""))
            body = body.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
            body = _clean(body)
            if body and end >= start:
                cues.append((start, end, body))
    return sorted(cues, key=lambda c: (c[0], c[1]))


def parse_text(text: str, fmt: str, *, name: str = "") -> list[Cue]:
    """Cues of a decoded subtitle text in ``fmt`` (srt, vtt or ass)."""
    if fmt == "ass":
        return _parse_ass(text, name=name)
    return _parse_blocks(text, name=name, vtt=fmt == "vtt")


def parse(raw: bytes, *, name: str = "") -> ParsedSubtitles:
    """Decode, detect the format and parse; refuses a file that yields no cue."""
    if not raw.strip():
        raise InvalidInput(f"字幕文件“{name}”是空的", code="invalid_subtitle", field="subtitles")
    text, encoding = decode(raw, name=name)
    if "\x00" in text:
        raise InvalidInput(
            f"字幕文件“{name}”含有非法的空字符，不是文本字幕",
            code="invalid_subtitle",
            field="subtitles",
        )
    fmt = sniff_format(text, name=name)
    cues = parse_text(text, fmt, name=name)
    if not cues:
        raise InvalidInput(
            f"字幕文件“{name}”中没有找到任何带时间轴的字幕",
            code="invalid_subtitle",
            field="subtitles",
        )
    return ParsedSubtitles(fmt, encoding, cues)


def merge_lines(samples: list[tuple[float, str]], *, step: float) -> list[Cue]:
    """Merge OCR lines read from frames sampled every ``step`` seconds into cues.

    Consecutive samples with the same (whitespace-normalised) text form one cue from the first
    sample's time to one step after the last; an empty sample ends the current cue.
    """
    cues: list[Cue] = []
    current: list[Any] | None = None
    for at, text in samples:
        line = " ".join(text.split())
        if current is not None and line == current[2] and at - current[1] <= step * 1.5:
            current[1] = at + step
            continue
        if current is not None:
            cues.append((round(current[0], 3), round(current[1], 3), current[2]))
            current = None
        if line:
            current = [at, at + step, line]
    if current is not None:
        cues.append((round(current[0], 3), round(current[1], 3), current[2]))
    return cues


def to_srt(cues: list[Cue]) -> str:
    """Cues written back as SRT (used to keep a readable copy of derived sources)."""

    def stamp(value: float) -> str:
        ms = int(round(value * 1000))
        hours, minutes, secs = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
        return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms % 1000:03d}"

    return "".join(
        f"{i}\n{stamp(s)} --> {stamp(e)}\n{t}\n\n" for i, (s, e, t) in enumerate(cues, start=1)
    )

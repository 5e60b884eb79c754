"""Test videos made with ffmpeg on the spot (none are committed): plain, with an embedded
subtitle track, and with a Chinese line burned into the picture with drawtext."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

CLAIM = "喝小分子水能根治高血压"
#: The burned-in or subtitled claim is on screen from CLAIM_START to CLAIM_END seconds.
CLAIM_START, CLAIM_END = 3.0, 6.0
DURATION = 8

SRT = (
    "1\n00:00:00,500 --> 00:00:02,500\n大家好，欢迎收看本期节目\n\n"
    f"2\n00:00:03,000 --> 00:00:06,000\n{CLAIM}\n\n"
    "3\n00:00:06,500 --> 00:00:07,500\n谢谢观看\n"
)


def cjk_font() -> str:
    """A CJK font file for drawtext (Debian's fonts-noto-cjk)."""
    for pattern in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/**/NotoSansCJK*.ttc",
        "/usr/share/fonts/**/*CJK*.tt[cf]",
    ):
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0]
    raise AssertionError("no CJK font: apt-get install fonts-noto-cjk")


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


def plain_video(path: Path, *, seconds: int = DURATION, size: str = "320x240") -> Path:
    """A small H.264 + AAC MP4 without any text."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", str(path),
    )  # fmt: skip
    return path


def video_with_embedded_track(path: Path, srt: Path) -> Path:
    """An MP4 whose subtitle track (mov_text) carries the SRT's cues."""
    source = plain_video(path.with_name(path.stem + "-src.mp4"))
    _ffmpeg(
        "-i", str(source), "-i", str(srt), "-map", "0", "-map", "1",
        "-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text",
        "-metadata:s:s:0", "language=chi", str(path),
    )  # fmt: skip
    return path


def video_with_burned_claim(path: Path) -> Path:
    """A 640x360 MP4 with CLAIM drawn in white near the bottom from CLAIM_START to CLAIM_END."""
    font = cjk_font()
    text = (
        f"drawtext=fontfile={font}:text='{CLAIM}':fontcolor=white:fontsize=32"
        f":x=(w-tw)/2:y=h-60:enable='between(t,{CLAIM_START:g},{CLAIM_END - 0.01:g})'"
    )
    _ffmpeg(
        "-f", "lavfi", "-i", f"color=c=0x203040:s=640x360:d={DURATION}:r=10",
        "-vf", text, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def webm_video(path: Path) -> Path:
    """A small VP9 WebM."""
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-b:v", "200k", str(path),
    )  # fmt: skip
    return path

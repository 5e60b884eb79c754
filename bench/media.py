"""Benchmark of the video steps (issue 7). Run: python bench/media.py [--seconds 60] [--size WxH]

Makes its own test video with ffmpeg (a moving test pattern with a tone, a Chinese line burned
in at the bottom that changes every few seconds, and the same lines as an embedded subtitle
track), then times each step the platform runs on an upload, the same functions the web and
the media worker call:
  * upload check: SHA-256, box structure, ffprobe, one decoded frame (``ingest_video``);
  * embedded subtitle extraction with ffmpeg and parsing;
  * OCR of burned-in subtitles: frame sampling plus RapidOCR (first call includes loading the
    models, reported separately);
  * thumbnail.
It prints seconds of processing per minute of video for each step. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from review import media, ocr, subtitles  # noqa: E402
from tests.media_files import cjk_font  # noqa: E402

LINES = [
    "大家好，欢迎收看健康科普节目",
    "今天我们聊一聊饮水的常识",
    "喝小分子水能根治高血压",
    "这种说法没有科学依据",
    "高血压需要在医生指导下规范治疗",
    "感谢收看，我们下期再见",
]
EVERY = 4  # seconds per line


def make_video(folder: Path, seconds: int, size: str) -> tuple[Path, int]:
    """The test video and how many distinct subtitle lines it shows."""
    cues = []
    srt = []
    filters = []
    for n, start in enumerate(range(0, seconds, EVERY)):
        line = LINES[n % len(LINES)]
        end = min(start + EVERY - 0.5, seconds)
        cues.append((start, end, line))
        srt.append(subtitles.to_srt([(float(start), float(end), line)]).split("\n", 1)[1])
        filters.append(
            f"drawtext=fontfile={cjk_font()}:text='{line}':fontcolor=white:fontsize=h/18"
            f":box=1:boxcolor=black@0.5:x=(w-tw)/2:y=h-h/8:enable='between(t,{start},{end})'"
        )
    srt_path = folder / "lines.srt"
    srt_path.write_text(
        "".join(f"{i}\n{block}" for i, block in enumerate(srt, start=1)), encoding="utf-8"
    )
    path = folder / "bench.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}",
         "-i", str(srt_path), "-map", "0:v", "-map", "1:a", "-map", "2:s",
         "-vf", ",".join(filters), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-c:s", "mov_text", "-metadata:s:s:0", "language=chi", str(path)],
        check=True,
    )  # fmt: skip
    return path, len(cues)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the test video")
    parser.add_argument("--size", default="1280x720", help="picture size, e.g. 1920x1080")
    parser.add_argument("--fps", type=float, default=1.0, help="OCR samples per second")
    args = parser.parse_args()
    tools = media.Tools()
    folder = Path(tempfile.mkdtemp(prefix="kepu-bench-media-"))
    try:
        started = time.perf_counter()
        video, lines = make_video(folder, args.seconds, args.size)
        made = time.perf_counter() - started
        size_mb = video.stat().st_size / 1e6
        print(f"test video: {args.seconds} s, {args.size}, {size_mb:.1f} MB, {lines} lines")
        print(f"(made in {made:.1f} s)")
        store = folder / "media"
        upload = media.open_upload(store, 10 * 1024**3)
        with video.open("rb") as src:
            shutil.copyfileobj(src, upload)
        timings: dict[str, float] = {}

        t = time.perf_counter()
        info = media.ingest_video(upload, folder=store, tools=tools)
        timings["upload check (hash, ffprobe, decode)"] = time.perf_counter() - t
        stored = str(store / info.file_name)

        t = time.perf_counter()
        raw = media.extract_subtitle_track(stored, 0, tools)
        embedded = subtitles.parse(raw, name="track.srt").cues
        timings["embedded subtitles (ffmpeg + parse)"] = time.perf_counter() - t

        t = time.perf_counter()
        ocr.engine()
        load = time.perf_counter() - t

        t = time.perf_counter()
        frames = list(media.sample_frames(stored, info, fps=args.fps, tools=tools))
        timings[f"frame sampling ({args.fps:g} fps, bottom third)"] = time.perf_counter() - t
        t = time.perf_counter()
        cues, stats = ocr.read_frames(iter(frames), step=1 / args.fps)
        timings["OCR of sampled frames"] = time.perf_counter() - t

        t = time.perf_counter()
        media.make_thumbnail(stored, info, store / "thumb.jpg", tools)
        timings["thumbnail"] = time.perf_counter() - t

        minutes = info.duration / 60
        print(f"\n{'step':45} {'seconds':>9} {'s per minute of video':>22}")
        for name, seconds in timings.items():
            print(f"{name:45} {seconds:9.2f} {seconds / minutes:22.2f}")
        total = sum(timings.values())
        print(f"{'total':45} {total:9.2f} {total / minutes:22.2f}")
        print(f"\nOCR model load (once per worker process): {load:.2f} s")
        print(f"OCR frames: {stats}")
        found = {c[2] for c in cues}
        exact = sum(1 for line in set(LINES[:lines]) if line in found)
        print(f"embedded cues: {len(embedded)}; OCR cues: {len(cues)}, "
              f"{exact} of {min(lines, len(LINES))} distinct lines read exactly")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

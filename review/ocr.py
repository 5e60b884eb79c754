"""Burned-in subtitles: OCR of the subtitle band of sampled frames, merged into timed cues.

The engine is RapidOCR on onnxruntime with the PP-OCR Chinese models shipped inside the
``rapidocr-onnxruntime`` wheel: it runs offline and never downloads anything. Frames that
barely differ from the previous one reuse its text, and flat frames (no text-like contrast)
are not read at all, so a talking-head video costs far less than one OCR call per sample.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from review.subtitles import Cue, merge_lines

log = logging.getLogger(__name__)

MIN_SCORE = 0.6
#: Mean absolute pixel difference below which a frame counts as unchanged.
SAME_FRAME = 1.5
#: Frames whose brightest and darkest pixels differ less than this carry no text.
FLAT_FRAME = 48

_engine: Any = None
_lock = threading.Lock()


def engine() -> Any:
    """The OCR engine, loaded once per process (its models come from the installed package)."""
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # The subtitle band is wide and short: with RapidOCR's default ("min" side 736) the
            # detector would upscale a 960x240 band about 4x and run ~50x slower. Limit the
            # long side instead; one thread per process (scale with worker processes).
            _engine = RapidOCR(det_limit_type="max", det_limit_side_len=960, intra_op_num_threads=1)
        return _engine


def read_lines(image: Any) -> str:
    """The text in one image (a BGR array), boxes joined top to bottom, left to right."""
    result, _elapsed = engine()(image, use_cls=False)  # subtitles are upright
    boxes = []
    for box, text, score in result or []:
        if float(score) < MIN_SCORE or not str(text).strip():
            continue
        top = min(p[1] for p in box)
        left = min(p[0] for p in box)
        boxes.append((round(top / 20), left, str(text).strip()))
    boxes.sort()
    lines: list[str] = []
    row: int | None = None
    for top, _left, text in boxes:
        if row is not None and top == row:
            lines[-1] += " " + text
        else:
            lines.append(text)
            row = top
    return " ".join(lines)


def read_frames(
    frames: Iterable[tuple[float, bytes, Any]],
    *,
    step: float,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[Cue], dict[str, int]]:
    """OCR sampled frames (time, raw BGR bytes, geometry) and merge the lines into cues."""
    import numpy as np

    samples: list[tuple[float, str]] = []
    stats = {"frames": 0, "read": 0, "reused": 0, "blank": 0}
    previous: Any = None
    previous_text = ""
    for at, raw, geometry in frames:
        stats["frames"] += 1
        image = np.frombuffer(raw, dtype=np.uint8).reshape(geometry.height, geometry.width, 3)
        if (
            previous is not None
            and float(np.mean(np.abs(image.astype(np.int16) - previous.astype(np.int16))))
            < SAME_FRAME
        ):
            stats["reused"] += 1
            text = previous_text
        elif int(image.max()) - int(image.min()) < FLAT_FRAME:
            stats["blank"] += 1
            text = ""
        else:
            stats["read"] += 1
            text = read_lines(image)
        samples.append((at, text))
        previous, previous_text = image, text
        if progress is not None:
            progress(at)
    return merge_lines(samples, step=step), stats

"""The OCR engine runs from models inside its installed package (no download at run time)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from review import ocr


def test_models_ship_inside_the_package() -> None:
    import rapidocr_onnxruntime

    package = Path(rapidocr_onnxruntime.__file__).parent
    config = (package / "config.yaml").read_text(encoding="utf-8")
    paths = re.findall(r"model_path:\s*(\S+)", config)
    assert len(paths) == 3
    for rel in paths:
        model = package / rel
        assert model.is_file() and model.stat().st_size > 100_000, model


def test_reading_a_frame_opens_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the OCR engine tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(ocr, "_engine", None)  # load the models afresh, under the guard
    blank = np.full((120, 640, 3), 40, dtype=np.uint8)
    assert ocr.read_lines(blank) == ""

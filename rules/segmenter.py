"""Word segmentation backends: jieba (reference) and rjieba (Rust port, same dictionary).

Each segmenter is private to a ruleset: every rule term is added to its dictionary with the
same fixed frequency, so both backends keep the terms whole and give the same tokens.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import Protocol

# A fixed frequency for added terms: high enough to keep a term whole, low enough not to
# swallow characters of neighbouring dictionary words. Explicit so both backends agree.
TERM_FREQ = 1000

BACKENDS: tuple[str, ...] = ("jieba", "rjieba")


class Segmenter(Protocol):
    """Something that splits a clause into tokens whose concatenation is the clause."""

    name: str

    def cut(self, text: str) -> list[str]: ...


def _import_jieba() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba  # type: ignore[import-untyped, unused-ignore]

    jieba.setLogLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
    return jieba


def rjieba_available() -> bool:
    """True when the rjieba package is importable."""
    try:
        import rjieba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """Map "auto" to the fastest installed backend and validate explicit names."""
    if name == "auto":
        return "rjieba" if rjieba_available() else "jieba"
    if name not in BACKENDS:
        raise ValueError(f"unknown segmenter {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    if name == "rjieba" and not rjieba_available():
        raise ValueError("segmenter 'rjieba' requested but the rjieba package is not installed")
    return name


class JiebaSegmenter:
    """The reference backend: a private jieba.Tokenizer with the rule terms added."""

    name = "jieba"

    def __init__(self, words: Iterable[str]) -> None:
        jieba = _import_jieba()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tok = jieba.Tokenizer()  # type: ignore[attr-defined]
            tok.initialize()
        freq = tok.FREQ
        for word in sorted(set(words)):
            if not freq.get(word):
                tok.add_word(word, TERM_FREQ)
        self._tok = tok

    def cut(self, text: str) -> list[str]:
        """Segment text without HMM new-word guessing (deterministic across backends)."""
        result: list[str] = self._tok.lcut(text, HMM=False)
        return result


class RjiebaSegmenter:
    """The fast backend: rjieba with the same dictionary and the same added terms."""

    name = "rjieba"

    def __init__(self, words: Iterable[str]) -> None:
        import rjieba

        jb = rjieba.Jieba()
        for word in sorted(set(words)):
            if not jb.has_word(word):
                jb.add_word(word, TERM_FREQ, None)
        self._jb = jb

    def cut(self, text: str) -> list[str]:
        """Segment text without HMM new-word guessing."""
        return self._jb.cut(text, False)


def make_segmenter(name: str, words: Iterable[str]) -> Segmenter:
    """Build a segmenter for a backend name (already resolved) with the given extra words."""
    if name == "jieba":
        return JiebaSegmenter(words)
    if name == "rjieba":
        return RjiebaSegmenter(words)
    raise ValueError(f"unknown segmenter {name!r}")

"""Text normalisation for matching, with a map from normalised offsets back to the original.

Steps: a 1:1 character table (NFKC where it maps one character to one character, ASCII
lower-casing, control characters to spaces), deletion of format characters, combining marks
and lone surrogates, deletion of short separator runs between two CJK characters (the
排*毒 / 排 毒 / 排-毒 evasion), then traditional → simplified Chinese with OpenCC where the
conversion keeps the length, then look-alike characters folded to the ones rule terms use
(confusables.toml: 根冶 → 根治, Cyrillic а in a Latin word → a, c0vid → covid). Only
deletions change the length, so the offset map is a sorted list of deletion points and costs
nothing for clean text.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Separators people insert between characters to evade keyword filters.
_SEPARATORS = " \t*\\-_·•.~|/\\\\+^`=×・‧∙°"
_SEP_RUN = re.compile(f"(?<=[{_CJK}])[{_SEPARATORS}]{{1,3}}(?=[{_CJK}])")
_LINE_SPLIT = re.compile(r"[^\n]*\n|[^\n]+")


_DELETED = "\ue000"  # private-use: every character to delete is first mapped to it
_DELETION = re.compile("[\ue000\ud800-\udfff]")


# Non-BMP characters that are invisible or combining (tags, variation selectors supplement,
# musical/combining symbols) — the rest of the astral planes is left as it is.
_ASTRAL_DELETE = ((0xE0000, 0xE007F), (0xE0100, 0xE01EF), (0x1D167, 0x1D169), (0x1D173, 0x1D182))


def _map_code_point(cp: int) -> str | int:
    """The 1:1 normalisation of one code point (an int when it maps to itself)."""
    if 0xD800 <= cp <= 0xDFFF or 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF:
        return cp
    if cp in (0x2028, 0x2029):
        return "\n"
    if any(lo <= cp <= hi for lo, hi in _ASTRAL_DELETE):
        return _DELETED
    ch = chr(cp)
    cat = unicodedata.category(ch)
    if cp > 0xFFFF and cat in ("Cf", "Mn", "Me"):
        return _DELETED  # invisible format controls and combining marks of the astral planes
    if cp > 0xFFFF and not 0x1D400 <= cp < 0x1D800:
        return cp  # the rest of the astral planes (mathematical look-alikes excepted)
    if cp <= 0xFFFF and (cat in ("Cf", "Mn", "Me", "Co") or 0xFE00 <= cp <= 0xFE0F):
        return _DELETED
    if cat == "Cc":
        return cp if ch == "\n" else " "
    if cp < 0x80:
        return ch.lower() if "A" <= ch <= "Z" else cp
    mapped = unicodedata.normalize("NFKC", ch)
    if len(mapped) == 1 and mapped != ch:
        return mapped.lower() if "A" <= mapped <= "Z" else mapped
    return cp


class _Table(dict[int, "str | int"]):
    """The translation table, filled on demand: str.translate looks every character up, and
    a missing one is computed once. Building all 65,536 BMP entries up front cost a tenth
    of a second at every start-up."""

    def __missing__(self, cp: int) -> str | int:
        value = _map_code_point(cp)
        self[cp] = value
        return value


@lru_cache(maxsize=1)
def _tables() -> dict[int, str | int]:
    """The 1:1 translation table (one per process, filled as characters are seen)."""
    return _Table()


@lru_cache(maxsize=1)
def _converter() -> object:
    # hk2s = Hong Kong variant forms (衞, 裏, 佈…) to standard traditional, then t2s; plain t2s
    # left those variants unconverted, so "衞生巾裏" escaped rules written as "卫生巾里".
    # (tw2s is not used: it turns 著 into 着 in simplified text such as 显著 and 著名.)
    import opencc

    return opencc.OpenCC("hk2s")


# Characters the table leaves alone: CJK ideographs, lower-case ASCII, newline and the CJK
# punctuation NFKC does not touch. Only runs of other characters go through str.translate
# (a per-character dictionary lookup); the common full-width punctuation is replaced first
# with str.replace, which runs at memory speed.
_SAFE = "\u3400-\u4dbf\u4e00-\u9fff\n !-@\\[-`a-~。、“”‘’《》〈〉【】「」『』…—·"
_UNSAFE_RUN = re.compile(f"[^{_SAFE}]+")
_FULLWIDTH = "，！？：；（）％＋－＝［］～\u3000０１２３４５６７８９"


@lru_cache(maxsize=1)
def _fullwidth_pairs() -> tuple[tuple[str, str], ...]:
    table = _tables()
    pairs = []
    for ch in _FULLWIDTH:
        target = table[ord(ch)]
        pairs.append((ch, target if isinstance(target, str) else chr(target)))
    return tuple(pairs)


def _translate(text: str) -> str:
    """Equivalent to text.translate(_tables()), faster on mostly-clean Chinese text."""
    table = _tables()
    for src, dst in _fullwidth_pairs():
        if src in text:
            text = text.replace(src, dst)
    return _UNSAFE_RUN.sub(lambda m: m.group(0).translate(table), text)


def to_simplified(text: str) -> str:
    """Convert traditional to simplified Chinese line by line, keeping the length; lines
    without a character that t2s converts on its own are left as they are."""
    trad = _traditional()
    if not text or trad.search(text) is None:
        return text
    conv = _converter()
    out: list[str] = []
    for m in _LINE_SPLIT.finditer(text):
        line = m.group(0)
        if trad.search(line) is None:
            out.append(line)
            continue
        converted: str = conv.convert(line)  # type: ignore[attr-defined]
        if len(converted) != len(line):
            converted = "".join(_one_char(conv, ch) for ch in line)
        out.append(converted)
    return "".join(out)


@lru_cache(maxsize=1)
def _traditional() -> re.Pattern[str]:
    """Characters that t2s changes on their own; text without any is left untouched (the
    converter is the slowest step of normalisation on long simplified text)."""
    conv = _converter()
    chars = [chr(cp) for cp in range(0x3400, 0xA000)] + [chr(cp) for cp in range(0xF900, 0xFB00)]
    converted: str = conv.convert("\n".join(chars))  # type: ignore[attr-defined]
    parts = converted.split("\n")
    if len(parts) != len(chars):  # pragma: no cover - defensive, per-character fallback
        parts = [_one_char(conv, ch) for ch in chars]
    changed = [ch for ch, new in zip(chars, parts, strict=True) if new != ch]
    return re.compile("[" + "".join(changed) + "]")


def _one_char(conv: object, ch: str) -> str:
    converted: str = conv.convert(ch)  # type: ignore[attr-defined]
    return converted if len(converted) == 1 else ch


CONFUSABLES_FILE = Path(__file__).resolve().parent / "confusables.toml"


@dataclass(frozen=True)
class _Confusables:
    """The look-alike table of confusables.toml, compiled."""

    cjk: dict[str, tuple[str, tuple[str, ...]]]  # char -> (folded, only before these)
    words: re.Pattern[str]  # a word to keep as it is, or a CJK look-alike
    latin: dict[int, str]  # str.translate table of the homoglyphs
    digits: dict[str, str]  # a digit written for a letter
    latin_run: re.Pattern[str]  # a word of Latin letters, homoglyphs and digits
    latin_hint: re.Pattern[str]  # text that may need a Latin fold at all
    digit_fold: re.Pattern[str]  # a 0/1 between two Latin letters


@lru_cache(maxsize=1)
def _confusables() -> _Confusables:
    data = tomllib.loads(CONFUSABLES_FILE.read_text(encoding="utf-8"))
    cjk: dict[str, tuple[str, tuple[str, ...]]] = {}
    keep: set[str] = set()
    for entry in data.get("cjk", []):
        char, folded = str(entry["char"]), str(entry["to"])
        if len(char) != 1 or len(folded) != 1:
            raise ValueError(f"confusables.toml: {char!r} → {folded!r} is not one for one")
        cjk[char] = (folded, tuple(str(w) for w in entry.get("only_before", [])))
        keep.update(str(w) for w in entry.get("keep", []))
    alternatives = [re.escape(w) for w in sorted(keep, key=len, reverse=True)]
    alternatives.append("[" + re.escape("".join(cjk)) + "]")
    latin = data.get("latin", {})
    glyphs = {str(k): str(v) for k, v in latin.get("homoglyphs", {}).items()}
    digits = {str(k): str(v) for k, v in latin.get("digits", {}).items()}
    for key, value in (glyphs | digits).items():
        if len(key) != 1 or len(value) != 1:
            raise ValueError(f"confusables.toml: {key!r} → {value!r} is not one for one")
    glyph_class = re.escape("".join(glyphs))
    digit_class = re.escape("".join(digits))
    return _Confusables(
        cjk=cjk,
        words=re.compile("|".join(alternatives)),
        latin={ord(k): v for k, v in glyphs.items()},
        digits=digits,
        latin_run=re.compile(f"[a-z0-9{glyph_class}]+"),
        latin_hint=re.compile(f"[{glyph_class}]|[a-z][{digit_class}][a-z]"),
        digit_fold=re.compile(f"(?<=[a-z])[{digit_class}](?=[a-z])"),
    )


def fold_confusables(text: str) -> str:
    """Fold look-alike characters to the characters rule terms are written with, keeping the
    length: a CJK look-alike outside the words it belongs to (冶 → 治, but 冶金 stays), and
    inside a word with Latin letters the Cyrillic/Greek homoglyphs and the digits 0/1 between
    two letters."""
    table = _confusables()
    if any(ch in text for ch in table.cjk):

        def fold(m: re.Match[str]) -> str:
            found = m.group(0)
            if len(found) != 1 or found not in table.cjk:
                return found  # a word the character belongs to
            folded, only_before = table.cjk[found]
            if only_before and not text.startswith(only_before, m.end()):
                return found
            return folded

        text = table.words.sub(fold, text)
    if table.latin_hint.search(text) is not None:
        text = table.latin_run.sub(lambda m: _fold_latin(m.group(0), table), text)
    return text


def _fold_latin(word: str, table: _Confusables) -> str:
    """One run of letters and digits: folded only when it has a Latin letter of its own."""
    if not any("a" <= ch <= "z" for ch in word):
        return word
    word = word.translate(table.latin)
    return table.digit_fold.sub(lambda m: table.digits[m.group(0)], word)


@dataclass(frozen=True)
class Normalised:
    """Normalised text plus the offset map back into the original text."""

    text: str
    original_length: int
    _gaps: array  # type: ignore[type-arg]

    def to_original(self, index: int) -> int:
        """Map a normalised character index to the index of its original character."""
        return index + bisect_right(self._gaps, index)

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a normalised half-open span to the original half-open span."""
        if end <= start:
            pos = self.to_original(start) if start < len(self.text) else self.original_length
            return pos, pos
        return self.to_original(start), self.to_original(end - 1) + 1


def _normalise_core(text: str) -> tuple[str, list[int]]:
    """Normalised text and the sorted original indices of removed characters."""
    mapped = _translate(text)
    deletion = _DELETION
    removed: list[int] = []
    if deletion.search(mapped) is not None:
        removed = [m.start() for m in deletion.finditer(mapped)]
        mapped = deletion.sub("", mapped)
    if _SEP_RUN.search(mapped) is not None:
        second = [i for m in _SEP_RUN.finditer(mapped) for i in range(m.start(), m.end())]
        mapped = _SEP_RUN.sub("", mapped)
        removed = _merge_removals(removed, second)
    return fold_confusables(to_simplified(mapped)), removed


def _gaps(removed: list[int]) -> array:  # type: ignore[type-arg]
    return array("q", (pos - j for j, pos in enumerate(removed)))


def normalise(text: str) -> Normalised:
    """Normalise text for matching and keep a map back to the original offsets."""
    simplified, removed = _normalise_core(text)
    return Normalised(simplified, len(text), _gaps(removed))


def normalise_many(texts: Sequence[str]) -> list[Normalised]:
    """normalise() of each text, done in one pass over the texts joined by newlines.

    Every step is local and never touches or crosses a newline (separator stripping needs
    CJK on both sides, t2s works line by line), so the result equals normalising each text
    on its own; one pass saves the per-call overhead on documents of many short lines."""
    if len(texts) < 2:
        return [normalise(t) for t in texts]
    simplified, removed = _normalise_core("\n".join(texts))
    out: list[Normalised] = []
    start = 0
    for text in texts:
        end = start + len(text)
        lo = bisect_left(removed, start)
        hi = bisect_left(removed, end)
        n_start = start - lo
        n_end = end - hi
        local = [r - start for r in removed[lo:hi]]
        out.append(Normalised(simplified[n_start:n_end], len(text), _gaps(local)))
        start = end + 1
    return out


def _merge_removals(first: list[int], second: list[int]) -> list[int]:
    """Combine removals of a second pass (indices into the once-reduced text) with the first."""
    if not first:
        return second
    gaps = array("q", (pos - j for j, pos in enumerate(first)))
    lifted = [i + bisect_right(gaps, i) for i in second]
    return sorted(first + lifted)


@lru_cache(maxsize=65536)
def normalise_term(term: str) -> str:
    """Normalise a rule term the same way as the text it is matched against."""
    return normalise(term).text

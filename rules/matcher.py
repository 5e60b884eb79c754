"""Find every (overlapping) occurrence of many literal terms in a text.

With pyahocorasick installed, one Aho-Corasick pass finds them. The automaton runs over the
text encoded as UTF-32-BE bytes (viewed as latin-1 characters): pyahocorasick searches a
node's children linearly, and over raw Chinese text the root has one child per distinct
first character — thousands with a large rule set, which made it ten times slower at 10,000
rules. Over bytes every node has at most 256 children (the root has one), every character
is exactly four bytes, so offsets divide by four and a hit that does not start on a
character boundary is discarded. Without pyahocorasick, a pure-Python index keyed by the
terms' first two characters gives the same occurrences.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import add

try:  # optional accelerator
    import ahocorasick as _ahocorasick  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - exercised when the package is absent
    _ahocorasick = None

_WIDTH = 4


def has_automaton() -> bool:
    """True when pyahocorasick is importable."""
    return _ahocorasick is not None


def _wide(text: str) -> str:
    return text.encode("utf-32-be", "surrogatepass").decode("latin-1")


class TermIndex:
    """A set of literal terms that can be located in a text in one pass."""

    def __init__(self, terms: Iterable[str], *, use_automaton: bool | None = None) -> None:
        self.terms: frozenset[str] = frozenset(t for t in terms if t)
        use = has_automaton() if use_automaton is None else use_automaton
        if use and _ahocorasick is None:
            raise RuntimeError("pyahocorasick is not installed")
        self.backend = "ahocorasick" if use else "python"
        self._automaton: object | None = None
        self._by_pair: dict[str, tuple[str, ...]] = {}
        self._pairs: frozenset[str] = frozenset()
        self._singles: frozenset[str] = frozenset()
        if not self.terms:
            return
        if use:
            automaton = _ahocorasick.Automaton()
            for term in self.terms:
                automaton.add_word(_wide(term), (term, _WIDTH * len(term), len(term)))
            automaton.make_automaton()
            self._automaton = automaton
            return
        by_pair: dict[str, list[str]] = {}
        for term in self.terms:
            if len(term) >= 2:
                by_pair.setdefault(term[:2], []).append(term)
        self._by_pair = {k: tuple(v) for k, v in by_pair.items()}
        self._pairs = frozenset(self._by_pair)
        self._singles = frozenset(t for t in self.terms if len(t) == 1)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Return (start, end, term) for every occurrence, in no particular order."""
        if not self.terms or not text:
            return []
        if self._automaton is not None:
            # A hit that does not start on a character boundary (4 bytes per character)
            # is an artefact of the byte view and is dropped.
            return [
                (start >> 2, (start >> 2) + n, term)
                for end, (term, wide_len, n) in self._automaton.iter(  # type: ignore[attr-defined]
                    _wide(text)
                )
                if not (start := end + 1 - wide_len) & 3
            ]
        return self._find_python(text)

    def _find_python(self, text: str) -> list[tuple[int, int, str]]:
        hits: list[tuple[int, int, str]] = []
        for ch in self._singles.intersection(text):
            i = text.find(ch)
            while i >= 0:
                hits.append((i, i + 1, ch))
                i = text.find(ch, i + 1)
        if len(text) >= 2:
            for pair in self._pairs.intersection(map(add, text, text[1:])):
                for term in self._by_pair[pair]:
                    n = len(term)
                    i = text.find(term)
                    while i >= 0:
                        hits.append((i, i + n, term))
                        i = text.find(term, i + 1)
        return hits

    def present(self, text: str) -> set[str]:
        """The terms that occur in text at least once."""
        return {term for _, _, term in self.find(text)}

    def count(self, text: str) -> dict[str, int]:
        """How often each occurring term occurs (overlapping occurrences counted)."""
        counts: dict[str, int] = {}
        for _, _, term in self.find(text):
            counts[term] = counts.get(term, 0) + 1
        return counts

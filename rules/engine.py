"""The screening pass: gate, segment, match, weigh context, score."""

from __future__ import annotations

import multiprocessing
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .context import (
    ATTRIBUTION,
    DOCUMENT_STRONG,
    HEDGED,
    MULTIPLIER,
    NEGATION,
    QUESTION,
    REFUTATION,
)
from .model import SEGMENT_KINDS, Finding, Report, Segment, Thresholds
from .normalize import Normalised, normalise, normalise_many
from .ruleset import Rule, Ruleset
from .segmenter import Segmenter, resolve_backend

# A plainly asserted critical claim (stop the treatment …) reaches "critical" on its own.
SEVERITY_WEIGHT: dict[str, float] = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 6.0}
MAX_SENTENCE = 400
LEAD_CHARS = 80
DOCUMENT_WEIGHT_LIMIT = 3
NEAR_NEGATION = 10
MAX_COMBINATIONS = 400
# Below this many characters a version is screened in one process even when jobs > 1: forking
# costs more than it saves.
PARALLEL_MIN_CHARS = 200_000
OVERLAP_FACTOR = 0.25
MAX_FINDINGS_PER_RULE = 20
# Document-level signals (debunk cues, domain keywords) are read from the first part of very
# long texts only: enough to judge a document, and it keeps a 10 MB text cheap.
DOCUMENT_SCAN_CHARS = 200_000
DOMAIN_SCAN_CHARS = 200_000
# A debunk document up to this many characters (a fact-check card, a short 辟谣 post) refutes
# every claim in it; in a longer one a claim counts as refuted only with a debunk cue within
# LOCAL_DEBUNK_CHARS of it (its paragraph, the end of the one before, the start of the next).
SHORT_DOCUMENT_CHARS = 600
LOCAL_DEBUNK_CHARS = 150
# In a longer document a named source (通报、记者…) vouches only for what stands within this
# many characters of it; a short text's source vouches for all of it.
LOCAL_SOURCE_CHARS = 300

_SENTENCE = re.compile(r"[^。!?;…\n]*(?:[。!?;…\n]+|$)")
_CLAUSE_BREAK = re.compile(r"[,、:]")
# A claim followed by a sentence that rebuts it (a heading then its debunk, or "……。这是谣言。").
# Only explicit rebuttals: a bare 不会/不能 in the next sentence is as likely to continue
# the claim ("……。医生不会告诉你……") as to deny it.
_NEXT_REBUTTAL = tuple(sorted(t for t in REFUTATION if len(t) >= 2)) + (
    "并不是",
    "并没有",
    "没有证据",
    "并非",
)
_NEXT_REBUTTAL_RE = re.compile(
    "|".join(re.escape(t) for t in sorted(_NEXT_REBUTTAL, key=len, reverse=True))
)
NEXT_WINDOW = 40
HEADLINE_CHARS = 60
HEADLINE_BODY_CHARS = 300
# A heading and its body on one line: up to HEADLINE_CHARS characters without sentence
# punctuation, then whitespace, then text.
_HEAD_END = "。！？；!?;…"
_HEAD_GAP = re.compile(
    rf"\s*([^{_HEAD_END}\s][^{_HEAD_END}\n]{{3,{HEADLINE_CHARS}}}?)[ \t\u3000]+(?=\S)"
)
# One of these in the body's opening is enough on its own.
_STRONG_REBUTTAL = frozenset(t for t in REFUTATION if len(t) >= 2) | {
    "并不是",
    "并非",
    "不能说明",
    "没有证据",
    "经核查",
    "经核实",
    "荒谬",
    "子虚乌有",
    "张冠李戴",
    "混为一谈",
    "已澄清",
}
_REBUTTAL_RE = re.compile(
    "|".join(
        re.escape(t)
        for t in sorted(
            {t for t in REFUTATION if len(t) >= 2}
            | {
                "并不是",
                "并不",
                "并没有",
                "并非",
                "没有证据",
                "没有任何",
                "不能说明",
                "达不到",
                "效果不佳",
                "没什么作用",
                "目前没有",
                "还没有",
                "缺乏",
                "不一定",
                "无法",
                "不太可能",
                "并不会",
                "经核查",
                "经核实",
                "已回应",
                "已澄清",
                "并不意味着",
                "不代表",
                "不足以",
                # Rebuttals in fact-check prose that name no "rumour" as such.
                "荒谬",
                "根本不是",
                "不是一回事",
                "两回事",
                "混为一谈",
                "不可能",
                "站不住脚",
                "不成立",
                "断章取义",
                "张冠李戴",
                "子虚乌有",
                "并无",
                "不准确",
            },
            key=len,
            reverse=True,
        )
    )
)
_EXCLAIMS = re.compile("竟然|居然")
_CANCELLING = frozenset({"refutation", "negation", "question", "debunk_document"})


class ScreeningInputError(ValueError):
    """The segments passed to screen() are not usable (wrong type or kind)."""


_Sentence = tuple[int, int]  # (start, end) offsets of a sentence in normalised text


@dataclass
class _Hit:
    rule: Rule
    segment: int
    start: int  # offsets into the segment: normalised while matching, then original
    end: int
    context: str | None


def split_sentences(text: str) -> list[_Sentence]:
    """Split normalised text into sentences, keeping terminators, capping very long ones."""
    out: list[_Sentence] = []
    for m in _SENTENCE.finditer(text):
        a, b = m.span()
        if a == b:
            continue
        while b - a > MAX_SENTENCE:
            cut = text.rfind(",", a + 1, a + MAX_SENTENCE)
            cut = cut + 1 if cut > a else a + MAX_SENTENCE
            out.append((a, cut))
            a = cut
        out.append((a, b))
    return out


def _validate(segments: Sequence[Segment]) -> None:
    if isinstance(segments, (str, bytes)):
        raise ScreeningInputError("segments must be a sequence of Segment, not a string")
    for i, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise ScreeningInputError(f"segment {i} is not a Segment")
        if not isinstance(seg.text, str):
            raise ScreeningInputError(f"segment {i}: text must be a str")
        if seg.kind not in SEGMENT_KINDS:
            raise ScreeningInputError(f"segment {i}: kind must be one of {SEGMENT_KINDS}")


def document_is_debunk(
    norms: Sequence[str], kinds: Sequence[str], ruleset: Ruleset, head_split: int | None = None
) -> bool:
    """True when the title/lead carries a strong debunk cue or the text carries many cues.
    `head_split`: where the body starts in the first segment when a heading shares its line
    (see `heading_split`)."""
    lead_parts = [t for t, k in zip(norms, kinds, strict=True) if k == "title"]
    body = [t for t, k in zip(norms, kinds, strict=True) if k != "title"]
    if body:
        first = body[0]
        sentences = split_sentences(first)
        lead_end = sentences[0][1] if sentences else 0
        lead_parts.append(first[: max(lead_end, min(len(first), LEAD_CHARS))])
    lead = "\n".join(lead_parts)
    if not DOCUMENT_STRONG.isdisjoint(ruleset.document_index.present(lead)):
        return True
    if _headline_rebutted(norms, kinds, head_split):
        return True
    # A headline that asks ("……真的能治病吗") needs less evidence from the body.
    limit = DOCUMENT_WEIGHT_LIMIT - 1 if _asks(norms, kinds) else DOCUMENT_WEIGHT_LIMIT
    seen: set[str] = set()
    weight = 0
    for text in _prefix(norms, DOCUMENT_SCAN_CHARS):
        for term in ruleset.document_index.present(text) - seen:
            seen.add(term)
            weight += 2 if term in DOCUMENT_STRONG else 1
            if weight >= limit:
                return True
    return False


def heading_split(original: str, norm: Normalised) -> int | None:
    """Where the body starts (a normalised offset) when a line opens with a short heading
    without sentence punctuation followed by a run of spaces ("claim  explanation …"). Read
    on the original text: normalisation removes spaces between CJK characters."""
    gap = _HEAD_GAP.match(original)
    if gap is None:
        return None
    cut = gap.end()
    lo, hi = 0, len(norm.text)
    while lo < hi:  # first normalised index that maps at or after the cut
        mid = (lo + hi) // 2
        if norm.to_original(mid) < cut:
            lo = mid + 1
        else:
            hi = mid
    return lo if 0 < lo < len(norm.text) else None


def _asks(norms: Sequence[str], kinds: Sequence[str]) -> bool:
    """True when the title (or a short first line) is a question."""
    heads = [i for i, k in enumerate(kinds) if k == "title"]
    first = heads[0] if heads else 0
    if first >= len(norms):
        return False
    head = norms[first].strip().rstrip("\"'”’」』】)")
    if not head or len(head) > HEADLINE_CHARS:
        return False
    return head.endswith(("?", "吗", "么", "呢")) or "是真的吗" in head or "真的吗" in head


def _headline_rebutted(
    norms: Sequence[str], kinds: Sequence[str], head_split: int | None = None
) -> bool:
    """A short headline (a title, or a first line without a full stop) followed by a body
    whose opening rebuts it, in at least two different ways, is a debunk: the common
    "claim as heading, explanation below" format of fact-check cards and 辟谣 articles."""
    heads = [i for i, k in enumerate(kinds) if k == "title"]
    first = heads[0] if heads else 0
    if first >= len(norms):
        return False
    headline = norms[first].strip()
    following = norms[first + 1] if first + 1 < len(norms) else ""
    if not heads and head_split is not None:
        # A heading pasted on the body's line ("claim  explanation …").
        headline = norms[first][:head_split].strip()
        following = norms[first][head_split:]
    if not headline or len(headline) > HEADLINE_CHARS or not following:
        return False
    if not heads and headline[-1] in "。!;…":
        return False
    body = following[:HEADLINE_BODY_CHARS]
    found = {m.group(0) for m in _REBUTTAL_RE.finditer(body)}
    return len(found) >= 2 or not found.isdisjoint(_STRONG_REBUTTAL)


class _SentenceView:
    """Tokens and token-aligned term occurrences of one sentence (cues found on demand)."""

    def __init__(
        self,
        text: str,
        segmenter: Segmenter,
        ruleset: Ruleset,
        raw: list[tuple[int, int, str]],
    ) -> None:
        self.text = text
        self._ruleset = ruleset
        self.research_appeals = ruleset.research_appeals
        tokens = segmenter.cut(text) if text else []
        bounds = [0]
        for tok in tokens:
            bounds.append(bounds[-1] + len(tok))
        self.bounds = bounds
        self._bset = set(bounds)
        self.occ: dict[str, list[tuple[int, int]]] = {}
        for a, b, term in raw:
            if _aligned(a, b, self._bset):
                self.occ.setdefault(term, []).append((a, b))
        self._cues: dict[str, list[tuple[int, int]]] | None = None
        self.clause_breaks = [m.start() for m in _CLAUSE_BREAK.finditer(text)]

    def token_index(self, offset: int) -> int:
        return bisect_right(self.bounds, offset) - 1

    def same_clause(self, a: int, b: int) -> bool:
        return bisect_left(self.clause_breaks, a) == bisect_left(self.clause_breaks, b)

    def clause_start(self, offset: int) -> int:
        i = bisect_left(self.clause_breaks, offset)
        return self.clause_breaks[i - 1] + 1 if i > 0 else 0

    def cues(self, words: frozenset[str]) -> list[tuple[int, int, str]]:
        if self._cues is None:
            found: dict[str, list[tuple[int, int]]] = {}
            for a, b, term in self._ruleset.cue_index.find(self.text):
                if _aligned(a, b, self._bset):
                    found.setdefault(term, []).append((a, b))
            self._cues = found
        return [(a, b, t) for t, spans in self._cues.items() if t in words for a, b in spans]


def _aligned(a: int, b: int, bounds: set[int]) -> bool:
    """Token alignment: one-character terms must be whole tokens, two-character terms must
    start or end on a token boundary, longer terms are specific enough on their own."""
    length = b - a
    if length >= 3:
        return True
    if length == 2:
        return a in bounds or b in bounds
    return a in bounds and b in bounds


def _within_research_appeal(view: _SentenceView, term: str) -> bool:
    """True when every occurrence of a rule's `not` term lies inside an appeal to unnamed
    research (研究发现, 科学家证实 …): a `not = ["研究"]` meant for a cited study must not let
    "最新研究发现，" switch a claim off."""
    appeals = [span for t in view.research_appeals if t != term for span in view.occ.get(t, ())]
    return bool(appeals) and all(
        any(a <= x and y <= b for a, b in appeals) for x, y in view.occ[term]
    )


def _group_spans(view: _SentenceView, rule: Rule, gi: int) -> list[tuple[int, int]]:
    group = rule.groups[gi]
    spans: list[tuple[int, int]] = []
    members = group.term_set
    for term, found in view.occ.items():
        if term in members:
            spans.extend(found)
    for rx in group.regexes:
        spans.extend(m.span() for m in rx.finditer(view.text) if m.end() > m.start())
    spans.sort()
    return spans


def _fits(view: _SentenceView, rule: Rule, chosen: list[tuple[int, int]]) -> bool:
    lo = min(a for a, _ in chosen)
    hi = max(b for _, b in chosen)
    if rule.window and view.token_index(hi - 1) - view.token_index(lo) + 1 > rule.window:
        return False
    return rule.scope != "clause" or view.same_clause(lo, hi - 1)


def match_rule(view: _SentenceView, rule: Rule) -> list[tuple[int, int]] | None:
    """Return the matched term spans of the first occurrence of the rule, or None."""
    for term in rule.exclude:
        if term in view.occ and not _within_research_appeal(view, term):
            return None
    per_group = [_group_spans(view, rule, gi) for gi in range(len(rule.groups))]
    if any(not spans for spans in per_group):
        return None
    first = 0 if rule.ordered else rule.anchor
    rest = [spans for gi, spans in enumerate(per_group) if gi != first]
    budget = [MAX_COMBINATIONS]
    for start in per_group[first]:
        found = _search(view, rule, [start], rest, budget)
        if found is not None:
            return found
        if budget[0] <= 0:
            break
    return None


def _search(
    view: _SentenceView,
    rule: Rule,
    chosen: list[tuple[int, int]],
    rest: list[list[tuple[int, int]]],
    budget: list[int],
) -> list[tuple[int, int]] | None:
    """Depth-first choice of one span per remaining group: non-overlapping, in order when the
    rule is ordered, nearest to the first span otherwise; bounded so no input can explode."""
    if not rest:
        return chosen if _fits(view, rule, chosen) else None
    candidates = [(a, b) for a, b in rest[0] if not any(a < cb and ca < b for ca, cb in chosen)]
    if rule.ordered:
        prev_end = chosen[-1][1]
        candidates = [(a, b) for a, b in candidates if a >= prev_end]
    else:
        a0, b0 = chosen[0]
        candidates.sort(key=lambda sp: min(abs(sp[0] - b0), abs(a0 - sp[1])))
    for span in candidates:
        budget[0] -= 1
        if budget[0] <= 0:
            return None
        found = _search(view, rule, [*chosen, span], rest[1:], budget)
        if found is not None:
            return found
    return None


def _context(
    view: _SentenceView,
    rule: Rule,
    spans: list[tuple[int, int]],
    next_sentence: str,
    covered: Callable[[], bool],
) -> str | None:
    """The context of a hit; `covered()` tells (asked only when nothing in the sentence
    refutes the claim) whether the document's debunk context applies to it."""
    lo = min(a for a, _ in spans)
    hi = max(b for _, b in spans)
    # A cue that overlaps any occurrence of the rule's own terms is part of the claim
    # ("……是骗局" in a conspiracy rule), not a comment on it.
    terms = rule.all_terms
    inside = [sp for t, found in view.occ.items() if t in terms for sp in found]
    inside.extend(spans)

    def outside(a: int, b: int) -> bool:
        return not any(a < sb and sa < b for sa, sb in inside)

    if any(outside(a, b) for a, b, _ in view.cues(REFUTATION)):
        return "refutation"
    if _NEXT_REBUTTAL_RE.search(next_sentence, 0, NEXT_WINDOW):
        return "refutation"
    if covered():
        return "debunk_document"
    ignore = rule.ignore_contexts
    if "negation" not in ignore:
        near = max(view.clause_start(lo), lo - NEAR_NEGATION)
        for a, b, _ in view.cues(NEGATION):
            if near <= a and b <= hi and outside(a, b):
                return "negation"
    if "question" not in ignore:
        stripped = view.text.rstrip(" \n\"'”’)）」』】")
        # "……竟然成像不同？" exclaims rather than asks: a question mark alone does not make
        # a sentence with 竟然/居然 a question (a question word such as 吗 still does).
        asks = stripped.endswith("?") and not _EXCLAIMS.search(view.text)
        if asks or any(outside(a, b) for a, b, _ in view.cues(QUESTION)):
            return "question"
    if "attribution" not in ignore:
        for a, b, _ in view.cues(ATTRIBUTION):
            if a < hi and outside(a, b):
                return "attribution"
        if _quoted(view.text, spans):
            return "attribution"
    if "hedged" not in ignore and any(outside(a, b) for a, b, _ in view.cues(HEDGED)):
        return "hedged"
    return None


_OPEN_QUOTES = "“‘「『\"'《"
_CLOSE_QUOTES = "”’」』\"'》"


def _quoted(text: str, spans: list[tuple[int, int]]) -> bool:
    """True when a matched term sits inside quotation marks: the writer is naming a claim
    ("所谓‘神药’"), not making it."""
    for a, b in spans:
        before = text[a - 1] if a > 0 else ""
        after = text[b] if b < len(text) else ""
        if before and after and before in _OPEN_QUOTES and after in _CLOSE_QUOTES:
            return True
    return False


def screen(
    segments: Sequence[Segment],
    ruleset: Ruleset,
    *,
    thresholds: Thresholds | None = None,
    segmenter: str = "auto",
    jobs: int = 1,
) -> Report:
    """Screen a version's segments and return findings, risk, domains and ruleset version.

    `jobs` > 1 screens the segments of a large text (at least PARALLEL_MIN_CHARS characters)
    in that many forked processes, which also normalise their own segments; the decisions
    that need the whole text (debunk document, claims rebutted elsewhere, a named source)
    are still taken once, over all of it, so the report is the same as with one process."""
    _validate(segments)
    th = thresholds or Thresholds()
    seg = _OnDemand(ruleset, segmenter)
    raw = [s.text for s in segments]
    kinds = [s.kind for s in segments]
    total_chars = sum(map(len, raw))
    parallel = jobs > 1 and len(raw) > 1 and total_chars >= PARALLEL_MIN_CHARS
    if parallel:
        ruleset.segmenter(seg.name)  # built once here, inherited by the forked processes
    norms: dict[int, Normalised] = (
        _document_norms(raw, kinds) if parallel else dict(enumerate(normalise_many(raw)))
    )
    # What the document-level decisions read: every text they can reach (the first
    # DOCUMENT_SCAN_CHARS / DOMAIN_SCAN_CHARS characters, the titles); the rest stays empty.
    doc_texts = [norms[i].text if i in norms else "" for i in range(len(raw))]
    split = heading_split(raw[0], norms[0]) if raw and "title" not in kinds else None
    debunk_doc = document_is_debunk(doc_texts, kinds, ruleset, split)
    debunk: _Debunk | None = None
    if debunk_doc:
        debunk = _Debunk(total_chars <= SHORT_DOCUMENT_CHARS, tuple(doc_texts))
    if parallel:
        hits, sources = _parallel_hits(raw, ruleset, seg, debunk, jobs)
    else:
        hits = _hits(range(len(raw)), norms, ruleset, seg, debunk)
        sources = None
    # A claim the same text refutes or negates elsewhere is being discussed, not asserted.
    rebutted = {h.rule.id for h in hits if h.context in ("refutation", "negation")}
    for hit in hits:
        if hit.rule.id in rebutted and hit.context not in _CANCELLING:
            hit.context = "refutation"
        elif hit.context not in _CANCELLING and hit.rule.exclude_document:
            if total_chars > SHORT_DOCUMENT_CHARS:
                # In a long text a source named paragraphs away vouches for its own news, not
                # for a claim put in between: only a source near the claim counts.
                found = _sources(ruleset, _around_hit(raw, hit))
            else:
                if sources is None:
                    sources = _sources(ruleset, [n.text for n in norms.values()])
                found = sources
            if not found.isdisjoint(hit.rule.exclude_document):
                hit.context = "sourced"
    counted: list[Finding] = []
    suppressed: list[Finding] = []
    for hit in hits:
        finding = _finding(hit, segments)
        (counted if finding.score > 0 else suppressed).append(finding)
    score = _risk(counted)
    domains = _domains(doc_texts, ruleset, counted + suppressed)
    counted = _cap_per_rule(counted)
    suppressed = _cap_per_rule(suppressed)
    return Report(
        findings=tuple(counted),
        risk_score=score,
        risk_level=th.level_for(score),
        domains=domains,
        ruleset_version=ruleset.version,
        suppressed=tuple(suppressed),
        document_context="debunk_document" if debunk_doc else None,
    )


class _OnDemand:
    """The ruleset's segmenter for a backend, built on first use: a text whose sentences
    all stop at the character gate never loads a dictionary (a short scan starts faster)."""

    def __init__(self, ruleset: Ruleset, name: str) -> None:
        self.name = resolve_backend(name)
        self._ruleset = ruleset
        self._built: Segmenter | None = None

    def cut(self, text: str) -> list[str]:
        if self._built is None:
            self._built = self._ruleset.segmenter(self.name)
        return self._built.cut(text)


def _document_norms(raw: Sequence[str], kinds: Sequence[str]) -> dict[int, Normalised]:
    """The normalised texts the document-level decisions can read, by segment index: the
    leading segments up to the larger scan limit (in normalised characters), every title
    and the segment after the first title. The forked processes normalise the rest."""
    limit = max(DOCUMENT_SCAN_CHARS, DOMAIN_SCAN_CHARS)
    norms: dict[int, Normalised] = {}
    have = 0
    end = 0
    while end < len(raw) and (have < limit or end < 2):
        start = end
        size = 0
        while end < len(raw) and (size < limit - have or end < 2):
            size += len(raw[end])
            end += 1
        for i, norm in enumerate(normalise_many(raw[start:end]), start):
            norms[i] = norm
            have += len(norm.text)
    titles = [i for i, k in enumerate(kinds) if k == "title"]
    extra = set(titles)
    first_body = next((i for i, k in enumerate(kinds) if k != "title"), None)
    if first_body is not None:
        extra.add(first_body)
    if titles and titles[0] + 1 < len(raw):
        extra.add(titles[0] + 1)
    for i in sorted(extra - set(norms)):
        norms[i] = normalise(raw[i])
    return norms


def _around_hit(raw: Sequence[str], hit: _Hit) -> list[str]:
    """The normalised text within LOCAL_SOURCE_CHARS of a hit: its segment around it, the end
    of the segment before and the start of the one after."""
    text = raw[hit.segment]
    parts = [text[max(0, hit.start - LOCAL_SOURCE_CHARS) : hit.end + LOCAL_SOURCE_CHARS]]
    if hit.segment > 0 and hit.start < LOCAL_SOURCE_CHARS:
        parts.append(raw[hit.segment - 1][-LOCAL_SOURCE_CHARS:])
    if hit.segment + 1 < len(raw) and len(text) - hit.end < LOCAL_SOURCE_CHARS:
        parts.append(raw[hit.segment + 1][:LOCAL_SOURCE_CHARS])
    return [n.text for n in normalise_many(parts)]


def _sources(ruleset: Ruleset, texts: Sequence[str]) -> frozenset[str]:
    """The rules' not_document terms (通报、记者…) that occur in any of the texts."""
    joined = "\n".join(texts)
    return frozenset(t for t in ruleset.source_terms if t in joined)


def _hits(
    indices: Sequence[int],
    norms: Mapping[int, Normalised],
    ruleset: Ruleset,
    seg: Segmenter,
    debunk: _Debunk | None,
) -> list[_Hit]:
    """The hits of some segments, with offsets into the original segment texts. `norms`
    holds the normalised segments, and the ones before the first and after the last when
    there are."""
    hits: list[_Hit] = []
    for si in indices:
        norm = norms[si]
        following = norms[si + 1].text if si + 1 in norms else ""
        previous = norms[si - 1].text if si - 1 in norms else ""
        for hit in _screen_segment(si, norm.text, previous, following, ruleset, seg, debunk):
            hit.start, hit.end = norm.span_to_original(hit.start, hit.end)
            hits.append(hit)
    return hits


# What forked children screen: set by the parent just before it forks, read by the children.
_FORK_STATE: tuple[Sequence[str], Ruleset, Segmenter, _Debunk | None] | None = None

_ChildHit = tuple[int, int, int, int, str | None]


def _child_hits(indices: Sequence[int]) -> tuple[list[_ChildHit], frozenset[str]]:
    """In a forked child: normalise and screen a run of consecutive segments; return the
    hits with rules as indexes (cheap to send) and the source terms the run names."""
    assert _FORK_STATE is not None
    raw, ruleset, seg, debunk = _FORK_STATE
    norms = dict(zip(indices, normalise_many([raw[i] for i in indices]), strict=True))
    after = indices[-1] + 1
    if after < len(raw):
        norms[after] = normalise(raw[after])
    before = indices[0] - 1
    if before >= 0:
        norms[before] = normalise(raw[before])
    texts = [norms[i].text for i in indices]
    position = {id(rule): i for i, rule in enumerate(ruleset.rules)}
    hits = [
        (position[id(h.rule)], h.segment, h.start, h.end, h.context)
        for h in _hits(indices, norms, ruleset, seg, debunk)
    ]
    return hits, _sources(ruleset, texts)


def _parallel_hits(
    raw: Sequence[str], ruleset: Ruleset, seg: Segmenter, debunk: _Debunk | None, jobs: int
) -> tuple[list[_Hit], frozenset[str]]:
    """_hits over all segments, split into runs of similar size that forked processes
    normalise and screen, plus the source terms named anywhere. Without fork (not
    Linux/macOS), one process does it all."""
    global _FORK_STATE
    try:
        context: Any = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        norms = dict(enumerate(normalise_many(raw)))
        hits = _hits(range(len(raw)), norms, ruleset, seg, debunk)
        return hits, _sources(ruleset, [n.text for n in norms.values()])
    total = sum(map(len, raw))
    target = max(1, total // (jobs * 4))
    chunks: list[list[int]] = [[]]
    size = 0
    for si, text in enumerate(raw):
        if size >= target:
            chunks.append([])
            size = 0
        chunks[-1].append(si)
        size += len(text)
    _FORK_STATE = (raw, ruleset, seg, debunk)
    try:
        with context.Pool(min(jobs, len(chunks))) as pool:
            parts = pool.map(_child_hits, chunks, chunksize=1)
    finally:
        _FORK_STATE = None
    rules = ruleset.rules
    hits = [_Hit(rules[ri], si, a, b, ctx) for part, _ in parts for ri, si, a, b, ctx in part]
    return hits, frozenset().union(*(found for _, found in parts))


class _Debunk:
    """The debunk context of a document: `whole` when it applies to every claim (a short
    debunk), else a claim is covered when a cue stands near it or the document discusses
    the claim's subject elsewhere. `texts`: the normalised segments the document-level
    decisions read (the first DOCUMENT_SCAN_CHARS characters; the rest are empty)."""

    def __init__(self, whole: bool, texts: Sequence[str]) -> None:
        self.whole = whole
        kept: list[str] = []
        have = 0
        for t in texts:  # the same prefix with one process or several
            kept.append(t if have < DOCUMENT_SCAN_CHARS else "")
            have += len(t)
        self.texts = tuple(kept)
        self._where: dict[str, list[tuple[int, int]]] = {}
        self._joined = "\n".join(self.texts)
        self._starts: list[int] = []
        at = 0
        for t in self.texts:
            self._starts.append(at)
            at += len(t) + 1

    def _positions(self, word: str) -> list[tuple[int, int]]:
        """(segment, offset) of every occurrence of a word in the texts, found once."""
        found = self._where.get(word)
        if found is None:
            found = []
            at = self._joined.find(word)
            while at >= 0:
                i = bisect_right(self._starts, at) - 1
                found.append((i, at - self._starts[i]))
                at = self._joined.find(word, at + 1)
            self._where[word] = found
        return found

    def discusses(self, si: int, text: str, lo: int, hi: int, terms: Sequence[str]) -> bool:
        """True when a term of the claim (two characters or more) occurs in the document
        away from the claim (beyond LOCAL_DEBUNK_CHARS): the debunk is about this subject,
        not an unrelated claim."""
        before, after = max(0, lo - LOCAL_DEBUNK_CHARS), hi + LOCAL_DEBUNK_CHARS
        scanned = si < len(self.texts) and self.texts[si] == text
        for word in dict.fromkeys(terms):
            if len(word) < 2:
                continue
            for i, at in self._positions(word):
                if i != si or at + len(word) <= before or at >= after:
                    return True
            # A segment beyond the scanned prefix is read on its own.
            if not scanned and (text.find(word, 0, before) >= 0 or text.find(word, after) >= 0):
                return True
        return False


def _covered(
    debunk: _Debunk | None,
    local: _LocalCues,
    ruleset: Ruleset,
    si: int,
    text: str,
    offset: int,
    view: _SentenceView,
    rule: Rule,
    spans: list[tuple[int, int]],
) -> bool:
    """Whether the document's debunk context applies to a claim found in the sentence at
    `offset` of segment `si`: always in a short debunk document and for low-severity hits;
    in a long one when a debunk cue stands near it or the document discusses its subject."""
    if debunk is None:
        return False
    if debunk.whole:
        return True
    a = offset + min(x for x, _ in spans)
    b = offset + max(y for _, y in spans)
    if local.near(a, b):
        return True
    words = [t for x, y in spans if (t := view.text[x:y]) in rule.all_terms]
    words.extend(t for t in view.occ if t in ruleset.subject_terms)
    return debunk.discusses(si, text, a, b, words)


class _LocalCues:
    """Where the debunk cues of one segment stand, and whether the paragraphs before and
    after end or start with one — each found once per segment, on demand."""

    def __init__(self, ruleset: Ruleset, text: str, previous: str, following: str) -> None:
        self._index = ruleset.local_debunk_index
        self._text = text
        self._around = (previous[-LOCAL_DEBUNK_CHARS:], following[:LOCAL_DEBUNK_CHARS])
        self._starts: list[int] | None = None
        self._neighbours: bool | None = None

    def near(self, lo: int, hi: int) -> bool:
        """True when a debunk cue stands near a claim at text[lo:hi]: in its paragraph
        within LOCAL_DEBUNK_CHARS, at the end of the paragraph before or the start of the
        next."""
        if self._neighbours is None:
            self._neighbours = any(self._index.find(part) for part in self._around if part)
        if self._neighbours:
            return True
        if self._starts is None:
            self._starts = sorted(a for a, _, _ in self._index.find(self._text))
        i = bisect_left(self._starts, max(0, lo - LOCAL_DEBUNK_CHARS))
        return i < len(self._starts) and self._starts[i] < hi + LOCAL_DEBUNK_CHARS


def _screen_segment(
    si: int,
    text: str,
    previous: str,
    following: str,
    ruleset: Ruleset,
    seg: Segmenter,
    debunk: _Debunk | None,
) -> list[_Hit]:
    # The gate: one pass of the anchor automaton over the segment marks the sentences that
    # contain an anchor term; only those are scanned for all terms (and maybe segmented).
    anchors = ruleset.anchor_index.find(text)
    if not anchors:
        return []
    sentences = split_sentences(text)
    starts = [s[0] for s in sentences]
    anchor_rules = ruleset.anchor_rules
    candidates: dict[int, set[int]] = {}
    for a, _, term in anchors:
        candidates.setdefault(bisect_right(starts, a) - 1, set()).update(anchor_rules[term])
    rules = ruleset.rules
    hits: list[_Hit] = []
    local = _LocalCues(ruleset, text, previous, following)
    for idx in sorted(candidates):
        sent = sentences[idx]
        sentence = text[sent[0] : sent[1]]
        # Necessary condition on characters (token alignment only removes occurrences):
        # every group of a candidate rule occurs in the sentence. One automaton pass gives
        # the terms present; most gated sentences stop here, before the segmenter.
        raw = ruleset.term_index.find(sentence)
        present = {term for _, _, term in raw}
        possible = [
            rules[ri]
            for ri in sorted(candidates[idx])
            if all(group.present_in(present, sentence) for group in rules[ri].groups)
        ]
        if not possible:
            continue
        view = _SentenceView(sentence, seg, ruleset, raw)
        nxt = sentences[idx + 1] if idx + 1 < len(sentences) else None
        next_text = text[nxt[0] : nxt[1]] if nxt else following[:MAX_SENTENCE]
        for rule in possible:
            spans = match_rule(view, rule)
            if spans is None:
                continue
            lo = min(a for a, _ in spans)
            hi = max(b for _, b in spans)

            covered = partial(
                _covered, debunk, local, ruleset, si, text, sent[0], view, rule, spans
            )
            ctx = _context(view, rule, spans, next_text, covered)
            hits.append(_Hit(rule, si, sent[0] + lo, sent[0] + hi, ctx))
    return hits


def _prefix(texts: Sequence[str], limit: int) -> list[str]:
    """The texts in order, cut so that together they hold at most `limit` characters."""
    out: list[str] = []
    left = limit
    for text in texts:
        if left <= 0:
            break
        out.append(text[:left])
        left -= len(text)
    return out


def _cap_per_rule(findings: list[Finding]) -> list[Finding]:
    """Keep the first MAX_FINDINGS_PER_RULE findings of each rule: a text that repeats one
    claim thousands of times gives experts (and the database) a readable report. The risk
    score is computed before the cap."""
    seen: dict[str, int] = {}
    kept: list[Finding] = []
    for f in findings:
        n = seen.get(f.rule_id, 0)
        if n < MAX_FINDINGS_PER_RULE:
            kept.append(f)
        seen[f.rule_id] = n + 1
    return kept


def _finding(hit: _Hit, segments: Sequence[Segment]) -> Finding:
    segment = segments[hit.segment]
    start, end = hit.start, hit.end
    rule = hit.rule
    score = round(SEVERITY_WEIGHT[rule.severity] * MULTIPLIER[hit.context], 3)
    return Finding(
        rule_id=rule.id,
        rule_version=rule.version,
        category=rule.category,
        severity=rule.severity,
        segment=hit.segment,
        start=start,
        end=end,
        text=segment.text[start:end],
        explanation=rule.explanation,
        context=hit.context,
        score=score,
        domains=rule.domains,
        start_time=segment.start_time,
        end_time=segment.end_time,
        title=rule.title,
    )


def _risk(findings: Sequence[Finding]) -> float:
    """Best score per rule (plus a little per repeat); rules that fire on overlapping text
    count a quarter, so one claim caught by several similar rules is not counted twice."""
    best: dict[str, Finding] = {}
    count: dict[str, int] = {}
    for f in findings:
        if f.rule_id not in best or f.score > best[f.rule_id].score:
            best[f.rule_id] = f
        count[f.rule_id] = count.get(f.rule_id, 0) + 1
    total = 0.0
    taken: list[Finding] = []
    for f in sorted(best.values(), key=lambda x: (-x.score, x.rule_id)):
        weight = f.score * (1 + 0.1 * min(count[f.rule_id] - 1, 3))
        overlap = any(t.segment == f.segment and f.start < t.end and t.start < f.end for t in taken)
        total += weight * (OVERLAP_FACTOR if overlap else 1.0)
        taken.append(f)
    return round(total, 3)


def _domains(
    texts: Sequence[str], ruleset: Ruleset, findings: Sequence[Finding]
) -> tuple[str, ...]:
    """Rank domains by keyword hits plus the domains of findings; keep the clear ones."""
    score: dict[str, float] = {}
    counts: dict[str, int] = {}
    for text in _prefix(texts, DOMAIN_SCAN_CHARS):
        for term, n in ruleset.domain_index.count(text).items():
            counts[term] = counts.get(term, 0) + n
    for term, n in counts.items():
        for d in ruleset.domain_terms[term]:
            score[d] = score.get(d, 0.0) + n
    for f in findings:
        for d in f.domains:
            score[d] = score.get(d, 0.0) + (3.0 if f.score > 0 else 1.0)
    if not score:
        return ()
    ranked = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[0][1]
    keep = [d for d, s in ranked if s >= 2.0 and s >= top * 0.25]
    if not keep:
        keep = [ranked[0][0]]
    return tuple(keep[:4])

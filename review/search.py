"""Full-text search over items and decisions: an inverted index of jieba tokens (portable SQL).

Terms come from the same segmenter as screening (rjieba when installed, else jieba), folded
like the screening normaliser (NFKC, lower-case, traditional → simplified), so a query typed
in traditional characters or full-width forms finds the same items.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from review.db import db
from review.models import Decision, Item, SubtitleSource

MAX_TERM_CHARS = 64


class SearchTerm(db.Model):
    """One term of one item, with how often it occurs (the index behind search)."""

    __tablename__ = "search_terms"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(MAX_TERM_CHARS), primary_key=True, index=True)
    hits: Mapped[int] = mapped_column(Integer, default=1)


@functools.lru_cache(maxsize=1)
def _segmenter() -> object:
    from rules.segmenter import make_segmenter, resolve_backend

    return make_segmenter(resolve_backend("auto"), ())


@functools.lru_cache(maxsize=1)
def _t2s() -> object:
    import opencc

    return opencc.OpenCC("t2s")


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).lower()
    return str(_t2s().convert(folded))  # type: ignore[attr-defined]


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def terms(text: str) -> list[str]:
    """Index terms of ``text``.

    jieba tokens that carry letters, digits or CJK characters; a Chinese token longer than two
    characters is replaced by its overlapping bigrams, so 疫苗 finds 流感疫苗 and a query is
    cut the same way as the text it should find.
    """
    tokens = _segmenter().cut(_fold(text))  # type: ignore[attr-defined]
    out: list[str] = []
    for tok in (t.strip() for t in tokens):
        if not tok or not any(ch.isalnum() for ch in tok):
            continue
        if len(tok) > 2 and all(_is_cjk(ch) for ch in tok):
            out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
        elif len(tok) <= MAX_TERM_CHARS:
            out.append(tok)
    return out


def item_text(item: Item) -> Iterable[str]:
    """Everything searchable: every version's title, body and subtitles, every decision."""
    for version in item.versions:
        yield version.title
        yield version.body
        if version.media_asset_id is not None:  # a video: the text of every subtitle source
            for source in db.session.scalars(
                select(SubtitleSource).where(SubtitleSource.version_id == version.id)
            ):
                yield "\n".join(str(cue[2]) for cue in source.cues)
    if not item.versions:
        yield item.title
        yield item.body
    for decision in db.session.scalars(select(Decision).where(Decision.item_id == item.id)):
        yield decision.comment
        yield from decision.references


def index_item(item: Item) -> int:
    """Rebuild the item's index rows (idempotent); returns the number of distinct terms."""
    counts: Counter[str] = Counter()
    for text in item_text(item):
        counts.update(terms(text))
    db.session.execute(delete(SearchTerm).where(SearchTerm.item_id == item.id))
    db.session.add_all(SearchTerm(item_id=item.id, term=t, hits=n) for t, n in counts.items())
    db.session.flush()
    return len(counts)


def search_items(query: str, *, limit: int = 100, restrict: Any = None) -> list[int]:
    """Item ids containing every query term, best first; ``restrict``: a subquery of item ids."""
    wanted = sorted(set(terms(query)))
    if not wanted:
        return []
    stmt = (
        select(SearchTerm.item_id)
        .where(SearchTerm.term.in_(wanted))
        .group_by(SearchTerm.item_id)
        .having(func.count(SearchTerm.term) == len(wanted))
        .order_by(func.sum(SearchTerm.hits).desc(), SearchTerm.item_id.desc())
        .limit(limit)
    )
    if restrict is not None:
        stmt = stmt.where(SearchTerm.item_id.in_(restrict))
    return list(db.session.scalars(stmt))

"""The public record of published items: the list page and an Atom 1.0 feed (no login).

Only items that are published now appear (a recalled item leaves at once); the reviewing
experts are named by the caller, and only those who agreed to it (expert_pool decides).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Only builds and serialises our own feed; nothing here parses XML from outside.
from xml.etree import ElementTree as ET  # nosec B405

from sqlalchemy import select

from review.db import db
from review.lifecycle import ItemState
from review.models import Decision, DecisionKind, Item, Publication, Version

ATOM_NS = "http://www.w3.org/2005/Atom"
SUMMARY_CHARS = 200
#: Characters XML 1.0 cannot carry at all (C0 controls other than tab/newline/CR, U+FFFE/F).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass
class Entry:
    """One published item as the public sees it."""

    item_id: int
    kind: str
    title: str
    body: str
    version: int
    content_sha256: str
    published_at: datetime
    expert_reviewed: bool
    unit: str
    reviewer_ids: list[int] = field(default_factory=list)
    reviewers: list[tuple[str, str]] = field(default_factory=list)  # (name, title), consented

    @property
    def summary(self) -> str:
        """The first characters of the text, on one line."""
        text = " ".join(self.body.split())
        return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS] + "…"


def published_entries(limit: int = 100) -> list[Entry]:
    """Items published now, newest publication first, each once."""
    rows = db.session.execute(
        select(Publication, Item)
        .join(Item, Item.id == Publication.item_id)
        .where(Item.state == ItemState.published, Publication.is_recalled.is_(False))
        .order_by(Publication.published_at.desc(), Publication.id.desc())
        .limit(limit * 2)
    ).all()
    entries: list[Entry] = []
    seen: set[int] = set()
    for pub, item in rows:
        if item.id in seen:
            continue
        seen.add(item.id)
        entries.append(_entry(pub, item))
        if len(entries) >= limit:
            break
    return entries


def published_entry(item_id: int) -> Entry | None:
    """One item if it is published now."""
    row = db.session.execute(
        select(Publication, Item)
        .join(Item, Item.id == Publication.item_id)
        .where(
            Item.id == item_id,
            Item.state == ItemState.published,
            Publication.is_recalled.is_(False),
        )
        .order_by(Publication.id.desc())
        .limit(1)
    ).first()
    return _entry(row[0], row[1]) if row else None


def _entry(pub: Publication, item: Item) -> Entry:
    version = db.session.get(Version, pub.version_id)
    receipt = pub.receipt or {}
    approved = receipt.get("decision") == "approved"
    reviewer_ids: list[int] = []
    if approved:
        reviewer_ids = list(
            db.session.scalars(
                select(Decision.expert_user_id)
                .where(
                    Decision.version_id == pub.version_id,
                    Decision.decision == DecisionKind.approve,
                )
                .order_by(Decision.signed_at, Decision.id)
            )
        )
    return Entry(
        item_id=item.id,
        kind=item.kind.value,
        title=version.title if version else item.title,
        body=version.body if version else item.body,
        version=version.number if version else int(receipt.get("version", 0)),
        content_sha256=pub.content_sha256,
        published_at=pub.published_at,
        expert_reviewed=approved,
        unit=item.unit.name if item.unit else "",
        reviewer_ids=reviewer_ids,
    )


def name_reviewers(entries: Sequence[Entry], names: Mapping[int, tuple[str, str]]) -> None:
    """Fill each entry's reviewers from ``names`` (only consenting experts are in it)."""
    for entry in entries:
        entry.reviewers = [names[uid] for uid in entry.reviewer_ids if uid in names]


def xml_text(value: str) -> str:
    """Text XML 1.0 can carry (ElementTree escapes <, & and quotes, not these)."""
    return _NOT_XML.sub("\ufffd", value)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(
    entries: Sequence[Entry],
    *,
    feed_id: str,
    title: str,
    self_url: str,
    page_url: str,
    entry_url: Mapping[int, str],
    author: str,
    reviewed_label: str,
    screened_label: str,
    reviewers_label: str,
    name_title: str = "%(name)s (%(title)s)",
    separator: str = ", ",
) -> bytes:
    """An Atom 1.0 document (RFC 4287) of ``entries``; labels come translated from the view."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = xml_text(text)
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", feed_id)
    sub(feed, "title", title)
    newest = max((e.published_at for e in entries), default=datetime(2026, 1, 1, tzinfo=UTC))
    sub(feed, "updated", _rfc3339(newest))
    sub(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    sub(feed, "link", rel="alternate", type="text/html", href=page_url)
    sub(sub(feed, "author"), "name", author)
    for e in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{feed_id}:item:{e.item_id}:v{e.version}")
        sub(entry, "title", e.title)
        sub(entry, "updated", _rfc3339(e.published_at))
        sub(entry, "published", _rfc3339(e.published_at))
        sub(entry, "link", rel="alternate", type="text/html", href=entry_url[e.item_id])
        sub(
            entry,
            "category",
            term="expert-reviewed" if e.expert_reviewed else "screened",
            label=reviewed_label if e.expert_reviewed else screened_label,
        )
        lines = [reviewed_label if e.expert_reviewed else screened_label]
        if e.reviewers:
            lines.append(
                reviewers_label
                + separator.join(
                    name_title % {"name": n, "title": t} if t else n for n, t in e.reviewers
                )
            )
        lines.append(e.summary)
        sub(entry, "summary", "\n".join(lines), type="text")
        if e.unit:
            sub(sub(entry, "author"), "name", e.unit)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body

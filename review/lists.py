"""Lists shared by the pages and the API (a boundary module): filters in SQL, a few sort
orders, keyset pages, and what each row shows loaded in a bounded number of queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased, selectinload

from review import paging
from review.db import db
from review.downloads import visible_items
from review.lifecycle import ItemState
from review.models import Finding, Item, ScreeningReport, User, Version

#: Sort orders of the item list: name → (column, descending).
ITEM_SORTS = {
    "updated": (Item.updated_at, True),
    "newest": (Item.id, True),
    "oldest": (Item.id, False),
    "title": (Item.title, False),
}


def _has_domain(domain: str) -> Any:
    """The item's current version's latest report names ``domain`` (portable JSON test)."""
    newer = aliased(ScreeningReport)
    report = aliased(ScreeningReport)
    no_newer = ~exists(
        select(newer.id).where(newer.version_id == report.version_id, newer.id > report.id)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        named = cast(report.domains, JSONB).contains([domain])
    else:
        entries = func.json_each(report.domains).table_valued("value").alias("d")
        named = exists(
            select(literal_column("1"))
            .select_from(entries)
            .where(cast(entries.c.value, String) == domain)
        )
    return exists(
        select(report.id).where(report.version_id == Item.current_version_id, no_newer, named)
    ).correlate(Item)


def item_page(
    user: User,
    *,
    state: ItemState | None = None,
    domain: str | None = None,
    sort: str = "updated",
    cursor: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page:
    """One page of the items ``user`` may see, filtered and sorted; raises CursorError."""
    query = visible_items(user).options(
        selectinload(Item.unit),
        selectinload(Item.media_asset),
        selectinload(Item.current_version).selectinload(Version.reports),
    )
    if state is not None:
        query = query.where(Item.state == state)
    if domain:
        query = query.where(_has_domain(domain))
    key, descending = ITEM_SORTS[sort]
    return paging.keyset_page(
        query,
        sort=sort,
        key=key,
        row_id=Item.id,
        descending=descending,
        cursor=cursor,
        limit=limit,
    )


def finding_counts(items: list[Item]) -> dict[int, int]:
    """Findings of each listed item's current report, in one query (item id → count)."""
    reports = {
        item.current_version.report.id: item.id
        for item in items
        if item.current_version and item.current_version.report
    }
    if not reports:
        return {}
    rows = db.session.execute(
        select(Finding.report_id, func.count())
        .where(Finding.report_id.in_(reports))
        .group_by(Finding.report_id)
    )
    return {reports[report_id]: int(count) for report_id, count in rows}

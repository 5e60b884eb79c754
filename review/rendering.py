"""Markdown articles shown as HTML: markdown-it-py (CommonMark, raw HTML off), then nh3.

Screening and the experts' highlighting work on the stored Markdown source; this module only
decides what a reader sees. Two layers keep the page safe: markdown-it escapes raw HTML and
refuses ``javascript:``-style links, and nh3 then keeps nothing outside an explicit allow-list.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup, escape

#: Every tag a rendered article may contain (CommonMark plus tables and strikethrough).
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)

#: Attributes kept per tag; everything else (``on*``, ``style``, ``class``, ``id``…) is dropped.
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "ol": {"start"},
}

URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"


def _image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """An image becomes a link to it: the CSP forbids other sites' images, and a same-site
    image would make every reader's browser request that address (e.g. an export)."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    return f'<a href="{escape(src)}">{escape(alt or src)}</a>'


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # breaks: a single newline in pasted Chinese text stays a line break, as editors expect.
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(
        ["table", "strikethrough"]
    )
    md.add_render_rule("image", _image_as_link)
    return md


def sanitize(html: str) -> str:
    """Keep only the allow-listed tags, attributes and URL schemes; links get ``LINK_REL``."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_markdown(source: str) -> Markup:
    """The article's Markdown as safe HTML for a template."""
    # Markup is safe here: markdown-it escaped raw HTML and nh3 kept only the allow-list.
    return Markup(sanitize(_parser().render(source or "")))  # noqa: S704  # nosec B704


def textarea_offset(text: str, index: int) -> int:
    """A Python (code point) offset into ``text`` as the browser's form field counts it.

    A textarea's ``value`` has ``\\n`` for every line break (a form posts ``\\r\\n``), and
    JavaScript counts UTF-16 code units, so characters outside the BMP count twice."""
    prefix = text[: max(0, index)].replace("\r\n", "\n").replace("\r", "\n")
    return len(prefix.encode("utf-16-le")) // 2


def field_text(text: str) -> str:
    """``text`` with line breaks as a browser's form field holds them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")

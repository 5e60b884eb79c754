"""Markdown articles shown as HTML: markdown-it-py (CommonMark, raw HTML off), then nh3.

This module decides what a reader sees, and screening reads the same thing: `visible_text`
walks the token stream the page is rendered from and gives the text a reader sees (character
references decoded, markup removed, a line break inside a paragraph joined) with a map from
every visible character back to the stored Markdown, so findings and the experts' highlights
stay offsets into the stored text. Two layers keep the page safe: markdown-it escapes raw
HTML and refuses ``javascript:``-style links, and nh3 then keeps nothing outside an explicit
allow-list.
"""

from __future__ import annotations

import html
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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


def _alt_text(children: Sequence[Token]) -> str:
    """An image's alt text as the page shows it (character references decoded, markup gone)."""
    out: list[str] = []
    for token in children:
        if token.type in ("text", "text_special", "code_inline"):
            out.append(token.content)
        elif token.type == "image":
            out.append(_alt_text(token.children or []))
        elif token.type in ("softbreak", "hardbreak"):
            out.append("\n")
    return "".join(out)


def _image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """An image becomes a link to it: the CSP forbids other sites' images, and a same-site
    image would make every reader's browser request that address (e.g. an export)."""
    token = tokens[idx]
    alt = _alt_text(token.children or [])
    src = str(token.attrGet("src") or "")
    return f'<a href="{escape(src)}">{escape(alt or src)}</a>'


def _text_special(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """A decoded character reference or an escaped character, shown as text."""
    return str(escape(tokens[idx].content))


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # breaks: a single newline in pasted Chinese text stays a line break, as editors expect.
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(
        ["table", "strikethrough"]
    )
    # Without text_join a decoded character reference stays its own token, with the source
    # it came from as its markup: visible_text maps it back to the stored text.
    md.disable("text_join")
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("text_special", _text_special)
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


# --- what a reader sees, mapped back to the stored text --------------------------------------

# Characters between which a line break inside a paragraph is read as nothing: Chinese
# characters (a word or sentence wrapped onto the next line is read whole).
_CJK_JOIN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile("[0-9A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")
_BREAK = "\x00"  # placeholder for a line break inside a paragraph, resolved at the end
_CELL = "，"  # between the cells of a table row: one sentence, separate clauses
# Tokens at which a new line of visible text starts.
_BLOCK_EDGES = frozenset(
    {"paragraph_close", "heading_close", "tr_close", "hr", "list_item_open", "blockquote_open"}
    | {"table_open"}
)
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


@dataclass(frozen=True)
class Visible:
    """Text as a reader sees it, with each character's source span in the stored text.

    ``starts[i]:ends[i]`` is the stored text that produced visible character ``i`` (a
    character, a character reference, an escape); characters the page adds itself (the line
    break between blocks, the separator between table cells) have an empty span."""

    text: str
    source: str
    starts: array  # type: ignore[type-arg]
    ends: array  # type: ignore[type-arg]
    #: Where a line break was read as nothing or a space (the index of the character after it).
    joins: tuple[int, ...] = ()

    def crosses_join(self, start: int, end: int) -> bool:
        """True when the visible span ``start:end`` runs across a joined line break."""
        i = bisect_right(self.joins, start)
        return i < len(self.joins) and self.joins[i] < end

    def to_source(self, start: int, end: int) -> tuple[int, int]:
        """The stored span of the visible half-open span ``start:end``."""
        if not self.text:
            return 0, 0
        start = min(max(start, 0), len(self.text) - 1)
        end = min(max(end, start + 1), len(self.text))
        return self.starts[start], max(self.ends[end - 1], self.starts[start])


class _Source:
    """The stored text as markdown-it reads it (line breaks as ``\\n``, NUL as U+FFFD), with
    a map back to stored offsets."""

    def __init__(self, stored: str) -> None:
        self.stored = stored
        self.text = stored.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
        # Normalised offsets just after each collapsed "\r\n" (each shifts later text by one).
        self._crlf = [m.start() - n + 1 for n, m in enumerate(re.finditer("\r\n", stored))]
        lines = [0]
        for m in re.finditer("\n", self.text):
            lines.append(m.end())
        self.lines = lines

    def stored_offset(self, index: int) -> int:
        return index + bisect_right(self._crlf, index)

    def line_start(self, line: int) -> int:
        return self.lines[line] if line < len(self.lines) else len(self.text)


class _Walker:
    """Builds the visible text and its source spans from markdown-it's token stream."""

    def __init__(self, source: _Source) -> None:
        self.src = source
        self.chars: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.cursor = 0
        self.limit = len(source.text)

    def emit(self, text: str, start: int, end: int) -> None:
        for ch in text:
            self.chars.append(ch)
            self.starts.append(start)
            self.ends.append(end)

    def synthetic(self, ch: str) -> None:
        self.emit(ch, self.cursor, self.cursor)

    def separate(self, ch: str = "\n") -> None:
        """Start a new block (or table cell): one separator unless the text already ends so."""
        if not self.chars or self.chars[-1] == "\n":
            return
        if self.chars[-1] == _CELL and self.starts[-1] == self.ends[-1]:
            return
        self.synthetic(ch)

    def literal(self, text: str) -> None:
        """Text that stands in the source as it is shown: aligned as a whole, else by character."""
        src = self.src.text
        at = src.find(text, self.cursor, self.limit)
        if at >= 0:
            for i, ch in enumerate(text):
                self.emit(ch, at + i, at + i + 1)
            self.cursor = at + len(text)
            return
        for ch in text:
            at = src.find(ch, self.cursor, self.limit)
            if at < 0 and ch == " ":  # a line break shown as a space (inline code)
                at = src.find("\n", self.cursor, self.limit)
            if at < 0:  # shown but not found (a link text rewritten): attach to the cursor
                self.emit(ch, self.cursor, self.cursor)
                continue
            self.emit(ch, at, at + 1)
            self.cursor = at + 1

    def marked(self, content: str, markup: str) -> None:
        """A character reference or escape: its shown characters map to the whole markup."""
        at = self.src.text.find(markup, self.cursor, self.limit) if markup else -1
        if at < 0:
            self.literal(content)
            return
        self.emit(content, at, at + len(markup))
        self.cursor = at + len(markup)

    def code(self, content: str, fence: str) -> None:
        """Inline code: shown as the text between its backticks, line breaks as spaces and one
        space stripped from each end."""
        src = self.src.text
        opening = self._backticks(fence, self.cursor)
        if opening < 0:
            self.literal(content)
            return
        begin = opening + len(fence)
        found = self._backticks(fence, begin)
        close = found if found >= 0 else self.limit
        at = src[begin:close].replace("\n", " ").find(content)
        if at < 0:
            self.cursor = begin
            self.literal(content)
        else:
            for i, ch in enumerate(content):
                self.emit(ch, begin + at + i, begin + at + i + 1)
        self.cursor = close + len(fence) if found >= 0 else self.limit

    def _backticks(self, fence: str, start: int) -> int:
        """Where the next run of exactly ``len(fence)`` backticks begins (a run may begin at
        ``start`` even after an escaped backtick), or -1."""
        src = self.src.text
        at = src.find(fence, start, self.limit)
        while at >= 0:
            end = at + len(fence)
            if (at == start or src[at - 1] != "`") and not src.startswith("`", end):
                return at
            while end < self.limit and src[end] == "`":
                end += 1
            at = src.find(fence, end, self.limit)
        return -1

    def line_break(self) -> None:
        """A line break inside a paragraph: resolved in result() once the next character is
        known; when it is shown as a space, the stored line break produced it."""
        at = self.src.text.find("\n", self.cursor, self.limit)
        if at < 0:
            self.emit(_BREAK, self.cursor, self.cursor)
            return
        self.emit(_BREAK, at, at + 1)
        self.cursor = at + 1

    def skip_destination(self) -> None:
        """After a link's or image's text: step over ``](destination "title")`` or ``][ref]``."""
        src = self.src.text
        at = src.find("]", self.cursor, self.limit)
        if at < 0:
            return
        i = at + 1
        if src.startswith("[", i):
            close = src.find("]", i, self.limit)
            self.cursor = close + 1 if close >= 0 else i
            return
        if not src.startswith("(", i):
            self.cursor = i
            return
        depth, quote, i = 0, "", i
        while i < self.limit:
            ch = src[i]
            if ch == "\\":
                i += 2
                continue
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'" and depth == 1:
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            i += 1
        self.cursor = i

    def inline(self, children: Sequence[Token]) -> None:
        for token in children:
            kind = token.type
            if kind == "text":
                self.literal(token.content)
            elif kind == "text_special":
                self.marked(token.content, token.markup)
            elif kind in ("softbreak", "hardbreak"):
                self.line_break()
            elif kind == "code_inline":
                self.code(token.content, token.markup)
            elif kind == "image":
                opening = self.src.text.find("![", self.cursor, self.limit)
                begin = opening if opening >= 0 else self.cursor
                self.cursor = begin
                if _alt_text(token.children or []):
                    self.inline(token.children or [])
                    self.skip_destination()
                else:  # shown as its address: the whole image markup produced it
                    self.skip_destination()
                    self.emit(str(token.attrGet("src") or ""), begin, max(self.cursor, begin))
            elif kind == "link_close" and token.markup != "autolink":
                self.skip_destination()

    def block(self, tokens: Sequence[Token]) -> None:
        src = self.src
        for token in tokens:
            if token.map is not None:
                self.cursor = max(self.cursor, src.line_start(token.map[0]))
            kind = token.type
            if kind == "inline":
                self.limit = src.line_start(token.map[1]) if token.map else len(src.text)
                self.inline(token.children or [])
                self.limit = len(src.text)
            elif kind in ("code_block", "fence") and token.map is not None:
                self.separate()
                if kind == "fence":
                    self.cursor = src.line_start(token.map[0] + 1)
                self.limit = src.line_start(token.map[1])
                self.literal(token.content.rstrip("\n"))
                self.limit = len(src.text)
                self.separate()
            elif kind in ("td_open", "th_open"):
                self.separate(_CELL)
            elif kind in _BLOCK_EDGES:
                self.separate()

    def result(self, *, join: bool) -> Visible:
        chars, starts, ends = self.chars, self.starts, self.ends
        while chars and chars[-1] in ("\n", _CELL) and starts[-1] == ends[-1]:
            chars.pop()
            starts.pop()
            ends.pop()
        stored = self.src.stored_offset
        return _resolve(
            self.src.stored,
            chars,
            [stored(i) for i in starts],
            [stored(i) for i in ends],
            join=join,
        )


def _resolve(
    source: str, chars: list[str], starts: list[int], ends: list[int], *, join: bool
) -> Visible:
    """The Visible of characters with line-break placeholders: with ``join``, a break between
    two Chinese characters is read as nothing and one between two Latin words as a space
    (a wrapped sentence is read whole); any other break, and every break without ``join``,
    is a line break, as the page shows it."""
    text: list[str] = []
    s_out = array("q")
    e_out = array("q")
    joins: list[int] = []
    after = ""
    following = [""] * len(chars)
    for i in range(len(chars) - 1, -1, -1):  # the next character that is not a break
        following[i] = after
        if chars[i] != _BREAK:
            after = chars[i]
    for i, ch in enumerate(chars):
        if ch == _BREAK:
            before, after = (text[-1] if text else ""), following[i]
            if not before or not after or before in "\n ":
                continue
            if join and _CJK_JOIN.match(before) and _CJK_JOIN.match(after):
                joins.append(len(text))
                continue
            if join and _LATIN_WORD.match(before) and _LATIN_WORD.match(after):
                joins.append(len(text))
                ch = " "
            else:
                ch = "\n"
        text.append(ch)
        s_out.append(starts[i])
        e_out.append(ends[i])
    return Visible("".join(text), source, s_out, e_out, tuple(joins))


def visible_text(source: str, *, join: bool = True) -> Visible:
    """The text of rendered Markdown as a reader sees it, mapped back to the stored text.

    It walks the token stream the page is rendered from (the same parser, so the two cannot
    drift): character references decoded, markup, link addresses and code fences removed,
    an image as its alt text, blocks on lines of their own, and with ``join`` a line break
    inside a paragraph read as a wrapped line (nothing between two Chinese characters, a
    space between Latin words); without it, as a line break."""
    src = _Source(source or "")
    walker = _Walker(src)
    walker.block(_parser().parse(src.text))
    return walker.result(join=join)


def decode_references(text: str, *, join: bool = True) -> Visible:
    """Plain ``text`` with HTML character references decoded, mapped back to ``text``; its
    line breaks are read as in `visible_text`.

    For text a browser, player or CMS may show as HTML (titles, subtitle cues): screening
    reads the characters a reference stands for, never the reference."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0

    def plain(upto: int) -> None:
        i = pos
        while i < upto:
            if text.startswith("\r\n", i):
                chars.append(_BREAK)
                starts.append(i)
                ends.append(i + 2)
                i += 2
                continue
            chars.append(_BREAK if text[i] in "\r\n" else text[i])
            starts.append(i)
            ends.append(i + 1)
            i += 1

    for m in _REFERENCE.finditer(text):
        decoded = html.unescape(m.group(0))
        if decoded == m.group(0):
            continue
        plain(m.start())
        for ch in decoded:
            chars.append(ch)
            starts.append(m.start())
            ends.append(m.end())
        pos = m.end()
    plain(len(text))
    return _resolve(text, chars, starts, ends, join=join)


def shown_passages(title: str, body: str, findings: Iterable[Any]) -> dict[int, str]:
    """What readers see of each finding whose stored text reads differently (written with
    character references, markup or a line break inside a word), by finding id: the pages
    show experts the claim as readers read it beside the stored passage."""
    shown: dict[int, str] = {}
    views: dict[str, Visible] = {}
    for f in findings:
        if f.segment == "body":
            visible = views.get("body") or views.setdefault("body", visible_text(body))
        elif f.segment == "title":
            visible = views.get("title") or views.setdefault("title", decode_references(title))
        else:
            visible = decode_references(f.text)
            text = visible.text
            if text != f.text:
                shown[f.id] = text
            continue
        text = "".join(
            ch
            for ch, a, b in zip(visible.text, visible.starts, visible.ends, strict=True)
            if f.start <= a and b <= f.end and a < b
        )
        if text and text != f.text:
            shown[f.id] = text
    return shown

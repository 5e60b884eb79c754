"""What changed between two versions of a text, character by character (Chinese has no spaces).

Pure functions: ``diff_text`` gives the pieces, ``diff_html`` the escaped ``<ins>``/``<del>``
markup. Lines are matched first, so a long article with a few edited paragraphs stays cheap;
changed lines are then compared character by character, and tiny unchanged runs caught
between two changes are folded into the change, so "根治高血压" → "控制血压" reads as one
replacement rather than a scatter of single characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from markupsafe import Markup, escape

Op = Literal["equal", "insert", "delete"]

#: Unchanged runs up to this many characters between two changes are folded into the change.
MERGE_BELOW = 3
#: Changed blocks larger than this (old + new characters) are shown as whole lines.
CHAR_DIFF_LIMIT = 20_000


@dataclass(frozen=True)
class Piece:
    """A run of text that is unchanged, inserted or deleted."""

    op: Op
    text: str


def _char_diff(old: str, new: str) -> list[tuple[str, str, str]]:
    """(kind, old part, new part) blocks; kind is 'equal' or 'change'."""
    if len(old) + len(new) > CHAR_DIFF_LIMIT:
        return [("change", old, new)]
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    blocks: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        kind = "equal" if tag == "equal" else "change"
        blocks.append((kind, old[i1:i2], new[j1:j2]))
    return blocks


def _blocks(old: str, new: str) -> list[tuple[str, str, str]]:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    blocks: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        a, b = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        if tag == "equal":
            blocks.append(("equal", a, b))
        elif tag == "replace":
            blocks.extend(_char_diff(a, b))
        else:
            blocks.append(("change", a, b))
    return blocks


def _merge(blocks: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Fold short equal runs between changes into them, and join neighbouring changes."""
    merged: list[tuple[str, str, str]] = []
    for index, (kind, a, b) in enumerate(blocks):
        if not a and not b:
            continue
        between_changes = (
            kind == "equal"
            and len(a) <= MERGE_BELOW
            and "\n" not in a
            and merged
            and merged[-1][0] == "change"
            and any(k == "change" for k, _, _ in blocks[index + 1 : index + 2])
        )
        if between_changes:
            kind = "change"
        if kind == "change" and merged and merged[-1][0] == "change":
            _, pa, pb = merged.pop()
            merged.append(("change", pa + a, pb + b))
        elif kind == "equal" and merged and merged[-1][0] == "equal":
            _, pa, pb = merged.pop()
            merged.append(("equal", pa + a, pb + b))
        else:
            merged.append((kind, a, b))
    return merged


def diff_text(old: str, new: str) -> list[Piece]:
    """The pieces that turn ``old`` into ``new``: within a change, the deletion comes first."""
    pieces: list[Piece] = []
    for kind, a, b in _merge(_blocks(old or "", new or "")):
        if kind == "equal":
            pieces.append(Piece("equal", a))
            continue
        if a:
            pieces.append(Piece("delete", a))
        if b:
            pieces.append(Piece("insert", b))
    return pieces


def diff_html(old: str, new: str) -> Markup:
    """The diff as escaped text with ``<del>`` and ``<ins>`` marks."""
    out = []
    for piece in diff_text(old, new):
        text = escape(piece.text)
        if piece.op == "insert":
            out.append(Markup("<ins>{}</ins>").format(text))
        elif piece.op == "delete":
            out.append(Markup("<del>{}</del>").format(text))
        else:
            out.append(text)
    return Markup("").join(out)


def has_changes(old: str, new: str) -> bool:
    """True when the texts differ."""
    return (old or "") != (new or "")

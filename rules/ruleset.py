"""Loading and validating rule packs (TOML data files) into a compiled Ruleset."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from .context import CUE_TERMS, DOCUMENT_CUES, LOCAL_DEBUNK
from .matcher import TermIndex
from .model import CATEGORIES, DOMAINS, SEVERITIES
from .normalize import normalise_term
from .segmenter import Segmenter, make_segmenter, resolve_backend

PACK_DIR = Path(__file__).resolve().parent / "packs"
ID_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
RULE_KEYS = frozenset(
    {
        "id",
        "version",
        "title",
        "category",
        "domains",
        "severity",
        "explanation",
        "references",
        "pattern",
        "must_flag",
        "must_pass",
        "ignore_contexts",
        "notes",
    }
)
PATTERN_KEYS = frozenset(
    {"any", "all", "ordered", "window", "not", "not_document", "scope", "anchor"}
)
IGNORABLE_CONTEXTS = frozenset({"negation", "question", "attribution", "hedged"})
# Claim vocabulary (`[vocabulary.<kind>.<name>]` tables): what a claim is made of. Agents
# carry an evidence status: `backed` (a vaccine against flu, washing hands, 75 % alcohol on
# hands) or `not_backed` (vinegar, garlic, salt water against a virus).
VOCABULARY_KINDS = frozenset({"agent", "effect", "target", "marker"})
EVIDENCE = frozenset({"backed", "not_backed"})
VOCABULARY_KEYS = frozenset({"kind", "category", "evidence", "description", "terms"})


class RulePackError(ValueError):
    """A rule pack is malformed; the message names the file, the rule id and the field."""

    def __init__(self, file: str, rule_id: str | None, field_name: str | None, message: str):
        where = file
        if rule_id:
            where += f": rule {rule_id}"
        if field_name:
            where += f": field {field_name!r}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.rule_id = rule_id
        self.field = field_name


@dataclass(frozen=True)
class TermGroup:
    """One any-of group: literal terms (token-aligned) and optional regular expressions."""

    terms: tuple[str, ...]
    regexes: tuple[re.Pattern[str], ...] = ()
    term_set: frozenset[str] = frozenset()

    def present_in(self, present: set[str], text: str) -> bool:
        """True when some term of the group is among the terms an automaton found in text
        (characters only), or one of its regexes matches: a cheap necessary condition
        checked before a sentence is segmented."""
        if not self.term_set.isdisjoint(present):
            return True
        return any(rx.search(text) is not None for rx in self.regexes)


@dataclass(frozen=True)
class Rule:
    """One compiled rule with its metadata, pattern and examples."""

    id: str
    version: int
    title: str
    category: str
    domains: tuple[str, ...]
    severity: str
    explanation: str
    references: tuple[str, ...]
    groups: tuple[TermGroup, ...]
    anchor: int
    ordered: bool
    window: int
    scope: str
    exclude: tuple[str, ...]
    ignore_contexts: frozenset[str]
    must_flag: tuple[str, ...]
    must_pass: tuple[str, ...]
    source: str
    # Terms that, anywhere in the version (any segment), show the text names its source
    # (通报、记者…): the rule's hits then count as "sourced", not as claims.
    exclude_document: tuple[str, ...] = ()

    @cached_property
    def all_terms(self) -> frozenset[str]:
        """Every literal term of every group."""
        return frozenset(t for g in self.groups for t in g.terms)

    @property
    def anchors(self) -> tuple[str, ...]:
        """Terms of the gating group: a sentence without one of them cannot match."""
        return self.groups[self.anchor].terms


@dataclass
class Ruleset:
    """Validated rules plus the indexes and segmenters built from them."""

    rules: list[Rule]
    version: str
    domain_keywords: dict[str, tuple[str, ...]]
    files: tuple[str, ...] = ()
    # Words the segmenter keeps whole although no rule uses them (减毒, 灭活 …): a one-character
    # term can then not fire inside them.
    keep_whole: frozenset[str] = frozenset()
    # The claim vocabulary: name -> (kind, category, evidence, terms).
    vocabulary: Mapping[str, tuple[str, str, str, tuple[str, ...]]] = field(default_factory=dict)
    _segmenters: dict[str, Segmenter] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        anchor_map: dict[str, list[int]] = {}
        terms: set[str] = set()
        for idx, rule in enumerate(self.rules):
            for term in rule.anchors:
                anchor_map.setdefault(term, []).append(idx)
            for group in rule.groups:
                terms.update(group.terms)
            terms.update(rule.exclude)
        self.anchor_rules: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in anchor_map.items()}
        self.anchor_index = TermIndex(anchor_map)
        self.term_index = TermIndex(terms)
        self.cue_index = TermIndex(CUE_TERMS)
        self.all_terms: frozenset[str] = frozenset(terms) | CUE_TERMS | self.keep_whole
        # What a claim is about (its agents and targets): a debunk document that names them
        # away from the claim is discussing the claim.
        self.subject_terms: frozenset[str] = frozenset(
            normalise_term(t)
            for kind, _, _, words in self.vocabulary.values()
            if kind in ("agent", "target")
            for t in words
        )
        # Appeals to unnamed research: a rule's `not` term inside one does not switch it off.
        appeal = self.vocabulary.get("marker.fake_research")
        self.research_appeals: frozenset[str] = frozenset(
            normalise_term(t) for t in (appeal[3] if appeal else ())
        )
        self.document_index = TermIndex(DOCUMENT_CUES)
        self.local_debunk_index = TermIndex(LOCAL_DEBUNK)
        domain_terms: dict[str, list[str]] = {}
        for domain, words in self.domain_keywords.items():
            for word in words:
                domain_terms.setdefault(word, []).append(domain)
        self.domain_terms: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in domain_terms.items()
        }
        self.domain_index = TermIndex(domain_terms)
        # Terms that show a version names its source (the rules' not_document terms).
        self.source_terms: frozenset[str] = frozenset(
            t for rule in self.rules for t in rule.exclude_document
        )

    def __len__(self) -> int:
        return len(self.rules)

    def segmenter(self, name: str = "auto") -> Segmenter:
        """Return (building once) the segmenter for a backend, with all terms in its dictionary."""
        backend = resolve_backend(name)
        seg = self._segmenters.get(backend)
        if seg is None:
            seg = make_segmenter(backend, self.all_terms)
            self._segmenters[backend] = seg
        return seg

    def rule(self, rule_id: str) -> Rule:
        """Return the rule with this id (KeyError if absent)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def without(self, rule_ids: Iterable[str]) -> Ruleset:
        """A ruleset with these rules switched off (unknown ids are ignored).

        Its version is derived from this one and the sorted ids actually removed, so a report
        always names exactly the rules that could have fired."""
        dropped = sorted({r.id for r in self.rules} & set(rule_ids))
        if not dropped:
            return self
        digest = hashlib.sha256(self.version.encode("utf-8"))
        for rid in dropped:
            digest.update(b"\0-" + rid.encode("utf-8"))
        keep = [r for r in self.rules if r.id not in set(dropped)]
        version = "sha256:" + digest.hexdigest()[:16]
        return Ruleset(
            keep, version, self.domain_keywords, self.files, self.keep_whole, self.vocabulary
        )


def _str(value: object, file: str, rid: str | None, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise RulePackError(file, rid, name, "must be a non-empty string")
    return value


def _str_list(value: object, file: str, rid: str | None, name: str, *, nonempty: bool) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulePackError(file, rid, name, "must be a list of non-empty strings")
    if nonempty and not value:
        raise RulePackError(file, rid, name, "must not be empty")
    return list(value)


def _expand(
    items: Sequence[str], lexicon: Mapping[str, list[str]], file: str, rid: str, name: str
) -> TermGroup:
    terms: list[str] = []
    regexes: list[re.Pattern[str]] = []
    for item in items:
        if item.startswith("@"):
            key = item[1:]
            if key not in lexicon:
                raise RulePackError(file, rid, name, f"unknown lexicon entry {item!r}")
            terms.extend(lexicon[key])
        elif item.startswith("re:"):
            try:
                regexes.append(re.compile(item[3:]))
            except re.error as exc:
                raise RulePackError(
                    file, rid, name, f"bad regular expression {item!r}: {exc}"
                ) from exc
        else:
            terms.append(item)
    normalised = []
    for term in terms:
        norm = normalise_term(term).strip()
        if not norm:
            raise RulePackError(file, rid, name, f"term {term!r} is empty after normalisation")
        normalised.append(norm)
    unique = tuple(dict.fromkeys(normalised))
    return TermGroup(unique, tuple(regexes), frozenset(unique))


def _pick_anchor(groups: Sequence[TermGroup]) -> int:
    """The gating group when a rule names none: literal-only, with the longest shortest term
    (single characters and common two-character words let too many sentences through),
    then the fewest terms."""
    best = 0
    best_key: tuple[int, int] | None = None
    for i, group in enumerate(groups):
        if group.regexes or not group.terms:
            continue
        key = (min(4, min(len(t) for t in group.terms)), -len(group.terms))
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def _compile_rule(raw: object, lexicon: Mapping[str, list[str]], file: str, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise RulePackError(file, f"#{index}", None, "a rule must be a table")
    rid_raw = raw.get("id")
    if not isinstance(rid_raw, str) or not ID_RE.match(rid_raw):
        raise RulePackError(
            file, f"#{index}", "id", "must be lower-case letters/digits joined by . _ or -"
        )
    rid = rid_raw
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RulePackError(file, rid, sorted(unknown)[0], "unknown field")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RulePackError(file, rid, "version", "must be an integer >= 1")
    title = _str(raw.get("title"), file, rid, "title")
    category = _str(raw.get("category"), file, rid, "category")
    if category not in CATEGORIES:
        raise RulePackError(
            file, rid, "category", f"{category!r} is not one of {', '.join(CATEGORIES)}"
        )
    domains = _str_list(raw.get("domains"), file, rid, "domains", nonempty=True)
    for d in domains:
        if d not in DOMAINS:
            raise RulePackError(file, rid, "domains", f"{d!r} is not one of {', '.join(DOMAINS)}")
    severity = _str(raw.get("severity"), file, rid, "severity")
    if severity not in SEVERITIES:
        raise RulePackError(file, rid, "severity", f"must be one of {', '.join(SEVERITIES)}")
    explanation = _str(raw.get("explanation"), file, rid, "explanation")
    if not re.search(r"[\u4e00-\u9fff]", explanation):
        raise RulePackError(file, rid, "explanation", "must be written in Chinese")
    references = _str_list(raw.get("references", []), file, rid, "references", nonempty=False)
    must_flag = _str_list(raw.get("must_flag"), file, rid, "must_flag", nonempty=True)
    must_pass = _str_list(raw.get("must_pass"), file, rid, "must_pass", nonempty=True)
    ignore = _str_list(raw.get("ignore_contexts", []), file, rid, "ignore_contexts", nonempty=False)
    bad = set(ignore) - IGNORABLE_CONTEXTS
    if bad:
        raise RulePackError(file, rid, "ignore_contexts", f"cannot ignore {sorted(bad)}")
    pattern = raw.get("pattern")
    if not isinstance(pattern, dict):
        raise RulePackError(file, rid, "pattern", "must be a table")
    unknown = set(pattern) - PATTERN_KEYS
    if unknown:
        raise RulePackError(file, rid, "pattern." + sorted(unknown)[0], "unknown field")
    if ("any" in pattern) == ("all" in pattern):
        raise RulePackError(file, rid, "pattern", "needs exactly one of 'any' or 'all'")
    raw_groups: list[list[str]] = []
    if "any" in pattern:
        raw_groups.append(_str_list(pattern["any"], file, rid, "pattern.any", nonempty=True))
    else:
        all_groups = pattern["all"]
        if not isinstance(all_groups, list) or not all_groups:
            raise RulePackError(file, rid, "pattern.all", "must be a non-empty list of groups")
        for gi, group in enumerate(all_groups):
            items = [group] if isinstance(group, str) else group
            raw_groups.append(_str_list(items, file, rid, f"pattern.all[{gi}]", nonempty=True))
    groups = tuple(
        _expand(g, lexicon, file, rid, "pattern.any" if "any" in pattern else f"pattern.all[{i}]")
        for i, g in enumerate(raw_groups)
    )
    anchor = pattern.get("anchor")
    if anchor is None:
        anchor = _pick_anchor(groups)
    if not isinstance(anchor, int) or isinstance(anchor, bool) or not 0 <= anchor < len(groups):
        raise RulePackError(file, rid, "pattern.anchor", "must be the index of a group")
    if groups[anchor].regexes or not groups[anchor].terms:
        raise RulePackError(
            file,
            rid,
            "pattern",
            "the anchor group must hold literal terms only (it gates the rule)",
        )
    ordered = pattern.get("ordered", False)
    if not isinstance(ordered, bool):
        raise RulePackError(file, rid, "pattern.ordered", "must be true or false")
    window = pattern.get("window", 0)
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise RulePackError(
            file, rid, "pattern.window", "must be an integer >= 0 (0 = whole scope)"
        )
    scope = pattern.get("scope", "sentence")
    if scope not in ("sentence", "clause"):
        raise RulePackError(file, rid, "pattern.scope", "must be 'sentence' or 'clause'")
    exclude_raw = _str_list(pattern.get("not", []), file, rid, "pattern.not", nonempty=False)
    exclude = _expand(exclude_raw, lexicon, file, rid, "pattern.not")
    if exclude.regexes:
        raise RulePackError(file, rid, "pattern.not", "must hold literal terms only")
    doc_raw = _str_list(
        pattern.get("not_document", []), file, rid, "pattern.not_document", nonempty=False
    )
    exclude_doc = _expand(doc_raw, lexicon, file, rid, "pattern.not_document")
    if exclude_doc.regexes:
        raise RulePackError(file, rid, "pattern.not_document", "must hold literal terms only")
    return Rule(
        id=rid,
        version=version,
        title=title,
        category=category,
        domains=tuple(domains),
        severity=severity,
        explanation=explanation,
        references=tuple(references),
        groups=groups,
        anchor=anchor,
        ordered=ordered,
        window=window,
        scope=scope,
        exclude=exclude.terms,
        ignore_contexts=frozenset(ignore),
        must_flag=tuple(must_flag),
        must_pass=tuple(must_pass),
        source=file,
        exclude_document=exclude_doc.terms,
    )


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    data = path.read_bytes()
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RulePackError(path.name, None, None, f"not valid UTF-8 TOML: {exc}") from exc
    return data, parsed


def load_ruleset(directory: str | Path | None = None) -> Ruleset:
    """Load and validate every *.toml pack in a directory (default: rules/packs)."""
    root = Path(directory) if directory is not None else PACK_DIR
    if not root.is_dir():
        raise RulePackError(str(root), None, None, "rule pack directory does not exist")
    paths = sorted(root.glob("*.toml"))
    if not paths:
        raise RulePackError(str(root), None, None, "no *.toml rule packs found")
    digest = hashlib.sha256()
    parsed: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        data, doc = _read(path)
        digest.update(path.name.encode("utf-8") + b"\0" + data + b"\0")
        parsed.append((path.name, doc))
    lexicon: dict[str, list[str]] = {}
    domain_keywords: dict[str, tuple[str, ...]] = {}
    for name, doc in parsed:
        unknown = set(doc) - {
            "pack",
            "description",
            "lexicon",
            "domain_keywords",
            "rule",
            "vocabulary",
            "segmentation",
        }
        if unknown:
            raise RulePackError(name, None, sorted(unknown)[0], "unknown top-level key")
        for key, words in doc.get("lexicon", {}).items():
            if key in lexicon:
                raise RulePackError(name, None, f"lexicon.{key}", "defined twice")
            lexicon[key] = _str_list(words, name, None, f"lexicon.{key}", nonempty=True)
        for domain, words in doc.get("domain_keywords", {}).items():
            if domain not in DOMAINS:
                raise RulePackError(name, None, f"domain_keywords.{domain}", "unknown domain")
            items = _str_list(words, name, None, f"domain_keywords.{domain}", nonempty=True)
            domain_keywords[domain] = domain_keywords.get(domain, ()) + tuple(
                normalise_term(w) for w in items
            )
    vocabulary: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
    keep_whole: set[str] = set()
    for name, doc in parsed:
        _read_vocabulary(name, doc, lexicon, vocabulary)
        seg = doc.get("segmentation", {})
        if not isinstance(seg, dict) or set(seg) - {"keep_whole"}:
            raise RulePackError(name, None, "segmentation", "only 'keep_whole' is allowed")
        words = _str_list(
            seg.get("keep_whole", []), name, None, "segmentation.keep_whole", nonempty=False
        )
        keep_whole.update(normalise_term(w) for w in words)
    # Lexicon entries may refer to other entries with "@name" (one level).
    for key, words in list(lexicon.items()):
        flat: list[str] = []
        for w in words:
            if w.startswith("@"):
                if w[1:] not in lexicon:
                    raise RulePackError("lexicon", None, f"lexicon.{key}", f"unknown entry {w!r}")
                flat.extend(x for x in lexicon[w[1:]] if not x.startswith("@"))
            else:
                flat.append(w)
        lexicon[key] = flat
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name, doc in parsed:
        raw_rules = doc.get("rule", [])
        if not isinstance(raw_rules, list):
            raise RulePackError(name, None, "rule", "must be an array of tables ([[rule]])")
        for i, raw in enumerate(raw_rules):
            rule = _compile_rule(raw, lexicon, name, i)
            if rule.id in seen:
                raise RulePackError(name, rule.id, "id", f"duplicate id (also in {seen[rule.id]})")
            seen[rule.id] = name
            rules.append(rule)
    # The engine's own code is part of the version: the same packs screened by changed
    # matching or context code can give different reports.
    for source in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(b"engine/" + source.name.encode("utf-8") + b"\0" + source.read_bytes())
    version = "sha256:" + digest.hexdigest()[:16]
    return Ruleset(
        rules,
        version,
        domain_keywords,
        tuple(n for n, _ in parsed),
        frozenset(keep_whole),
        vocabulary,
    )


def _read_vocabulary(
    file: str,
    doc: Mapping[str, Any],
    lexicon: dict[str, list[str]],
    vocabulary: dict[str, tuple[str, str, str, tuple[str, ...]]],
) -> None:
    """Turn `[vocabulary.<kind>.<name>]` tables into lexicon entries a pattern can name:
    `@<kind>.<name>` (one class), `@<kind>` (every class of the kind) and, for agents,
    `@agent:backed` / `@agent:not_backed` (by evidence status)."""
    tables = doc.get("vocabulary", {})
    if not isinstance(tables, dict):
        raise RulePackError(file, None, "vocabulary", "must be a table")
    for kind, classes in tables.items():
        if kind not in VOCABULARY_KINDS or not isinstance(classes, dict):
            raise RulePackError(
                file, None, f"vocabulary.{kind}", f"kind must be one of {sorted(VOCABULARY_KINDS)}"
            )
        for cname, entry in classes.items():
            key = f"{kind}.{cname}"
            where = f"vocabulary.{key}"
            if not isinstance(entry, dict) or set(entry) - VOCABULARY_KEYS:
                raise RulePackError(
                    file, None, where, f"a class is a table of {sorted(VOCABULARY_KEYS)}"
                )
            if key in lexicon or key in vocabulary:
                raise RulePackError(file, None, where, "defined twice")
            terms = _str_list(entry.get("terms"), file, None, where + ".terms", nonempty=True)
            category = _str(entry.get("category", kind), file, None, where + ".category")
            evidence = entry.get("evidence", "")
            if kind == "agent" and evidence not in EVIDENCE:
                raise RulePackError(
                    file, None, where + ".evidence", f"an agent needs one of {sorted(EVIDENCE)}"
                )
            if kind != "agent" and evidence:
                raise RulePackError(file, None, where + ".evidence", "only agents have one")
            vocabulary[key] = (kind, category, str(evidence), tuple(terms))
            lexicon[key] = list(terms)
            for union in (kind, f"{kind}:{evidence}" if evidence else None):
                if union is not None:
                    lexicon.setdefault(union, []).extend(terms)


@lru_cache(maxsize=1)
def load_default_ruleset() -> Ruleset:
    """Load rules/packs once per process."""
    return load_ruleset(None)

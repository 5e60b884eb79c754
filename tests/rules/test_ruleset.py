"""Rule pack loading: validation errors name file, rule and field; the version is a hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import CATEGORIES, DOMAINS, RulePackError, load_ruleset
from rules.matcher import TermIndex, has_automaton
from rules.ruleset import PACK_DIR, Ruleset

GOOD = """
pack = "t"
[lexicon]
thing = ["排毒", "清肠"]

[[rule]]
id = "t.one"
version = 1
title = "测试"
category = "伪机理"
domains = ["医学健康"]
severity = "medium"
pattern = { any = ["@thing"] }
explanation = "测试用的规则。"
must_flag = ["喝这个茶可以排毒。"]
must_pass = ["今天天气很好。"]
"""


def _write(tmp_path: Path, text: str, name: str = "pack.toml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_good_pack_loads(tmp_path: Path) -> None:
    rs = load_ruleset(_write(tmp_path, GOOD))
    assert len(rs) == 1
    assert rs.rules[0].groups[0].terms == ("排毒", "清肠")
    assert rs.version.startswith("sha256:")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('category = "伪机理"', 'category = "玄学"', "category"),
        ('severity = "medium"', 'severity = "urgent"', "severity"),
        ('domains = ["医学健康"]', 'domains = ["医学"]', "domains"),
        ('domains = ["医学健康"]', "domains = []", "domains"),
        ("version = 1", "version = 0", "version"),
        ("version = 1", 'version = "1"', "version"),
        ('title = "测试"', 'title = ""', "title"),
        ('explanation = "测试用的规则。"', 'explanation = "english only"', "explanation"),
        ('must_flag = ["喝这个茶可以排毒。"]', "must_flag = []", "must_flag"),
        ('must_pass = ["今天天气很好。"]', "", "must_pass"),
        ('pattern = { any = ["@thing"] }', 'pattern = { any = ["@nothing"] }', "pattern.any"),
        ('pattern = { any = ["@thing"] }', 'pattern = { foo = ["x"] }', "pattern.foo"),
        ('pattern = { any = ["@thing"] }', 'pattern = { any = ["re:(x"] }', "pattern.any"),
        ('pattern = { any = ["@thing"] }', 'pattern = { any = ["re:x+"] }', "pattern"),
        (
            'pattern = { any = ["@thing"] }',
            'pattern = { all = [["re:x+"], ["y"]], anchor = 0 }',
            "pattern",
        ),
        (
            'pattern = { any = ["@thing"] }',
            'pattern = { any = ["x"], anchor = 3 }',
            "pattern.anchor",
        ),
        (
            'pattern = { any = ["@thing"] }',
            'pattern = { any = ["x"], window = -1 }',
            "pattern.window",
        ),
        ('id = "t.one"', 'id = "T One"', "id"),
        ('title = "测试"', 'title = "测试"\ncolour = "red"', "colour"),
    ],
)
def test_invalid_rule_names_file_rule_and_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in GOOD
    with pytest.raises(RulePackError) as err:
        load_ruleset(_write(tmp_path, GOOD.replace(old, new), "bad_pack.toml"))
    message = str(err.value)
    assert "bad_pack.toml" in message
    assert err.value.field == field, message
    if field != "id":
        assert "t.one" in message


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "a.toml")
    _write(tmp_path, GOOD.replace("[lexicon]\nthing", "[lexicon]\nother"), "b.toml")
    with pytest.raises(RulePackError, match="duplicate id"):
        load_ruleset(tmp_path)


@pytest.mark.parametrize("text", ["this is = not toml [", b"\xff\xfe".decode("latin-1")])
def test_broken_toml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(RulePackError, match="broken.toml"):
        load_ruleset(_write(tmp_path, text, "broken.toml"))


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulePackError, match="does not exist"):
        load_ruleset(tmp_path / "nope")


def test_version_changes_with_content(tmp_path: Path) -> None:
    v1 = load_ruleset(_write(tmp_path, GOOD)).version
    assert load_ruleset(tmp_path).version == v1
    v2 = load_ruleset(_write(tmp_path, GOOD.replace("清肠", "清肠茶"))).version
    assert v1 != v2


def test_default_packs_cover_every_category_and_domain(ruleset: Ruleset) -> None:
    assert {r.category for r in ruleset.rules} == set(CATEGORIES)
    covered = {d for r in ruleset.rules for d in r.domains} | set(ruleset.domain_keywords)
    assert covered == set(DOMAINS)
    assert set(ruleset.domain_keywords) == set(DOMAINS)
    assert ruleset.files and all((PACK_DIR / f).exists() for f in ruleset.files)


@pytest.mark.parametrize("use_automaton", [False, True])
def test_term_index_finds_every_overlapping_occurrence(use_automaton: bool) -> None:
    if use_automaton and not has_automaton():
        pytest.skip("pyahocorasick not installed")
    terms = ["排毒", "排毒养颜", "毒", "养颜茶", "a", "量子养生", "毒毒", "N", "一丁", "😀毒"]
    text = "喝排毒养颜茶，量子养生，排毒，a毒毒毒\u4e00\u0000N一丁😀毒\ud800毒"
    expected = sorted(
        (i, i + len(t), t) for t in terms for i in range(len(text)) if text.startswith(t, i)
    )
    index = TermIndex(terms, use_automaton=use_automaton)
    assert sorted(index.find(text)) == expected
    assert index.present(text) == {t for _, _, t in expected}
    assert index.count("毒毒毒") == {"毒": 3, "毒毒": 2}
    assert TermIndex([], use_automaton=use_automaton).find(text) == []
    assert index.find("") == []

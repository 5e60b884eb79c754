"""Switching rules off: the reduced ruleset stops firing them and names itself differently."""

from __future__ import annotations

import rules


def test_without_drops_rules_and_changes_version() -> None:
    full = rules.load_default_ruleset()
    text = [rules.Segment("body", "喝小分子水可以治疗糖尿病，效果百分之百。")]
    fired = {f.rule_id for f in rules.screen(text, full).findings}
    assert fired, "the example must trigger at least one rule"
    reduced = full.without(fired | {"no-such-rule"})
    assert len(reduced) == len(full) - len(fired)
    assert reduced.version != full.version
    assert reduced.version == full.without(sorted(fired)).version
    assert not {f.rule_id for f in rules.screen(text, reduced).findings} & fired
    assert full.without({"no-such-rule"}) is full

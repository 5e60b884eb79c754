"""Every rule's own must_flag / must_pass examples, one test case each."""

from __future__ import annotations

import pytest

from rules import Segment, load_default_ruleset, screen

_RULESET = load_default_ruleset()
_CASES = [
    pytest.param(rule.id, kind, text, id=f"{rule.id}:{kind}:{i}")
    for rule in _RULESET.rules
    for kind, texts in (("must_flag", rule.must_flag), ("must_pass", rule.must_pass))
    for i, text in enumerate(texts)
]


@pytest.mark.parametrize(("rule_id", "kind", "text"), _CASES)
def test_rule_example(rule_id: str, kind: str, text: str) -> None:
    report = screen([Segment("body", text)], _RULESET)
    fired = [f for f in report.findings if f.rule_id == rule_id]
    if kind == "must_flag":
        held = [f"{f.rule_id}({f.context})" for f in report.suppressed]
        assert fired, f"{rule_id} should flag {text!r}; suppressed: {held}"
        for f in fired:
            assert text[f.start : f.end] == f.text
    else:
        assert not fired, f"{rule_id} should pass {text!r} but fired on {fired[0].text!r}"


def test_every_rule_has_examples() -> None:
    for rule in _RULESET.rules:
        assert rule.must_flag and rule.must_pass, rule.id

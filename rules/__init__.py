"""Pure screening engine for pseudo-science claims in Chinese science-popularisation texts.

No Flask, no database, no clock, no environment: configuration is passed in.
"""

from __future__ import annotations

from .engine import ScreeningInputError, screen
from .model import (
    CATEGORIES,
    CONTEXTS,
    DOMAINS,
    LEVELS,
    SEVERITIES,
    Finding,
    Report,
    Segment,
    Thresholds,
)
from .normalize import Normalised, normalise
from .ruleset import Rule, RulePackError, Ruleset, load_default_ruleset, load_ruleset
from .segmenter import BACKENDS, resolve_backend
from .tools import (
    ExampleFailure,
    evaluate,
    evaluate_in_articles,
    format_scan,
    run_examples,
    segments_from_text,
)

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "CONTEXTS",
    "DOMAINS",
    "LEVELS",
    "SEVERITIES",
    "ExampleFailure",
    "Finding",
    "Normalised",
    "Report",
    "Rule",
    "RulePackError",
    "Ruleset",
    "ScreeningInputError",
    "Segment",
    "Thresholds",
    "evaluate",
    "evaluate_in_articles",
    "format_scan",
    "load_default_ruleset",
    "load_ruleset",
    "normalise",
    "resolve_backend",
    "run_examples",
    "screen",
    "segments_from_text",
]

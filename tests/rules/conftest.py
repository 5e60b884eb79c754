"""Shared fixtures for the pure screening engine tests (no app, no database)."""

from __future__ import annotations

import pytest

from rules import Ruleset, load_default_ruleset


@pytest.fixture(scope="session")
def ruleset() -> Ruleset:
    """The repository's rule packs, loaded once."""
    return load_default_ruleset()

"""The Flask application package; ``create_app`` is built in ``review.app``.

Importing the package stays cheap (no Flask extensions, no SQLAlchemy), so that the pure
``kepu rules ...`` commands start quickly; everything else is loaded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_LAZY = {"login_manager", "csrf", "migrate", "error_response", "HTTP_MESSAGES"}


def create_app(overrides: Mapping[str, Any] | None = None) -> Any:
    """Build the application from the environment plus ``overrides`` (see review.app)."""
    from review.app import create_app as build

    return build(overrides)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from review import app

        return getattr(app, name)
    raise AttributeError(f"module 'review' has no attribute {name!r}")

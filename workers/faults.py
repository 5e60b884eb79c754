"""Test-only fault points for the fault tests (tests/faults, RELIABILITY.md scenarios 1–12).

Nothing here does anything unless ``KEPU_FAULT_INJECTION`` names the fault point; the variable
is empty by default, and config.py refuses it together with ``KEPU_SECURE_COOKIES`` (a real
HTTPS deployment). Never set it in production: the points kill or stall processes on purpose.

Points (comma-separated in ``KEPU_FAULT_INJECTION``):

``relay_after_publish``
    the relay process exits with status 137 right after publishing an outbox row and before
    marking it sent (scenario 4: the row is published again by the next relay).
``relay_slow``
    the relay waits 0.3 s after each row, so a test can stop it in the middle of a batch.
``screening``
    the screening task obeys markers in the version's title, checked after the attempt counter
    is committed and before the rule packs are loaded:
    ``[fault:slow=N]`` sleeps N seconds in every attempt, ``[fault:stall=N]`` only in the first
    attempt; ``[fault:crash]`` ends the pool process with
    ``os._exit(1)`` (a crashing decoder); ``[fault:transient=N]`` raises ``ConnectionError``
    in the first N attempts; ``[fault:corrupt]`` raises ``ValueError`` every time.
"""

from __future__ import annotations

import logging
import os
import re
import time

from flask import current_app

log = logging.getLogger(__name__)

POINTS = frozenset({"relay_after_publish", "relay_slow", "screening"})
_MARKER = re.compile(r"\[fault:(slow|stall|crash|transient|corrupt)(?:=(\d+))?\]")


def enabled(point: str) -> bool:
    """True when the test-only fault point ``point`` is switched on for this process."""
    raw = str(current_app.config.get("FAULT_INJECTION") or "")
    names = {name.strip() for name in raw.split(",") if name.strip()}
    unknown = names - POINTS
    if unknown:
        raise ValueError(f"unknown KEPU_FAULT_INJECTION points: {sorted(unknown)}")
    return point in names


def relay_point(name: str) -> None:
    """A named point inside the outbox relay (see the module docstring)."""
    if name == "relay_after_publish" and enabled(name):
        log.warning("fault injection: relay exits after publishing, before marking sent")
        logging.shutdown()
        os._exit(137)
    if name == "relay_slow" and enabled(name):
        time.sleep(0.3)


def screening_point(title: str, attempt: int) -> None:
    """Obey a ``[fault:...]`` marker in a version title (only when ``screening`` is on)."""
    match = _MARKER.search(title)
    if match is None or not enabled("screening"):
        return
    kind, arg = match.group(1), int(match.group(2) or 0)
    log.warning("fault injection: %s=%s in screening attempt %s", kind, arg, attempt)
    if kind == "slow" or (kind == "stall" and attempt == 1):
        # End the read transaction first: on SQLite an open one would block every writer.
        from review.db import db

        db.session.rollback()
        time.sleep(arg)
    elif kind == "crash":
        logging.shutdown()
        os._exit(1)
    elif kind == "transient" and attempt <= arg:
        raise ConnectionError(f"fault injection: transient error in attempt {attempt}")
    elif kind == "corrupt":
        raise ValueError("corrupt dictionary (fault injection)")

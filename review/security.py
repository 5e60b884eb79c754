"""The security log: denied requests and sign-in failures, for operators (ASVS 16.3).

The audit ledger is the business record; this logger (``kepu.security``) is what an operator's
log shipping watches for probing: every 401/403, failed or throttled sign-in.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kepu.security")


def security_event(event: str, **fields: Any) -> None:
    """Log one security event at WARNING with ``key=value`` fields (values repr'd)."""
    details = " ".join(f"{key}={value!r}" for key, value in sorted(fields.items()))
    log.warning("security %s %s", event, details)


def request_fields() -> dict[str, Any]:
    """Who asked for what, from the current request."""
    from flask import g, has_request_context, request
    from flask_login import current_user

    if not has_request_context():
        return {}
    try:
        if request.blueprint == "api":
            user = getattr(g, "api_user", None)
        else:
            user = current_user if current_user.is_authenticated else None
        username = getattr(user, "username", None)
    except Exception:  # a broken session must not break the log line
        username = None
    return {
        "user": username,
        "ip": request.remote_addr,
        "method": request.method,
        "path": request.path,
        "request_id": getattr(g, "request_id", None),
    }

"""RELIABILITY scenario 24: schemathesis over the published OpenAPI document, per role.

Every operation is called with generated valid and invalid data (NUL characters included),
signed in as editor, expert, auditor and admin in turn, on PostgreSQL. The checks: no 5xx, only
documented statuses, responses that match their schemas, invalid data always refused with a
4xx, and no operation that answers 2xx once the token is removed. Deterministic (fixed seed,
derandomized hypothesis) and kept small so the module runs in a few minutes on two cores.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import GENUINE_BODY, GENUINE_TITLE, PSEUDO_BODY, PSEUDO_TITLE, submit_screened

#: Examples per operation and mode; raise it for a longer (nightly) run.
MAX_EXAMPLES = int(os.environ.get("KEPU_SCHEMATHESIS_EXAMPLES", "10"))
# Werkzeug's test client spools a generated multipart body over 500 kB into an anonymous
# TemporaryFile that schemathesis' WSGI transport never closes (client side, not the app's:
# the app's upload files are named files in the media folder, closed by KepuRequest.close).
pytestmark = [
    pytest.mark.timeout(max(300, 30 * MAX_EXAMPLES)),  # per role
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
CONFIG = {
    "seed": 20261129,
    "generation": {"allow-x00": True, "max-examples": MAX_EXAMPLES},
}


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only: it is the backend that refuses NUL characters in text."""
    return pg_url


@pytest.fixture(params=["editor", "expert", "auditor", "admin"])
def role_headers(request: pytest.FixtureRequest, app: Any, factory: Any) -> dict[str, str]:
    """A small world (a flagged item offered to an expert, a cleared one, a draft) and the
    token of the role under test."""
    unit = factory.unit("威海日报社")
    editor = factory.user("editor", unit=unit)
    expert = factory.expert(domains=("医学健康", "食品药品安全"), senior=True)
    factory.expert(domains=("医学健康",))
    users = {
        "editor": editor,
        "expert": expert,
        "auditor": factory.user("auditor"),
        "admin": factory.user("admin"),
    }
    editor_headers = factory.token(editor)
    submit_screened(app, editor_headers, PSEUDO_TITLE, PSEUDO_BODY)
    submit_screened(app, editor_headers, GENUINE_TITLE, GENUINE_BODY)
    resp = app.test_client().post("/api/v1/items", headers=editor_headers, json={"title": "草稿"})
    assert resp.status_code == 201
    return factory.token(users[request.param])  # type: ignore[no-any-return]


def _exercise(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    """Up to MAX_EXAMPLES generated calls of one operation in one mode, all checks on each."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_api_keeps_its_description(app: Any, role_headers: dict[str, str]) -> None:
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation, mode, role_headers)
            except BaseException as exc:  # every failure comes with its curl reproducer
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"--- {operation.label} ({mode.value})\n{exc}")
    assert not failures, "\n".join(failures)

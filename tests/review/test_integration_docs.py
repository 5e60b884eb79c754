"""The receiving example in docs/integration-webhooks.md runs as written against a real delivery."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from review.db import db
from review.webhooks import DeliveryStatus, WebhookDelivery, create_subscriber
from tests.conftest import PSEUDO_BODY, PSEUDO_TITLE, ROOT, submit_screened, wait_until
from tests.review.test_webhooks import _run_outbox

DOC = ROOT / "docs" / "integration-webhooks.md"
PORT = 5104
SECRET = "docs-example-secret-0123456789"


def example_code() -> str:
    """The Python block after the ``<!-- example: webhook-receiver -->`` marker."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- example: webhook-receiver -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the receiving example is missing from the docs"
    return match.group(1)


def _listening() -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", PORT)) == 0


@pytest.fixture
def example_receiver(tmp_path: Path) -> Iterator[Any]:
    script = tmp_path / "receiver.py"
    script.write_text(example_code(), encoding="utf-8")
    out = tmp_path / "receiver.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            env=dict(os.environ, KEPU_WEBHOOK_SECRET=SECRET, PORT=str(PORT)),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: _listening() or proc.poll() is not None, timeout=30)
            assert proc.poll() is None, out.read_text()
            yield out
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_docs_receiver_accepts_a_real_delivery_and_rejects_forgeries(
    app: Any, factory: Any, example_receiver: Path
) -> None:
    create_subscriber(
        url=f"http://127.0.0.1:{PORT}/kepu",
        events=["item.flagged"],
        secret=SECRET,
        actor=factory.user("admin"),
    )
    db.session.commit()
    item_id = submit_screened(app, factory.token(factory.user("editor")), PSEUDO_TITLE, PSEUDO_BODY)
    assert _run_outbox() == ["delivered"]
    row = db.session.query(WebhookDelivery).one()
    assert row.status is DeliveryStatus.delivered and row.response_status == 200
    wait_until(lambda: f"item.flagged {item_id}" in example_receiver.read_text(), timeout=10)

    # Resent with the same delivery id: acknowledged, handled once.
    from review.webhooks import resend

    resend(row, actor=factory.user("admin"))
    db.session.commit()
    assert _run_outbox() == ["delivered"]
    assert example_receiver.read_text().count("item.flagged") == 1

    # A forged or altered request is refused with 401 (no retry loop on their side needed).
    body = b'{"event":"item.published"}'
    for signature in ("", "t=1,v1=00", f"t={int(time.time())},v1={'0' * 64}"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{PORT}/kepu",
            data=body,
            method="POST",
            headers={"X-Kepu-Signature": signature, "X-Kepu-Delivery": "forged"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310
        refused.value.close()
        assert refused.value.code == 401
    assert "item.published" not in example_receiver.read_text()

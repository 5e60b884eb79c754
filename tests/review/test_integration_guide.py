"""docs/integration.md runs: its `kepu` commands and curl requests are executed in order against
the real API, each answer has the status its example shows, and every example response (and every
real one) matches the schema the OpenAPI document publishes for it."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from review.db import db
from review.models import Item
from tests.conftest import ROOT
from workers import screening

GUIDE = ROOT / "docs" / "integration.md"
FENCE = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```", re.S | re.M)
SRT = "1\n00:00:00,000 --> 00:00:01,500\n先用流动的清水打湿双手\n".encode()


def blocks() -> list[tuple[str, str, str]]:
    """(language, info, text) of every fenced block, in order."""
    return [(m[1], m[2].strip(), m[3]) for m in FENCE.finditer(GUIDE.read_text(encoding="utf-8"))]


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return ops[method.lower()]  # type: ignore[no-any-return]
    raise AssertionError(f"the guide calls {method} {path}, which the API does not describe")


def _schema(op: dict[str, Any], status: int) -> dict[str, Any]:
    response = op["responses"].get(str(status))
    assert response is not None, f"status {status} is not documented for {op['operationId']}"
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


class Curl:
    """One curl command of the guide, parsed into what the test client needs."""

    def __init__(self, text: str, variables: dict[str, str]) -> None:
        words = shlex.split(text.replace("\\\n", " "))
        assert words[0] == "curl", text
        self.method, self.headers, self.data, self.form = "GET", {}, None, []
        self.url = ""
        rest = iter(words[1:])
        for word in rest:
            if word == "-s":
                continue
            if word == "-X":
                self.method = next(rest)
            elif word == "-H":
                name, _, value = next(rest).partition(":")
                self.headers[name.strip()] = self._fill(value.strip(), variables)
            elif word == "-d":
                self.data = self._fill(next(rest), variables)
                self.method = "POST" if self.method == "GET" else self.method
            elif word == "-F":
                self.form.append(next(rest))
                self.method = "POST" if self.method == "GET" else self.method
            else:
                assert word.startswith("$KEPU/"), f"unexpected curl argument {word!r}"
                self.url = self._fill(word.removeprefix("$KEPU"), variables)

    @staticmethod
    def _fill(text: str, variables: dict[str, str]) -> str:
        for name, value in variables.items():
            text = text.replace(f"${name}", value)
        assert "$" not in text, f"unknown variable in {text!r}"
        return text

    def send(self, client: Any, files: dict[str, Path]) -> Any:
        if self.form:
            data: dict[str, Any] = {}
            for field in self.form:
                name, _, value = field.partition("=")
                if value.startswith("@"):
                    path = files[Path(value[1:]).suffix]
                    data.setdefault(name, []).append((io.BytesIO(path.read_bytes()), value[1:]))
                else:
                    data[name] = value
            return client.open(
                self.url,
                method=self.method,
                headers=self.headers,
                data=data,
                content_type="multipart/form-data",
            )
        return client.open(
            self.url, method=self.method, headers=self.headers, data=self.data or None
        )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    from tests.media_files import plain_video

    srt = tmp_path / "handwash.srt"
    srt.write_bytes(SRT)
    return {".mp4": plain_video(tmp_path / "handwash.mp4", seconds=2), ".srt": srt}


def _screen_pending() -> None:
    """What the worker would do between two steps: screen submitted articles."""
    for item in db.session.scalars(db.select(Item)):
        if item.kind.value == "article" and item.state.value == "submitted":
            screening.screen_version(item.current_version_id)


def test_the_guide_matches_the_api(app: Any, files: dict[str, Path]) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").json
    runner = app.test_cli_runner()
    client = app.test_client()
    variables: dict[str, str] = {}
    pending: tuple[dict[str, Any], Any] | None = None  # the last call and its response
    calls = examples = 0
    for language, info, text in blocks():
        if language == "sh" and text.startswith("kepu "):
            for line in text.strip().splitlines():
                result = runner.invoke(args=shlex.split(line)[1:])
                assert result.exit_code == 0, (line, result.output)
                token = result.output.strip().splitlines()[-1]
                assert token.startswith("kp_"), result.output
                variables["TOKEN"] = token
        elif language == "sh":
            assert text.startswith("curl "), text
            _screen_pending()
            item = db.session.get(Item, int(variables["ITEM"])) if "ITEM" in variables else None
            if item is not None and item.current_version is not None:
                db.session.refresh(item)
                variables["SHA"] = item.current_version.content_sha256
            curl = Curl(text, variables)
            resp = curl.send(client, files)
            op = _operation(doc, curl.method, curl.url.split("?")[0])
            assert str(resp.status_code) in op["responses"], (curl.url, resp.status_code)
            if resp.is_json:
                errors = list(_validator(doc, _schema(op, resp.status_code)).iter_errors(resp.json))
                assert not errors, (curl.url, errors[0].message)
            if curl.method == "POST" and curl.url == "/api/v1/items" and resp.status_code == 201:
                variables["VIDEO" if curl.form else "ITEM"] = str(resp.json["id"])
            pending = (op, resp)
            calls += 1
        elif language == "json" and info.isdigit():
            assert pending is not None, f"an example response without a request: {text[:60]}"
            op, resp = pending
            status = int(info)
            assert resp.status_code == status, (op["operationId"], resp.status_code, resp.json)
            example = json.loads(text)
            errors = list(_validator(doc, _schema(op, status)).iter_errors(example))
            assert not errors, (op["operationId"], errors[0].message)
            if status >= 400:
                assert example == resp.json  # an error example is exactly what the API answers
            pending = None
            examples += 1
        elif language == "json":
            schema = {"$ref": f"#/components/schemas/{info}"}
            errors = list(_validator(doc, schema).iter_errors(json.loads(text)))
            assert not errors, (info, errors[0].message)
            examples += 1
    assert calls >= 9 and examples >= 10
    assert set(variables) >= {"TOKEN", "ITEM", "VIDEO", "SHA"}


def test_the_guide_names_the_interactive_page_and_links_the_other_guide() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert "/api/v1/docs" in text and "/api/v1/openapi.json" in text
    assert "回执核验" in text and "Webhook" in text and "待补充" not in text
    # The receipt and webhook sections point into the other guide, whose headings exist.
    other = (GUIDE.parent / "integration-webhooks.md").read_text(encoding="utf-8")
    assert text.count("integration-webhooks.md#") == 2
    assert "## 一、Webhook 推送" in other and "## 二、发布回执校验" in other

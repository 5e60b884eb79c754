"""Publication receipts: signed (Ed25519) over content hash, decisions, experts and time, and
checked offline by `kepu receipt verify` (run as a subprocess with no database configured)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from review.db import db
from review.models import Item
from review.receipts import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    LEGACY_HASH_SCHEME,
    canonical_text,
    content_sha256,
    verify,
)
from review.signing import Signer
from tests.conftest import (
    GENUINE_BODY,
    GENUINE_TITLE,
    PSEUDO_BODY,
    PSEUDO_TITLE,
    run_kepu,
    submit_screened,
)

PASSWORD = "correct-horse-1"


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No database, no broker: the verifier must not need them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPU_")}
    env["KEPU_INSTANCE_PATH"] = str(tmp_path / "verifier-instance")
    env["KEPU_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    return env


def _kepu_verify(tmp_path: Path, *args: str) -> Any:
    return run_kepu("receipt", "verify", *args, env=_offline_env(tmp_path), check=False)


def _approved_and_published(app: Any, factory: Any) -> tuple[int, dict[str, Any], list[Any]]:
    """A flagged article approved by two experts and published; returns (item, file, experts)."""
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    experts = [factory.expert(senior=i == 0) for i in range(2)]
    item_id = submit_screened(app, ed, PSEUDO_TITLE, PSEUDO_BODY)
    for expert in experts:
        token = factory.token(expert)
        for a in client.get("/api/v1/assignments", headers=token).json:
            client.post(f"/api/v1/assignments/{a['id']}/accept", headers=token)
            resp = client.post(
                f"/api/v1/assignments/{a['id']}/decision",
                headers=token,
                json={"decision": "approve", "password": PASSWORD},
            )
            assert resp.status_code == 200, resp.json
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    document = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json
    return item_id, document, experts


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_receipt_covers_hash_decisions_experts_and_time(app: Any, factory: Any) -> None:
    item_id, document, experts = _approved_and_published(app, factory)
    receipt = document["receipt"]
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version is not None
    assert receipt["receipt_version"] == 2 and receipt["kind"] == "article"
    assert receipt["content_sha256"] == item.current_version.content_sha256
    assert receipt["content_sha256"] == content_sha256(PSEUDO_TITLE, PSEUDO_BODY)
    assert receipt["decision"] == "approved" and receipt["media"] == []
    assert sorted(d["expert_id"] for d in receipt["decisions"]) == sorted(e.id for e in experts)
    assert {d["decision"] for d in receipt["decisions"]} == {"approve"}
    assert all(d["signature"] and d["signed_at"] for d in receipt["decisions"])
    assert receipt["experts"] == sorted(e.display_name for e in experts)
    assert receipt["published_at"] and receipt["key_id"]
    assert verify(document, public_pem=app.extensions["kepu_signer"].public_pem()).ok
    assert receipt["hash_scheme"] == "kepu-version-v2"


def test_kepu_receipt_verify_good_edited_and_tampered(
    app: Any, factory: Any, tmp_path: Path
) -> None:
    item_id, document, _ = _approved_and_published(app, factory)
    pem = _write(tmp_path, "platform.pem", app.extensions["kepu_signer"].public_pem())
    good = _write(tmp_path, "receipt.json", document)
    body = _write(tmp_path, "article.txt", PSEUDO_BODY.encode())

    ok = _kepu_verify(tmp_path, str(good), "--pubkey", str(pem), "--content", str(body))
    assert ok.returncode == EXIT_OK, ok.stderr
    assert "签名有效" in ok.stdout and "内容与回执一致" in ok.stdout and "回执有效" in ok.stdout

    # The CMS edited the article after approval: one character changed.
    edited = _write(tmp_path, "edited.txt", PSEUDO_BODY.replace("高血压", "糖尿病").encode())
    bad = _kepu_verify(tmp_path, str(good), "--pubkey", str(pem), "--content", str(edited))
    assert bad.returncode == EXIT_INVALID and "内容与回执不符" in bad.stderr
    # A changed title is an edit too.
    retitled = _kepu_verify(
        tmp_path, str(good), "--pubkey", str(pem), "--content", str(body), "--title", "新标题"
    )
    assert retitled.returncode == EXIT_INVALID

    # Tampered receipts: each field the signature covers.
    for field, value in [
        ("content_sha256", content_sha256(PSEUDO_TITLE, "别的正文")),
        ("decision", "cleared"),
        ("experts", ["冒名专家"]),
        ("published_at", "2020-01-01T00:00:00+00:00"),
    ]:
        forged = json.loads(json.dumps(document))
        forged["receipt"][field] = value
        path = _write(tmp_path, f"forged-{field}.json", forged)
        out = _kepu_verify(tmp_path, str(path), "--pubkey", str(pem))
        assert out.returncode == EXIT_INVALID and "签名无效" in out.stderr, field

    # Re-signed by someone else, with their key inside the file: the trusted key refuses it.
    other = Signer(Ed25519PrivateKey.generate())
    forged = json.loads(json.dumps(document))
    forged["receipt"]["content_sha256"] = content_sha256(PSEUDO_TITLE, "别的正文")
    forged["receipt"]["key_id"] = other.key_id
    payload = {k: v for k, v in forged["receipt"].items() if k != "signature"}
    forged["receipt"]["signature"] = other.sign(payload)
    forged["public_key"] = other.public_pem()
    path = _write(tmp_path, "resigned.json", forged)
    assert _kepu_verify(tmp_path, str(path), "--pubkey", str(pem)).returncode == EXIT_INVALID
    # Without a trusted key, off the server, the key inside the file is not trusted: refused,
    # saying (in Chinese and English) where the platform's key comes from.
    loose = _kepu_verify(tmp_path, str(path))
    assert loose.returncode == EXIT_USAGE, loose.stdout
    assert "--pubkey" in loose.stderr and "/api/v1/audit/public-key" in loose.stderr
    assert "No trusted public key" in loose.stderr and "回执有效" not in loose.stdout
    # The genuine receipt is refused too without a key: nothing is taken on the file's word.
    assert _kepu_verify(tmp_path, str(good)).returncode == EXIT_USAGE


def test_the_receipt_of_a_revised_item_refuses_the_earlier_text(
    app: Any, factory: Any, tmp_path: Path
) -> None:
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, GENUINE_TITLE, "第一稿：流感疫苗需要每年接种。")
    resp = client.post(
        f"/api/v1/items/{item_id}/revise",
        headers=ed,
        json={"title": GENUINE_TITLE, "body": GENUINE_BODY},
    )
    assert resp.status_code == 200
    from workers import screening

    item = db.session.get(Item, item_id)
    screening.screen_version(item.current_version_id)  # type: ignore[union-attr, arg-type]
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    document = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json
    assert document["receipt"]["version"] == 2 and document["receipt"]["decision"] == "cleared"
    receipt = _write(tmp_path, "r.json", document)
    pem = _write(tmp_path, "platform.pem", app.extensions["kepu_signer"].public_pem())
    current = _write(tmp_path, "v2.txt", GENUINE_BODY)
    earlier = _write(tmp_path, "v1.txt", "第一稿：流感疫苗需要每年接种。")
    key = ("--pubkey", str(pem))
    assert _kepu_verify(tmp_path, str(receipt), *key, "--content", str(current)).returncode == 0
    out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(earlier))
    assert out.returncode == EXIT_INVALID


def test_version_1_receipts_still_verify(app: Any, tmp_path: Path) -> None:
    """Receipts issued before version 2 (no receipt_version, no decisions) keep verifying."""
    signer: Signer = app.extensions["kepu_signer"]
    old = {
        "item_id": 7,
        "title": GENUINE_TITLE,
        "version": 1,
        "content_sha256": content_sha256(GENUINE_TITLE, GENUINE_BODY, scheme=LEGACY_HASH_SCHEME),
        "decision": "cleared",
        "experts": [],
        "published_at": "2026-11-01T08:00:00+00:00",
        "key_id": signer.key_id,
    }
    old["signature"] = signer.sign(old)
    path = _write(tmp_path, "old.json", {"receipt": old, "public_key": signer.public_pem()})
    body = _write(tmp_path, "body.txt", GENUINE_BODY)
    key = ("--pubkey", str(_write(tmp_path, "k.pem", signer.public_pem())))
    out = _kepu_verify(tmp_path, str(path), *key, "--content", str(body))
    assert out.returncode == EXIT_OK and "第 1 版回执" in out.stdout
    edited = _write(tmp_path, "edited.txt", GENUINE_BODY + "。")
    out = _kepu_verify(tmp_path, str(path), *key, "--content", str(edited))
    assert out.returncode == EXIT_INVALID


def test_exit_code_2_when_it_cannot_be_checked(app: Any, tmp_path: Path) -> None:
    signer: Signer = app.extensions["kepu_signer"]
    bare = {"content_sha256": "0" * 64, "title": "t", "version": 1}
    bare["signature"] = signer.sign(bare)
    no_key = _write(tmp_path, "bare.json", bare)
    out = _kepu_verify(tmp_path, str(no_key))
    assert out.returncode == EXIT_USAGE and "--pubkey" in out.stderr
    pem = _write(tmp_path, "k.pem", signer.public_pem())
    assert _kepu_verify(tmp_path, str(no_key), "--pubkey", str(pem)).returncode == EXIT_OK
    junk = _write(tmp_path, "junk.json", "{not json")
    assert _kepu_verify(tmp_path, str(junk)).returncode == EXIT_USAGE
    rsa = _write(
        tmp_path, "bad.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    assert _kepu_verify(tmp_path, str(no_key), "--pubkey", str(rsa)).returncode == EXIT_USAGE
    missing = _kepu_verify(tmp_path, str(tmp_path / "nope.json"))
    assert missing.returncode == EXIT_USAGE


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_video_receipt_checks_the_video_file(app: Any, factory: Any, tmp_path: Path) -> None:
    from tests.media_files import plain_video
    from workers import media, screening

    clip = plain_video(tmp_path / "clip.mp4", seconds=2)
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    resp = client.post(
        "/api/v1/items",
        headers=ed,
        data={
            "title": GENUINE_TITLE,
            "description": GENUINE_BODY,
            "submit": "true",
            "file": (io.BytesIO(clip.read_bytes()), "clip.mp4"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.json
    item_id = resp.json["id"]
    app.config["OCR_FPS"] = 0
    version_id = db.session.get(Item, item_id).current_version_id  # type: ignore[union-attr]
    media.process_media(version_id)
    assert screening.screen_version(version_id) == "cleared"
    assert client.post(f"/api/v1/items/{item_id}/publish", headers=ed).status_code == 200
    document = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json
    assert document["receipt"]["kind"] == "video" and document["receipt"]["media"][0].startswith(
        "video:"
    )
    receipt = _write(tmp_path, "video-receipt.json", document)
    key = ("--pubkey", str(_write(tmp_path, "k.pem", app.extensions["kepu_signer"].public_pem())))
    out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(clip))
    assert out.returncode == EXIT_OK
    altered = _write(tmp_path, "altered.mp4", clip.read_bytes() + b"\0")
    out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(altered))
    assert out.returncode == EXIT_INVALID and "视频文件与回执不符" in out.stderr


def test_on_the_server_the_instances_own_key_is_used(
    app: Any, factory: Any, instance: Path, tmp_path: Path
) -> None:
    """Run where the platform runs (its instance folder), no --pubkey: the instance's key, not
    the file's, decides; a receipt forged with its own key fails."""
    _, document, _ = _approved_and_published(app, factory)
    env = _offline_env(tmp_path)
    env["KEPU_INSTANCE_PATH"] = str(instance)
    good = _write(tmp_path, "receipt.json", document)
    out = run_kepu("receipt", "verify", str(good), env=env, check=False)
    assert out.returncode == EXIT_OK and "本实例" in out.stdout, out.stderr

    other = Signer(Ed25519PrivateKey.generate())
    forged = json.loads(json.dumps(document))
    forged["receipt"]["content_sha256"] = content_sha256(PSEUDO_TITLE, "别的正文")
    forged["receipt"]["key_id"] = other.key_id
    payload = {k: v for k, v in forged["receipt"].items() if k != "signature"}
    forged["receipt"]["signature"] = other.sign(payload)
    forged["public_key"] = other.public_pem()
    path = _write(tmp_path, "forged.json", forged)
    out = run_kepu("receipt", "verify", str(path), env=env, check=False)
    assert out.returncode == EXIT_INVALID and "签名无效" in out.stderr


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("甲\r\n乙\r\n", "甲\n乙"),
        ("甲\r乙", "甲\n乙"),
        ("甲  \t\n乙\u3000\n", "甲\n乙"),
        ("\n\n  缩进保留\n\n\n段落\n\n", "\n\n  缩进保留\n\n\n段落"),
        ("e\u0301", "\u00e9"),  # NFC: the composed form
        ("ﬁ２", "ﬁ２"),  # never NFKC: compatibility characters stay as typed
        ("行内  空格 保留", "行内  空格 保留"),
    ],
)
def test_canonical_text(given: str, canonical: str) -> None:
    assert canonical_text(given) == canonical
    assert canonical_text(canonical) == canonical


CRLF_BODY = "喝碱性水可以改变酸碱体质。  \r\n\r\n专家提醒：这种说法没有科学依据。\r\n"


def test_a_crlf_article_verifies_against_the_same_text_saved_with_lf(
    app: Any, factory: Any, tmp_path: Path
) -> None:
    """The web form posts CRLF; the CMS saves LF with a final newline: same article, same hash.
    Any real edit still fails."""
    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, GENUINE_TITLE + " ", CRLF_BODY)
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version is not None
    assert item.current_version.body == canonical_text(CRLF_BODY)  # stored canonical
    sha = item.current_version.content_sha256
    assert sha == content_sha256(GENUINE_TITLE, CRLF_BODY.replace("\r\n", "\n"))
    assert item.state.value == "cleared"  # the genuine sample clears (the suite never skips)
    resp = client.post(f"/api/v1/items/{item_id}/publish", headers=ed, json={"content_sha256": sha})
    assert resp.status_code == 200, resp.json
    document = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json
    receipt = _write(tmp_path, "receipt.json", document)
    key = ("--pubkey", str(_write(tmp_path, "k.pem", app.extensions["kepu_signer"].public_pem())))
    for name, text in [
        ("lf.txt", CRLF_BODY.replace("\r\n", "\n").encode()),
        ("crlf.txt", CRLF_BODY.encode()),
        ("bom.txt", b"\xef\xbb\xbf" + CRLF_BODY.replace("  ", "").encode()),
    ]:
        out = _kepu_verify(
            tmp_path, str(receipt), *key, "--content", str(_write(tmp_path, name, text))
        )
        assert out.returncode == EXIT_OK, (name, out.stderr)
    edited = _write(tmp_path, "edited.txt", CRLF_BODY.replace("没有", "有").encode())
    out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(edited))
    assert out.returncode == EXIT_INVALID


def test_a_version_frozen_before_the_canonical_form_keeps_its_hash_and_receipts(
    app: Any, factory: Any, tmp_path: Path
) -> None:
    """A version stored with CRLF and hashed with kepu-version-v1 (before this change) is
    neither rehashed nor refused: it publishes with a v1 receipt, which verifies with the exact
    stored text and with the same article saved with LF."""
    from review.models import Version

    client = app.test_client()
    ed = factory.token(factory.user("editor"))
    item_id = submit_screened(app, ed, GENUINE_TITLE, CRLF_BODY)
    item = db.session.get(Item, item_id)
    assert item is not None and item.current_version is not None
    assert item.state.value == "cleared"  # the genuine sample clears (the suite never skips)
    version: Version = item.current_version
    version.body = CRLF_BODY  # the row as the earlier code stored it
    version.content_sha256 = content_sha256(GENUINE_TITLE, CRLF_BODY, scheme=LEGACY_HASH_SCHEME)
    db.session.commit()
    resp = client.post(f"/api/v1/items/{item_id}/publish", headers=ed)
    assert resp.status_code == 200, resp.json
    document = client.get(f"/api/v1/items/{item_id}/receipt", headers=ed).json
    assert document["receipt"]["hash_scheme"] == LEGACY_HASH_SCHEME
    assert document["receipt"]["content_sha256"] == version.content_sha256
    receipt = _write(tmp_path, "receipt.json", document)
    key = ("--pubkey", str(_write(tmp_path, "k.pem", app.extensions["kepu_signer"].public_pem())))
    for name, text in [("exact.txt", CRLF_BODY), ("lf.txt", CRLF_BODY.replace("\r\n", "\n"))]:
        path = _write(tmp_path, name, text.encode())
        out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(path))
        assert out.returncode == EXIT_OK, (name, out.stderr)
    edited = _write(tmp_path, "edited.txt", CRLF_BODY.replace("没有", "有").encode())
    out = _kepu_verify(tmp_path, str(receipt), *key, "--content", str(edited))
    assert out.returncode == EXIT_INVALID


def test_the_guides_content_hash_recipe_matches_the_platform() -> None:
    """docs/integration.md's stdlib recipe gives the platform's hash for the same article in
    any line-ending style."""
    import re

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- example: content-hash -->\s*```python\n(.*?)```", text, re.S)
    assert match is not None
    scope: dict[str, Any] = {}
    exec(compile(match.group(1), "integration.md", "exec"), scope)  # noqa: S102
    lf = CRLF_BODY.replace("\r\n", "\n")
    for body in (CRLF_BODY, lf, lf + "\n", "e\u0301" + lf):
        assert scope["content_sha256"](GENUINE_TITLE, body) == content_sha256(GENUINE_TITLE, body)
    assert scope["content_sha256"](GENUINE_TITLE, CRLF_BODY) == content_sha256(GENUINE_TITLE, lf)

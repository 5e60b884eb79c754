"""Publication receipts: the content hash, and offline verification a downstream CMS can run.

A receipt is canonical JSON signed with the instance's Ed25519 key (review.signing); the
signature covers every field but ``signature`` itself, so receipts of every version verify the
same way. Version 2 (``receipt_version: 2``) adds the item kind, the hash scheme, the media
named in the hash (a video's and subtitle files' SHA-256), a video's description, and one entry
per expert decision (expert, decision, signing time, the decision's own signature). Version 1
receipts (no ``receipt_version``) still verify, and an article's content can be checked
against them too.

Stdlib and ``cryptography`` only: ``kepu receipt verify`` runs without the app or a database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from review.signing import canonical_json

RECEIPT_VERSION = 2
#: The content hash of every version frozen now: ``kepu-version-v1``'s algorithm over the
#: canonical form (``canonical_text``) of the title and the body.
HASH_SCHEME = "kepu-version-v2"
#: The hash of versions frozen before the canonical form: over the stored text as it was typed
#: (the web form stored CRLF line endings). Those versions keep their hash, so every receipt
#: already issued keeps verifying.
LEGACY_HASH_SCHEME = "kepu-version-v1"
HASH_SCHEMES = (HASH_SCHEME, LEGACY_HASH_SCHEME)

#: Spaces stripped at the end of every line: space, tab and the ideographic space (U+3000).
TRAILING_SPACE = " \t\u3000"

#: Said when no trusted key is at hand (the CLI speaks Chinese, with English for operators).
NO_TRUSTED_KEY = (
    "没有受信任的公钥，无法证明回执由本平台签发：请用 --pubkey 指定平台公钥。"
    "公钥可由审计人员或管理员从平台下载（GET /api/v1/audit/public-key），离线保存后交给 CMS；"
    "回执文件自带的公钥谁都能伪造，不被采用。\n"
    "No trusted public key: pass --pubkey PLATFORM.pem. An auditor or admin downloads it from "
    "GET /api/v1/audit/public-key; the key inside the receipt file is not trusted."
)

#: Exit codes of ``kepu receipt verify``.
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def canonical_text(text: str) -> str:
    """The one canonical form of a title or body that the content hash covers.

    Unicode NFC; every line ending (CRLF, lone CR) becomes LF; spaces, tabs and U+3000 at the
    end of each line are removed; line breaks at the very end are removed. Nothing else changes
    (no NFKC, no change inside a line), so the canonical text reads exactly like the original:
    a CMS that saves the article with LF line endings, or adds a final newline, or a form that
    posts CRLF, all give the same hash.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip(TRAILING_SPACE) for line in text.split("\n")).rstrip("\n")


def content_sha256(
    title: str, body: str, media: Sequence[str] = (), *, scheme: str = HASH_SCHEME
) -> str:
    """Hash over everything that would be published, length-prefixed so fields cannot shift.

    ``kepu-version-v2`` (the default) hashes the canonical form of title and body
    (``canonical_text``); ``kepu-version-v1`` (versions frozen before it) hashes them as given.
    ``media`` names a video's bytes and each subtitle file's bytes by their SHA-256
    (``video:<sha>``, ``subtitle:<sha>``); articles have none.
    """
    if scheme == HASH_SCHEME:
        title, body = canonical_text(title), canonical_text(body)
    elif scheme != LEGACY_HASH_SCHEME:
        raise ValueError(f"unknown hash scheme {scheme!r}")
    digest = hashlib.sha256()
    for part in (scheme, title, body, *media):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def hash_scheme_of(title: str, body: str, media: Sequence[str], expected: str) -> str | None:
    """The scheme under which ``expected`` is the hash of this content (None: neither)."""
    for scheme in HASH_SCHEMES:
        if content_sha256(title, body, media, scheme=scheme) == expected:
            return scheme
    return None


def legacy_candidates(text: str) -> list[str]:
    """The texts a ``kepu-version-v1`` hash may have covered for a file holding ``text``.

    Those versions hashed the body as stored, and the web form stored CRLF line endings; a
    file saved with LF (and perhaps a final newline) is the same article.
    """
    out: list[str] = []
    for base in (text, text.rstrip("\r\n")):
        lf = base.replace("\r\n", "\n").replace("\r", "\n")
        for candidate in (base, lf, lf.replace("\n", "\r\n")):
            if candidate not in out:
                out.append(candidate)
    return out


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """The short id a receipt names its key by (first 16 hex digits of the raw key's SHA-256)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class Outcome:
    """The verdict with the messages to print and the exit code."""

    code: int
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == EXIT_OK


class UsageError(Exception):
    """The input cannot be checked at all (exit code 2)."""


def split_document(document: Any) -> tuple[dict[str, Any], str | None]:
    """The receipt and the public key PEM from a downloaded file (``{"receipt", "public_key"}``)
    or from a bare receipt."""
    if not isinstance(document, dict):
        raise UsageError("回执文件不是 JSON 对象")
    if isinstance(document.get("receipt"), dict):
        pem = document.get("public_key")
        return document["receipt"], pem if isinstance(pem, str) else None
    if "signature" in document and "content_sha256" in document:
        return document, None
    raise UsageError("文件中没有发布回执（缺少 receipt、signature 或 content_sha256）")


def load_public_key(pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; UsageError otherwise."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise UsageError("公钥不是有效的 PEM") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError("公钥不是 Ed25519 公钥")
    return key


def instance_public_pem() -> str | None:
    """The public half of this instance's own signing key when run on the server, else None.

    Looked up where the app keeps it (KEPU_SIGNING_KEY_PATH, else ``signing_key.pem`` in the
    instance folder); never creates a key.
    """
    import config  # stdlib only: the verifier still needs no app and no database

    path = config.signing_key_path()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, Ed25519PrivateKey):
        return None
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def check_signature(receipt: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """True when the receipt's signature covers all its other fields under ``key``."""
    signature = receipt.get("signature")
    if not isinstance(signature, str):
        return False
    payload = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical_json(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


def check_content(receipt: Mapping[str, Any], content: Path, *, title: str | None) -> list[str]:
    """Problems found recomputing the content hash from the published content (empty = same).

    Articles: ``content`` holds the body text (UTF-8, a leading BOM ignored; the title comes
    from the receipt unless given), compared in its canonical form (``canonical_text``).
    Videos (receipt version 2): ``content`` is the video file.
    """
    version = receipt.get("receipt_version", 1)
    kind = receipt.get("kind", "article")
    expected = str(receipt.get("content_sha256", ""))
    head = str(receipt.get("title", "")) if title is None else title
    scheme = str(receipt.get("hash_scheme", LEGACY_HASH_SCHEME))
    if scheme not in HASH_SCHEMES:
        raise UsageError(f"不支持的内容哈希算法：{scheme}")
    if kind == "video":
        if not content.is_file():
            raise UsageError(f"无法读取内容文件 {content.name}")
        if version < 2:
            raise UsageError("第 1 版回执不含视频的媒体哈希，无法校验视频文件")
        media = [str(m) for m in receipt.get("media", [])]
        video = f"video:{file_sha256(content)}"
        if not media or media[0] != video:
            return ["视频文件与回执不符：文件的 SHA-256 与回执记录的不同（被修改或不是同一文件）"]
        actual = content_sha256(head, str(receipt.get("description", "")), media, scheme=scheme)
    else:
        try:
            body = content.read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise UsageError(f"无法读取内容文件 {content.name}：{type(exc).__name__}") from None
        except UnicodeDecodeError:
            return ["内容不是 UTF-8 文本，与回执记录的正文不符"]
        media = [str(m) for m in receipt.get("media", [])]
        if scheme == HASH_SCHEME:
            actual = content_sha256(head, body, media, scheme=scheme)
        else:  # an earlier receipt: the body as stored then, perhaps with CRLF line endings
            hashes = [
                content_sha256(head, text, media, scheme=scheme) for text in legacy_candidates(body)
            ]
            actual = expected if expected in hashes else hashes[0]
    if actual != expected:
        return [f"内容与回执不符：重算的内容哈希 {actual[:16]}… 与回执中的 {expected[:16]}… 不同"]
    return []


def verify(
    document: Any,
    *,
    public_pem: str | None = None,
    content: Path | None = None,
    title: str | None = None,
    key_note: str = "",
) -> Outcome:
    """Check a receipt document: signature under the trusted key ``public_pem`` (never the key
    inside the file: anyone can sign with their own), key id, and, when given, the content
    against the signed hash. ``key_note`` says where the trusted key came from."""
    try:
        receipt, _embedded = split_document(document)
        if not public_pem:
            raise UsageError(NO_TRUSTED_KEY)
        key = load_public_key(public_pem)
        version = receipt.get("receipt_version", 1)
        if not isinstance(version, int) or version < 1 or version > RECEIPT_VERSION:
            raise UsageError(f"不支持的回执版本：{version}")
        messages = []
        if not check_signature(receipt, key):
            return Outcome(EXIT_INVALID, ["签名无效：回执被修改，或不是用该公钥签发的"])
        if receipt.get("key_id") not in (None, key_id(key)):
            return Outcome(EXIT_INVALID, ["回执的 key_id 与所用公钥不符"])
        messages.append(
            f"签名有效（第 {version} 版回执，稿件 {receipt.get('item_id')} "
            f"第 {receipt.get('version')} 版，发布于 {receipt.get('published_at')}）"
        )
        if key_note:
            messages.append(key_note)
        if content is not None:
            problems = check_content(receipt, content, title=title)
            if problems:
                return Outcome(EXIT_INVALID, messages + problems)
            messages.append("内容与回执一致：内容哈希相同")
        return Outcome(EXIT_OK, messages)
    except UsageError as exc:
        return Outcome(EXIT_USAGE, [f"错误：{exc}"])


def read_document(path: Path) -> Any:
    """The JSON in ``path``; UsageError when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"无法读取回执文件 {path.name}：{type(exc).__name__}") from None

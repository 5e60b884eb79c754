"""Signed checkpoints over the audit ledger, the export bundle and its offline verification.

Each audit event is a leaf of an RFC 6962 Merkle tree; the leaf data is the event's chain hash,
which itself covers the event's canonical content and the previous hash. A checkpoint is a
C2SP ``tlog-checkpoint`` body (origin, tree size, base64 root hash) in a signed note
(Ed25519). Auditors keep the checkpoints they download: whoever controls the database can
recompute a plain hash chain, but not one that matches checkpoints held elsewhere.

The verification half of this module (``parse_note``, ``verify_note``, ``verify_bundle``)
needs no database, no network and no Flask.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from review import merkle
from review.audit import AuditEvent, AuditHead, record_event, verify_events
from review.db import UTCDateTime, db, utcnow
from review.signing import Signer, load_public_key

EVENTS_FILE = "events.jsonl"
CHECKPOINTS_DIR = "checkpoints"
PUBLIC_KEY_FILE = "public_key.pem"


class AuditCheckpoint(db.Model):
    """A signed tree head; append-only like the events it covers."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer, unique=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- signed notes (C2SP signed-note + tlog-checkpoint) -----------------------------------------


def key_hash(name: str, public_raw: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 note key: SHA-256(name || '\\n' || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_raw).digest()[:4]


def checkpoint_body(origin: str, size: int, root: bytes, timestamp: datetime) -> str:
    """The checkpoint text: origin, size, base64 root, then a timestamp extension line."""
    return (
        f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
        f"Timestamp: {timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
    )


def sign_note(body: str, *, name: str, signer: Signer) -> str:
    """A signed note: the body, a blank line, and one signature line."""
    sig = key_hash(name, signer.public_raw()) + signer.sign_bytes(body.encode())
    return f"{body}\n\u2014 {name} {base64.b64encode(sig).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint note."""

    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes], ...]  # (key name, 4-byte hash + signature)
    source: str = ""

    @property
    def root_hex(self) -> str:
        return self.root.hex()


class NoteError(ValueError):
    """A checkpoint file that cannot be parsed."""


def parse_note(text: str, *, source: str = "") -> Checkpoint:
    """Parse a signed checkpoint note; NoteError when it is malformed."""
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise NoteError(f"{source}: 缺少签名部分")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        raise NoteError(f"{source}: 检查点正文不完整")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise NoteError(f"{source}: 树大小不是整数")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:
        raise NoteError(f"{source}: 根哈希不是合法的 base64") from None
    if len(root) != 32:
        raise NoteError(f"{source}: 根哈希长度不是 32 字节")
    signatures = []
    for line in sigs.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\u2014 "):
            raise NoteError(f"{source}: 签名行格式不正确")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise NoteError(f"{source}: 签名行格式不正确")
        try:
            signatures.append((parts[0], base64.b64decode(parts[1], validate=True)))
        except ValueError:
            raise NoteError(f"{source}: 签名不是合法的 base64") from None
    return Checkpoint(origin, int(size_text), root, body, tuple(signatures), source)


def verify_note(
    checkpoint: Checkpoint, public_key: Ed25519PublicKey, *, name: str | None = None
) -> bool:
    """True when some signature line on the note verifies under ``public_key``."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for key_name, blob in checkpoint.signatures:
        if name is not None and key_name != name:
            continue
        if len(blob) != 68 or blob[:4] != key_hash(key_name, raw):
            continue
        try:
            public_key.verify(blob[4:], checkpoint.body.encode())
        except InvalidSignature:
            continue
        return True
    return False


# --- the live ledger ---------------------------------------------------------------------------


def leaf_hashes(limit: int | None = None) -> list[bytes]:
    """RFC 6962 leaf hashes of the events in order (reads only the hash column)."""
    query = select(AuditEvent.hash).order_by(AuditEvent.seq)
    if limit is not None:
        query = query.limit(limit)
    return [merkle.leaf_hash(bytes.fromhex(h)) for h in db.session.scalars(query)]


def create_checkpoint(*, signer: Signer, origin: str, actor: Any) -> AuditCheckpoint:
    """Sign the current tree head and record it (never commits)."""
    head = db.session.get(AuditHead, 1)
    size = (head.seq + 1) if head else 0
    existing = db.session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == size))
    if existing is not None:
        return existing
    root = merkle.root(leaf_hashes(size))
    body = checkpoint_body(origin, size, root, utcnow())
    row = AuditCheckpoint(
        tree_size=size,
        root_hash=root.hex(),
        key_id=signer.key_id,
        note=sign_note(body, name=origin, signer=signer),
    )
    db.session.add(row)
    db.session.flush()
    record_event(
        "audit.checkpoint",
        actor=actor,
        subject_type="ledger",
        subject_id=size,
        data={"tree_size": size, "root": root.hex()},
    )
    return row


def export_bundle(
    out: Path, *, signer: Signer, checkpoint_origin: str | None = None, actor: Any = None
) -> int:
    """Write events.jsonl, every checkpoint and the public key into ``out``; returns the count.

    With ``checkpoint_origin`` a checkpoint of exactly the exported events is signed first
    (audited like the hourly one; never commits), so a truncated export is caught at once
    rather than after the next hourly checkpoint.
    """
    from review.audit import iter_exported_events

    size = None
    if checkpoint_origin is not None:
        size = create_checkpoint(signer=signer, origin=checkpoint_origin, actor=actor).tree_size
    out.mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINTS_DIR).mkdir(exist_ok=True)
    count = 0
    with open(out / EVENTS_FILE, "w", encoding="utf-8") as fh:
        for event in iter_exported_events(below=size):
            fh.write(
                json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
            )
            count += 1
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)
    if size is not None:
        query = query.where(AuditCheckpoint.tree_size <= size)
    for cp in db.session.scalars(query):
        (out / CHECKPOINTS_DIR / f"checkpoint-{cp.tree_size:08d}.txt").write_text(
            cp.note, encoding="utf-8"
        )
    (out / PUBLIC_KEY_FILE).write_text(signer.public_pem(), encoding="utf-8")
    return count


# --- offline verification ----------------------------------------------------------------------


@dataclass
class BundleResult:
    """Outcome of verifying an export bundle against checkpoints."""

    ok: bool
    messages: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None


def check_checkpoints(
    leaves: Sequence[bytes],
    checkpoints: Iterable[Checkpoint],
    public_key: Ed25519PublicKey,
    *,
    label: str,
) -> BundleResult:
    """Each checkpoint must be signed by the key and its root recomputed from the leaves."""
    result = BundleResult(True)
    for cp in checkpoints:
        if not verify_note(cp, public_key):
            return BundleResult(False, [f"{label} {cp.source}：签名无效（不是受信任的密钥签发）"])
        if cp.size > len(leaves):
            return BundleResult(
                False,
                [
                    f"与{label}不一致：检查点记录了 {cp.size} 条事件，"
                    f"导出只有 {len(leaves)} 条（账本被截断）"
                ],
                len(leaves),
            )
        if merkle.root(leaves[: cp.size]) != cp.root:
            return BundleResult(
                False,
                [f"与{label}（树大小 {cp.size}）不一致：前 {cp.size} 条事件被改写或替换"],
            )
        result.messages.append(f"{label} {cp.source} 树大小 {cp.size} 一致")
    return result


def unvouched(count: int, sizes: Iterable[int]) -> str:
    """Which events no verified checkpoint covers: their removal or change could go unseen."""
    newest = max(sizes, default=0)
    if count <= newest:
        return f"全部 {count} 条事件都有签名检查点担保（最新的检查点树大小 {newest}）"
    if newest == 0:
        return (
            f"注意：没有签名检查点，无法担保这 {count} 条事件（seq 0–{count - 1}）"
            "末尾没有被删除；请签署检查点（kepu audit checkpoint）并在系统外保存"
        )
    return (
        f"注意：最新的检查点（树大小 {newest}）之后的 {count - newest} 条事件"
        f"（seq {newest}–{count - 1}）没有检查点担保：其中末尾的事件被删除也无法发现"
    )


def check_head(count: int, hash_at_head: str | None, head_seq: int, head_hash: str) -> BundleResult:
    """The verified chain of ``count`` events must reach ``audit_head`` (the row every append
    locks and moves), and its event there must carry the head's hash: deleting the newest
    events leaves the head behind. ``hash_at_head`` is the hash of the event at the head's seq
    (read after the head, so events appended meanwhile are no alarm)."""
    last_seq = count - 1
    if head_seq > last_seq:
        return BundleResult(
            False,
            [
                f"账本末尾的事件不见了：audit_head 记录到第 {head_seq} 条，"
                f"链只到第 {last_seq} 条（最新的 {head_seq - last_seq} 条事件被删除）"
            ],
            last_seq + 1,
        )
    if head_seq >= 0 and hash_at_head != head_hash:
        return BundleResult(
            False,
            [f"第 {head_seq} 条事件的哈希与 audit_head 记录的不同（末尾的事件被替换）"],
            head_seq,
        )
    return BundleResult(True, [f"链的末尾与 audit_head 一致（第 {head_seq} 条）"])


def verify_bundle(
    folder: Path, *, trusted: Sequence[Checkpoint] = (), public_key_pem: str | None = None
) -> BundleResult:
    """Verify an export folder: the hash chain, its checkpoints, and the auditor's own ones."""
    events_path = folder / EVENTS_FILE
    if not events_path.exists():
        return BundleResult(False, [f"找不到 {events_path}"])
    events: list[Mapping[str, Any]] = []
    with open(events_path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError:
                return BundleResult(
                    False, [f"{EVENTS_FILE} 第 {number} 行不是合法的 JSON"], number - 1
                )
    chain = verify_events(events)
    if not chain.ok:
        return BundleResult(False, [chain.message], chain.first_bad_seq)
    pem = public_key_pem
    if pem is None:
        key_path = folder / PUBLIC_KEY_FILE
        if not key_path.exists():
            return BundleResult(False, [f"找不到公钥 {key_path}（或用 --pubkey 指定）"])
        pem = key_path.read_text(encoding="utf-8")
    try:
        key = load_public_key(pem)
    except ValueError as exc:
        return BundleResult(False, [f"公钥无法读取：{exc}"])
    leaves = [merkle.leaf_hash(bytes.fromhex(str(e["hash"]))) for e in events]
    own = []
    for path in (
        sorted((folder / CHECKPOINTS_DIR).glob("*.txt"))
        if (folder / CHECKPOINTS_DIR).exists()
        else []
    ):
        try:
            own.append(parse_note(path.read_text(encoding="utf-8"), source=path.name))
        except NoteError as exc:
            return BundleResult(False, [str(exc)])
    messages = [chain.message]
    for label, group in (("导出中的检查点", own), ("受信任的检查点", list(trusted))):
        result = check_checkpoints(leaves, group, key, label=label)
        if not result.ok:
            return result
        messages.extend(result.messages)
    messages.append(unvouched(len(leaves), (cp.size for cp in [*own, *trusted])))
    return BundleResult(True, messages)


def compare_checkpoints(a: Checkpoint, b: Checkpoint) -> str | None:
    """Two checkpoints of the same log and size with different roots prove a fork."""
    if a.origin == b.origin and a.size == b.size and a.root != b.root:
        return f"分叉：同一账本在树大小 {a.size} 处有两个不同的根哈希"
    return None

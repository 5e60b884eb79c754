"""Ed25519 signatures for decisions and publication receipts (key kept in the instance folder)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted-key compact UTF-8 JSON: what gets signed."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class Signer:
    """Signs canonical JSON with the instance's Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Signer:
        """Load the key at ``path``, generating it (mode 0600) on first use."""
        key_path = Path(path)
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; use theirs
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_path} is not an Ed25519 private key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def public_pem(self) -> str:
        """The public key in PEM, for downstream verifiers."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def public_raw(self) -> bytes:
        """The 32-byte raw public key."""
        return self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign_bytes(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``data``."""
        return self._key.sign(data)

    def sign(self, payload: Mapping[str, Any]) -> str:
        """Base64 signature over the canonical JSON of ``payload``."""
        return base64.b64encode(self._key.sign(canonical_json(payload))).decode()


def verify_signature(public_pem: str, payload: Mapping[str, Any], signature: str) -> bool:
    """True when ``signature`` is a valid signature of ``payload`` under ``public_pem``."""
    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        return False
    try:
        key.verify(base64.b64decode(signature), canonical_json(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text; ValueError for anything else."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key

"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs (stdlib only).

Leaves are hashed as SHA-256(0x00 || data) and interior nodes as SHA-256(0x01 || left || right);
a tree of n leaves splits at the largest power of two below n. The verification functions follow
RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of already-hashed leaves, computed bottom-up without recursion."""
    if not leaves:
        return EMPTY_ROOT
    # Fold complete subtrees like a binary counter; the result equals the recursive MTH.
    stack: list[tuple[int, bytes]] = []  # (height, hash)
    for h in leaves:
        node, height = h, 0
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node, height = node_hash(left, node), height + 1
        stack.append((height, node))
    node = stack.pop()[1]
    while stack:
        node = node_hash(stack.pop()[1], node)
    return node


def _root_recursive(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(_root_recursive(leaves[:k]), _root_recursive(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of ``leaves`` (RFC 6962 §2.1.1)."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index out of range")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [_root_recursive(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [_root_recursive(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Proof that the first ``first`` leaves are a prefix of ``leaves`` (RFC 6962 §2.1.2)."""
    if not 0 < first <= len(leaves):
        raise ValueError("first size out of range")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_root_recursive(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [_root_recursive(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [_root_recursive(leaves[:k])]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected: bytes
) -> bool:
    """True when ``proof`` places ``leaf`` at ``index`` in a tree of ``size`` and ``expected``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """True when ``proof`` shows the tree of size ``first`` is a prefix of the one of ``second``."""
    if first < 1 or first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root

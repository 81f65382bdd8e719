"""Merkle trees over digest entries (RFC 9162's tree hash), and inclusion proofs for them.

A digest signs one root over every run it records, so a bundle proves one run's entry with
about log2(n) hashes instead of carrying every other run's entry. The hash definitions are the
verifier's own (evidence.verify_bundle), so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib

from evidence.verify_bundle import leaf_hash, node_hash


class MerkleTree:
    """Built bottom up: pairs are hashed left to right and an odd last node moves up unchanged,
    which gives exactly RFC 9162's tree (split at the largest power of two below n)."""

    def __init__(self, entries: list[bytes]):
        self._build([leaf_hash(entry) for entry in entries])

    @classmethod
    def from_leaf_hashes(cls, leaves: list[bytes]) -> MerkleTree:
        tree = cls.__new__(cls)
        tree._build(leaves)
        return tree

    def _build(self, leaves: list[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [leaves]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                above.append(level[-1])
            self.levels.append(above)

    @property
    def root(self) -> bytes:
        if not self.size:
            return hashlib.sha256(b"").digest()
        return self.levels[-1][0]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The sibling hashes from leaf `index` up to the root, nearest first."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path

"""Deterministic ids: the same inputs always give the same id, so replays never mint new ones."""

from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts: str) -> str:
    """`prefix` plus 32 hex digits of SHA-256 over the length-prefixed parts (so no two part lists
    collide by concatenation), e.g. `le_3f2a...`."""
    joined = "".join(f"{len(part)}:{part}" for part in parts)
    return f"{prefix}_{hashlib.sha256(joined.encode()).hexdigest()[:32]}"

"""Synthetic inputs shared by the benchmarks (imported by the bench scripts beside it)."""

from __future__ import annotations

import random


def dense_in_lt(n_bytes: int, seed: int = 0) -> str:
    """Text dense in `<`: markup, stray `<`, and near-misses of `<|tokN|>` special tokens."""
    rng = random.Random(seed)
    parts = ["<", "<|", "<|tok", "<|tok1", "|>", "<div>", "</p>", "a<b", " x ", "text ", "<<", "12"]
    out, size = [], 0
    while size < n_bytes:
        p = rng.choice(parts)
        out.append(p)
        size += len(p)
    return "".join(out)

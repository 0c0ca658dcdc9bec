"""Data loading: random training windows from token arrays, and token-range checks.

- `get_batch`: random windows from a 1-D token array (np.memmap of uint16/uint32 works, nothing but
  the sampled windows is read); inputs and next-token targets as (batch, seq) long tensors. On CUDA
  the batch goes through pinned memory with a non-blocking copy, so the host never waits.
- Token arrays are numpy arrays, memmaps, CPU tensors, or `bpe336.shards.TokenShards` (a directory
  of `.npy` shards with a manifest, as `bpe336.cluster.encode_files_on_ray` writes, read as one
  array without a copy; a window may span two shards).
- Token ids against the vocabulary: the model checks ids only on CPU, to keep the GPU step free of
  host syncs; `get_batch(..., vocab_size=V)` checks each batch on the host before the transfer, and
  `check_token_range` scans a whole array once, in chunks.
- Checkpoints are `lm336.checkpoint`'s; `save_checkpoint`, `load_checkpoint` and `read_checkpoint`
  stay importable from here too.

    x, y = get_batch(np.memmap("train.bin", dtype=np.uint16, mode="r"), 32, 256, "cuda")
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint  # re-exported: the public API had them here


def _as_token_array(tokens) -> np.ndarray:
    shards = sys.modules.get("bpe336.shards")  # imported by whoever made a TokenShards
    if shards is not None and isinstance(tokens, shards.TokenShards):
        return tokens  # indexable like a 1-D array; np.asarray would copy every shard
    if isinstance(tokens, Tensor):
        tokens = tokens.detach().cpu().numpy()
    if not isinstance(tokens, np.ndarray):
        tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"token array must be 1-D, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token array must hold integers, got dtype {tokens.dtype}")
    return tokens


def get_batch(
    tokens,
    batch_size: int,
    context_length: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | np.random.Generator | None = None,
    *,
    vocab_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample `batch_size` windows uniformly from `tokens`.

    Args:
        tokens: 1-D integer array (np.ndarray, np.memmap, or CPU tensor) of length n >= context_length + 1.
        batch_size, context_length: output shape (batch_size, context_length).
        device: where the tensors go.
        generator: torch.Generator or numpy Generator for reproducible draws; None uses torch's
            global RNG (so torch.manual_seed makes runs repeatable).
        vocab_size: when given, raise ValueError if a sampled id is outside [0, vocab_size). The
            check runs on the host copy before the transfer, so it never waits on the GPU.
    Returns:
        (x, y): int64 (batch, seq) tensors on `device`, y[b, i] = tokens[start_b + i + 1] for
        x[b, i] = tokens[start_b + i]; every start in [0, n - context_length - 1] is equally likely.
    """
    tokens = _as_token_array(tokens)
    if batch_size < 1 or context_length < 1:
        raise ValueError(f"batch_size and context_length must be positive, got {batch_size}, {context_length}")
    n_starts = len(tokens) - context_length  # starts 0..len-T-1: each window needs T+1 tokens
    if n_starts < 1:
        raise ValueError(
            f"token array of length {len(tokens)} is too short for context_length {context_length} "
            f"(needs at least {context_length + 1} tokens)"
        )
    # 1. Starts, from the caller's generator.
    if isinstance(generator, np.random.Generator):
        starts = generator.integers(0, n_starts, size=batch_size)
    else:
        starts = torch.randint(0, n_starts, (batch_size,), generator=generator).numpy()
    # 2. Gather only the sampled windows (fancy indexing reads just those pages of a memmap).
    windows = tokens[starts[:, None] + np.arange(context_length + 1)]  # (batch, seq + 1)
    if vocab_size is not None and (windows.max() >= vocab_size or windows.min() < 0):
        bad = windows[(windows >= vocab_size) | (windows < 0)][0]
        raise ValueError(f"token array holds id {int(bad)}, outside the vocabulary [0, {vocab_size})")
    device = torch.device(device)
    pin = device.type == "cuda"
    x = torch.empty((batch_size, context_length), dtype=torch.long, pin_memory=pin)  # (batch, seq)
    y = torch.empty((batch_size, context_length), dtype=torch.long, pin_memory=pin)  # (batch, seq)
    x.numpy()[:] = windows[:, :-1]
    y.numpy()[:] = windows[:, 1:]
    if device.type == "cpu":
        return x, y
    # 3. Asynchronous host-to-device copy from pinned memory.
    return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)


def check_token_range(tokens, vocab_size: int, chunk_size: int = 1 << 24) -> None:
    """Raise ValueError unless every value of `tokens` lies in [0, vocab_size). Scans in chunks, so a
    multi-GB memmap is checked without loading it whole."""
    tokens = _as_token_array(tokens)
    for begin in range(0, len(tokens), chunk_size):
        chunk = np.asarray(tokens[begin : begin + chunk_size])  # a view, or one chunk of shards joined
        lo, hi = int(chunk.min()), int(chunk.max())
        if lo < 0 or hi >= vocab_size:
            bad = begin + int(np.argmax((chunk < 0) | (chunk >= vocab_size)))
            raise ValueError(f"token array holds id {int(tokens[bad])} at index {bad}, outside the vocabulary [0, {vocab_size})")


__all__ = ["get_batch", "check_token_range", "save_checkpoint", "load_checkpoint", "read_checkpoint"]

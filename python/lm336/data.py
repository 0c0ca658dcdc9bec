"""Data loading and checkpoints.

- `get_batch`: random windows from a 1-D token array (np.memmap of uint16/uint32 works, nothing but
  the sampled windows is read); inputs and next-token targets as (batch, seq) long tensors. On CUDA
  the batch goes through pinned memory with a non-blocking copy, so the host never waits.
- Token ids against the vocabulary: the model checks ids only on CPU, to keep the GPU step free of
  host syncs; `get_batch(..., vocab_size=V)` checks each batch on the host before the transfer, and
  `check_token_range` scans a whole array once, in chunks.
- `save_checkpoint` / `load_checkpoint` / `read_checkpoint`: model, optimizer, iteration and any
  extras (config, RNG states) in one file, written atomically; loading names every missing,
  unexpected and mis-shaped tensor.

    x, y = get_batch(np.memmap("train.bin", dtype=np.uint16, mode="r"), 32, 256, "cuda")
    save_checkpoint(model, optimizer, step, "run/ckpt.pt", config=cfg.to_dict())
    step = load_checkpoint("run/ckpt.pt", model, optimizer)
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module

_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel


def _as_token_array(tokens) -> np.ndarray:
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
        chunk = tokens[begin : begin + chunk_size]
        lo, hi = int(chunk.min()), int(chunk.max())
        if lo < 0 or hi >= vocab_size:
            bad = begin + int(np.argmax((chunk < 0) | (chunk >= vocab_size)))
            raise ValueError(f"token array holds id {int(tokens[bad])} at index {bad}, outside the vocabulary [0, {vocab_size})")


def _unwrap(model: Module) -> Module:
    """The module under torch.compile (`_orig_mod`) and DistributedDataParallel (`module`) wrappers."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), Module):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    return out


def save_checkpoint(
    model: Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    out: str | os.PathLike | IO[bytes],
    **extra: Any,
) -> None:
    """Save model and optimizer state, the iteration and `extra` (e.g. config=..., rng=...).

    A path is written atomically (temporary file, fsync, rename); a file object is written in place.
    Model keys are saved without torch.compile/DDP wrapper prefixes.
    """
    obj = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        **extra,
    }
    if isinstance(out, (str, os.PathLike)):
        from bpe336.atomic import atomic_write

        with atomic_write(out, "wb") as f:
            torch.save(obj, f)
    else:
        torch.save(obj, out)


def read_checkpoint(src: str | os.PathLike | IO[bytes], *, weights_only: bool = True) -> dict[str, Any]:
    """The raw checkpoint dict: "model", "optimizer", "iteration" and the extras, on CPU.

    weights_only=True refuses arbitrary pickled objects (tensors, numbers, strings, lists, dicts and
    tuples are fine); pass False only for files you trust.
    """
    if isinstance(src, (str, os.PathLike)):
        if os.path.isdir(src):
            raise IsADirectoryError(f"{src}: is a directory, expected a checkpoint file")
        if not os.path.exists(src):
            raise FileNotFoundError(f"{src}: no such checkpoint")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        if isinstance(e, (FileNotFoundError, IsADirectoryError)):
            raise
        blocked = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
        if weights_only and blocked:
            raise ValueError(
                f"{_describe(src)}: holds objects other than tensors and plain Python data, which safe "
                f"loading refuses ({blocked[0]}); if you trust the file, pass weights_only=False"
            ) from e
        raise ValueError(f"{_describe(src)}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "iteration" not in ckpt:
        raise ValueError(f"{_describe(src)}: not an lm336 checkpoint (expected a dict with 'model' and 'iteration')")
    return ckpt


def _describe(src) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def load_checkpoint(
    src: str | os.PathLike | IO[bytes],
    model: Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    weights_only: bool = True,
) -> int:
    """Restore model (and optimizer) state from `src`; return the saved iteration.

    weights_only: as for read_checkpoint (extras such as torch/numpy/random RNG states,
    `torch.get_rng_state()`, `np.random.Generator.bit_generator.state`, `random.getstate()`, pass).

    Raises:
        ValueError naming every missing key, unexpected key and shape difference when the
        checkpoint does not fit the model (e.g. a different configuration), or when an optimizer is
        given but the checkpoint holds no optimizer state.
    """
    ckpt = read_checkpoint(src, weights_only=weights_only)
    model = _unwrap(model)
    state = _strip_prefixes(ckpt["model"])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append("shape differences: " + "; ".join(shapes))
        raise ValueError(f"checkpoint {_describe(src)} does not match the model: " + "; ".join(parts))
    if optimizer is not None and ckpt.get("optimizer") is None:
        raise ValueError(f"checkpoint {_describe(src)} holds no optimizer state")
    model.load_state_dict(state)
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["iteration"])


__all__ = ["get_batch", "check_token_range", "save_checkpoint", "load_checkpoint", "read_checkpoint"]

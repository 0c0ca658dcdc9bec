"""Weights-only model files in the safetensors format: no pickle, memory-mapped reads, and the model
configuration in the file's metadata, so one file rebuilds the model.

- `write_safetensors` / `read_safetensors`: any {name: tensor} dict plus string metadata, written
  atomically (temporary file, fsync, rename); every way a file can be unreadable (not safetensors,
  truncated, a pickle, a directory) becomes one ValueError/OSError naming the path.
- `save_weights` / `load_weights`: a TransformerLM as `model.safetensors`. Tied embeddings are
  stored once, as `token_embeddings.weight` (safetensors refuses aliased tensors); `lm_head.weight`
  is restored from it on load. The metadata holds `lm336.model_config` (ModelConfig as JSON),
  when known `lm336.iteration`, and `lm336.sha256`: a SHA-256 of every tensor (name, dtype, shape,
  bytes) and the other metadata, which `load_weights` verifies when present (safetensors has no
  checksum of its own, so a flipped byte would otherwise load as a silently different model).

    save_weights(model, "runs/a/model.safetensors", iteration=1000)
    model, info = load_weights("runs/a/model.safetensors")   # info: {"model_config", "iteration", "dtype"}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import WEIGHTS, state_dict_differences

CONFIG_KEY = "lm336.model_config"
ITERATION_KEY = "lm336.iteration"
CHECKSUM_KEY = "lm336.sha256"


def weights_digest(tensors: dict[str, Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 of `tensors` (each name, dtype, shape and bytes, by name) and of `metadata` (all but
    the checksum itself and safetensors' own "format")."""
    import hashlib

    sha = hashlib.sha256()
    for key in sorted(k for k in metadata if k not in (CHECKSUM_KEY, "format")):
        sha.update(json.dumps([key, metadata[key]]).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        sha.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return sha.hexdigest()


def write_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (contiguous CPU copies are made as needed) and `metadata` to `path`
    atomically. Raises ValueError when two names share one storage (store a tied matrix once)."""
    from safetensors.torch import save_file

    from bpe336.atomic import atomic_output

    meta = {"format": "pt", **(metadata or {})}
    bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata keys and values must be strings: {bad}")
    flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    try:
        with atomic_output(path) as tmp:
            save_file(flat, str(tmp), metadata=meta)
    except RuntimeError as e:
        if "share memory" in str(e):
            raise ValueError(f"{path}: tensors that share memory cannot be stored twice: {e}") from None
        raise


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors (on CPU, in memory) and the metadata of a safetensors file.

    Raises:
        FileNotFoundError, IsADirectoryError: no such file / a directory.
        ValueError: not a safetensors file (a pickle, a truncated or corrupt file), with the path.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a .safetensors file")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            # NOTE: get_tensor maps the file; the copies make the tensors independent of it, so a
            # file replaced or truncated later can never fault (SIGBUS) a tensor still in use.
            tensors = {name: f.get_tensor(name).clone() for name in f.keys()}
    except SafetensorError as e:
        hint = " (a PyTorch pickle? lm336 never unpickles weights)" if _looks_like_pickle(path) else ""
        raise ValueError(f"{path}: not a readable safetensors file{hint}: {e}") from None
    return tensors, metadata


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04"  # a pickle (protocol >= 2) / torch.save's zip archive


def save_weights(model, path: str | os.PathLike, *, iteration: int | None = None) -> None:
    """Write a TransformerLM's weights and its ModelConfig (in the metadata) to `path`, atomically."""
    cfg = model.config
    state = model.state_dict()
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same tensor as token_embeddings.weight
    metadata = {CONFIG_KEY: json.dumps(cfg.to_dict())}
    if iteration is not None:
        metadata[ITERATION_KEY] = str(int(iteration))
    metadata[CHECKSUM_KEY] = weights_digest(state, metadata)
    write_safetensors(state, path, metadata)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Rebuild the TransformerLM stored in `path` (written by `save_weights`).

    Args:
        path: a model.safetensors file.
        device: where the model goes.
        dtype: parameter dtype; None = float32 (the stored tensors are converted exactly when wider).
    Returns:
        (model in eval mode, info) with info = {"model_config": dict, "iteration": int | None,
        "dtype": the stored torch dtype}.
    Raises:
        ValueError: not a readable safetensors file, a checksum that does not match (a changed or
        corrupted byte), no lm336 config in its metadata, tensors that do not fit that config
        (each missing, unexpected and mis-shaped name listed), or NaN/inf weights.
    """
    from .config import ConfigError, ModelConfig
    from .model import TransformerLM

    tensors, metadata = read_safetensors(path)
    recorded = metadata.get(CHECKSUM_KEY)
    if recorded is not None and recorded != weights_digest(tensors, metadata):
        raise ValueError(
            f"{path}: damaged weights file: its {CHECKSUM_KEY} checksum does not match its contents (a changed or corrupted byte)"
        )
    raw_cfg = metadata.get(CONFIG_KEY)
    if raw_cfg is None:
        raise ValueError(
            f"{path}: no {CONFIG_KEY!r} in the safetensors metadata, so it was not written by lm336 "
            "(a Hugging Face Llama folder is converted with `lm336 import`)"
        )
    try:
        fields = json.loads(raw_cfg)
        known = ModelConfig.__dataclass_fields__
        cfg = ModelConfig(**{k: v for k, v in fields.items() if k in known})
        cfg.validate()
    except (ValueError, TypeError, AttributeError, ConfigError) as e:
        raise ValueError(f"{path}: invalid {CONFIG_KEY} metadata: {e}") from None
    if cfg.tie_embeddings and "lm_head.weight" not in tensors and "token_embeddings.weight" in tensors:
        tensors["lm_head.weight"] = tensors["token_embeddings.weight"]
    stored_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    model = TransformerLM.from_config(cfg, dtype=dtype)
    check_state(tensors, model.state_dict(), str(path))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: the weights hold NaN or inf values (e.g. {bad[0]}); the run that wrote it had diverged")
    model.load_state_dict(tensors)
    iteration = metadata.get(ITERATION_KEY)
    if iteration is not None and not (iteration.isascii() and iteration.isdigit() and len(iteration) < 20):
        raise ValueError(f"{path}: invalid {ITERATION_KEY} metadata {iteration[:40]!r} (expected a step number)")
    info = {"model_config": cfg.to_dict(), "iteration": int(iteration) if iteration is not None else None, "dtype": stored_dtype}
    return model.to(device).eval(), info


def check_state(state: dict[str, Tensor], expected: dict[str, Tensor], source: str) -> None:
    """Raise ValueError naming every missing, unexpected and mis-shaped tensor of `state`, and
    every tensor that is not floating point where the model's is (integer or boolean data is
    quantized or packed weights, which copying into the parameters would silently misread)."""
    problems = state_dict_differences(state, expected, source="file", items="tensors")
    not_float = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in state.items() if k in expected and not v.is_floating_point()]
    if not_float:
        problems = "; ".join(
            filter(None, [problems, f"tensors that are not floating point (quantized or packed weights?): {', '.join(not_float)}"])
        )
    if problems:
        raise ValueError(f"{source}: the weights do not fit the model config: {problems}")


__all__ = ["WEIGHTS", "write_safetensors", "read_safetensors", "save_weights", "load_weights", "check_state"]

"""The training loop: `train(cfg) -> summary` from Python, `lm336 train` from the shell.

    lm336 train --config configs/tinystories-17m.toml --set optimizer.lr=2e-3 --set run.out_dir=runs/a
    lm336 train --config configs/tinystories-17m.toml --set run.out_dir=runs/a --resume
    torchrun --nproc-per-node 8 -m lm336 train --config configs/tinystories-17m.toml   # DDP

What one run does, in order:
1. Resolve the device (cuda when present for "auto", cpu as the fallback), join a process group when
   launched by torchrun (nccl on cuda, gloo on cpu), seed everything.
2. Memory-map the token arrays (.npy or raw little-endian .bin) and prove once, in chunks, that
   every id fits the vocabulary; fix the validation windows (evenly spaced over the held-out array,
   the same every evaluation, shared out among processes).
3. Build TransformerLM + AdamW (weight decay on matrices only, not on RMSNorm gains); optionally
   restore a checkpoint (model, optimizer, step, RNG states) and continue bit for bit.
4. Per step: lr from the cosine schedule, forward under autocast, cross-entropy, backward (with
   gradient accumulation), clip, AdamW step, zero_grad(set_to_none=True). The next batch is drawn
   (and on cuda copied from pinned memory, non-blocking) before the current step's compute, so the
   host never waits for data.
5. Log steps sync once: loss, lr, gradient norm, tokens/s to the progress bar, log.jsonl and W&B.
   Validation (loss, perplexity and, with data.tokenizer_path, bits per byte) and checkpoints
   (ckpt.pt, plus the weights alone in model.safetensors) every N steps and after the last step;
   rank 0 alone writes.

NOTE: a NaN/inf loss or gradient norm is recorded on the device without a sync and checked on
every log, evaluation and checkpoint step; it raises DivergedError and never overwrites the last
good checkpoint.

Batches: `run.batch_size` sequences per optimizer step in total; each process draws
batch_size / (world_size * grad_accum_steps) per micro-step from its own seeded stream, so the
tokens per step, and the learning-rate schedule that goes with them, do not depend on the number of
GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .config import ConfigError, TrainConfig, apply_overrides, config_keys, load_config
from .data import check_token_range, get_batch, load_checkpoint, read_checkpoint, save_checkpoint
from .model import TransformerLM
from .optim import AdamW, clip_gradients, cross_entropy, lr_cosine_schedule
from .safetensors_io import WEIGHTS, save_weights

CHECKPOINT = "ckpt.pt"
LOG = "log.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DivergedError(ValueError):
    """The loss or gradient norm became NaN or infinite; the last good checkpoint is kept."""


class DataError(ValueError):
    """A token array that cannot train this model: wrong size, too short, or ids >= vocab_size."""


# --- 1. processes and devices -----------------------------------------------------------------


@dataclass
class Dist:
    """Where this process sits: rank 0 of 1 unless launched by torchrun (RANK/WORLD_SIZE set)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # we called init_process_group, so we tear it down

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _resolve_device(name: str, local_rank: int, distributed: bool) -> torch.device:
    """ "auto" -> cuda when available, else cpu; a cuda request without cuda falls back to cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"run.device={name!r} but CUDA is not available; training on the CPU", stacklevel=3)
        name = "cpu"
    if name.startswith("mps") and not torch.backends.mps.is_available():
        warnings.warn(f"run.device={name!r} but MPS is not available; training on the CPU", stacklevel=3)
        name = "cpu"
    if name == "cuda" and distributed:
        name = f"cuda:{local_rank}"  # one GPU per process
    return torch.device(name)


def _setup_distributed(device_name: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        backend = "nccl" if wants_cuda and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)  # env:// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)
        owns = True
    return Dist(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), owns_group=owns)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device). Model initialisation draws from these."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- 2. data ----------------------------------------------------------------------------------


def open_tokens(path: str | os.PathLike, dtype: str = "uint16") -> np.ndarray:
    """Memory-map a 1-D token array: a .npy (its own dtype) or a raw little-endian .bin of `dtype`.

    Raises FileNotFoundError / IsADirectoryError / DataError with the path in the message.
    """
    p = Path(path)
    if not str(path):
        raise FileNotFoundError("no token file given (set data.train_path)")
    if not p.exists():
        raise FileNotFoundError(f"token file {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"token file {p} is a directory, expected a .bin or .npy file")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r")
        except ValueError as e:
            raise DataError(f"{p}: not a readable .npy array ({e})") from e
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{p}: expected a 1-D integer token array, got shape {arr.shape} dtype {arr.dtype}")
        return arr
    dt = np.dtype(dtype).newbyteorder("<")
    size = p.stat().st_size
    if size == 0:
        raise DataError(f"token file {p} is empty")
    if size % dt.itemsize:
        raise DataError(f"token file {p} has {size} bytes, not a multiple of {dt.itemsize} ({dtype}); is data.dtype right?")
    return np.memmap(p, dtype=dt, mode="r")


def _load_data(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Open train and validation arrays and check them once (ids in range, long enough)."""
    train = open_tokens(cfg.data.train_path, cfg.data.dtype)
    if cfg.data.val_path:
        val = open_tokens(cfg.data.val_path, cfg.data.dtype)
        named = [(cfg.data.train_path, train), (cfg.data.val_path, val)]
    else:  # hold out the tail: the held-out tokens are never trained on
        n_val = max(int(len(train) * cfg.data.val_fraction), cfg.model.context_length + 1)
        train, val = train[: len(train) - n_val], train[len(train) - n_val :]
        named = [(cfg.data.train_path, train), (f"{cfg.data.train_path} (held-out tail)", val)]
    need = cfg.model.context_length + 1
    for name, arr in named:
        if len(arr) < need:
            raise DataError(f"{name}: {len(arr)} tokens, too few for one window of context_length + 1 = {need} tokens")
        try:
            check_token_range(arr, cfg.model.vocab_size)
        except ValueError as e:
            raise DataError(
                f"{name}: {e}; the model has vocab_size={cfg.model.vocab_size}: encode with the matching tokenizer or set model.vocab_size"
            ) from None
    return train, val


def _token_bytes(cfg: TrainConfig, device) -> torch.Tensor | None:
    """UTF-8 bytes of every token id (vocab_size,), from data.tokenizer_path; None when unset."""
    if not cfg.data.tokenizer_path:
        return None
    from bpe336 import Tokenizer

    from .evaluation import token_byte_lengths

    try:
        tokenizer = Tokenizer.load(cfg.data.tokenizer_path)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"data.tokenizer_path {cfg.data.tokenizer_path}: cannot load the tokenizer: {e}") from None
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise DataError(
            f"data.tokenizer_path {cfg.data.tokenizer_path} has {tokenizer.vocab_size} tokens, more than model.vocab_size={cfg.model.vocab_size}"
        )
    return torch.from_numpy(token_byte_lengths(tokenizer, cfg.model.vocab_size)).to(device)


def validation_starts(n_tokens: int, context_length: int, n_windows: int) -> np.ndarray:
    """Window starts spread evenly over the whole array: the same fixed slice at every evaluation.

    Example: validation_starts(1000, 99, 4) -> [0, 300, 600, 900]
    """
    last = n_tokens - context_length - 1  # the final window ends on the last token
    return np.linspace(0, last, n_windows).round().astype(np.int64)


def _windows(tokens: np.ndarray, starts: np.ndarray, context_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.from_numpy(tokens[starts[:, None] + np.arange(context_length + 1)].astype(np.int64))  # (b, T + 1)
    return w[:, :-1].to(device), w[:, 1:].to(device)  # (b, T) each


class BatchStream:
    """This process's training batches from its own seeded generator; `state()` is the generator
    state *before* the batch that comes next, so a checkpoint taken while one batch is prefetched
    still resumes on exactly that batch."""

    def __init__(self, tokens: np.ndarray, batch_size: int, context_length: int, device, seed: int, rank: int = 0):
        self.tokens, self.batch_size, self.context_length, self.device = tokens, batch_size, context_length, device
        # A distinct stream per process (and unrelated to the stream that initialised the model).
        stream_seed = int(np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(1, np.uint64)[0] >> 1)
        self.generator = torch.Generator().manual_seed(stream_seed)
        self._state = self.generator.get_state()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._state = self.generator.get_state()
        return get_batch(self.tokens, self.batch_size, self.context_length, self.device, generator=self.generator)

    def state(self) -> torch.Tensor:
        return self._state.clone()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
        self._state = state.clone()


# --- 3. logging -------------------------------------------------------------------------------


class _NullRun:
    """Stands in for a W&B run when W&B is off, so the loop calls log() unconditionally."""

    def log(self, data: dict, step: int | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


def _wandb_run(cfg: TrainConfig, master: bool):
    if not (cfg.run.wandb and master):
        return _NullRun()
    try:
        import wandb
    except ImportError:
        raise ImportError("run.wandb=true needs the wandb package (pip install wandb), or set run.wandb=false") from None
    name = cfg.run.wandb_run_name or Path(cfg.run.out_dir).name
    return wandb.init(project=cfg.run.wandb_project, name=name, config=cfg.to_dict())


def _write_json(path: Path, obj: Any) -> None:
    from bpe336.atomic import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a killed run logs past it)."""
    if not path.exists():
        return
    from bpe336.atomic import atomic_write

    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line torn by the kill, or not ours
            continue
    with atomic_write(path, "w") as f:
        f.write("".join(line + "\n" for line in kept))


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --- 4. RNG states for exact resume -------------------------------------------------------------


def _rng_state(stream: BatchStream) -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "batches": stream.state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, stream: BatchStream) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different GPU count: the data stream still resumes exactly
            torch.cuda.set_rng_state_all(state["cuda"])
    stream.set_state(state["batches"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --- 5. the loop --------------------------------------------------------------------------------


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two parameter groups: decay on matrices (embeddings, projections), none on RMSNorm
    gains (decaying them only hurts). A checkpoint's optimizer state is laid out in these groups."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(cfg: TrainConfig | dict | str | os.PathLike, *, return_model: bool = False) -> dict:
    """Train a TransformerLM as `cfg` says; see the module docstring for the stages.

    Args:
        cfg: a TrainConfig (validated again here), its dict form, or a TOML/JSON config path.
        return_model: also return the trained (unwrapped) model under "model" (not written to disk).

    Returns:
        {"run_dir", "steps", "tokens", "time_s", "final_train_loss", "final_val_loss",
         "final_val_perplexity", "final_val_bpb"} (also written to run_dir/summary.json; the bits
        per byte need data.tokenizer_path, else None).

    Raises:
        DivergedError: the loss or gradient norm became NaN/inf (the last good checkpoint is kept).
        DataError, FileNotFoundError: unusable token files. ConfigError: an invalid config.
    """
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(cfg)
    cfg = TrainConfig.from_dict(cfg if isinstance(cfg, dict) else cfg.to_dict())  # validated private copy
    ddp = _setup_distributed(cfg.run.device)
    try:
        return _train(cfg, ddp, return_model)
    finally:
        if ddp.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, ddp: Dist, return_model: bool) -> dict:
    run, ocfg, mcfg = cfg.run, cfg.optimizer, cfg.model
    # 1. Device, precision, seeds, run directory.
    device = _resolve_device(run.device, ddp.local_rank, ddp.enabled)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        if run.tf32:  # TF32 tensor cores for float32 matmuls (10 mantissa bits; bf16 autocast is coarser)
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.allow_tf32 = True
    param_dtype = _DTYPES[run.dtype]
    amp_name = ("bfloat16" if device.type == "cuda" else "none") if run.autocast == "auto" else run.autocast
    amp_dtype = None if amp_name == "none" or param_dtype == torch.float64 else _DTYPES[amp_name]
    use_compile = device.type == "cuda" if run.compile is None else run.compile
    per_rank = run.batch_size // ddp.world_size
    if run.batch_size % (ddp.world_size * run.grad_accum_steps):
        raise ConfigError(
            f"run.batch_size ({run.batch_size}) must be divisible by processes x run.grad_accum_steps "
            f"({ddp.world_size} x {run.grad_accum_steps})"
        )
    micro_batch = per_rank // run.grad_accum_steps
    out_dir = Path(run.out_dir)
    ckpt_path, log_path = out_dir / CHECKPOINT, out_dir / LOG
    if run.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"run.resume is set but {ckpt_path} does not exist; nothing to resume from")
    seed_everything(run.seed)  # identical on every process: same initial weights

    # 2. Data: memory-mapped arrays, checked once; fixed validation windows.
    train_tokens, val_tokens = _load_data(cfg)
    stream = BatchStream(train_tokens, micro_batch, mcfg.context_length, device, run.seed, ddp.rank)
    val_starts = validation_starts(len(val_tokens), mcfg.context_length, run.eval_batches * run.batch_size)
    val_starts_mine = val_starts[ddp.rank :: ddp.world_size]  # each process evaluates its share
    token_bytes = _token_bytes(cfg, device)  # for bits per byte; None = not logged

    # 3. Model and optimizer; optionally restore everything from the checkpoint.
    model = TransformerLM.from_config(mcfg, device=device, dtype=param_dtype)
    optimizer = AdamW(param_groups(model, ocfg.weight_decay), lr=ocfg.lr, betas=ocfg.betas, eps=ocfg.eps, weight_decay=ocfg.weight_decay)
    start_step, elapsed_before = 0, 0.0
    if run.resume:
        ckpt = read_checkpoint(ckpt_path)
        saved = ckpt.get("config", {}).get("model")
        if saved is not None and saved != mcfg.to_dict():
            diff = ", ".join(f"model.{k}: {saved.get(k)!r} in the checkpoint vs {v!r}" for k, v in
                             mcfg.to_dict().items() if saved.get(k) != v)  # fmt: skip
            raise ConfigError(f"{ckpt_path} was trained with a different model config ({diff})")
        start_step = load_checkpoint(ckpt_path, model, optimizer)
        for group, wd in zip(optimizer.param_groups, (ocfg.weight_decay, 0.0)):  # the config may change these
            group.update(betas=ocfg.betas, eps=ocfg.eps, weight_decay=wd)
        elapsed_before = float(ckpt.get("time_s", 0.0))
        if "rng" in ckpt:
            _set_rng_state(ckpt["rng"], stream)
        del ckpt
    elif ckpt_path.exists() and ddp.master:
        warnings.warn(f"{ckpt_path} exists and run.resume is off: starting afresh and overwriting it", stacklevel=3)
    fwd = eval_fwd = torch.compile(model) if use_compile else model
    if ddp.enabled:
        # The buffers (RoPE tables, causal mask) are constants: no need to broadcast them every step
        # (the option was renamed in newer PyTorch).
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        options = inspect.signature(DistributedDataParallel).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in options else "broadcast_buffers"
        device_ids = [device.index] if device.type == "cuda" else None
        fwd = DistributedDataParallel(fwd, device_ids=device_ids, **{no_sync: False})
    params = list(model.parameters())

    if ddp.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / CONFIG, cfg.to_dict())
        if run.resume:
            _truncate_log(log_path, start_step)
        else:
            log_path.write_text("")
    wandb_run = _wandb_run(cfg, ddp.master)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None  # fp16 needs loss scaling
    cosine_iters = ocfg.cosine_cycle_iters
    if cosine_iters is None:
        cosine_iters = max(run.max_steps, ocfg.warmup_iters)
    tokens_per_step = run.batch_size * mcfg.context_length

    def lr_at(it: int) -> float:
        # lr_cosine_schedule's three cases, for iteration `it` (0-based):
        # 1. it < warmup_iters: linear warm-up it / warmup * lr
        # 2. warmup <= it <= cosine_cycle_iters: cosine from lr down to min_lr
        # 3. it > cosine_cycle_iters: min_lr
        return lr_cosine_schedule(it, ocfg.lr, ocfg.min_lr, ocfg.warmup_iters, cosine_iters)

    @torch.no_grad()
    def evaluate() -> tuple[float, float, float | None]:
        """Mean loss, perplexity and bits per byte (None without data.tokenizer_path) over the fixed
        validation windows (every process its share, then summed). Runs the model without the DDP
        wrapper: no collectives until the one all-reduce."""
        eval_fwd.eval()
        total = torch.zeros((), dtype=torch.float64, device=device)
        nbytes = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(0, len(val_starts_mine), micro_batch):
            x, y = _windows(val_tokens, val_starts_mine[i : i + micro_batch], mcfg.context_length, device)
            with autocast():
                total += cross_entropy(eval_fwd(x), y).double() * y.numel()
            if token_bytes is not None:
                nbytes += token_bytes[y].sum()
        count = torch.tensor(float(len(val_starts_mine) * mcfg.context_length), dtype=torch.float64, device=device)
        if ddp.enabled:
            both = torch.stack([total, count, nbytes])
            dist.all_reduce(both)
            total, count, nbytes = both[0], both[1], both[2]
        eval_fwd.train()
        loss = float(total / count)  # syncs: evaluation is a log step
        bpb = float(total / (nbytes * math.log(2))) if token_bytes is not None else None
        return loss, math.exp(min(loss, 700.0)), bpb

    def check_finite(step: int) -> None:
        """Raise DivergedError when any step so far had a non-finite loss/gradient norm (one sync)."""
        bad = first_bad.clone()
        if ddp.enabled:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)  # every process stops together
        bad_step = int(bad)
        if bad_step >= 0:
            raise DivergedError(
                f"training diverged: non-finite loss or gradient norm at step {bad_step + 1} "
                f"(lr {lr_at(bad_step):.3g}); stopped at step {step}. The last good checkpoint is kept at "
                f"{ckpt_path} (step {last_ckpt_step if last_ckpt_step is not None else 'none yet'}). "
                "Try a lower optimizer.lr, a longer optimizer.warmup_iters or optimizer.grad_clip > 0."
            )

    def save(step: int, elapsed: float) -> None:
        # NOTE: a finite loss can still come with overflowing weights (e.g. clipping off); never
        # replace a good checkpoint with a non-finite one.
        if not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            raise DivergedError(
                f"training diverged: non-finite weights at step {step}; the last good checkpoint is kept at "
                f"{ckpt_path} (step {last_ckpt_step if last_ckpt_step is not None else 'none yet'})"
            )
        if ddp.master:
            save_checkpoint(model, optimizer, step, ckpt_path, config=cfg.to_dict(), rng=_rng_state(stream),
                            time_s=elapsed, tokens=step * tokens_per_step)  # fmt: skip
            save_weights(model, out_dir / WEIGHTS, iteration=step)  # weights only, no pickle: for export and other tools

    # 4. The loop. Device-side accumulators avoid a host sync per step.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss/norm
    acc_dtype = torch.float64 if param_dtype == torch.float64 else torch.float32
    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    steps_since_log, train_loss, val_loss, val_ppl, val_bpb = 0, None, None, None, None
    last_ckpt_step = start_step if run.resume else None
    grad_norm = torch.zeros((), device=device)
    pbar = _progress(run.max_steps, start_step, enabled=run.progress and ddp.master)
    t_start = time.perf_counter()
    t_log, step_log, paused = t_start, start_step, 0.0  # tokens/s excludes evaluation and checkpoint time
    step = start_step
    batch = stream.next() if step < run.max_steps else None
    fwd.train()
    while step < run.max_steps:
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        next_step = step + 1
        last = next_step == run.max_steps
        do_eval = run.eval_batches > 0 and (last or (run.eval_interval > 0 and next_step % run.eval_interval == 0))
        do_log = last or do_eval or next_step % run.log_interval == 0
        do_ckpt = last or (run.checkpoint_interval > 0 and next_step % run.checkpoint_interval == 0)

        step_loss = torch.zeros((), dtype=acc_dtype, device=device)
        for micro in range(run.grad_accum_steps):
            x, y = batch
            # Prefetch the next batch before this one's compute (on cuda its copy overlaps). Also after
            # the last step: the checkpointed stream state is "before the pending batch".
            batch = stream.next()
            sync = micro == run.grad_accum_steps - 1
            with fwd.no_sync() if ddp.enabled and not sync else contextlib.nullcontext():
                with autocast():
                    loss = cross_entropy(fwd(x), y) / run.grad_accum_steps
                (scaler.scale(loss) if scaler else loss).backward()
            step_loss += loss.detach()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if ocfg.grad_clip > 0:
            grad_norm = clip_gradients(params, ocfg.grad_clip)
        elif do_log:
            grad_norm = clip_gradients(params, math.inf)  # the norm only, for the log
        bad = ~torch.isfinite(step_loss)
        if ocfg.grad_clip > 0 and scaler is None:  # (fp16 loss scaling overflows on purpose now and then)
            bad |= ~torch.isfinite(grad_norm)
        first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += step_loss
        steps_since_log += 1
        step = next_step
        pbar.update(1)

        if not (do_log or do_ckpt):
            continue
        # NOTE: everything below reads device values (.item()/float()), which waits for the device
        # to finish all queued work; it happens on log/eval/checkpoint steps only.
        check_finite(step)
        t_pause = time.perf_counter()
        if do_log:
            if ddp.enabled:
                dist.all_reduce(loss_sum)
                loss_sum /= ddp.world_size
            train_loss = loss_sum.item() / steps_since_log
            now = time.perf_counter()
            tok_s = (step - step_log) * tokens_per_step / max(now - t_log - paused, 1e-9)
            val_loss = val_ppl = val_bpb = None
            if do_eval:
                val_loss, val_ppl, val_bpb = evaluate()
            record = {
                "step": step,
                "tokens": step * tokens_per_step,
                "time_s": round(elapsed_before + now - t_start, 3),
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_perplexity": val_ppl,
                "val_bpb": val_bpb,
                "grad_norm": float(grad_norm),
            }
            if ddp.master:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                wandb_run.log({k: v for k, v in record.items() if v is not None}, step=step)
                eta = (run.max_steps - step) * (now - t_log) / max(step - step_log, 1)
                _report(pbar, record, tok_s, eta, run.progress)
            loss_sum.zero_()
            steps_since_log, t_log, step_log, paused = 0, now, step, 0.0
        if do_ckpt:
            save(step, elapsed_before + time.perf_counter() - t_start)
            last_ckpt_step = step
        paused += time.perf_counter() - t_pause
    pbar.close()
    elapsed = elapsed_before + time.perf_counter() - t_start

    # 5. Summary (a resumed run that was already complete just re-evaluates).
    if val_loss is None and run.eval_batches > 0 and step == start_step:
        val_loss, val_ppl, val_bpb = evaluate()
    summary = {
        "run_dir": str(out_dir),
        "steps": step,
        "tokens": step * tokens_per_step,
        "time_s": round(elapsed, 3),
        "final_train_loss": train_loss,
        "final_val_loss": val_loss,
        "final_val_perplexity": val_ppl,
        "final_val_bpb": val_bpb,
    }
    if ddp.master:
        _write_json(out_dir / SUMMARY, summary)
    wandb_run.finish()
    if return_model:
        summary["model"] = model
    return summary


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1)


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _report(pbar, rec: dict, tok_s: float, eta: float, progress: bool) -> None:
    val = f" val {rec['val_loss']:.4f} (ppl {rec['val_perplexity']:.2f})" if rec["val_loss"] is not None else ""
    if rec.get("val_bpb") is not None:
        val += f" {rec['val_bpb']:.4f} bpb"
    if progress:
        pbar.set_postfix_str(f"loss {rec['train_loss']:.4f}{val} lr {rec['lr']:.2e} {tok_s:,.0f} tok/s", refresh=False)
        if rec["val_loss"] is not None:
            pbar.write(f"step {rec['step']}: train {rec['train_loss']:.4f}{val}")
    else:
        print(
            f"step {rec['step']} | loss {rec['train_loss']:.4f}{val} | lr {rec['lr']:.2e} | "
            f"norm {rec['grad_norm']:.3f} | {tok_s:,.0f} tok/s | {_fmt_time(rec['time_s'])} elapsed, "
            f"ETA {_fmt_time(eta)}",
            flush=True,
        )


# --- 6. command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 train",
        description="Train a Transformer LM on memory-mapped token arrays.",
        epilog="Config keys: " + ", ".join(config_keys()),
    )
    p.add_argument("--config", help="TOML or JSON config file (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optimizer.lr=1e-3 run.batch_size=64")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN.out_dir/ckpt.pt (same as --set run.resume=true)")  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.resume:
            cfg = apply_overrides(cfg, ["run.resume=true"])
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        summary = train(cfg)
    except (ConfigError, DataError, DivergedError, FileNotFoundError, IsADirectoryError) as e:
        print(f"lm336 train: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

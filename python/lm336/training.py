"""The training loop: `train(cfg) -> summary` from Python, `lm336 train` from the shell.

    lm336 train --config configs/tinystories-17m.toml --set optimizer.lr=2e-3 --set run.out_dir=runs/a
    lm336 train --config configs/tinystories-17m.toml --set run.out_dir=runs/a --resume
    torchrun --nproc-per-node 8 -m lm336 train --config configs/tinystories-17m.toml   # DDP

What one run does, in order:
1. Resolve the device (lm336.common's one policy: "auto" is cuda, else mps, else cpu; a device named
   explicitly must exist), join a process group when launched by torchrun (nccl on cuda, gloo
   otherwise), check the run directory (an existing run is continued with --resume or replaced
   with --overwrite, never silently), seed everything.
2. Memory-map the token arrays (.npy or raw little-endian .bin) and prove once, in chunks, that
   every id fits the vocabulary; fix the validation windows (evenly spaced over the held-out array,
   the same every evaluation, shared out among processes).
3. Build TransformerLM + AdamW (weight decay on matrices only, not on RMSNorm gains); optionally
   restore a checkpoint (model, optimizer, step, RNG states) and continue bit for bit.
4. Per step: lr from the cosine schedule, forward under autocast, cross-entropy, backward (with
   gradient accumulation), clip, AdamW step, zero_grad(set_to_none=True). The next batch is drawn
   (and on cuda copied from pinned memory, non-blocking) before the current step's compute, so the
   host never waits for data.
5. Log steps sync once: loss, lr, gradient norm, tokens/s to the progress bar (plain lines when
   the output is not a terminal), log.jsonl and W&B. Validation (loss, perplexity and, with
   data.tokenizer_path, bits per byte) and checkpoints (ckpt.pt, plus the weights alone in
   model.safetensors) every N steps and after the last step; rank 0 alone writes. With
   run.time_budget_s, every log step re-plans max_steps from the measured time per step, so the
   run ends on time.

A header (config, parameters, data, tokens per step, device) starts every run; on a CPU, a run
that would take hours gets a warning with an estimate first.

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
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .accounting import count_parameters, flops_per_token
from .checkpoint import CheckpointError, RunFiles, apply_checkpoint, prepare_out_dir, read_checkpoint, save_checkpoint
from .common import (
    DEVICE_HELP,
    Dist,
    atomic_write,
    command,
    is_terminal,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
    write_json,
)
from .config import ConfigError, TrainConfig, apply_overrides, config_keys, load_config
from .data import check_token_range, get_batch
from .model import TransformerLM
from .optim import AdamW, clip_gradients, cross_entropy, lr_cosine_schedule
from .safetensors_io import save_weights
from .throughput import cpu_matmul_flops, mfu, peak_flops, peak_memory_bytes

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DivergedError(ValueError):
    """The loss or gradient norm became NaN or infinite; the last good checkpoint is kept."""


class DataError(ValueError):
    """A token array that cannot train this model: wrong size, too short, or ids >= vocab_size."""


class RunExistsError(FileExistsError):
    """run.out_dir already holds a run, and neither run.resume nor run.overwrite says what to do with it."""


# NOTE: on a CPU, a run whose matmul FLOPs alone need longer than this gets a warning before it starts.
CPU_WARN_SECONDS = 3600.0
_SLOW_CPU_FLOPS = 5e9  # FLOP/s: runs that fit the limit even at this rate are not measured at all


# --- 1. data ----------------------------------------------------------------------------------


TOKEN_ARRAY_SUFFIXES = (".npy", ".bin")
"""How a token array file is named: any other file is text (as `lm336 eval --data` reads it), never
raw ids, so a text file given as training data is refused instead of read as uint16 ids."""


def open_tokens(path: str | os.PathLike, dtype: str = "uint16") -> np.ndarray:
    """Memory-map a 1-D token array: a .npy (its own dtype), a raw little-endian .bin of `dtype`,
    or a directory of token shards (its manifest.json or the directory, as
    `bpe336.cluster.encode_files_on_ray` writes), read as one array without a copy
    (`bpe336.shards.TokenShards`).

    Raises FileNotFoundError / IsADirectoryError / DataError with the path in the message.
    """
    p = Path(path)
    if not str(path):
        raise FileNotFoundError("no token file given (set data.train_path)")
    if not p.exists():
        raise FileNotFoundError(f"token file {p} does not exist")
    from bpe336.shards import MANIFEST_NAME, ShardManifestError, is_token_shards, open_token_shards

    if is_token_shards(p) or p.name == MANIFEST_NAME:
        try:
            shards = open_token_shards(p)
        except ShardManifestError as e:
            raise DataError(str(e)) from None
        if len(shards) == 0:
            raise DataError(f"token shards {p} hold no tokens")
        return shards
    if p.is_dir():
        raise IsADirectoryError(
            f"token file {p} is a directory, expected a .bin or .npy file (or a directory of token shards with a {MANIFEST_NAME})"
        )
    if p.suffix not in TOKEN_ARRAY_SUFFIXES:
        raise DataError(
            f"{p}: not a token array (expected a .npy, a raw .bin of data.dtype, or a directory of token shards); "
            f"a text file is encoded first: bpe336 encode {p} --tokenizer TOKENIZER --out tokens.npy"
        )
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


# --- 2. logging -------------------------------------------------------------------------------


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


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a killed run logs past it)."""
    if not path.exists():
        return
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


# --- 3. RNG states for exact resume -------------------------------------------------------------


def _rng_state(stream: BatchStream) -> dict:
    """Every RNG state a resumed run needs (tensors and plain data: the safe reader loads them)."""
    return {**rng_state(), "batches": stream.state()}


def _set_rng_state(state: dict, stream: BatchStream, name: str) -> None:
    try:
        set_rng_state(state)
        stream.set_state(state["batches"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{name}: its RNG state is malformed ({type(e).__name__}); it cannot be resumed exactly") from None


# --- 4. start-up: resume, header, size check ---------------------------------------------------------


def _stored_config(cfg: TrainConfig) -> dict:
    """The config as saved with the run. resume/overwrite say how this process started, not what
    the run is, so they are stored off: rerunning a saved config.json never replaces a run."""
    d = cfg.to_dict()
    d["run"].update(resume=False, overwrite=False)
    return d


def _resume(ckpt_path: Path, cfg: TrainConfig, model, optimizer, stream: BatchStream) -> tuple[int, float]:
    """Restore model, optimizer, RNG states and batch stream; return (step, seconds trained so far)."""
    ckpt = read_checkpoint(ckpt_path)
    saved = ckpt.get("config")
    saved_model = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(saved_model, dict):
        raise CheckpointError(f"{ckpt_path}: holds no training config, so it cannot be resumed (was it written by lm336 train?)")
    # The attention implementation changes no weights: a run may continue on another one.
    wanted = {k: v for k, v in cfg.model.to_dict().items() if k != "attention"}
    saved_model = {k: v for k, v in saved_model.items() if k != "attention"}
    if saved_model != wanted:
        keys = [*wanted, *(k for k in saved_model if k not in wanted)]
        diff = ", ".join(f"model.{k}: {saved_model.get(k)!r} in the checkpoint vs {wanted.get(k)!r}" for k in keys
                         if saved_model.get(k) != wanted.get(k))  # fmt: skip
        raise ConfigError(f"{ckpt_path} was trained with a different model config ({diff}); resume with its config, or use --overwrite")
    step = apply_checkpoint(ckpt, model, optimizer, name=str(ckpt_path))
    for group, wd in zip(optimizer.param_groups, (cfg.optimizer.weight_decay, 0.0)):  # the config may change these
        group.update(betas=cfg.optimizer.betas, eps=cfg.optimizer.eps, weight_decay=wd)
    elapsed = ckpt.get("time_s", 0.0)
    if not isinstance(elapsed, (int, float)) or isinstance(elapsed, bool) or not math.isfinite(elapsed) or elapsed < 0:
        raise CheckpointError(f"{ckpt_path}: malformed training time {elapsed!r}")
    if ckpt.get("rng") is None and step == 0:
        return step, float(elapsed)  # starting weights (e.g. `lm336 import`): the run.seed streams, as a new run
    if not isinstance(ckpt.get("rng"), dict):
        raise CheckpointError(f"{ckpt_path}: holds no RNG state, so the run cannot continue exactly")
    _set_rng_state(ckpt["rng"], stream, str(ckpt_path))
    return step, float(elapsed)


def _print_header(cfg: TrainConfig, ddp: Dist, device, amp: str, compiled: bool, train_tokens, val_tokens, start_step: int,
                  replacing: bool) -> None:  # fmt: skip
    """What is about to happen, before the first step: run, model, data, batches, device, optimizer."""
    run, m, o, d = cfg.run, cfg.model, cfg.optimizer, cfg.data
    if start_step:
        what = f"resumed from step {start_step:,} of {run.max_steps:,}"
    else:
        what = "replacing the run that was there" if replacing else "new run"
    n_params = count_parameters(m)
    embed = m.vocab_size * m.d_model
    val_name = d.val_path or f"the last {d.val_fraction:.0%} of {d.train_path}"
    per_step = cfg.tokens_per_step
    steps_left = max(run.max_steps - start_step, 0)
    passes = run.max_steps * per_step / max(len(train_tokens), 1)
    processes = f", {ddp.world_size} processes x {run.batch_size // ddp.world_size}" if ddp.enabled else ""
    accum = f", {run.grad_accum_steps} micro-batches each" if run.grad_accum_steps > 1 else ""
    n_threads = torch.get_num_threads()
    threads = f" ({n_threads} thread{'s' if n_threads > 1 else ''})" if device.type == "cpu" else ""
    budget = f"; time budget {_fmt_time(run.time_budget_s)} (steps re-planned as it goes)" if run.time_budget_s else ""
    lines = [
        f"lm336 train: {run.out_dir}: {what}",
        f"  model      {_count(n_params)} parameters ({_count(n_params - embed)} without the input embedding): vocab "
        f"{m.vocab_size:,}, context {m.context_length:,}, d_model {m.d_model:,}, {m.num_layers} layers, {m.num_heads} heads, "
        f"d_ff {m.d_ff or 'default'}; {m.norm}-norm, {m.position}, {m.ffn}{', tied embeddings' if m.tie_embeddings else ''}",
        f"  data       train {d.train_path}: {len(train_tokens):,} tokens; validation {val_name}: {len(val_tokens):,} tokens",
        f"  batches    {run.batch_size:,} sequences x {m.context_length:,} tokens = {per_step:,} tokens/step{processes}{accum}; "
        f"{steps_left:,} steps to go = {steps_left * per_step:,} tokens ({passes:,.2f} passes over the training tokens in all){budget}",
        f"  device     {device}{threads}, {run.dtype} weights, autocast {amp}, torch.compile {'on' if compiled else 'off'}",
        f"  optimizer  AdamW lr {o.lr:.3g} -> {o.min_lr:.3g} (warm-up {o.warmup_iters:,} steps, cosine to step "
        f"{o.cosine_cycle_iters or run.max_steps:,}), weight decay {o.weight_decay:g}, clip {o.grad_clip:g}",
    ]
    print("\n".join(lines), flush=True)


def _warn_if_too_big_for_cpu(cfg: TrainConfig, device, steps_left: int) -> None:
    """On a CPU, warn (with an estimate) when the run's matmul FLOPs alone need more than
    CPU_WARN_SECONDS at the matmul rate measured here: the real step is slower still."""
    if device.type != "cpu" or steps_left <= 0:
        return
    step_flops = flops_per_token(cfg.model, training=True) * cfg.tokens_per_step
    total = step_flops * steps_left
    if total / _SLOW_CPU_FLOPS < CPU_WARN_SECONDS:
        return  # small enough even for a slow CPU: no need to measure
    rate = cpu_matmul_flops()
    if total / rate < CPU_WARN_SECONDS:
        return
    warnings.warn(
        f"this run is far too big for a CPU: at least {step_flops / rate:,.1f} s/step, so about "
        f"{_fmt_duration(total / rate)} for {steps_left:,} steps ({step_flops / 1e12:.2f} TFLOP per step against "
        f"{rate / 1e9:.0f} GFLOP/s measured on this CPU's matmuls; the real step is slower). For a model that learns "
        "in minutes on a CPU, start from configs/cpu-tiny.toml (or lower run.max_steps); on a GPU set run.device=cuda.",
        stacklevel=3,
    )


def _count(n: int) -> str:
    """`_count(17_039_872) -> "17.04M"`, `_count(8_432) -> "8,432"`."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def _fmt_duration(seconds: float) -> str:
    """`_fmt_duration(90) -> "1.5 minutes"`, `_fmt_duration(7.2e5) -> "200 hours"`."""
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds / 3600:,.0f} hours"


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
        DataError, FileNotFoundError: unusable token files. ConfigError: an invalid config, or a
        device that is not present. RunExistsError: run.out_dir holds a run and neither
        run.resume nor run.overwrite is set. CheckpointError: a damaged checkpoint to resume from.
    """
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(cfg)
    cfg = TrainConfig.from_dict(cfg if isinstance(cfg, dict) else cfg.to_dict())  # validated private copy
    try:
        resolve_device(cfg.run.device)
    except ValueError as e:
        raise ConfigError(f"run.device: {e}") from None
    ddp = setup_distributed(cfg.run.device)
    try:
        return _train(cfg, ddp, return_model)
    finally:
        if ddp.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, ddp: Dist, return_model: bool) -> dict:
    run, ocfg, mcfg = cfg.run, cfg.optimizer, cfg.model
    # 1. Device, precision, seeds, run directory.
    device = resolve_device(run.device, local_rank=ddp.local_rank if ddp.enabled else None)
    if device.type == "mps" and run.dtype == "float64":
        raise ConfigError("run.dtype=float64 is not supported on mps; use float32 or run.device=cpu")
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
    files = RunFiles(run.out_dir)
    out_dir, ckpt_path, log_path = files.root, files.checkpoint, files.log
    prepare_out_dir(out_dir, create=False)  # a file in the way fails now, before the data is even read
    previous = files.existing_run()
    if run.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"run.resume is set but {ckpt_path} does not exist; nothing to resume from")
    if previous and not (run.resume or run.overwrite):
        last = files.last_logged_step()
        raise RunExistsError(
            f"{out_dir} already holds a run ({', '.join(previous)}"
            + (f", logged up to step {last}" if last is not None else "")
            + "): pass --resume to continue it or --overwrite to replace it (from Python: run.resume=True or "
            "run.overwrite=True), or choose another run.out_dir"
        )
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
        start_step, elapsed_before = _resume(ckpt_path, cfg, model, optimizer, stream)
    elif previous and ddp.master:  # run.overwrite: the old run's files go, so the directory never mixes two runs
        # (its weights file too: a run stopped before its first checkpoint must not leave the old
        # model where load_model, generate and export look for this run's)
        for path in (ckpt_path, files.weights, files.summary):
            path.unlink(missing_ok=True)
    if ddp.master:
        amp = "off" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
        _print_header(cfg, ddp, device, amp, use_compile, train_tokens, val_tokens, start_step, bool(previous) and not run.resume)
        _warn_if_too_big_for_cpu(cfg, device, run.max_steps - start_step)
    # Model FLOPs utilisation: model FLOPs per token (lm336.accounting) against the device's peak.
    fpt = flops_per_token(mcfg, training=True)
    peak, peak_source = _peak_flops(device, run.peak_flops, ddp.master)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
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
        prepare_out_dir(out_dir)
        write_json(files.config, _stored_config(cfg))
        if run.resume:
            _truncate_log(log_path, start_step)
            # The weights file is written just after ckpt.pt: a kill between the two leaves it a
            # step behind (or missing), and a finished run would never write it again.
            save_weights(model, files.weights, iteration=start_step)
        else:
            log_path.write_text("")
    wandb_run = _wandb_run(cfg, ddp.master)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None  # fp16 needs loss scaling
    tokens_per_step = run.batch_size * mcfg.context_length
    max_steps = run.max_steps  # moves only under run.time_budget_s

    def lr_at(it: int) -> float:
        # lr_cosine_schedule's three cases, for iteration `it` (0-based):
        # 1. it < warmup_iters: linear warm-up it / warmup * lr
        # 2. warmup <= it <= cosine_cycle_iters: cosine from lr down to min_lr
        # 3. it > cosine_cycle_iters: min_lr
        cosine_iters = ocfg.cosine_cycle_iters if ocfg.cosine_cycle_iters is not None else max(max_steps, ocfg.warmup_iters)
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
            save_checkpoint(model, optimizer, step, ckpt_path, config=_stored_config(cfg), rng=_rng_state(stream),
                            time_s=elapsed, tokens=step * tokens_per_step)  # fmt: skip
            save_weights(model, files.weights, iteration=step)  # weights only, no pickle: for export and other tools

    # 4. The loop. Device-side accumulators avoid a host sync per step.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss/norm
    acc_dtype = torch.float64 if param_dtype == torch.float64 else torch.float32
    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    steps_since_log, train_loss, val_loss, val_ppl, val_bpb = 0, None, None, None, None
    last_ckpt_step = start_step if run.resume else None
    grad_norm = torch.zeros((), device=device)
    bar = run.progress and ddp.master and is_terminal()  # a pipe or a log file gets plain lines instead
    pbar = _progress(max_steps, start_step, enabled=bar)
    t_start = time.perf_counter()
    t_log, step_log, paused = t_start, start_step, 0.0  # tokens/s excludes evaluation and checkpoint time
    step = start_step
    batch = stream.next() if step < max_steps else None
    fwd.train()
    while step < max_steps:
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        next_step = step + 1
        last = next_step == max_steps
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
                "tokens_per_s": tok_s,
                "mfu": mfu(tok_s, fpt, peak * ddp.world_size) if peak else None,  # tok_s counts every process
            }
            if run.time_budget_s and not last:
                max_steps = _replan(max_steps, step, start_step, run.time_budget_s, elapsed_before, now - t_start, ddp, device)
                pbar.total = max_steps
            if ddp.master:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                wandb_run.log({k: v for k, v in record.items() if v is not None}, step=step)
                eta = (max_steps - step) * (now - t_log) / max(step - step_log, 1)
                _report(pbar, record, tok_s, eta, bar)
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
        **_throughput_summary(step - start_step, tokens_per_step, elapsed - elapsed_before, fpt, peak, peak_source, ddp, device),
    }
    if ddp.master:
        write_json(files.summary, summary)
    wandb_run.finish()
    if return_model:
        summary["model"] = model
    return summary


def _replan(
    max_steps: int, step: int, start_step: int, budget_s: float, before_s: float, this_run_s: float, ddp: Dist, device="cpu"
) -> int:
    """max_steps that ends the run within `budget_s` seconds at the time per step measured so far
    (evaluations and checkpoints included), never below step + 1 (the final step evaluates and
    checkpoints). Every process takes rank 0's figure, so they stop together.

    Example: 100 s budget, 20 s spent on 10 steps -> 10 + 80 / 2 = 50.
    """
    per_step = this_run_s / max(step - start_step, 1)
    planned = step + max(1, int((budget_s - before_s - this_run_s) / per_step))
    if ddp.enabled:
        value = torch.tensor([planned], dtype=torch.long, device=device)  # the training device suits the backend
        dist.broadcast(value, src=0)
        planned = int(value)
    return planned


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


def _peak_flops(device, override: float, master: bool) -> tuple[float | None, str | None]:
    """(peak FLOP/s, its source) for MFU (lm336.throughput.peak_flops); (None, None) with a
    warning for a GPU whose peak is unknown, so training goes on without MFU."""
    try:
        return peak_flops(device, override or None)
    except ValueError as e:
        if master:
            warnings.warn(f"MFU is not logged: {e}", stacklevel=3)
        return None, None


def _throughput_summary(steps: int, tokens_per_step: int, seconds: float, fpt: float, peak, peak_source, ddp: Dist, device) -> dict:
    """The run's mean throughput and MFU (this session's steps, evaluation and checkpoints
    included), the peak it was measured against, and peak device memory."""
    tok_s = steps * tokens_per_step / seconds if seconds > 0 and steps > 0 else None
    return {
        "tokens_per_s": tok_s,
        "mfu": mfu(tok_s, fpt, peak * ddp.world_size) if tok_s and peak else None,
        "flops_per_token": fpt,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "peak_memory_bytes": peak_memory_bytes(device),
    }


def _mfu_text(rec: dict) -> str:
    return f" MFU {100 * rec['mfu']:.1f}%" if rec.get("mfu") is not None else ""


def _report(pbar, rec: dict, tok_s: float, eta: float, progress: bool) -> None:
    val = f" val {rec['val_loss']:.4f} (ppl {rec['val_perplexity']:.2f})" if rec["val_loss"] is not None else ""
    if rec.get("val_bpb") is not None:
        val += f" {rec['val_bpb']:.4f} bpb"
    if progress:
        pbar.set_postfix_str(f"loss {rec['train_loss']:.4f}{val} lr {rec['lr']:.2e} {tok_s:,.0f} tok/s{_mfu_text(rec)}", refresh=False)
        if rec["val_loss"] is not None:
            pbar.write(f"step {rec['step']}: train {rec['train_loss']:.4f}{val}")
    else:
        print(
            f"step {rec['step']} | loss {rec['train_loss']:.4f}{val} | lr {rec['lr']:.2e} | "
            f"norm {rec['grad_norm']:.3f} | {tok_s:,.0f} tok/s{_mfu_text(rec)} | {_fmt_time(rec['time_s'])} elapsed, "
            f"ETA {_fmt_time(eta)}",
            flush=True,
        )


# --- 6. command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 train",
        description="Train a Transformer LM on memory-mapped token arrays. A run directory that already holds a "
        "run is never replaced silently: continue it with --resume, or replace it with --overwrite.",
        epilog=f"Devices (run.device): {DEVICE_HELP}. Config keys: " + ", ".join(config_keys()),
    )
    p.add_argument("--config", help="TOML or JSON config file (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optimizer.lr=1e-3 run.batch_size=64")  # fmt: skip
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in run.out_dir from its ckpt.pt, bit for bit (same as --set run.resume=true)")  # fmt: skip
    start.add_argument("--overwrite", action="store_true",
                       help="start afresh even if run.out_dir holds a run, replacing it (same as --set run.overwrite=true)")  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return p


@command("lm336 train")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.resume or args.overwrite:
        cfg = apply_overrides(cfg, ["run.resume=true" if args.resume else "run.overwrite=true"])
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

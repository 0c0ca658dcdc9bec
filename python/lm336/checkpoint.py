"""Run folders and checkpoints: the names of the files in a run directory, and every checkpoint
write and read in lm336.

    save_checkpoint(model, optimizer, step, "runs/x/ckpt.pt", config=cfg.to_dict())
    step = load_checkpoint("runs/x/ckpt.pt", model, optimizer)
    model, ckpt = load_model("runs/x")           # the model a run trained, rebuilt from its config

A checkpoint is one file: PyTorch's zip serialisation of {"model", "optimizer", "iteration",
extras...} followed by a fixed-size trailer with the SHA-256 and the length of everything before it:

    <torch.save bytes>\\n#lm336-checkpoint v1 sha256=<64 hex digits> bytes=<16 hex digits>\\n

Notable choices:
- Every read verifies the trailer before a single byte is unpickled: a flipped byte anywhere
  (weights, optimizer moments, RNG states, config, the zip headers) and a truncated or extended file
  are refused. PyTorch's zip reader checks no CRCs, so without this a damaged optimizer tensor
  would load silently. ZIP readers ignore bytes after the archive's end record, so
  `torch.load(path, weights_only=True)` still reads these files.
- Nothing is ever fully unpickled: reads use PyTorch's restricted unpickler (`weights_only=True`:
  tensors and plain Python data only), so a crafted file cannot run code, checksum or not. Extras
  must therefore be tensors or plain data; `save_checkpoint` refuses anything else before writing,
  so every file it writes reads back.
- A file without a trailer (written by plain `torch.save`) is refused unless the caller opts in
  with `allow_missing_checksum=True`; it is then still read safely.
- A path is written atomically (temporary file, fsync, rename); errors are `CheckpointError` (a
  ValueError) with one line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor
from torch.nn import Module

from .common import atomic_write
from .config import ConfigError, ModelConfig

# 1. The files of a run directory -----------------------------------------------------------------

CONFIG = "config.json"  # the resolved TrainConfig
LOG = "log.jsonl"  # one JSON record per log step
CHECKPOINT = "ckpt.pt"  # model, optimizer, step, RNG states, config (this module's format)
SUMMARY = "summary.json"  # train()'s result
TOKENIZER = "tokenizer"  # the tokenizer directory a run was trained with (written by the pipeline)
WEIGHTS = "model.safetensors"  # weights only, for other tools
PIPELINE = "pipeline.json"  # `lm336 pipeline`'s result
SWEEP_ROW = "sweep_row.json"  # a sweep run's row in the sweep's table


@dataclass(frozen=True)
class RunFiles:
    """The paths of a run directory's files: `RunFiles("runs/x").checkpoint -> Path("runs/x/ckpt.pt")`."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / CONFIG)
    log = property(lambda self: self.root / LOG)
    checkpoint = property(lambda self: self.root / CHECKPOINT)
    summary = property(lambda self: self.root / SUMMARY)
    tokenizer = property(lambda self: self.root / TOKENIZER)
    weights = property(lambda self: self.root / WEIGHTS)
    pipeline = property(lambda self: self.root / PIPELINE)
    sweep_row = property(lambda self: self.root / SWEEP_ROW)

    def existing_run(self) -> list[str]:
        """Names of the files that show a run already trained here (checkpoint, non-empty log,
        summary); [] for a new or empty directory."""
        found = [p.name for p in (self.checkpoint, self.summary) if p.exists()]
        if self.log.is_file() and self.log.stat().st_size > 0:
            found.append(self.log.name)
        return sorted(found)

    def last_logged_step(self) -> int | None:
        """The step of the last complete line of the log, or None."""
        try:
            lines = self.log.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        for line in reversed(lines):
            try:
                step = json.loads(line).get("step")
            except (ValueError, AttributeError):
                continue
            if isinstance(step, int):
                return step
        return None


def prepare_out_dir(path: str | os.PathLike, *, create: bool = True) -> Path:
    """Check that `path` is, or can become, a run directory, and create it (with its parents).

    Raises:
        NotADirectoryError / FileExistsError: `path`, or one of its parents, is a file.
        PermissionError: it cannot be created or written.
    """
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "the run directory" if parent == path else f"a parent of the run directory {path}"
                raise NotADirectoryError(f"{parent}: is a file, but {what} must be a directory")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise type(e)(f"{path}: cannot create the run directory ({e.strerror or e})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path}: the run directory is not writable")
    return path


# 2. Writing ----------------------------------------------------------------------------------------

_TRAILER_PREFIX = b"\n#lm336-checkpoint v1 sha256="
_TRAILER_RE = re.compile(rb"\n#lm336-checkpoint v1 sha256=([0-9a-f]{64}) bytes=([0-9a-f]{16})\n")
TRAILER_SIZE = len(_TRAILER_PREFIX) + 64 + len(b" bytes=") + 16 + 1


def _trailer(digest: str, size: int) -> bytes:
    out = _TRAILER_PREFIX + digest.encode() + b" bytes=" + f"{size:016x}".encode() + b"\n"
    assert len(out) == TRAILER_SIZE
    return out


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to `out`."""

    def __init__(self, out: IO[bytes]):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        self.out.write(view)
        return len(view)


_SCALARS = (str, bytes, int, float, bool, type(None))  # exact types: numpy's float64 subclasses float but pickles as numpy
_TORCH_VALUES = (Tensor, torch.dtype, torch.device, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless `value` is tensors and plain data (what the safe reader accepts)."""
    if type(value) in _SCALARS or isinstance(value, _TORCH_VALUES):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _SCALARS:
                raise TypeError(f"checkpoint extra {where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint extra {where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold only "
        "tensors and plain data (dict, list, tuple, str, bytes, numbers, bool, None), so that they load without "
        "unpickling code: convert it (e.g. numpy arrays with torch.from_numpy, objects to dicts)"
    )


def unwrap_model(model: Module) -> Module:
    """The module under torch.compile (`_orig_mod`) and DistributedDataParallel (`module`) wrappers."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), Module):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel


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
    """Save model and optimizer state, the iteration and `extra` (e.g. config=..., rng=...), with a
    checksum trailer (see the module docstring).

    A path is written atomically (temporary file, fsync, rename); a file object is written at its
    current position. Model keys are saved without torch.compile/DDP wrapper prefixes.

    Raises:
        TypeError: an extra that is not tensors and plain data (it could not be read back safely).
    """
    for key, value in extra.items():
        _check_plain(value, repr(key))
    obj = {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        **extra,
    }

    def write(f: IO[bytes]) -> None:
        hashing = _HashingWriter(f)
        torch.save(obj, hashing)
        f.write(_trailer(hashing.sha.hexdigest(), hashing.size))

    if isinstance(out, (str, os.PathLike)):
        with atomic_write(out, "wb") as f:
            write(f)
    else:
        write(out)


# 3. Reading ----------------------------------------------------------------------------------------


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, truncated, not a checkpoint, unsafe, or not for
    this model. The message is one line and names the file."""


def _describe(src) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def _open_source(src) -> tuple[IO[bytes], bool]:
    """(binary file object, whether we opened it). Refuses what is not a regular file up front
    (a FIFO would block forever, a directory cannot be read)."""
    if not isinstance(src, (str, os.PathLike)):
        if not hasattr(src, "read"):
            raise TypeError(f"a checkpoint source is a path or a binary file object, got {type(src).__name__}")
        return src, False
    path = Path(src)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path}: is a directory, expected a checkpoint file (e.g. {path / CHECKPOINT})")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
    try:
        return open(path, "rb"), True
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None


def _verified_payload(f: IO[bytes], name: str, allow_missing_checksum: bool) -> IO[bytes]:
    """Check the trailer of the checkpoint in `f` (from its current position to its end) and
    return a stream of the payload: `f` itself rewound, or an in-memory copy for streams that
    cannot seek."""
    seekable = bool(getattr(f, "seekable", lambda: False)())
    if seekable:
        start = f.tell()
        size = f.seek(0, os.SEEK_END) - start
        f.seek(start)
    else:
        data = f.read()
        f, start, size = io.BytesIO(data), 0, len(data)
    tail = b""
    if size >= TRAILER_SIZE:
        f.seek(start + size - TRAILER_SIZE)
        tail = f.read(TRAILER_SIZE)
    match = _TRAILER_RE.fullmatch(tail)
    if match is None:
        f.seek(start)
        if size == 0:
            raise CheckpointError(f"{name}: empty file, not a checkpoint")
        if allow_missing_checksum:
            return f
        raise CheckpointError(
            f"{name}: no lm336 checksum at the end of the file: it is truncated or damaged, or was not written by "
            "lm336's save_checkpoint (pass allow_missing_checksum=True to read a plain torch.save file, still safely)"
        )
    recorded_digest, recorded_size = match.group(1).decode(), int(match.group(2), 16)
    payload_size = size - TRAILER_SIZE
    if recorded_size != payload_size:
        raise CheckpointError(f"{name}: damaged checkpoint: it records {recorded_size:,} bytes of data but holds {payload_size:,}")
    f.seek(start)
    sha, todo = hashlib.sha256(), payload_size
    while todo:
        chunk = f.read(min(todo, 1 << 22))
        if not chunk:
            raise CheckpointError(f"{name}: the file ended while it was being read")
        sha.update(chunk)
        todo -= len(chunk)
    if sha.hexdigest() != recorded_digest:
        raise CheckpointError(f"{name}: damaged checkpoint: its SHA-256 checksum does not match its contents (a changed or corrupted byte)")
    f.seek(start)
    if start:  # torch's zip reader expects the archive to start the stream
        return io.BytesIO(f.read(payload_size))
    return f


def read_checkpoint(src: str | os.PathLike | IO[bytes], *, allow_missing_checksum: bool = False) -> dict[str, Any]:
    """The checkpoint dict ("model", "optimizer", "iteration" and the extras), on the CPU, after
    verifying its checksum and reading it without unpickling anything but tensors and plain data.

    Args:
        src: a path, or a binary file object positioned at the checkpoint (read to its end).
        allow_missing_checksum: also accept a file with no checksum trailer (e.g. written by
            plain torch.save). Still read safely; a file that has a trailer is always verified.
    Raises:
        FileNotFoundError, IsADirectoryError: no file there.
        CheckpointError: anything else wrong with the file, in one line naming it.
    """
    name = _describe(src)
    f, owned = _open_source(src)
    try:
        payload = _verified_payload(f, name, allow_missing_checksum)
        try:
            with warnings.catch_warnings():  # PyTorch's notes on odd pickles: the verdict below says it all
                warnings.simplefilter("ignore")
                ckpt = torch.load(payload, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
            # NOTE: PyTorch's own message for a refused object recommends loading unsafely; never
            # pass it on. The file is refused, whatever it holds.
            if "Unsupported global" in str(e) or "weights_only" in str(e) or "Weights only" in str(e):
                raise CheckpointError(
                    f"{name}: refused: the file holds pickled Python objects other than tensors and plain data, "
                    "which lm336 never unpickles (loading them could run arbitrary code)"
                ) from None
            raise CheckpointError(f"{name}: not a readable checkpoint ({type(e).__name__} in PyTorch's reader)") from None
    finally:
        if owned:
            f.close()
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt.get("iteration"), int):
        raise CheckpointError(f"{name}: not an lm336 checkpoint (expected a dict with 'model' weights and an integer 'iteration')")
    bad = [k for k, v in ckpt["model"].items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{name}: not an lm336 checkpoint ('model' holds non-tensor entries such as {bad[0]!r})")
    return ckpt


def load_checkpoint(
    src: str | os.PathLike | IO[bytes],
    model: Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    allow_missing_checksum: bool = False,
) -> int:
    """Restore model (and optimizer) state from `src` (read as `read_checkpoint` does); return the
    saved iteration. Nothing is changed unless everything fits.

    Raises:
        CheckpointError naming every missing key, unexpected key and shape difference when the
        checkpoint does not fit the model (e.g. another configuration), or when an optimizer is
        given but the checkpoint holds no optimizer state; anything `read_checkpoint` raises.
    """
    ckpt = read_checkpoint(src, allow_missing_checksum=allow_missing_checksum)
    return apply_checkpoint(ckpt, model, optimizer, name=_describe(src))


def apply_checkpoint(ckpt: dict[str, Any], model: Module, optimizer: torch.optim.Optimizer | None = None, *, name: str = "") -> int:
    """Put a dict from `read_checkpoint` into `model` (and `optimizer`); return its iteration.
    Checks everything first, so a checkpoint that does not fit changes nothing."""
    model = unwrap_model(model)
    state = _strip_prefixes(ckpt["model"])
    problems = state_dict_differences(state, model.state_dict())
    if problems:
        raise CheckpointError(f"checkpoint {name} does not match the model: {problems}")
    if optimizer is not None and not isinstance(ckpt.get("optimizer"), dict):
        raise CheckpointError(f"checkpoint {name} holds no optimizer state")
    if optimizer is not None:
        # First: torch.optim.Optimizer.load_state_dict checks the groups before it replaces its
        # state in one assignment, so a state that does not fit leaves optimizer and model as they were.
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as e:
            raise CheckpointError(f"checkpoint {name}: its optimizer state does not fit this optimizer ({type(e).__name__}: {e})") from None
    model.load_state_dict(state)
    return int(ckpt["iteration"])


def state_dict_differences(state: dict[str, Any], expected: dict[str, Any], *, source: str = "checkpoint", items: str = "keys") -> str:
    """ "" when `state` has exactly the keys and shapes of `expected`; else every missing key,
    unexpected key and shape difference, in one line (`source` names where `state` came from,
    `items` what its entries are called)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: {source} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {items} {missing}")
    if unexpected:
        parts.append(f"unexpected {items} {unexpected}")
    if shapes:
        parts.append("shape differences: " + "; ".join(shapes))
    return "; ".join(parts)


# 4. The model a run trained --------------------------------------------------------------------------


def _checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file: `path` itself, or in a run directory its ckpt.pt, else its
    model.safetensors."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT if (path / CHECKPOINT).exists() or not (path / WEIGHTS).exists() else path / WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def model_config_of(ckpt: dict, path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig a checkpoint was trained with: its "config" extra (a TrainConfig dict, as
    `lm336 train` writes, or a ModelConfig dict), else the run's config.json beside it."""
    path = Path(path)
    beside = path.parent / CONFIG
    candidates = [("the checkpoint", ckpt.get("config"))]
    if beside.is_file():
        try:
            candidates.append((str(beside), json.loads(beside.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{beside}: unreadable run config ({e})") from None
    for where, cand in candidates:
        if isinstance(cand, dict) and isinstance(cand.get("model"), dict):
            cand = cand["model"]
        if isinstance(cand, dict) and "vocab_size" in cand:
            try:
                return ModelConfig.from_dict(cand)
            except ConfigError as e:
                raise CheckpointError(f"{path}: the model config in {where} is invalid ({e})") from None
    raise CheckpointError(f"{path}: no model configuration in the checkpoint or in {beside}; pass a checkpoint written by lm336 train")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Module, dict]:
    """Rebuild the TransformerLM a checkpoint was trained with, load its weights, and return
    (model in eval mode on `device`, the checkpoint dict). `path` is a ckpt.pt, a
    model.safetensors (the dict is then its metadata: model_config, iteration, dtype) or a run
    directory (its ckpt.pt, else its model.safetensors)."""
    from .model import TransformerLM

    path = _checkpoint_path(path)
    if path.suffix == ".safetensors":
        from .safetensors_io import load_weights

        model, info = load_weights(path)
        return model.to(device).eval(), info
    ckpt = read_checkpoint(path)
    cfg = model_config_of(ckpt, path)
    model = TransformerLM.from_config(cfg)
    state = _strip_prefixes(ckpt["model"])
    problems = state_dict_differences(state, model.state_dict())
    if problems:
        raise CheckpointError(f"{path}: the weights do not match the stored model config: {problems}")
    model.load_state_dict(state)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: the weights hold NaN or inf values (e.g. {bad[0]}); the run that wrote it had diverged")
    return model.to(device).eval(), ckpt


TOKENIZER_HELP = (
    "tokenizer file or folder (default: the run config's data.tokenizer_path, else tokenizer/ in the run folder or one level up)"
)
"""The --tokenizer help of every command that finds a run's tokenizer with `find_tokenizer`."""


def find_tokenizer(path: str | os.PathLike, ckpt: dict | None = None) -> Path | None:
    """The tokenizer of the run a checkpoint belongs to: the one its config names
    (`data.tokenizer_path`, in the checkpoint or the run's config.json), else `tokenizer/` beside
    the checkpoint, or one level up (a sweep's runs share their parent's); None if there is none."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    recorded = []
    configs = [(ckpt or {}).get("config")]
    with contextlib.suppress(OSError, ValueError):
        configs.append(json.loads((run_dir / CONFIG).read_text(encoding="utf-8")))
    for cfg in configs:
        data = cfg.get("data") if isinstance(cfg, dict) else None
        if isinstance(data, dict) and isinstance(data.get("tokenizer_path"), str) and data["tokenizer_path"]:
            recorded.append(Path(data["tokenizer_path"]))
    for cand in (*recorded, run_dir / TOKENIZER, run_dir.parent / TOKENIZER):
        if cand.exists():
            return cand
    return None


__all__ = [
    "CONFIG", "LOG", "CHECKPOINT", "SUMMARY", "TOKENIZER", "WEIGHTS", "PIPELINE", "SWEEP_ROW", "RunFiles",
    "prepare_out_dir", "save_checkpoint", "read_checkpoint", "load_checkpoint", "apply_checkpoint", "CheckpointError",
    "model_config_of", "load_model", "find_tokenizer", "unwrap_model", "state_dict_differences",
]  # fmt: skip

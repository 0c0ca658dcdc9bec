"""What every lm336 module shares: the device policy, the process group, seeding and RNG states,
atomic writes, terminal detection, and how an `lm336` command reports an error.

    device = resolve_device("auto")   # cuda if present, else mps if present, else cpu

Notable choices:
- One device policy for training, sampling, the pipeline's timing and the benchmarks:
  "auto" means the fastest device present (cuda, then mps, then cpu); a device named explicitly
  must exist, or `resolve_device` raises ValueError saying what is there. Nothing falls back
  silently, so a run never trains somewhere other than where it was sized or asked for.
- RNG states are captured as tensors and plain Python data, so a checkpoint holding them loads
  with PyTorch's safe (weights-only) reader.
- torch and bpe336 are imported inside the functions that need them: `lm336 pipeline --help`
  and the quickstart's help work before anything is installed.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICE_HELP = "auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps"


# 1. Devices ----------------------------------------------------------------------------------------


def check_device_name(name: str) -> None:
    """Raise ValueError unless `name` is "auto", "cpu", "cuda", "cuda:N" or "mps" (spelling only;
    `resolve_device` checks that the device exists).

        check_device_name("cuda:1") -> None;  check_device_name("gpu") -> ValueError
    """
    if not isinstance(name, str):
        raise ValueError(f"device must be a string ({DEVICE_HELP}), got {name!r}")
    kind, sep, index = name.partition(":")
    ok = name == "auto" or (kind in DEVICE_TYPES and (not sep or (index.isdigit() and index.isascii())))
    if not ok:
        raise ValueError(f"unknown device {name!r}; expected {DEVICE_HELP}")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices() -> list[str]:
    """The device types present here, e.g. ["cpu"] or ["cuda", "cpu"]."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append(f"cuda (x{torch.cuda.device_count()})")
    if _mps_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(name: str = "auto", *, local_rank: int | None = None):
    """The torch.device for a device name, by lm336's one policy.

    Args:
        name: "auto" picks cuda if present, else mps if present, else cpu; "cpu", "cuda", "cuda:N"
            and "mps" must exist here.
        local_rank: set under torchrun: a bare "cuda" (or "auto" resolving to cuda) becomes
            cuda:local_rank, one GPU per process.
    Raises:
        ValueError: an unknown name, or a device that is not present (the message lists those that are).
    """
    import torch

    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    kind, _, index = name.partition(":")
    present = ", ".join(available_devices())
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here (present: {present}); use auto or cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
        if not index and local_rank is not None:
            name = f"cuda:{local_rank}"
    elif kind == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} asked for, but MPS is not available here (present: {present}); use auto or cpu")
    return torch.device(name)


# 2. Processes ----------------------------------------------------------------------------------


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


def setup_distributed(device_name: str) -> Dist:
    """Join the process group torchrun describes (env://): nccl when the processes train on cuda,
    gloo otherwise. One process (no WORLD_SIZE, or 1) gets Dist() and no group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if resolve_device(device_name).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)  # env:// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)
        owns = True
    return Dist(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), owns_group=owns)


# 3. Seeds and RNG states ---------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device). Model initialisation draws from these."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states of Python, NumPy and torch (and CUDA when in use), as tensors and plain
    data only, so a checkpoint holding them loads with the safe reader."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },  # fmt: skip
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured. CUDA states are skipped when the GPU count differs."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# 4. Files --------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """bpe336's atomic writer (temporary file, fsync, rename): the one way lm336 writes a file.
    Imported on use, so modules that only describe themselves (`--help`) need no built extension."""
    from bpe336.atomic import atomic_write as _atomic_write

    return _atomic_write(path, mode, encoding)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# 5. Terminals and commands -------------------------------------------------------------------------


def is_terminal(stream=None) -> bool:
    """Whether `stream` (default stderr, where progress bars go) is an interactive terminal. A pipe
    or a file gets plain periodic lines instead of a redrawn bar."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def command_path(name: str) -> str:
    """How to call the console script `name` from a new shell: the bare name when the PATH finds
    this installation's copy, else its full path beside this Python, else `python -m`.

        command_path("lm336") -> "lm336" or "/home/me/.cache/bpe336-venv/bin/lm336"
    """
    import shutil

    beside = Path(sys.executable).parent / name
    found = shutil.which(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        if found and Path(found).resolve() == beside.resolve():
            return name
        return str(beside)
    if found:
        return name
    return f"{sys.executable} -m {name}"


def command(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a subcommand's `main(argv) -> int` so that no error reaches the user as a traceback.

    Any exception becomes one line on stderr, `<prog>: error: <message>`, and exit status 1 (2 for a
    configuration error, 130 for Ctrl-C); warnings print as one line, `<prog>: warning: ...`. A reader
    that leaves a pipe early (`lm336 accounting | head`) is not an error. Set LM336_DEBUG=1 to get
    the traceback instead.
    """

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)

            warnings.showwarning = show
            try:
                return int(main(argv) or 0)
            except KeyboardInterrupt:
                print(f"\n{prog}: interrupted", file=sys.stderr)
                return 130
            except BrokenPipeError:  # the reader left; send the rest of the output nowhere
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except Exception as exc:  # noqa: BLE001 - the whole point: one line, never a traceback
                if os.environ.get("LM336_DEBUG"):
                    raise
                print(f"{prog}: error: {error_message(exc)}", file=sys.stderr, flush=True)
                from .config import ConfigError

                return 2 if isinstance(exc, ConfigError) else 1
            finally:
                warnings.showwarning = shown

        return run

    return wrap


def error_message(exc: BaseException) -> str:
    """The text a user sees for `exc`: its message, prefixed by its type where the type says more
    than the message (an unexpected error), all on one line.

        error_message(FileNotFoundError("x.bin does not exist")) -> "x.bin does not exist"
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None and text.startswith("[Errno"):
        text = f"{exc.filename}: {exc.strerror}"  # "[Errno 2] No such file or directory: 'x'" -> "x: No such file or directory"
    text = " ".join(text.split()) or type(exc).__name__
    expected = (ValueError, OSError, KeyError, ImportError, RuntimeError)
    if not isinstance(exc, expected):
        text = f"{type(exc).__name__}: {text} (set LM336_DEBUG=1 for the traceback)"
    return text

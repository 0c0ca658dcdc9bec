"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

An interrupted run never leaves a truncated file where a good one was. Used for vocab and merges
files, token arrays and checkpoints (lm336 imports it too).

    with atomic_write("vocab.json", "w") as f:
        f.write(text)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file in `path`'s directory (so the rename stays on one filesystem), with the
    permissions a plain open() would give: mkstemp's 0600 would otherwise survive the rename."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Yield a file object whose contents replace `path` only if the block completes.

    Args:
        path: destination; its directory must exist.
        mode: "w" or "wb" (text or binary).
        encoding: text encoding for mode "w" (UTF-8 when omitted).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    fd, tmp = _temp_beside(path)
    try:
        kwargs = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """Return (temporary path, final path) for writers that need a path rather than a file
    object (e.g. Rust writing a token array). Call `os.replace(tmp, final)` when done."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    fd, tmp = _temp_beside(path)
    os.close(fd)
    return Path(tmp), path

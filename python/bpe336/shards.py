"""Shards: byte ranges of text files that count and encode exactly as the whole file, and
directories of token-array shards read back as one array.

Byte-range shards. Split a file of `size` bytes at any boundaries into ranges
`(0, b1), (b1, b2), ..., (bk, size)` (`plan_byte_ranges` makes equal ones) and give each range
to a worker: `count_pretokens(path, ..., byte_range=r)` and `Tokenizer.encode_file(path, out,
byte_range=r)` then process the bytes the range *owns*, `owned_range(path, r, ...)`. Each
boundary moves to the first place at or after it where the text can be cut without changing
any pre-token or special token (the pattern's safe cuts, or where a special token starts,
never inside a character, a special token or a run the pattern keeps whole), decided from the
bytes around it alone, so two neighbouring workers move their shared boundary to the same
place without talking. The owned ranges tile the file; summed counts equal the whole file's,
and concatenated ids equal `encode_file`'s. (The proof: `rust/shard.rs`.)

Token shards. `bpe336.cluster.encode_files_on_ray` writes a directory of `.npy` arrays and a
`manifest.json` (format below); `open_token_shards(path)` (the manifest or its directory) gives a
`TokenShards`: the arrays memory-mapped and concatenated virtually, with no copy, indexable like
a 1-D numpy array (lm336 reads it wherever it reads a token array).

    {"format": "bpe336-token-shards", "version": 1, "dtype": "uint16", "tokens": 1234567,
     "shards": [{"file": "shard-000000.npy", "tokens": 612345,
                 "source": "/data/train.txt", "start": 0, "end": 67108871}, ...],
     "tokenizer": {"vocab_size": 10000, "pattern": "...", "special_tokens": {"<|endoftext|>": 0}}}

`shards` lists the arrays in order; `source`, `start` and `end` say which bytes of which input
each array encodes.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from . import _core
from .pattern import resolve_pattern

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "bpe336-token-shards"
MANIFEST_VERSION = 1
SHARD_NAME = re.compile(r"^shard-\d{6,}\.npy$")
TOKEN_DTYPES = ("uint16", "uint32")

__all__ = [
    "MANIFEST_NAME",
    "ShardManifestError",
    "TokenShards",
    "check_byte_range",
    "is_token_shards",
    "open_token_shards",
    "owned_range",
    "plan_byte_ranges",
    "read_manifest",
    "shard_file_name",
    "write_manifest",
]


# ---------------------------------------------------------------------------------------------
# Byte-range shards
# ---------------------------------------------------------------------------------------------


def check_byte_range(byte_range: object) -> tuple[int, int]:
    """`(start, end)` as two ints with 0 <= start <= end; TypeError or ValueError otherwise."""
    if not isinstance(byte_range, (tuple, list)) or len(byte_range) != 2:
        raise TypeError(f"byte_range must be a (start, end) pair of ints, got {byte_range!r}")
    start, end = byte_range
    for v in (start, end):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"byte_range must be a (start, end) pair of ints, got {byte_range!r}")
        if v < 0:
            raise ValueError(f"byte_range offsets must be >= 0, got {byte_range!r}")
    if start > end:
        raise ValueError(f"byte_range {tuple(byte_range)!r}: the start is after the end")
    return int(start), int(end)


def plan_byte_ranges(size: int, shard_bytes: int) -> list[tuple[int, int]]:
    """Ranges of about `shard_bytes` covering `size` bytes, e.g. (10, 4) -> [(0, 4), (4, 8), (8, 10)].
    An empty file gets none."""
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, int):
        raise TypeError(f"shard_bytes must be an int, got {type(shard_bytes).__name__}")
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes must be at least 1, got {shard_bytes}")
    return [(start, min(start + shard_bytes, size)) for start in range(0, size, shard_bytes)]


def owned_range(
    path: str | os.PathLike, byte_range: tuple[int, int], special_tokens: Iterable[str] = (), pattern: str = "gpt2"
) -> tuple[int, int] | None:
    """The `(start, end)` bytes of the regular file `path` that the shard given `byte_range`
    owns with this pattern and these special tokens (see the module docs), or None when it owns
    none. Offsets past the end of the file count as its end."""
    start, end = check_byte_range(byte_range)
    return _core.owned_range(str(path), start, end, list(special_tokens), pattern=resolve_pattern(pattern))


# ---------------------------------------------------------------------------------------------
# Token shards
# ---------------------------------------------------------------------------------------------


class ShardManifestError(ValueError):
    """A token-shard directory or manifest that cannot be read as one token array."""


def shard_file_name(index: int) -> str:
    """shard_file_name(3) -> 'shard-000003.npy'."""
    return f"shard-{index:06d}.npy"


class ShardDirectoryEntries:
    """The entries a token-shard directory holds (for `atomic.atomic_directory`'s `owned`):
    the manifest and `shard-NNNNNN.npy` files."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name == MANIFEST_NAME or SHARD_NAME.match(name) is not None)

    def __iter__(self):
        return iter([MANIFEST_NAME])

    def __len__(self) -> int:
        return 1


def write_manifest(folder: str | os.PathLike, shards: Sequence[dict], dtype: str, tokenizer: dict | None = None) -> dict:
    """Write `folder/manifest.json` for token arrays already in `folder` (as `shard_file_name`
    names them) and return it. `shards`: in order, each {"file", "tokens", "source", "start",
    "end"}; `tokenizer`: what made them ({"vocab_size", "pattern", "special_tokens"}). Written
    atomically; `bpe336.cluster` writes it inside a directory that appears as one unit."""
    from .atomic import atomic_write

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dtype": str(np.dtype(dtype)),
        "tokens": sum(s["tokens"] for s in shards),
        "shards": list(shards),
    }
    if tokenizer is not None:
        manifest["tokenizer"] = tokenizer
    with atomic_write(Path(folder) / MANIFEST_NAME, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    read_manifest(folder)  # what is written must read back
    return manifest


def _manifest_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def is_token_shards(path: str | os.PathLike) -> bool:
    """Whether `path` is a token-shard manifest or a directory holding one (by name, not by
    content: `read_manifest` checks the content)."""
    p = Path(path)
    return (p.is_dir() and (p / MANIFEST_NAME).is_file()) or (p.name == MANIFEST_NAME and p.is_file())


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a token-shard directory (`path` is the directory or its manifest.json),
    checked: its format and version, the dtype, and each shard's entry. ShardManifestError
    (a ValueError) names what is wrong; FileNotFoundError for a missing manifest."""
    mpath = _manifest_path(path)
    if not mpath.is_file():
        if Path(path).is_dir():
            raise FileNotFoundError(errno.ENOENT, f"{path}: no {MANIFEST_NAME} in this directory (not a token-shard directory)")
        raise FileNotFoundError(errno.ENOENT, f"{mpath}: no such file")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, or an integer too long for int()
        raise ShardManifestError(f"{mpath}: not a JSON token-shard manifest ({str(e)[:200]})") from None
    bad = lambda why: ShardManifestError(f"{mpath}: {why}")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise bad(f'not a token-shard manifest (no "format": "{MANIFEST_FORMAT}")')
    if manifest.get("version") != MANIFEST_VERSION:
        raise bad(f"manifest version {manifest.get('version')!r}; this bpe336 reads version {MANIFEST_VERSION}")
    if manifest.get("dtype") not in TOKEN_DTYPES:
        raise bad(f"dtype {manifest.get('dtype')!r} is not one of {', '.join(TOKEN_DTYPES)}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise bad('"shards" must be a list')
    total = 0
    for i, s in enumerate(shards):
        if not isinstance(s, dict) or not isinstance(s.get("file"), str) or not SHARD_NAME.match(s["file"]):
            raise bad(f"shard {i}: needs a file named like shard-000000.npy")
        n = s.get("tokens")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise bad(f"shard {i}: tokens must be a count, got {n!r}")
        total += n
    if manifest.get("tokens") != total:
        raise bad(f"tokens is {manifest.get('tokens')!r} but the shards hold {total}")
    return manifest


class TokenShards:
    """Token arrays memory-mapped and concatenated virtually: a read-only 1-D "array" of
    `len(self)` ids of `self.dtype`, copying nothing until indexed.

    Indexing: an int gives one id; a slice (step 1) gives a numpy view when it lies in one
    shard, else a `TokenShards` view (no copy); an integer array gives a numpy array of the ids
    at those positions (windows may span shards); `np.asarray(shards)` copies everything.
    """

    def __init__(self, arrays: Sequence[np.ndarray], name: str = "token shards"):
        self._arrays = [a for a in arrays if len(a)]
        dtypes = {a.dtype for a in self._arrays}
        if len(dtypes) > 1:
            raise ValueError(f"{name}: the shards have different dtypes {sorted(map(str, dtypes))}")
        self.dtype = np.dtype(dtypes.pop() if dtypes else (arrays[0].dtype if arrays else np.uint16))
        lengths = [len(a) for a in self._arrays]
        # _starts[i]: index of the first id of shard i; one more entry for the end.
        self._starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        self.name = name

    # -- the array interface lm336 uses ---------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def size(self) -> int:
        return len(self)

    ndim = 1

    @property
    def num_shards(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"TokenShards({self.name!r}, {len(self):,} tokens of {self.dtype} in {self.num_shards} shards)"

    def _slice(self, begin: int, end: int) -> np.ndarray | TokenShards:
        if begin >= end:
            return np.empty(0, dtype=self.dtype)
        first = int(np.searchsorted(self._starts, begin, side="right")) - 1
        last = int(np.searchsorted(self._starts, end - 1, side="right")) - 1
        if first == last:
            base = int(self._starts[first])
            return self._arrays[first][begin - base : end - base]
        pieces = [self._arrays[first][begin - int(self._starts[first]) :]]
        pieces += self._arrays[first + 1 : last]
        pieces.append(self._arrays[last][: end - int(self._starts[last])])
        return TokenShards(pieces, self.name)

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice):
            begin, end, step = key.indices(n)
            if step != 1:
                raise IndexError("TokenShards slices take step 1 only (np.asarray(...) first for others)")
            return self._slice(begin, max(begin, end))
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of range for {n} tokens")
            shard = int(np.searchsorted(self._starts, i, side="right")) - 1
            return self._arrays[shard][i - int(self._starts[shard])]
        idx = np.asarray(key)
        if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"TokenShards take ints, slices or integer arrays as indices, not {idx.dtype}")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"an index is out of range for {n} tokens")
        # Gather shard by shard: only the touched pages of each memory map are read.
        flat = idx.ravel()
        out = np.empty(flat.shape, dtype=self.dtype)
        which = np.searchsorted(self._starts, flat, side="right") - 1
        for shard in np.unique(which):
            sel = which == shard
            out[sel] = self._arrays[shard][flat[sel] - self._starts[shard]]
        return out.reshape(idx.shape)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("TokenShards cannot be viewed as one array without a copy")
        whole = np.concatenate(self._arrays) if self._arrays else np.empty(0, dtype=self.dtype)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __iter__(self):
        for a in self._arrays:
            yield from a


def open_token_shards(path: str | os.PathLike) -> TokenShards:
    """The token arrays of a shard directory (`path`: the directory or its manifest.json) as
    one `TokenShards`, memory-mapped. Each file must exist and hold the manifest's dtype and
    token count (ShardManifestError otherwise)."""
    manifest = read_manifest(path)
    mpath = _manifest_path(path)
    folder = mpath.parent
    dtype = np.dtype(manifest["dtype"])
    arrays = []
    for i, s in enumerate(manifest["shards"]):
        f = folder / s["file"]
        if not f.is_file():
            raise ShardManifestError(f"{mpath}: shard {i}: {f} is missing")
        try:
            arr = np.load(f, mmap_mode="r")
        except ValueError as e:
            raise ShardManifestError(f"{f}: not a readable .npy array ({e})") from None
        if arr.ndim != 1 or arr.dtype.kind != "u" or arr.dtype.itemsize != dtype.itemsize or len(arr) != s["tokens"]:
            raise ShardManifestError(
                f"{f}: expected {s['tokens']:,} ids of {dtype} as the manifest says, found shape {arr.shape} of {arr.dtype}"
            )
        arrays.append(arr)
    return TokenShards(arrays, str(folder)) if arrays else TokenShards([np.empty(0, dtype=dtype)], str(folder))

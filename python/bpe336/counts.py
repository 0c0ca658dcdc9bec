"""Pre-token counts you can keep and merge: count a corpus once (or its shards, anywhere), save
the counts, add counts together, and train from them without reading the corpus again.

    counts = count_pretokens("corpus.txt", ["<|endoftext|>"])       # pattern="cl100k", ... too
    counts.save("corpus.bpc")                                        # versioned, checksummed, atomic
    counts = PretokenCounts.load("a.bpc") + PretokenCounts.load("b.bpc")
    vocab, merges = train_bpe(counts, 32_000)                        # the counts' specials and pattern

Counting, the file format, merging and training are the Rust core's (`rust/counts.rs`), run with
the GIL released. The counts are exact: training from them gives the merges training from the
text gives, and counts of the pieces of a text (separate files, or the byte-range shards of one
file, `byte_range=`) add up to the counts of the whole, so training from the sum gives the same
merges too. Counts remember their pattern and special tokens; counts made with different ones
cannot be added (ValueError), and training from counts uses theirs.

The file (`save`, `load`, `to_bytes`, `from_bytes`) holds a magic number, a format version, the
pattern, the special tokens, the sorted entries and a CRC-32 (layout in `rust/counts.rs`); it is
read without pickle, and a file of another version, a damaged or truncated file, or one that is
not a counts file raises `CountsFileError` (a ValueError) naming the file and the reason. Equal
counts have equal bytes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import _core
from .atomic import atomic_output
from .pattern import resolve_pattern
from .shards import check_byte_range
from .train import ProgressArg, _check_path, _check_specials, _progress_callback

CountsFileError = _core.CountsFileError
"""A counts file (or bytes) that is not one, is of another format version, or is damaged."""

FORMAT_VERSION: int = _core.COUNTS_FORMAT_VERSION
"""The version of the counts file format this build writes and reads."""

__all__ = ["CountsFileError", "FORMAT_VERSION", "PretokenCounts", "count_pretokens", "count_pretokens_from_iterator"]


class PretokenCounts:
    """Distinct pre-tokens with their counts, and the pattern and special tokens they were
    counted with. Immutable: `a + b` (or `a.merge(b, c, ...)`, or `sum([a, b, c])`) makes new
    counts. Made by `count_pretokens`, `count_pretokens_from_iterator`, `load` and `from_bytes`.

    `len(counts)` is the number of distinct pre-tokens, `counts.total` the number of pre-tokens
    with multiplicity, `counts.input_bytes` the bytes of text counted.
    """

    __slots__ = ("_core",)

    def __init__(self, core: _core.PretokenCounts) -> None:
        if not isinstance(core, _core.PretokenCounts):
            raise TypeError("PretokenCounts are made by count_pretokens, PretokenCounts.load or PretokenCounts.from_bytes")
        self._core = core

    @property
    def pattern(self) -> str:
        """The pre-tokenization regex (a named pattern's constant, e.g. `bpe336.GPT2_PATTERN`)."""
        return self._core.pattern

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens that split the counted text, in id order (a copy)."""
        return self._core.special_tokens

    @property
    def total(self) -> int:
        """Pre-tokens counted, with multiplicity."""
        return self._core.total

    @property
    def input_bytes(self) -> int:
        """Bytes of text counted."""
        return self._core.input_bytes

    def __len__(self) -> int:
        return len(self._core)

    def items(self) -> list[tuple[bytes, int]]:
        """Each distinct pre-token's bytes and count, sorted by bytes (a list: for inspection and
        tests; large counts make a large list)."""
        return self._core.items()

    # -- files and bytes ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the counts file to `path` atomically (a complete file or none; see
        `bpe336.atomic`). Conventionally named `*.bpc`."""
        with atomic_output(path) as tmp:
            self._core.save(str(tmp))

    @classmethod
    def load(cls, path: str | os.PathLike) -> PretokenCounts:
        """Read a counts file. Raises FileNotFoundError, IsADirectoryError, PermissionError, or
        CountsFileError for a file that is not a counts file, of another version, or damaged."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be str or os.PathLike, got {type(path).__name__}")
        p = Path(path)
        if p.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory, expected a counts file", str(p))
        return cls(_core.PretokenCounts.load(str(p)))

    def to_bytes(self) -> bytes:
        """The bytes of the counts file (what `save` writes): the way to pass counts between
        processes (Ray tasks, sockets) without pickling objects."""
        return self._core.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> PretokenCounts:
        """Counts from `to_bytes`'s bytes; CountsFileError when they are not such bytes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes takes bytes, not {type(data).__name__}")
        return cls(_core.PretokenCounts.from_bytes(bytes(data)))

    # -- arithmetic ---------------------------------------------------------------------------

    def merge(self, *others: PretokenCounts) -> PretokenCounts:
        """These counts plus `others`, as new counts. All must have the same pattern and the
        same special tokens (in the same order), else ValueError."""
        for i, o in enumerate(others):
            if not isinstance(o, PretokenCounts):
                raise TypeError(f"can only merge PretokenCounts, argument {i} is {type(o).__name__}")
        return PretokenCounts(self._core.merge([o._core for o in others]))

    def __add__(self, other: object) -> PretokenCounts:
        if not isinstance(other, PretokenCounts):
            return NotImplemented
        return self.merge(other)

    def __radd__(self, other: object) -> PretokenCounts:
        if other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PretokenCounts):
            return NotImplemented
        return self._core == other._core

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = self._core.pattern_name
        shown = name if name != "custom" else repr(self.pattern)
        return (
            f"PretokenCounts({len(self):,} distinct, {self.total:,} in total, {self.input_bytes:,} bytes, "
            f"pattern={shown}, special_tokens={self.special_tokens!r})"
        )


def count_pretokens(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    special_tokens: Iterable[str] = (),
    pattern: str = "gpt2",
    *,
    num_threads: int | None = None,
    progress: ProgressArg = False,
    byte_range: tuple[int, int] | None = None,
    chunk_size: int | None = None,
) -> PretokenCounts:
    """Count the pre-tokens of UTF-8 text files, in parallel (as `train_bpe` counts them).

    Args:
        paths: a path, or a list of paths (each file an independent text).
        special_tokens: strings that split the text and are not counted (kept with the counts:
            training from them gives these ids 0, 1, ...).
        pattern: "gpt2" (default), "cl100k", "o200k" or a regex (see `bpe336.pattern`).
        num_threads: worker threads (default: RAYON_NUM_THREADS, else the cores).
        progress: True for a progress bar, or a callable `(phase, done, total)`.
        byte_range: `(start, end)`: count only the part of one regular file that a shard given
            these bytes owns (`bpe336.shards`). Each boundary moves to the first place at or after it where the
            text can be cut without changing anything (the pattern's safe cuts, or where a
            special token starts), computed from the bytes around it alone, so for ANY split of
            a file into ranges `(0, b1), (b1, b2), ..., (bk, size)` the shards' counts add up to
            the whole file's. A shard may own nothing (empty counts); with a custom regex and no
            special tokens the first shard owns the whole file.
        chunk_size: streaming chunk size in bytes (results never depend on it; for tests).

    Raises:
        as `train_bpe` (missing files, invalid UTF-8 with its absolute offset, bad arguments);
        ValueError for a byte range on several files or on a FIFO or pipe.
    """
    paths_in = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths_in:
        raise ValueError("no input files given")
    files = [str(_check_path(p)) for p in paths_in]
    specials = _check_specials(special_tokens)
    regex = resolve_pattern(pattern)
    callback, bar = _progress_callback(progress)
    try:
        if byte_range is None:
            core = _core.count_files(files, specials, num_threads, chunk_size, callback, pattern=regex)
        else:
            if len(files) != 1:
                raise ValueError(f"byte_range counts a part of one file, got {len(files)} files")
            start, end = check_byte_range(byte_range)
            core, _owned = _core.count_range(files[0], start, end, specials, num_threads, chunk_size, callback, pattern=regex)
    finally:
        if bar is not None:
            bar.close()
    return PretokenCounts(core)


def count_pretokens_from_iterator(
    iterable: Iterable[str],
    special_tokens: Iterable[str] = (),
    pattern: str = "gpt2",
    *,
    num_threads: int | None = None,
    progress: ProgressArg = False,
    chunk_size: int | None = None,
) -> PretokenCounts:
    """Count the pre-tokens of the strings an iterable yields, as one text (their
    concatenation), as `train_bpe_from_iterator` does; arguments as `count_pretokens`."""
    if isinstance(iterable, (str, bytes)):
        raise TypeError("count_pretokens_from_iterator takes an iterable of str, not a single string (wrap it in a list)")
    specials = _check_specials(special_tokens)
    regex = resolve_pattern(pattern)
    callback, bar = _progress_callback(progress)
    try:
        core = _core.count_iter(iter(iterable), specials, num_threads, chunk_size, callback, pattern=regex)
    finally:
        if bar is not None:
            bar.close()
    return PretokenCounts(core)

"""`train_bpe`: train a byte-level BPE tokenizer (the Rust core does the work).

Semantics (SPEC §1): special tokens get ids 0.., then the 256 single bytes in byte order, then
one id per merge; `vocab_size` counts all three. Text is pre-tokenized with the pattern (GPT-2
by default; `pattern="cl100k"`, `"o200k"` or any regex, see `bpe336.pattern`), special
tokens are hard boundaries that never enter the counts, each round merges the most
frequent adjacent pair and ties go to the lexicographically greatest `(bytes_a, bytes_b)`.
Training stops early when no pair is left.

Training from kept counts (`bpe336.counts`: `train_bpe(count_pretokens(...), ...)`, or counts
loaded from a file or merged from shards) skips the text and gives the same result.

Input is streamed in chunks and counted in parallel, so memory is bounded by the number of
distinct pre-tokens, not the input size. NOTE: a custom regex gives no safe place to cut text
except where a special token starts, so with one the longest stretch of text between two
special tokens is held in memory (and counted by one thread). Several files are independent texts (no pre-token
spans two files); the strings of an iterator are one text, as if concatenated into one file.
An input with no text outside special tokens (an empty corpus) raises ValueError.

    vocab, merges = train_bpe("corpus.txt", vocab_size=10_000, special_tokens=["<|endoftext|>"])
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core
from .pattern import resolve_pattern

if TYPE_CHECKING:
    from .counts import PretokenCounts


class _DefaultPattern(str):
    """The default `pattern` of `train_bpe`: equal to "gpt2" (what text is trained with), and
    told apart from a "gpt2" given by the caller, since counts are trained with their own."""

    __slots__ = ()


DEFAULT_PATTERN = _DefaultPattern("gpt2")

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
ProgressArg = bool | Callable[[str, int, int], Any]

__all__ = ["train_bpe", "train_bpe_from_iterator", "train_bpe_with_stats", "TrainStats"]

TrainStats = dict[str, int]


def _check_specials(special_tokens: Iterable[str]) -> list[str]:
    if isinstance(special_tokens, (str, bytes)):
        raise TypeError("special_tokens must be a sequence of str, not a single string")
    specials = list(special_tokens)
    seen: set[str] = set()
    for i, tok in enumerate(specials):
        if not isinstance(tok, str):
            raise TypeError(f"special token {i} must be str, got {type(tok).__name__}")
        if not tok:
            raise ValueError(f"special token {i} is empty")
        if tok in seen:
            raise ValueError(f"special token {tok!r} is given twice")
        seen.add(tok)
    return specials


MAX_VOCAB = 0xFFFF_FFFF  # token ids are 32-bit


def check_vocab_size(vocab_size: int, n_specials: int) -> int:
    """`vocab_size` if training can reach it with `n_specials` special tokens: the 256 byte
    tokens and the specials at least, 32-bit ids at most. Raises TypeError / ValueError."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be int, got {type(vocab_size).__name__}")
    minimum = 256 + n_specials
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: it must be at least 256 + {n_specials} special tokens = {minimum}")
    if vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} is too large: token ids are 32-bit (at most {MAX_VOCAB:,})")
    return vocab_size


def _check_path(p: str | os.PathLike) -> Path:
    if not isinstance(p, (str, os.PathLike)):
        raise TypeError(f"input paths must be str or os.PathLike, got {type(p).__name__}")
    path = Path(p)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory, expected a text file", str(path))
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    return path


class _Bar:
    """A progress report per phase ("count" in bytes, "merge" in merges), fed by the core's
    callback: a bar on a terminal, a few plain lines in a log (see `progress.progress_bar`)."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        from .progress import progress_bar

        bar = self.bars.get(phase)
        if bar is None:
            self.close()  # the previous phase is over
            if phase == "count":
                bar = progress_bar(total or None, "counting pre-tokens", unit="B")
            else:
                bar = progress_bar(total, "merging", unit=" merges")
            self.bars[phase] = bar
        bar.update(done - bar.n)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()


def _progress_callback(progress: ProgressArg) -> tuple[Callable[[str, int, int], Any] | None, _Bar | None]:
    if progress is True:
        bar = _Bar()
        return bar, bar
    if progress is False or progress is None:
        return None, None
    if callable(progress):
        return progress, None
    raise TypeError("progress must be a bool or a callable (phase: str, done: int, total: int)")


def _to_python(raw: tuple[list[bytes], list[tuple[bytes, bytes]], dict]) -> tuple[Vocab, Merges, TrainStats]:
    tokens, merges, stats = raw
    return dict(enumerate(tokens)), merges, stats


def _counts_specials(counts: PretokenCounts, special_tokens: Iterable[str] | None) -> list[str]:
    """The special tokens to train counts with: theirs; a list given must be the same."""
    if special_tokens is None:
        return counts.special_tokens
    specials = _check_specials(special_tokens)
    if specials != counts.special_tokens:
        raise ValueError(
            f"the counts were made with the special tokens {counts.special_tokens!r}, not {specials!r}: "
            "training from counts uses theirs (pass the same list, or none)"
        )
    return specials


def _train_counts(
    counts: PretokenCounts,
    vocab_size: int,
    special_tokens: Iterable[str] | None,
    num_threads: int | None,
    progress: ProgressArg,
    pattern: str | None,
) -> tuple[Vocab, Merges, TrainStats]:
    from .pattern import pattern_name, same_pattern

    specials = _counts_specials(counts, special_tokens)
    if pattern is not None and not same_pattern(pattern, counts.pattern):
        shown = [name if name != "custom" else repr(p) for p in (counts.pattern, pattern) for name in [pattern_name(p)]]
        raise ValueError(f"the counts were made with the pattern {shown[0]}, not {shown[1]}: training from counts uses theirs")
    vocab_size = check_vocab_size(vocab_size, len(specials))
    callback, bar = _progress_callback(progress)
    try:
        raw = counts._core.train(vocab_size, specials, num_threads, callback)
    finally:
        if bar is not None:
            bar.close()
    return _to_python(raw)


def train_bpe_with_stats(
    input_path: str | os.PathLike | Sequence[str | os.PathLike] | PretokenCounts,
    vocab_size: int,
    special_tokens: Iterable[str] | None = None,
    *,
    num_threads: int | None = None,
    progress: ProgressArg = False,
    chunk_size: int | None = None,
    pattern: str = DEFAULT_PATTERN,
) -> tuple[Vocab, Merges, TrainStats]:
    """`train_bpe`, also returning statistics: `distinct_pretokens`, `total_pretokens`,
    `input_bytes`."""
    from .counts import PretokenCounts

    if isinstance(input_path, PretokenCounts):
        given = None if pattern is DEFAULT_PATTERN else resolve_pattern(pattern)
        return _train_counts(input_path, vocab_size, special_tokens, num_threads, progress, given)
    paths_in = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
    if not paths_in:
        raise ValueError("no input files given")
    paths = [str(_check_path(p)) for p in paths_in]
    specials = _check_specials(() if special_tokens is None else special_tokens)
    vocab_size = check_vocab_size(vocab_size, len(specials))
    regex = resolve_pattern(pattern)
    callback, bar = _progress_callback(progress)
    try:
        raw = _core.train_bpe_files(paths, vocab_size, specials, num_threads, chunk_size, callback, pattern=regex)
    finally:
        if bar is not None:
            bar.close()
    return _to_python(raw)


def train_bpe(
    input_path: str | os.PathLike | Sequence[str | os.PathLike] | PretokenCounts,
    vocab_size: int,
    special_tokens: Iterable[str] | None = None,
    *,
    num_threads: int | None = None,
    progress: ProgressArg = False,
    chunk_size: int | None = None,
    pattern: str = DEFAULT_PATTERN,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on one or more UTF-8 text files, or on kept counts.

    Args:
        input_path: a path, or a list of paths (each file is an independent text); or
            `PretokenCounts` (`bpe336.count_pretokens`, `PretokenCounts.load`), trained from
            without reading any text: the same merges as training on the text counted.
        vocab_size: final vocabulary size, counting special tokens, the 256 bytes and merges.
        special_tokens: strings that split the text and get ids 0, 1, ... in this order (default
            none). With counts, the counts' own by default; another list is a ValueError.
        num_threads: worker threads (default: RAYON_NUM_THREADS, else the number of cores); at
            most `bpe336._core.max_threads()` (8 per core, at least 64, at most 1024).
        progress: True for tqdm bars, or a callable `(phase, done, total)` with phase
            "count" (bytes) or "merge" (merges); an exception it raises stops training and is
            raised as itself.
        chunk_size: streaming chunk size in bytes (results never depend on it; for tests).
        pattern: the pre-tokenization pattern: "gpt2" (default), "cl100k", "o200k", or a regex
            (run with tiktoken's semantics: text it does not match is ignored). Build the
            `Tokenizer` with the same pattern. With counts, the counts' own by default; another
            is a ValueError.

    Returns:
        `(vocab, merges)`: `vocab` maps id -> token bytes, `merges` lists `(bytes, bytes)` pairs
        in creation order.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: for unusable input paths.
        UnicodeDecodeError: input that is not UTF-8 (the message gives path and byte offset).
        ValueError: vocab_size below 256 + specials, empty or repeated special tokens,
            num_threads out of range, an unknown pattern name, an invalid regex or one that
            can match the empty string, an input with no text to train on, or counts given
            other special tokens or another pattern than their own.
        KeyboardInterrupt: on Ctrl-C, within a fraction of a second (also while waiting for a
            FIFO's writer).
        RuntimeError: worker threads that cannot start, or an internal error.
        TypeError: arguments of the wrong type.
    """
    vocab, merges, _ = train_bpe_with_stats(
        input_path, vocab_size, special_tokens, num_threads=num_threads, progress=progress, chunk_size=chunk_size, pattern=pattern
    )
    return vocab, merges


def train_bpe_from_iterator(
    iterable: Iterable[str],
    vocab_size: int,
    special_tokens: Iterable[str] = (),
    *,
    num_threads: int | None = None,
    progress: ProgressArg = False,
    chunk_size: int | None = None,
    pattern: str = "gpt2",
) -> tuple[Vocab, Merges]:
    """Train on the strings of an iterable, treated as one text (their concatenation), so
    `train_bpe_from_iterator(open(path))` equals `train_bpe(path)`. Strings are pulled in
    batches; memory stays bounded by the distinct pre-tokens. Arguments and result as
    `train_bpe`; a non-str item raises TypeError."""
    if isinstance(iterable, (str, bytes)):
        raise TypeError("train_bpe_from_iterator takes an iterable of str, not a single string (wrap it in a list)")
    specials = _check_specials(special_tokens)
    vocab_size = check_vocab_size(vocab_size, len(specials))
    regex = resolve_pattern(pattern)
    callback, bar = _progress_callback(progress)
    try:
        raw = _core.train_bpe_iter(iter(iterable), vocab_size, specials, num_threads, chunk_size, callback, pattern=regex)
    finally:
        if bar is not None:
            bar.close()
    vocab, merges, _ = _to_python(raw)
    return vocab, merges

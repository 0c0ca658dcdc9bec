"""`Tokenizer`: byte-level BPE encoding and decoding (Rust core), GPT-2 and tiktoken compatible.

The Rust `Encoder` does the work (pre-tokenization, merging by rank, parallel batches and files,
all with the GIL released); this class validates input, owns the special-token policy, picks
the file format by path (`formats.py` reads and writes them, `atomic.py` makes each write one
unit), and shapes results for Python (lists, numpy arrays, `.npy` files, stats dicts).

Special tokens given to the constructor are added to the vocabulary when missing (with the next
free ids) and are matched in text greedily, longest first; text that merely looks like a special
token but was not declared is ordinary text. Ordinary text is pre-tokenized with the tokenizer's
pattern (GPT-2 by default, `pattern="cl100k"`, `"o200k"` or a regex; see `bpe336.pattern`),
which every format saves and `load` restores; with the same pattern and ranks the ids equal
`tiktoken.Encoding(pat_str=..., mergeable_ranks=...)`.

    tok = Tokenizer.from_files("vocab.json", "merges.txt", special_tokens=["<|endoftext|>"])
    ids = tok.encode("Hello world<|endoftext|>")
    assert tok.decode(ids) == "Hello world<|endoftext|>"
    tok.encode_file("train.txt", "train.npy")  # parallel, uint16 when the vocabulary fits
"""

from __future__ import annotations

import os
import struct
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import _core
from .atomic import atomic_directory, atomic_output, check_not_same_file, check_output_file, missing_directory_hint
from .formats import (
    TOKENIZER_FILES,
    TokenizerData,
    TokenizerFileError,
    read_gpt2_pair,
    read_json_tokenizer,
    read_tiktoken,
    read_tokenizer_directory,
    write_hf_tokenizer,
    write_tiktoken,
    write_tokenizer_files,
)
from .pattern import GPT2_PATTERN, resolve_pattern, same_pattern
from .progress import progress_bar

# encode_iterable encodes its buffer once it holds this many characters; small enough that the
# id list of one step (a few thousand ints) keeps memory flat, large enough to amortise the call.
STREAM_CHUNK_CHARS = 1 << 14

# Bytes reserved for the .npy header, so Rust can write the tokens before their count is known.
NPY_HEADER_BYTES = 128


def _check_text(text: object, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, not {type(text).__name__}")
    return text


def _scrub_surrogates(text: str) -> str:
    """Surrogates cannot be UTF-8. Do exactly what tiktoken does: a round trip through UTF-16
    with surrogatepass, then replacement, so a pair written as two code points becomes its
    character and each lone surrogate one U+FFFD.

    _scrub_surrogates("x\ud83d\ude00y") -> "x😀y"; _scrub_surrogates("\ud800") -> "\ufffd"."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _is_high_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


class Tokenizer:
    """A byte-level BPE tokenizer: pre-tokenization by a pattern, merges applied by rank.

    Args:
        vocab: {id: token bytes}; every single byte must be a token.
        merges: (left bytes, right bytes) in rank order (creation order for a trained tokenizer);
            both parts and their concatenation must be tokens.
        special_tokens: strings matched whole in text (longest first) and given their own ids:
            a list (each takes the lowest id whose token is its UTF-8 text, or the next free id,
            added to the vocabulary), or a mapping {text: id} for fixed ids (an id missing from
            the vocabulary is added with the text; None means "as for a list").
        pattern: the pre-tokenization pattern: "gpt2" (default), "cl100k", "o200k" or a regex
            (tiktoken's semantics: text it does not match is dropped). Use the one the
            tokenizer was trained with.
    """

    def __init__(
        self,
        vocab: Mapping[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Iterable[str] | Mapping[str, int | None] | None = None,
        pattern: str = "gpt2",
    ):
        regex = resolve_pattern(pattern)
        if not isinstance(vocab, Mapping):
            raise TypeError(f"vocab must be a mapping {{id: bytes}}, not {type(vocab).__name__}")
        clean: dict[int, bytes] = {}
        for idx, token in vocab.items():
            if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool) or idx < 0:
                raise ValueError(f"vocab ids must be non-negative integers, got {idx!r}")
            if not isinstance(token, (bytes, bytearray, memoryview)):
                raise TypeError(f"vocab[{idx}] must be bytes, not {type(token).__name__}")
            clean[int(idx)] = bytes(token)
        pairs: list[tuple[bytes, bytes]] = []
        for i, pair in enumerate(merges):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, (bytes, bytearray)) for t in pair)):
                raise TypeError(f"merge {i} must be a pair of bytes, got {pair!r}")
            pairs.append((bytes(pair[0]), bytes(pair[1])))
        wanted: dict[str, int | None] = {}
        items = special_tokens.items() if isinstance(special_tokens, Mapping) else ((s, None) for s in special_tokens or ())
        for s, idx in items:
            if not isinstance(s, str) or not s:
                raise TypeError(f"special tokens must be non-empty str, got {s!r}")
            if idx is not None and (not isinstance(idx, (int, np.integer)) or isinstance(idx, bool) or idx < 0):
                raise ValueError(f"special token {s!r}: id must be a non-negative integer, got {idx!r}")
            wanted.setdefault(s, None if idx is None else int(idx))

        # Fixed ids first (they may lie past the vocabulary), then the rest by lowest id or next free.
        special_ids: dict[str, int] = {}
        for s, idx in wanted.items():
            if idx is None:
                continue
            b = s.encode("utf-8")
            if clean.setdefault(idx, b) != b:
                raise ValueError(f"special token {s!r} has id {idx}, which the vocabulary gives to {clean[idx]!r}")
            special_ids[s] = idx
        token_to_id: dict[bytes, int] = {}
        for idx in sorted(clean):
            token_to_id.setdefault(clean[idx], idx)
        next_id = max(clean, default=-1) + 1
        for s, idx in wanted.items():
            if idx is not None:
                continue
            b = s.encode("utf-8")
            if b not in token_to_id:
                clean[next_id] = b
                token_to_id[b] = next_id
                next_id += 1
            special_ids[s] = token_to_id[b]
        special_ids = {s: special_ids[s] for s in wanted}

        self._vocab = clean
        self._merges = pairs
        self._special_ids = special_ids
        self._special_tokens = list(special_ids)
        self._token_to_id = token_to_id
        self._pattern = regex
        self._core = _core.Encoder(list(clean.items()), pairs, list(special_ids.items()), regex)

    # -----------------------------------------------------------------------------------------
    # Construction and files
    # -----------------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_path: str | os.PathLike,
        merges_path: str | os.PathLike,
        special_tokens: Iterable[str] | None = None,
        *,
        pattern: str = "gpt2",
    ) -> Tokenizer:
        """Load a GPT-2 `vocab.json` + `merges.txt` pair (which records no pattern: `pattern`
        gives it). `special_tokens` are matched whole; keys of vocab.json that are not
        byte-level strings are special tokens stored as text (see `formats.read_gpt2_pair`)."""
        listed = list(special_tokens or ())
        regex = resolve_pattern(pattern)
        data = read_gpt2_pair(vocab_path, merges_path, listed)
        specials: dict[str, int | None] = {s: data.special_tokens.get(s) for s in listed}
        specials.update(data.special_tokens)
        data.special_tokens = specials  # type: ignore[assignment]
        data.pattern = regex
        return cls._from_data(data, vocab_path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, special_tokens: Iterable[str] | Mapping[str, int] | None = None, *, pattern: str | None = None
    ) -> Tokenizer:
        """Load a tokenizer from any format bpe336 reads, chosen by the path:

        - a directory: what `save(directory)` writes, a folder written by transformers'
          `save_pretrained` (byte-level BPE only), or a GPT-2 pair (see
          `formats.read_tokenizer_directory` for the order);
        - `NAME.tiktoken`: tiktoken ranks, with specials and pattern from `NAME.tiktoken.json`
          or from `special_tokens` ({text: id}) and `pattern`;
        - any other file: Hugging Face's tokenizer.json (or bpe336 0.1's single-file format).

        `special_tokens` adds more special tokens (a list or {text: id}). The pre-tokenization
        pattern is the one the files record; `pattern` (a name or a regex) is for files that
        record none (a bare GPT-2 pair, a .tiktoken without its sidecar; GPT-2 when neither
        says), and a `pattern` that contradicts the recorded one raises ValueError. Malformed
        files raise `formats.TokenizerFileError` (a ValueError) naming the path and line."""
        if pattern is not None:
            pattern = resolve_pattern(pattern)
        path = Path(path)
        if path.is_dir():
            data = read_tokenizer_directory(path, list(special_tokens or ()))
        elif not path.exists():
            raise FileNotFoundError(2, f"{path}: no such file or directory{missing_directory_hint(path)}")
        elif path.suffix == ".tiktoken":
            data = read_tiktoken(path, special_tokens, pattern)
            special_tokens = None
        else:
            data = read_json_tokenizer(path)
        if pattern is not None and data.pattern is not None and not _same_recorded_pattern(pattern, data.pattern):
            raise ValueError(f"{path}: records the pattern {data.pattern!r}, not the pattern {pattern!r} given")
        data.pattern = data.pattern or pattern
        if special_tokens is not None:
            extra = special_tokens.items() if isinstance(special_tokens, Mapping) else ((s, None) for s in special_tokens)
            specials: dict[str, int | None] = dict(data.special_tokens)
            for s, idx in extra:
                specials.setdefault(s, idx)
            data.special_tokens = specials  # type: ignore[assignment]
        return cls._from_data(data, path)

    @classmethod
    def _from_data(cls, data: TokenizerData, where: str | os.PathLike) -> Tokenizer:
        """Build from what a reader returned (no pattern recorded: GPT-2's); errors name the
        file they came from."""
        try:
            return cls(data.vocab, data.merges, data.special_tokens, pattern=data.pattern or GPT2_PATTERN)
        except (ValueError, TypeError) as e:
            raise TokenizerFileError(data.source or where, str(e)) from None

    def _data(self) -> TokenizerData:
        return TokenizerData(dict(self._vocab), list(self._merges), dict(self._special_ids), self._pattern)

    def save(self, path: str | os.PathLike) -> None:
        """Save so that `Tokenizer.load(path)` gives back an identical tokenizer (same vocab,
        merges, special tokens with their ids, and pattern). The format follows the path:

        - `NAME.tiktoken`: tiktoken ranks plus the sidecar `NAME.tiktoken.json` (specials,
          pattern); ValueError if tiktoken would encode differently (see
          `formats.check_rank_consistent`; never for a tokenizer from `train_bpe`).
        - any other `NAME.json` (typically `tokenizer.json`): Hugging Face's tokenizer.json;
          ValueError when a special token is spelled like another token (see `formats.vocab_keys`).
        - anything else: a directory, replaced as one unit (`atomic.atomic_directory`), holding
          `vocab.json`, `merges.txt`, `special_tokens.json`, and for transformers'
          `AutoTokenizer` `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`
          (left out, with a warning, when tokenizer.json cannot hold the tokenizer). An existing
          directory holding other files is refused rather than replaced.

        Single files are written atomically too."""
        path = Path(path)
        if path.suffix == ".tiktoken" and not path.is_dir():
            write_tiktoken(path, self._data(), self._core.encode_ordinary)
        elif path.suffix == ".json" and not path.is_dir():
            write_hf_tokenizer(path, self._data())
        else:
            self._save_directory(path, hf=True)

    def save_gpt2(self, directory: str | os.PathLike) -> None:
        """Write the directory with only the GPT-2 pair (`vocab.json`, `merges.txt`) and its
        sidecar `special_tokens.json`, as one unit."""
        self._save_directory(Path(directory), hf=False)

    def write_files(self, directory: str | os.PathLike, *, hf: bool = True) -> list[str]:
        """Write the files of a tokenizer directory into `directory`, an existing folder that
        the caller publishes as one unit, e.g. a model export built inside
        `atomic.atomic_directory(out, owned=...)` (owned should include
        `formats.TOKENIZER_FILES`). Not atomic by itself; `save(directory)` is this plus the swap.
        Returns the names written (a last entry starting "skipped:" says why the Hugging Face
        files were left out)."""
        return write_tokenizer_files(directory, self._data(), hf=hf)

    def _save_directory(self, directory: Path, hf: bool) -> None:
        with atomic_directory(directory, TOKENIZER_FILES) as tmp:
            names = self.write_files(tmp, hf=hf)
        if names[-1].startswith("skipped:"):
            warnings.warn(f"{directory}: {names[-1]}", stacklevel=3)

    # -----------------------------------------------------------------------------------------
    # Vocabulary
    # -----------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (the size an embedding table needs)."""
        return self._core.vocab_size

    @property
    def vocab(self) -> dict[int, bytes]:
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        return list(self._merges)

    @property
    def special_tokens(self) -> list[str]:
        return list(self._special_tokens)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """{special token: id}, in the tokenizer's order."""
        return dict(self._special_ids)

    @property
    def pattern(self) -> str:
        """The pre-tokenization regex (for a named pattern, its regex: `GPT2_PATTERN`, ...)."""
        return self._pattern

    def token_to_id(self, token: bytes | str) -> int:
        """The id of a token given as bytes or as text (UTF-8; a special token's own id); KeyError
        when absent."""
        if isinstance(token, str) and token in self._special_ids:
            return self._special_ids[token]
        key = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        try:
            return self._token_to_id[key]
        except KeyError:
            raise KeyError(f"{token!r} is not a token of this vocabulary") from None

    def id_to_token(self, idx: int) -> bytes:
        """The bytes of token `idx`; KeyError when the vocabulary has no such id."""
        try:
            return self._vocab[idx]
        except (KeyError, TypeError):
            raise KeyError(f"token id {idx!r} is not in the vocabulary") from None

    def __len__(self) -> int:
        return len(self._vocab)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, special_tokens={self._special_tokens!r}, "
            f"pattern={self._core.pattern_name!r})"
        )

    # -----------------------------------------------------------------------------------------
    # Encoding
    # -----------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; declared special tokens become their ids."""
        _check_text(text)
        try:
            return self._core.encode(text)
        except UnicodeEncodeError:
            return self._core.encode(_scrub_surrogates(text))

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text` with special tokens treated as ordinary text."""
        _check_text(text)
        try:
            return self._core.encode_ordinary(text)
        except UnicodeEncodeError:
            return self._core.encode_ordinary(_scrub_surrogates(text))

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Yield the ids of the concatenation of `iterable` (e.g. an open text file), lazily and
        in constant memory: exactly `encode("".join(iterable))`.

        The buffer is encoded up to its last safe cut (a point where splitting cannot change the
        ids, see `Encoder::is_safe_cut`); the unfinished tail, which may hold half a pre-token or
        half a special token, is carried into the next step. Runs on the calling thread.
        NOTE: with a custom regex the only safe cuts are where special tokens start, so the text
        between two special tokens is held whole."""
        if isinstance(iterable, str):
            iterable = (iterable,)
        core = self._core
        pending: list[str] = []
        size = 0
        threshold = STREAM_CHUNK_CHARS
        for piece in iterable:
            _check_text(piece, "encode_iterable items")
            pending.append(piece)
            size += len(piece)
            if size < threshold:
                continue
            buf = "".join(pending)
            # A high surrogate at the end may pair with a low one in the next piece (tiktoken
            # sees the joined text): keep it for the next step.
            held = ""
            if _is_high_surrogate(buf[-1]):
                buf, held = buf[:-1], buf[-1]
            try:
                ids, used = core.encode_prefix(buf)
            except UnicodeEncodeError:
                buf = _scrub_surrogates(buf)
                ids, used = core.encode_prefix(buf)
            yield from ids
            rest = buf[used:] + held
            pending = [rest] if rest else []
            size = len(rest)
            # Text without a safe cut only grows; waiting for it to double keeps the work linear.
            threshold = max(STREAM_CHUNK_CHARS, 2 * size)
        if pending:
            yield from self.encode("".join(pending))

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Ids of each text, encoded in parallel (`num_threads` None: RAYON_NUM_THREADS, else all
        cores; at most `bpe336._core.max_threads()`)."""
        texts = list(texts)
        for t in texts:
            _check_text(t, "encode_batch items")
        try:
            return self._core.encode_batch(texts, num_threads)
        except UnicodeEncodeError:
            return self._core.encode_batch([_scrub_surrogates(t) for t in texts], num_threads)

    def resolve_dtype(self, dtype: object = None) -> np.dtype:
        """The token array dtype: uint16 when every id fits, else uint32; an explicit dtype must
        be uint16 or uint32 and able to hold every id (ValueError otherwise)."""
        if dtype is None:
            return np.dtype(np.uint16) if self.vocab_size <= 1 << 16 else np.dtype(np.uint32)
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.uint16), np.dtype(np.uint32)):
            raise ValueError(f"token arrays are uint16 or uint32, not {dt}")
        if self.vocab_size - 1 > np.iinfo(dt).max:
            raise ValueError(f"dtype {dt} cannot hold token ids up to {self.vocab_size - 1}; use uint32")
        return dt

    def encode_to_numpy(self, text: str, *, dtype: object = None, num_threads: int | None = None) -> np.ndarray:
        """Ids of `text` as a numpy array (uint16 when the vocabulary fits), encoded in parallel
        chunks for long texts. The fast path: no Python int objects are made."""
        _check_text(text)
        dt = self.resolve_dtype(dtype)
        try:
            buf = self._core.encode_to_bytes(text, dt.itemsize, num_threads)
        except UnicodeEncodeError:
            buf = self._core.encode_to_bytes(_scrub_surrogates(text), dt.itemsize, num_threads)
        return np.frombuffer(buf, dtype=dt.newbyteorder("<"))

    def encode_file(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        progress: bool = True,
        dtype: object = None,
        byte_range: tuple[int, int] | None = None,
    ) -> dict:
        """Encode a UTF-8 text file into a token array file, in parallel.

        `output_path` ending in `.npy` gets a numpy header (open it with
        `np.load(path, mmap_mode="r")`); any other suffix (`.bin`) gets raw little-endian ids
        (`np.memmap(path, dtype=...)`). The output appears atomically, only when complete.

        `byte_range=(start, end)` encodes only the part of a regular file that a shard given
        these bytes owns (each boundary moved to the first safe cut at or after it, as
        `bpe336.count_pretokens` moves them, with this tokenizer's pattern and special tokens):
        for any split of a file into ranges, the shards' arrays concatenated are the array of
        the whole file. A shard that owns nothing gets an empty array.

        Returns:
            stats: input, output, dtype, bytes, tokens, seconds, mb_per_s, bytes_per_token,
            threads; with `byte_range`, also range: the (start, end) bytes owned, or None.
        """
        src = Path(input_path)
        if src.is_dir():
            raise IsADirectoryError(21, f"{src}: is a directory, expected a text file")
        if not src.exists():
            raise FileNotFoundError(2, f"{src}: no such file")
        dt = self.resolve_dtype(dtype)
        dst = Path(output_path)
        final = check_output_file(dst)  # before any work: a device, a directory, a dangling link
        check_not_same_file(src, dst)
        npy = dst.suffix == ".npy"
        header_len = NPY_HEADER_BYTES if npy else 0
        total = src.stat().st_size
        if byte_range is not None:
            from .shards import check_byte_range

            start, end = check_byte_range(byte_range)
            total = max(0, min(end, total) - min(start, total))
        meter = _core.FileProgress()
        outcome: dict = {}
        began = time.perf_counter()
        worker: threading.Thread | None = None
        with atomic_output(dst) as tmp:

            def work() -> None:
                try:
                    if byte_range is None:
                        outcome["stats"] = self._core.encode_file(str(src), str(tmp), header_len, dt.itemsize, num_threads, meter)
                    else:
                        *outcome["stats"], outcome["range"] = self._core.encode_file_range(
                            str(src), start, end, str(tmp), header_len, dt.itemsize, num_threads, meter
                        )
                except BaseException as e:  # handed to the calling thread
                    outcome["error"] = e

            try:
                if progress:
                    worker = threading.Thread(target=work, name="bpe336-encode-file", daemon=True)
                    worker.start()
                    with progress_bar(total, f"encode {src.name}", unit="B") as bar:
                        while worker.is_alive():
                            worker.join(0.2)
                            bar.update(meter.bytes_done - bar.n)
                        bar.update(meter.bytes_done - bar.n)
                else:
                    work()
            except BaseException:
                # Ctrl-C reaches this (main) thread, not the worker: stop the core's call and wait
                # for it, so that it cannot write `tmp` after atomic_output removes it.
                meter.cancel()
                if worker is not None:
                    worker.join()
                raise
            if "error" in outcome:
                raise outcome["error"]
            nbytes, ntokens, _chunks = outcome["stats"]
            if npy:
                with open(tmp, "r+b") as f:
                    f.write(_npy_header(dt.newbyteorder("<"), ntokens))
        seconds = time.perf_counter() - began
        stats = {
            "input": str(src),
            "output": str(final),
            "dtype": str(dt),
            "bytes": nbytes,
            "tokens": ntokens,
            "seconds": seconds,
            "mb_per_s": nbytes / 1e6 / seconds if seconds > 0 else float("inf"),
            "bytes_per_token": nbytes / ntokens if ntokens else float("nan"),
            "threads": num_threads or _core.default_threads(),
        }
        if byte_range is not None:
            stats["range"] = outcome["range"]
        return stats

    # -----------------------------------------------------------------------------------------
    # Decoding
    # -----------------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated token bytes of `ids`; KeyError naming the first unknown id."""
        if isinstance(ids, np.ndarray):
            ids = ids.ravel().tolist()
        elif not isinstance(ids, list):
            ids = list(ids)
        try:
            return self._core.decode_bytes(ids)
        except (OverflowError, TypeError):
            for i in ids:
                if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                    raise TypeError(f"token ids must be integers, got {i!r}") from None
                if not 0 <= i <= 0xFFFFFFFF:
                    raise KeyError(f"token id {i} is not in the vocabulary") from None
            raise

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; malformed UTF-8 (e.g. half a character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _same_recorded_pattern(given: str, recorded: str) -> bool:
    """Whether a pattern argument agrees with the one a file records (a recorded regex that does
    not compile is left to the constructor, which names the file)."""
    try:
        return same_pattern(given, recorded)
    except ValueError:
        return given == recorded


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version 1.0 `.npy` header for a 1-D array, padded to exactly NPY_HEADER_BYTES.
    e.g. (<u2, 5) -> b"\\x93NUMPY\\x01\\x00v\\x00{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }   ...\\n"."""
    magic = b"\x93NUMPY\x01\x00"
    body_len = NPY_HEADER_BYTES - len(magic) - 2
    body = f"{{'descr': {dtype.str!r}, 'fortran_order': False, 'shape': ({count},), }}"
    return magic + struct.pack("<H", body_len) + (body.ljust(body_len - 1) + "\n").encode("latin1")

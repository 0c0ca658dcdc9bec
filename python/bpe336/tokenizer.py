"""`Tokenizer`: GPT-2-compatible byte-level BPE encoding and decoding (Rust core).

The Rust `Encoder` does the work (pre-tokenization, merging by rank, parallel batches and files,
all with the GIL released); this class validates input, owns the special-token policy and the
file formats, and shapes results for Python (lists, numpy arrays, `.npy` files, stats dicts).

Special tokens given to the constructor are added to the vocabulary when missing (with the next
free ids) and are matched in text greedily, longest first; text that merely looks like a special
token but was not declared is ordinary text.

    tok = Tokenizer.from_files("vocab.json", "merges.txt", special_tokens=["<|endoftext|>"])
    ids = tok.encode("Hello world<|endoftext|>")
    assert tok.decode(ids) == "Hello world<|endoftext|>"
    tok.encode_file("train.txt", "train.npy")  # parallel, uint16 when the vocabulary fits
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import _core
from .atomic import atomic_path, atomic_write
from .formats import load_gpt2_files, load_tokenizer_json, save_gpt2_files, save_tokenizer_json

# encode_iterable encodes its buffer once it holds this many characters; small enough that the
# id list of one step (a few thousand ints) keeps memory flat, large enough to amortise the call.
STREAM_CHUNK_CHARS = 1 << 14

# Bytes reserved for the .npy header, so Rust can write the tokens before their count is known.
NPY_HEADER_BYTES = 128

SPECIAL_TOKENS_FILE = "special_tokens.json"


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
    """A byte-level BPE tokenizer: GPT-2 pre-tokenization, merges applied by rank.

    Args:
        vocab: {id: token bytes}; every single byte must be a token.
        merges: (left bytes, right bytes) in rank order (creation order for a trained tokenizer);
            both parts and their concatenation must be tokens.
        special_tokens: strings matched whole in text (longest first) and given their own ids;
            added to the vocabulary with the next free ids when missing.
    """

    def __init__(self, vocab: Mapping[int, bytes], merges: Sequence[tuple[bytes, bytes]], special_tokens: Iterable[str] | None = None):
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
        specials: list[str] = []
        seen: set[str] = set()
        for s in special_tokens or ():
            if not isinstance(s, str) or not s:
                raise TypeError(f"special tokens must be non-empty str, got {s!r}")
            if s not in seen:
                seen.add(s)
                specials.append(s)

        token_to_id: dict[bytes, int] = {}
        for idx in sorted(clean):
            token_to_id.setdefault(clean[idx], idx)
        next_id = max(clean, default=-1) + 1
        special_ids = []
        for s in specials:
            b = s.encode("utf-8")
            if b not in token_to_id:
                clean[next_id] = b
                token_to_id[b] = next_id
                next_id += 1
            special_ids.append((s, token_to_id[b]))

        self._vocab = clean
        self._merges = pairs
        self._special_tokens = specials
        self._token_to_id = token_to_id
        self._core = _core.Encoder(list(clean.items()), pairs, special_ids)

    # -----------------------------------------------------------------------------------------
    # Construction and files
    # -----------------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike, special_tokens: Iterable[str] | None = None
    ) -> Tokenizer:
        """Load a GPT-2 `vocab.json` + `merges.txt` pair."""
        specials = list(special_tokens or ())
        vocab, merges = load_gpt2_files(vocab_path, merges_path, specials)
        return cls(vocab, merges, specials)

    @classmethod
    def load(cls, path: str | os.PathLike, special_tokens: Iterable[str] | None = None) -> Tokenizer:
        """Load what `save` wrote: a single `.json` file, or a directory with `vocab.json` and
        `merges.txt` (plus `special_tokens.json` when present; otherwise tokens that no merge
        produces, beyond the single bytes, are taken as the special tokens, as in GPT-2's
        `<|endoftext|>`). `special_tokens` adds more."""
        path = Path(path)
        extra = list(special_tokens or ())
        if path.is_dir():
            vocab_path, merges_path = path / "vocab.json", path / "merges.txt"
            specials_path = path / SPECIAL_TOKENS_FILE
            specials: list[str] | None = None
            if specials_path.is_file():
                specials = json.loads(specials_path.read_text(encoding="utf-8"))
                if not isinstance(specials, list) or not all(isinstance(s, str) for s in specials):
                    raise ValueError(f"{specials_path}: expected a JSON list of strings")
            vocab, merges = load_gpt2_files(vocab_path, merges_path, (specials or []) + extra)
            if specials is None:
                specials = _unreachable_tokens(vocab, merges)
            return cls(vocab, merges, specials + extra)
        if not path.exists():
            raise FileNotFoundError(2, f"{path}: no such file or directory")
        vocab, merges, specials, pattern = load_tokenizer_json(path)
        if pattern is not None and pattern != _core.GPT2_PATTERN:
            raise ValueError(f"{path}: pre-tokenization pattern {pattern!r} is not supported (only the GPT-2 pattern)")
        return cls(vocab, merges, specials + extra)

    def save(self, path: str | os.PathLike) -> None:
        """Save atomically: to a single self-describing file when `path` ends in `.json`, else
        into the directory `path` (created if needed) as `vocab.json`, `merges.txt` and
        `special_tokens.json`. `Tokenizer.load(path)` gives back an identical tokenizer."""
        path = Path(path)
        if path.suffix == ".json" and not path.is_dir():
            save_tokenizer_json(path, self._vocab, self._merges, self._special_tokens, _core.GPT2_PATTERN)
        else:
            self.save_gpt2(path)

    def save_gpt2(self, directory: str | os.PathLike) -> None:
        """Write the GPT-2 pair (`vocab.json`, `merges.txt`) plus `special_tokens.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_gpt2_files(self._vocab, self._merges, directory / "vocab.json", directory / "merges.txt", self._special_tokens)
        with atomic_write(directory / SPECIAL_TOKENS_FILE, "w") as f:
            json.dump(self._special_tokens, f, ensure_ascii=False)
            f.write("\n")

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

    def token_to_id(self, token: bytes | str) -> int:
        """The id of a token given as bytes or as text (UTF-8); KeyError when absent."""
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
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, special_tokens={self._special_tokens!r})"

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
        half a special token, is carried into the next step. Runs on the calling thread."""
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
    ) -> dict:
        """Encode a UTF-8 text file into a token array file, in parallel.

        `output_path` ending in `.npy` gets a numpy header (open it with
        `np.load(path, mmap_mode="r")`); any other suffix (`.bin`) gets raw little-endian ids
        (`np.memmap(path, dtype=...)`). The output appears atomically, only when complete.

        Returns:
            stats: input, output, dtype, bytes, tokens, seconds, mb_per_s, bytes_per_token,
            threads.
        """
        src = Path(input_path)
        if src.is_dir():
            raise IsADirectoryError(f"{src}: is a directory, expected a text file")
        if not src.exists():
            raise FileNotFoundError(2, f"{src}: no such file")
        dt = self.resolve_dtype(dtype)
        dst = Path(output_path)
        npy = dst.suffix == ".npy"
        header_len = NPY_HEADER_BYTES if npy else 0
        total = src.stat().st_size
        tmp, final = atomic_path(dst)
        meter = _core.FileProgress()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["stats"] = self._core.encode_file(str(src), str(tmp), header_len, dt.itemsize, num_threads, meter)
            except BaseException as e:  # handed to the calling thread
                outcome["error"] = e

        start = time.perf_counter()
        worker: threading.Thread | None = None
        try:
            if progress:
                from tqdm.auto import tqdm

                worker = threading.Thread(target=work, name="bpe336-encode-file", daemon=True)
                worker.start()
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"encode {src.name}", dynamic_ncols=True) as bar:
                    while worker.is_alive():
                        worker.join(0.2)
                        bar.update(meter.bytes_done - bar.n)
                    bar.update(meter.bytes_done - bar.n)
            else:
                work()
            if "error" in outcome:
                raise outcome["error"]
            nbytes, ntokens, _chunks = outcome["stats"]
            if npy:
                with open(tmp, "r+b") as f:
                    f.write(_npy_header(dt.newbyteorder("<"), ntokens))
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            # Ctrl-C reaches this (main) thread, not the worker: stop the core's call and wait
            # for it, so that it cannot create or write `tmp` after it is removed.
            meter.cancel()
            if worker is not None:
                worker.join()
            tmp.unlink(missing_ok=True)
            raise
        seconds = time.perf_counter() - start
        return {
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


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version 1.0 `.npy` header for a 1-D array, padded to exactly NPY_HEADER_BYTES.
    e.g. (<u2, 5) -> b"\\x93NUMPY\\x01\\x00v\\x00{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }   ...\\n"."""
    magic = b"\x93NUMPY\x01\x00"
    body_len = NPY_HEADER_BYTES - len(magic) - 2
    body = f"{{'descr': {dtype.str!r}, 'fortran_order': False, 'shape': ({count},), }}"
    return magic + struct.pack("<H", body_len) + (body.ljust(body_len - 1) + "\n").encode("latin1")


def _unreachable_tokens(vocab: Mapping[int, bytes], merges: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """Multi-byte tokens that no merge produces: BPE can never emit them, so in a GPT-2 pair
    they are the special tokens (e.g. `<|endoftext|>`). In id order; must be UTF-8."""
    made = {a + b for a, b in merges}
    out = []
    for idx in sorted(vocab):
        t = vocab[idx]
        if len(t) > 1 and t not in made:
            try:
                out.append(t.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError(f"token {idx} ({t!r}) is produced by no merge and is not UTF-8, so it cannot be a special token") from None
    return out

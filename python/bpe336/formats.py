"""GPT-2 tokenizer file formats: `vocab.json` and `merges.txt`.

GPT-2 stores token bytes as printable strings through a fixed byte-to-unicode table (printable
Latin-1 bytes map to themselves, the rest to U+0100 onwards). Both files are read strictly, with
the line and reason of the first problem, and written atomically.

    save_gpt2_files(vocab, merges, "tok/vocab.json", "tok/merges.txt")
    vocab, merges = load_gpt2_files("tok/vocab.json", "tok/merges.txt")
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from .atomic import atomic_write

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte -> printable character table, e.g. 32 (space) -> 'Ġ', 65 -> 'A'."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def encode_token(token: bytes) -> str:
    """Bytes -> GPT-2 printable string, e.g. b' the' -> 'Ġthe'."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def decode_token(text: str, *, special: bool = False) -> bytes:
    """GPT-2 printable string -> bytes. Raises ValueError for characters outside the table,
    unless `special` (special tokens are stored as their UTF-8 text)."""
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in text)
    except KeyError:
        if special:
            return text.encode("utf-8")
        raise ValueError(f"{text!r} is not a GPT-2 byte-level token string") from None


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    if not path.exists():
        raise FileNotFoundError(2, f"{path}: no such file")
    return path


def _read_json(path: Path, what: str):
    """Parse a UTF-8 JSON file; ValueError with the path, and the line for syntax errors."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed {what}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} is not UTF-8 (byte offset {e.start})") from None


def load_vocab_json(path: str | os.PathLike, special_tokens: tuple[str, ...] | list[str] = ()) -> Vocab:
    """Read a GPT-2 `vocab.json` ({token string: id}) into {id: bytes}.

    Strings that are not GPT-2 byte strings are accepted only when listed in `special_tokens` or
    when they look like `<|...|>` specials; they map to their UTF-8 bytes."""
    path = _check_file(path)
    data = _read_json(path, "vocab.json")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: vocab.json must be a JSON object mapping token strings to ids")
    specials = set(special_tokens)
    vocab: Vocab = {}
    for token, idx in data.items():
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise ValueError(f"{path}: token {token!r} has id {idx!r}; ids must be non-negative integers")
        if idx in vocab:
            raise ValueError(f"{path}: id {idx} is used twice (by {token!r} and another token)")
        if token in specials:
            # Listed specials are stored as their text (save_vocab_json), even where that text
            # also reads as a byte-level string (e.g. "<|é|>").
            vocab[idx] = token.encode("utf-8")
            continue
        is_special = token.startswith("<|") and token.endswith("|>")
        try:
            vocab[idx] = decode_token(token, special=is_special)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return vocab


def load_merges_txt(path: str | os.PathLike) -> Merges:
    """Read a GPT-2 `merges.txt` (one `left right` pair per line; a `#version` header and blank
    lines are skipped) into a list of byte pairs."""
    path = _check_file(path)
    merges: Merges = []
    with open(path, encoding="utf-8", newline="") as f:
        try:
            lines = f.read().split("\n")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: merges.txt is not UTF-8 (byte offset {e.start})") from None
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{lineno}: expected two space-separated tokens, got {line!r}")
        try:
            merges.append((decode_token(parts[0]), decode_token(parts[1])))
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
    return merges


def save_vocab_json(vocab: Vocab, path: str | os.PathLike, special_tokens: tuple[str, ...] | list[str] = ()) -> None:
    """Write {id: bytes} as a GPT-2 `vocab.json`, atomically. Special tokens are written as text."""
    specials = {s.encode("utf-8") for s in special_tokens}
    data = {}
    for idx in sorted(vocab):
        token = vocab[idx]
        data[token.decode("utf-8") if token in specials else encode_token(token)] = idx
    if len(data) != len(vocab):
        raise ValueError("vocabulary has duplicate tokens; vocab.json cannot represent it")
    with atomic_write(path, "w") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


def save_merges_txt(merges: Merges, path: str | os.PathLike) -> None:
    """Write merges as a GPT-2 `merges.txt`, atomically."""
    with atomic_write(path, "w") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{encode_token(a)} {encode_token(b)}\n")


def load_gpt2_files(
    vocab_path: str | os.PathLike, merges_path: str | os.PathLike, special_tokens: tuple[str, ...] | list[str] = ()
) -> tuple[Vocab, Merges]:
    """Read a `vocab.json` + `merges.txt` pair."""
    return load_vocab_json(vocab_path, special_tokens), load_merges_txt(merges_path)


def save_gpt2_files(
    vocab: Vocab,
    merges: Merges,
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: tuple[str, ...] | list[str] = (),
) -> None:
    """Write a `vocab.json` + `merges.txt` pair, each atomically."""
    save_vocab_json(vocab, vocab_path, special_tokens)
    save_merges_txt(merges, merges_path)


# ---------------------------------------------------------------------------------------------
# The single self-describing file
# ---------------------------------------------------------------------------------------------

TOKENIZER_FORMAT = "bpe336-tokenizer"
TOKENIZER_VERSION = 1


def save_tokenizer_json(
    path: str | os.PathLike, vocab: Vocab, merges: Merges, special_tokens: tuple[str, ...] | list[str] = (), pattern: str | None = None
) -> None:
    """Write a tokenizer as one self-describing JSON file, atomically.

    Token bytes are stored as GPT-2 byte-to-unicode strings (a bijection, so the round trip is
    exact); the vocabulary is a list of `[id, token]` and the merges a list of `[left, right]`,
    one per line so the file diffs and greps well:

        {"format": "bpe336-tokenizer", "version": 1, "byte_encoding": "gpt2", "pattern": "...",
         "special_tokens": ["<|endoftext|>"],
         "vocab": [[0, "!"], ...],
         "merges": [["Ġ", "t"], ...]}
    """
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    head = {
        "format": TOKENIZER_FORMAT,
        "version": TOKENIZER_VERSION,
        "byte_encoding": "gpt2",
        "pattern": pattern,
        "special_tokens": list(special_tokens),
    }
    with atomic_write(path, "w") as f:
        f.write("{\n")
        for key, value in head.items():
            f.write(f" {dumps(key)}: {dumps(value)},\n")
        f.write(' "vocab": [\n')
        ids = sorted(vocab)
        for i, idx in enumerate(ids):
            f.write(f"  [{idx}, {dumps(encode_token(vocab[idx]))}]{',' if i + 1 < len(ids) else ''}\n")
        f.write(' ],\n "merges": [\n')
        for i, (a, b) in enumerate(merges):
            f.write(f"  [{dumps(encode_token(a))}, {dumps(encode_token(b))}]{',' if i + 1 < len(merges) else ''}\n")
        f.write(" ]\n}\n")


def load_tokenizer_json(path: str | os.PathLike) -> tuple[Vocab, Merges, list[str], str | None]:
    """Read a file written by `save_tokenizer_json`: (vocab, merges, special_tokens, pattern).

    Raises ValueError naming the path and the problem (and the JSON line for syntax errors)."""
    path = _check_file(path)
    data = _read_json(path, "tokenizer file")
    if not isinstance(data, dict) or data.get("format") != TOKENIZER_FORMAT:
        raise ValueError(
            f'{path}: not a {TOKENIZER_FORMAT} file (no "format": "{TOKENIZER_FORMAT}" key); '
            "a GPT-2 vocab.json goes with its merges.txt through Tokenizer.from_files"
        )
    if data.get("version") != TOKENIZER_VERSION:
        raise ValueError(f"{path}: unsupported {TOKENIZER_FORMAT} version {data.get('version')!r} (this reader knows {TOKENIZER_VERSION})")
    if data.get("byte_encoding") != "gpt2":
        raise ValueError(f"{path}: unsupported byte_encoding {data.get('byte_encoding')!r} (expected 'gpt2')")
    specials = data.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(s, str) for s in specials):
        raise ValueError(f"{path}: special_tokens must be a list of strings")
    pattern = data.get("pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise ValueError(f"{path}: pattern must be a string")
    raw_vocab, raw_merges = data.get("vocab"), data.get("merges")
    if not isinstance(raw_vocab, list) or not isinstance(raw_merges, list):
        raise ValueError(f"{path}: 'vocab' and 'merges' must be lists")
    vocab: Vocab = {}
    for i, entry in enumerate(raw_vocab):
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], int)
            and not isinstance(entry[0], bool)
            and entry[0] >= 0
            and isinstance(entry[1], str)
        ):
            raise ValueError(f"{path}: vocab entry {i} must be [non-negative id, token string], got {entry!r}")
        idx, token = entry
        if idx in vocab:
            raise ValueError(f"{path}: vocab entry {i}: id {idx} is used twice")
        try:
            vocab[idx] = decode_token(token)
        except ValueError as e:
            raise ValueError(f"{path}: vocab entry {i}: {e}") from None
    merges: Merges = []
    for i, entry in enumerate(raw_merges):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(t, str) and t for t in entry)):
            raise ValueError(f"{path}: merge {i} must be [left token, right token], got {entry!r}")
        try:
            merges.append((decode_token(entry[0]), decode_token(entry[1])))
        except ValueError as e:
            raise ValueError(f"{path}: merge {i}: {e}") from None
    return vocab, merges, specials, pattern

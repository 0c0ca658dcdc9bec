"""Tokenizer file formats: every file bpe336 reads or writes, strictly, with the path and line of
the first problem.

- GPT-2 pair: `vocab.json` ({byte-level string: id}) and `merges.txt` (one `left right` pair per
  line), plus our sidecar `special_tokens.json` that names the special tokens with their ids,
  the pre-tokenization pattern, ids whose spelling another id already holds, and checksums of the
  pair. With the sidecar nothing is guessed.
- Hugging Face `tokenizer.json` (a BPE model with byte-level pre-tokenizer and decoder, special
  tokens as `added_tokens`), plus `tokenizer_config.json` and `special_tokens_map.json` in a
  directory so `transformers.AutoTokenizer` loads it; folders written by transformers'
  `save_pretrained` are read too.
- tiktoken `.tiktoken` ranks (`base64 rank` lines), with the special tokens and pattern in the
  sidecar `NAME.tiktoken.json`.
- The retired single-file `bpe336-tokenizer` JSON, read only: tokenizer.json holds everything it
  held (repeated tokens included, via `model.bpe336_duplicates`), except a special token spelled
  like another token, which Hugging Face cannot tell apart; such a tokenizer is saved as a
  directory (GPT-2 pair + sidecar) or a .tiktoken file instead, so a third format would add a
  reader to maintain and nothing a user needs.

GPT-2 stores token bytes as printable strings through a fixed byte-to-unicode table (printable
Latin-1 bytes map to themselves, the rest to U+0100 onwards). Special tokens are stored as their
text. A special whose text is also the byte-level spelling of another token (`'"'` beside the
byte `"`, `'é'` beside the byte 0xE9, `'ĠĠ'` beside two spaces) therefore collides with it; each
writer resolves that explicitly (see `hf_tokenizer_dict` and `write_gpt2_pair`).

    data = read_tokenizer_directory("tok/")       # or read_hf_tokenizer, read_tiktoken, read_gpt2_pair
    write_tokenizer_files("tok_tmp/", data)       # every file of a tokenizer directory
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import errno
import functools
import hashlib
import json
import json.encoder
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .atomic import atomic_write, check_output_file
from .pattern import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN, same_pattern

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
SIDECAR_FILE = "special_tokens.json"
HF_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_MAP_FILE = "special_tokens_map.json"
TIKTOKEN_SIDECAR_SUFFIX = ".json"  # NAME.tiktoken -> NAME.tiktoken.json
TOKENIZER_FILES = frozenset({VOCAB_FILE, MERGES_FILE, SIDECAR_FILE, HF_FILE, HF_CONFIG_FILE, HF_SPECIAL_MAP_FILE})
"""Every name a tokenizer directory written by bpe336 may hold (what a new save may replace)."""

SIDECAR_FORMAT = "bpe336-sidecar"
LEGACY_FORMAT = "bpe336-tokenizer"
MAX_ID = 0xFFFF_FFFE  # ids are u32 in the core; u32::MAX marks "no token"
EOT = "<|endoftext|>"

# Hugging Face spells the GPT-2 regex with one alternative per contraction; it matches exactly
# what GPT2_PATTERN matches.
HF_GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Hugging Face runs regexes with Oniguruma, which reads a counted repetition followed by `+`
# (`\p{N}{1,3}+`, possessive in tiktoken's engine) as a repetition of the repetition, so
# `1234567` would be one pre-token. tokenizer.json therefore spells cl100k's digit groups
# greedily: the same splits, as nothing follows `\p{N}{1,3}` in its alternative that could make
# it give a digit back.
HF_CL100K_REGEX = CL100K_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
# tokenizer.json spellings of the named patterns that differ from ours.
_FROM_HF_SPELLING = {HF_GPT2_REGEX: GPT2_PATTERN, HF_CL100K_REGEX: CL100K_PATTERN}
# A counted repetition made possessive (`x{2}+`, `x{1,3}+`), which Oniguruma misreads (see above).
_POSSESSIVE_COUNT = re.compile(r"(?<!\\)\{\d+(?:,\d*)?\}\+")
# An inline flag group: (?flags) or (?flags:, flags being on[-off].
_INLINE_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
# Properties whose set depends on case. Where the i flag is on, fancy-regex closes them under
# case folding (`(?i)\p{Lu}` matches "a" too) and Oniguruma does not; other properties fold to
# themselves, so only these differ.
_CASED_PROPERTY = re.compile(
    r"\\[pP]\{\^?\s*(?:Lu|Ll|Lt|LC|L&|Upper(?:case)?(?:_?Letter)?|Lower(?:case)?(?:_?Letter)?|Title(?:case)?(?:_?Letter)?"
    r"|Cased(?:_?Letter)?)\s*\}|\[:\^?(?:upper|lower):\]",
    re.IGNORECASE,
)


def _cased_property_problem(text: str) -> str | None:
    if m := _CASED_PROPERTY.search(text):
        return (
            f"uses the case-dependent class {m.group(0)} where the i flag is on, which bpe336 and tiktoken (fancy-regex) "
            "match in both cases and Hugging Face's Oniguruma only in its own; write it where i is off (e.g. (?-i:\\p{Lu}))"
        )
    return None


def oniguruma_problem(pattern: str) -> str | None:
    """Why Hugging Face's regex engine (Oniguruma, Ruby syntax) would refuse `pattern` or read
    it otherwise than bpe336 and tiktoken (fancy-regex) do, or None. The differences checked:

    - inline flags other than i and x: Oniguruma refuses s, U and u, and reads m as "dot matches
      newline" (fancy-regex: ^ and $ match at lines);
    - ^ and $ outside a class: always line anchors in Oniguruma, text anchors here (\\A, \\z);
    - Python-style named groups (?P<name>...), which Oniguruma refuses;
    - \\p{name=value} properties, which Oniguruma refuses;
    - class set operations -- and ~~, which Oniguruma reads as literal characters;
    - a case-dependent property (\\p{Lu}, \\p{Ll}, [:upper:], ...) where the i flag is on:
      fancy-regex matches it in both cases, Oniguruma only in its own;
    - a possessive counted repetition (`x{1,3}+`), which Oniguruma reads as a repetition of the
      repetition.

    Example: oniguruma_problem(r"^\\s+|\\S+") -> "uses ^ outside a character class, ..."
    """
    if _POSSESSIVE_COUNT.search(pattern):
        return (
            "has a possessive counted repetition (like {1,3}+), which Hugging Face's Oniguruma reads as a repetition of "
            "the repetition; write it as an atomic group, e.g. (?>\\p{N}{1,3})"
        )
    i, n = 0, len(pattern)
    # Whether the i flag is on here, and its state outside each open group.
    fold, outer = False, []
    while i < n:
        c = pattern[i]
        if c == "\\":
            if pattern[i + 1 : i + 2] in ("p", "P") and pattern[i + 2 : i + 3] == "{":
                end = pattern.find("}", i + 3)
                end = n if end < 0 else end
                if "=" in pattern[i + 3 : end]:
                    return f"uses the property {pattern[i : end + 1]}, which Hugging Face's Oniguruma does not know (write \\p{{Han}}, \\p{{L}})"
                if fold and (problem := _cased_property_problem(pattern[i : end + 1])):
                    return problem
                i = end + 1
            else:
                i += 2
        elif c == "[":
            start = i
            i, problem = _class_problem(pattern, i)
            if problem:
                return problem
            if fold and (problem := _cased_property_problem(pattern[start:i])):
                return problem
        elif c == "(" and pattern.startswith("(?P", i):
            return "uses a (?P...) group, which Hugging Face's Oniguruma refuses (write a named group as (?<name>...))"
        elif c == "(" and (flags := _INLINE_FLAGS.match(pattern, i)):
            bad = sorted(set(flags.group(1) + (flags.group(2) or "")) - set("ix"))
            if bad:
                return (
                    f"sets the inline flag(s) {', '.join(bad)} in {flags.group(0)!r}, which Hugging Face's Oniguruma refuses or "
                    "reads otherwise (its m means dot-matches-newline); write [\\s\\S] for any character and \\A, \\z, "
                    "(?<=\\n) or (?=\\n) for anchors"
                )
            on = ("i" in flags.group(1) or fold) and "i" not in (flags.group(2) or "")
            if flags.group(3) == ":":  # (?flags:...) opens a group with them
                outer.append(fold)
            fold = on
            i = flags.end()
        elif c == "(":
            outer.append(fold)
            i += 1
        elif c == ")":
            fold = outer.pop() if outer else False
            i += 1
        elif c in "^$":
            text, line = (r"\A", r"(?<=\n)") if c == "^" else (r"\z", r"(?=\n)")
            return (
                f"uses {c} outside a character class, which Hugging Face's Oniguruma reads as a line anchor (here it anchors "
                f"the whole text); write {text} for the text, or {line} for a line"
            )
        else:
            i += 1
    return None


def _class_problem(pattern: str, start: int) -> tuple[int, str | None]:
    """(the index after the character class opening at `start`, a set operation Oniguruma
    misreads or None). Nested classes and escapes are skipped; a ] first in a class is literal."""
    i, depth, n = start + 1, 1, len(pattern)
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    while i < n and depth:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if pattern.startswith(("--", "~~"), i):
            op = pattern[i : i + 2]
            return n, f"uses the class operation {op} (in {pattern[start:]!r}), which Hugging Face's Oniguruma reads as literal characters"
        if c == "[" and not pattern.startswith("[:", i):
            depth += 1
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":
                i += 1
            continue
        if c == "[":  # a POSIX class [:alpha:]
            end = pattern.find(":]", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == "]":
            depth -= 1
        i += 1
    return i, None


@dataclasses.dataclass
class TokenizerData:
    """Everything a tokenizer file holds.

    vocab: {id: token bytes}. merges: (left, right) in rank order. special_tokens: {text: id} in
    the tokenizer's order (ids present in `vocab` with the text's UTF-8 bytes). pattern: the
    pre-tokenization regex, or None where the file does not record one (a bare GPT-2 pair).
    """

    vocab: Vocab
    merges: Merges
    special_tokens: dict[str, int]
    pattern: str | None
    source: Path | None = None  # the file holding the vocabulary, for messages


class TokenizerFileError(ValueError):
    """A malformed tokenizer file: the message starts with `path:line:` (or `path:`)."""

    def __init__(self, path: str | os.PathLike, reason: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


# ---------------------------------------------------------------------------------------------
# Byte-level strings
# ---------------------------------------------------------------------------------------------


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


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, str], dict[int, str]]:
    """str.translate tables: Latin-1 char -> byte-level char, and back (characters outside the
    byte-level alphabet become U+10FFFF, which Latin-1 cannot encode, so decoding fails)."""
    forward = {b: c for b, c in bytes_to_unicode().items()}
    backward: dict[int, str] = {ord(c): chr(b) for b, c in forward.items()}
    for code in range(256):
        backward.setdefault(code, "\U0010ffff")
    return forward, backward


def encode_token(token: bytes) -> str:
    """Bytes -> GPT-2 printable string, e.g. b' the' -> 'Ġthe'."""
    return token.decode("latin-1").translate(_tables()[0])


def is_byte_level(text: str) -> bool:
    """Whether `text` is a GPT-2 byte-level string, e.g. 'Ġthe' yes, ' the' no."""
    try:
        text.translate(_tables()[1]).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(text)


def decode_token(text: str, *, special: bool = False) -> bytes:
    """GPT-2 printable string -> bytes. Raises ValueError for characters outside the table,
    unless `special` (special tokens are stored as their UTF-8 text)."""
    try:
        return text.translate(_tables()[1]).encode("latin-1")
    except UnicodeEncodeError:
        if special:
            return text.encode("utf-8")
        raise ValueError(f"{text!r} is not a GPT-2 byte-level token string") from None


def _show(token: bytes) -> str:
    """A token for messages: its text when UTF-8, else its bytes, e.g. ' the' or b'\\xff'."""
    try:
        return repr(token.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(token)


# ---------------------------------------------------------------------------------------------
# Reading files: paths, UTF-8, JSON with locations
# ---------------------------------------------------------------------------------------------


def check_input_file(path: str | os.PathLike, *, stream: bool = False) -> Path:
    """The path, if it names a regular file, or with `stream` also a FIFO or pipe (`<(zcat x.gz)`,
    /dev/stdin), which the Rust core reads interruptibly; FileNotFoundError, IsADirectoryError or
    ValueError (anything else: a device, a socket) otherwise. Files read whole (tokenizer files,
    benchmark inputs) must be regular files."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path)) from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, expected a file", str(path))
    if stat.S_ISREG(mode) or (stream and stat.S_ISFIFO(mode)):
        return path
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
    expected = "a regular file or a pipe" if stream else "a regular file"
    raise ValueError(f"{path}: is {kind}; expected {expected}")


def _read_text(path: Path, what: str) -> str:
    data = check_input_file(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TokenizerFileError(path, f"{what} is not UTF-8 (byte 0x{data[e.start]:02x} at byte offset {e.start})", line) from None


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


class _HugeInt(Exception):
    def __init__(self, digits: str):
        self.digits = digits


def _json_int(digits: str) -> int:
    """json's parse_int: Python refuses to convert integers of more than 4,300 digits with a bare
    ValueError; such a number is reported with its line instead."""
    try:
        return int(digits)
    except ValueError:
        raise _HugeInt(digits) from None


def _id_key(key: str) -> int | None:
    """An id written as a JSON object key ("42"): ASCII digits within the id range, else None
    (str.isdigit also accepts '²', which int() refuses, and digit strings of any length)."""
    if not (key.isascii() and key.isdigit()) or len(key) > len(str(MAX_ID)):
        return None
    idx = int(key)
    return idx if idx <= MAX_ID else None


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return d


_WS = re.compile(r"[ \t\n\r]*")


def _json_offset(text: str, keys: Sequence[str | int], nth: int = 1) -> int | None:
    """Offset of the value at `keys` (object keys and list indices) in the JSON `text`, or of
    the `nth` member with the last key; None when not found. Only called to place an error, so
    it walks the text (skipping values with the C decoder) instead of slowing every parse."""
    dec = json.JSONDecoder()
    scan = json.decoder.scanstring

    def ws(i: int) -> int:
        return _WS.match(text, i).end()

    try:
        pos = ws(0)
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if text[pos] == "{" and isinstance(key, str):
                pos = ws(pos + 1)
                seen = 0
                while text[pos] == '"':
                    k, pos = scan(text, pos + 1)
                    pos = ws(ws(pos) + 1)  # past the colon
                    if k == key:
                        seen += 1
                        if not last or seen == nth:
                            break
                    _, pos = dec.raw_decode(text, pos)
                    pos = ws(pos)
                    if text[pos] == ",":
                        pos = ws(pos + 1)
                else:
                    return None
            elif text[pos] == "[" and isinstance(key, int):
                pos = ws(pos + 1)
                for _ in range(key):
                    _, pos = dec.raw_decode(text, pos)
                    pos = ws(pos)
                    if text[pos] != ",":
                        return None
                    pos = ws(pos + 1)
                if text[pos] == "]":
                    return None
            else:
                return None
        return pos
    except (IndexError, ValueError):
        return None


def _json_line(text: str, keys: Sequence[str | int], nth: int = 1) -> int | None:
    pos = _json_offset(text, keys, nth)
    return None if pos is None else text.count("\n", 0, pos) + 1


def _duplicate_key_line(text: str, key: str) -> int | None:
    """Line of the second `"key":` in `text` (either JSON escaping of the key)."""
    hits: list[int] = []
    for spelled in {json.dumps(key), json.dumps(key, ensure_ascii=False)}:
        hits += [m.start() for m in re.finditer(re.escape(spelled) + r"\s*:", text)]
    hits.sort()
    return text.count("\n", 0, hits[1]) + 1 if len(hits) > 1 else None


def _parse_json(path: Path, text: str, what: str):
    """Parse JSON; TokenizerFileError with the line for syntax errors and repeated keys."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_int=_json_int)
    except json.JSONDecodeError as e:
        raise TokenizerFileError(path, f"malformed {what}: {e.msg} (column {e.colno})", e.lineno) from None
    except _DuplicateKey as e:
        raise TokenizerFileError(path, f"key {e.key!r} appears twice in {what}", _duplicate_key_line(text, e.key)) from None
    except RecursionError:
        raise TokenizerFileError(path, f"malformed {what}: nested too deeply") from None
    except _HugeInt as e:
        at = text.find(e.digits)
        line = text.count("\n", 0, at) + 1 if at >= 0 else None
        raise TokenizerFileError(path, f"malformed {what}: an integer of {len(e.digits):,} characters", line) from None


def _check_id(path: Path, text: str, keys: Sequence[str | int], idx: object, what: str) -> int:
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx <= MAX_ID:
        raise TokenizerFileError(path, f"{what} has id {idx!r}; ids must be integers from 0 to {MAX_ID}", _json_line(text, keys))
    return idx


# ---------------------------------------------------------------------------------------------
# Consistency checks shared by the readers
# ---------------------------------------------------------------------------------------------


def _check_merges(vocab: Vocab, merges: Merges, where) -> None:
    """Each merge's parts and result must be tokens. `where(i)` -> (path, line) of merge i."""
    known = set(vocab.values())
    for i, (a, b) in enumerate(merges):
        for token, role in ((a, "left part"), (b, "right part"), (a + b, "result")):
            if token not in known:
                path, line = where(i)
                raise TokenizerFileError(path, f"merge {_show(a)} + {_show(b)}: its {role} {_show(token)} is not in the vocabulary", line)


def _special_ids(specials: Mapping[str, int], vocab: Vocab, path: Path, line_of=lambda s: None) -> None:
    """Add the specials to `vocab` (or check they are there with their text's bytes)."""
    for s, idx in specials.items():
        b = s.encode("utf-8")
        have = vocab.get(idx)
        if have is None:
            vocab[idx] = b
        elif have != b:
            raise TokenizerFileError(path, f"special token {s!r} has id {idx}, which the vocabulary gives to {_show(have)}", line_of(s))


# ---------------------------------------------------------------------------------------------
# Keys: how a tokenizer is spelled in a {string: id} vocabulary
# ---------------------------------------------------------------------------------------------


def _merge_tokens(merges: Merges) -> set[bytes]:
    """Every token a merge uses or makes."""
    out: set[bytes] = set()
    for a, b in merges:
        out.update((a, b, a + b))
    return out


def vocab_keys(data: TokenizerData, specials_first: bool) -> tuple[dict[str, int], dict[int, str]]:
    """Spell a vocabulary as {key: id}: special tokens by their text, every other token by its
    byte-level string. A special whose id the merges also use as an ordinary token (a special
    `'Hello'` declared over GPT-2's vocabulary) gets both keys. Returns (keys, duplicates):
    `duplicates` maps the ids that lost their key to another id with the same bytes (e.g. the
    byte `"` at id 35 when `'"'` is special at id 0) to their byte-level string.

    Two ids claim one key only when (a) they have the same bytes (a special equal to an ordinary
    token, or a repeated token): `specials_first` decides who keeps the key; or (b) a special's
    text is the byte-level spelling of a different token (`'é'` and the byte 0xE9, `'ĠĠ'` and
    two spaces): with `specials_first` this raises ValueError (no {string: id} reader could tell
    them apart); otherwise the special gets no key (the sidecar carries it).
    """
    keys: dict[str, int] = {}
    duplicates: dict[int, str] = {}
    special_ids = set(data.special_tokens.values())
    used = _merge_tokens(data.merges)
    ordinary = {t for i, t in data.vocab.items() if i not in special_ids}
    if specials_first:
        keys.update(data.special_tokens)
    for idx in sorted(data.vocab):
        token = data.vocab[idx]
        # A special's id is spelled as an ordinary token too only where BPE needs its bytes and
        # no ordinary id has them.
        if idx in special_ids and (token in ordinary or not (len(token) == 1 or token in used)):
            continue
        key = encode_token(token)
        owner = keys.get(key)
        if owner is None:
            keys[key] = idx
        elif owner == idx:
            continue
        elif data.vocab[owner] == token:
            duplicates[idx] = key
        else:
            special = next(s for s, i in data.special_tokens.items() if i == owner)
            raise ValueError(
                f"special token {special!r} (id {owner}) is spelled like the byte-level token {key!r} (id {idx}, "
                f"bytes {token!r}): Hugging Face looks special tokens up by their text in the byte-level "
                "vocabulary, so both would get one id"
            )
    if not specials_first:
        for s, idx in data.special_tokens.items():
            keys.setdefault(s, idx)  # a special whose text another token holds lives in the sidecar only
    return keys, duplicates


class _VocabBuilder:
    """{id: bytes} from keys, refusing an id given two different byte strings (with the line)."""

    def __init__(self, path: Path, text: str, prefix: Sequence[str] = ()):
        self.vocab: Vocab = {}
        self.path, self.text, self.prefix = path, text, list(prefix)

    def put(self, idx: int, token: bytes, key: str) -> None:
        have = self.vocab.get(idx)
        if have is not None and have != token:
            raise TokenizerFileError(
                self.path, f"id {idx} is used twice (by {key!r} and by {_show(have)})", _json_line(self.text, [*self.prefix, key])
            )
        self.vocab[idx] = token


# ---------------------------------------------------------------------------------------------
# GPT-2 pair: vocab.json + merges.txt (+ special_tokens.json)
# ---------------------------------------------------------------------------------------------


def _read_vocab_json(path: Path) -> tuple[dict[str, int], str]:
    """({key: id}, file text), with each id checked (repeats are checked where keys become bytes)."""
    text = _read_text(path, "vocab.json")
    data = _parse_json(path, text, "vocab.json")
    if not isinstance(data, dict):
        raise TokenizerFileError(path, f"vocab.json must be a JSON object mapping token strings to ids, not {type(data).__name__}", 1)
    for key, idx in data.items():
        _check_id(path, text, [key], idx, f"token {key!r}")
    return data, text


def _read_merges_txt(path: Path) -> tuple[Merges, list[int]]:
    """(merges, line number of each)."""
    text = _read_text(path, "merges.txt")
    merges: Merges = []
    lines: list[int] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise TokenizerFileError(path, f"expected two space-separated tokens, got {line!r}", lineno)
        try:
            merges.append((decode_token(parts[0]), decode_token(parts[1])))
        except ValueError as e:
            raise TokenizerFileError(path, str(e), lineno) from None
        lines.append(lineno)
    return merges, lines


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sidecar(path: str | os.PathLike) -> dict:
    """Read our sidecar (`special_tokens.json` or `NAME.tiktoken.json`): {"special_tokens":
    {text: id}, "pattern": str | None, "duplicates": {id: byte-level string}, "sha256": {file:
    hex}}. The old form, a JSON list of special-token strings, gives ids None."""
    path = Path(path)
    text = _read_text(path, "special-token file")
    data = _parse_json(path, text, "special-token file")
    if isinstance(data, list):  # written by bpe336 0.1: the specials, ids implied by vocab.json
        for i, s in enumerate(data):
            if not isinstance(s, str) or not s:
                raise TokenizerFileError(path, f"entry {i} must be a non-empty string, got {s!r}", _json_line(text, [i]))
        return {"special_tokens": dict.fromkeys(data), "pattern": None, "duplicates": {}, "sha256": {}}
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise TokenizerFileError(path, f'not a bpe336 special-token file (expected a JSON object with "format": "{SIDECAR_FORMAT}")', 1)
    if data.get("version") != 1:
        raise TokenizerFileError(path, f"unsupported version {data.get('version')!r} (this reader knows 1)", _json_line(text, ["version"]))
    specials = data.get("special_tokens", {})
    if not isinstance(specials, dict):
        raise TokenizerFileError(path, "special_tokens must be an object {text: id}", _json_line(text, ["special_tokens"]))
    for s, idx in specials.items():
        if not s:
            raise TokenizerFileError(path, "a special token is empty", _json_line(text, ["special_tokens", s]))
        _check_id(path, text, ["special_tokens", s], idx, f"special token {s!r}")
    pattern = data.get("pattern")
    if pattern is not None and (not isinstance(pattern, str) or not pattern):
        raise TokenizerFileError(path, "pattern must be a non-empty string", _json_line(text, ["pattern"]))
    dups_raw = data.get("duplicates", {})
    if not isinstance(dups_raw, dict):
        raise TokenizerFileError(path, "duplicates must be an object {id: token}", _json_line(text, ["duplicates"]))
    duplicates: dict[int, str] = {}
    for k, v in dups_raw.items():
        idx = _id_key(k)
        if idx is None or not isinstance(v, str) or not is_byte_level(v):
            raise TokenizerFileError(
                path, f"duplicates entry {k[:80]!r}: {v!r} must map an id to a byte-level token", _json_line(text, ["duplicates", k])
            )
        duplicates[idx] = v
    sums = data.get("sha256", {})
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise TokenizerFileError(path, "sha256 must be an object {file name: hex digest}", _json_line(text, ["sha256"]))
    return {"special_tokens": specials, "pattern": pattern, "duplicates": duplicates, "sha256": sums}


def _verify_checksums(sidecar_path: Path, sums: Mapping[str, str], files: Iterable[Path]) -> None:
    for f in files:
        want = sums.get(f.name)
        if want is not None and _sha256(f) != want:
            raise TokenizerFileError(
                sidecar_path,
                f"{f} was changed after this file was written (sha256 mismatch: an edit, or a save interrupted between "
                "the two files), so the two do not belong together; save the tokenizer again (or delete this file if "
                "you edited the other on purpose)",
            )


def _sidecar(data: TokenizerData, duplicates: Mapping[int, str], sums: Mapping[str, str]) -> dict:
    out: dict = {"format": SIDECAR_FORMAT, "version": 1, "pattern": data.pattern, "special_tokens": dict(data.special_tokens)}
    if duplicates:
        out["duplicates"] = {str(k): v for k, v in sorted(duplicates.items())}
    out["sha256"] = dict(sums)
    return out


def _write_json(path: Path, obj: object, indent: int | None = 1, big: Mapping[str, dict | list] | None = None) -> None:
    with atomic_write(path, "w") as f:
        f.write(_dumps(obj, indent, big))
        f.write("\n")


def _dumps(obj: object, indent: int | None, big: Mapping[str, dict | list] | None = None) -> str:
    """json.dumps with `indent`, except that each value in `big` ({str: int} vocabulary, or
    [str] merges), named in `obj` by a placeholder string, goes one entry per line through
    the C string encoder: the indenting encoder is pure Python and takes seconds on a 100k-token
    vocabulary."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    for placeholder, value in (big or {}).items():
        quoted = json.dumps(placeholder)
        at = text.index(quoted)
        line = text[text.rfind("\n", 0, at) + 1 : at]
        pad = line[: len(line) - len(line.lstrip(" "))]
        inner = "\n" + pad + " " * (indent or 0)
        quote = json.encoder.encode_basestring  # C-accelerated, keeps non-ASCII as is
        if isinstance(value, dict):  # {str: int}
            items = [f"{quote(k)}: {v:d}" for k, v in value.items()]
            block = "{" + ",".join(inner + i for i in items) + f"\n{pad}}}" if items else "{}"
        else:  # [str]
            items = [quote(v) for v in value]
            block = "[" + ",".join(inner + i for i in items) + f"\n{pad}]" if items else "[]"
        text = text[:at] + block + text[at + len(quoted) :]
    return text


def write_gpt2_pair(directory: str | os.PathLike, data: TokenizerData) -> None:
    """Write `vocab.json`, `merges.txt` and the sidecar `special_tokens.json` into `directory`.

    Ordinary tokens keep their byte-level keys in vocab.json; a special token appears there
    under its text (the GPT-2 convention, e.g. `<|endoftext|>`) unless that text is already an
    ordinary token's key, and the sidecar lists every special with its id either way."""
    directory = Path(directory)
    keys, duplicates = vocab_keys(data, specials_first=False)
    _write_json(directory / VOCAB_FILE, "@vocab", big={"@vocab": dict(sorted(keys.items(), key=lambda kv: kv[1]))})
    _write_merges_txt(directory / MERGES_FILE, data.merges)
    sums = {name: _sha256(directory / name) for name in (VOCAB_FILE, MERGES_FILE)}
    _write_json(directory / SIDECAR_FILE, _sidecar(data, duplicates, sums))


def _write_merges_txt(path: Path, merges: Merges) -> None:
    with atomic_write(path, "w") as f:
        f.write("#version: 0.2\n")
        f.write("".join(f"{encode_token(a)} {encode_token(b)}\n" for a, b in merges))


def read_gpt2_pair(
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: Iterable[str] = (),
    sidecar_path: str | os.PathLike | None = None,
) -> TokenizerData:
    """Read a `vocab.json` + `merges.txt` pair.

    With a sidecar (`special_tokens.json` as `write_gpt2_pair` writes it) every key is placed
    exactly: the specials and their ids come from it, every other key must be a byte-level
    string. Without one (files from elsewhere), a key listed in `special_tokens` is that text
    unless it is a single byte or a merge uses it (then it is the byte-level token, e.g. 'é' is
    the byte 0xE9 in GPT-2's vocabulary), and a key that is not a byte-level string is a special
    token stored as text (the GPT-2 convention); both are returned as specials."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    keys, text = _read_vocab_json(vocab_path)
    merges, merge_lines = _read_merges_txt(merges_path)
    out = _VocabBuilder(vocab_path, text)
    specials: dict[str, int] = {}
    pattern: str | None = None
    if sidecar_path is not None:
        sidecar_path = Path(sidecar_path)
        side = read_sidecar(sidecar_path)
        _verify_checksums(sidecar_path, side["sha256"], [vocab_path, merges_path])
        pattern = side["pattern"]
        declared = side["special_tokens"]
        for key, idx in keys.items():
            if key in declared and declared[key] in (idx, None):
                specials[key] = idx
                out.put(idx, key.encode("utf-8"), key)
            elif is_byte_level(key):
                out.put(idx, decode_token(key), key)
            else:
                raise TokenizerFileError(
                    vocab_path,
                    f"{key!r} is neither a byte-level token string nor a special token of {sidecar_path}",
                    _json_line(text, [key]),
                )
        for s, idx in declared.items():
            if s not in specials:
                if idx is None:
                    raise TokenizerFileError(sidecar_path, f"special token {s!r} is not in {vocab_path}")
                specials[s] = idx
        specials = {s: specials[s] for s in declared}  # the sidecar's order
        for idx, key in side["duplicates"].items():
            if idx in out.vocab:
                raise TokenizerFileError(sidecar_path, f"duplicate id {idx} is already used in {vocab_path}")
            out.vocab[idx] = decode_token(key)
        _special_ids(specials, out.vocab, sidecar_path)
    else:
        listed = set(special_tokens)
        used = _merge_tokens(merges)
        for key, idx in keys.items():
            as_bytes = decode_token(key) if is_byte_level(key) else None
            needed = as_bytes is not None and (len(as_bytes) == 1 or as_bytes in used)
            if (key in listed and not needed) or as_bytes is None:
                specials[key] = idx
                out.put(idx, key.encode("utf-8"), key)
            else:
                out.put(idx, as_bytes, key)
    _check_merges(out.vocab, merges, lambda i: (merges_path, merge_lines[i]))
    return TokenizerData(out.vocab, merges, specials, pattern, vocab_path)


def load_gpt2_files(
    vocab_path: str | os.PathLike, merges_path: str | os.PathLike, special_tokens: tuple[str, ...] | list[str] = ()
) -> tuple[Vocab, Merges]:
    """Read a `vocab.json` + `merges.txt` pair (see `read_gpt2_pair`): (vocab, merges)."""
    data = read_gpt2_pair(vocab_path, merges_path, special_tokens)
    return data.vocab, data.merges


def save_gpt2_files(
    vocab: Vocab,
    merges: Merges,
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: tuple[str, ...] | list[str] = (),
) -> None:
    """Write a bare `vocab.json` + `merges.txt` pair, each atomically, specials as text. The pair
    alone cannot say which tokens are special: `Tokenizer.save(directory)` also writes the sidecar
    and tokenizer.json. Raises ValueError for what a bare pair cannot hold (repeated tokens,
    specials spelled like other tokens)."""
    ids: dict[str, int] = {}
    for s in special_tokens:
        b = s.encode("utf-8")
        ids[s] = min((i for i, t in vocab.items() if t == b), default=-1)
        if ids[s] < 0:
            raise ValueError(f"special token {s!r} is not in the vocabulary")
    data = TokenizerData(dict(vocab), list(merges), ids, None)
    keys, duplicates = vocab_keys(data, specials_first=False)
    if duplicates or any(keys.get(s) != i for s, i in ids.items()):
        raise ValueError(
            "the vocabulary repeats tokens (or a special token is spelled like another token); a bare vocab.json cannot hold it, use Tokenizer.save(directory)"
        )
    _write_json(Path(vocab_path), "@vocab", big={"@vocab": dict(sorted(keys.items(), key=lambda kv: kv[1]))})
    _write_merges_txt(Path(merges_path), list(merges))


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json
# ---------------------------------------------------------------------------------------------


def hf_pre_tokenizer(pattern: str) -> dict:
    """The `pre_tokenizer` of tokenizer.json for a pre-tokenization regex: Hugging Face's own
    `ByteLevel(use_regex=true)` for the GPT-2 pattern; for cl100k and o200k (as HF writes
    GPT-4-style tokenizers) a `Split` on the regex with behavior Isolated followed by `ByteLevel`
    without its regex; for any other regex a `Split` with behavior Removed and invert=true,
    which keeps exactly the matches and drops the text between them, as tiktoken and bpe336 do
    (Isolated would keep that text as pieces of its own, and HF's ids would differ whenever the
    regex does not match every character). `pattern_from_hf` is the inverse.

    Raises ValueError for a custom regex that HF's regex engine (Oniguruma, not fancy-regex)
    refuses or reads otherwise (`oniguruma_problem` names the construct and what to write);
    the named patterns mean the same in both (the tests check them on random text)."""
    if pattern in (GPT2_PATTERN, HF_GPT2_REGEX):
        return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    named = pattern in (CL100K_PATTERN, O200K_PATTERN)
    if pattern == CL100K_PATTERN:
        pattern = HF_CL100K_REGEX
    elif not named and (problem := oniguruma_problem(pattern)):
        raise ValueError(f"the pre-tokenization pattern {pattern!r} {problem}, so tokenizer.json would not split text as the pattern does")
    split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
    if not named:
        split |= {"behavior": "Removed", "invert": True}
    return {
        "type": "Sequence",
        "pretokenizers": [split, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}],
    }


def pattern_from_hf(pre_tokenizer: object) -> str:
    """The pre-tokenization regex of a tokenizer.json `pre_tokenizer` (see `hf_pre_tokenizer`;
    HF's spellings of the named patterns give their regexes). Raises ValueError naming what
    cannot be honoured (another pre-tokenizer type, a prefix space, a split that is neither
    Isolated nor Removed-inverted, no byte-level step).

    NOTE: an Isolated split keeps text its regex does not match, as pieces of their own; bpe336
    (like tiktoken) drops it. The two agree when the regex matches every character, as the
    named patterns and HF's GPT-4-style files do; for a file from elsewhere whose regex leaves
    text unmatched, the ids would differ there."""

    def kind(obj: object) -> str:
        return obj.get("type", "?") if isinstance(obj, dict) else type(obj).__name__

    def byte_level(obj: dict, want_regex: bool) -> None:
        if obj.get("add_prefix_space", True) is not False:
            raise ValueError("pre_tokenizer ByteLevel with add_prefix_space=true (it prepends a space to the text) is not supported")
        if obj.get("use_regex", True) is not want_regex:
            raise ValueError(f"pre_tokenizer ByteLevel with use_regex={str(not want_regex).lower()} is not supported here")

    if pre_tokenizer is None:
        raise ValueError("no pre_tokenizer: byte-level BPE needs a ByteLevel pre-tokenizer")
    steps = [pre_tokenizer]
    if kind(pre_tokenizer) == "Sequence":
        steps = pre_tokenizer.get("pretokenizers")
        if not isinstance(steps, list):
            raise ValueError("pre_tokenizer Sequence without a pretokenizers list")
    if len(steps) == 1 and kind(steps[0]) == "ByteLevel":
        byte_level(steps[0], want_regex=True)
        return GPT2_PATTERN
    if len(steps) == 2 and kind(steps[0]) == "Split" and kind(steps[1]) == "ByteLevel":
        split = steps[0]
        regex = split.get("pattern", {}).get("Regex") if isinstance(split.get("pattern"), dict) else None
        if not isinstance(regex, str) or not regex:
            raise ValueError(f"pre_tokenizer Split on {split.get('pattern')!r} is not supported (only a Regex)")
        how = (split.get("behavior"), split.get("invert", False))
        if how not in (("Isolated", False), ("Removed", True)):
            raise ValueError(
                f"pre_tokenizer Split with behavior {split.get('behavior')!r} (invert={split.get('invert')}) is not supported "
                "(only Isolated, or Removed with invert=true)"
            )
        byte_level(steps[1], want_regex=False)
        pattern = _FROM_HF_SPELLING.get(regex, regex)
        if pattern not in (GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN) and (problem := oniguruma_problem(regex)):
            raise ValueError(f"pre_tokenizer Split regex {regex!r} {problem}, so bpe336 would split text otherwise than Hugging Face")
        return pattern
    names = " + ".join(kind(s) for s in steps)
    raise ValueError(f"pre_tokenizer {names} is not supported (only ByteLevel, or Split(Regex) + ByteLevel)")


_HF_ADDED = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


def hf_tokenizer_dict(data: TokenizerData) -> dict:
    """The tokenizer.json object for `data`, laid out as Hugging Face writes GPT-2.

    Special tokens are `added_tokens` with their ids and also model.vocab entries under their
    text (as HF's BPE trainer does): HF gives an added token the id its text has in model.vocab,
    so this is what makes HF use our ids. A byte-level token whose key a special took (the byte
    `"` when `'"'` is special) is listed under `model.bpe336_duplicates` (HF ignores it; our
    reader restores it). Raises ValueError when a special token is spelled like a different
    token (see `vocab_keys`): no tokenizer.json can make HF tell them apart."""
    keys, duplicates = vocab_keys(data, specials_first=True)
    pattern = data.pattern or GPT2_PATTERN
    model: dict = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": dict(sorted(keys.items(), key=lambda kv: kv[1])),
        # "left right" strings, which every tokenizers version reads (byte-level tokens have no
        # space); versions from 0.20 write [left, right] pairs, and our reader takes both.
        "merges": [f"{encode_token(a)} {encode_token(b)}" for a, b in data.merges],
    }
    if duplicates:
        model["bpe336_duplicates"] = {str(k): v for k, v in sorted(duplicates.items())}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": idx, "content": s, **_HF_ADDED} for s, idx in data.special_tokens.items()],
        "normalizer": None,
        "pre_tokenizer": hf_pre_tokenizer(pattern),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": model,
    }


def write_hf_tokenizer(path: str | os.PathLike, data: TokenizerData) -> None:
    """Write tokenizer.json atomically: one vocab entry and one merge per line, as HF does."""
    _write_hf(Path(path), hf_tokenizer_dict(data))


def _write_hf(path: Path, obj: dict) -> None:
    model = obj["model"]
    nonce = secrets.token_hex(8)  # placeholders no token can spell by chance
    big = {f"@{nonce}:vocab": model["vocab"], f"@{nonce}:merges": model["merges"]}
    _write_json(path, {**obj, "model": {**model, "vocab": f"@{nonce}:vocab", "merges": f"@{nonce}:merges"}}, indent=2, big=big)


def _hf_config(data: TokenizerData) -> tuple[dict, dict]:
    """(tokenizer_config.json, special_tokens_map.json) for transformers' AutoTokenizer: the
    generic fast tokenizer over tokenizer.json, with `<|endoftext|>` as bos/eos/unk (GPT-2's
    choice) when it is special. No other settings, so AutoTokenizer adds nothing to the ids."""
    names = {f"{role}_token": EOT for role in ("bos", "eos", "unk")} if EOT in data.special_tokens else {}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        **names,
    }
    return config, names


def _post_processor_problem(pp: object) -> str | None:
    """None when a tokenizer.json post_processor leaves single-text ids alone (none, ByteLevel, a
    TemplateProcessing whose single template is just `$A`, as transformers writes for GPT-2), else
    what it is, e.g. "TemplateProcessing adding '<s>'"."""
    if pp is None:
        return None
    if not isinstance(pp, dict):
        return repr(pp)
    kind = pp.get("type")
    if kind == "ByteLevel":
        return None
    if kind == "Sequence" and isinstance(pp.get("processors"), list):
        return next(filter(None, map(_post_processor_problem, pp["processors"])), None)
    if kind == "TemplateProcessing" and isinstance(pp.get("single"), list):
        added = [next(iter(p.values())).get("id", "?") for p in pp["single"] if isinstance(p, dict) and "SpecialToken" in p]
        if not added and all(isinstance(p, dict) and "Sequence" in p for p in pp["single"]):
            return None
        return f"TemplateProcessing adding {', '.join(map(repr, added)) or 'tokens'}"
    return repr(kind)


def read_hf_tokenizer(path: str | os.PathLike) -> TokenizerData:
    """Read a Hugging Face tokenizer.json holding a byte-level BPE. Raises TokenizerFileError
    naming what is not one (WordPiece, Unigram, ...) or what bpe336 cannot honour (normalizers,
    post-processors that add tokens, truncation, dropout, prefix spaces, ...)."""
    path = Path(path)
    text = _read_text(path, "tokenizer.json")
    obj = _parse_json(path, text, "tokenizer.json")
    return _hf_from_dict(path, text, obj)


def _hf_from_dict(path: Path, text: str, obj: object) -> TokenizerData:
    def fail(reason: str, *keys: str | int):
        raise TokenizerFileError(path, reason, _json_line(text, keys) if keys else None)

    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        fail("not a Hugging Face tokenizer.json (no model object)")
    model = obj["model"]
    mtype = model.get("type", "BPE" if "merges" in model else None)
    if mtype != "BPE":
        fail(f"the model is {mtype!r}, not a byte-level BPE; bpe336 reads only BPE tokenizers", "model")
    for key in ("truncation", "padding", "normalizer"):
        if obj.get(key) is not None and obj[key] != {"type": "Sequence", "normalizers": []}:
            what = obj[key].get("type", key) if isinstance(obj[key], dict) else key
            fail(f"{key} {what!r} is set; bpe336 cannot honour it (only byte-level BPE without {key})", key)
    try:
        pattern = pattern_from_hf(obj.get("pre_tokenizer"))
    except ValueError as e:
        fail(str(e), "pre_tokenizer")
    problem = _post_processor_problem(obj.get("post_processor"))
    if problem:
        fail(f"post_processor {problem} is not supported (it adds tokens to the ids)", "post_processor")
    decoder = obj.get("decoder")
    if decoder is not None and (not isinstance(decoder, dict) or decoder.get("type") != "ByteLevel"):
        what = decoder.get("type") if isinstance(decoder, dict) else decoder
        fail(f"decoder {what!r} is not supported (it does not undo the byte-level mapping); only ByteLevel", "decoder")
    if model.get("dropout") not in (None, 0, 0.0):
        fail(f"BPE dropout {model['dropout']!r} is not supported (encoding would be random)", "model", "dropout")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key) not in (None, ""):
            fail(f"BPE {key} {model[key]!r} is not supported (byte-level BPE has none)", "model", key)
    for key in ("byte_fallback", "ignore_merges"):
        if model.get(key, False) is not False:
            fail(f"BPE {key}=true is not supported", "model", key)

    # 1. Added tokens: text -> id.
    added = obj.get("added_tokens", [])
    if not isinstance(added, list):
        fail("added_tokens must be a list", "added_tokens")
    specials: dict[str, int] = {}
    used: dict[int, str] = {}
    for i, tok in enumerate(added):
        if not isinstance(tok, dict) or not isinstance(tok.get("content"), str) or not tok["content"]:
            fail(f"added token {i} must be an object with a non-empty content string", "added_tokens", i)
        content = tok["content"]
        idx = _check_id(path, text, ["added_tokens", i], tok.get("id"), f"added token {content!r}")
        for flag in ("single_word", "lstrip", "rstrip"):
            if tok.get(flag, False):
                fail(f"added token {content!r} has {flag}=true, which bpe336 cannot honour", "added_tokens", i, flag)
        if idx in used or content in specials:
            fail(f"added token {content!r} repeats id {idx} or its text", "added_tokens", i)
        specials[content] = idx
        used[idx] = content

    # 2. Merges: ["a", "b"] pairs (tokenizers >= 0.20) or "a b" strings (older).
    keys = model.get("vocab")
    if not isinstance(keys, dict):
        fail("model.vocab must be an object {token: id}", "model", "vocab")
    raw = model.get("merges")
    if not isinstance(raw, list):
        fail("model.merges must be a list", "model", "merges")
    merge_keys: list[tuple[str, str]] = []
    for i, m in enumerate(raw):
        parts = m.split(" ") if isinstance(m, str) else m
        if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) and p for p in parts)):
            fail(f"merge {i} must be two tokens, got {m!r}", "model", "merges", i)
        for p in parts:
            if p not in keys or not is_byte_level(p):
                fail(f"merge {i} ({parts[0]!r} + {parts[1]!r}): {p!r} is not a byte-level token of model.vocab", "model", "merges", i)
        if parts[0] + parts[1] not in keys:
            fail(f"merge {i} ({parts[0]!r} + {parts[1]!r}): the result {parts[0] + parts[1]!r} is not in model.vocab", "model", "merges", i)
        merge_keys.append((parts[0], parts[1]))
    reachable = {a + b for a, b in merge_keys}  # keys BPE can produce, beside single bytes

    # 3. model.vocab: byte-level keys, plus added tokens under their text.
    out = _VocabBuilder(path, text, ["model", "vocab"])
    for key, idx in keys.items():
        _check_id(path, text, ["model", "vocab", key], idx, f"token {key!r}")
        as_bytes = decode_token(key) if is_byte_level(key) else None
        if key in specials:
            if specials[key] != idx:
                fail(
                    f"added token {key!r} has id {specials[key]} but model.vocab gives it id {idx}",
                    "added_tokens",
                    list(specials).index(key),
                    "id",
                )
            if as_bytes is not None and as_bytes != key.encode("utf-8") and (len(as_bytes) == 1 or key in reachable):
                fail(
                    f"id {idx} is both the added token {key!r} and the byte-level token {as_bytes!r} (one id, two spellings)",
                    "model",
                    "vocab",
                    key,
                )
            out.put(idx, key.encode("utf-8"), key)
        elif as_bytes is not None:
            out.put(idx, as_bytes, key)
        else:
            fail(f"model.vocab key {key!r} is neither a byte-level token string nor an added token", "model", "vocab", key)
    vocab = out.vocab
    dups = model.get("bpe336_duplicates", {})
    if not isinstance(dups, dict):
        fail("model.bpe336_duplicates must be an object {id: token}", "model", "bpe336_duplicates")
    for k, v in dups.items():
        idx = _id_key(k)
        if idx is None or not isinstance(v, str) or not is_byte_level(v) or idx in vocab:
            fail(
                f"model.bpe336_duplicates entry {k[:80]!r}: {v!r} must give an unused id a byte-level token",
                "model",
                "bpe336_duplicates",
                k,
            )
        vocab[idx] = decode_token(v)
    for content, idx in specials.items():
        have = vocab.get(idx)
        if have is None:
            vocab[idx] = content.encode("utf-8")
        elif have != content.encode("utf-8"):
            fail(
                f"added token {content!r} has id {idx}, which model.vocab gives to {_show(have)}",
                "added_tokens",
                list(specials).index(content),
            )
    merges: Merges = [(decode_token(a), decode_token(b)) for a, b in merge_keys]
    return TokenizerData(vocab, merges, specials, pattern, path)


# ---------------------------------------------------------------------------------------------
# tiktoken .tiktoken ranks
# ---------------------------------------------------------------------------------------------
#
# tiktoken merges, in each pre-token, the adjacent pair whose *concatenation* has the lowest rank
# (token id); bpe336 merges the pair with the lowest *merge* rank. The two agree on every input
# when (1) every multi-byte token is the result of exactly one merge and its rank order is the
# merge order, and (2) for every merge j, BPE with merges 1..j-1 alone turns the bytes of its
# result t_j into exactly its two parts ("C").
#
# Why (sketch): boundaries only disappear, so a segment whose two ends are token boundaries at
# step k was one at every earlier step, and within it left-to-right merging does not depend on
# the context (a pair straddling an end would have removed that end). If some state had an
# adjacent pair r, s with r + s = t_j (j <= k) and (r, s) != (p_j, q_j), the segment r + s would
# be tokenized at step j - 1 with a boundary at |r|, but C says it is [p_j, q_j] there: a
# contradiction. So tiktoken never sees a pair of lower rank than ours (nor a "phantom" pair of
# equal rank), ties resolve leftmost first in both, and the runs coincide step by step; and by C
# every token encodes to itself, so tiktoken's whole-piece shortcut agrees too.
#
# Every tokenizer `train_bpe` produces satisfies (1) and (2): merge j was applied to a segment of
# a training word whose ends were boundaries, so by the same context-freeness t_j alone is
# [p_j, q_j] after step j - 1 (and a second merge making t_j would need the pair r, s above).
# So train_bpe cannot create the same bytes by two different merges. `check_rank_consistent`
# checks (1) and (2) for any tokenizer before writing a .tiktoken file, so a hand-made merge list
# that tiktoken would read differently is refused rather than written.


def _bpe_parts(token: bytes, rank: Mapping, limit: int, by_pair: bool) -> list[bytes]:
    """Merge the bytes of `token` by lowest rank below `limit`, leftmost on ties: by the rank of
    the pair (bpe336, `rank` maps pairs) or of the concatenation (tiktoken, `rank` maps bytes).
    e.g. (b'abc', {(b'a', b'b'): 0}, 1, True) -> [b'ab', b'c']."""
    parts = [token[i : i + 1] for i in range(len(token))]

    def rank_at(i: int) -> int:
        r = rank.get((parts[i], parts[i + 1]) if by_pair else parts[i] + parts[i + 1], limit)
        return r if r < limit else limit

    ranks = [rank_at(i) for i in range(len(parts) - 1)]
    while ranks:
        best = min(ranks)
        if best >= limit:
            break
        i = ranks.index(best)  # leftmost
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del ranks[i]
        if i < len(ranks):
            ranks[i] = rank_at(i)
        if i > 0:
            ranks[i - 1] = rank_at(i - 1)
    return parts


def check_rank_consistent(
    vocab: Vocab, merges: Merges, special_ids: Iterable[int] = (), encode: Callable[[str], list[int]] | None = None
) -> None:
    """Raise ValueError unless tiktoken's rank-of-result merging gives our ids on every input
    (conditions (1) and (2) above), naming the first merge that breaks them.

    `encode` (a Tokenizer's encode_ordinary) is a fast path for (2): once every merge's parts
    come from earlier merges and results are unique, "BPE of t_j with merges 1..j-1 is
    [p_j, q_j]" holds exactly when t_j alone encodes to its own id (the last merge of that run
    must be the only one making t_j, and nothing of higher rank could have run before it). Tokens
    that are not UTF-8, or that the pre-tokenizer splits, take the slow simulation."""
    ids: dict[bytes, int] = {}
    specials = set(special_ids)
    for idx in sorted(vocab):
        if idx not in specials:
            ids.setdefault(vocab[idx], idx)

    def refuse(j: int, why: str) -> None:
        a, b = merges[j]
        raise ValueError(f"merge {j} ({_show(a)} + {_show(b)}): {why}; a .tiktoken file would encode differently from this tokenizer")

    # 1. Unique results, ranks in merge order, parts made earlier.
    pair_rank: dict[tuple[bytes, bytes], int] = {}
    made: set[bytes] = set()
    last = -1
    for j, (a, b) in enumerate(merges):
        t = a + b
        if t in made:
            refuse(j, f"its result {_show(t)} is also made by an earlier merge")
        if ids.get(t, -1) <= last:
            refuse(j, f"its result {_show(t)} has id {ids.get(t)}, not above the previous merge's result (tiktoken ranks by id)")
        for part in (a, b):
            if len(part) > 1 and part not in made:
                refuse(j, f"its part {_show(part)} is made by no earlier merge")
        made.add(t)
        last = ids[t]
        pair_rank.setdefault((a, b), j)
    for t, idx in ids.items():
        if len(t) > 1 and t not in made:
            raise ValueError(
                f"token {idx} ({_show(t)}) is made by no merge; tiktoken would still produce it, so a .tiktoken file would encode differently"
            )
    # 2. Each result is reached through its own merge ("C").
    for j, (a, b) in enumerate(merges):
        t = a + b
        if encode is not None:
            try:
                if encode(t.decode("utf-8")) == [ids[t]]:
                    continue
            except ValueError:  # not UTF-8, or a custom regex that failed on it: simulate
                pass
        if _bpe_parts(t, pair_rank, j, by_pair=True) != [a, b]:
            refuse(
                j,
                f"the earlier merges already split {_show(t)} otherwise, so tiktoken (which merges by the result's rank) could reach it another way",
            )


def _same_pattern(given: str, recorded: str) -> bool:
    """`pattern.same_pattern`, where a recorded regex that does not compile is compared as a
    string (the tokenizer built from it then reports it, naming the file)."""
    try:
        return same_pattern(given, recorded)
    except ValueError:
        return given == recorded


def tiktoken_sidecar_path(path: str | os.PathLike) -> Path:
    """`NAME.tiktoken` -> `NAME.tiktoken.json`, where the special tokens and pattern live."""
    path = Path(path)
    return path.with_name(path.name + TIKTOKEN_SIDECAR_SUFFIX)


def write_tiktoken(path: str | os.PathLike, data: TokenizerData, encode: Callable[[str], list[int]] | None = None) -> None:
    """Write `NAME.tiktoken` (`base64(token) id` per line, every token but the specials) and its
    sidecar `NAME.tiktoken.json` (specials with ids, pattern, the rank file's sha256). Two files
    cannot be replaced in one step, so the sidecar goes first: a save interrupted between the two
    leaves a sidecar whose checksum the old rank file fails (a clear error on load), or, where
    there was no rank file, none at all; never new ranks that load without their specials. Raises
    ValueError when tiktoken would encode differently (`check_rank_consistent`) or the vocabulary
    repeats a token (a rank file maps each token to one rank)."""
    path = Path(path)
    special_ids = set(data.special_tokens.values())
    # Ranks: every ordinary token, plus a special's id only where the merges need its bytes and
    # no ordinary id has them (a special declared over an existing token, e.g. 'Hello').
    used = _merge_tokens(data.merges)
    ordinary = {data.vocab[i] for i in data.vocab if i not in special_ids}
    rank_ids = [
        idx
        for idx in sorted(data.vocab)
        if idx not in special_ids or ((len(data.vocab[idx]) == 1 or data.vocab[idx] in used) and data.vocab[idx] not in ordinary)
    ]
    seen: dict[bytes, int] = {}
    for idx in rank_ids:
        t = data.vocab[idx]
        if t in seen:
            raise ValueError(f"ids {seen[t]} and {idx} are both {_show(t)}; a .tiktoken file maps each token to one rank")
        seen[t] = idx
    check_rank_consistent(data.vocab, data.merges, special_ids - set(rank_ids), encode)
    ranks = "".join(f"{base64.b64encode(data.vocab[idx]).decode('ascii')} {idx}\n" for idx in rank_ids).encode("ascii")
    check_output_file(path)  # a bad rank-file target fails before the sidecar is replaced
    _write_json(tiktoken_sidecar_path(path), _sidecar(data, {}, {path.name: hashlib.sha256(ranks).hexdigest()}))
    with atomic_write(path, "wb") as f:
        f.write(ranks)


def read_tiktoken(
    path: str | os.PathLike, special_tokens: Mapping[str, int] | Iterable[str] | None = None, pattern: str | None = None
) -> TokenizerData:
    """Read `NAME.tiktoken`, with the special tokens and pattern from `NAME.tiktoken.json` when it
    exists, else from the arguments (`special_tokens` as {text: id} like tiktoken's, or texts that
    get the next free ids). The merges are rebuilt from the ranks (each token's bytes merged by
    tiktoken's rule with the lower ranks must give exactly two parts), then checked with
    `check_rank_consistent`, so the ids equal tiktoken's. A pattern is required: a rank file does
    not record one, and guessing would silently change the ids."""
    path = Path(path)
    raw = check_input_file(path).read_bytes()
    ranks: dict[bytes, int] = {}
    vocab: Vocab = {}
    lines: dict[int, int] = {}
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise TokenizerFileError(path, f"expected 'base64-token rank', got {line[:80]!r}", lineno)
        try:
            token = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError):
            raise TokenizerFileError(path, f"{parts[0][:80].decode('latin-1')!r} is not base64", lineno) from None
        idx = int(parts[1]) if len(parts[1]) <= len(str(MAX_ID)) else MAX_ID + 1  # int() refuses 4,300+ digits
        if not token or idx > MAX_ID:
            raise TokenizerFileError(path, f"empty token or rank {parts[1][:80].decode()} out of range", lineno)
        if token in ranks or idx in vocab:
            raise TokenizerFileError(path, f"token {_show(token)} or rank {idx} appears twice", lineno)
        ranks[token] = idx
        vocab[idx] = token
        lines[idx] = lineno
    if not vocab:
        raise TokenizerFileError(path, "no ranks (empty file)")

    # Merges in rank order, each the two parts tiktoken's rule leaves below the token's rank.
    merges: Merges = []
    for idx in sorted(vocab):
        token = vocab[idx]
        if len(token) < 2:
            continue
        parts = _bpe_parts(token, ranks, idx, by_pair=False)
        if len(parts) != 2:
            raise TokenizerFileError(
                path, f"token {_show(token)} (rank {idx}) cannot be built by merging two lower-ranked tokens", lines[idx]
            )
        merges.append((parts[0], parts[1]))
    side = tiktoken_sidecar_path(path)
    specials: dict[str, int] = {}
    ours = False  # written by write_tiktoken, which checked the ranks (the checksum proves it)
    if side.exists():
        info = read_sidecar(side)
        _verify_checksums(side, info["sha256"], [path])
        ours = path.name in info["sha256"]
        if any(v is None for v in info["special_tokens"].values()):
            raise TokenizerFileError(side, "special tokens need ids")
        specials = dict(info["special_tokens"])
        if pattern is not None and info["pattern"] is not None and not _same_pattern(pattern, info["pattern"]):
            raise TokenizerFileError(side, f"records the pattern {info['pattern']!r}, not the pattern {pattern!r} given")
        pattern = pattern or info["pattern"]
    if not ours:
        try:
            check_rank_consistent(vocab, merges)
        except ValueError as e:
            raise TokenizerFileError(path, str(e)) from None
    if special_tokens is not None:
        if isinstance(special_tokens, Mapping):
            specials.update(special_tokens)
        else:
            for s in special_tokens:
                specials.setdefault(s, max(vocab.keys() | set(specials.values())) + 1)
    if pattern is None:
        raise TokenizerFileError(
            path,
            f"a .tiktoken file does not record its pre-tokenization pattern: pass pattern= ('gpt2', 'cl100k', 'o200k' or the regex) or write {side.name} beside it",
        )
    _special_ids(specials, vocab, side if side.exists() else path)
    return TokenizerData(vocab, merges, specials, pattern, path)


# ---------------------------------------------------------------------------------------------
# The retired single-file format (read only)
# ---------------------------------------------------------------------------------------------


def read_legacy_json(path: Path, text: str, data: dict) -> TokenizerData:
    """Read a `bpe336-tokenizer` file (bpe336 0.1's Tokenizer.save("x.json")). Every token is
    byte-level, so it is exact; the specials' ids are the lowest with their bytes."""

    def fail(reason: str, *keys: str | int):
        raise TokenizerFileError(path, reason, _json_line(text, keys) if keys else None)

    if data.get("version") != 1:
        fail(f"unsupported {LEGACY_FORMAT} version {data.get('version')!r} (this reader knows 1)", "version")
    if data.get("byte_encoding") != "gpt2":
        fail(f"unsupported byte_encoding {data.get('byte_encoding')!r} (expected 'gpt2')", "byte_encoding")
    specials = data.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
        fail("special_tokens must be a list of non-empty strings", "special_tokens")
    pattern = data.get("pattern")
    if pattern is not None and not isinstance(pattern, str):
        fail("pattern must be a string", "pattern")
    raw_vocab, raw_merges = data.get("vocab"), data.get("merges")
    if not isinstance(raw_vocab, list):
        fail("'vocab' must be a list", "vocab")
    if not isinstance(raw_merges, list):
        fail("'merges' must be a list", "merges")
    vocab: Vocab = {}
    for i, entry in enumerate(raw_vocab):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
            fail(f"vocab entry {i} must be [id, token string], got {entry!r}", "vocab", i)
        idx = _check_id(path, text, ["vocab", i], entry[0], f"vocab entry {i}")
        if idx in vocab:
            fail(f"vocab entry {i}: id {idx} is used twice", "vocab", i)
        try:
            vocab[idx] = decode_token(entry[1])
        except ValueError as e:
            fail(f"vocab entry {i}: {e}", "vocab", i)
    merges: Merges = []
    for i, entry in enumerate(raw_merges):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(t, str) and t for t in entry)):
            fail(f"merge {i} must be [left token, right token], got {entry!r}", "merges", i)
        try:
            merges.append((decode_token(entry[0]), decode_token(entry[1])))
        except ValueError as e:
            fail(f"merge {i}: {e}", "merges", i)
    _check_merges(vocab, merges, lambda i: (path, _json_line(text, ["merges", i])))
    ids: dict[str, int] = {}
    for s in specials:
        b = s.encode("utf-8")
        found = [i for i, t in vocab.items() if t == b]
        ids[s] = min(found) if found else max(vocab.keys() | set(ids.values()), default=-1) + 1
        vocab.setdefault(ids[s], b)
    return TokenizerData(vocab, merges, ids, pattern, path)


# ---------------------------------------------------------------------------------------------
# Paths: which format, and whole directories
# ---------------------------------------------------------------------------------------------


def read_json_tokenizer(path: str | os.PathLike) -> TokenizerData:
    """A `.json` tokenizer file: Hugging Face's tokenizer.json or the retired bpe336 format,
    told apart by content; anything else is refused with what it looks like."""
    path = Path(path)
    text = _read_text(path, "tokenizer file")
    obj = _parse_json(path, text, "tokenizer file")
    if isinstance(obj, dict) and obj.get("format") == LEGACY_FORMAT:
        return read_legacy_json(path, text, obj)
    if isinstance(obj, dict) and "model" in obj:
        return _hf_from_dict(path, text, obj)
    if isinstance(obj, dict) and obj.get("format") == SIDECAR_FORMAT:
        raise TokenizerFileError(path, "this is a bpe336 sidecar; load the directory or the .tiktoken file it belongs to")
    if isinstance(obj, dict) and obj and all(isinstance(v, int) for v in obj.values()):
        raise TokenizerFileError(
            path, "this looks like a GPT-2 vocab.json; load it with its merges.txt (Tokenizer.from_files) or load its directory"
        )
    raise TokenizerFileError(path, "not a tokenizer file (neither a Hugging Face tokenizer.json nor a bpe336-tokenizer file)", 1)


def _transformers_specials(directory: Path) -> dict[str, int] | None:
    """Special tokens with ids from what transformers' save_pretrained writes beside a GPT-2
    pair (`added_tokens.json`, `added_tokens_decoder` in tokenizer_config.json); None if none."""
    found: dict[str, int] = {}
    seen = False
    added = directory / "added_tokens.json"
    if added.is_file():
        seen = True
        text = _read_text(added, "added_tokens.json")
        obj = _parse_json(added, text, "added_tokens.json")
        if not isinstance(obj, dict):
            raise TokenizerFileError(added, "must be an object {token: id}", 1)
        for s, idx in obj.items():
            found[s] = _check_id(added, text, [s], idx, f"token {s!r}")
    config = directory / HF_CONFIG_FILE
    if config.is_file():
        text = _read_text(config, HF_CONFIG_FILE)
        obj = _parse_json(config, text, HF_CONFIG_FILE)
        decoder = obj.get("added_tokens_decoder") if isinstance(obj, dict) else None
        if isinstance(decoder, dict):
            seen = True
            for k, tok in decoder.items():
                if _id_key(k) is None or not isinstance(tok, dict) or not isinstance(tok.get("content"), str):
                    raise TokenizerFileError(
                        config,
                        f"added_tokens_decoder entry {k!r} must map an id to {{'content': ...}}",
                        _json_line(text, ["added_tokens_decoder", k]),
                    )
                found.setdefault(tok["content"], _id_key(k))
    return found if seen else None


_OTHER_MODELS = (
    ("tokenizer.model", "a SentencePiece model"),
    ("spiece.model", "a SentencePiece model"),
    ("sentencepiece.bpe.model", "a SentencePiece model"),
    ("vocab.txt", "a WordPiece vocabulary (BERT-style)"),
)


def _check_transformers_class(directory: Path) -> None:
    """Refuse, by name, a transformers tokenizer class that is not plain byte-level BPE."""
    config = directory / HF_CONFIG_FILE
    if not config.is_file():
        return
    text = _read_text(config, HF_CONFIG_FILE)
    obj = _parse_json(config, text, HF_CONFIG_FILE)
    cls = obj.get("tokenizer_class") if isinstance(obj, dict) else None
    ok = {None, "PreTrainedTokenizerFast", "TokenizersBackend", "GPT2Tokenizer", "GPT2TokenizerFast"}
    if cls not in ok:
        raise TokenizerFileError(
            config,
            f"tokenizer_class {cls!r} is not a plain byte-level BPE tokenizer bpe336 can reproduce",
            _json_line(text, ["tokenizer_class"]),
        )


def read_tokenizer_directory(directory: str | os.PathLike, special_tokens: Iterable[str] = ()) -> TokenizerData:
    """A tokenizer directory, by what it holds, first match wins:
    1. `tokenizer.json` (written by bpe336 or by transformers' save_pretrained): read alone, so a
       directory is one self-contained file to its reader.
    2. `vocab.json` + `merges.txt` + our `special_tokens.json` sidecar: exact (checksums verified).
    3. `vocab.json` + `merges.txt` from transformers (specials with ids from `added_tokens.json`
       or tokenizer_config.json's `added_tokens_decoder`).
    4. A bare GPT-2 pair: specials are the keys that are not byte-level strings plus
       `special_tokens`, or, when none are given, plus the multi-byte tokens no merge produces
       (GPT-2's own files mark `<|endoftext|>` only that way).
    Folders of other tokenizer kinds (SentencePiece, WordPiece) are refused by name."""
    directory = Path(directory)
    if (directory / HF_FILE).exists():
        _check_transformers_class(directory)
        return read_hf_tokenizer(directory / HF_FILE)
    vocab_path, merges_path = directory / VOCAB_FILE, directory / MERGES_FILE
    if not vocab_path.exists() or not merges_path.exists():
        for name, what in _OTHER_MODELS:
            if (directory / name).exists():
                raise TokenizerFileError(directory / name, f"{what}, not a byte-level BPE; bpe336 cannot load it")
        raise FileNotFoundError(2, f"{directory}: no tokenizer here (expected {HF_FILE}, or {VOCAB_FILE} and {MERGES_FILE})")
    _check_transformers_class(directory)
    sidecar = directory / SIDECAR_FILE
    if sidecar.exists():
        return read_gpt2_pair(vocab_path, merges_path, sidecar_path=sidecar)
    known = _transformers_specials(directory)
    if known is not None:
        data = read_gpt2_pair(vocab_path, merges_path, list(known))
        _special_ids(known, data.vocab, directory / "added_tokens.json")
        data.special_tokens = {**known, **{s: i for s, i in data.special_tokens.items() if s not in known}}
        return data
    listed = list(special_tokens)
    data = read_gpt2_pair(vocab_path, merges_path, listed)
    if listed:
        return data  # the caller named the specials: nothing is inferred
    made = {a + b for a, b in data.merges}
    for idx in sorted(data.vocab):
        t = data.vocab[idx]
        if len(t) > 1 and t not in made and idx not in data.special_tokens.values():
            try:
                data.special_tokens[t.decode("utf-8")] = idx
            except UnicodeDecodeError:
                pass  # not text, so not a special token: an ordinary token BPE never makes
    return data


def write_tokenizer_files(directory: str | os.PathLike, data: TokenizerData, *, hf: bool = True) -> list[str]:
    """Write every file of a tokenizer directory into `directory` (which the caller publishes as
    one unit, e.g. inside `atomic_directory`): the GPT-2 pair with its sidecar, and, with `hf`,
    tokenizer.json, tokenizer_config.json and special_tokens_map.json. When a special token is
    spelled like another token (see `vocab_keys`) the Hugging Face files are left out (with the
    reason in the returned list's last entry, prefixed "skipped:"). Returns the names written."""
    directory = Path(directory)
    write_gpt2_pair(directory, data)
    names = [VOCAB_FILE, MERGES_FILE, SIDECAR_FILE]
    if hf:
        try:
            obj = hf_tokenizer_dict(data)
        except ValueError as e:
            return [
                *names,
                f"skipped: {HF_FILE}, {HF_CONFIG_FILE} and {HF_SPECIAL_MAP_FILE}, so Hugging Face tools cannot load this directory: {e}",
            ]
        _write_hf(directory / HF_FILE, obj)
        config, special_map = _hf_config(data)
        _write_json(directory / HF_CONFIG_FILE, config, indent=2)
        _write_json(directory / HF_SPECIAL_MAP_FILE, special_map, indent=2)
        names += [HF_FILE, HF_CONFIG_FILE, HF_SPECIAL_MAP_FILE]
    return names

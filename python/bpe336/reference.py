"""A slow, obviously correct pure-Python BPE trainer: the test oracle for `train_bpe`.

It follows SPEC §1 literally and recounts every pair from scratch in every round, so it is only
for small corpora (tens of kilobytes). Pre-tokens are Python `regex` module matches of the
pattern (`findall`: text no match covers is dropped, as tiktoken does); the named patterns'
regexes are written out here from tiktoken and SPEC, independent of the package. Never imported
by the package at runtime.

    vocab, merges = train_bpe_reference(text, vocab_size=300, special_tokens=["<|endoftext|>"], pattern="cl100k")
"""

from __future__ import annotations

from collections import Counter

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken's cl100k_base and o200k_base pattern strings.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
NAMED_PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN, "o200k": O200K_PATTERN}


def split_specials(text: str, special_tokens: list[str]) -> list[str]:
    """The ordinary-text pieces between special tokens (matched longest first, left to right).

    split_specials("a<s>b", ["<s>"]) -> ["a", "b"]
    """
    if not special_tokens:
        return [text]
    by_length = sorted(special_tokens, key=len, reverse=True)
    pattern = "|".join(regex.escape(s) for s in by_length)
    return regex.split(pattern, text)


def pretokenize(text: str, pattern: str = "gpt2") -> list[str]:
    """Pre-tokens of ordinary text: the matches of the pattern (a name or a regex).

    pretokenize("it's ok") -> ["it", "'s", " ok"]; pretokenize("ab 12", "[a-z]+") -> ["ab"]"""
    return regex.findall(NAMED_PATTERNS.get(pattern, pattern), text)


def count_pretokens(text: str, special_tokens: list[str], pattern: str = "gpt2") -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for piece in split_specials(text, special_tokens):
        counts.update(p.encode("utf-8") for p in pretokenize(piece, pattern))
    return counts


def merge_word(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    """Replace each occurrence of `pair`, left to right.

    merge_word((b"a", b"a", b"a"), (b"a", b"a")) -> (b"aa", b"a")
    """
    out: list[bytes] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe_reference(
    text: str, vocab_size: int, special_tokens: list[str] | tuple[str, ...] = (), pattern: str = "gpt2"
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train on `text`; same contract as `bpe336.train_bpe` (ids: specials, bytes, merges)."""
    specials = list(special_tokens)
    vocab: dict[int, bytes] = {i: s.encode("utf-8") for i, s in enumerate(specials)}
    for b in range(256):
        vocab[len(vocab)] = bytes([b])
    words: dict[tuple[bytes, ...], int] = {}
    for token, count in count_pretokens(text, specials, pattern).items():
        key = tuple(bytes([b]) for b in token)
        words[key] = words.get(key, 0) + count
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        # Most frequent; ties to the greatest (bytes_a, bytes_b) as Python compares tuples.
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        merged: dict[tuple[bytes, ...], int] = {}
        for word, count in words.items():
            new = merge_word(word, best)
            merged[new] = merged.get(new, 0) + count
        words = merged
    return vocab, merges

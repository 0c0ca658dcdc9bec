"""Training with each pattern (gpt2, cl100k, o200k, and custom regexes, one of which leaves text
unmatched): from a file, from an iterator, with tiny chunks (many cuts) and with 1 and 2 threads
the vocab and merges are identical, on random Unicode with special tokens and on the shared
corpora; on small inputs they are exactly what the pure-Python reference trainer gives
(`bpe336.reference`, which runs the pattern with Python's `regex` module).

Random text draws from scripts whose categories `regex` and the core's Unicode tables agree on
(see test_patterns.py for the few code points newer Unicode moved).

    cd tests && python -m pytest -q bpe336/test_pattern_training.py
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from testdata import DATA, EOT, FIXTURES, needs_file, needs_shared

from bpe336 import Tokenizer, train_bpe, train_bpe_from_iterator
from bpe336.pattern import PATTERNS
from bpe336.reference import train_bpe_reference

# Covers every character; a lookahead, so no rule could cut inside its text.
CUSTOM_ALL = r"\p{L}+(?=\s)|\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]+|\s+"
# Drops what it does not match (tiktoken's semantics): digits and Latin letters only.
CUSTOM_SOME = r"[A-Za-z]+| ?\p{N}+"
ALL_PATTERNS = [*PATTERNS, CUSTOM_ALL, CUSTOM_SOME]
IDS = ["gpt2", "cl100k", "o200k", "custom", "custom-partial"]

SPECIALS = [EOT, "<|x|>", "ab", " the"]
# Every branch of the named patterns: contractions in both cases, apostrophes, `/`, kinds of
# whitespace and line breaks, case classes, marks, digits of several scripts, CJK, emoji.
TRICKY = list("sdmtlvreSDMTLVRE'/.,!-  \n\n\t\r\x0b\xa0\u3000\u2028éÉßΩωЖжǅʰª\u0301\u094dकก²½٣३中文。のカ한😀") + [
    "'s",
    "'LL",
    "n't",
    "\r\n",
    " \n",
    "123456",
    "HTMLParser",
    "<|",
    "|>",
    "<|x",
    "a",
    "b",
    " ",
]
BLOCKS = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x3B1, 0x3C9), (0x430, 0x44F), (0x4E00, 0x4E40), (0x905, 0x939), (0x627, 0x64A)]


def random_text(rng: random.Random, n_chars: int, specials: list[str] = ()) -> str:
    parts: list[str] = []
    size = 0
    while size < n_chars:
        r = rng.random()
        if specials and r < 0.04:
            p = rng.choice(specials)
        elif r < 0.5:
            p = rng.choice(TRICKY)
        else:
            lo, hi = rng.choice(BLOCKS)
            p = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.5:
                p = " " + p
        parts.append(p)
        size += len(p)
    return "".join(parts)


def train_every_way(text: str, vocab_size: int, specials: list[str], pattern: str, tmp_path: Path):
    """Trains from a file (one chunk; tiny chunks on 1 and 2 threads) and from an iterator;
    asserts they agree and returns the result."""
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    whole = train_bpe(path, vocab_size, specials, pattern=pattern, chunk_size=1 << 30, num_threads=1)
    for chunk_size, threads in [(1, 2), (7, 1), (97, 2), (4096, 2)]:
        got = train_bpe(path, vocab_size, specials, pattern=pattern, chunk_size=chunk_size, num_threads=threads)
        assert got == whole, (pattern, chunk_size, threads)
    pieces = [text[i : i + 113] for i in range(0, len(text), 113)]
    assert train_bpe_from_iterator(iter(pieces), vocab_size, specials, pattern=pattern, chunk_size=50) == whole
    return whole


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_random_unicode_with_specials_equals_the_reference(pattern, tmp_path):
    rng = random.Random(ALL_PATTERNS.index(pattern))
    for _ in range(4):
        specials = rng.sample(SPECIALS, rng.randint(0, len(SPECIALS)))
        text = random_text(rng, rng.randint(300, 2500), specials) + " x1"
        vocab_size = 256 + len(specials) + rng.randint(10, 80)
        ours = train_every_way(text, vocab_size, specials, pattern, tmp_path)
        assert ours == train_bpe_reference(text, vocab_size, specials, pattern=pattern)


@needs_shared
@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_fixtures_equal_the_reference(pattern, tmp_path):
    text = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8") + (FIXTURES / "german.txt").read_text(encoding="utf-8")
    ours = train_every_way(text, 400, [EOT], pattern, tmp_path)
    assert ours == train_bpe_reference(text, 400, [EOT], pattern=pattern)


@pytest.mark.parametrize(
    ("corpus", "size"),
    [
        pytest.param(FIXTURES / "corpus.en", 140_000, marks=needs_file(FIXTURES / "corpus.en")),
        pytest.param(DATA / "kjv.txt", 400_000, marks=needs_file(DATA / "kjv.txt")),
    ],
    ids=["corpus.en", "kjv"],
)
@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_shared_corpora_every_way(corpus, size, pattern, tmp_path):
    with open(corpus, encoding="utf-8") as f:
        text = f.read(size)
    vocab, merges = train_every_way(text, 600, [EOT], pattern, tmp_path)
    assert len(merges) == 600 - 257
    # The pattern shapes the tokens: cl100k and o200k never join digits in runs over three, and
    # a token never starts with the space of a digit group.
    if pattern in ("cl100k", "o200k"):
        assert not any(t[:1] == b" " and t[1:2].isdigit() for t in vocab.values())


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_webtext_slice_every_way(pattern, tmp_path):
    with open(DATA / "webtext.txt", encoding="utf-8") as f:
        text = f.read(4_000_000)
    train_every_way(text, 2000, [EOT], pattern, tmp_path)


def test_patterns_train_different_tokenizers(tmp_path):
    """A test that could fail: the pattern reaches the counts (digit groups, contractions, case)."""
    text = "HTMLParser's value is 1234567; DON'T STOP. " * 50
    results = {p: train_bpe_from_iterator([text], 256 + 200, pattern=p) for p in ALL_PATTERNS}
    merges = {p: m for p, (_, m) in results.items()}
    assert len({tuple(m) for m in merges.values()}) == len(ALL_PATTERNS)
    tokens = {p: set(v.values()) for p, (v, _) in results.items()}
    assert b" 1234567" in tokens["gpt2"] and b"1234567" not in tokens["cl100k"] and b"123" in tokens["cl100k"]
    assert b"'s" in tokens["cl100k"] and b"HTMLParser's" in tokens["o200k"] and b"HTMLParser's" not in tokens["gpt2"]
    assert b"12" in tokens[CUSTOM_ALL] and b"123" not in tokens[CUSTOM_ALL] and b" DON" not in tokens[CUSTOM_ALL]
    assert b" 1234567" in tokens[CUSTOM_SOME] and not any(b" v" in t or b"'" in t for t in tokens[CUSTOM_SOME] if len(t) > 1)


def test_custom_pattern_without_specials_streams_the_whole_text(tmp_path):
    """No safe cut inside text: the stream is counted as one chunk whatever the chunk size, and
    nothing hangs or differs."""
    rng = random.Random(5)
    text = random_text(rng, 300_000)
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    whole = train_bpe(path, 300, pattern=CUSTOM_ALL)
    assert train_bpe(path, 300, pattern=CUSTOM_ALL, chunk_size=1, num_threads=2) == whole
    assert (
        train_bpe_from_iterator(iter(text[i : i + 999] for i in range(0, len(text), 999)), 300, pattern=CUSTOM_ALL, chunk_size=64) == whole
    )


def test_a_tokenizer_from_a_pattern_encodes_its_training_text_exactly(tmp_path):
    rng = random.Random(11)
    text = random_text(rng, 20_000, [EOT])
    for pattern in ALL_PATTERNS:
        vocab, merges = train_bpe_from_iterator([text], 500, [EOT], pattern=pattern)
        tok = Tokenizer(vocab, merges, [EOT], pattern=pattern)
        ids = tok.encode(text)
        if pattern == CUSTOM_SOME:  # unmatched text is dropped, as tiktoken drops it
            assert len(tok.decode(ids)) < len(text)
        else:
            assert tok.decode(ids) == text

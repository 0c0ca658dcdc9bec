"""Encoding with each pattern: with a pattern and ranks, our ids equal
`tiktoken.Encoding(pat_str=<the regex>, mergeable_ranks=<our ranks>, special_tokens=...)` on any
text, for tokenizers trained with that pattern (on the fixtures, and on random Unicode with
special tokens) and for tokenizers read from a `.tiktoken` rank file; and every streaming and
parallel path (`encode_iterable`, `encode_file`, `encode_to_numpy`, `encode_batch`) equals
`encode`, on Cyrillic and CJK streams too.

    cd tests && python -m pytest -q bpe336/test_pattern_encoding.py
"""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA, EOT, FIXTURES, SHARED, needs_shared

from bpe336 import Tokenizer, train_bpe_from_iterator
from bpe336.pattern import PATTERNS

# Drops what it does not match, as tiktoken does.
CUSTOM_SOME = r"[A-Za-z]+| ?\p{N}+|[^\s\p{L}\p{N}]"
ALL_PATTERNS = [*PATTERNS, CUSTOM_SOME]
IDS = ["gpt2", "cl100k", "o200k", "custom-partial"]
SPECIALS = [EOT, "<|x|>"]

TRICKY = (
    "sdmtlvreSDMTLVRE'/.,!-  \n\n\t\r\x0b\xa0\u3000\u2028éÉßΩωЖжǅʰª\u0301\u094dकก²½٣३中文。のカ한😀abcdefghijklmnopqrstuvwxyz0123456789"
)
words = st.sampled_from(["'s", "'LL", "n't", "\r\n", " \n", "123456", " 3.5", "HTMLParser", "Москва", " 北京市", "<|", "|>", *SPECIALS])
texts = st.lists(st.one_of(st.text(alphabet=TRICKY, max_size=12), words), max_size=12).map("".join)


def training_text() -> str:
    rng = random.Random(3)
    parts = [
        "The year 2024 saw 1234567 visitors; HTMLParser's DON'T and don't.\n\n  ",
        "Москва — столица России, 12 655 050 человек.\n",
        "北京是中华人民共和国的首都，截至2020年。\n",
        "".join(rng.choice(TRICKY) for _ in range(3000)),
    ]
    if SHARED.is_dir():
        parts.append((FIXTURES / "corpus.en").read_text(encoding="utf-8")[:60_000])
        parts.append((FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8"))
    text = ""
    for _ in range(3):
        rng.shuffle(parts)
        text += rng.choice(SPECIALS).join(parts)
    return text


@pytest.fixture(autouse=True)
def no_tiktoken_cache(monkeypatch):
    """tiktoken caches files by path in a shared temp folder; test files must be read afresh."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")


@pytest.fixture(scope="module")
def trained() -> dict[str, Tokenizer]:
    """A tokenizer per pattern, trained with it."""
    text = training_text()
    return {p: Tokenizer(*train_bpe_from_iterator([text], 1500, SPECIALS, pattern=p), SPECIALS, pattern=p) for p in ALL_PATTERNS}


def tiktoken_for(tok: Tokenizer) -> tiktoken.Encoding:
    special_ids = set(tok.special_token_ids.values())
    ranks = {t: i for i, t in tok.vocab.items() if i not in special_ids}
    return tiktoken.Encoding("ours", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_token_ids)


@pytest.fixture(scope="module")
def encodings(trained) -> dict[str, tiktoken.Encoding]:
    return {p: tiktoken_for(tok) for p, tok in trained.items()}


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_ids_equal_tiktoken_on_random_text(trained, encodings, pattern, text):
    tok, enc = trained[pattern], encodings[pattern]
    assert tok.encode(text) == enc.encode(text, allowed_special="all")
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


@needs_shared
@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_ids_equal_tiktoken_on_the_shared_corpora(trained, encodings, pattern):
    tok, enc = trained[pattern], encodings[pattern]
    for name in ["webtext.txt", "techdocs.txt", "kjv.txt"]:
        with open(DATA / name, encoding="utf-8") as f:
            text = f.read(400_000)
        expected = enc.encode(text, allowed_special="all")
        assert tok.encode_to_numpy(text, num_threads=2, dtype=np.uint32).tolist() == expected, name
        assert tok.encode(text) == expected, name


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_a_tiktoken_rank_file_with_the_pattern_gives_tiktokens_ids(trained, pattern, tmp_path):
    """Our Tokenizer built from tiktoken-style ranks: a bare `.tiktoken` file (pattern and
    specials given when loading), and one saved with its sidecar."""
    tok = trained[pattern]
    special_ids = set(tok.special_token_ids.values())
    bare = tmp_path / "bare.tiktoken"
    bare.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in sorted(tok.vocab.items()) if i not in special_ids))
    ranks = tiktoken.load.load_tiktoken_bpe(str(bare))
    enc = tiktoken.Encoding("file", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_token_ids)
    name = pattern if pattern in PATTERNS else tok.pattern
    loaded = Tokenizer.load(bare, special_tokens=tok.special_token_ids, pattern=name)
    tok.save(tmp_path / "saved.tiktoken")
    saved = Tokenizer.load(tmp_path / "saved.tiktoken")
    assert loaded.pattern == saved.pattern == tok.pattern
    rng = random.Random(1)
    samples = [training_text()[:20_000], "1234567\n\n  x", "a\n  ", "".join(rng.choice(TRICKY) for _ in range(2000)) + EOT]
    for text in samples:
        expected = enc.encode(text, allowed_special="all")
        assert loaded.encode(text) == saved.encode(text) == expected


def test_patterns_change_the_ids():
    """A test that could fail: the same ranks with another pattern give other ids. Ranks trained
    with GPT-2 hold ` 1234567`, which cl100k splits into digit groups; ranks trained with o200k
    hold `HTMLParser's`, which GPT-2 and cl100k split before the apostrophe."""
    text = "HTMLParser's 1234567 don't\n\n  x "
    pieces = {}
    for trained_with in ["gpt2", "o200k"]:
        vocab, merges = train_bpe_from_iterator([text * 50], 256 + 60, pattern=trained_with)
        for p in ALL_PATTERNS:
            tok = Tokenizer(vocab, merges, pattern=p)
            pieces[trained_with, p] = [tok.decode([i]) for i in tok.encode(text)]
    assert " 1234567" in pieces["gpt2", "gpt2"] and " 1234567" not in pieces["gpt2", "cl100k"]
    assert "HTMLParser's" in pieces["o200k", "o200k"]
    assert not any("HTMLParser's" in pieces["o200k", p] for p in ["gpt2", "cl100k"])
    assert " " not in "".join(pieces["gpt2", CUSTOM_SOME]).replace(" 1", "")  # whitespace dropped


# ---------------------------------------------------------------------------------------------
# Streaming and parallel paths
# ---------------------------------------------------------------------------------------------


def stream(script: str, n_chars: int, seed: int) -> str:
    """Cyrillic, Chinese (no whitespace) or mixed text with digits, punctuation and specials."""
    rng = random.Random(seed)
    if script == "cyrillic":
        letters = [chr(c) for c in range(0x410, 0x450)]
        seps = [" ", " ", "\n", ", ", " — ", "123", "'s "]
    elif script == "chinese":
        letters = [chr(c) for c in range(0x4E00, 0x4E80)]
        seps = ["，", "。", "、", "2020年", "\n"]
    else:
        letters = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
        seps = [" ", "  ", "\n\n", "1234", "!?", "'RE ", "/"]
    parts: list[str] = []
    size = 0
    while size < n_chars:
        p = "".join(rng.choices(letters, k=rng.randint(1, 8))) + rng.choice(seps)
        if rng.random() < 0.01:
            p += rng.choice(SPECIALS)
        parts.append(p)
        size += len(p)
    return "".join(parts)


@pytest.mark.parametrize("script", ["cyrillic", "chinese", "latin"])
@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=IDS)
def test_every_path_equals_encode(trained, pattern, script, tmp_path):
    tok = trained[pattern]
    text = stream(script, 300_000, seed=len(script))
    expected = tok.encode(text)
    assert list(tok.encode_iterable([text])) == expected
    assert list(tok.encode_iterable(text[i : i + 777] for i in range(0, len(text), 777))) == expected
    assert list(tok.encode_iterable(iter(text))) == expected  # one character at a time
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    for threads in (1, 2):
        tok.encode_file(path, tmp_path / "out.npy", num_threads=threads, progress=False)
        assert np.load(tmp_path / "out.npy").tolist() == expected
        assert tok.encode_to_numpy(text, num_threads=threads).tolist() == expected
    assert tok.encode_batch([text[:5000], text], num_threads=2) == [tok.encode(text[:5000]), expected]


def test_custom_pattern_without_specials_encodes_streams_whole(trained, tmp_path):
    """No safe cut at all: `encode_iterable` and `encode_file` hold the text whole and still
    give `encode`'s ids (with a custom regex, memory grows with the stretch between specials)."""
    tok = trained[CUSTOM_SOME]
    text = stream("latin", 200_000, seed=9).replace(EOT, "").replace("<|x|>", "")
    expected = tok.encode(text)
    assert list(tok.encode_iterable(text[i : i + 1000] for i in range(0, len(text), 1000))) == expected
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    tok.encode_file(path, tmp_path / "out.npy", num_threads=2, progress=False)
    assert np.load(tmp_path / "out.npy").tolist() == expected


def test_a_custom_pattern_that_fails_is_a_value_error(tmp_path):
    """fancy-regex's backtracking limit on some text: ValueError on every path, never a crash."""
    pattern = r"(?:a(?!c)|aa)+b|."
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT], pattern=pattern)
    text = ("x" + EOT + "a" * 60) * 3000
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    for call in [
        lambda: tok.encode(text),
        lambda: tok.encode_ordinary(text),
        lambda: list(tok.encode_iterable([text])),
        lambda: tok.encode_batch([text]),
        lambda: tok.encode_to_numpy(text, num_threads=2),
        lambda: tok.encode_file(path, tmp_path / "out.npy", progress=False),
        lambda: train_bpe_from_iterator([text], 300, [EOT], pattern=pattern),
    ]:
        with pytest.raises(ValueError, match="failed on a text of"):
            call()
    assert not (tmp_path / "out.npy").exists()

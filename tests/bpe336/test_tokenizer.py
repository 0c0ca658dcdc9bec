"""`bpe336.Tokenizer` is exact: GPT-2 ids equal tiktoken's (built offline from the same two
files) on real documents, fixtures and random Unicode; special tokens match longest first;
`encode_iterable` equals `encode` in constant memory; decode, save and load round-trip; bad input
raises clear exceptions.

    cd tests && python -m pytest -q test_tokenizer.py            # the fast set
    cd tests && python -m pytest -q -m slow test_tokenizer.py    # every document of ../shared/data
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA, EOT, FIXTURES, needs_shared

from bpe336 import Tokenizer
from bpe336.formats import load_gpt2_files
from bpe336.reference import pretokenize

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------
# Fixtures and oracles
# ---------------------------------------------------------------------------------------------


def naive_encode(text: str, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], specials: list[str]) -> list[int]:
    """Textbook BPE: split specials, pre-tokenize with `regex`, then per pre-token merge the
    lowest-rank pair (all its occurrences, left to right) until none applies."""
    inv = {}
    for idx in sorted(vocab):
        inv.setdefault(vocab[idx], idx)
    rank = {pair: r for r, pair in reversed(list(enumerate(merges)))}
    out: list[int] = []
    by_length = sorted(specials, key=len, reverse=True)
    parts = re.split("(" + "|".join(map(re.escape, by_length)) + ")", text) if specials else [text]
    for part in parts:
        if part in specials:
            out.append(inv[part.encode()])
            continue
        for pre in pretokenize(part):
            word = [bytes([b]) for b in pre.encode()]
            while len(word) > 1:
                best = min((rank.get(p, float("inf")), p) for p in zip(word, word[1:]))
                if best[0] == float("inf"):
                    break
                a, b = best[1]
                merged, i = [], 0
                while i < len(word):
                    if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                        merged.append(a + b)
                        i += 2
                    else:
                        merged.append(word[i])
                        i += 1
                word = merged
            out.extend(inv[w] for w in word)
    return out


def documents(path: Path) -> list[str]:
    return [d for d in path.read_text(encoding="utf-8").split(EOT) if d]


def sample_documents(path: Path, count: int) -> list[str]:
    docs = documents(path)
    step = max(1, len(docs) // count)
    return docs[::step][:count]


# ---------------------------------------------------------------------------------------------
# GPT-2 exactness against tiktoken
# ---------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", ["address.txt", "german.txt", "tinystories_sample.txt", "corpus.en"])
def test_fixtures_match_tiktoken(gpt2, tiktoken_gpt2, name):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


@needs_shared
@pytest.mark.parametrize("name", ["webtext.txt", "techdocs.txt", "kjv.txt"])
def test_sampled_documents_match_tiktoken(gpt2, tiktoken_gpt2, name):
    docs = sample_documents(DATA / name, 150)
    assert gpt2.encode_batch(docs) == tiktoken_gpt2.encode_ordinary_batch(docs)
    joined = EOT.join(docs)
    expect = tiktoken_gpt2.encode(joined, allowed_special="all")
    assert gpt2.encode(joined) == expect
    assert gpt2.encode_to_numpy(joined, num_threads=2).tolist() == expect


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("name", ["webtext.txt", "techdocs.txt", "kjv.txt"])
def test_every_document_matches_tiktoken(gpt2, tiktoken_gpt2, name):
    docs = documents(DATA / name)
    ours = gpt2.encode_batch(docs)
    theirs = tiktoken_gpt2.encode_ordinary_batch(docs, num_threads=2)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"{name}: document {i} differs"


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
# Text rich in the pattern's edge cases: contractions, runs of spaces, digits, mixed scripts.
tricky_text = st.text(st.sampled_from(list("ab Z'sdmtlvre \n\t\r0123456789!?.,-é中ß😀\u00a0\u3000\u2028\u0085")), max_size=200)


@needs_shared
@SETTINGS
@given(text=st.one_of(unicode_text, tricky_text))
def test_random_unicode_matches_tiktoken(gpt2, tiktoken_gpt2, text):
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode(text)) == text


@needs_shared
@SETTINGS
@given(parts=st.lists(st.one_of(tricky_text, st.just(EOT), st.just("<|endoftext"), st.just("|>")), max_size=12))
def test_special_tokens_in_text_match_tiktoken(gpt2, tiktoken_gpt2, parts):
    text = "".join(parts)
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")


# ---------------------------------------------------------------------------------------------
# Special tokens
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_specials_longest_first_and_added_when_missing(gpt2_files, tiktoken_gpt2):
    vocab, merges = gpt2_files
    double = EOT + EOT
    tok = Tokenizer(vocab, merges, special_tokens=[EOT, double, "<|pad|>"])
    assert tok.token_to_id(EOT) == 50256  # already in the vocabulary
    assert tok.token_to_id(double) == 50257  # added with the next free ids, in order
    assert tok.token_to_id("<|pad|>") == 50258
    assert tok.vocab_size == 50259
    a, b = tiktoken_gpt2.encode_ordinary("a"), tiktoken_gpt2.encode_ordinary("b")
    assert tok.encode(f"a{EOT}{EOT}b{EOT}<|pad|>") == a + [50257] + b + [50256, 50258]
    assert tok.encode(EOT * 3) == [50257, 50256]
    assert tok.decode(tok.encode(f"x{double}{EOT}y")) == f"x{double}{EOT}y"


@needs_shared
def test_undeclared_lookalikes_are_ordinary_text(gpt2_files, tiktoken_gpt2):
    vocab, merges = gpt2_files
    plain = Tokenizer(vocab, merges)  # no specials declared: <|endoftext|> is just text
    text = f"hello{EOT}world<|pad|>"
    assert plain.encode(text) == tiktoken_gpt2.encode_ordinary(text)
    assert 50256 not in plain.encode(text)
    tok = Tokenizer(vocab, merges, special_tokens=[EOT])
    assert tok.encode("<|endoftext |>") == tiktoken_gpt2.encode_ordinary("<|endoftext |>")


def test_special_tokens_property_and_dedup():
    vocab = {i: bytes([i]) for i in range(256)}
    tok = Tokenizer(vocab, [], special_tokens=["<s>", "</s>", "<s>"])
    assert tok.special_tokens == ["<s>", "</s>"]
    assert tok.encode("<s>a</s>") == [256, ord("a"), 257]
    assert tok.id_to_token(257) == b"</s>"


# ---------------------------------------------------------------------------------------------
# encode_iterable
# ---------------------------------------------------------------------------------------------


@needs_shared
@SETTINGS
@given(data=st.data())
def test_encode_iterable_equals_encode_for_any_chunking(gpt2, data):
    text = data.draw(st.lists(st.one_of(tricky_text, st.just(EOT), st.just(" " * 40)), max_size=40).map("".join))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=20)))
    pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    assert list(gpt2.encode_iterable(pieces)) == gpt2.encode(text)


@needs_shared
def test_encode_iterable_over_files(gpt2):
    for name in ["corpus.en", "tinystories_sample.txt", "german.txt"]:
        path = FIXTURES / name
        with open(path, encoding="utf-8") as f:
            streamed = list(gpt2.encode_iterable(f))
        assert streamed == gpt2.encode(path.read_text(encoding="utf-8")), name
    # Pieces of one character, and a text with no safe cut at all (one long pre-token).
    text = (FIXTURES / "german.txt").read_text(encoding="utf-8")
    assert list(gpt2.encode_iterable(iter(text))) == gpt2.encode(text)
    long = "x" * 100_000 + EOT + "y" * 50_000
    assert list(gpt2.encode_iterable(long[i : i + 1000] for i in range(0, len(long), 1000))) == gpt2.encode(long)


@needs_shared
def test_encode_iterable_constant_memory(tmp_path):
    """5 MB through encode_iterable under RLIMIT_AS = the current address space + 1 MB (in a
    subprocess, so the limit cannot hurt the test run)."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        from bpe336 import Tokenizer
        F = {str(FIXTURES)!r}
        tok = Tokenizer.from_files(F + "/gpt2_vocab.json", F + "/gpt2_merges.txt", ["<|endoftext|>"])

        def lines(limit=5_000_000):
            seen = 0
            with open({str(DATA / "webtext.txt")!r}, encoding="utf-8") as f:
                for line in f:
                    seen += len(line)
                    if seen > limit:
                        return
                    yield line

        expect = tok.encode("".join(lines()))
        want_n, want_sum = len(expect), sum(expect)
        del expect
        list(tok.encode_iterable(["warm up " * 1000]))
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 20), resource.RLIM_INFINITY))
        n = total = 0
        for i in tok.encode_iterable(lines()):
            n += 1
            total += i
        assert (n, total) == (want_n, want_sum), (n, total, want_n, want_sum)
        # The limit is real: a 16 MB allocation must now fail.
        try:
            bytearray(16 << 20)
        except MemoryError:
            print("ok", n)
            sys.exit(0)
        print("limit not enforced")
        sys.exit(3)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_decode_replaces_malformed_utf8_and_rejects_unknown_ids(gpt2):
    ff = gpt2.token_to_id(b"\xff")
    assert gpt2.decode([ff]) == "\ufffd"
    assert gpt2.decode_bytes([ff]) == b"\xff"
    ids = gpt2.encode("é")
    assert gpt2.decode_bytes(ids) == "é".encode()
    first_half = gpt2.token_to_id(b"\xc3")
    assert gpt2.decode([first_half]) == "\ufffd"
    for bad in [50257, -1, 2**40, 2**70]:
        with pytest.raises(KeyError, match=str(bad)):
            gpt2.decode([1, bad])
    with pytest.raises(TypeError):
        gpt2.decode(["a"])
    assert gpt2.decode(np.array(gpt2.encode("numpy ids"), dtype=np.uint16)) == "numpy ids"
    assert gpt2.decode([]) == ""


@needs_shared
@SETTINGS
@given(text=st.one_of(unicode_text, tricky_text, st.text(max_size=50)))
def test_decode_encode_round_trip(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text


@needs_shared
def test_surrogates_become_replacement_characters(gpt2):
    # As tiktoken: a lone surrogate is one U+FFFD, a pair written as two code points its
    # character (bpe336/test_surrogates.py compares every encode path with tiktoken itself).
    assert gpt2.decode(gpt2.encode("a\ud800b")) == "a\ufffdb"
    assert gpt2.decode(gpt2.encode("x\ud83d\ude00y")) == "x😀y"


# ---------------------------------------------------------------------------------------------
# Arrays, batches, lookups
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_numpy_and_batch(gpt2):
    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8") * 3
    ids = gpt2.encode(text)
    arr = gpt2.encode_to_numpy(text)
    assert arr.dtype == np.uint16 and arr.tolist() == ids
    assert gpt2.encode_to_numpy(text, dtype=np.uint32, num_threads=1).tolist() == ids
    arr[0] = 7  # writable
    docs = text.split("\n")
    assert gpt2.encode_batch(docs, num_threads=2) == [gpt2.encode(d) for d in docs]
    assert gpt2.encode_batch([]) == []


def test_dtype_must_hold_the_vocabulary():
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[70_000] = b"<big>"
    tok = Tokenizer(vocab, [], special_tokens=["<big>"])
    assert tok.vocab_size == 70_001
    assert tok.encode_to_numpy("a<big>").dtype == np.uint32
    assert tok.encode_to_numpy("a<big>").tolist() == [97, 70_000]
    with pytest.raises(ValueError, match="uint16"):
        tok.encode_to_numpy("a", dtype=np.uint16)
    with pytest.raises(ValueError, match="uint16 or uint32"):
        tok.encode_to_numpy("a", dtype=np.int8)


@needs_shared
def test_lookups(gpt2):
    assert gpt2.vocab_size == 50257 == len(gpt2)
    assert gpt2.token_to_id(" the") == gpt2.token_to_id(b" the") == 262
    assert gpt2.id_to_token(262) == b" the"
    assert type(gpt2.id_to_token(262)) is bytes
    assert gpt2.special_tokens == [EOT]
    with pytest.raises(KeyError):
        gpt2.id_to_token(50257)
    with pytest.raises(KeyError):
        gpt2.token_to_id(b"\x00\x01\x02 not a token")


@needs_shared
def test_non_str_input_is_a_type_error(gpt2):
    for call in (gpt2.encode, gpt2.encode_ordinary, gpt2.encode_to_numpy):
        with pytest.raises(TypeError, match="str"):
            call(b"bytes")
        with pytest.raises(TypeError):
            call(None)
    with pytest.raises(TypeError, match="str"):
        list(gpt2.encode_iterable(["ok", b"bytes"]))
    with pytest.raises(TypeError, match="str"):
        gpt2.encode_batch(["ok", 3])


# ---------------------------------------------------------------------------------------------
# Construction (files: test_formats.py)
# ---------------------------------------------------------------------------------------------


def test_bad_constructor_arguments():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="byte 0x41"):
        Tokenizer({i: b for i, b in vocab.items() if i != 65}, [])
    with pytest.raises(ValueError, match="merge 0"):
        Tokenizer(vocab, [(b"a", b"b")])  # b"ab" is not a token
    with pytest.raises(TypeError):
        Tokenizer(vocab, [("a", "b")])
    with pytest.raises(TypeError):
        Tokenizer([b"a"], [])
    with pytest.raises(ValueError):
        Tokenizer({-1: b"a", **vocab}, [])
    with pytest.raises(TypeError):
        Tokenizer(vocab, [], special_tokens=[b"<s>"])


# ---------------------------------------------------------------------------------------------
# Trained tokenizers encode with their own merges
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_trained_tokenizer_matches_textbook_bpe():
    from bpe336 import train_bpe

    corpus = FIXTURES / "corpus.en"
    vocab, merges = train_bpe(corpus, 500, special_tokens=[EOT])
    tok = Tokenizer(vocab, merges, special_tokens=[EOT])
    assert tok.vocab_size == 500 and tok.token_to_id(EOT) == 0
    text = corpus.read_text(encoding="utf-8")
    sample = text[:20_000] + EOT + "Unseen wörds, numbers 12345 and   spaces!\n"
    assert tok.encode(sample) == naive_encode(sample, vocab, merges, [EOT])
    assert tok.decode(tok.encode(text)) == text


@needs_shared
def test_reference_fixture_vocab_matches_textbook_bpe():
    vocab, merges = load_gpt2_files(FIXTURES / "train-bpe-reference-vocab.json", FIXTURES / "train-bpe-reference-merges.txt", [EOT])
    tok = Tokenizer(vocab, merges, special_tokens=[EOT])
    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8")[:30_000] + EOT + "tail"
    assert tok.encode(text) == naive_encode(text, vocab, merges, [EOT])


# ---------------------------------------------------------------------------------------------
# Worst cases stay exact (and finish: merging is O(n log n) per pre-token)
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_worst_cases(gpt2, gpt2_files, tiktoken_gpt2):
    import random

    rng = random.Random(0)
    # One huge pre-token: a million letters without whitespace, and a repeated pair.
    letters = "".join(rng.choice("abcdefghij") for _ in range(1_000_000))
    for text in [letters, "ab" * 500_000, "x" * 1_000_000]:
        ids = gpt2.encode_to_numpy(text, num_threads=2)
        assert gpt2.decode(ids) == text
    # tiktoken is quadratic on long pieces; compare on a size it can do.
    assert gpt2.encode(letters[:20_000]) == tiktoken_gpt2.encode_ordinary(letters[:20_000])
    # Long runs of whitespace and of punctuation.
    for text in [" " * 100_000 + "a", "\n" * 50_000, "!?" * 50_000]:
        assert gpt2.encode(text) == tiktoken_gpt2.encode_ordinary(text)
    # Many special tokens, densely packed.
    vocab, merges = gpt2_files
    specials = [f"<|tok{i}|>" for i in range(2000)]
    tok = Tokenizer(vocab, merges, special_tokens=specials)
    text = " ".join(specials[(i * 7) % 2000] for i in range(20_000))
    ids = tok.encode(text)
    assert sum(1 for i in ids if i >= 50257) == 20_000
    assert tok.decode(ids) == text

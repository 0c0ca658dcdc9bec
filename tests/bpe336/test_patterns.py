"""The GPT-2, cl100k and o200k pre-tokenizers are identical to tiktoken's pattern strings as
Python's `regex` module runs them; custom patterns follow tiktoken in dropping text no match
covers; every bad pattern argument is one clear error.

The Rust side takes its classes from regex-syntax (Unicode 16, as fancy-regex
and so tiktoken), while `regex` may follow a newer Unicode that moved a few code points between
categories (U+0295 went from Ll to Lo in Unicode 17, which o200k's case classes see). Random text
therefore draws only code points on whose categories `regex` and Python's own `unicodedata`
(older than both) agree.

    cd tests && python -m pytest -q bpe336/test_patterns.py
"""

from __future__ import annotations

import inspect
import re
import unicodedata

import pytest
import regex
import tiktoken
import tiktoken_ext.openai_public as openai_public
from hypothesis import given, settings
from hypothesis import strategies as st

from bpe336 import Tokenizer, _core, train_bpe, train_bpe_from_iterator
from bpe336.pattern import PATTERNS, pattern_name, resolve_pattern, same_pattern


def _tiktoken_patterns() -> dict[str, str]:
    """The pattern strings from tiktoken's source (calling the constructors would download ranks)."""
    cl100k = re.search(r'"pat_str": r"""(.*?)"""', inspect.getsource(openai_public.cl100k_base)).group(1)
    o200k = "|".join(re.findall(r'r"""(.*?)"""', inspect.getsource(openai_public.o200k_base)))
    return {"gpt2": openai_public.r50k_pat_str, "cl100k": cl100k, "o200k": o200k}


TIKTOKEN = _tiktoken_patterns()
# The GPT-2 regex as SPEC §1 gives it (tiktoken spells it differently, with the same splits).
SPEC_GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NAMES = ["gpt2", "cl100k", "o200k"]


def _stable_code_points() -> list[str]:
    """Assigned code points whose category `regex` and `unicodedata` agree on (see the NOTE)."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    by_regex = {}
    for cat in ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No"):
        for m in regex.finditer(rf"\p{{{cat}}}", everything):
            by_regex[m.group()] = cat
    out = []
    for ch in everything:
        cat = unicodedata.category(ch)
        if cat == "Cn" or by_regex.get(ch, cat) != cat:
            continue
        out.append(ch)
    return out


STABLE = _stable_code_points()
# Every branch: contraction letters in both cases (and LONG S), apostrophes, `/`, every kind of
# whitespace and near-whitespace, letters of each case class, marks, digits of several scripts,
# CJK, emoji.
TRICKY = (
    "sdmtlvreSDMTLVREſK09'\"''.,!-_$//  \n\n\t\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2009\u200a\u200b\u180e"
    "\u2028\u2029\u202f\u205f\u3000\ufeffeéÉßΩωЖжǅᾈʰªµƻ\u0301\u094d\u0903\u20ddकก\u0e31²½٣३Ⅻ〇𝟘中文。、のカ한😀👍\U0001f3fd€"
)
texts = st.text(alphabet=st.one_of(st.sampled_from(TRICKY), st.sampled_from(STABLE)), max_size=40)
salad = st.lists(
    st.sampled_from(["the", " Cat", "HTML", "Parser", "'s", "'RE", "'", " ", "  ", "\n", " \n", "\r\n", "12345", " 3.5", "?!", "/"]),
    max_size=30,
).map("".join)


def test_drift_filter_keeps_almost_everything():
    assert "\u0295" not in STABLE and "a" in STABLE and "中" in STABLE
    assert len(STABLE) > 280_000


def test_pattern_strings_are_tiktokens():
    assert _core.CL100K_PATTERN == TIKTOKEN["cl100k"]
    assert _core.O200K_PATTERN == TIKTOKEN["o200k"]
    assert _core.GPT2_PATTERN == SPEC_GPT2
    assert _core.TIKTOKEN_GPT2_PATTERN == TIKTOKEN["gpt2"]
    assert PATTERNS == {"gpt2": SPEC_GPT2, "cl100k": TIKTOKEN["cl100k"], "o200k": TIKTOKEN["o200k"]}
    assert list(PATTERNS) == _core.PATTERN_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_examples(name):
    expected = {
        "gpt2": ["Hello", ",", " world", "!", " It", "'s", " 2024", ".", "\n"],
        "cl100k": ["Hello", ",", " world", "!", " It", "'s", " ", "202", "4", ".\n"],
        "o200k": ["Hello", ",", " world", "!", " It's", " ", "202", "4", ".\n"],
    }
    assert _core.pretokenize("Hello, world! It's 2024.\n", name) == expected[name]
    assert _core.pretokenize("", name) == []


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=2000, deadline=None)
@given(text=texts)
def test_identical_to_regex_on_random_text(name, text):
    expected = regex.findall(TIKTOKEN[name], text)
    assert _core.pretokenize(text, name) == expected
    # The regex string resolves to the same matcher as the name.
    assert _core.pretokenize(text, PATTERNS[name]) == expected
    if name == "gpt2":
        assert _core.pretokenize(text, TIKTOKEN["gpt2"]) == expected == regex.findall(SPEC_GPT2, text)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=500, deadline=None)
@given(text=salad)
def test_identical_to_regex_on_word_salad(name, text):
    assert _core.pretokenize(text, name) == regex.findall(TIKTOKEN[name], text)


def test_custom_pattern_drops_unmatched_text():
    assert _core.pretokenize("ab 12 cd!", r"[a-z]+") == ["ab", "cd"]


@pytest.mark.parametrize("bad", ["(", r"\p{NoSuchClass}", "a*", r"\s*", "(?=a)", "", "[a-"])
def test_bad_custom_patterns_raise_value_error(bad):
    with pytest.raises(ValueError, match="invalid pre-tokenization pattern"):
        _core.pretokenize("abc", bad)


def test_names_resolve_and_compare():
    for name, regex_ in PATTERNS.items():
        assert resolve_pattern(name) == resolve_pattern(regex_) == regex_
        assert pattern_name(name) == pattern_name(regex_) == name
        assert same_pattern(name, regex_)
    assert resolve_pattern(TIKTOKEN["gpt2"]) == TIKTOKEN["gpt2"]  # kept as spelled ...
    assert pattern_name(TIKTOKEN["gpt2"]) == "gpt2" and same_pattern("gpt2", TIKTOKEN["gpt2"])  # ... same matcher
    assert resolve_pattern(r"\w+") == r"\w+" and pattern_name(r"\w+") == "custom"
    assert not same_pattern("gpt2", "cl100k") and not same_pattern(r"\w+", r"\w+|\s")
    assert same_pattern(r"\w+", r"\w+")


# Each bad pattern argument, and the one clear error it gets everywhere a pattern is taken.
BAD_PATTERNS = [
    ("(", ValueError, "invalid pre-tokenization pattern"),
    ("a*|b", ValueError, "can match the empty string"),
    ("gpt4", ValueError, "unknown pre-tokenization pattern name"),
    ("cl100k_base", ValueError, "unknown pre-tokenization pattern name"),
    (None, TypeError, "pattern must be a str"),
    (100, TypeError, "pattern must be a str"),
    (b"gpt2", TypeError, "pattern must be a str"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_PATTERNS)
def test_bad_pattern_arguments_are_one_clear_error(bad, error, message, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 10, encoding="utf-8")
    vocab = {i: bytes([i]) for i in range(256)}
    calls = [
        lambda: train_bpe(corpus, 260, pattern=bad),
        lambda: train_bpe_from_iterator(["hello world"], 260, pattern=bad),
        lambda: Tokenizer(vocab, [], pattern=bad),
        lambda: resolve_pattern(bad),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            call()
    if isinstance(bad, str):
        with pytest.raises(error, match=message):
            _core.pretokenize("abc", bad)
        with pytest.raises(error, match=message):
            _core.Encoder(list(vocab.items()), [], [], bad)
        with pytest.raises(error, match=message):
            _core.train_bpe_files([str(corpus)], 260, [], pattern=bad)


def test_the_core_refuses_a_non_str_pattern():
    with pytest.raises(TypeError):
        _core.pretokenize("abc", 3)


def test_a_bad_pattern_fails_before_any_input_is_read(tmp_path):
    """The pattern is checked with the other arguments: a missing file or an iterator is never
    touched when the pattern is bad."""
    pulled = []

    def source():
        pulled.append(1)
        yield "text"

    with pytest.raises(ValueError, match="invalid"):
        train_bpe_from_iterator(source(), 260, pattern="(")
    assert not pulled


def test_tiktoken_drops_text_its_pattern_does_not_match():
    """The behaviour the custom pre-tokenizer copies: tiktoken encodes matched pieces only."""
    ranks = {bytes([i]): i for i in range(256)}
    enc = tiktoken.Encoding("letters", pat_str=r"[a-z]+", mergeable_ranks=ranks, special_tokens={})
    assert enc.encode_ordinary("ab 12 cd!") == list(b"abcd")

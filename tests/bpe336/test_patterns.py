"""The cl100k and o200k pre-tokenizers are identical to tiktoken's pattern strings as Python's
`regex` module runs them; custom patterns follow tiktoken in dropping text no match covers.

NOTE: the comparisons need `_core.pretokenize(text, pattern)` (pattern "gpt2", "cl100k", "o200k"
or a regex) and `_core.CL100K_PATTERN` / `_core.O200K_PATTERN`; until the extension exposes them
those tests skip. The Rust side takes its classes from regex-syntax (Unicode 16, as fancy-regex
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

from bpe336 import _core


def _tiktoken_patterns() -> dict[str, str]:
    """The pattern strings from tiktoken's source (calling the constructors would download ranks)."""
    cl100k = re.search(r'"pat_str": r"""(.*?)"""', inspect.getsource(openai_public.cl100k_base)).group(1)
    o200k = "|".join(re.findall(r'r"""(.*?)"""', inspect.getsource(openai_public.o200k_base)))
    return {"cl100k": cl100k, "o200k": o200k}


TIKTOKEN = _tiktoken_patterns()


def _has_pattern_hook() -> bool:
    try:
        _core.pretokenize("a", "cl100k")
    except TypeError:
        return False
    return True


needs_hook = pytest.mark.skipif(not _has_pattern_hook(), reason="_core.pretokenize(text, pattern) is not exposed yet")


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


@needs_hook
def test_pattern_strings_are_tiktokens():
    assert _core.CL100K_PATTERN == TIKTOKEN["cl100k"]
    assert _core.O200K_PATTERN == TIKTOKEN["o200k"]


@needs_hook
@pytest.mark.parametrize("name", ["cl100k", "o200k"])
def test_examples(name):
    expected = {
        "cl100k": ["Hello", ",", " world", "!", " It", "'s", " ", "202", "4", ".\n"],
        "o200k": ["Hello", ",", " world", "!", " It's", " ", "202", "4", ".\n"],
    }
    assert _core.pretokenize("Hello, world! It's 2024.\n", name) == expected[name]
    assert _core.pretokenize("", name) == []


@needs_hook
@pytest.mark.parametrize("name", ["cl100k", "o200k"])
@settings(max_examples=2000, deadline=None)
@given(text=texts)
def test_identical_to_regex_on_random_text(name, text):
    assert _core.pretokenize(text, name) == regex.findall(TIKTOKEN[name], text)


@needs_hook
@pytest.mark.parametrize("name", ["cl100k", "o200k"])
@settings(max_examples=500, deadline=None)
@given(text=salad)
def test_identical_to_regex_on_word_salad(name, text):
    assert _core.pretokenize(text, name) == regex.findall(TIKTOKEN[name], text)


@needs_hook
def test_custom_pattern_drops_unmatched_text():
    assert _core.pretokenize("ab 12 cd!", r"[a-z]+") == ["ab", "cd"]


@needs_hook
@pytest.mark.parametrize("bad", ["(", r"\p{NoSuchClass}", "a*", r"\s*", "(?=a)"])
def test_bad_custom_patterns_raise_value_error(bad):
    with pytest.raises(ValueError, match="invalid pre-tokenization pattern"):
        _core.pretokenize("abc", bad)


def test_tiktoken_drops_text_its_pattern_does_not_match():
    """The behaviour the custom pre-tokenizer copies: tiktoken encodes matched pieces only."""
    ranks = {bytes([i]): i for i in range(256)}
    enc = tiktoken.Encoding("letters", pat_str=r"[a-z]+", mergeable_ranks=ranks, special_tokens={})
    assert enc.encode_ordinary("ab 12 cd!") == list(b"abcd")

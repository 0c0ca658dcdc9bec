"""The Rust pre-tokenizer is identical to the GPT-2 pattern as Python's `regex` module runs it.

NOTE: the Rust side takes its classes from regex-syntax (the tables of fancy-regex, Unicode 16)
while `regex` may follow a newer Unicode. The two can only disagree on code points that newer
versions assigned, so random text draws from code points assigned in Python's own `unicodedata`
(which is older than both), and the all-code-point test checks that every disagreement is such
a code point.

    cd tests && python -m pytest -q test_pretokenize.py
"""

from __future__ import annotations

import unicodedata

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from bpe336 import _core
from bpe336.reference import GPT2_PATTERN

PATTERN = regex.compile(GPT2_PATTERN)

# Characters that exercise every branch of the pattern: contraction letters, apostrophes, every
# kind of whitespace (and the near-whitespace U+180E, U+200B, U+001C..1F, U+FEFF), letters,
# combining marks, numbers of all kinds, CJK, emoji.
TRICKY = (
    "sdmtlvreSLZ09'\"'.,!-_$   \n\n\t\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2009\u200a\u200b\u180e"
    "\u2028\u2029\u202f\u205f\u3000\ufeffeéßΩжªµ\u0301\u094dक²½٣Ⅻ中文。、の한😀👍\U0001f3fd𝟘€"
)

texts = st.text(
    alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(blacklist_categories=("Cs", "Cn"))),
    max_size=40,
)


def test_pattern_is_the_spec_pattern():
    assert _core.GPT2_PATTERN == GPT2_PATTERN


def test_examples():
    assert _core.pretokenize("Hello, world! It's 2024.") == ["Hello", ",", " world", "!", " It", "'s", " 2024", "."]
    assert _core.pretokenize("a   b\n\n c  ") == ["a", "  ", " b", "\n\n", " c", "  "]
    assert _core.pretokenize("") == []


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_identical_to_regex_on_random_text(text):
    assert _core.pretokenize(text) == PATTERN.findall(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["the", " cat", "'s", "'ll", " ", "  ", "\n", " \n", "12", " 3.5", "?!", "\u3000", "é"]), max_size=30))
def test_identical_to_regex_on_word_salad(parts):
    text = "".join(parts)
    assert _core.pretokenize(text) == PATTERN.findall(text)


def test_character_classes_match_regex_on_every_code_point():
    """\\p{L}, \\p{N} and \\s agree with `regex` on all of Unicode (surrogates excluded)."""
    classes = _core.char_classes()
    assert len(classes) == 0x110000
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    expected = bytearray([3]) * 0x110000
    for code, cls in ((0, r"\p{L}"), (1, r"\p{N}"), (2, r"\s")):
        for m in regex.finditer(cls, everything):
            expected[ord(m.group())] = code
    for c in range(0xD800, 0xE000):
        expected[c] = classes[c]
    diff = [c for c in range(0x110000) if classes[c] != expected[c]]
    # Only code points unassigned in Python's (older) Unicode database may differ: those are
    # Unicode-version differences, not matcher errors.
    real = [hex(c) for c in diff if unicodedata.category(chr(c)) != "Cn"]
    assert real == [], f"{len(real)} assigned code points differ, first {real[:20]}"
    assert classes[ord("a")] == 0 and classes[ord("7")] == 1 and classes[0x3000] == 2 and classes[0x200B] == 3

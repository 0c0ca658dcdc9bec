"""Text with surrogates (lone, or pairs written as two code points) encodes exactly as tiktoken
encodes it on every path: tiktoken round-trips such text through UTF-16 with surrogatepass and
then replaces what is left, so a pair becomes its character and a lone surrogate one U+FFFD.
The oracle is a real `tiktoken.Encoding` built offline from the GPT-2 files (conftest.py).

    cd tests && python -m pytest -q bpe336/test_surrogates.py
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import EOT, needs_shared

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

lone = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
pair = st.tuples(st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)).map(lambda p: chr(p[0]) + chr(p[1]))
ordinary = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
pieces = st.one_of(lone, pair, ordinary, st.sampled_from([" ", "a", "'s", "😀", "\n", EOT, "中。", "  "]))
texts = st.lists(pieces, max_size=20).map("".join)

pytestmark = needs_shared


def test_the_examples(gpt2, tiktoken_gpt2):
    for text in ["\ud800", "x\ud83d\ude00y", "\udc00\ud800", "a\ud800b", "\ud83d", "\ude00", "\ud83d\ud83d\ude00"]:
        expect = tiktoken_gpt2.encode(text, allowed_special="all")
        assert gpt2.encode(text) == expect, ascii(text)
    assert gpt2.decode(gpt2.encode("\ud800")) == "\ufffd"
    assert gpt2.decode(gpt2.encode("x\ud83d\ude00y")) == "x😀y"


@SETTINGS
@given(text=texts)
def test_every_path_matches_tiktoken(gpt2, tiktoken_gpt2, text):
    expect = tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.encode(text) == expect
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.encode_batch([text, "plain", text]) == [expect, tiktoken_gpt2.encode("plain"), expect]
    assert gpt2.encode_to_numpy(text).tolist() == expect
    assert gpt2.encode_to_numpy(text, num_threads=2, dtype="uint32").tolist() == expect


@SETTINGS
@given(text=texts, data=st.data())
def test_encode_iterable_matches_tiktoken_on_the_joined_text(gpt2, tiktoken_gpt2, text, data):
    expect = tiktoken_gpt2.encode(text, allowed_special="all")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    parts = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    assert list(gpt2.encode_iterable(parts)) == expect
    # Every character its own item: each pair is split across two items.
    assert list(gpt2.encode_iterable(list(text))) == expect


@pytest.mark.parametrize("filler", [" ", "a", "中"])
def test_pairs_split_across_large_items(gpt2, tiktoken_gpt2, filler):
    """The streaming buffer is encoded up to a safe cut once it is large: a pair split at that
    point must still become its character."""
    big = filler * 40_000
    items = [big + "\ud83d", "\ude00" + big, "\ud800", big, "\udc00x"]
    expect = tiktoken_gpt2.encode("".join(items), allowed_special="all")
    assert list(gpt2.encode_iterable(items)) == expect

"""Special tokens are matched by one matcher (aho-corasick, leftmost-longest) in training and
encoding, exactly as the definition says: scanning left to right, the longest special token
starting at each position wins, then the scan goes on after it. Checked against a naive scan
and the reference trainer on token sets that overlap (`ab`, `bc` in `abc`), nest (`<|e|>`,
`<|e|><|e|>`) and share prefixes, including cuts of streamed text next to them.

    cd tests && python -m pytest -q bpe336/test_special_tokens.py
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpe336 import Tokenizer, train_bpe, train_bpe_from_iterator
from bpe336.reference import train_bpe_reference

BYTES = {i: bytes([i]) for i in range(256)}
ALPHABET = ["a", "b", "c", " ", "<", "|", ">", "e", "中", "。", "\n", "'", "s"]

specials_strategy = st.lists(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=5).map("".join), min_size=1, max_size=6, unique=True)
text_strategy = st.lists(st.sampled_from(ALPHABET + ["<|e|>", "ab", "abc"]), max_size=40).map("".join)


def naive_ids(text: str, specials: list[str], ids: dict[str, int]) -> list[int]:
    """At each position the longest special token starting there (else one character on)."""
    out: list[int] = []
    i = 0
    while i < len(text):
        hits = [s for s in specials if text.startswith(s, i)]
        if hits:
            best = max(hits, key=len)
            out.append(ids[best])
            i += len(best)
        else:
            out.extend(text[i].encode("utf-8"))
            i += 1
    return out


@settings(max_examples=300, deadline=None)
@given(specials=specials_strategy, text=text_strategy)
def test_encoding_matches_the_naive_scan(specials, text):
    tok = Tokenizer(BYTES, [], special_tokens=specials)
    ids = {s: tok.token_to_id(s) for s in specials}
    expect = naive_ids(text, specials, ids)
    assert tok.encode(text) == expect
    assert tok.encode_batch([text, text])[1] == expect
    assert tok.encode_to_numpy(text).tolist() == expect
    # Streamed in pieces of every size: cuts never split a special token.
    for size in (1, 2, 3, 7):
        assert list(tok.encode_iterable(text[i : i + size] for i in range(0, len(text), size))) == expect


def test_the_examples():
    tok = Tokenizer(BYTES, [], special_tokens=["<|e|>", "<|e|><|e|>", "ab", "bc"])
    e1, e2, ab, bc = (tok.token_to_id(s) for s in ["<|e|>", "<|e|><|e|>", "ab", "bc"])
    assert tok.encode("<|e|><|e|><|e|>") == [e2, e1]
    assert tok.encode("abc") == [ab, ord("c")]
    assert tok.encode("xbcab") == [ord("x"), bc, ab]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specials=specials_strategy, text=text_strategy, chunk=st.sampled_from([1, 2, 5, 1 << 20]))
def test_training_matches_the_reference(specials, text, chunk, tmp_path):
    specials = [s for s in specials if len(s.encode()) > 1] or ["<|e|>"]
    text = text + " the cat sat " + text[::-1]
    vocab_size = 256 + len(specials) + 30
    expect = train_bpe_reference(text, vocab_size, specials)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    assert train_bpe(path, vocab_size, specials, chunk_size=chunk) == expect
    assert train_bpe_from_iterator(list(text), vocab_size, specials, chunk_size=chunk) == expect

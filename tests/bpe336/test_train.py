"""`bpe336.train_bpe` is exact: it equals the pure-Python oracle (`bpe336.reference`) and the
committed reference result, whatever the thread count or chunking, and rejects bad input with
clear exceptions.

    cd tests && python -m pytest -q test_train.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA, EOT, FIXTURES, needs_shared

from bpe336 import _core
from bpe336.formats import decode_token
from bpe336.reference import split_specials, train_bpe_reference
from bpe336.train import train_bpe, train_bpe_from_iterator, train_bpe_with_stats


def write(tmp_path: Path, text: str, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def assert_same(got, expected):
    vocab, merges = got
    ref_vocab, ref_merges = expected
    assert merges == ref_merges
    assert vocab == ref_vocab


# ---------------------------------------------------------------------------------------------
# The committed reference result
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_corpus_en_reproduces_reference_merges_and_vocab():
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 500, [EOT])
    lines = (FIXTURES / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    ref_merges = [tuple(decode_token(part) for part in line.split(" ")) for line in lines if line]
    assert merges == ref_merges
    ref = json.loads((FIXTURES / "train-bpe-reference-vocab.json").read_text(encoding="utf-8"))
    ref_vocab = {i: decode_token(s, special=True) for s, i in ref.items()}
    assert len(vocab) == len(ref_vocab) == 500
    assert set(vocab.values()) == set(ref_vocab.values())
    # Specials and merge tokens have the same ids; single bytes are in byte order here.
    assert vocab[0] == ref_vocab[0] == EOT.encode()
    for i in range(257, 500):
        assert vocab[i] == ref_vocab[i], i
    assert [vocab[1 + b] for b in range(256)] == [bytes([b]) for b in range(256)]


def test_results_are_real_bytes(tmp_path):
    vocab, merges = train_bpe(write(tmp_path, "hello hello world " * 10), 270, [EOT])
    assert all(type(k) is int and type(v) is bytes for k, v in vocab.items())
    assert merges and all(type(a) is bytes and type(b) is bytes for a, b in merges)
    assert sorted(vocab) == list(range(len(vocab)))


# ---------------------------------------------------------------------------------------------
# Equal to the oracle
# ---------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", ["address.txt", "german.txt", "tinystories_sample.txt"])
def test_matches_reference_on_fixtures(name, tmp_path):
    path = FIXTURES / name
    text = path.read_text(encoding="utf-8")
    expected = train_bpe_reference(text, 420, [EOT])
    assert_same(train_bpe(path, 420, [EOT]), expected)
    assert_same(train_bpe(path, 420, [EOT], chunk_size=64, num_threads=2), expected)


@needs_shared
@pytest.mark.parametrize("name", ["webtext.txt", "techdocs.txt", "kjv.txt"])
def test_matches_reference_on_data_slices(name, tmp_path):
    with open(DATA / name, encoding="utf-8") as f:
        f.seek(1_000_000 if name != "kjv.txt" else 0)
        f.readline()  # resynchronise on a line start
        text = f.read(25_000)
    path = write(tmp_path, text)
    expected = train_bpe_reference(text, 400, [EOT])
    assert_same(train_bpe(path, 400, [EOT]), expected)
    assert_same(train_bpe(path, 400, [EOT], chunk_size=333, num_threads=2), expected)


def test_matches_reference_on_multilingual_text(tmp_path):
    text = (
        "Grüße aus München! Straße, Maß, Öl — 3½ Stück. "
        "日本語のテキストです。東京は大きい。 中文文本，北京。 한국어 문장입니다. "
        "Русский текст: съешь же ещё этих мягких французских булок. "
        "مرحبا بالعالم ١٢٣ "
        "emoji 😀😀👍🏽 and symbols €£¥ … "
        "it's we'll they've I'd you're  \n\n\t  spaces\u3000\u3000ideographic\u00a0nbsp "
    )
    text = (text + EOT) * 3 + text[::-1]
    expected = train_bpe_reference(text, 420, [EOT, "<|pad|>"])
    path = write(tmp_path, text)
    assert_same(train_bpe(path, 420, [EOT, "<|pad|>"], chunk_size=50), expected)
    assert_same(train_bpe_from_iterator([text], 420, [EOT, "<|pad|>"]), expected)


SPECIALS = ["<|endoftext|>", "<s>", "<s><s>", "@@"]
pieces = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=12),
    st.sampled_from(["the", " the", " cat", "'s", "'ll", " ", "  ", "\n", " \n", "aaa", "12", "日本", "😀", *SPECIALS]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(pieces, max_size=40), extra=st.integers(0, 40), chunk=st.sampled_from([1, 3, 16, 1 << 20]))
def test_matches_reference_on_random_unicode_with_specials(parts, extra, chunk, tmp_path):
    text = "".join(parts)
    vocab_size = 256 + len(SPECIALS) + extra
    expected = train_bpe_reference(text, vocab_size, SPECIALS)
    if not any(split_specials(text, SPECIALS)):
        with pytest.raises(ValueError, match="no text"):
            train_bpe_from_iterator([text], vocab_size, SPECIALS)
        return
    assert_same(train_bpe_from_iterator([text], vocab_size, SPECIALS, chunk_size=chunk), expected)
    path = write(tmp_path, text, "random.txt")
    assert_same(train_bpe(path, vocab_size, SPECIALS, chunk_size=chunk, num_threads=2), expected)


# ---------------------------------------------------------------------------------------------
# Independent of threads, chunking and input form
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_independent_of_threads_and_chunk_size(tmp_path):
    with open(DATA / "kjv.txt", encoding="utf-8") as f:
        text = f.read(300_000)
    path = write(tmp_path, text)
    base = train_bpe(path, 1000, [EOT], num_threads=1)
    assert len(base[1]) == 1000 - 257
    for threads, chunk in [(2, None), (2, 1), (1, 7), (2, 1000), (3, 65536)]:
        assert_same(train_bpe(path, 1000, [EOT], num_threads=threads, chunk_size=chunk), base)


@needs_shared
def test_iterator_equals_file(tmp_path):
    path = FIXTURES / "corpus.en"
    expected = train_bpe(path, 500, [EOT])
    with open(path, encoding="utf-8") as f:
        assert_same(train_bpe_from_iterator(f, 500, [EOT]), expected)
    text = path.read_text(encoding="utf-8")
    chars = [text[i : i + 1000] for i in range(0, len(text), 1000)]
    assert_same(train_bpe_from_iterator(iter(chars), 500, [EOT], chunk_size=100, num_threads=2), expected)


def test_several_files_are_independent_texts(tmp_path):
    a, b = "low lower lowest  \n", "  newer newest wider"
    got = train_bpe([write(tmp_path, a, "a.txt"), write(tmp_path, b, "b.txt")], 300)
    # Independent texts = the same as one text with a special token between them.
    ref_vocab, ref_merges = train_bpe_reference(a + EOT + b, 301, [EOT])
    assert got[1] == ref_merges
    assert list(got[0].values()) == list(ref_vocab.values())[1:]


def test_early_stop_when_pairs_run_out(tmp_path):
    vocab, merges = train_bpe(write(tmp_path, "abcd"), 1000)
    assert merges == [(b"c", b"d"), (b"b", b"cd"), (b"a", b"bcd")]
    assert len(vocab) == 259


def test_stats_and_progress(tmp_path):
    path = write(tmp_path, "the cat sat on the mat " * 2000)
    calls = []
    vocab, merges, stats = train_bpe_with_stats(path, 300, progress=lambda *a: calls.append(a))
    # "the", " cat", " sat", " on", " the", " mat", and the final " ".
    assert stats["distinct_pretokens"] == 7
    assert stats["total_pretokens"] == 6 * 2000 + 1
    assert stats["input_bytes"] == path.stat().st_size
    phases = {c[0] for c in calls}
    assert phases <= {"count", "merge"} and "merge" in phases
    assert len(calls) <= 220


def test_progress_bar_runs(tmp_path, capsys):
    path = write(tmp_path, "abc abd abe " * 100)
    assert train_bpe(path, 300, progress=True) == train_bpe(path, 300)  # the bar changes nothing
    assert "merging" in capsys.readouterr().err  # and it was drawn


def test_progress_exception_stops_training(tmp_path):
    class Stop(Exception):
        pass

    def callback(phase, done, total):
        if phase == "merge":
            raise Stop("user asked to stop")

    with pytest.raises(Stop):
        train_bpe(write(tmp_path, "the cat sat on the mat " * 500), 400, progress=callback)


# ---------------------------------------------------------------------------------------------
# Bad input (SPEC §6)
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe(tmp_path / "nope.txt", 300)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        train_bpe(tmp_path, 300)


def test_core_reports_missing_file_and_directory(tmp_path):
    """The Rust core maps OS errors itself too (for races between the Python check and use)."""
    with pytest.raises(FileNotFoundError):
        _core.train_bpe_files([str(tmp_path / "gone.txt")], 300, [])
    with pytest.raises(IsADirectoryError):
        _core.train_bpe_files([str(tmp_path)], 300, [])


def test_vocab_size_too_small(tmp_path):
    path = write(tmp_path, "hello")
    with pytest.raises(ValueError, match="at least 256 \\+ 1 special tokens = 257"):
        train_bpe(path, 256, [EOT])
    with pytest.raises(ValueError, match="vocab_size"):
        _core.train_bpe_files([str(path)], 256, [EOT])
    with pytest.raises(TypeError):
        train_bpe(path, 300.0)


def test_bad_special_tokens(tmp_path):
    path = write(tmp_path, "hello")
    with pytest.raises(ValueError, match="given twice"):
        train_bpe(path, 300, [EOT, EOT])
    with pytest.raises(ValueError, match="empty"):
        train_bpe(path, 300, [""])
    with pytest.raises(TypeError, match="must be str"):
        train_bpe(path, 300, [b"<|endoftext|>"])
    with pytest.raises(TypeError, match="single string"):
        train_bpe(path, 300, EOT)
    with pytest.raises(ValueError, match="given twice"):
        _core.train_bpe_files([str(path)], 300, ["a", "a"])


@pytest.mark.parametrize("chunk", [None, 5])
def test_invalid_utf8_reports_path_and_offset(tmp_path, chunk):
    data = ("héllo wörld " * 50).encode() + b"\xff\xfe" + b" more"
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    offset = data.index(b"\xff")
    with pytest.raises(UnicodeDecodeError) as info:
        train_bpe(path, 300, chunk_size=chunk)
    assert f"byte offset {offset}" in str(info.value)
    assert "bad.txt" in str(info.value)
    # A truncated multi-byte character at the very end.
    path.write_bytes("abc é".encode()[:-1])
    with pytest.raises(UnicodeDecodeError, match="byte offset 4"):
        train_bpe(path, 300, chunk_size=chunk)


def test_empty_corpus(tmp_path):
    with pytest.raises(ValueError, match="no text to train on"):
        train_bpe(write(tmp_path, ""), 300)
    with pytest.raises(ValueError, match="no text to train on"):
        train_bpe(write(tmp_path, EOT * 3, "only_specials.txt"), 300, [EOT])
    with pytest.raises(ValueError, match="no text to train on"):
        train_bpe_from_iterator([], 300)
    with pytest.raises(ValueError, match="no input files"):
        train_bpe([], 300)


def test_single_char_corpus_has_no_merges(tmp_path):
    vocab, merges = train_bpe(write(tmp_path, "a\tb\tc"), 300)
    assert merges == [] and len(vocab) == 256


def test_bad_iterator_items_and_threads(tmp_path):
    with pytest.raises(TypeError, match="item 1 is bytes"):
        train_bpe_from_iterator(["ok", b"bytes"], 300)
    with pytest.raises(TypeError, match="single string"):
        train_bpe_from_iterator("abc", 300)
    with pytest.raises(ValueError, match="num_threads"):
        train_bpe(write(tmp_path, "abc"), 300, num_threads=0)

    def failing():
        yield "abc"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        train_bpe_from_iterator(failing(), 300)


@pytest.mark.parametrize(
    "text",
    [
        "中文文本没有空格" * 300,  # no safe cut at all: the chunk grows to the whole input
        "中文。\n日本語、\u3000テキスト\n" * 200,  # cuts only after multi-byte characters
        "word\u3000\u3000x  \n\n" * 300,  # Unicode whitespace runs next to ASCII ones
        ("<|endoftext|>" * 3 + "a<|endoftext|>b ") * 200,  # cuts near and between specials
    ],
)
def test_chunk_cuts_on_awkward_text(text, tmp_path):
    expected = train_bpe_reference(text, 300, [EOT])
    path = write(tmp_path, text)
    for chunk in (1, 10, 64, 1000):
        assert_same(train_bpe(path, 300, [EOT], chunk_size=chunk, num_threads=2), expected)

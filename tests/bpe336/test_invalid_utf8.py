"""Invalid UTF-8 in an input file raises UnicodeDecodeError whose `.start` and `.end` are the
absolute byte offsets of the bad sequence in the file (the same span Python's own decoder
reports), whose message names the path and that offset, and which never claims "position 0".
Checked for training and `encode_file`, with the bad bytes anywhere (chunk edges included).

    cd tests && python -m pytest -q bpe336/test_invalid_utf8.py
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bpe336 import Tokenizer, train_bpe, train_bpe_from_iterator

BAD = [b"\xff", b"\xc3\x28", b"\xe2\x82\x28", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80", b"\xc0\xaf", b"\xf5\x80\x80\x80"]


def python_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the first bad sequence, by Python's decoder: the oracle."""
    with pytest.raises(UnicodeDecodeError) as info:
        data.decode("utf-8")
    return info.value.start, info.value.end


def check(err: UnicodeDecodeError, path: Path, data: bytes) -> None:
    start, end = python_span(data)
    assert (err.start, err.end) == (start, end), (err.start, err.end, start, end)
    assert err.end - err.start >= 1
    msg = str(err)
    assert str(path) in msg and f"byte offset {start}" in msg, msg
    assert "position 0" not in msg or start == 0, msg
    assert err.encoding == "utf-8"


def corpus(rng: random.Random, n: int) -> bytes:
    words = ["héllo", "wörld", "中文", "текст", "plain", "x", "😀", "<|endoftext|>"]
    return " ".join(rng.choice(words) for _ in range(n)).encode()


@pytest.mark.parametrize("seed", range(6))
def test_training_reports_the_absolute_span(tmp_path, seed):
    rng = random.Random(seed)
    good = corpus(rng, 3000)
    at = rng.randrange(len(good))
    while good[at] & 0xC0 == 0x80:  # insert at a character boundary
        at += 1
    data = good[:at] + rng.choice(BAD) + good[at:] + b" tail"
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    for chunk in (1, 7, 4096, 1 << 20):
        with pytest.raises(UnicodeDecodeError) as info:
            train_bpe(path, 300, ["<|endoftext|>"], chunk_size=chunk)
        check(info.value, path, data)


@pytest.mark.parametrize("tail", [b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3"])
def test_a_character_cut_short_at_the_end(tmp_path, tail):
    data = "abc é ".encode() * 100 + tail
    path = tmp_path / "cut.txt"
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError) as info:
        train_bpe(path, 300)
    check(info.value, path, data)
    assert info.value.end == len(data)


@pytest.mark.parametrize("seed", range(4))
def test_encode_file_reports_the_absolute_span(tmp_path, seed):
    rng = random.Random(seed)
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    good = corpus(rng, 800_000)  # 5 MB: past the first block (4 MB on one thread) and chunk
    at = rng.randrange(len(good) // 2, len(good))
    while good[at] & 0xC0 == 0x80:
        at += 1
    data = good[:at] + rng.choice(BAD) + good[at:]
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    for threads in (1, 2):
        with pytest.raises(UnicodeDecodeError) as info:
            tok.encode_file(path, tmp_path / "out.npy", num_threads=threads, progress=False)
        check(info.value, path, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_the_first_bad_byte_wins(tmp_path):
    data = b"ok " * 1000 + b"\xff" + b"ok " * 100_000 + b"\xfe"
    path = tmp_path / "two.txt"
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError) as info:
        train_bpe(path, 300, chunk_size=64)
    assert (info.value.start, info.value.end) == (3000, 3001)


def test_str_input_has_no_decode_errors():
    # Iterators yield str: nothing to decode, so no UnicodeDecodeError can arise there.
    vocab, merges = train_bpe_from_iterator(["héllo wörld"] * 10, 260)
    assert len(merges) == 4

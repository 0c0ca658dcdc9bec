"""Kept pre-token counts (`bpe336.counts`) and byte-range shards (`bpe336.shards`): counts equal
an independent count (Python's `regex`), the shards of any partition of a file add up to the
whole file's counts, training from counts (saved, loaded, merged from shards, from an iterator)
gives exactly the merges of training from the text for every named pattern and a custom regex,
the file round-trips exactly, and every bad input is one clear exception (CLI: `error: ...`).

    cd tests && python -m pytest -q bpe336/test_counts.py
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path

import pytest
from testdata import DATA, EOT, FIXTURES, needs_file, needs_shared

from bpe336 import CountsFileError, PretokenCounts, count_pretokens, count_pretokens_from_iterator, train_bpe
from bpe336 import reference as ref
from bpe336.cli import main
from bpe336.formats import decode_token
from bpe336.shards import owned_range, plan_byte_ranges

CUSTOM = r"\p{L}+|\p{N}{1,2}|\s+|[^\s\p{L}\p{N}]+"
PATTERNS = ["gpt2", "cl100k", "o200k", CUSTOM]
SPECIALS = [EOT, "<|x|>"]
# Pieces that stress where text may be cut: multi-byte characters (2, 3 and 4 bytes, combining
# marks), CRLF and whitespace runs, contractions, digit runs, special tokens, near misses and a
# doubled special.
PIECES = [
    "a", "b", "Ab", "HTML", "it's", "'S", "'", " ", "  ", "   ", "\n", "\r\n", "\r\n\r\n", "\t", " \n ",
    "1", "123", "12345", "é", "e\u0301", "ж", "中文", "。", "😀", "\u3000", "!", "?!", "...", "/",
    "<|", "|>", "<|endoftext", EOT, EOT + EOT, "<|x|>", "<|x|><|x|>",
]  # fmt: skip
BLOCKS = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x3B1, 0x3C9), (0x430, 0x44F), (0x4E00, 0x4E40), (0x1F600, 0x1F64F)]


def random_text(rng: random.Random, n_chars: int) -> str:
    parts, size = [], 0
    while size < n_chars:
        if rng.random() < 0.6:
            p = rng.choice(PIECES)
        else:
            lo, hi = rng.choice(BLOCKS)
            p = (" " if rng.random() < 0.5 else "") + "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6)))
        parts.append(p)
        size += len(p)
    return "".join(parts)


def random_partition(rng: random.Random, size: int, pieces: int) -> list[tuple[int, int]]:
    """Ranges (0, b1), (b1, b2), ..., (bk, size) at random boundaries (inside characters too,
    repeated ones giving empty ranges)."""
    bounds = sorted(rng.randint(0, size) for _ in range(pieces - 1))
    bounds = [0, *bounds, size]
    return list(zip(bounds, bounds[1:]))


def shard_counts(path: Path, ranges, specials, pattern) -> list[PretokenCounts]:
    return [count_pretokens(path, specials, pattern, byte_range=r) for r in ranges]


@pytest.fixture(scope="module")
def unicode_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("counts") / "unicode.txt"
    path.write_text(random_text(random.Random(7), 12_000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def webtext_slice(tmp_path_factory) -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    text = DATA.joinpath("webtext.txt").read_bytes()[:1_000_000].decode("utf-8", errors="ignore")
    path = tmp_path_factory.mktemp("counts") / "webtext-1mb.txt"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_counts_equal_an_independent_count(unicode_file, pattern):
    text = unicode_file.read_bytes().decode("utf-8")  # not read_text, which would turn \r\n into \n
    expected = ref.count_pretokens(text, SPECIALS, pattern)
    counts = count_pretokens(unicode_file, SPECIALS, pattern)
    assert counts.items() == sorted(expected.items())
    assert (len(counts), counts.total, counts.input_bytes) == (len(expected), sum(expected.values()), len(text.encode()))
    assert counts.special_tokens == SPECIALS
    assert count_pretokens_from_iterator(iter(text.splitlines(keepends=True)), SPECIALS, pattern) == counts
    # Chunking and threads never change counts (equal counts are equal bytes).
    assert count_pretokens(unicode_file, SPECIALS, pattern, chunk_size=97, num_threads=2).to_bytes() == counts.to_bytes()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_two_shard_split_adds_up_to_the_whole(tmp_path, pattern):
    """Every boundary position of a short text dense in hard places (inside characters, CRLF,
    whitespace runs, special tokens and their near misses): the two shards tile the file and
    their counts add up to the whole's."""
    text = "".join(random.Random(3).choice(PIECES) for _ in range(120))
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    size = path.stat().st_size
    whole = count_pretokens(path, SPECIALS, pattern)
    moved = 0
    for b in range(size + 1):
        left, right = owned_range(path, (0, b), SPECIALS, pattern), owned_range(path, (b, size), SPECIALS, pattern)
        spans = [r for r in (left, right) if r is not None]
        assert spans[0][0] == 0 and spans[-1][1] == size and all(x[1] == y[0] for x, y in zip(spans, spans[1:])), (b, spans)
        moved += spans[0][1] != b
        parts = shard_counts(path, [(0, b), (b, size)], SPECIALS, pattern)
        assert parts[0] + parts[1] == whole, f"{pattern}: split at byte {b}"
    assert moved > 0  # boundaries inside runs did move


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_partitions_add_up_to_the_whole(unicode_file, pattern):
    size = unicode_file.stat().st_size
    whole = count_pretokens(unicode_file, SPECIALS, pattern)
    rng = random.Random(11)
    for pieces in (2, 3, 7, 20):
        ranges = random_partition(rng, size, pieces)
        parts = shard_counts(unicode_file, ranges, SPECIALS, pattern)
        assert sum(parts) == whole, (pattern, ranges)
        # The owned ranges tile the file, in order.
        owned = [r for r in (owned_range(unicode_file, rr, SPECIALS, pattern) for rr in ranges) if r is not None]
        assert owned[0][0] == 0 and owned[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))
        assert sum(p.input_bytes for p in parts) == size
    # Equal-size plans, and ranges past the end of the file.
    assert sum(shard_counts(unicode_file, plan_byte_ranges(size, 1000), SPECIALS, pattern)) == whole
    assert count_pretokens(unicode_file, SPECIALS, pattern, byte_range=(0, 10 * size)) == whole


def test_custom_regex_without_specials_gives_the_whole_file_to_the_first_shard(unicode_file):
    size = unicode_file.stat().st_size
    assert owned_range(unicode_file, (0, 10), [], CUSTOM) == (0, size)
    assert owned_range(unicode_file, (10, size), [], CUSTOM) is None
    assert len(count_pretokens(unicode_file, [], CUSTOM, byte_range=(10, size))) == 0


# ---------------------------------------------------------------------------------------------
# Training from counts
# ---------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("pattern", PATTERNS)
def test_training_from_counts_and_shards_equals_training_from_the_file(pattern, unicode_file, webtext_slice, tmp_path):
    rng = random.Random(5)
    for path, vocab_size in [(FIXTURES / "corpus.en", 600), (webtext_slice, 1500), (unicode_file, 400)]:
        direct = train_bpe(path, vocab_size, SPECIALS, pattern=pattern)
        counts = count_pretokens(path, SPECIALS, pattern)
        assert train_bpe(counts, vocab_size) == direct, (pattern, path.name)
        saved = tmp_path / "c.bpc"
        counts.save(saved)
        assert train_bpe(PretokenCounts.load(saved), vocab_size, SPECIALS, pattern=pattern) == direct
        ranges = random_partition(rng, path.stat().st_size, rng.randint(2, 9))
        merged = sum(shard_counts(path, ranges, SPECIALS, pattern))
        assert merged == counts, (pattern, path.name, ranges)
        assert train_bpe(merged, vocab_size) == direct, (pattern, path.name, ranges)


@needs_shared
def test_gpt2_default_from_counts_keeps_the_reference_result():
    counts = count_pretokens(FIXTURES / "corpus.en", [EOT])
    vocab, merges = train_bpe(counts, 500)
    lines = (FIXTURES / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges == [tuple(decode_token(part) for part in line.split(" ")) for line in lines if line]
    assert (vocab, merges) == train_bpe(FIXTURES / "corpus.en", 500, [EOT])


def test_training_takes_the_counts_specials_and_pattern(unicode_file):
    counts = count_pretokens(unicode_file, SPECIALS, "cl100k")
    vocab, _ = train_bpe(counts, 300)
    assert [vocab[0], vocab[1]] == [s.encode() for s in SPECIALS]
    for wrong in ([], [EOT], SPECIALS[::-1], [*SPECIALS, "<|y|>"]):
        with pytest.raises(ValueError, match="made with the special tokens"):
            train_bpe(counts, 300, wrong)
    for wrong in ("gpt2", "o200k", CUSTOM):
        with pytest.raises(ValueError, match="made with the pattern cl100k"):
            train_bpe(counts, 300, pattern=wrong)
    assert train_bpe(counts, 300, pattern="cl100k") == train_bpe(counts, 300, SPECIALS)
    with pytest.raises(ValueError, match="too small"):
        train_bpe(counts, 257)
    with pytest.raises(ValueError, match="too large: token ids are 32-bit"):
        train_bpe(counts, 2**32)
    with pytest.raises(ValueError, match="no text to train on"):
        train_bpe(count_pretokens_from_iterator([EOT * 3], SPECIALS), 300)


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(unicode_file, tmp_path):
    counts = count_pretokens(unicode_file, SPECIALS, CUSTOM)
    path = tmp_path / "c.bpc"
    path.write_bytes(b"old contents")
    counts.save(path)
    data = path.read_bytes()
    assert data == counts.to_bytes() and sorted(p.name for p in tmp_path.iterdir()) == ["c.bpc"]
    back = PretokenCounts.load(path)
    assert back == counts and back.items() == counts.items()
    assert (back.pattern, back.special_tokens, back.total, len(back), back.input_bytes) == (
        CUSTOM,
        SPECIALS,
        counts.total,
        len(counts),
        unicode_file.stat().st_size,
    )
    assert PretokenCounts.from_bytes(bytearray(data)) == counts
    # The documented layout: magic, version, the pattern, and zlib's CRC-32 of the rest.
    assert data[:8] == b"BPE336PC" and struct.unpack_from("<I", data, 8)[0] == 1
    n = struct.unpack_from("<I", data, 12)[0]
    assert data[16 : 16 + n].decode() == CUSTOM
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert "distinct" in repr(counts) and "special_tokens=" in repr(counts)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_bad_counts_files_are_one_clear_error(unicode_file, tmp_path):
    good = count_pretokens(unicode_file, SPECIALS).to_bytes()
    cases = {
        "version 2": _with_crc(good[:8] + struct.pack("<I", 2) + good[12:-4]),
        "checksum mismatch": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "truncated": good[:10],
        "checksum mismatch ": good[: len(good) // 2],
        "not a bpe336 counts file": b"\x89PNG\r\n\x1a\n" + bytes(100),
        "not a bpe336 counts file ": json.dumps({"a": 1}).encode(),
        "truncated ": b"",
    }
    # A well-formed checksum over entries out of order: the first two swapped (short entries:
    # one-byte length and count).
    e = _entries(good)
    head = good[: len(good) - 4 - len(e)]
    first = e[: e[0] + 2]
    second = e[len(first) : len(first) + e[len(first)] + 2]
    assert max(first[0], first[-1], second[0], second[-1]) < 128
    cases["out of order"] = _with_crc(head + second + first + e[len(first) + len(second) :])
    for reason, data in cases.items():
        path = tmp_path / "bad.bpc"
        path.write_bytes(data)
        with pytest.raises(CountsFileError, match=reason.strip()) as info:
            PretokenCounts.load(path)
        assert str(info.value).startswith(f"{path}: ")
        assert isinstance(info.value, ValueError)
        with pytest.raises(CountsFileError, match=reason.strip()):
            PretokenCounts.from_bytes(data)
    with pytest.raises(FileNotFoundError):
        PretokenCounts.load(tmp_path / "missing.bpc")
    with pytest.raises(IsADirectoryError):
        PretokenCounts.load(tmp_path)
    with pytest.raises(TypeError):
        PretokenCounts.from_bytes("text")
    with pytest.raises(TypeError):
        PretokenCounts(None)


def _entries(data: bytes) -> bytes:
    """The entries section of a counts file (the header's last u64 gives its length)."""
    pos = 12
    n = struct.unpack_from("<I", data, pos)[0]
    pos += 4 + n
    k = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    for _ in range(k):
        n = struct.unpack_from("<I", data, pos)[0]
        pos += 4 + n
    pos += 24
    length = struct.unpack_from("<Q", data, pos)[0]
    return data[pos + 8 : pos + 8 + length]


def _counts_file(entries: list[tuple[bytes, int]]) -> bytes:
    """A counts file (GPT-2 pattern, no special tokens) holding `entries`, sorted."""

    def varint(v: int) -> bytes:
        out = b""
        while v >= 0x80:
            out += bytes([v & 0x7F | 0x80])
            v >>= 7
        return out + bytes([v])

    pattern = ref.GPT2_PATTERN.encode()
    body = b"".join(varint(len(k)) + k + varint(c) for k, c in sorted(entries))
    head = b"BPE336PC" + struct.pack("<II", 1, len(pattern)) + pattern + struct.pack("<I", 0)
    head += struct.pack("<QQQQ", 0, len(entries), sum(c for _, c in entries), len(body))
    return _with_crc(head + body)


def test_counts_too_large_for_pair_counts_are_an_error_not_wrong_merges():
    # A file may hold counts up to 2^64 - 1; the merge loop's pair counts hold up to 2^63 - 1.
    # Up to that bound the merges are exact; beyond it a clear error, never wrapped counts
    # (which made b"cd" win over b"ab", or gave no merges at all).
    fits = PretokenCounts.from_bytes(_counts_file([(b"abab", 2**61), (b"cd", 2**61 - 1)]))  # 2^63 - 1 pairs
    assert train_bpe(fits, 259)[1] == [(b"a", b"b"), (b"ab", b"ab"), (b"c", b"d")]
    for entries in ([(b"abab", 2**62), (b"cd", 2**62 - 1)], [(b"aaaa", 2**64 - 1)], [(b"ab", 2**63)]):
        counts = PretokenCounts.from_bytes(_counts_file(entries))
        with pytest.raises(ValueError, match="too large to train on"):
            train_bpe(counts, 300)


def test_merging_checks_pattern_and_special_tokens(unicode_file):
    base = count_pretokens(unicode_file, SPECIALS)
    for other in (
        count_pretokens(unicode_file, SPECIALS, "cl100k"),
        count_pretokens(unicode_file, [EOT]),
        count_pretokens(unicode_file, SPECIALS[::-1]),
    ):
        with pytest.raises(ValueError, match="cannot merge counts made with different"):
            base + other
        with pytest.raises(ValueError, match="cannot merge"):
            sum([base, base, other])
    with pytest.raises(TypeError):
        base + 1
    with pytest.raises(TypeError):
        base.merge(b"bytes")
    doubled = base + base
    assert doubled.total == 2 * base.total and len(doubled) == len(base) and doubled.input_bytes == 2 * base.input_bytes
    assert base.merge(base, base) == doubled + base == sum([base, base, base])
    # The same pattern by another spelling is the same pattern.
    assert count_pretokens(unicode_file, SPECIALS, ref.GPT2_PATTERN) + base == doubled


def test_arguments_are_checked(unicode_file, tmp_path):
    for bad, error in [((5, 2), ValueError), ((-1, 2), ValueError), ((0.5, 2), TypeError), ((1, 2, 3), TypeError), ("0:9", TypeError)]:
        with pytest.raises(error):
            count_pretokens(unicode_file, byte_range=bad)
    with pytest.raises(ValueError, match="one file"):
        count_pretokens([unicode_file, unicode_file], byte_range=(0, 5))
    with pytest.raises(FileNotFoundError):
        count_pretokens(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="unknown pre-tokenization pattern"):
        count_pretokens(unicode_file, pattern="gpt4")
    with pytest.raises(TypeError):
        count_pretokens_from_iterator("a string")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text " * 100 + b"\xff more")
    with pytest.raises(UnicodeDecodeError) as info:
        count_pretokens(bad, byte_range=(500, 2000))
    assert info.value.start == 1000  # absolute, not within the shard


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@needs_file(FIXTURES / "corpus.en")
def test_cli_count_then_train_from_counts(tmp_path, capsys):
    corpus = FIXTURES / "corpus.en"
    out = tmp_path / "c.bpc"
    assert main(["count", str(corpus), "--special-token", EOT, "--out", str(out), "--no-progress"]) == 0
    assert "distinct pre-tokens" in capsys.readouterr().out
    assert PretokenCounts.load(out) == count_pretokens(corpus, [EOT])
    assert main(["train", "--counts", str(out), "--vocab-size", "500", "--out", str(tmp_path / "tok"), "--no-progress"]) == 0
    from bpe336 import Tokenizer

    tok = Tokenizer.load(tmp_path / "tok")
    vocab, merges = train_bpe(corpus, 500, [EOT])
    assert tok.merges == merges and tok.vocab == vocab and tok.special_tokens == [EOT]
    # Several counts files are added.
    assert main(["train", "--counts", str(out), "--counts", str(out), "--vocab-size", "300", "--out", str(tmp_path / "t2")]) == 0
    capsys.readouterr()
    cases = [
        (["train", "--counts", str(out), str(corpus), "--vocab-size", "300"], "not both"),
        (["train", "--vocab-size", "300"], "--counts FILE"),
        (["train", "--counts", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "t3")], "not a bpe336 counts file"),
        (["train", "--counts", str(out), "--vocab-size", "300", "--special-token", "x", "--out", str(tmp_path / "t3")], "special tokens"),
        (["train", "--counts", str(out), "--vocab-size", "300", "--pattern", "o200k", "--out", str(tmp_path / "t3")], "pattern"),
        (["train", "--counts", str(tmp_path / "none.bpc"), "--vocab-size", "300"], "none.bpc"),
        (["count", str(corpus), "--out", str(tmp_path)], "is a directory"),
        (["count", str(corpus), "--out", str(corpus)], "is the input file"),
        (["count", str(tmp_path / "none.txt"), "--out", str(out)], "none.txt"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(f"bpe336 {argv[0]}: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "t3").exists()

"""Corpus to token array: `Tokenizer.encode_file` (.npy and raw .bin, atomic, parallel) and the
`bpe336 encode` / `bpe336 bench` commands.

    cd tests && python -m pytest -q test_encode_file.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testdata import DATA, EOT, FIXTURES, needs_shared

from bpe336 import Tokenizer
from bpe336.cli import main

pytestmark = needs_shared


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 3 MB of webtext cut at a document boundary: several chunks per thread."""
    text = DATA.joinpath("webtext.txt").read_text(encoding="utf-8")[:3_000_000]
    text = text[: text.rindex(EOT) + len(EOT)] + "\ntail without newline"
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("threads", [1, 2])
def test_npy_equals_encode(gpt2, corpus, tmp_path, threads):
    out = tmp_path / "tokens.npy"
    stats = gpt2.encode_file(corpus, out, num_threads=threads, progress=False)
    arr = np.load(out, mmap_mode="r")
    expect = gpt2.encode(corpus.read_text(encoding="utf-8"))
    assert arr.dtype == np.uint16 and arr.shape == (len(expect),)
    assert arr.tolist() == expect
    assert stats["tokens"] == len(expect) and stats["bytes"] == corpus.stat().st_size
    assert stats["dtype"] == "uint16" and stats["threads"] == threads
    assert stats["bytes_per_token"] == pytest.approx(stats["bytes"] / stats["tokens"])
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_byte_range_shards_concatenate_to_the_whole(gpt2, corpus, tmp_path):
    """Shards of random partitions (boundaries anywhere, inside characters and special tokens
    too) encode to arrays whose concatenation is the whole file's array."""
    import random

    text = corpus.read_text(encoding="utf-8").replace("\n\n", "\r\n\r\n  é中😀 ")
    path = tmp_path / "mixed.txt"
    path.write_bytes(text.encode("utf-8"))
    whole = gpt2.encode_file(path, tmp_path / "whole.npy", progress=False)
    expect = np.load(tmp_path / "whole.npy")
    size, rng = path.stat().st_size, random.Random(4)
    eot_at = text.encode("utf-8").index(EOT.encode())
    for bounds in ([eot_at + 3], [eot_at, eot_at + 1, 10], sorted(rng.randrange(size) for _ in range(9))):
        edges = [0, *sorted(bounds), size]
        parts, owned = [], []
        for i, r in enumerate(zip(edges, edges[1:])):
            stats = gpt2.encode_file(path, tmp_path / f"p{i}.bin", byte_range=r, progress=False)
            parts.append(np.fromfile(tmp_path / f"p{i}.bin", dtype="<u2"))
            assert stats["tokens"] == len(parts[-1])
            if stats["range"] is not None:
                owned.append(stats["range"])
                assert stats["bytes"] == stats["range"][1] - stats["range"][0]
        assert np.array_equal(np.concatenate(parts), expect), edges
        assert owned[0][0] == 0 and owned[-1][1] == size and all(a[1] == b[0] for a, b in zip(owned, owned[1:]))
    assert whole["tokens"] == len(expect)


def test_raw_bin_and_uint32(gpt2, corpus, tmp_path):
    out = tmp_path / "tokens.bin"
    gpt2.encode_file(corpus, out, dtype="uint32", progress=False)
    raw = np.fromfile(out, dtype="<u4")
    assert raw.tolist() == gpt2.encode(corpus.read_text(encoding="utf-8"))


def test_progress_bar_and_empty_file(gpt2, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    stats = gpt2.encode_file(empty, tmp_path / "empty.npy", progress=True)
    assert stats["tokens"] == 0
    assert np.load(tmp_path / "empty.npy").shape == (0,)
    small = tmp_path / "small.txt"
    small.write_text("hello world" + EOT, encoding="utf-8")
    gpt2.encode_file(small, tmp_path / "small.npy", progress=True)
    assert np.load(tmp_path / "small.npy").tolist() == gpt2.encode("hello world" + EOT)
    assert "encode small.txt" in capsys.readouterr().err


def test_invalid_utf8_says_where_and_leaves_no_output(gpt2, tmp_path):
    data = ("good text here\n" * 200_000).encode()
    at = 1_234_567
    bad = data[:at] + b"\xc3\x28" + data[at:]
    src = tmp_path / "bad.txt"
    src.write_bytes(bad)
    out = tmp_path / "bad.npy"
    out.write_bytes(b"previous good file")
    with pytest.raises(UnicodeDecodeError, match=f"byte offset {at}"):
        gpt2.encode_file(src, out, progress=False)
    assert out.read_bytes() == b"previous good file"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "bad.txt"]


def test_bad_paths_and_dtypes(gpt2, tmp_path):
    with pytest.raises(FileNotFoundError):
        gpt2.encode_file(tmp_path / "missing.txt", tmp_path / "x.npy", progress=False)
    with pytest.raises(IsADirectoryError):
        gpt2.encode_file(tmp_path, tmp_path / "x.npy", progress=False)
    src = tmp_path / "a.txt"
    src.write_text("abc", encoding="utf-8")
    with pytest.raises(IsADirectoryError):
        gpt2.encode_file(src, tmp_path, progress=False)
    with pytest.raises(ValueError, match="uint16 or uint32"):
        gpt2.encode_file(src, tmp_path / "x.npy", dtype="int64", progress=False)
    big = Tokenizer({**{i: bytes([i]) for i in range(256)}, 70_000: b"<big>"}, [], special_tokens=["<big>"])
    with pytest.raises(ValueError, match="cannot hold"):
        big.encode_file(src, tmp_path / "x.npy", dtype="uint16", progress=False)
    assert big.encode_file(src, tmp_path / "x.npy", progress=False)["dtype"] == "uint32"


def test_cli_encode_and_bench(gpt2, corpus, tmp_path, capsys):
    tok_dir = tmp_path / "gpt2"
    gpt2.save(tok_dir)
    out = tmp_path / "cli.npy"
    assert main(["encode", str(corpus), "--tokenizer", str(tok_dir), "--out", str(out), "--threads", "2", "--no-progress"]) == 0
    assert np.load(out).tolist() == gpt2.encode(corpus.read_text(encoding="utf-8"))
    summary = capsys.readouterr().out
    for word in ["tokens", "bytes/token", "MB/s", "peak memory", "Pile"]:
        assert word in summary
    # The GPT-2 pair by path, and a single-file tokenizer.
    assert (
        main(
            [
                "encode",
                str(corpus),
                "--vocab",
                str(FIXTURES / "gpt2_vocab.json"),
                "--merges",
                str(FIXTURES / "gpt2_merges.txt"),
                "--special-token",
                EOT,
                "--out",
                str(tmp_path / "b.bin"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert np.fromfile(tmp_path / "b.bin", dtype="<u2").tolist() == np.load(out).tolist()
    gpt2.save(tmp_path / "gpt2.json")
    assert main(["bench", str(FIXTURES / "corpus.en"), "--tokenizer", str(tmp_path / "gpt2.json"), "--repeat", "1"]) == 0
    report = capsys.readouterr().out
    assert "bytes/token" in report and "Pile" in report and "encode_to_numpy" in report
    assert main(["encode", str(corpus), "--out", str(tmp_path / "none.npy")]) == 1  # no tokenizer given
    assert "error: give --tokenizer" in capsys.readouterr().err

"""`bpe336 train` writes GPT-2 files that load back to exactly what `train_bpe` returns, with
the pattern it was given; `bpe336 encode` uses the pattern the tokenizer records.

cd tests && python -m pytest -q test_train_cli.py
"""

from __future__ import annotations

import numpy as np
import pytest
from testdata import EOT

from bpe336 import Tokenizer
from bpe336.cli import main
from bpe336.formats import load_gpt2_files
from bpe336.train import train_bpe


def test_train_command_writes_gpt2_files(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("the quick brown fox jumps over the lazy dog. " * 50 + EOT + "\n") * 4, encoding="utf-8")
    out = tmp_path / "tok"
    rc = main(["train", str(corpus), "--vocab-size", "320", "--special-token", EOT, "--out", str(out), "--no-progress", "--threads", "2"])
    assert rc == 0
    summary = capsys.readouterr().out
    for word in ("peak memory", "distinct pre-tokens", "longest token", " s "):
        assert word in summary
    vocab, merges = load_gpt2_files(out / "vocab.json", out / "merges.txt", [EOT])
    expected_vocab, expected_merges = train_bpe(corpus, 320, [EOT])
    assert merges == expected_merges
    assert vocab == expected_vocab


def test_train_command_reports_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 1
    assert "No such file" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("abc", encoding="utf-8")
    assert main(["train", str(tmp_path / "x.txt"), "--vocab-size", "10", "--out", str(tmp_path / "o")]) == 2
    assert "--vocab-size must be between 256" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", r"\p{L}+|\p{N}|[^\s\p{L}\p{N}]+|\s+"])
def test_train_and_encode_with_a_pattern(tmp_path, capsys, pattern):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("HTMLParser's value is 1234567; DON'T STOP.\n\n  " * 40 + EOT) * 3, encoding="utf-8")
    out = tmp_path / "tok"
    argv = ["train", str(corpus), "--vocab-size", "330", "--special-token", EOT, "--out", str(out), "--no-progress", "--pattern", pattern]
    assert main(argv) == 0
    assert f"pattern: {pattern if pattern in ('cl100k', 'o200k') else repr(pattern)}" in capsys.readouterr().out
    tok = Tokenizer.load(out)
    assert (tok.vocab, tok.merges) == train_bpe(corpus, 330, [EOT], pattern=pattern)
    assert tok.pattern == Tokenizer({i: bytes([i]) for i in range(256)}, [], pattern=pattern).pattern
    assert main(["encode", str(corpus), "--tokenizer", str(out), "--out", str(tmp_path / "ids.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "ids.npy").tolist() == tok.encode(corpus.read_text(encoding="utf-8"))

"""`bpe336 train|encode|bench` on bad input: one `error:` line and a non-zero exit, never a
traceback; outputs checked before any work; plain progress lines when stderr is not a terminal.

cd tests && python -m pytest -q bpe336/test_bpe336_cli.py
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from testdata import EOT

import bpe336.train
from bpe336 import Tokenizer, _core
from bpe336.cli import main


@pytest.fixture
def files(tmp_path):
    """A small corpus, a saved tokenizer, and the bad inputs the commands meet."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("the cat sat on the mat. " * 20 + EOT + "\n") * 5, encoding="utf-8")
    vocab, merges = bpe336.train_bpe(corpus, 300, [EOT])
    tok = tmp_path / "tok"
    Tokenizer(vocab, merges, [EOT]).save(tok)
    bad_utf8 = tmp_path / "bad.txt"
    bad_utf8.write_bytes(b"good text\n\xff\xfe more")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    garbage_tok = tmp_path / "garbage_tok"
    garbage_tok.mkdir()
    (garbage_tok / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {', encoding="utf-8")
    return {
        "corpus": corpus,
        "tok": tok,
        "bad_utf8": bad_utf8,
        "empty": empty,
        "fifo": fifo,
        "missing": tmp_path / "missing.txt",
        "dir": tmp_path,
        "garbage_tok": garbage_tok,
        "empty_dir": tmp_path / "empty_dir",
        "tmp": tmp_path,
    }


def run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def fails(capsys, argv: list[str], *needles: str) -> str:
    rc, err = run(capsys, argv)
    assert rc != 0, argv
    assert "error:" in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Training must not start: the command has to fail on its checks first."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the checks")

    monkeypatch.setattr(bpe336.train, "train_bpe_with_stats", refuse)


def test_train_bad_inputs(files, capsys, no_training):
    f = files
    out = ["--out", f["tmp"] / "out", "--no-progress"]
    fails(capsys, ["train", f["missing"], *out], "missing.txt", "No such file")
    fails(capsys, ["train", f["dir"], *out], "Is a directory")
    for bad in ["-1", str(10**12), "abc", "255"]:
        fails(capsys, ["train", f["corpus"], "--vocab-size", bad, *out], "--vocab-size")
    for bad in ["0", str(10**6), "-3", "x", str(_core.max_threads() + 1)]:
        fails(capsys, ["train", f["corpus"], "--threads", bad, *out], "--threads")
    assert not (f["tmp"] / "out").exists()


def test_bad_patterns(files, capsys, no_training):
    f = files
    out = ["--out", f["tmp"] / "out", "--no-progress"]
    fails(capsys, ["train", f["corpus"], "--pattern", "(", *out], "invalid pre-tokenization pattern")
    fails(capsys, ["train", f["corpus"], "--pattern", "a*|b", *out], "can match the empty string")
    fails(capsys, ["train", f["corpus"], "--pattern", "gpt4", *out], "unknown pre-tokenization pattern name", "(?:gpt4)")
    assert not (f["tmp"] / "out").exists()
    # encode: the tokenizer records GPT-2; another pattern contradicts it, a bad one is refused.
    enc = ["encode", f["corpus"], "--tokenizer", f["tok"], "--out", f["tmp"] / "o.npy", "--no-progress"]
    fails(capsys, [*enc, "--pattern", "cl100k"], "records the pattern")
    fails(capsys, [*enc, "--pattern", "("], "invalid pre-tokenization pattern")
    assert not (f["tmp"] / "o.npy").exists()


def test_train_checks_outputs_before_training(files, capsys, no_training):
    f = files
    as_file = f["tmp"] / "out_file"
    as_file.write_text("keep me", encoding="utf-8")
    fails(capsys, ["train", f["corpus"], "--out", as_file], "out_file", "expected a directory")
    assert as_file.read_text(encoding="utf-8") == "keep me"
    foreign = f["tmp"] / "foreign"
    foreign.mkdir()
    (foreign / "notes.md").write_text("mine", encoding="utf-8")
    fails(capsys, ["train", f["corpus"], "--out", foreign], "notes.md", "new or empty directory")
    inside = foreign / "corpus.txt"
    inside.write_text("text", encoding="utf-8")
    (foreign / "notes.md").unlink()
    fails(capsys, ["train", inside, "--out", foreign], "corpus.txt")
    shutil_tok = f["tok"] / "vocab.json"
    fails(capsys, ["train", shutil_tok, "--out", f["tok"]], "is inside the output directory")


def test_train_errors_found_while_training(files, capsys):
    f = files
    out = ["--out", f["tmp"] / "out", "--no-progress"]
    fails(capsys, ["train", f["bad_utf8"], *out], "bad.txt", "byte offset")
    fails(capsys, ["train", f["empty"], *out], "empty.txt")
    fails(capsys, ["train", f["corpus"], "--special-token", "", *out], "special token")
    fails(capsys, ["train", f["corpus"], "--special-token", "x", "--special-token", "x", *out], "given twice")
    fails(capsys, ["train", f["corpus"], "--special-token", "a", "--special-token", "b", "--vocab-size", "257", *out], "too small")
    assert not (f["tmp"] / "out").exists()


def test_encode_bad_inputs(files, capsys):
    f = files
    tok = ["--tokenizer", f["tok"], "--no-progress"]
    out = ["--out", f["tmp"] / "o.npy"]
    fails(capsys, ["encode", f["missing"], *tok, *out], "No such file")
    fails(capsys, ["encode", f["dir"], *tok, *out], "Is a directory")
    fails(capsys, ["encode", f["bad_utf8"], *tok, *out], "bad.txt")
    fails(capsys, ["encode", f["corpus"], "--tokenizer", f["garbage_tok"], *out], "tokenizer.json:1", "malformed")
    f["empty_dir"].mkdir()
    fails(capsys, ["encode", f["corpus"], "--tokenizer", f["empty_dir"], *out], "no tokenizer here")
    fails(capsys, ["encode", f["corpus"], "--tokenizer", f["missing"], *out], "missing.txt")
    fails(capsys, ["encode", f["corpus"], *tok, "--threads", "0", *out], "--threads")
    fails(capsys, ["encode", f["corpus"], *tok, "--threads", str(10**6), *out], "--threads")
    fails(capsys, ["encode", f["corpus"], *tok, "--threads", str(_core.max_threads() + 1), *out], "--threads")
    fails(capsys, ["encode", f["corpus"], *out], "give --tokenizer")
    fails(capsys, ["encode", f["corpus"], "--vocab", f["tok"] / "vocab.json", *out], "go together")
    # Outputs: a directory, a device, the input itself (by default name, by symlink).
    fails(capsys, ["encode", f["corpus"], *tok, "--out", f["dir"]], "Is a directory")
    fails(capsys, ["encode", f["corpus"], *tok, "--out", "/dev/null"], "character device")
    fails(capsys, ["encode", f["corpus"], *tok, "--out", f["tmp"] / "no" / "dir" / "x.npy"], "does not exist")
    as_npy = f["tmp"] / "text.npy"
    as_npy.write_text("these are words", encoding="utf-8")
    fails(capsys, ["encode", as_npy, *tok], "is the input file")
    link = f["tmp"] / "link.bin"
    link.symlink_to(f["corpus"])
    fails(capsys, ["encode", f["corpus"], *tok, "--out", link], "is the input file")
    assert as_npy.read_text(encoding="utf-8") == "these are words"
    # An empty input is a valid (empty) token array.
    rc, _ = run(capsys, ["encode", f["empty"], *tok, "--out", f["tmp"] / "e.npy"])
    assert rc == 0 and np.load(f["tmp"] / "e.npy").size == 0


def test_bench_bad_inputs(files, capsys):
    f = files
    tok = ["--tokenizer", f["tok"], "--repeat", "1"]
    fails(capsys, ["bench", f["empty"], *tok], "empty.txt", "is empty")
    fails(capsys, ["bench", f["missing"], *tok], "No such file")
    fails(capsys, ["bench", f["dir"], *tok], "Is a directory")
    fails(capsys, ["bench", f["fifo"], *tok], "FIFO")
    fails(capsys, ["bench", f["bad_utf8"], *tok], "bad.txt", "byte offset 10")
    fails(capsys, ["bench", f["corpus"], "--tokenizer", f["garbage_tok"]], "malformed")
    for flag, bad in [("--threads", "0"), ("--threads", str(10**6)), ("--repeat", "0"), ("--limit-mb", "-1"), ("--limit-mb", "nan")]:
        fails(capsys, ["bench", f["corpus"], *tok, flag, bad], flag)
    rc, _ = run(capsys, ["bench", f["corpus"], *tok, "--threads", "1"])
    assert rc == 0


def test_bench_limit_mb_counts_bytes(files, capsys):
    """--limit-mb keeps the first MB megabytes of the file, not that many characters (which for
    two-byte letters would be twice the bytes); a character it would cut is left out whole."""
    f = files
    text = f["tmp"] / "cyrillic.txt"
    text.write_text("привет мир " * 300, encoding="utf-8")  # 20 bytes per 11 characters
    rc = main(["bench", str(text), "--tokenizer", str(f["tok"]), "--repeat", "1", "--threads", "1", "--limit-mb", "0.001"])
    out = capsys.readouterr().out
    assert rc == 0
    tokens = int(out.split(" tokens,")[0].rsplit(" ", 1)[1].replace(",", ""))
    # A byte-level vocabulary without merges for Cyrillic: one token per byte except the spaces' merges,
    # so the tokens of 1,000 bytes are at most 1,000, where 1,000 characters give well over 1,500.
    assert tokens <= 1_000, out


def test_closed_pipe_is_not_an_error(files):
    """A reader that leaves early (`bpe336 bench ... | head -1`) ends the command quietly, status 0."""
    f = files
    cmd = [sys.executable, "-m", "bpe336", "bench", str(f["corpus"]), "--tokenizer", str(f["tok"]), "--repeat", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # no reader left before the command writes anything
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0, err
    assert err == "", err


def test_streamed_inputs_and_other_kinds(files, capsys):
    """train and encode read a FIFO or pipe as a stream (`bpe336 train <(zcat corpus.gz)`); bench and
    the tokenizer files need regular files; a socket is never an input."""
    import socket
    import threading

    f = files
    text = f["corpus"].read_bytes()

    def feed() -> None:
        with open(f["fifo"], "wb") as w:
            w.write(text)

    for argv, made in (
        (["train", f["fifo"], "--vocab-size", "300", "--special-token", EOT, "--out", f["tmp"] / "piped", "--no-progress"], "piped"),
        (["encode", f["fifo"], "--tokenizer", f["tok"], "--out", f["tmp"] / "piped.npy", "--no-progress"], "piped.npy"),
    ):
        writer = threading.Thread(target=feed)
        writer.start()
        rc, err = run(capsys, argv)
        writer.join()
        assert rc == 0, err
        assert (f["tmp"] / made).exists()
    assert Tokenizer.load(f["tmp"] / "piped").merges == Tokenizer.load(f["tok"]).merges
    fails(capsys, ["bench", f["fifo"], "--tokenizer", f["tok"]], "FIFO", "regular file")
    sock_path = f["tmp"] / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        fails(capsys, ["train", sock_path, "--out", f["tmp"] / "out2", "--no-progress"], "not a regular file")
        fails(capsys, ["encode", sock_path, "--tokenizer", f["tok"], "--out", f["tmp"] / "s.npy"], "not a regular file")


def test_real_processes_print_no_traceback(files):
    """The same through the installed entry point, in a separate process."""
    f = files
    for argv in (
        ["bench", f["empty"], "--tokenizer", f["tok"]],
        ["train", f["corpus"], "--out", f["corpus"]],
        ["train", f["corpus"], "--vocab-size", str(10**12)],
    ):
        p = subprocess.run([sys.executable, "-m", "bpe336.cli", *map(str, argv)], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "error:" in p.stderr and "Traceback" not in p.stderr, (argv, p.stderr)


def test_python_dash_m_runs_the_cli(files):
    """`python -m bpe336` is the `bpe336` command, as `python -m lm336` is `lm336`."""
    p = subprocess.run([sys.executable, "-m", "bpe336", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: bpe336"), p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "bpe336", "train", str(files["corpus"]), "--out", str(files["corpus"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "bpe336 train: error:" in p.stderr, p.stderr


def test_progress_in_a_log_is_a_few_plain_lines(files, capsys):
    """stderr that is not a terminal (pytest's capture, a pipe, a file) gets lines, not bars."""
    f = files
    big = f["tmp"] / "big.txt"
    big.write_text(f["corpus"].read_text(encoding="utf-8") * 50, encoding="utf-8")
    rc, err = run(capsys, ["train", big, "--vocab-size", "400", "--out", f["tmp"] / "t2"])
    assert rc == 0
    assert "\r" not in err and 2 <= len(err.splitlines()) <= 16, err
    assert "counting pre-tokens: done" in err and "merging: done" in err
    rc, err = run(capsys, ["encode", big, "--tokenizer", f["tmp"] / "t2", "--out", f["tmp"] / "b.npy"])
    assert rc == 0 and "\r" not in err and 2 <= len(err.splitlines()) <= 6, err
    assert f"encode {big.name}: done" in err

"""Fixtures shared by the bpe336 tests: the GPT-2 files from ../shared/fixtures, our tokenizer
built from them, and tiktoken's GPT-2 encoding built offline from the same files (the oracle)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from testdata import EOT, FIXTURES, SHARED

from bpe336 import Tokenizer
from bpe336.formats import load_gpt2_files

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="session")
def gpt2_files():
    """(vocab, merges) of GPT-2; skips when ../shared is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return load_gpt2_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt")


@pytest.fixture(scope="session")
def gpt2(gpt2_files):
    """Our GPT-2 tokenizer, with `<|endoftext|>` special."""
    vocab, merges = gpt2_files
    return Tokenizer(vocab, merges, special_tokens=[EOT])


@pytest.fixture(scope="session")
def tiktoken_gpt2(gpt2_files):
    """tiktoken's GPT-2 encoding built offline: ranks follow the vocab ids (never get_encoding,
    which downloads)."""
    import tiktoken  # a test dependency (the `test` extra): never skip silently

    vocab, _ = gpt2_files
    ranks = {token: idx for idx, token in vocab.items() if token != EOT.encode()}
    return tiktoken.Encoding(name="gpt2_offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})


@pytest.fixture
def fast_dir(tmp_path):
    """A directory on tmpfs where there is one (fsync is free there, so tests that save or kill
    many times stay fast), else tmp_path."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="bpe336-test-", dir="/dev/shm"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)

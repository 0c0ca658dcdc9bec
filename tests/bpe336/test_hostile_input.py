"""The core under hostile input: sizes and ids that would drive allocations are refused before
anything is allocated by them, thread counts are bounded and pools never pile up, and every
such case is a clear Python exception (never an abort, a hang or a crash of the interpreter).

Cases that crashed the interpreter run in a child process under a memory limit, so a
regression fails the test instead of killing the test run.

    cd tests && python -m pytest -q bpe336/test_hostile_input.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bpe336 import Tokenizer, _core, train_bpe, train_bpe_from_iterator
from bpe336.formats import bytes_to_unicode

BYTES = {i: bytes([i]) for i in range(256)}

# A child that tries to allocate by a crafted number fails fast under this address-space limit
# instead of swapping the machine (the interpreter and the extension need well under 1 GiB).
CHILD_MEMORY_LIMIT = 4 << 30


def run_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter under CHILD_MEMORY_LIMIT; returns the finished
    process (stdout, stderr, returncode; a negative code is the signal that killed it)."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY_LIMIT}, {CHILD_MEMORY_LIMIT}))\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def expect_value_error(code: str, match: str) -> None:
    """`code` (in a child) must raise ValueError whose message contains `match`."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    proc = run_child(f"try:\n{body}\nexcept ValueError as e:\n    print('ValueError:', e)\nelse:\n    print('no error')\n")
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("ValueError:"), proc.stdout + proc.stderr[-2000:]
    assert match in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------
# Crafted vocabularies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**40, 2**64, 2**80])
def test_huge_ids_are_refused_before_allocation(bad_id):
    expect_value_error(
        f"""
        from bpe336 import Tokenizer
        vocab = {{i: bytes([i]) for i in range(256)}}
        vocab[{bad_id}] = b"zz"
        Tokenizer(vocab, [])
        """,
        "out of range",
    )


@pytest.mark.parametrize("bad_id", [2**31, 2**32 - 2, 2**64])
def test_huge_ids_are_refused_by_the_core_encoder(bad_id):
    expect_value_error(
        f"""
        from bpe336 import _core
        vocab = [(i, bytes([i])) for i in range(256)] + [({bad_id}, b"zz")]
        _core.Encoder(vocab, [])
        """,
        "out of range",
    )
    expect_value_error(
        f"""
        from bpe336 import _core
        vocab = [(i, bytes([i])) for i in range(256)]
        _core.Encoder(vocab, [], [("a", {bad_id})])
        """,
        "",
    )


@pytest.mark.parametrize("bad_id", [2**31, 2**32 - 2])
def test_huge_id_in_vocab_json_is_refused(tmp_path, bad_id):
    b2u = bytes_to_unicode()
    vocab = {b2u[i]: i for i in range(256)}
    vocab["<|endoftext|>"] = bad_id
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    expect_value_error(
        f"""
        from bpe336 import Tokenizer
        Tokenizer.from_files({str(tmp_path / "vocab.json")!r}, {str(tmp_path / "merges.txt")!r})
        """,
        str(bad_id),
    )


def test_gaps_in_ids_are_allowed_up_to_the_bound():
    # tiktoken-style: specials above the ranks, with a gap.
    tok = Tokenizer({**BYTES, 100_257: b"<|endoftext|>"}, [], special_tokens=["<|endoftext|>"])
    assert tok.vocab_size == 100_258
    assert tok.encode("a<|endoftext|>") == [97, 100_257]
    with pytest.raises(KeyError):
        tok.decode([5000])
    # The bound: twice the entries plus 2**20.
    limit = 2 * 257 + 2**20
    assert Tokenizer({**BYTES, limit - 1: b"zz"}, []).vocab_size == limit
    with pytest.raises(ValueError, match="out of range"):
        Tokenizer({**BYTES, limit: b"zz"}, [])
    with pytest.raises(ValueError):
        Tokenizer({-1: b"a", **BYTES}, [])


def test_training_sizes_are_bounded(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("low lower lowest newer wider " * 20, encoding="utf-8")
    # A huge vocab_size is not an allocation: training stops when pairs run out.
    proc = run_child(
        f"""
        from bpe336 import train_bpe
        vocab, merges = train_bpe({str(corpus)!r}, 2**32 - 1)
        print(len(vocab), len(merges))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_vocab, n_merges = map(int, proc.stdout.split())
    assert n_vocab == 256 + n_merges and 10 < n_merges < 100
    for size in (2**32, 2**64, 2**80):
        with pytest.raises(ValueError, match="vocab_size"):
            train_bpe(corpus, size)
    for chunk in (0, 2**31, 2**62, 2**64):
        with pytest.raises(ValueError, match="chunk_size"):
            train_bpe(corpus, 300, chunk_size=chunk)


def test_encode_file_header_is_bounded(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello world", encoding="utf-8")
    for header in (2**40, 2**64 - 1, -1):
        expect_value_error(
            f"""
            from bpe336 import _core
            enc = _core.Encoder([(i, bytes([i])) for i in range(256)], [])
            enc.encode_file({str(src)!r}, {str(tmp_path / "out.bin")!r}, {header}, 2)
            """,
            "header_len",
        )
    enc = _core.Encoder(list(BYTES.items()), [])
    assert enc.encode_file(str(src), str(tmp_path / "out.bin"), 16, 2) == (11, 11, 1)


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


def test_num_threads_is_bounded(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("low lower lowest " * 10, encoding="utf-8")
    tok = Tokenizer(BYTES, [])
    calls = {
        "encode_batch": lambda n: tok.encode_batch(["ab"], num_threads=n),
        "encode_to_numpy": lambda n: tok.encode_to_numpy("ab", num_threads=n),
        "encode_file": lambda n: tok.encode_file(corpus, tmp_path / "out.npy", num_threads=n, progress=False),
        "train_bpe": lambda n: train_bpe(corpus, 300, num_threads=n),
        "train_bpe_from_iterator": lambda n: train_bpe_from_iterator(["ab ab"], 300, num_threads=n),
    }
    top = _core.max_threads()
    assert 64 <= top <= 1024
    for name, call in calls.items():
        for bad in (0, -1, top + 1, 10**6, 10**30):
            with pytest.raises(ValueError, match=f"num_threads must be between 1 and {top}") as info:
                call(bad)
            assert str(bad) in str(info.value), name
        for bad in (1.5, "2", True):
            with pytest.raises(TypeError, match="num_threads"):
                call(bad)
        call(1)
        call(None)
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


def test_repeated_calls_leave_no_threads_behind(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("low lower lowest newer wider " * 50, encoding="utf-8")
    proc = run_child(
        f"""
        import gc, time, psutil
        from bpe336 import Tokenizer, _core, train_bpe, train_bpe_from_iterator
        me = psutil.Process()
        before = me.num_threads()
        tok = Tokenizer({{i: bytes([i]) for i in range(256)}}, [])
        for n in range(1, 61):
            tok.encode_batch(["ab cd"] * 3, num_threads=n)
            tok.encode_to_numpy("ab cd " * 100, num_threads=n)
            if n % 6 == 0:  # (each call fsyncs its output: slow on some disks)
                tok.encode_file({str(corpus)!r}, {str(tmp_path / "out.npy")!r}, num_threads=n, progress=False)
            train_bpe({str(corpus)!r}, 300, num_threads=n)
            train_bpe_from_iterator(["ab cd"] * 10, 300, num_threads=n)
        del tok
        gc.collect()
        # Pools that are let go exit asynchronously: give them a moment.
        deadline = time.time() + 10
        while me.num_threads() > before + 4 * _core.default_threads() and time.time() < deadline:
            time.sleep(0.1)
        print(before, me.num_threads(), _core.default_threads())
        """,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after, default = map(int, proc.stdout.split())
    # At most a few pools of the default size stay for reuse; nothing grows with the loop.
    assert after <= before + 4 * default, (before, after)

"""Streaming holds memory flat for any script and any named pattern: `encode_iterable`,
`encode_file` and training's chunker cut text at safe cuts (`pretokenize::Cuts`, each pattern's
rule), which exist in Cyrillic, Chinese and text with no whitespace at all, not only after ASCII
text and a space. A custom regex is cut only where special tokens start, so it stays flat when
they recur (as `<|endoftext|>` between documents does).

Each measurement runs in a child process: it generates the text on the fly (never holding it),
warms up on a small sample, resets its peak RSS (/proc/self/clear_refs) and reports how far the
peak rose above its RSS before the call. The text comes from a fixed dictionary per script, so
the distinct pre-tokens (which training's counts and the encoder's caches must hold) are
bounded and nothing else may grow with the input.

    cd tests && python -m pytest -q bpe336/test_stream_memory.py            # 12-24 MB cases
    cd tests && python -m pytest -q -m slow bpe336/test_stream_memory.py    # 40 MB of each script
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testdata import EOT, FIXTURES, needs_shared

from bpe336 import Tokenizer, train_bpe, train_bpe_from_iterator

# The generator is shared by the child processes (as source) and the equality tests below.
GENERATOR = textwrap.dedent(
    r'''
    import random

    def dictionary(script, rng, size=3000):
        if script == "cyrillic":
            letters = [chr(c) for c in range(0x430, 0x450)]
            return ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(size)]
        if script == "chinese":
            return ["".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 6))) for _ in range(size)]
        # no whitespace at all: letters, digits and punctuation
        return ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEF", k=rng.randint(1, 8))) for _ in range(size)]

    # Each separator is of another class than the words, so the pre-tokens stay the words and
    # separators of the dictionary: their number is bounded, whatever the length of the text.
    SEPARATORS = {
        "cyrillic": [" "] * 12 + ["\n"],  # no ASCII punctuation
        "chinese": ["，", "。", "、", "！", "1"],  # no whitespace
        "no_whitespace": ["1", "23", "-", ".", "_", "!?", "'"],
    }

    def pieces(script, total_bytes, seed=0, piece_chars=8192, specials=()):
        """Yields text of `script` in pieces until about `total_bytes` UTF-8 bytes."""
        rng = random.Random(seed)
        words = dictionary(script, rng)
        seps = SEPARATORS[script]
        done = 0
        while done < total_bytes:
            parts = []
            for _ in range(piece_chars // 6):
                parts.append(rng.choice(words))
                parts.append(rng.choice(seps))
                if specials and rng.random() < 0.002:
                    parts.append(rng.choice(specials))
            piece = "".join(parts)
            done += len(piece.encode("utf-8"))
            yield piece
    '''
)

CHILD = GENERATOR + textwrap.dedent(
    r"""
    import json, sys
    from bpe336 import Tokenizer, train_bpe, train_bpe_from_iterator

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024

    def measure(run, warm):
        warm()
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS (VmHWM) restarts from the current RSS
        result = run()
        return status("VmHWM") - before, result

    mode, script, megabytes, fixtures, tmp, pattern = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
    size = int(megabytes * 1e6)
    specials = ["<|endoftext|>"]
    if mode.startswith("encode"):
        tok = Tokenizer.from_files(fixtures + "/gpt2_vocab.json", fixtures + "/gpt2_merges.txt", specials, pattern=pattern)
    if mode == "encode_iterable":
        def consume(n):
            count = total = 0
            for i in tok.encode_iterable(pieces(script, n, specials=specials)):
                count += 1
                total += i
            return count
        growth, result = measure(lambda: consume(size), lambda: consume(1_000_000))
    elif mode in ("encode_file", "train_bpe"):  # from a file written here piece by piece
        path = tmp + "/input.txt"
        with open(path, "w", encoding="utf-8") as f:
            for p in pieces(script, size, specials=specials):
                f.write(p)
        with open(tmp + "/warm.txt", "w", encoding="utf-8") as f:
            f.write("".join(pieces(script, 1_000_000, seed=1)))
        if mode == "encode_file":
            run = lambda src: tok.encode_file(src, tmp + "/out.npy", num_threads=1, progress=False)["tokens"]
        else:
            run = lambda src: len(train_bpe(src, 400, specials, num_threads=1, pattern=pattern)[1])
        growth, result = measure(lambda: run(path), lambda: run(tmp + "/warm.txt"))
    elif mode == "train_bpe_from_iterator":
        run = lambda n: len(train_bpe_from_iterator(pieces(script, n, specials=specials), 400, specials, num_threads=1, pattern=pattern)[1])
        growth, result = measure(lambda: run(size), lambda: run(1_000_000))
    print(json.dumps({"growth_mib": growth, "result": result}))
    """
)

MODES = ["encode_iterable", "encode_file", "train_bpe", "train_bpe_from_iterator"]
SCRIPTS = ["cyrillic", "chinese", "no_whitespace"]


def growth_mib(mode: str, script: str, megabytes: float, tmp_path: Path, pattern: str = "gpt2") -> float:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, script, str(megabytes), str(FIXTURES), str(tmp_path), pattern],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    print(f"{mode} {script} {megabytes} MB ({pattern}): peak RSS +{out['growth_mib']:.1f} MiB")
    return out["growth_mib"]


# (mode, script, input MB, limit MiB). Held whole, the input costs far more than the limit (the
# text, then its ids or pre-tokens: +150, +145 and +24 MiB before streaming cut at any safe
# boundary); streamed, one block, the bounded caches and the counts of a 3,000-word dictionary.
FAST_CASES = [("encode_iterable", "cyrillic", 12, 40), ("encode_file", "chinese", 24, 48), ("train_bpe", "no_whitespace", 24, 12)]
LARGE_MB, LARGE_LIMIT_MIB = 40, 48


@needs_shared
@pytest.mark.parametrize(("mode", "script", "megabytes", "limit"), FAST_CASES)
def test_memory_is_flat_for_any_script(mode, script, megabytes, limit, tmp_path):
    assert growth_mib(mode, script, megabytes, tmp_path) < limit


# The other patterns, and a custom regex (cut only at the special token, every ~500 words).
CUSTOM = r"\p{L}+|\p{N}{1,3}|[^\s\p{L}\p{N}]+|\s+"
PATTERN_CASES = [
    ("encode_file", "cyrillic", 16, 48, "cl100k"),
    ("train_bpe", "chinese", 16, 12, "o200k"),
    ("encode_iterable", "no_whitespace", 8, 40, CUSTOM),
]


@needs_shared
@pytest.mark.parametrize(("mode", "script", "megabytes", "limit", "pattern"), PATTERN_CASES, ids=["cl100k", "o200k", "custom"])
def test_memory_is_flat_with_other_patterns(mode, script, megabytes, limit, pattern, tmp_path):
    assert growth_mib(mode, script, megabytes, tmp_path, pattern) < limit


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k"])
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("mode", MODES)
def test_memory_is_flat_for_40_mb_of_any_script(mode, script, pattern, tmp_path):
    assert growth_mib(mode, script, LARGE_MB, tmp_path, pattern) < LARGE_LIMIT_MIB


# ---------------------------------------------------------------------------------------------
# The streamed results are exact
# ---------------------------------------------------------------------------------------------

namespace: dict = {}
exec(GENERATOR, namespace)
pieces = namespace["pieces"]


@needs_shared
@pytest.mark.parametrize("script", SCRIPTS)
def test_streamed_encoding_equals_encode(gpt2, script, tmp_path):
    parts = list(pieces(script, 400_000, seed=3, piece_chars=3000, specials=[EOT]))
    text = "".join(parts)
    expect = gpt2.encode(text)
    assert list(gpt2.encode_iterable(parts)) == expect
    assert list(gpt2.encode_iterable(text[i : i + 777] for i in range(0, len(text), 777))) == expect
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    import numpy as np

    for threads in (1, 2):
        gpt2.encode_file(path, tmp_path / "out.npy", num_threads=threads, progress=False)
        assert np.load(tmp_path / "out.npy").tolist() == expect
    assert gpt2.encode_to_numpy(text, num_threads=2).tolist() == expect


@pytest.mark.parametrize("script", SCRIPTS)
def test_streamed_training_equals_whole_text(script, tmp_path):
    text = "".join(pieces(script, 300_000, seed=4, specials=[EOT]))
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    whole = train_bpe(path, 420, [EOT], chunk_size=1 << 30)  # one chunk: no cut at all
    for chunk in (1, 97, 4096):
        assert train_bpe(path, 420, [EOT], chunk_size=chunk) == whole, chunk
    assert train_bpe_from_iterator(iter(text[i : i + 1001] for i in range(0, len(text), 1001)), 420, [EOT], chunk_size=500) == whole
    tok = Tokenizer(*whole, special_tokens=[EOT])
    assert tok.decode(tok.encode(text)) == text

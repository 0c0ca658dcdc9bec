"""Training memory is bounded by the distinct pre-tokens, not the input size: a file several
times larger than the address space the training process may use still trains, and gives the
same result as a small file with the same distinct content.

    cd tests && python -m pytest -q -m slow -s test_train_memory.py

The child process runs under `RLIMIT_AS` (virtual memory, which bounds RSS and every mapping)
of `LIMIT_MIB`; the input is `FILE_MIB` (several times more). Prints the child's peak RSS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testdata import SHARED

FILE_MIB = 1200
LIMIT_MIB = 256

CHILD = textwrap.dedent(
    """
    import resource, sys, json
    limit = int(sys.argv[3]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from bpe336.train import train_bpe_with_stats
    vocab, merges, stats = train_bpe_with_stats(sys.argv[1], int(sys.argv[2]), ["<|endoftext|>"], num_threads=2)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a large parent
    # (a pytest process with torch loaded) would be counted as this child's peak.
    with open("/proc/self/status") as status:
        hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    stats["peak_rss_mib"] = hwm_kib / 1024
    stats["merges"] = [(a.hex(), b.hex()) for a, b in merges]
    print(json.dumps(stats))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared test data not found at {SHARED}")
def test_file_larger_than_memory_limit_trains(tmp_path):
    # Varied real text: a 4 MB slice of web text, each copy separated by <|endoftext|>; a few
    # copies rotated by a prime so chunk boundaries fall everywhere.
    with open(SHARED / "data" / "webtext.txt", encoding="utf-8") as f:
        block = f.read(4_000_000)
    block = block[: block.rfind("\n") + 1]
    unit = (block + "<|endoftext|>\n").encode()
    small = tmp_path / "small.txt"
    small.write_bytes(unit)
    big = tmp_path / "big.txt"
    copies = (FILE_MIB << 20) // len(unit) + 1
    with open(big, "wb") as f:
        for _ in range(copies):
            f.write(unit)
    size_mib = big.stat().st_size / (1 << 20)
    assert size_mib >= 2.5 * LIMIT_MIB

    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}

    def run(path: Path) -> dict:
        import json

        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), "2000", str(LIMIT_MIB)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    got = run(big)
    print(
        f"\ninput {size_mib:,.0f} MiB under RLIMIT_AS {LIMIT_MIB} MiB: peak RSS {got['peak_rss_mib']:.0f} MiB, "
        f"{got['distinct_pretokens']:,} distinct pre-tokens"
    )
    assert got["input_bytes"] == big.stat().st_size
    assert got["peak_rss_mib"] < LIMIT_MIB
    # Same distinct content, every count multiplied by `copies`: the same merges.
    expected = run(small)
    assert got["distinct_pretokens"] == expected["distinct_pretokens"]
    assert got["total_pretokens"] == copies * expected["total_pretokens"]
    assert got["merges"] == expected["merges"]

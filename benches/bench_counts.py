r"""Training from saved pre-token counts against training from the text, same vocabulary and
threads, in one run.

    python benches/bench_counts.py                           # webtext at 32,000, and 8 copies of it
    python benches/bench_counts.py --copies 1 --repeat 5 --vocab-size 10000

Each case counts the corpus once (`bpe336.count_pretokens`, timed on its own) and saves the
counts; then the two ways of training take turns, `--repeat` rounds, in this process:
- "file": `train_bpe(path, vocab_size, ["<|endoftext|>"])`: counting and merging;
- "counts": `PretokenCounts.load(counts.bpc)` then `train_bpe(counts, vocab_size)`: loading
  the file and merging.
Both must give the same merges (checked). Printed: each run, the median and spread (min-max),
and the ratio of the medians, file / counts.

What to expect: training from counts saves the counting, so the ratio is (count + merge) /
(load + merge). The merge loop depends on the distinct pre-tokens and the vocabulary, not the
corpus size, and counting grows with the bytes; so the ratio grows with the corpus. `--copies
N` measures a corpus of N copies of the file one after the other (a temporary file: the same
distinct pre-tokens, every count times N, so the same merges), standing in for a corpus N
times larger.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EOT = "<|endoftext|>"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="webtext.txt", help="corpus: a name in ../shared/data or a path (default: webtext.txt)")
    p.add_argument("--vocab-size", type=int, default=32_000, help="vocabulary size (default: 32000)")
    p.add_argument("--threads", type=int, default=2, help="threads (default: 2)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each runs both ways once (default: 3)")
    p.add_argument("--copies", default="1,8", help="comma-separated corpus sizes in copies of the file (default: 1,8)")
    args = p.parse_args(argv)
    from bpe336 import PretokenCounts, count_pretokens, train_bpe

    path = Path(args.corpus) if Path(args.corpus).exists() else DATA / args.corpus
    if not path.is_file():
        print(f"{path}: not found", file=sys.stderr)
        return 1
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"# {path.name}, vocab {args.vocab_size:,}, {args.threads} threads, {args.repeat} interleaved rounds (seconds)")
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as tmp:
        for copies in (int(c) for c in args.copies.split(",")):
            corpus = path
            if copies > 1:
                corpus = Path(tmp) / f"{copies}x-{path.name}"
                with open(corpus, "wb") as out:
                    for _ in range(copies):
                        with open(path, "rb") as f:
                            shutil.copyfileobj(f, out)
            size_mb = corpus.stat().st_size / 1e6
            t0 = time.perf_counter()
            counts = count_pretokens(corpus, [EOT], num_threads=args.threads)
            count_s = time.perf_counter() - t0
            saved = Path(tmp) / "counts.bpc"
            counts.save(saved)
            print(
                f"\n## {copies} x {path.name} ({size_mb:,.1f} MB): counted once in {count_s:.3f} s, {len(counts):,} distinct "
                f"pre-tokens, counts file {saved.stat().st_size / 1e6:.1f} MB"
            )
            runs: dict[str, list[float]] = {"file": [], "counts": []}
            merges: dict[str, list] = {}
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                _, merges["file"] = train_bpe(corpus, args.vocab_size, [EOT], num_threads=args.threads)
                runs["file"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                _, merges["counts"] = train_bpe(PretokenCounts.load(saved), args.vocab_size, num_threads=args.threads)
                runs["counts"].append(time.perf_counter() - t0)
            if merges["file"] != merges["counts"]:
                print("error: training from counts gave other merges than training from the file", file=sys.stderr)
                return 1
            med = {k: statistics.median(v) for k, v in runs.items()}
            for k, v in runs.items():
                print(f"{k:7s} median {med[k]:7.3f}  spread {min(v):.3f}-{max(v):.3f}  runs [{' '.join(f'{x:.3f}' for x in v)}]")
            print(f"ratio file / counts: {med['file'] / med['counts']:.2f}x  ({len(merges['file']):,} merges, identical)")
            if copies > 1:
                corpus.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

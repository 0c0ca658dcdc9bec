"""The `bpe336` command: `bpe336 train`, `bpe336 encode`, `bpe336 bench`.

    bpe336 train corpus.txt --vocab-size 10000 --special-token '<|endoftext|>' --out tok/
"""

from __future__ import annotations

import argparse
import sys


# ---------------------------------------------------------------------------------------------
# bpe336 train
# ---------------------------------------------------------------------------------------------


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a BPE tokenizer on text files",
        description="Train a byte-level BPE tokenizer (GPT-2 pre-tokenization) on UTF-8 text files and "
        "write DIR/vocab.json and DIR/merges.txt in GPT-2 format. Each file is an independent text.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="UTF-8 text file(s) to train on")
    p.add_argument("--vocab-size", type=int, default=10_000, help="final vocabulary size, counting special tokens and the 256 bytes (default: 10000)")
    p.add_argument(
        "--special-token",
        action="append",
        default=[],
        metavar="TOK",
        help="a special token (repeatable), e.g. '<|endoftext|>'; it splits the text and gets the next id from 0 (default: none)",
    )
    p.add_argument("--out", default="tokenizer", metavar="DIR", help="output directory for vocab.json and merges.txt (default: ./tokenizer)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores, or RAYON_NUM_THREADS)")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    import resource
    import time
    from pathlib import Path

    from .formats import save_gpt2_files
    from .train import train_bpe_with_stats

    start = time.perf_counter()
    try:
        vocab, merges, stats = train_bpe_with_stats(
            args.inputs, args.vocab_size, args.special_token, num_threads=args.threads, progress=not args.no_progress
        )
    except (OSError, ValueError, UnicodeDecodeError, TypeError) as e:
        print(f"bpe336 train: error: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_gpt2_files(vocab, merges, out / "vocab.json", out / "merges.txt", args.special_token)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
    specials = {t.encode() for t in args.special_token}
    longest = max((t for t in vocab.values() if t not in specials), key=len)
    mb = stats["input_bytes"] / 1e6
    print(
        f"trained {len(vocab):,} tokens ({len(merges):,} merges) on {mb:,.1f} MB in {wall:.2f} s ({mb / max(wall, 1e-9):,.1f} MB/s)\n"
        f"peak memory: {peak_mib:,.0f} MiB\n"
        f"distinct pre-tokens: {stats['distinct_pretokens']:,} ({stats['total_pretokens']:,} in total)\n"
        f"longest token: {longest.decode('utf-8', errors='replace')!r} ({len(longest)} bytes)\n"
        f"wrote {out / 'vocab.json'} and {out / 'merges.txt'}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# bpe336 encode
# ---------------------------------------------------------------------------------------------


def add_encode_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode a text file to a token array")
    p.set_defaults(run=run_encode)


def run_encode(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# bpe336 bench
# ---------------------------------------------------------------------------------------------


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure encoding throughput and compression")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpe336", description="Byte-level BPE tokenizer: train, encode, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_encode_parser(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

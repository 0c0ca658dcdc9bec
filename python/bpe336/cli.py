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
    p.add_argument(
        "--vocab-size", type=int, default=10_000, help="final vocabulary size, counting special tokens and the 256 bytes (default: 10000)"
    )
    p.add_argument(
        "--special-token",
        action="append",
        default=[],
        metavar="TOK",
        help="a special token (repeatable), e.g. '<|endoftext|>'; it splits the text and gets the next id from 0 (default: none)",
    )
    p.add_argument(
        "--out", default="tokenizer", metavar="DIR", help="output directory for vocab.json and merges.txt (default: ./tokenizer)"
    )
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


PILE_BYTES = 825e9  # the Pile, for the "time to tokenize" estimate


def _load_tokenizer(args: argparse.Namespace):
    """--tokenizer (a .json file or a directory) or --vocab/--merges, plus --special-token."""
    from pathlib import Path

    from .tokenizer import Tokenizer

    specials = args.special_token or []
    if getattr(args, "vocab", None) or getattr(args, "merges", None):
        if not (args.vocab and args.merges):
            raise SystemExit("bpe336: --vocab and --merges go together")
        return Tokenizer.from_files(args.vocab, args.merges, specials)
    if not args.tokenizer:
        raise SystemExit("bpe336: give --tokenizer DIR_OR_JSON (or --vocab vocab.json --merges merges.txt)")
    path = Path(args.tokenizer)
    if path.is_dir() and not (path / "special_tokens.json").exists() and specials:
        # A plain GPT-2 pair: the specials named on the command line are the specials.
        return Tokenizer.from_files(path / "vocab.json", path / "merges.txt", specials)
    return Tokenizer.load(path, special_tokens=[s for s in specials])


def _add_tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="tokenizer: a directory with vocab.json + merges.txt (as `bpe336 train` writes) or a single .json file from Tokenizer.save",
    )
    p.add_argument("--vocab", metavar="VOCAB_JSON", help="GPT-2 style vocab.json (with --merges; instead of --tokenizer)")
    p.add_argument("--merges", metavar="MERGES_TXT", help="GPT-2 style merges.txt (with --vocab)")
    p.add_argument(
        "--special-token", action="append", metavar="TOK", help="a special token, matched whole (repeatable; e.g. '<|endoftext|>')"
    )


def _peak_memory_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def add_encode_parser(sub) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a text file to a token array",
        description="Encode a UTF-8 text file into a token array (.npy, or raw little-endian .bin) in parallel. "
        "uint16 when the vocabulary fits, else uint32. The output appears atomically when complete.",
    )
    p.add_argument("input", metavar="INPUT", help="UTF-8 text file")
    _add_tokenizer_args(p)
    p.add_argument("--out", metavar="PATH", help="output token array: .npy (numpy header) or .bin (raw); default INPUT with suffix .npy")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="worker threads (default: all cores, or RAYON_NUM_THREADS)")
    p.add_argument(
        "--dtype", choices=["uint16", "uint32"], default=None, help="token dtype (default: uint16 when the vocabulary fits, else uint32)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_encode)


def run_encode(args: argparse.Namespace) -> int:
    from pathlib import Path

    tok = _load_tokenizer(args)
    out = Path(args.out) if args.out else Path(args.input).with_suffix(".npy")
    stats = tok.encode_file(args.input, out, num_threads=args.threads, progress=not args.no_progress, dtype=args.dtype)
    mbps = stats["mb_per_s"]
    print(
        f"encoded {stats['input']} -> {stats['output']}\n"
        f"  {stats['bytes'] / 1e6:,.1f} MB -> {stats['tokens']:,} tokens ({stats['dtype']}), "
        f"{stats['bytes_per_token']:.3f} bytes/token\n"
        f"  {stats['seconds']:.2f} s, {mbps:,.1f} MB/s on {stats['threads']} threads, peak memory {_peak_memory_mb():,.0f} MB\n"
        f"  the 825 GB Pile at this rate: {_hours(PILE_BYTES / (mbps * 1e6))}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# bpe336 bench
# ---------------------------------------------------------------------------------------------


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure encoding throughput and compression",
        description="Measure encoding throughput (text in memory -> token array) on 1 and 2 threads, "
        "the list-returning encode, compression (bytes per token) and the time to tokenize the 825 GB Pile.",
    )
    p.add_argument("input", metavar="INPUT", help="UTF-8 text file to encode")
    _add_tokenizer_args(p)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N", help="thread counts to measure (default: 1 2)")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="timed runs per measurement; the median is reported (default: 3)")
    p.add_argument("--limit-mb", type=float, default=0, metavar="MB", help="use only the first MB megabytes of INPUT (0 = all)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import statistics
    import time
    from pathlib import Path

    tok = _load_tokenizer(args)
    text = Path(args.input).read_text(encoding="utf-8")
    if args.limit_mb:
        text = text[: int(args.limit_mb * 1e6)]
    nbytes = len(text.encode("utf-8"))

    def median_seconds(fn) -> float:
        fn()  # warm-up (caches, thread pool)
        times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out  # freeing the result is not part of encoding
        return statistics.median(times)

    ids = tok.encode_to_numpy(text)
    print(
        f"{args.input}: {nbytes / 1e6:,.1f} MB, {len(ids):,} tokens, {nbytes / max(1, len(ids)):.3f} bytes/token, vocab {tok.vocab_size:,}"
    )
    print(f"{'path':<28}{'threads':>8}{'MB/s':>10}{'Pile (825 GB)':>16}")
    for n in args.threads:
        s = median_seconds(lambda n=n: tok.encode_to_numpy(text, num_threads=n))
        mbps = nbytes / 1e6 / s
        print(f"{'encode_to_numpy':<28}{n:>8}{mbps:>10,.1f}{_hours(PILE_BYTES / (mbps * 1e6)):>16}")
    s = median_seconds(lambda: tok.encode(text))
    mbps = nbytes / 1e6 / s
    print(f"{'encode (list[int])':<28}{1:>8}{mbps:>10,.1f}{_hours(PILE_BYTES / (mbps * 1e6)):>16}")
    print(f"peak memory {_peak_memory_mb():,.0f} MB")
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpe336", description="Byte-level BPE tokenizer: train, encode, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_encode_parser(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        # Ctrl-C: the core stopped its work and removed partial outputs; no traceback.
        print("bpe336: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The `bpe336` command: `bpe336 train`, `bpe336 count`, `bpe336 encode`, `bpe336 bench`.

Every bad input (missing, unreadable or non-regular files, invalid UTF-8, malformed tokenizers,
numbers out of range, outputs that cannot be written) prints one `bpe336 CMD: error: ...` line to
stderr and exits 1; outputs are checked before any work. Progress goes to stderr: bars on a
terminal, a few plain lines in a log.

    bpe336 train corpus.txt --vocab-size 10000 --special-token '<|endoftext|>' --out tok/
    bpe336 count corpus.txt --special-token '<|endoftext|>' --out counts.bpc
    bpe336 train --counts counts.bpc --vocab-size 32000 --out tok32k/
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ._core import max_threads
from .train import MAX_VOCAB

MAX_THREADS = max_threads()  # what the core accepts on this machine, so --threads is refused before any work


class CliError(Exception):
    """A user error found by the command itself, printed as `error: ...`."""


def _int_range(lo: int, hi: int, what: str):
    """An argparse type: an integer in [lo, hi], e.g. _int_range(1, 1024, "threads")("0") -> error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo:,} and {hi:,}, got {value:,}")
        return value

    return parse


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"megabytes must be a finite number >= 0, got {text}")
    return value


def _input_file(path: str, *, stream: bool = False) -> Path:
    """A readable regular file; with `stream` a FIFO or pipe too (the core reads those in chunks,
    and Ctrl-C stops it even while no writer has come)."""
    from .formats import check_input_file

    p = check_input_file(path, stream=stream)
    if not os.access(p, os.R_OK):
        raise PermissionError(13, f"{p}: permission denied")
    return p


def _add_pattern(p: argparse.ArgumentParser, default: str | None, *, counts: bool = False) -> None:
    if default is None:
        what = (
            "; it applies to a tokenizer that records none (a bare vocab.json/merges.txt, a .tiktoken without its "
            "sidecar; default: gpt2), and must agree with the pattern a tokenizer records"
        )
    elif counts:
        what = f" (default: {default}; with --counts the counts' own, and another is an error)"
    else:
        what = f" (default: {default})"
    p.add_argument(
        "--pattern",
        default=None if counts else default,
        metavar="{gpt2,cl100k,o200k,REGEX}",
        help="pre-tokenization pattern: gpt2 (GPT-2), cl100k (GPT-4), o200k (GPT-4o), or a regex, whose unmatched text is "
        f"dropped as tiktoken does (with a regex, text is cut for streaming only where a special token starts){what}",
    )


def _add_threads(p: argparse.ArgumentParser, nargs: str | None = None, default=None) -> None:
    p.add_argument(
        "--threads",
        type=_int_range(1, MAX_THREADS, "--threads"),
        nargs=nargs,
        default=default,
        metavar="N",
        help=f"worker threads, 1 to {MAX_THREADS} (default: all cores, or RAYON_NUM_THREADS)"
        if nargs is None
        else f"thread counts to measure, each 1 to {MAX_THREADS} (default: 1 2)",
    )


# ---------------------------------------------------------------------------------------------
# bpe336 train
# ---------------------------------------------------------------------------------------------


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a BPE tokenizer on text files",
        description="Train a byte-level BPE tokenizer on UTF-8 text files and write the "
        "directory DIR as one unit: tokenizer.json (Hugging Face; with tokenizer_config.json and "
        "special_tokens_map.json for transformers' AutoTokenizer), vocab.json + merges.txt (GPT-2) and "
        "special_tokens.json (the special tokens with their ids, and the pattern). Each file is an independent text.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="UTF-8 text file(s) to train on (or --counts)")
    p.add_argument(
        "--counts",
        action="append",
        default=[],
        metavar="FILE",
        help="train from pre-token counts that `bpe336 count` saved, instead of text (repeatable: the counts are added); "
        "their special tokens and pattern are used",
    )
    p.add_argument(
        "--vocab-size",
        type=_int_range(256, MAX_VOCAB, "--vocab-size"),
        default=10_000,
        help="final vocabulary size, counting special tokens and the 256 bytes (default: 10000)",
    )
    p.add_argument(
        "--special-token",
        action="append",
        default=[],
        metavar="TOK",
        help="a special token (repeatable), e.g. '<|endoftext|>'; it splits the text and gets the next id from 0 "
        "(default: none; with --counts the counts' own, and others are an error)",
    )
    _add_pattern(p, "gpt2", counts=True)
    p.add_argument(
        "--out",
        default="tokenizer",
        metavar="DIR",
        help="output directory, new or holding only a previous tokenizer; replaced as one unit (default: ./tokenizer)",
    )
    _add_threads(p)
    p.add_argument("--no-progress", action="store_true", help="do not show progress")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    import resource
    import time
    import warnings

    from .atomic import check_not_inside, check_output_directory
    from .formats import TOKENIZER_FILES
    from .pattern import pattern_name
    from .tokenizer import Tokenizer
    from .train import train_bpe_with_stats

    # 1. Check the pattern, the inputs and the output directory before the work.
    # (train_bpe checks the vocabulary size and special tokens before it reads anything.)
    if bool(args.inputs) == bool(args.counts):
        raise CliError(
            "give text files to train on, or --counts FILE (from `bpe336 count`), not both"
            if args.inputs
            else "give text files to train on, or --counts FILE (from `bpe336 count`)"
        )
    if args.pattern is not None:
        pattern_name(args.pattern)
    inputs = [_input_file(p, stream=not args.counts) for p in args.inputs or args.counts]
    out = Path(args.out)
    check_output_directory(out, TOKENIZER_FILES)
    for p in inputs:
        check_not_inside(p, out)

    # 2. Train (from text, or from the counts, added), then write the directory as one unit.
    start = time.perf_counter()
    if args.counts:
        from .counts import PretokenCounts

        kept = [PretokenCounts.load(p) for p in inputs]
        source = kept[0].merge(*kept[1:])
        specials = args.special_token or source.special_tokens
    else:
        source, specials = inputs, args.special_token
    given = {} if args.pattern is None else {"pattern": args.pattern}  # else gpt2, or the counts' own
    vocab, merges, stats = train_bpe_with_stats(
        source, args.vocab_size, args.special_token or None, num_threads=args.threads, progress=not args.no_progress, **given
    )
    wall = time.perf_counter() - start
    pattern = args.pattern or (source.pattern if args.counts else "gpt2")
    name = pattern_name(pattern)
    tok = Tokenizer(vocab, merges, specials, pattern=pattern)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.save(out)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
    special_bytes = {t.encode() for t in specials}
    longest = max((t for t in vocab.values() if t not in special_bytes), key=len)
    mb = stats["input_bytes"] / 1e6
    what = f"the counts of {mb:,.1f} MB ({', '.join(args.counts)})" if args.counts else f"{mb:,.1f} MB"
    rate = "" if args.counts else f" ({mb / max(wall, 1e-9):,.1f} MB/s)"
    print(
        f"trained {len(vocab):,} tokens ({len(merges):,} merges) on {what} in {wall:.2f} s{rate}\n"
        f"pattern: {name if name != 'custom' else repr(tok.pattern)}\n"
        f"peak memory: {peak_mib:,.0f} MiB\n"
        f"distinct pre-tokens: {stats['distinct_pretokens']:,} ({stats['total_pretokens']:,} in total)\n"
        f"longest token: {longest.decode('utf-8', errors='replace')!r} ({len(longest)} bytes)\n"
        f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})"
    )
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# bpe336 count
# ---------------------------------------------------------------------------------------------


def add_count_parser(sub) -> None:
    p = sub.add_parser(
        "count",
        help="count the pre-tokens of text files and save the counts",
        description="Count the pre-tokens of UTF-8 text files (as `bpe336 train` does before merging) and save the counts "
        "to a versioned, checksummed file, written atomically. Train from it later with `bpe336 train --counts FILE` "
        "(the same merges as training on the text), or add the counts of several corpora or shards there.",
    )
    p.add_argument("inputs", nargs="+", metavar="CORPUS", help="UTF-8 text file(s) to count (each an independent text)")
    p.add_argument("--out", required=True, metavar="FILE", help="the counts file to write, e.g. counts.bpc (replaced atomically)")
    p.add_argument(
        "--special-token",
        action="append",
        default=[],
        metavar="TOK",
        help="a special token (repeatable), e.g. '<|endoftext|>': it splits the text, is not counted, and is kept "
        "with the counts (training from them gives it the next id from 0) (default: none)",
    )
    _add_pattern(p, "gpt2")
    _add_threads(p)
    p.add_argument("--no-progress", action="store_true", help="do not show progress")
    p.set_defaults(run=run_count)


def run_count(args: argparse.Namespace) -> int:
    import time

    from .atomic import check_not_same_file, check_output_file
    from .counts import count_pretokens
    from .pattern import pattern_name

    # 1. Check the pattern, the inputs and the output before the work.
    name = pattern_name(args.pattern)
    inputs = [_input_file(p, stream=True) for p in args.inputs]
    out = Path(args.out)
    check_output_file(out)
    for p in inputs:
        check_not_same_file(p, out)

    # 2. Count, then write the file.
    start = time.perf_counter()
    counts = count_pretokens(inputs, args.special_token, args.pattern, num_threads=args.threads, progress=not args.no_progress)
    counts.save(out)
    wall = time.perf_counter() - start
    mb = counts.input_bytes / 1e6
    print(
        f"counted {mb:,.1f} MB in {wall:.2f} s ({mb / max(wall, 1e-9):,.1f} MB/s)\n"
        f"pattern: {name if name != 'custom' else repr(counts.pattern)}\n"
        f"distinct pre-tokens: {len(counts):,} ({counts.total:,} in total)\n"
        f"wrote {out} ({out.stat().st_size / 1e6:,.1f} MB); train with: bpe336 train --counts {out} --vocab-size N"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# bpe336 encode
# ---------------------------------------------------------------------------------------------


PILE_BYTES = 825e9  # the Pile, for the "time to tokenize" estimate


def _load_tokenizer(args: argparse.Namespace):
    """--tokenizer (a directory, tokenizer.json or .tiktoken) or --vocab/--merges, plus --special-token;
    the pattern is the one the tokenizer records (--pattern only where it records none)."""
    from .tokenizer import Tokenizer

    specials = args.special_token or []
    if args.vocab or args.merges:
        if not (args.vocab and args.merges):
            raise CliError("--vocab and --merges go together")
        if args.tokenizer:
            raise CliError("give either --tokenizer or --vocab/--merges, not both")
        return Tokenizer.from_files(_input_file(args.vocab), _input_file(args.merges), specials, pattern=args.pattern or "gpt2")
    if not args.tokenizer:
        raise CliError("give --tokenizer PATH (or --vocab vocab.json --merges merges.txt)")
    return Tokenizer.load(args.tokenizer, special_tokens=specials or None, pattern=args.pattern)


def _add_tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="tokenizer: a directory (as `bpe336 train` or transformers' save_pretrained writes), a tokenizer.json, "
        "or a .tiktoken file (with its .tiktoken.json sidecar)",
    )
    p.add_argument("--vocab", metavar="VOCAB_JSON", help="GPT-2 style vocab.json (with --merges; instead of --tokenizer)")
    p.add_argument("--merges", metavar="MERGES_TXT", help="GPT-2 style merges.txt (with --vocab)")
    p.add_argument(
        "--special-token", action="append", metavar="TOK", help="a special token, matched whole (repeatable; e.g. '<|endoftext|>')"
    )
    _add_pattern(p, None)


def _peak_memory_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _pile_time(mbps: float) -> str:
    return _hours(PILE_BYTES / (mbps * 1e6)) if mbps > 0 and math.isfinite(mbps) else "n/a"


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
    _add_threads(p)
    p.add_argument(
        "--dtype", choices=["uint16", "uint32"], default=None, help="token dtype (default: uint16 when the vocabulary fits, else uint32)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress report")
    p.set_defaults(run=run_encode)


def run_encode(args: argparse.Namespace) -> int:
    from .atomic import check_not_same_file, check_output_file

    src = _input_file(args.input, stream=True)
    out = Path(args.out) if args.out else src.with_suffix(".npy")
    check_output_file(out)
    check_not_same_file(src, out)
    tok = _load_tokenizer(args)
    stats = tok.encode_file(src, out, num_threads=args.threads, progress=not args.no_progress, dtype=args.dtype)
    mbps = stats["mb_per_s"]
    print(
        f"encoded {stats['input']} -> {stats['output']}\n"
        f"  {stats['bytes'] / 1e6:,.1f} MB -> {stats['tokens']:,} tokens ({stats['dtype']}), "
        f"{stats['bytes_per_token']:.3f} bytes/token\n"
        f"  {stats['seconds']:.2f} s, {mbps:,.1f} MB/s on {stats['threads']} threads, peak memory {_peak_memory_mb():,.0f} MB\n"
        f"  the 825 GB Pile at this rate: {_pile_time(mbps)}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# bpe336 bench
# ---------------------------------------------------------------------------------------------


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure encoding throughput and compression",
        description="Measure encoding throughput (text in memory -> token array) on each --threads count (default 1 and 2), "
        "the list-returning encode, compression (bytes per token) and the time to tokenize the 825 GB Pile.",
    )
    p.add_argument("input", metavar="INPUT", help="UTF-8 text file to encode (not empty)")
    _add_tokenizer_args(p)
    _add_threads(p, nargs="+", default=[1, 2])
    p.add_argument(
        "--repeat",
        type=_int_range(1, 1000, "--repeat"),
        default=3,
        metavar="R",
        help="timed runs per measurement, 1 to 1000; the median is reported (default: 3)",
    )
    p.add_argument("--limit-mb", type=_megabytes, default=0, metavar="MB", help="use only the first MB megabytes of INPUT (0 = all)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import statistics
    import time

    src = _input_file(args.input)
    tok = _load_tokenizer(args)
    data = src.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"{src}: invalid UTF-8 at byte offset {e.start} (byte 0x{data[e.start]:02x})") from None
    if args.limit_mb:
        # The first MB megabytes, less the start of a character they would cut (the rest is valid UTF-8).
        text = data[: int(args.limit_mb * 1e6)].decode("utf-8", errors="ignore")
    nbytes = len(text.encode("utf-8"))
    if nbytes == 0:
        raise CliError(f"{src}: is empty{' (after --limit-mb)' if args.limit_mb else ''}; nothing to measure")

    def median_seconds(fn) -> float:
        fn()  # warm-up (caches, thread pool)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out  # freeing the result is not part of encoding
        return max(statistics.median(times), 1e-9)

    ids = tok.encode_to_numpy(text)
    print(f"{src}: {nbytes / 1e6:,.1f} MB, {len(ids):,} tokens, {nbytes / max(1, len(ids)):.3f} bytes/token, vocab {tok.vocab_size:,}")
    print(f"{'path':<28}{'threads':>8}{'MB/s':>10}{'Pile (825 GB)':>16}")
    for n in args.threads:
        mbps = nbytes / 1e6 / median_seconds(lambda n=n: tok.encode_to_numpy(text, num_threads=n))
        print(f"{'encode_to_numpy':<28}{n:>8}{mbps:>10,.1f}{_pile_time(mbps):>16}")
    mbps = nbytes / 1e6 / median_seconds(lambda: tok.encode(text))
    print(f"{'encode (list[int])':<28}{1:>8}{mbps:>10,.1f}{_pile_time(mbps):>16}")
    print(f"peak memory {_peak_memory_mb():,.0f} MB")
    return 0


# ---------------------------------------------------------------------------------------------


def _message(e: BaseException) -> str:
    """One line for an error: OSErrors and UnicodeDecodeErrors carry their own path; others as is."""
    if isinstance(e, OSError) and e.filename and e.strerror and str(e.filename) not in (e.strerror or ""):
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, OSError) and e.strerror and len(e.args) == 2:
        return e.strerror
    if isinstance(e, UnicodeDecodeError):
        return e.reason if "byte offset" in e.reason else str(e)
    text = str(e) or type(e).__name__
    return text.strip("'\"") if isinstance(e, KeyError) else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpe336", description="Byte-level BPE tokenizer: train, count, encode, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_count_parser(sub)
    add_encode_parser(sub)
    add_bench_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return int(e.code or 0)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"bpe336 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`bpe336 bench ... | head`): not an error; the rest goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CliError, OSError, ValueError, TypeError, KeyError, OverflowError, MemoryError) as e:
        print(f"bpe336 {args.command}: error: {_message(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, still one line rather than a traceback
        print(f"bpe336 {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

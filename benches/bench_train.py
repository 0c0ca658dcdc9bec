r"""Training speed and peak memory: bpe336 against HF `tokenizers` and `rustbpe`, same input,
same vocabulary and thread count, in one run.

    python benches/bench_train.py          # webtext@10k, webtext@32k, techdocs@10k, webtext@32k with cl100k
    python benches/bench_train.py --threads 2 --repeat 3 --case webtext:10000 --only bpe336,hf
    python benches/bench_train.py --case webtext.txt:32000:cl100k --special-mb 0   # one case, a pattern
    python benches/bench_train.py --only bpe336 --case none --special-mb 8   # only the specials section

A case is CORPUS:VOCAB[:PATTERN], PATTERN one of gpt2 (the default), cl100k, o200k; every trainer
gets that pattern. Each measurement runs in a fresh child process (so its peak RSS, VmHWM,
belongs to that trainer alone; the child's import baseline is printed for reference) and times
only the training call with `time.perf_counter()`. The trainers take turns (bpe336, HF, rustbpe,
bpe336, ...), `--repeat` rounds. Reported: each run, the median and spread (min-max), the largest
peak RSS, and the ratios peer/bpe336 of the medians.

Peers, configured as close to bpe336 as each allows:
- HF `tokenizers`: BPE model, no normalizer, initial alphabet = the 256 bytes, the special token
  registered before training so it splits the text, `tok.train([path])` (it reads the file
  itself). Pre-tokenizer: for GPT-2 ByteLevel (use_regex=True, add_prefix_space=False); for
  another pattern Split(Regex, Isolated) then ByteLevel(use_regex=False), the regex spelled as
  bpe336 writes it to tokenizer.json (`formats.hf_pre_tokenizer`: cl100k's `\p{N}{1,3}+` as
  `\p{N}{1,3}`, which Oniguruma reads as meant). Threads: RAYON_RS_NUM_CPUS.
- `rustbpe`: `train_from_iterator` with the same pattern string as bpe336 (its own default is a
  cl100k-style regex that differs from tiktoken's on whitespace that ends a text after a line
  break; passing ours makes the work identical). It has no special tokens, so it gets the
  documents already split at the special token (splitting happens before the timer), and
  vocab_size - 1 so it makes the same number of merges. Threads: RAYON_NUM_THREADS.
- bpe336: `train_bpe(path, vocab_size, [special], num_threads=threads, pattern=pattern)`.

Then the cost of many special tokens: bpe336 with `<|endoftext|>` alone against the same plus
9,999 more (`<|tok0|>`...; the vocabulary grows by as many, so the merges are the same), on a
prefix of webtext and on generated text dense in `<` (markup and near-misses of the tokens),
interleaved in this process; prints medians and the ratio (target: at most 2x).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

from benchdata import dense_in_lt

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EOT = "<|endoftext|>"
TRAINERS = ("bpe336", "hf", "rustbpe")
PATTERN_NAMES = ("gpt2", "cl100k", "o200k")


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss, which Linux carries over fork and exec
    from the launching process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hf_pre_tokenizer(pattern: str):
    """HF's pre-tokenizer for a pattern, as bpe336 writes it to tokenizer.json."""
    from tokenizers import Regex, pre_tokenizers

    from bpe336.formats import hf_pre_tokenizer
    from bpe336.pattern import resolve_pattern

    spec = hf_pre_tokenizer(resolve_pattern(pattern))
    if spec["type"] == "ByteLevel":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    split = spec["pretokenizers"][0]
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split["pattern"]["Regex"]), split["behavior"].lower(), invert=split["invert"]),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _child(trainer: str, path: str, vocab_size: int, threads: int, pattern: str, queue) -> None:
    """Runs one training in this (fresh) process and reports (seconds, merges, baseline, peak)."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["RAYON_RS_NUM_CPUS"] = str(threads)
    try:
        if trainer == "bpe336":
            from bpe336.train import train_bpe

            baseline = _peak_mib()
            t0 = time.perf_counter()
            _, merges = train_bpe(path, vocab_size, [EOT], num_threads=threads, pattern=pattern)
            seconds = time.perf_counter() - t0
            n = len(merges)
        elif trainer == "hf":
            from tokenizers import Tokenizer, models, pre_tokenizers, trainers

            baseline = _peak_mib()
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = _hf_pre_tokenizer(pattern)
            tok.add_special_tokens([EOT])
            trainer_ = trainers.BpeTrainer(
                vocab_size=vocab_size,
                special_tokens=[EOT],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                min_frequency=0,
                show_progress=False,
            )
            t0 = time.perf_counter()
            tok.train([path], trainer_)
            seconds = time.perf_counter() - t0
            n = tok.get_vocab_size() - 257
        elif trainer == "rustbpe":
            import rustbpe

            from bpe336.pattern import resolve_pattern

            regex = resolve_pattern(pattern)
            docs = Path(path).read_text(encoding="utf-8").split(EOT)
            baseline = _peak_mib()
            tok = rustbpe.Tokenizer()
            t0 = time.perf_counter()
            tok.train_from_iterator(iter(docs), vocab_size - 1, pattern=regex)
            seconds = time.perf_counter() - t0
            n = tok.vocab_size - 256
        else:
            raise ValueError(trainer)
        queue.put((seconds, n, baseline, _peak_mib()))
    except BaseException as e:  # report, never hang the parent
        queue.put(e)


def measure(trainer: str, path: Path, vocab_size: int, threads: int, pattern: str = "gpt2") -> tuple[float, int, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(trainer, str(path), vocab_size, threads, pattern, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, BaseException):
        raise result
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every trainer (default: 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs per trainer and case; the median is reported (default: 3)")
    p.add_argument(
        "--case",
        action="append",
        metavar="CORPUS:VOCAB[:PATTERN]",
        help="corpus file (name in ../shared/data or a path), vocab size and pattern (gpt2, cl100k, o200k; default gpt2), "
        "repeatable (default: webtext.txt:10000, webtext.txt:32000, techdocs.txt:10000, webtext.txt:32000:cl100k)",
    )
    p.add_argument("--only", default=",".join(TRAINERS), help=f"comma-separated trainers (default: {','.join(TRAINERS)})")
    p.add_argument(
        "--special-mb", type=float, default=8.0, help="MB of text for the 1 vs 10,000 special tokens section (0 = skip; default: 8)"
    )
    args = p.parse_args(argv)
    cases = args.case or ["webtext.txt:10000", "webtext.txt:32000", "techdocs.txt:10000", "webtext.txt:32000:cl100k"]
    trainers = [t for t in args.only.split(",") if t]
    for t in trainers:
        if t not in TRAINERS:
            p.error(f"unknown trainer {t!r}")

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"# threads={args.threads} repeat={args.repeat} (median seconds of the training call; peak RSS of a fresh process)")
    for case in cases:
        if case == "none":
            continue
        pattern = "gpt2"
        if case.rpartition(":")[2] in PATTERN_NAMES:
            case, _, pattern = case.rpartition(":")
        name, _, vocab = case.rpartition(":")
        path = Path(name) if Path(name).exists() else DATA / name
        if not path.exists():
            print(f"skip {case}: {path} not found")
            continue
        vocab_size = int(vocab)
        size_mb = path.stat().st_size / 1e6
        print(f"\n## {path.name} ({size_mb:.1f} MB), vocab {vocab_size:,}, pattern {pattern}, {args.threads} threads")
        all_runs: dict[str, list] = {t: [] for t in trainers}
        for _ in range(args.repeat):  # interleaved: each round runs every trainer once
            for trainer in trainers:
                all_runs[trainer].append(measure(trainer, path, vocab_size, args.threads, pattern))
        results: dict[str, tuple[float, float]] = {}
        for trainer, runs in all_runs.items():
            med = statistics.median(r[0] for r in runs)
            peak = max(r[3] for r in runs)
            base = min(r[2] for r in runs)
            results[trainer] = (med, peak)
            times = " ".join(f"{r[0]:.2f}" for r in runs)
            spread = f"{min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}"
            print(
                f"{trainer:8s} median {med:7.3f} s  ({size_mb / med:6.1f} MB/s)  runs [{times}] spread {spread} s  "
                f"merges {runs[0][1]:,}  peak RSS {peak:7.0f} MiB (import baseline {base:.0f} MiB)"
            )
        if "bpe336" in results:
            ours, our_peak = results["bpe336"]
            for trainer, (t, peak) in results.items():
                if trainer != "bpe336":
                    print(f"  {trainer}/bpe336: time x{t / ours:.1f}, peak RSS x{peak / our_peak:.2f}")
        sys.stdout.flush()
    if args.special_mb > 0:
        bench_many_specials(args.special_mb, args.threads, args.repeat)
    return 0


def bench_many_specials(megabytes: float, threads: int, repeat: int) -> None:
    import tempfile

    from bpe336.train import train_bpe

    n = int(megabytes * 1e6)
    with open(DATA / "webtext.txt", encoding="utf-8") as f:
        web = f.read(n)
    many = [EOT] + [f"<|tok{i}|>" for i in range(9_999)]
    print(f"\n## special tokens: 1 vs {len(many):,} ({threads} threads, vocab 10,000 + extra specials, median of {repeat})")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in [(f"webtext.txt, first {megabytes:g} MB", web), (f"dense in '<', {megabytes:g} MB", dense_in_lt(n))]:
            path = Path(tmp) / "text.txt"
            path.write_text(text, encoding="utf-8")
            runs: dict[int, list[float]] = {1: [], len(many): []}
            for _ in range(repeat):  # interleaved
                for specials in ([EOT], many):
                    t0 = time.perf_counter()
                    train_bpe(path, 10_000 + len(specials) - 1, specials, num_threads=threads)
                    runs[len(specials)].append(time.perf_counter() - t0)
            one, lots = statistics.median(runs[1]), statistics.median(runs[len(many)])
            print(f"{name:<28} 1 special {one:7.3f} s   {len(many):,} specials {lots:7.3f} s   ratio {lots / one:.2f}x")


if __name__ == "__main__":
    sys.exit(main())

"""Encoding speed: bpe336 against tiktoken and HF `tokenizers`, same input, same run.

All three encoders are built from the same GPT-2 `vocab.json` + `merges.txt` (tiktoken offline:
ranks follow the vocab ids; HF: ByteLevel BPE), with `<|endoftext|>` special. The job measured is
the user's real one, corpus text to a token array:

- ours: `encode_file` (file in, .npy out), `encode_to_numpy` (text in memory), and `encode`
  returning a Python list, on 1 and 2 threads;
- tiktoken: `encode` then `np.array(..., dtype=uint16)` on 1 thread; `encode_batch` over the
  documents with `num_threads=2`, then one array;
- HF: `encode_batch` over the documents (its own thread pool), then one array; on a prefix of the
  input (`--hf-mb`), as it is slow.

Ids are checked identical before any timing is printed. Medians of `--repeat` runs after a
warm-up; ratios are ours / theirs on the same thread count. The Pile estimate is 825 GB at the
measured 2-thread rate.

    python benches/bench_encode.py                          # ../shared/data/webtext.txt
    python benches/bench_encode.py --input FILE --repeat 5 --hf-mb 0   # 0 = skip HF

Last, the cost of many special tokens: `<|endoftext|>` alone against the same plus 9,999 more
(`<|tok0|>`...), on the input and on generated text dense in `<` (markup and near-misses of the
tokens), `encode_to_numpy` interleaved; medians and the ratio (target: at most 2x).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from benchdata import dense_in_lt

from bpe336 import Tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EOT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PILE_BYTES = 825e9


COLD: dict[tuple[str, int], float] = {}  # first-call times of ours (caches and pools cold)


def median_time(fn, repeat: int, warmup: bool = True, cold_key=None) -> tuple[float, object]:
    out = None
    if warmup:
        t0 = time.perf_counter()
        out = fn()
        if cold_key:
            COLD[cold_key] = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        out = None  # free the previous result outside the timed region
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def documents(text: str) -> list[str]:
    """Documents with their trailing <|endoftext|>, so encoding them one by one and
    concatenating gives the ids of the whole text."""
    parts = text.split(EOT)
    return [p + EOT for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def concat_u16(lists) -> np.ndarray:
    n = sum(len(x) for x in lists)
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=np.uint16, count=n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=SHARED / "data" / "webtext.txt")
    ap.add_argument("--vocab", type=Path, default=SHARED / "fixtures" / "gpt2_vocab.json")
    ap.add_argument("--merges", type=Path, default=SHARED / "fixtures" / "gpt2_merges.txt")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--hf-mb", type=float, default=4.0, help="MB of the input for HF tokenizers (0 = skip)")
    args = ap.parse_args()

    text = args.input.read_text(encoding="utf-8")
    nbytes = len(text.encode("utf-8"))
    docs = documents(text)
    print(f"input {args.input} ({nbytes / 1e6:.1f} MB, {len(docs):,} documents); machine: {os.cpu_count()} cores; repeat {args.repeat}")

    ours = Tokenizer.from_files(args.vocab, args.merges, special_tokens=[EOT])
    import tiktoken

    vocab = ours.vocab
    tk = tiktoken.Encoding(
        name="gpt2_offline",
        pat_str=GPT2_PATTERN,
        mergeable_ranks={t: i for i, t in vocab.items() if t != EOT.encode()},
        special_tokens={EOT: 50256},
    )

    rows: list[tuple[str, int, float]] = []  # (name, threads, seconds)
    ref = None

    def record(name: str, threads: int, seconds: float, ids) -> None:
        nonlocal ref
        ids = np.asarray(ids)
        if ref is None:
            ref = ids
        if not np.array_equal(ids, ref):
            first = int(np.argmax(ids[: len(ref)] != ref[: len(ids)])) if len(ids) and len(ref) else 0
            raise SystemExit(
                f"{name} ({threads} threads): ids differ from the first encoder (lengths {len(ids)} vs {len(ref)}, first difference near {first})"
            )
        rows.append((name, threads, seconds))
        print(f"  {name:<34}{threads:>3} threads {nbytes / 1e6 / seconds:9.1f} MB/s   ({seconds:.3f} s)", flush=True)

    # 1. tiktoken first: its ids are the reference.
    tk.encode(text[:100_000], allowed_special={EOT})
    s, ids = median_time(lambda: np.array(tk.encode(text, allowed_special={EOT}), dtype=np.uint16), args.repeat, warmup=False)
    record("tiktoken encode + np.array", 1, s, ids)
    s, ids = median_time(lambda: concat_u16(tk.encode_batch(docs, num_threads=2, allowed_special={EOT})), args.repeat, warmup=False)
    record("tiktoken encode_batch + array", 2, s, ids)

    # 2. ours.
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tokens.npy"
        for n in (1, 2):
            s, _ = median_time(
                lambda n=n: ours.encode_file(args.input, out, num_threads=n, progress=False),
                args.repeat,
                cold_key=("bpe336 encode_file (.npy)", n),
            )
            record("bpe336 encode_file (.npy)", n, s, np.load(out, mmap_mode="r"))
    for n in (1, 2):
        s, ids = median_time(lambda n=n: ours.encode_to_numpy(text, num_threads=n), args.repeat, cold_key=("bpe336 encode_to_numpy", n))
        record("bpe336 encode_to_numpy", n, s, ids)
    s, ids = median_time(lambda: ours.encode(text), args.repeat, cold_key=("bpe336 encode -> list", 1))
    record("bpe336 encode -> list", 1, s, ids)
    s, ids = median_time(lambda: np.array(ours.encode(text), dtype=np.uint16), args.repeat)
    record("bpe336 encode -> list -> np.array", 1, s, ids)

    # 3. HF tokenizers on a prefix (whole documents).
    hf_row = None
    if args.hf_mb > 0:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        hf = HFTokenizer(models.BPE.from_file(str(args.vocab), str(args.merges)))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([EOT])
        sub, size = [], 0
        for d in docs:
            sub.append(d)
            size += len(d.encode("utf-8"))
            if size >= args.hf_mb * 1e6:
                break
        sub_text = "".join(sub)
        expect = ours.encode_to_numpy(sub_text)
        t_ours, _ = median_time(lambda: ours.encode_to_numpy(sub_text, num_threads=2), args.repeat)
        t_hf, enc = median_time(lambda: hf.encode_batch(sub, add_special_tokens=False), 1)
        hf_ids = concat_u16([e.ids for e in enc])
        same = np.array_equal(hf_ids, expect)
        hf_row = (size, t_hf, t_ours, same)
        print(
            f"  HF tokenizers encode_batch on {size / 1e6:.1f} MB: {size / 1e6 / t_hf:.1f} MB/s ({'ids identical' if same else 'IDS DIFFER'})"
        )

    # 4. Summary: medians and ratios on the same thread count.
    rate = {(name, n): nbytes / 1e6 / s for name, n, s in rows}
    print("\nratios (same input, same run; MB/s medians):")
    tt = {1: rate[("tiktoken encode + np.array", 1)], 2: rate[("tiktoken encode_batch + array", 2)]}
    for name, n, _ in rows:
        if name.startswith("bpe336"):
            print(f"  {name:<34}{n:>3} threads {rate[(name, n)]:9.1f} MB/s = {rate[(name, n)] / tt[n]:5.1f}x tiktoken")
    print("  first calls (rare-pre-token caches and thread pools cold; medians above are warm):")
    for (name, n), sec in COLD.items():
        print(f"  {name:<34}{n:>3} threads {nbytes / 1e6 / sec:9.1f} MB/s = {nbytes / 1e6 / sec / tt[n]:5.1f}x tiktoken")
    file1, file2 = rate[("bpe336 encode_file (.npy)", 1)], rate[("bpe336 encode_file (.npy)", 2)]
    arr1, arr2 = rate[("bpe336 encode_to_numpy", 1)], rate[("bpe336 encode_to_numpy", 2)]
    print(f"  scaling 1 -> 2 threads: encode_file {file2 / file1:.2f}x, encode_to_numpy {arr2 / arr1:.2f}x, tiktoken {tt[2] / tt[1]:.2f}x")
    if hf_row:
        size, t_hf, t_ours, same = hf_row
        print(
            f"  HF tokenizers: {size / 1e6 / t_hf:.1f} MB/s; bpe336 encode_to_numpy (2 threads) on the same prefix {size / 1e6 / t_ours:.1f} MB/s = {t_hf / t_ours:.1f}x"
        )
    hours = lambda mbps: PILE_BYTES / (mbps * 1e6) / 3600  # noqa: E731
    print(
        f"\nthe 825 GB Pile on 2 threads: bpe336 encode_file {hours(file2):.1f} h, encode_to_numpy {hours(arr2):.1f} h; tiktoken {hours(tt[2]):.1f} h"
    )
    tokens = len(ref)
    print(f"compression: {nbytes / tokens:.3f} bytes/token ({tokens:,} tokens)")

    # 5. Worst cases (ours; tiktoken on the first 20 KB of the huge pre-token: it is quadratic there).
    import random

    rng = random.Random(0)
    letters = "".join(rng.choice("abcdefghij") for _ in range(1_000_000))
    specials = [f"<|tok{i}|>" for i in range(2000)]
    many = Tokenizer(vocab, ours.merges, special_tokens=specials)
    dense = " ".join(specials[(i * 7) % 2000] for i in range(100_000))
    print("\nworst cases (bpe336, 1 thread):")
    for name, tok, case in [
        ("1 MB pre-token, no whitespace", ours, letters),
        ("1 MB of one letter", ours, "x" * 1_000_000),
        ("100k specials of 2,000", many, dense),
        ("100 KB of spaces", ours, " " * 100_000),
    ]:
        s, _ = median_time(lambda tok=tok, case=case: tok.encode_to_numpy(case, num_threads=1), 1)
        print(f"  {name:<34}{len(case.encode()) / 1e6 / s:9.2f} MB/s")
    s, _ = median_time(lambda: tk.encode_ordinary(letters[:20_000]), 1, warmup=False)
    s2, _ = median_time(lambda: ours.encode(letters[:20_000]), 1)
    print(f"  20 KB pre-token: tiktoken {s * 1000:.0f} ms, bpe336 {s2 * 1000:.1f} ms")

    # 6. Many special tokens cost little more than one, even on text dense in their first byte.
    lots = [EOT] + [f"<|tok{i}|>" for i in range(9_999)]
    with_lots = Tokenizer(vocab, ours.merges, special_tokens=lots)
    print(f"\nspecial tokens: 1 vs {len(lots):,} (encode_to_numpy, medians of {args.repeat}, interleaved)")
    for name, case in [(args.input.name, text), ("dense in '<'", dense_in_lt(min(nbytes, 16_000_000)))]:
        size = len(case.encode("utf-8"))
        for n in (1, 2):
            times: dict[str, list[float]] = {"one": [], "lots": []}
            for tok in (ours, with_lots):
                tok.encode_to_numpy(case, num_threads=n)  # warm-up
            for _ in range(args.repeat):
                for key, tok in (("one", ours), ("lots", with_lots)):
                    t0 = time.perf_counter()
                    tok.encode_to_numpy(case, num_threads=n)
                    times[key].append(time.perf_counter() - t0)
            one, many = statistics.median(times["one"]), statistics.median(times["lots"])
            print(
                f"  {name:<16} ({size / 1e6:5.1f} MB) {n} threads: 1 special {size / 1e6 / one:7.1f} MB/s, "
                f"{len(lots):,} {size / 1e6 / many:7.1f} MB/s, ratio {many / one:.2f}x"
            )


if __name__ == "__main__":
    main()

"""The whole path, raw text -> tokenizer -> token arrays -> trained model -> a sample, in one command.

Runs on a fresh machine with no network: with no TEXT_FILE it generates the default corpus of
children's stories (lm336.corpus). Stages, each printing a one-line summary with its time:

  1. corpus: TEXT_FILE or the generated stories; split into train/valid at the first document
     boundary (`<|endoftext|>`) after (1 - valid_fraction) of the bytes (else at a line break).
  2. tokenizer: bpe336.train_bpe on the train split (special token <|endoftext|>), saved in the run.
  3. tokens: both splits encoded to .npy token arrays with Tokenizer.encode_file.
  4. model: lm336.training.train for about --minutes: a few optimizer steps are timed first and
     max_steps is set so the run (validation included) fits the budget; the training loop then
     re-measures the time per step as it goes (run.time_budget_s) and moves max_steps, so the
     budget holds on a machine that speeds up or slows down. On the CPU the timing also picks
     PyTorch's default thread count or one thread, whichever is faster on this machine.
  5. sample: a continuation of the prompt, plus where the curves, log and checkpoint went and the
     final validation loss and perplexity.

NOTE: the run directory is overwritten by a new pipeline run (tokenizer, arrays and checkpoint).
Only the standard library is imported up front, so `--help` works before anything is installed.

    lm336 pipeline                                     # default corpus, ~3 minutes of training
    lm336 pipeline ../shared/data/kjv.txt --out runs/kjv --vocab-size 4000 --minutes 10
    lm336 pipeline --write-corpus stories.txt --corpus-mb 5   # only write the default corpus
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

from .common import DEVICE_HELP, command, command_path
from .corpus import EOT, write_stories

STORY_PROMPT = "Once upon a time"
_CHUNK = 1 << 24


# 1. Corpus split --------------------------------------------------------------------------------


def _cut_point(path: Path, size: int, valid_fraction: float) -> int:
    """Byte offset where the validation part starts: just after the first `<|endoftext|>` line at or
    after (1 - valid_fraction) of the file, else after the next newline, else at a UTF-8 character
    boundary. Reads only the tail of the file.

    Example: for b"aa\\n<|endoftext|>\\nbb\\n<|endoftext|>\\n" and a fraction of 0.6 the cut lands after
    the first separator line, giving ("aa\\n<|endoftext|>\\n", "bb\\n<|endoftext|>\\n").
    """
    target = int(size * (1.0 - valid_fraction))
    marker = EOT.encode()
    with open(path, "rb") as f:
        # Start a separator line's length early so one ending at the target (or straddling it) is found.
        start = max(0, target - len(marker) - 1)
        f.seek(start)
        tail = f.read()
    for sep in (marker, b"\n"):
        i = tail.find(sep)
        if 0 <= i:
            cut = start + i + len(sep)
            if sep == marker and tail[i + len(sep) : i + len(sep) + 1] == b"\n":
                cut += 1
            if 0 < cut < size:
                return cut
    cut = target
    while 0 < cut < size and (tail[cut - start] & 0xC0) == 0x80:  # not inside a multi-byte character
        cut += 1
    return cut


def split_corpus(src: str | Path, train_out: str | Path, valid_out: str | Path, valid_fraction: float = 0.05) -> dict:
    """Copy `src` into a train and a validation file (both written atomically), cut by documents.

    Returns:
        {"train_bytes", "valid_bytes", "documents": separators in the file}.
    """
    from bpe336.atomic import atomic_write

    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such text file")
    if src.is_dir():
        raise IsADirectoryError(f"{src}: is a directory, expected a text file")
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    size = src.stat().st_size
    if size == 0:
        raise ValueError(f"{src}: the corpus is empty")
    cut = _cut_point(src, size, valid_fraction)
    if not 0 < cut < size:
        raise ValueError(f"{src}: too small to split into train and validation parts ({size} bytes)")
    marker, docs = EOT.encode(), 0
    with open(src, "rb") as f:
        for out, todo in ((train_out, cut), (valid_out, size - cut)):
            with atomic_write(out, "wb") as g:
                carry = b""
                while todo:
                    chunk = f.read(min(_CHUNK, todo))
                    todo -= len(chunk)
                    g.write(chunk)
                    docs += (carry + chunk).count(marker)  # carry is too short to hold a whole marker
                    carry = chunk[-(len(marker) - 1) :]
    return {"train_bytes": cut, "valid_bytes": size - cut, "documents": docs}


def prompt_from(valid_path: Path, words: int = 4) -> str:
    """A prompt from held-out text: the first `words` words of the first line that has that many."""
    with open(valid_path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f):
            parts = line.replace(EOT, " ").split()
            if len(parts) >= words:
                return " ".join(parts[:words])
            if n > 10_000:
                break
    return STORY_PROMPT


# 2. Sizing the run ------------------------------------------------------------------------------


def time_train_step(
    cfg, device: str = "cpu", steps: int = 5, max_seconds: float = 6.0, warmup: int = 1, slower_than: float = math.inf
) -> float:
    """Median seconds per optimizer step of `cfg` (a TrainConfig) on random tokens: forward,
    cross-entropy, backward, clipping and AdamW, with lm336's own components. `warmup` untimed
    steps, then up to `steps` timed steps: fewer (at least two) once `max_seconds` have passed,
    and just one when that one already takes longer than `slower_than` seconds."""
    import statistics

    import torch

    from .common import resolve_device
    from .model import TransformerLM
    from .optim import AdamW, clip_gradients, cross_entropy

    dev = resolve_device(device)
    m, run = cfg.model, cfg.run
    model = TransformerLM.from_config(m, device=dev)
    opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, m.vocab_size, (run.batch_size, m.context_length + 1), generator=gen).to(dev)
    times: list[float] = []
    start = time.perf_counter()
    for i in range(warmup + steps):
        t = time.perf_counter()
        loss = cross_entropy(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        clip_gradients(list(model.parameters()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # waits for the device
        if i >= warmup:
            times.append(time.perf_counter() - t)
            if times[0] > slower_than:
                break
        if len(times) >= 2 and time.perf_counter() - start > max_seconds:
            break
    return statistics.median(times)


def choose_threads(cfg, device: str) -> tuple[int, float]:
    """(threads, seconds per step): PyTorch's default thread count or a single thread, whichever
    trains faster here, and leaves it set. NOTE: on a machine whose cores are busy with other
    work, several threads can be several times slower than one (they wait for each other)."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(1)
    one = time_train_step(cfg, device, steps=3, max_seconds=4.0)
    if default == 1:
        return 1, one
    torch.set_num_threads(default)
    # The single-thread run warmed up the allocator; stop early when several threads are clearly slower.
    many = time_train_step(cfg, device, max_seconds=max(2.0, 4 * one), warmup=0, slower_than=2 * one)
    if one < many:
        torch.set_num_threads(1)
        return 1, one
    return default, many


def plan_steps(budget_s: float, step_s: float, eval_batches: int, evals: int) -> int:
    """Optimizer steps that fit `budget_s` seconds: each step costs `step_s`, and each of `evals`
    validation passes costs eval_batches forward passes (about a third of a step each), plus 5%
    slack for logging and checkpoints.

    Example: plan_steps(60, 0.5, 3, 6) -> int((57 - 6 * 3 * 0.5 / 3) / 0.5) = 108.
    """
    usable = 0.95 * budget_s - evals * eval_batches * step_s / 3
    return max(2, int(usable / step_s))


def build_train_config(args, vocab_size: int, train_npy: Path, valid_npy: Path, run_dir: Path):
    from .config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig, apply_overrides, default_d_ff

    model = ModelConfig(
        vocab_size=vocab_size, context_length=args.context_length, d_model=args.d_model, num_layers=args.num_layers,
        num_heads=args.num_heads, d_ff=default_d_ff(args.d_model), rope_theta=10_000.0,
    )  # fmt: skip
    run = RunConfig(
        out_dir=str(run_dir), max_steps=args.max_steps or 100, batch_size=args.batch_size, eval_interval=0,
        eval_batches=args.eval_batches, log_interval=10, checkpoint_interval=0, seed=args.seed, device=args.device,
        dtype="float32", autocast="auto", compile=False, progress=args.progress,
    )  # fmt: skip
    # Short runs do not amortise torch.compile, hence compile=False; --set run.compile=true to try.
    cfg = TrainConfig(
        model=model,
        optimizer=OptimizerConfig(lr=args.lr, min_lr=args.lr / 10, warmup_iters=10, grad_clip=1.0),
        data=DataConfig(train_path=str(train_npy), val_path=str(valid_npy), tokenizer_path=str(run_dir / "tokenizer")),
        run=run,
    )
    return apply_overrides(cfg, args.set)


# 3. The command ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 pipeline",
        description="Raw text -> BPE tokenizer -> token arrays -> a small Transformer LM -> a sample, end to end.",
    )
    p.add_argument(
        "text_file",
        nargs="?",
        default=None,
        metavar="TEXT_FILE",
        help="UTF-8 corpus, documents separated by <|endoftext|> lines (default: generated stories)",
    )
    p.add_argument(
        "--out", default="runs/quickstart", help="run directory, relative to the current directory (default runs/quickstart); overwritten"
    )
    p.add_argument("--vocab-size", type=int, default=2000, help="BPE vocabulary incl. 256 bytes + specials (default 2000)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget in minutes (default 3)")
    p.add_argument("--max-steps", type=int, default=0, help="train exactly this many steps instead; 0 = fit --minutes")
    p.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default auto)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for PyTorch; 0 = measure PyTorch's default against 1 and take the faster "
        "(on a busy machine one thread can be several times faster)",
    )
    p.add_argument("--valid-fraction", type=float, default=0.05, help="share of the corpus held out (default 0.05)")
    p.add_argument("--corpus-mb", type=float, default=3.0, help="size of the generated corpus in MB (default 3)")
    p.add_argument("--corpus-seed", type=int, default=0, help="seed of the generated corpus (default 0)")
    p.add_argument(
        "--write-corpus", metavar="PATH", default=None, help="only write the generated corpus to PATH (--corpus-mb, --corpus-seed) and exit"
    )
    g = p.add_argument_group("model and optimizer (small CPU defaults)")
    g.add_argument("--context-length", type=int, default=128, help="tokens per sequence (default 128)")
    g.add_argument("--d-model", type=int, default=128, help="residual width (default 128)")
    g.add_argument("--num-layers", type=int, default=4, help="Transformer blocks (default 4)")
    g.add_argument("--num-heads", type=int, default=4, help="attention heads (default 4)")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate; cosine to lr/10 (default 3e-3)")
    g.add_argument("--eval-batches", type=int, default=4, help="validation batches per evaluation (default 4)")
    g.add_argument("--evals", type=int, default=6, help="validation passes during the run (default 6)")
    g.add_argument("--seed", type=int, default=0, help="seed of the model, batches and the sample (default 0)")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig override, e.g. --set optimizer.weight_decay=0 (repeatable)",
    )
    s = p.add_argument_group("sample")
    s.add_argument("--prompt", default=None, help=f'prompt of the final sample (default "{STORY_PROMPT}", or held-out words of TEXT_FILE)')
    s.add_argument("--sample-tokens", type=int, default=200, help="tokens in the final sample (default 200)")
    s.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    s.add_argument("--top-p", type=float, default=0.9, help="nucleus mass in (0, 1] (default 0.9)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar while training")
    return p


def _stage(n: int, name: str, t0: float, text: str) -> None:
    print(f"[{n}/5] {name:<9} {text} ({time.perf_counter() - t0:.1f} s)", flush=True)


def run_pipeline(args: argparse.Namespace) -> dict:
    """Run the five stages for parsed `args` (see build_parser); return a summary dict.
    PyTorch's thread count is restored afterwards (the stages may change it)."""
    import torch

    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        return _run_stages(args)
    finally:
        torch.set_num_threads(threads)


def _run_stages(args: argparse.Namespace) -> dict:
    from bpe336 import Tokenizer, train_bpe

    from .accounting import count_parameters
    from .checkpoint import RunFiles, prepare_out_dir
    from .common import resolve_device, write_json
    from .config import apply_overrides
    from .plot import plot_runs
    from .sampling import generate
    from .training import train

    run_dir = prepare_out_dir(args.out, create=False)
    files = RunFiles(run_dir)
    # Check the model/optimizer settings and the device before any work (the real vocabulary size comes later).
    first = build_train_config(args, args.vocab_size, run_dir / "train.npy", run_dir / "valid.npy", run_dir)
    device = resolve_device(first.run.device)
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    # 1. Corpus.
    t0 = time.perf_counter()
    if args.text_file is None:
        corpus = data_dir / "stories.txt"
        info = write_stories(corpus, size_mb=args.corpus_mb, seed=args.corpus_seed)
        origin = f"generated {info['documents']:,} stories ({info['bytes'] / 1e6:.1f} MB, seed {args.corpus_seed})"
    else:
        corpus = Path(args.text_file)
        origin = f"{corpus}"
    train_txt, valid_txt = data_dir / "train.txt", data_dir / "valid.txt"
    split = split_corpus(corpus, train_txt, valid_txt, args.valid_fraction)
    _stage(1, "corpus", t0, f"{origin}: train {split['train_bytes']:,} B, valid {split['valid_bytes']:,} B, "
                            f"{split['documents']:,} documents")  # fmt: skip

    # 2. Tokenizer.
    t0 = time.perf_counter()
    vocab, merges = train_bpe(str(train_txt), args.vocab_size, special_tokens=[EOT])
    tokenizer = Tokenizer(vocab, merges, special_tokens=[EOT])
    tok_dir = files.tokenizer
    tok_dir.mkdir(exist_ok=True)
    tokenizer.save(tok_dir)
    short = (f"; the corpus ran out of pairs to merge before {args.vocab_size:,}"
             if tokenizer.vocab_size < args.vocab_size else "")  # fmt: skip
    _stage(2, "tokenizer", t0, f"BPE vocab {tokenizer.vocab_size:,} ({len(merges):,} merges{short}) -> {tok_dir}")

    # 3. Tokens.
    t0 = time.perf_counter()
    train_npy, valid_npy = data_dir / "train.npy", data_dir / "valid.npy"
    counts = []
    for txt, npy in ((train_txt, train_npy), (valid_txt, valid_npy)):
        counts.append(tokenizer.encode_file(txt, npy, progress=False)["tokens"])
    ratio = split["train_bytes"] / max(counts[0], 1)
    _stage(3, "tokens", t0, f"train {counts[0]:,} tokens, valid {counts[1]:,} tokens ({ratio:.2f} bytes/token) "
                            f"-> {data_dir}")  # fmt: skip

    # 4. Model.
    import torch

    t0 = time.perf_counter()
    cfg = build_train_config(args, tokenizer.vocab_size, train_npy, valid_npy, run_dir)
    if args.max_steps:
        plan = f"{cfg.run.max_steps} steps (--max-steps)"
    else:
        if args.threads or device.type != "cpu":
            step_s = time_train_step(cfg, cfg.run.device)
        else:  # CPU, --threads 0: measure whether one thread or PyTorch's default is faster here
            _, step_s = choose_threads(cfg, cfg.run.device)
        budget = max(60 * args.minutes - (time.perf_counter() - t0), 1.0)  # the timing above counts too
        cfg.run.max_steps = plan_steps(budget, step_s, cfg.run.eval_batches, args.evals)
        cfg.run.time_budget_s = round(budget, 3)  # the loop re-plans from the step time it measures
        plan = f"about {cfg.run.max_steps} steps of {1000 * step_s:.0f} ms to fit {args.minutes:g} min (re-measured as it trains)"
    if device.type == "cpu":
        plan += f" on {torch.get_num_threads()} CPU thread{'s' if torch.get_num_threads() > 1 else ''}"
    steps = cfg.run.max_steps
    cfg.run.eval_interval = max(1, -(-steps // max(args.evals, 1)))  # ceil: no extra pass right before the last
    cfg.run.log_interval = max(1, min(10, steps // 20))
    cfg.run.checkpoint_interval = max(cfg.run.eval_interval, steps // 4)
    if cfg.optimizer.warmup_iters > steps // 5:
        cfg.optimizer.warmup_iters = max(1, steps // 5)
    cfg = apply_overrides(cfg, [*args.set, "run.overwrite=true"])  # the user's keys win over the plan; the run dir is ours
    n_params = count_parameters(cfg.model)
    print(f"         model: {n_params:,} parameters, context {cfg.model.context_length}, "
          f"d_model {cfg.model.d_model}, {cfg.model.num_layers} layers; {plan}; "
          f"{cfg.tokens_per_step * steps:,} tokens", flush=True)  # fmt: skip
    summary = train(cfg, return_model=True)
    model = summary.pop("model")
    val = summary["final_val_loss"]
    val_text = f"val loss {val:.3f}, perplexity {summary['final_val_perplexity']:.1f}" if val is not None else "no validation"
    _stage(4, "model", t0, f"{summary['steps']} steps, {summary['tokens']:,} tokens in {summary['time_s']:.0f} s, "
                           f"train loss {summary['final_train_loss']:.3f}, {val_text}")  # fmt: skip

    # 5. Sample and where everything went.
    t0 = time.perf_counter()
    prompt = args.prompt if args.prompt is not None else (STORY_PROMPT if args.text_file is None else prompt_from(valid_txt))
    text = generate(model, tokenizer, prompt, max_new_tokens=args.sample_tokens, temperature=args.temperature,
                    top_p=args.top_p, seed=args.seed)  # fmt: skip
    curves, curves_note = _plot(plot_runs, run_dir)
    _stage(5, "sample", t0, f"{args.sample_tokens} tokens max, temperature {args.temperature}, top-p {args.top_p}")
    print("\n" + "-" * 72 + f"\n{prompt}{text}\n" + "-" * 72)
    ckpt = files.checkpoint
    print(f"checkpoint : {ckpt}")
    print(f"log        : {files.log} (config {files.config}, summary {files.summary})")
    print(f"tokenizer  : {tok_dir}")
    print(f"curves     : {', '.join(map(str, curves)) if curves else curves_note}")
    if val is not None:
        print(f"final validation loss {val:.4f} nats/token, perplexity {summary['final_val_perplexity']:.2f}")
    print(f"total {time.perf_counter() - t_all:.0f} s. More samples:\n  "
          f"{command_path('lm336')} generate --checkpoint {shlex.quote(str(ckpt))} --prompt {shlex.quote(prompt)}")  # fmt: skip
    result = {**summary, "prompt": prompt, "sample": text, "tokenizer_dir": str(tok_dir), "checkpoint": str(ckpt),
              "curves": [str(c) for c in curves], "train_tokens": counts[0],
              "valid_tokens": counts[1], "torch_threads": torch.get_num_threads(), "total_s": round(time.perf_counter() - t_all, 1)}  # fmt: skip
    write_json(files.pipeline, result)
    return result


def _plot(plot_runs, run_dir: Path) -> tuple[list[Path], str]:
    """Learning-curve PNGs of the run; without matplotlib, no paths and why not."""
    out = []
    for metric in ("train_loss", "val_loss"):
        try:
            out.append(plot_runs([run_dir], run_dir / f"curves_{metric}.png", metric=metric))
        except (RuntimeError, ValueError, OSError) as e:  # no matplotlib, nothing to plot
            return out, f"skipped ({e})"
    return out, ""


@command("lm336 pipeline")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_corpus:
        t0 = time.perf_counter()
        info = write_stories(args.write_corpus, size_mb=args.corpus_mb, seed=args.corpus_seed)
        print(f"wrote {info['path']}: {info['documents']:,} stories, {info['bytes']:,} bytes "
              f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
        return 0
    if not (args.minutes > 0 and math.isfinite(args.minutes)) and not args.max_steps:
        raise ValueError(f"--minutes must be a positive number (or give --max-steps), got {args.minutes}")
    if args.max_steps < 0 or args.threads < 0:
        raise ValueError("--max-steps and --threads must be >= 0")
    from bpe336.train import check_vocab_size

    check_vocab_size(args.vocab_size, 1)  # the pipeline trains with one special token, EOT: before any work
    if args.text_file is not None and not Path(args.text_file).is_file():
        raise FileNotFoundError(f"{args.text_file}: no such file")
    run_pipeline(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Held-out evaluation: mean loss, perplexity and bits per byte over every token of a text file or a
token array. `lm336.evaluate(...)` from Python, `lm336 eval` from the shell.

What is scored: the ids S = [bos] + tokens, where bos is `<|endoftext|>` when the tokenizer has it
(so the first token of the text is predicted too, as at the start of a new document; with no bos,
scoring starts at the second token). Every id of S after the first is predicted exactly once:
- windows of context_length ids that do not overlap (the last one shorter), by default;
- with stride < context_length, a window starts every `stride` ids and scores only the ids the
  windows before it did not, so each id after the first window sees at least
  context_length - stride ids of context (the sliding-window evaluation of transformers'
  perplexity guide).

Bits per byte = (sum of the scored tokens' losses in nats) / (ln 2 * their UTF-8 bytes). For a text
file with a bos token the bytes are exactly the file's bytes; for a token array, the bytes of the
decoded tokens. It does not depend on the tokenizer, so models with different vocabularies compare.

    result = lm336.evaluate("runs/a", "valid.txt")   # {"loss", "perplexity", "bits_per_byte", "tokens", "bytes", ...}

Shell: `lm336 eval --checkpoint runs/a --data valid.txt [--stride 128] [--json]`
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .checkpoint import TOKENIZER_HELP
from .common import command
from .optim import cross_entropy
from .sampling import EOT

_TEXT_CHUNK = 1 << 22


# 1. Bytes per token and the windows -------------------------------------------------------------


def token_byte_lengths(tokenizer, size: int | None = None) -> np.ndarray:
    """UTF-8 byte length of every token id, as an int64 array of `size` (default: the vocabulary
    size); ids the tokenizer lacks count 0 bytes. Special tokens count their text's bytes.

    Example: for a vocabulary {0: b"<|endoftext|>", 1: b"a", 2: b" the"} -> [13, 1, 4]
    """
    vocab = tokenizer.vocab
    size = max(vocab, default=-1) + 1 if size is None else size
    lengths = np.zeros(size, dtype=np.int64)
    for idx, token in vocab.items():
        if idx < size:
            lengths[idx] = len(token)
    return lengths


def window_plan(num_ids: int, context_length: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """Windows over a sequence of `num_ids` ids that predict each id after the first exactly once.

    Each window is (begin, end, scored_from): the model reads ids[begin:end] and predicts
    ids[begin + 1 : end + 1]; the predictions of ids[scored_from + 1 : end + 1] are scored (the
    ones before were scored by an earlier window with less context).

    Examples: window_plan(8, 3) -> [(0, 3, 0), (3, 6, 3), (6, 7, 6)]
              window_plan(8, 4, 2) -> [(0, 4, 0), (2, 6, 4), (4, 7, 6)]
    """
    if context_length < 1:
        raise ValueError(f"context_length must be positive, got {context_length}")
    stride = context_length if stride is None else stride
    if not 1 <= stride <= context_length:
        raise ValueError(f"stride must be in [1, context_length={context_length}], got {stride}")
    targets = num_ids - 1
    plan, begin, scored_until = [], 0, 0
    while scored_until < targets:
        end = min(begin + context_length, targets)
        plan.append((begin, end, scored_until))
        scored_until = end
        begin += stride
    return plan


# 2. Inputs ----------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A UTF-8 text file; invalid bytes raise UnicodeDecodeError naming the path and the offset."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnicodeDecodeError("utf-8", data, e.start, e.end, f"{path}: invalid UTF-8 at byte offset {e.start}") from None


def load_eval_tokens(data, tokenizer=None, data_dtype: str = "uint16") -> tuple[np.ndarray, str]:
    """The ids to score and what they are ("text" or "tokens"): a text file is encoded with
    `tokenizer`; a .npy, a raw .bin (of `data_dtype`) or a directory of token shards is
    memory-mapped; an array is used as is."""
    if not isinstance(data, (str, os.PathLike)):
        from .data import _as_token_array

        return _as_token_array(data), "tokens"
    path = Path(data)
    from bpe336.shards import MANIFEST_NAME, is_token_shards

    from .training import TOKEN_ARRAY_SUFFIXES, open_tokens

    if path.suffix in TOKEN_ARRAY_SUFFIXES or is_token_shards(path) or path.name == MANIFEST_NAME:
        return open_tokens(path, data_dtype), "tokens"
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a text file or a .npy/.bin token array")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if tokenizer is None:
        raise ValueError(f"{path}: a text file needs the run's tokenizer (none found; pass tokenizer= / --tokenizer)")
    text = read_text(path)
    return tokenizer.encode_to_numpy(text), "text"


# 3. Scoring ---------------------------------------------------------------------------------------


class _Sequence:
    """S = [bos] + tokens without copying `tokens` (which may be a memmap)."""

    def __init__(self, tokens: np.ndarray, bos_id: int | None):
        self.tokens, self.bos_id = tokens, bos_id
        self.offset = 0 if bos_id is None else 1

    def __len__(self) -> int:
        return len(self.tokens) + self.offset

    def slice(self, begin: int, end: int) -> np.ndarray:
        """S[begin:end] as int64."""
        if self.bos_id is None or begin > 0:
            return np.asarray(self.tokens[begin - self.offset : end - self.offset], dtype=np.int64)
        return np.concatenate([[self.bos_id], np.asarray(self.tokens[: end - 1], dtype=np.int64)])


@torch.no_grad()
def evaluate(
    model,
    data,
    tokenizer=None,
    *,
    context_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    bos_token: str | None = EOT,
    data_dtype: str = "uint16",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict:
    """Score every token of `data` with `model`; see the module docstring for what is scored.

    Args:
        model: a TransformerLM, or a ckpt.pt / model.safetensors / run directory to load.
        data: a text file (encoded with the tokenizer), a .npy or raw .bin token array, or a 1-D
            array of ids.
        tokenizer: a bpe336 Tokenizer or its path; None = the run's when `model` is a path. Needed
            for text and for bits per byte (without it a token array gets loss and perplexity only).
        context_length: tokens per window; None = the model's context length.
        stride: ids between window starts, in [1, context_length]; None = context_length (no overlap).
        batch_size: windows per forward pass.
        bos_token: prepended so the first token is scored too, when the tokenizer has it; None = never.
        data_dtype: element type of a raw .bin file.
        device: where a model loaded from a path runs (None = "auto": cuda, mps, else cpu); a
            TransformerLM stays where it is.
        progress: a progress bar on stderr (plain lines when stderr is not a terminal).

    Returns:
        {"loss": mean nats per token, "perplexity": exp(loss), "bits_per_byte" (None without a
        tokenizer), "tokens": ids scored, "bytes": their UTF-8 bytes (None without a tokenizer),
        "windows", "context_length", "stride", "bos_token" (None when not prepended), "source"
        ("text" or "tokens")}.
    """
    from .checkpoint import find_tokenizer, load_model
    from .common import resolve_device

    # 1. Model and tokenizer.
    if isinstance(model, (str, os.PathLike)):
        path = model
        model, raw = load_model(path, resolve_device(device or "auto"))
        if tokenizer is None:
            tokenizer = find_tokenizer(path, raw)
    if isinstance(tokenizer, (str, os.PathLike)):  # a path (a str has .encode too: test the type)
        from bpe336 import Tokenizer

        tokenizer = Tokenizer.load(tokenizer)
    cfg = model.config
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}: not the model's tokenizer")
    context_length = cfg.context_length if context_length is None else context_length
    if not 1 <= context_length <= cfg.context_length:
        raise ValueError(f"context_length must be in [1, {cfg.context_length}] (the model's), got {context_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    # 2. The ids, checked once.
    tokens, source = load_eval_tokens(data, tokenizer, data_dtype)
    from .data import check_token_range

    try:
        check_token_range(tokens, cfg.vocab_size)
    except ValueError as e:
        raise ValueError(f"{data if isinstance(data, (str, os.PathLike)) else 'data'}: {e} (the model's vocabulary)") from None
    bos_id = None
    if tokenizer is not None and bos_token is not None and bos_token in tokenizer.special_tokens:
        bos_id = tokenizer.token_to_id(bos_token)
    seq = _Sequence(tokens, bos_id)
    if len(seq) < 2:
        raise ValueError(f"{data}: {len(tokens)} token(s): nothing to score (need at least 2 ids, or 1 after a bos token)")
    plan = window_plan(len(seq), context_length, stride)
    n_bytes = None
    if tokenizer is not None:
        lengths = token_byte_lengths(tokenizer, cfg.vocab_size)
        n_bytes = sum(int(lengths[seq.slice(b, min(b + _TEXT_CHUNK, len(seq)))].sum()) for b in range(1, len(seq), _TEXT_CHUNK))

    # 3. Windows in batches of equal length (only the last window can be shorter).
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=dev)
    scored = 0
    bar = _Progress(len(plan), enabled=progress)
    try:
        for group in _batches(plan, batch_size):
            windows = torch.from_numpy(np.stack([seq.slice(b, e + 1) for b, e, _ in group])).to(dev)  # (batch, seq + 1)
            logits = model(windows[:, :-1])  # (batch, seq, vocab)
            for j, (b, e, s) in enumerate(group):
                k = s - b  # predictions before k were scored by an earlier window
                total += cross_entropy(logits[j, k:], windows[j, k + 1 :]).double() * (e - s)
                scored += e - s
            bar.update(len(group), float(total) / scored)
    finally:
        bar.close()
        model.train(was_training)
    assert scored == len(seq) - 1  # every id after the first, once
    loss = float(total) / scored
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_byte": loss * scored / (n_bytes * math.log(2)) if n_bytes else None,
        "tokens": scored,
        "bytes": n_bytes,
        "windows": len(plan),
        "context_length": context_length,
        "stride": context_length if stride is None else stride,
        "bos_token": bos_token if bos_id is not None else None,
        "source": source,
    }


def _batches(plan: list[tuple[int, int, int]], batch_size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Consecutive windows of equal length, at most batch_size at a time."""
    group: list[tuple[int, int, int]] = []
    for window in plan:
        if group and (len(group) == batch_size or window[1] - window[0] != group[0][1] - group[0][0]):
            yield group
            group = []
        group.append(window)
    if group:
        yield group


class _Progress:
    """tqdm on a terminal; otherwise a plain line at every tenth of the work (and none when off)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.next_line = total, 0, enabled, 0.1
        self.start = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="window", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, loss: float) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        elif self.done >= self.next_line * self.total or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            print(f"eval: {self.done}/{self.total} windows ({100 * self.done / self.total:.0f}%), loss {loss:.4f}, {elapsed:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            while self.next_line * self.total <= self.done:
                self.next_line += 0.1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# 4. Command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 eval",
        description="Score every token of a held-out text file or token array: mean loss, perplexity, bits per byte.",
    )
    p.add_argument("--checkpoint", required=True, help="ckpt.pt, model.safetensors, or a run directory holding either")
    p.add_argument(
        "--data",
        required=True,
        help="held-out text (UTF-8, encoded with the run's tokenizer), a .npy/.bin token array, or a directory of token shards (manifest.json)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help=TOKENIZER_HELP,
    )
    p.add_argument("--context-length", type=int, default=None, help="tokens per window (default: the model's context length)")
    p.add_argument("--stride", type=int, default=None,
                   help="tokens between window starts, in [1, context length]; each token is scored once, with "
                        ">= context - stride tokens of context (default: the context length, no overlap)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument(
        "--bos-token", default=EOT, help=f"prepended so the first token is scored too, if the tokenizer has it (default {EOT}; '' = none)"
    )
    p.add_argument("--data-dtype", default="uint16", choices=["uint16", "uint32", "int32", "int64"],
                   help="element type of a raw .bin token file (default uint16; .npy files carry their own)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch; 0 = PyTorch's default")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines (on stderr)")
    return p


@command("lm336 eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads < 0:
            raise ValueError("--threads must be >= 0")
        if args.threads:
            torch.set_num_threads(args.threads)
        result = evaluate(
            args.checkpoint, args.data, args.tokenizer, context_length=args.context_length, stride=args.stride,
            batch_size=args.batch_size, bos_token=args.bos_token or None, data_dtype=args.data_dtype,
            device=args.device, progress=not args.no_progress,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests, notebooks)
    result = {"checkpoint": str(args.checkpoint), "data": str(args.data), **result}
    if args.json:
        print(json.dumps(result))
        return 0
    bpb = f"{result['bits_per_byte']:.4f}" if result["bits_per_byte"] is not None else "n/a (no tokenizer)"
    nbytes = f"{result['bytes']:,}" if result["bytes"] is not None else "n/a"
    print(f"data          : {args.data} ({result['source']})")
    print(f"tokens scored : {result['tokens']:,} ({nbytes} bytes) in {result['windows']:,} windows of "
          f"{result['context_length']} (stride {result['stride']})")  # fmt: skip
    print(f"loss          : {result['loss']:.4f} nats/token")
    print(f"perplexity    : {result['perplexity']:.3f}")
    print(f"bits per byte : {bpb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

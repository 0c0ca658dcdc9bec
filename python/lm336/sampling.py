"""Sampling text from a TransformerLM: temperature, top-k, top-p (nucleus), eos, a seeded generator
and a KV cache; plus the `lm336 generate` command.

Notable choices:
- temperature 0 is greedy decoding (argmax of the logits); no random numbers are drawn.
- Sampling happens on the CPU from float32 probabilities with a seeded `torch.Generator`, so a seeded
  run repeats exactly, whatever device ran the model (the next id is needed on the host anyway, to
  test for eos and to stream).
- The model conditions on at most its last `context_length` tokens. NOTE: a prompt longer than the
  context is left-truncated (its first tokens are dropped); the returned text is the continuation only.
- With the KV cache (default) the prompt is prefilled once and each new token costs one position.
  When the cache is full (context_length positions) it falls back to a sliding window: the cache is
  refilled from the last context_length tokens (the last context_length - 1 tokens plus the new one),
  so output is identical to the uncached path, but past the context each token costs a full window.
- `softmax` is lm336's own (torch.nn.functional is not used).

    from lm336 import generate
    text = generate(model, tokenizer, "Once upon a time", max_new_tokens=200, temperature=0.8, top_p=0.9, seed=0)

Shell: `lm336 generate --checkpoint runs/x/ckpt.pt --prompt "Once upon a time" --temperature 0.8 --top-p 0.9`
"""

from __future__ import annotations

import argparse
import codecs
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import TOKENIZER, TOKENIZER_HELP, find_tokenizer, load_model
from .common import DEVICE_HELP, command, resolve_device
from .layers import decode_layout, softmax

EOT = "<|endoftext|>"


# 1. Filtering and drawing one token ------------------------------------------------------------


def top_p_filter(probs: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most probable tokens whose total probability is >= top_p, zero the
    rest and renormalise. `probs` is (..., vocab) and sums to 1 along the last dim.

    Ties in probability are broken by lower token id first (a stable sort), so the result is
    deterministic. top_p = 1 keeps every token with nonzero probability.

    Example: top_p_filter(tensor([0.1, 0.5, 0.15, 0.25]), 0.7) -> [0, 0.5/0.75, 0, 0.25/0.75]
    (0.5 alone is < 0.7; 0.5 + 0.25 = 0.75 >= 0.7).
    """
    _check_top_p(top_p)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of strictly more likely tokens
    # A token is needed while the tokens before it have not yet reached top_p. The first token is
    # always kept (mass_before = 0 < top_p), so the set is never empty.
    keep_sorted = mass_before < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def top_k_filter(logits: Tensor, top_k: int) -> Tensor:
    """Set every logit outside the `top_k` largest to -inf (exactly top_k survive; ties at the
    boundary are resolved by torch.topk). top_k >= vocab keeps everything.

    Example: top_k_filter(tensor([1., 3., 2.]), 2) -> [-inf, 3., 2.]
    """
    _check_top_k(top_k)
    if top_k >= logits.shape[-1]:
        return logits
    idx = torch.topk(logits, top_k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
    return torch.where(keep, logits, torch.full_like(logits, float("-inf")))


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Draw the next token id from one position's logits (vocab,).

    temperature 0 returns the argmax (first maximum on ties) without touching `generator`.
    Otherwise: logits / temperature -> top-k -> softmax -> top-p -> one multinomial draw.
    """
    _check_sampling_args(temperature, top_p, top_k)
    return _draw(logits, temperature, top_p, top_k, generator)


def _draw(logits: Tensor, temperature: float, top_p: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """sample_next without the argument checks (the decoding loop checks them once)."""
    logits = logits.detach().float().cpu()  # (vocab,)
    if temperature == 0:
        next_id = int(torch.argmax(logits))  # a NaN anywhere is the argmax, so checking the winner suffices
        if math.isnan(float(logits[next_id])):
            raise ValueError("the model produced NaN logits; cannot sample (is the checkpoint healthy?)")
        return next_id
    if torch.isnan(logits).any():
        raise ValueError("the model produced NaN logits; cannot sample (is the checkpoint healthy?)")
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probs = softmax(logits, dim=-1)
    if top_p < 1.0:
        probs = top_p_filter(probs, top_p)
    if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
        raise ValueError("the model produced NaN/inf logits; cannot sample (is the checkpoint healthy?)")
    return int(torch.multinomial(probs, 1, generator=generator))


# 2. Argument checks ----------------------------------------------------------------------------


def _check_top_p(top_p: float) -> None:
    if not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")


def _check_sampling_args(temperature: float, top_p: float, top_k: int | None) -> None:
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    _check_top_p(top_p)
    _check_top_k(top_k)


# 3. Token-level generation ---------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def iter_generate_ids(
    model,
    prompt_ids: Sequence[int],
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> Iterator[int]:
    """Yield new token ids one at a time (a streaming generator); stops after max_new_tokens or
    before `eos_id` (which is never yielded).

    Args:
        model: a TransformerLM (anything with `.config.context_length`, `new_kv_cache` and
            `forward(ids, kv_cache=...)`). Put in eval mode while generating, restored after.
        prompt_ids: at least one token id (to start a fresh document, pass [eos_id]). Only the last
            context_length ids condition the output.
        max_new_tokens: upper bound on yielded ids (>= 0).
        temperature: 0 = greedy; > 0 divides the logits.
        top_p: nucleus mass in (0, 1]; 1 = no filtering.
        top_k: keep only the k most likely tokens; None = no filtering.
        seed: seeds the sampling generator; the same seed gives the same ids. None = fresh entropy.
        eos_id: stop when this id is drawn.
        use_cache: KV cache (one position per new token); False recomputes the window every step.
    """
    _check_sampling_args(temperature, top_p, top_k)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ValueError("the prompt has no tokens; pass at least one id (e.g. [eos_id] to start a new document)")
    vocab_size, context = model.config.vocab_size, model.config.context_length
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"prompt token ids must lie in [0, {vocab_size}), got {bad[:5]}")
    device = _model_device(model)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))

    def window() -> Tensor:  # (1, <= context) the ids the model may see
        return torch.tensor([ids[-context:]], dtype=torch.long, device=device)

    # The arguments are checked above, once; per token the loop does only an in-place write of the
    # new id into a preallocated (1, 1) tensor, one forward of one position (the cache is written
    # in place) and one draw.
    token = torch.empty((1, 1), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    cache = None
    try:
        with decode_layout(model):
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits = model(window())[0, -1]
                elif cache is None or cache.length >= cache.max_seq_len:
                    # Prefill, or the cache is full: refill it from the sliding window.
                    if cache is None:
                        cache = model.new_kv_cache(1)
                    cache.reset()
                    logits = model(window(), kv_cache=cache)[0, -1]
                else:
                    token.fill_(ids[-1])
                    logits = model(token, kv_cache=cache)[0, -1]
                next_id = _draw(logits, temperature, top_p, top_k, generator)
                if next_id == eos_id:
                    return
                ids.append(next_id)
                yield next_id
    finally:
        model.train(was_training)


def generate_ids(model, prompt_ids: Sequence[int], **kwargs) -> list[int]:
    """The new ids (eos excluded) as a list; keyword arguments as `iter_generate_ids`."""
    return list(iter_generate_ids(model, prompt_ids, **kwargs))


# 4. Text-level generation ----------------------------------------------------------------------


def _prompt_ids(tokenizer, prompt: str, eos_token: str | None) -> tuple[list[int], int | None]:
    """Prompt ids and the eos id. The default eos token may be absent from a tokenizer (then
    nothing stops generation early); any other eos token must exist, so a typo is not silent."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")

    def lookup(token: str) -> int | None:
        try:
            return tokenizer.token_to_id(token)
        except (KeyError, ValueError):
            return None

    eos_id = lookup(eos_token) if eos_token is not None else None
    if eos_id is None and eos_token not in (None, EOT):
        raise ValueError(f"eos_token {eos_token!r} is not a token of the tokenizer")
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:
        # An empty prompt means "a new document": condition on the document separator.
        start = eos_token or EOT
        start_id = lookup(start)
        if start_id is None:
            raise ValueError(f"empty prompt and the tokenizer has no {start!r} token to start a document from")
        ids = [start_id]
    return ids, eos_id


def iter_generate(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    eos_token: str | None = EOT,
    use_cache: bool = True,
) -> Iterator[str]:
    """Yield the continuation as text pieces while it is generated. Bytes of a character split
    across tokens are held back until complete (malformed UTF-8 becomes U+FFFD)."""
    ids, eos_id = _prompt_ids(tokenizer, prompt, eos_token)
    yield from _decode_stream(tokenizer, iter_generate_ids(
        model, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        seed=seed, eos_id=eos_id, use_cache=use_cache,
    ))  # fmt: skip


def _decode_stream(tokenizer, token_ids: Iterator[int]) -> Iterator[str]:
    """Text pieces for a stream of ids, holding back a character split across tokens."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in token_ids:
        piece = decoder.decode(tokenizer.id_to_token(token))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def generate(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    eos_token: str | None = EOT,
    use_cache: bool = True,
) -> str:
    """Continue `prompt` and return the continuation text (prompt and eos excluded).

    Args:
        model: a TransformerLM.
        tokenizer: a bpe336.Tokenizer (encode, decode, token_to_id).
        prompt: text to continue; "" starts a new document (conditions on `eos_token`). NOTE: a
            prompt longer than the model's context is left-truncated to its last context_length tokens.
        max_new_tokens: most tokens to generate.
        temperature: 0 = greedy (argmax); higher = more random.
        top_p: nucleus sampling mass in (0, 1]; 1 disables.
        top_k: keep the k most likely tokens; None disables.
        seed: a seed makes the run repeat exactly.
        eos_token: generation stops when the model emits it (not included); None = never stop early.
            The default may be missing from the tokenizer (no early stop); another missing token is an error.
        use_cache: use the KV cache (same output, much faster).

    Returns:
        The generated text.
    """
    ids, eos_id = _prompt_ids(tokenizer, prompt, eos_token)
    new = generate_ids(
        model, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        seed=seed, eos_id=eos_id, use_cache=use_cache,
    )  # fmt: skip
    return tokenizer.decode(new)


# 5. The command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lm336 generate", description="Sample text from a trained checkpoint.")
    p.add_argument("--checkpoint", required=True, help="ckpt.pt, model.safetensors, or a run directory holding either")
    p.add_argument(
        "--tokenizer",
        default=None,
        help=TOKENIZER_HELP,
    )
    p.add_argument("--prompt", default="Once upon a time", help='text to continue ("" = a new document; default "Once upon a time")')
    p.add_argument("--max-new-tokens", type=int, default=256, help="most tokens to generate (default 256)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus mass in (0, 1]; 1 = off (default 0.9)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (default: off)")
    p.add_argument("--seed", type=int, default=None, help="random seed; same seed = same text (default: random)")
    p.add_argument("--num-samples", type=int, default=1, help="samples to draw, with seeds seed, seed+1, ... (default 1)")
    p.add_argument("--eos-token", default=EOT, help=f"stop token (default {EOT}); '' = never stop early")
    p.add_argument("--device", default="auto", help=f"{DEVICE_HELP}; default auto")
    p.add_argument("--no-cache", action="store_true", help="disable the KV cache (recompute every step)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for PyTorch; 0 = PyTorch's default. NOTE: on a busy machine 1 can be much faster",
    )
    return p


@command("lm336 generate")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests, notebooks)


def _run(args: argparse.Namespace) -> int:
    _check_sampling_args(args.temperature, args.top_p, args.top_k)
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError("--max-new-tokens must be >= 0 and --num-samples >= 1")
    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in [0, 2**63), got {args.seed}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from bpe336 import Tokenizer

    device = resolve_device(args.device)
    model, raw = load_model(args.checkpoint, device)
    tok_path = Path(args.tokenizer) if args.tokenizer else find_tokenizer(args.checkpoint, raw)
    if tok_path is None:
        raise ValueError(
            f"no tokenizer found for {args.checkpoint} (looked for the one its config names and for {TOKENIZER}/ beside it "
            "and one level up); pass --tokenizer DIR"
        )
    eos_token = args.eos_token or None
    tokenizer = Tokenizer.load(tok_path)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer at {tok_path} has {tokenizer.vocab_size} tokens but the model was trained with "
            f"vocab_size {model.config.vocab_size}; pass the run's tokenizer with --tokenizer"
        )
    for n in range(args.num_samples):
        seed = None if args.seed is None else args.seed + n
        if args.num_samples > 1:
            print(f"--- sample {n + 1}/{args.num_samples}" + (f" (seed {seed})" if seed is not None else ""))
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        ids, eos_id = _prompt_ids(tokenizer, args.prompt, eos_token)
        counted: list[int] = []

        def counting(it: Iterator[int], counted: list[int] = counted) -> Iterator[int]:
            for token in it:
                counted.append(token)
                yield token

        start = time.perf_counter()
        stream = iter_generate_ids(
            model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            top_k=args.top_k, seed=seed, eos_id=eos_id, use_cache=not args.no_cache,
        )  # fmt: skip
        for piece in _decode_stream(tokenizer, counting(stream)):
            sys.stdout.write(piece)
            sys.stdout.flush()
        elapsed = time.perf_counter() - start
        print()
        rate = len(counted) / elapsed if elapsed > 0 else float("inf")
        print(f"[{len(counted)} tokens in {elapsed:.2f} s ({rate:.1f} tok/s) on {device}, "
              f"KV cache {'off' if args.no_cache else 'on'}]", file=sys.stderr)  # fmt: skip
    return 0

"""Generation speed with and without the KV cache, same model, same prompt, same run.

The reference 17M config (SPEC section 5: vocab 10,000, context 256, d_model 512, 4 layers, 16 heads,
d_ff 1,344) with random weights; greedy decoding (no eos), so both paths produce the same ids and
the same number of tokens (checked). Prints medians over repeats and the speed-up.

    python benches/bench_generate.py                      # CPU, 16-token prompt, 128 new tokens
    python benches/bench_generate.py --new-tokens 240 --threads 1   # up to the full 256-token context
    python benches/bench_generate.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lm336.common import resolve_device
from lm336.config import ModelConfig
from lm336.model import TransformerLM
from lm336.sampling import generate_ids


def time_run(model, prompt: list[int], new_tokens: int, use_cache: bool, device) -> tuple[float, list[int]]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    ids = generate_ids(model, prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt-tokens", type=int, default=16, help="prompt length (tokens)")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated per run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode (after one warm-up)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344)
    model = TransformerLM.from_config(cfg, device=device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (args.prompt_tokens,)).tolist()
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, params {model.num_parameters():,}, "
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, {args.repeats} repeats"
    )

    times: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, list[int]] = {}
    for use_cache in (True, False):  # one warm-up each, then interleave the timed runs
        time_run(model, prompt, min(8, args.new_tokens), use_cache, device)
    for _ in range(args.repeats):
        for use_cache in (True, False):
            elapsed, ids = time_run(model, prompt, args.new_tokens, use_cache, device)
            times[use_cache].append(elapsed)
            outputs[use_cache] = ids
    same = outputs[True] == outputs[False]
    rates = {k: args.new_tokens / statistics.median(v) for k, v in times.items()}
    for use_cache in (True, False):
        med = statistics.median(times[use_cache])
        print(
            f"  {'KV cache' if use_cache else 'no cache':>9}: median {med:7.3f} s  "
            f"{1000 * med / args.new_tokens:7.2f} ms/token  {rates[use_cache]:8.1f} tokens/s"
        )
    print(f"  speed-up (cache / no cache): {rates[True] / rates[False]:.2f}x; identical ids: {same}")


if __name__ == "__main__":
    main()

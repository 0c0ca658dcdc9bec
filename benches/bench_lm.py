"""Training throughput and MFU of the reference 17M config (SPEC section 5): our TransformerLM +
AdamW + cross_entropy + clip_gradients against a baseline written here with torch.nn layers,
F.scaled_dot_product_attention, F.cross_entropy and torch.optim.AdamW (fused on CUDA, foreach on
CPU). Same config, same batches, same device, one process; the two alternate in blocks of steps so
drifting clocks or neighbours hit both alike. Prints medians, the spread (min-max over steps) and
the ratio of tokens/s.

    python benches/bench_lm.py --threads 1,2                         # CPU: batch 4, 1 and 2 threads
    python benches/bench_lm.py --config configs/cpu-tiny.toml --threads 1,2
    python benches/bench_lm.py --device cuda --tokens .carry/webtext10k/tokens.bin   # bf16 autocast + compile
    python benches/bench_lm.py --memory --batch-size 128               # peak memory, one process each

A step is forward, loss, backward, gradient clipping at 1.0, the optimizer step and zero_grad.
MFU (lm336.throughput) = tokens/s x training FLOPs per token / peak FLOP/s; FLOPs per token from
lm336.accounting.flops_per_token (matmul FLOPs, 3x forward, full (non-causal) attention scores, as
PaLM counts them). Peak: --peak-tflops, else the GPU's datasheet dense bf16 rate, else on the CPU
the float32 matmul rate measured here (so CPU MFU reads "share of this machine's matmul speed").

--memory runs each contender (ours with model.attention = flash, ours with the reference attention,
the baseline) alone in a fresh process for --memory-steps steps and reports its peak memory: the
process's peak RSS on the CPU, torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
try:
    import lm336  # noqa: F401  (an installed wheel, when there is one)
except ImportError:
    sys.path.insert(0, str(ROOT / "python"))  # run from a checkout without installing

from lm336.accounting import flops_per_token  # noqa: E402
from lm336.config import ModelConfig, load_config  # noqa: E402
from lm336.model import TransformerLM  # noqa: E402
from lm336.optim import AdamW, clip_gradients, cross_entropy  # noqa: E402
from lm336.throughput import mfu, peak_flops, peak_memory_bytes  # noqa: E402

# --- the baseline -------------------------------------------------------------------------------


class RotaryTable(nn.Module):
    """cos/sin for adjacent-pair RoPE, applied as x*cos + rotate(x)*sin (the usual fast form)."""

    def __init__(self, d_k: int, max_len: int, theta: float):
        super().__init__()
        inv = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
        ang = torch.arange(max_len, dtype=torch.float64)[:, None] * inv  # (T, d_k/2)
        self.register_buffer("cos", ang.cos().repeat_interleave(2, -1).float(), persistent=False)  # (T, d_k)
        self.register_buffer("sin", ang.sin().repeat_interleave(2, -1).float(), persistent=False)

    def forward(self, x):  # (B, H, T, d_k)
        t = x.shape[-2]
        x_pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-x_pairs[..., 1], x_pairs[..., 0]), -1).flatten(-2)  # (-x1, x0) per pair
        return x * self.cos[:t].to(x.dtype) + rotated * self.sin[:t].to(x.dtype)


class BaselineBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rope: RotaryTable):
        super().__init__()
        d = cfg.d_model
        self.h, self.rope = cfg.num_heads, rope
        self.qkv = nn.Linear(d, 3 * d, bias=False)  # fused QKV, as a tuned torch.nn model would
        self.out = nn.Linear(d, d, bias=False)
        self.w1 = nn.Linear(d, cfg.d_ff, bias=False)
        self.w3 = nn.Linear(d, cfg.d_ff, bias=False)
        self.w2 = nn.Linear(cfg.d_ff, d, bias=False)
        self.ln1 = nn.RMSNorm(d, eps=cfg.eps)
        self.ln2 = nn.RMSNorm(d, eps=cfg.eps)

    def forward(self, x):  # (B, T, d)
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        x = x + self.out(o.transpose(1, 2).reshape(b, t, d))
        f = self.ln2(x)
        return x + self.w2(F.silu(self.w1(f)) * self.w3(f))


class BaselineLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        rope = RotaryTable(cfg.d_model // cfg.num_heads, cfg.context_length, cfg.rope_theta)
        self.layers = nn.ModuleList(BaselineBlock(cfg, rope) for _ in range(cfg.num_layers))
        self.ln_f = nn.RMSNorm(cfg.d_model, eps=cfg.eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, ids):
        x = self.emb(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x))


# --- timing -------------------------------------------------------------------------------------


def make_step(model, optimizer, loss_fn, clip_fn, amp, compiled):
    fwd = torch.compile(model) if compiled else model

    def step(x, y):
        with amp():
            logits = fwd(x)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        clip_fn(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def ours(cfg: ModelConfig, device, amp, compiled):
    model = TransformerLM.from_config(cfg, device=device)
    opt = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)  # multi-tensor update
    return make_step(model, opt, cross_entropy, clip_gradients, amp, compiled), model


def baseline(cfg: ModelConfig, device, amp, compiled):
    model = BaselineLM(cfg).to(device)
    kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, **kind)

    def loss_fn(logits, y):
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def clip(params, max_norm):
        return nn.utils.clip_grad_norm_(params, max_norm, foreach=True)

    return make_step(model, opt, loss_fn, clip, amp, compiled), model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_batches(cfg: ModelConfig, batch: int, device, tokens_path: str | None, n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (inputs, targets) batches: windows of a token array (uint16 .bin or .npy) when given, else
    random ids; the same ones for every contender."""
    gen = torch.Generator().manual_seed(0)
    if tokens_path:
        import numpy as np

        path = Path(tokens_path)
        if not path.is_file():
            raise SystemExit(f"bench_lm: error: token file {path} not found")
        arr = np.load(path, mmap_mode="r") if path.suffix == ".npy" else np.memmap(path, dtype=np.uint16, mode="r")
        if len(arr) <= cfg.context_length + 1 or int(arr[: 1 << 20].max()) >= cfg.vocab_size:
            raise SystemExit(f"bench_lm: error: {path} is too short or has ids >= vocab_size {cfg.vocab_size}")
        starts = torch.randint(0, len(arr) - cfg.context_length - 1, (n, batch), generator=gen).numpy()
        windows = [torch.from_numpy(np.stack([arr[s : s + cfg.context_length + 1] for s in row]).astype(np.int64)) for row in starts]
    else:
        windows = [torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1), generator=gen) for _ in range(n)]
    return [(w[:, :-1].to(device), w[:, 1:].to(device)) for w in windows]


def _memory_child(args) -> int:
    """One contender alone: a few steps, then its peak memory as JSON on stdout."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(int(args.threads))
    cfg = load_config(args.config).model
    if args.context_length:
        cfg.context_length = args.context_length
    cuda = device.type == "cuda"
    use_amp = cuda and not args.no_autocast
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
    compiled = cuda and not args.no_compile
    name = args.memory_child
    if name == "torch.nn baseline":
        step, _ = baseline(cfg, device, amp, compiled)
    else:
        cfg.attention = name.split("=")[1]
        step, _ = ours(cfg, device, amp, compiled)
    batches = make_batches(cfg, args.batch_size or 128, device, args.tokens, n=1)
    t = time.perf_counter()
    for _ in range(args.memory_steps):
        step(*batches[0])
    sync(device)
    print(json.dumps({"name": name, "peak_bytes": peak_memory_bytes(device), "s_per_step": (time.perf_counter() - t) / args.memory_steps}))
    return 0


def memory(args) -> int:
    import subprocess

    batch = args.batch_size or 128
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} peak training memory, config {Path(args.config).name}, batch {batch}, "
          f"device {args.device}, threads {args.threads or 'default'}, {args.memory_steps} step(s) per process")  # fmt: skip
    results = {}
    for name in ("lm336 attention=flash", "lm336 attention=reference", "torch.nn baseline"):
        cmd = [sys.executable, __file__, "--memory-child", name, "--config", args.config, "--device", args.device,
               "--batch-size", str(batch), "--memory-steps", str(args.memory_steps)]  # fmt: skip
        for flag, value in (("--threads", args.threads), ("--tokens", args.tokens), ("--context-length", args.context_length)):
            if value:
                cmd += [flag, str(value)]
        cmd += ["--no-compile"] if args.no_compile else []
        cmd += ["--no-autocast"] if args.no_autocast else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench_lm: error: the {name} process failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name] = r
        print(f"{name:<28} peak {r['peak_bytes'] / 2**30:8.2f} GiB   ({r['s_per_step']:.1f} s/step)")
    ratio = results["lm336 attention=flash"]["peak_bytes"] / results["lm336 attention=reference"]["peak_bytes"]
    print(f"ratio flash / reference peak memory: {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"batch_size": batch, "results": results, "ratio_flash_reference": ratio}, indent=2))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "tinystories-17m.toml"), help="model config (TOML/JSON)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=0, help="sequences per step; 0 = 128 on cuda, 4 on cpu (128 with --memory)")
    p.add_argument("--context-length", type=int, default=0, help="tokens per sequence; 0 = the config's")
    p.add_argument("--tokens", default=None, help="draw the batches from this token array (uint16 .bin or .npy); default random ids")
    p.add_argument("--steps", type=int, default=0, help="timed steps per block; 0 = 20 on cuda, 2 on cpu")
    p.add_argument("--blocks", type=int, default=0, help="alternating blocks per contender; 0 = 5 on cuda, 3 on cpu")
    p.add_argument("--warmup", type=int, default=0, help="untimed steps first (compilation); 0 = 10 on cuda, 1 on cpu")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (default: compile on cuda)")
    p.add_argument("--no-autocast", action="store_true", help="float32 everywhere (default: bf16 autocast on cuda)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="device peak in TFLOP/s for MFU; 0 = the GPU's datasheet bf16 rate, or the measured matmul rate on cpu")  # fmt: skip
    p.add_argument("--threads", default="", help="CPU threads, one run per value: e.g. 1,2; empty = torch default")
    p.add_argument("--memory", action="store_true", help="measure peak memory instead (one process per contender)")
    p.add_argument("--memory-steps", type=int, default=1, help="training steps per process with --memory")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.memory_child:
        return _memory_child(args)
    if args.memory:
        return memory(args)
    runs = []
    for threads in [int(t) for t in args.threads.split(",") if t] or [0]:
        runs.append(throughput(args, threads))
    if args.json:
        Path(args.json).write_text(json.dumps(runs if len(runs) > 1 else runs[0], indent=2))
    return 0 if all(math.isfinite(r["ratio"]) for r in runs) else 1


def throughput(args, threads: int) -> dict:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(args.config).model
    if args.context_length:
        cfg.context_length = args.context_length
    batch = args.batch_size or (128 if cuda else 4)
    steps = args.steps or (20 if cuda else 2)
    blocks = args.blocks or (5 if cuda else 3)
    warmup = args.warmup or (10 if cuda else 1)
    compiled = cuda and not args.no_compile
    use_amp = cuda and not args.no_autocast
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()

    peak, peak_source = peak_flops(device, args.peak_tflops * 1e12)
    fpt = flops_per_token(cfg, training=True)
    torch.manual_seed(0)
    batches = make_batches(cfg, batch, device, args.tokens)

    contenders = {"lm336": ours(cfg, device, amp, compiled), "torch.nn baseline": baseline(cfg, device, amp, compiled)}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, (_, m) in contenders.items()}
    for step, _ in contenders.values():  # warm-up, compilation included
        for i in range(warmup):
            step(*batches[i % len(batches)])
        sync(device)
    times = {k: [] for k in contenders}
    peak_mem = dict.fromkeys(contenders, 0)
    for _ in range(blocks):
        for name, (step, _) in contenders.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            for i in range(steps):
                sync(device)
                t = time.perf_counter()
                step(*batches[i % len(batches)])
                sync(device)
                times[name].append(time.perf_counter() - t)
            if cuda:
                peak_mem[name] = max(peak_mem[name], peak_memory_bytes(device))

    tokens = batch * cfg.context_length
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} device={device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''} threads={torch.get_num_threads()} "
          f"torch={torch.__version__} compile={compiled} autocast={'bf16' if use_amp else 'off'} "
          f"attention={cfg.attention} batches={'file ' + Path(args.tokens).name if args.tokens else 'random ids'}")  # fmt: skip
    print(f"# model {Path(args.config).name}: vocab {cfg.vocab_size}, context {cfg.context_length}, d_model {cfg.d_model}, "
          f"{cfg.num_layers} layers, {cfg.num_heads} heads, d_ff {cfg.d_ff}; params {n_params['lm336']:,} "
          f"(baseline {n_params['torch.nn baseline']:,}); batch {batch} x {cfg.context_length} = {tokens:,} tokens/step")  # fmt: skip
    print(f"# {fpt / 1e6:.1f} MFLOP per token (training); peak {peak / 1e12:.2f} TFLOP/s ({peak_source}); "
          f"{blocks} blocks x {steps} steps each, medians (min-max)")  # fmt: skip
    results = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        tok_s = tokens / med
        results[name] = {"ms_per_step": med * 1e3, "ms_min": min(ts) * 1e3, "ms_max": max(ts) * 1e3, "tokens_per_s": tok_s,
                         "mfu": mfu(tok_s, fpt, peak), "peak_memory_bytes": peak_mem[name] or None}  # fmt: skip
        memory_note = f"  peak mem {peak_mem[name] / 2**30:6.2f} GiB" if peak_mem[name] else ""
        print(f"{name:<18} {med * 1e3:10.1f} ms/step ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})  {tok_s:12,.0f} tokens/s  "
              f"MFU {100 * results[name]['mfu']:6.2f}%{memory_note}")  # fmt: skip
    ratio = results["lm336"]["tokens_per_s"] / results["torch.nn baseline"]["tokens_per_s"]
    print(f"ratio lm336 / baseline tokens/s: {ratio:.3f}")
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "threads": torch.get_num_threads(), "config": Path(args.config).name, "batch_size": batch,
            "context_length": cfg.context_length, "compile": compiled, "autocast": use_amp, "peak_flops": peak,
            "peak_source": peak_source, "flops_per_token": fpt, "results": results, "ratio": ratio}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""Timing of lm336 components against their torch peers, same shapes, same process.

    python benches/bench_lm_components.py --threads 1,2                 # CPU, every line, 1 then 2 threads
    python benches/bench_lm_components.py --only attention --threads 1,2
    python benches/bench_lm_components.py --device cuda --only attention   # bf16 kernels vs F.sdpa's flash backend

Each line times ours and the peer alternately (so load changes on a shared machine hit both alike)
and prints the medians in ms with their spread (min-max), and the ratio ours / peer (below 1 = ours
faster):
1. the attention kernel alone, forward + backward, causal, from given q, k, v: lm336.flash_attention
   (on CUDA our Triton kernels) vs F.scaled_dot_product_attention(is_causal=True) (on CUDA forced to
   its flash backend), at T = 256 (batch 4, 16 heads, d 32: the 17M shape) and T = 1024 (batch 1);
   on CUDA in bfloat16 at batch 32 x 16 heads x T 256 (d 32), 8 x 16 x 1024 (d 64), 4 x 16 x 2048 (d 128)
2. causal multi-head attention fwd+bwd with projections: ours (fused QKV matmul, model.attention =
   auto) vs nn.Linear and F.scaled_dot_product_attention
3. cross-entropy fwd+bwd: ours vs F.cross_entropy
4. one AdamW step over the reference model's parameters: ours (loop / multi-tensor) vs torch.optim.AdamW(foreach)
5. a full training step of the reference TinyStories shape (d_model 512, 4 layers, 16 heads, d_ff 1344):
   ours vs the same model with F.scaled_dot_product_attention as its attention kernel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import lm336.layers as layers
from lm336 import AdamW, MultiHeadSelfAttention, TransformerLM, cross_entropy, flash_attention


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


RESULTS: list[dict] = []


def compare(name, ours, peer, device, repeats, warmup=2, flops=None):
    """Time two callables alternately; print and return their medians (ms)."""
    for _ in range(warmup):
        ours()
        peer()
    sync(device)
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((ours, peer), times):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append((time.perf_counter() - t0) * 1e3)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    rate = f"   ours {flops / a / 1e9:7.1f} TFLOP/s" if flops else ""
    print(f"{name:<52} ours {a:9.3f} ms ({min(times[0]):.2f}-{max(times[0]):.2f})   "
          f"peer {b:9.3f} ms ({min(times[1]):.2f}-{max(times[1]):.2f})   ratio {a / b:5.2f}{rate}")  # fmt: skip
    RESULTS.append({"name": name, "threads": torch.get_num_threads(), "ours_ms": a, "peer_ms": b, "ratio": a / b,
                    "ours_range_ms": [min(times[0]), max(times[0])], "peer_range_ms": [min(times[1]), max(times[1])]})  # fmt: skip
    return a, b


class TorchAttention(nn.Module):
    """The peer: nn.Linear projections and torch's fused attention kernel."""

    def __init__(self, d_model, num_heads, device):
        super().__init__()
        self.h = num_heads
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = (nn.Linear(d_model, d_model, bias=False, device=device) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (p(x).view(b, t, self.h, d // self.h).transpose(1, 2) for p in projections)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(out.transpose(1, 2).reshape(b, t, d))


def torch_sdpa(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attention_kernels(device, repeats):
    """Line 1: the kernels alone on the same q, k, v and output gradient."""
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        shapes, dtype = [(32, 16, 256, 32), (8, 16, 1024, 64), (4, 16, 2048, 128)], torch.bfloat16

        def peer_fn(q, k, v):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        shapes, dtype = [(4, 16, 256, 32), (1, 16, 1024, 32)], torch.float32

        def peer_fn(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    for b, h, t, d in shapes:
        q, k, v = (torch.randn(b, h, t, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        grad = torch.randn(b, h, t, d, device=device, dtype=dtype)

        def step(fn, q=q, k=k, v=v, grad=grad):
            out = fn(q, k, v)
            torch.autograd.grad(out, (q, k, v), grad)

        flops = 3.5 * 2 * 2 * b * h * t * t * d / 2  # causal fwd (2 matmuls) + bwd (5), half the scores
        compare(f"attention kernel fwd+bwd B{b} H{h} T{t} d{d} {str(dtype)[6:]}", lambda: step(flash_attention),
                lambda: step(peer_fn), device, repeats, flops=flops)  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences for lines 2-5 (default 4 on CPU, 32 on CUDA)")
    parser.add_argument("--threads", default="", help="intra-op CPU threads, one pass per value: e.g. 1,2 (default: torch's choice)")
    parser.add_argument("--only", choices=("all", "attention"), default="all", help="attention = line 1 only")
    parser.add_argument("--json", default=None, help="also write every line's figures to this JSON file")
    args = parser.parse_args(argv)
    for threads in [int(t) for t in args.threads.split(",") if t] or [0]:
        if threads:
            torch.set_num_threads(threads)
        run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=2))


def run(args):
    device = torch.device(args.device)
    batch = args.batch_size or (32 if device.type == "cuda" else 4)
    seq, d_model, heads, vocab = 256, 512, 16, 10_000
    torch.manual_seed(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} device={device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} batch={batch} seq={seq}; "
          f"medians of {args.repeats} (min-max), ratio = ours / peer")  # fmt: skip

    # 1. The attention kernels alone.
    attention_kernels(device, args.repeats)
    if args.only == "attention":
        return

    # 2. Attention with projections, forward + backward.
    ours = MultiHeadSelfAttention(d_model, heads, max_seq_len=seq, device=device)
    peer = TorchAttention(d_model, heads, device)
    x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
    compare("attention module fwd+bwd (no RoPE)", lambda: ours(x).sum().backward(), lambda: peer(x).sum().backward(),
            device, args.repeats)  # fmt: skip

    # 3. Cross-entropy, forward + backward.
    logits = torch.randn(batch * seq, vocab, device=device, requires_grad=True)
    targets = torch.randint(0, vocab, (batch * seq,), device=device)
    compare("cross_entropy fwd+bwd", lambda: cross_entropy(logits, targets).backward(),
            lambda: F.cross_entropy(logits, targets).backward(), device, args.repeats)  # fmt: skip

    # 4. AdamW step over the reference model's parameters.
    model = TransformerLM(vocab, seq, d_model, 4, heads, 1344, 10_000.0, device=device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=True)
    for foreach in (False, True):
        opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=foreach)
        name = f"AdamW step ({'multi-tensor' if foreach else 'loop'}) vs torch foreach"
        compare(name, opt.step, torch_opt.step, device, args.repeats)

    # 5. A full training step: ours vs the same model with torch's attention kernel.
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    peer_model = TransformerLM(vocab, seq, d_model, 4, heads, 1344, 10_000.0, attention="reference", device=device)
    peer_model.load_state_dict(model.state_dict())
    opts = {m: AdamW(m.parameters(), lr=1e-4, weight_decay=0.1) for m in (model, peer_model)}

    def train_step(m):
        loss = cross_entropy(m(ids), ids)
        loss.backward()
        opts[m].step()
        opts[m].zero_grad(set_to_none=True)

    ours_sdpa = layers.scaled_dot_product_attention

    def peer_step():
        layers.scaled_dot_product_attention = torch_sdpa  # the reference path's kernel, swapped
        try:
            train_step(peer_model)
        finally:
            layers.scaled_dot_product_attention = ours_sdpa

    ours_ms, _ = compare("train step (TinyStories shape) vs F.sdpa inside", lambda: train_step(model), peer_step, device, args.repeats)
    print(f"ours: {batch * seq / ours_ms * 1e3:,.0f} tokens/s")


if __name__ == "__main__":
    main()

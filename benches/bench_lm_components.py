"""Timing of lm336 components against their torch peers, same shapes, same process.

    PYTHONPATH=python python benches/bench_lm_components.py [--device cuda] [--repeats 10] [--threads 1]

Each line times ours and the peer alternately (so load changes on a shared machine hit both alike)
and prints medians in ms and the ratio ours / peer:
1. causal multi-head attention fwd+bwd: ours (fused QKV matmul, own softmax) vs nn.Linear and
   F.scaled_dot_product_attention
2. cross-entropy fwd+bwd: ours vs F.cross_entropy
3. one AdamW step over the reference model's parameters: ours (loop / multi-tensor) vs torch.optim.AdamW(foreach)
4. a full training step of the reference TinyStories shape (d_model 512, 4 layers, 16 heads, d_ff 1344):
   ours vs the same model with F.scaled_dot_product_attention swapped in for our attention kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import lm336.layers as layers
from lm336 import AdamW, MultiHeadSelfAttention, TransformerLM, cross_entropy


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def compare(name, ours, peer, device, repeats, warmup=2):
    """Time two callables alternately; print and return their medians (ms)."""
    for _ in range(warmup):
        ours()
        peer()
    sync(device)
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((ours, peer), times):
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append((time.perf_counter() - t0) * 1e3)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    print(f"{name:<50} ours {a:9.3f} ms   peer {b:9.3f} ms   ratio {a / b:5.2f}")
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences (default 4 on CPU, 32 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch_size or (32 if device.type == "cuda" else 4)
    seq, d_model, heads, vocab = 256, 512, 16, 10_000
    torch.manual_seed(0)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} batch={batch} seq={seq}")

    # 1. Attention, forward + backward.
    ours = MultiHeadSelfAttention(d_model, heads, max_seq_len=seq, device=device)
    peer = TorchAttention(d_model, heads, device)
    x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
    compare("attention fwd+bwd (no RoPE)", lambda: ours(x).sum().backward(), lambda: peer(x).sum().backward(),
            device, args.repeats)  # fmt: skip

    # 2. Cross-entropy, forward + backward.
    logits = torch.randn(batch * seq, vocab, device=device, requires_grad=True)
    targets = torch.randint(0, vocab, (batch * seq,), device=device)
    compare("cross_entropy fwd+bwd", lambda: cross_entropy(logits, targets).backward(),
            lambda: F.cross_entropy(logits, targets).backward(), device, args.repeats)  # fmt: skip

    # 3. AdamW step over the reference model's parameters.
    model = TransformerLM(vocab, seq, d_model, 4, heads, 1344, 10_000.0, device=device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=True)
    for foreach in (False, True):
        opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=foreach)
        name = f"AdamW step ({'multi-tensor' if foreach else 'loop'}) vs torch foreach"
        compare(name, opt.step, torch_opt.step, device, args.repeats)

    # 4. A full training step: ours vs ours with torch's attention kernel swapped in.
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def train_step():
        loss = cross_entropy(model(ids), ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ours_sdpa = layers.scaled_dot_product_attention

    def peer_step():
        layers.scaled_dot_product_attention = torch_sdpa
        try:
            train_step()
        finally:
            layers.scaled_dot_product_attention = ours_sdpa

    ours_ms, _ = compare("train step (TinyStories shape) vs F.sdpa inside", train_step, peer_step, device, args.repeats)
    print(f"ours: {batch * seq / ours_ms * 1e3:,.0f} tokens/s")


if __name__ == "__main__":
    main()

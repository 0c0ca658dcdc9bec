"""Timing of lm336 components against their torch peers, same shapes, same process.

    PYTHONPATH=python python benches/bench_lm_components.py [--device cuda] [--repeats 20]

Compares, as forward + backward (medians in ms, ratio ours / peer):
1. causal multi-head attention: ours (fused QKV matmul, own softmax) vs nn.Linear + F.scaled_dot_product_attention
2. cross-entropy: ours vs F.cross_entropy
3. one AdamW step over the reference model's parameters: ours (loop / multi-tensor) vs torch.optim.AdamW
4. a full training step of the reference TinyStories shape (d_model 512, 4 layers, 16 heads, d_ff 1344)
   for ours vs the same model with F.scaled_dot_product_attention swapped in.
Prints the thread count and device; on CPU use small batches (2 shared cores here).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from lm336 import AdamW, MultiHeadSelfAttention, TransformerLM, cross_entropy


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, device, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def report(name, ours, peer):
    print(f"{name:<48} ours {ours:9.3f} ms   peer {peer:9.3f} ms   ratio {ours / peer:5.2f}")


class TorchAttention(nn.Module):
    """The peer: nn.Linear projections and torch's fused attention kernel."""

    def __init__(self, d_model, num_heads, device):
        super().__init__()
        self.h = num_heads
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = (
            nn.Linear(d_model, d_model, bias=False, device=device) for _ in range(4)
        )

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.h, d // self.h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(out.transpose(1, 2).reshape(b, t, d))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 on CPU, 32 on CUDA")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    batch = args.batch_size or (32 if device.type == "cuda" else 4)
    seq, d_model, heads, vocab = 256, 512, 16, 10_000
    torch.manual_seed(0)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} batch={batch} seq={seq}")

    # 1. Attention, forward + backward.
    ours = MultiHeadSelfAttention(d_model, heads, theta=None, max_seq_len=seq, device=device)
    peer = TorchAttention(d_model, heads, device)
    x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
    report(
        "attention fwd+bwd (no RoPE)",
        median_ms(lambda: ours(x).sum().backward(), device, args.repeats),
        median_ms(lambda: peer(x).sum().backward(), device, args.repeats),
    )

    # 2. Cross-entropy, forward + backward.
    logits = torch.randn(batch * seq, vocab, device=device, requires_grad=True)
    targets = torch.randint(0, vocab, (batch * seq,), device=device)
    report(
        "cross_entropy fwd+bwd",
        median_ms(lambda: cross_entropy(logits, targets).backward(), device, args.repeats),
        median_ms(lambda: F.cross_entropy(logits, targets).backward(), device, args.repeats),
    )

    # 3. AdamW step over the reference model's parameters.
    model = TransformerLM(vocab, seq, d_model, 4, heads, 1344, 10_000.0, device=device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=True)
    torch_step = median_ms(torch_opt.step, device, args.repeats)
    for foreach in (False, True):
        opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=foreach)
        report(f"AdamW step ({'multi-tensor' if foreach else 'loop'}) vs torch foreach", median_ms(opt.step, device, args.repeats), torch_step)

    # 4. A full training step: ours vs ours with torch's attention kernel.
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def train_step():
        loss = cross_entropy(model(ids), ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ours_ms = median_ms(train_step, device, args.repeats)
    import lm336.layers as layers

    original = layers.scaled_dot_product_attention
    layers.scaled_dot_product_attention = lambda q, k, v, mask=None: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    try:
        peer_ms = median_ms(train_step, device, args.repeats)
    finally:
        layers.scaled_dot_product_attention = original
    report("train step (TinyStories shape) vs F.sdpa inside", ours_ms, peer_ms)
    print(f"ours: {batch * seq / ours_ms * 1e3:,.0f} tokens/s")


if __name__ == "__main__":
    main()

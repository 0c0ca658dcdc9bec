"""Independent references for the lm336 tests, built from torch.nn layers and
torch.nn.functional (the package itself may use neither).

Not a test module; the test files import it (pytest puts their folder on sys.path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

F64 = torch.float64


def rope_complex(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE as complex multiplication: pair k of each vector is the complex number x[2k] + i x[2k+1],
    multiplied by exp(i * pos * theta^(-2k/d)). Float64 throughout."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=F64) / d)
    angles = positions[..., None].to(F64) * freqs
    z = torch.view_as_complex(x.to(F64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)


class RefAttention(nn.Module):
    def __init__(self, d, h, theta):
        super().__init__()
        self.h, self.theta = h, theta
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x, positions):
        b, t, d = x.shape

        def heads(y):
            return y.view(b, t, self.h, d // self.h).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if self.theta is not None:
            q, k = rope_complex(q, positions[:, None], self.theta), rope_complex(k, positions[:, None], self.theta)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(out.transpose(1, 2).reshape(b, t, d))


class RefFFN(nn.Module):
    def __init__(self, d, d_ff, gated):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)
        self.w3 = nn.Linear(d, d_ff, bias=False) if gated else None

    def forward(self, x):
        up = F.silu(self.w1(x))
        return self.w2(up * self.w3(x) if self.w3 is not None else up)


class RefBlock(nn.Module):
    def __init__(self, d, h, d_ff, theta, norm, gated):
        super().__init__()
        self.norm = norm
        self.attn, self.ffn = RefAttention(d, h, theta), RefFFN(d, d_ff, gated)
        if norm != "none":
            self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)

    def forward(self, x, positions):
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), positions)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, positions))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, positions)
        return x + self.ffn(x)


class RefLM(nn.Module):
    def __init__(self, vocab_size, d_model, num_layers, num_heads, d_ff, theta, norm="pre", gated=True):
        super().__init__()
        self.token_embeddings = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(RefBlock(d_model, num_heads, d_ff, theta, norm, gated) for _ in range(num_layers))
        self.ln_final = nn.RMSNorm(d_model, eps=1e-5) if norm != "none" else None
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids, positions=None):
        if positions is None:
            positions = torch.arange(ids.shape[1]).expand(ids.shape)
        x = self.token_embeddings(ids)
        for layer in self.layers:
            x = layer(x, positions)
        if self.ln_final is not None:
            x = self.ln_final(x)
        return self.lm_head(x)


def reference_attention(x, wq, wk, wv, wo, num_heads, theta=None, positions=None):
    """Causal MHA with F.linear, complex RoPE and torch's fused attention."""
    *lead, seq, d = x.shape
    d_k = d // num_heads

    def heads(t):
        return t.view(*lead, seq, num_heads, d_k).transpose(-2, -3)  # (..., heads, seq, d_k)

    q, k, v = heads(F.linear(x, wq)), heads(F.linear(x, wk)), heads(F.linear(x, wv))
    if theta is not None:
        pos = torch.arange(seq) if positions is None else positions
        q, k = rope_complex(q, pos.unsqueeze(-2), theta), rope_complex(k, pos.unsqueeze(-2), theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(-2, -3).reshape(*lead, seq, d), wo)

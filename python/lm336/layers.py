"""Transformer building blocks written from first principles: no `torch.nn.functional`, no `torch.nn`
layers; only `Parameter` and the `Module` containers.

Notable choices:
- `Linear` has no bias; weights are (out, in) and initialised with a truncated normal
  (std sqrt(2 / (in + out)), cut at 3 std); `Embedding` uses std 1 cut at 3.
- `RMSNorm` computes in (at least) float32 and returns the input dtype, so bf16 activations are safe.
- `softmax` subtracts the row max; a row that is entirely -inf gives all zeros (a distribution over
  nothing) instead of NaN, so fully masked attention rows output zeros, as PyTorch's fused
  attention does. Causal attention never produces such rows.
- `MultiHeadSelfAttention` projects q, k and v with ONE matmul against the concatenation of the
  three weights (`q_proj`, `k_proj`, `v_proj` stay separate parameters, so the state-dict names are
  the standard ones), and masks with a slice of a cached boolean lower-triangular buffer.
- Variants (post-norm, no norm, NoPE, SiLU feed-forward) are constructor options of the same classes.

    block = TransformerBlock(d_model=512, num_heads=16, d_ff=1344, rope=RotaryPositionalEmbedding(1e4, 32, 256))
    y = block(torch.randn(8, 256, 512))  # (batch, seq, d_model)
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import Module, Parameter

if TYPE_CHECKING:
    from .model import KVCache

from .attention import IMPLEMENTATIONS, attend
from .attention import choose as choose_attention
from .config import FFNS, NORMS, POSITIONS, default_d_ff  # noqa: F401  (default_d_ff re-exported)


def _trunc_normal_(weight: Tensor, std: float) -> Tensor:
    """Fill `weight` in place from N(0, std^2) truncated to [-3 std, 3 std].

    Inverse-CDF sampling: u uniform on [Phi(-3), Phi(3)], x = std * Phi^-1(u), where
    Phi^-1(u) = sqrt(2) erfinv(2u - 1). Sampled in float32 (or better) so bf16 weights get exact tails.
    """
    edge = math.erf(3.0 / math.sqrt(2.0))  # 2 Phi(3) - 1
    with torch.no_grad():
        sample = torch.empty_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32))
        sample.uniform_(-edge, edge).erfinv_().mul_(std * math.sqrt(2.0))
        sample.clamp_(-3.0 * std, 3.0 * std)  # erfinv rounding may land a hair outside
        return weight.copy_(sample)


class Linear(Module):
    """y = x W^T without bias. `weight` is (out_features, in_features).

    `decode_weight_t`, set only inside `decode_layout`, is a contiguous copy of W^T used when no
    gradient is needed (see decode_layout).
    """

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.decode_weight_t: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _trunc_normal_(self.weight, math.sqrt(2.0 / (self.in_features + self.out_features)))

    def forward(self, x: Tensor) -> Tensor:
        if self.decode_weight_t is not None and not torch.is_grad_enabled():
            return x @ self.decode_weight_t  # (..., in) -> (..., out)
        return x @ self.weight.t()  # (..., in) -> (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@contextlib.contextmanager
def decode_layout(model: Module):
    """While inside, the CPU projections of `model` multiply gradient-free inputs by contiguous
    copies of W^T instead of the transposed views of W, fused where one input feeds several: one
    (d_model, 3 d_model) matrix for each attention's q, k and v, one (d_model, 2 d_ff) for each
    SwiGLU's w1 and w3.

    Why: one token at a time, a projection is a matrix-vector product that streams the whole weight
    from memory, and on the CPU the BLAS reads a (in, out) contiguous matrix about twice as fast as
    the transposed view of an (out, in) one; fusing saves calls (benches/bench_generate.py). Costs
    one extra copy of the projection weights while inside (built once on entry, dropped on exit);
    the weights must not change meanwhile.

        with torch.no_grad(), decode_layout(model):
            logits = model(ids)
    """
    fused: list[tuple[Module, str, list[Linear]]] = []
    for m in model.modules():
        if isinstance(m, MultiHeadSelfAttention) and m.q_proj.weight.device.type == "cpu":
            fused.append((m, "decode_qkv_t", [m.q_proj, m.k_proj, m.v_proj]))
        elif isinstance(m, SwiGLU) and m.w1.weight.device.type == "cpu":
            fused.append((m, "decode_w13_t", [m.w1, m.w3]))
    inside = {id(lin) for _, _, lins in fused for lin in lins}
    linears = [m for m in model.modules() if isinstance(m, Linear) and m.weight.device.type == "cpu" and id(m) not in inside]
    try:
        for m, name, lins in fused:
            setattr(m, name, torch.cat([lin.weight.detach() for lin in lins]).t().contiguous())
        for m in linears:
            m.decode_weight_t = m.weight.detach().t().contiguous()
        yield model
    finally:
        for m, name, _ in fused:
            setattr(m, name, None)
        for m in linears:
            m.decode_weight_t = None


class Embedding(Module):
    """Token id -> vector lookup. `weight` is (num_embeddings, embedding_dim).

    NOTE: ids are gathered with `index_select`, which rejects negative ids (plain advanced indexing
    would silently wrap them around).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _trunc_normal_(self.weight, 1.0)

    def forward(self, token_ids: Tensor) -> Tensor:
        flat = self.weight.index_select(0, token_ids.reshape(-1))  # (n, d_model)
        return flat.view(*token_ids.shape, self.embedding_dim)  # (..., d_model)

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension.

    Computed in float32 (float64 stays float64) and cast back to the input dtype.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.weight = Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        in_dtype = x.dtype
        x = x.to(torch.promote_types(in_dtype, torch.float32))  # (..., d_model)
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (x * inv_rms * self.weight).to(in_dtype)  # (..., d_model)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def swiglu_gate(a: Tensor, b: Tensor) -> Tensor:
    """silu(a) * b, with the gradient written out so autograd keeps only a and b (not sigmoid(a),
    silu(a) beside them): d/da = b s (1 + a (1 - s)), d/db = silu(a), where s = sigmoid(a).

    On the CPU both directions run over a few rows at a time (GATE_CHUNK elements), so the several
    elementwise passes each reads its operands from cache (2x faster than whole-tensor passes,
    measured at the 17M shape).
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _SwiGLUGate.apply(a, b)
    return _gate_forward(a, b)  # no autograd node (generation, evaluation)


GATE_CHUNK = 1 << 17  # elements per row chunk of the CPU gate (about 0.5 MiB per float32 operand)


def _row_chunks(x: Tensor):
    """Slices of the rows of x viewed as (rows, last dim): GATE_CHUNK elements each on the CPU
    (outside torch.compile), else one slice of everything."""
    rows = x.numel() // max(1, x.shape[-1])
    step = max(1, GATE_CHUNK // max(1, x.shape[-1])) if x.device.type == "cpu" and not torch.compiler.is_compiling() else max(1, rows)
    return [slice(r0, r0 + step) for r0 in range(0, rows, step)]


def _gate_forward(a: Tensor, b: Tensor) -> Tensor:
    if a.numel() <= GATE_CHUNK:
        return torch.sigmoid(a).mul_(a).mul_(b)  # silu(a) * b
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    out = torch.empty(a2.shape, dtype=torch.promote_types(a.dtype, b.dtype), device=a.device)
    for rows in _row_chunks(a):
        torch.sigmoid(a2[rows], out=out[rows]).mul_(a2[rows]).mul_(b2[rows])  # silu(a) * b
    return out.view(a.shape)


class _SwiGLUGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        return _gate_forward(a, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: plain differentiable operations
            return grad * b * torch.sigmoid(a) * (1 + a * (1 - torch.sigmoid(a))), grad * silu(a)
        a2, b2, g2 = (t.reshape(-1, t.shape[-1]) for t in (a, b, grad))
        grad_a, grad_b = torch.empty_like(a2), torch.empty_like(b2)
        for rows in _row_chunks(a):
            ar = a2[rows]
            s = torch.sigmoid(ar)
            torch.mul(g2[rows], torch.mul(ar, s), out=grad_b[rows])  # g silu(a)
            ds = torch.addcmul(s, s, s, value=-1.0)  # s (1 - s)
            torch.addcmul(s, ar, ds, out=ds)  # s + a s (1 - s) = d silu / da
            torch.mul(ds, g2[rows], out=grad_a[rows]).mul_(b2[rows])  # g b d silu / da
        return grad_a.view(a.shape), grad_b.view(b.shape)


class SwiGLU(Module):
    """out = w2(silu(w1 x) * w3 x); w1, w3: (d_ff, d_model), w2: (d_model, d_ff)."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = default_d_ff(d_model, "swiglu") if d_ff is None else d_ff
        self.d_model, self.d_ff = d_model, d_ff
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.decode_w13_t: Tensor | None = None  # [W1; W3]^T, only inside decode_layout

    def forward(self, x: Tensor) -> Tensor:
        if self.decode_w13_t is not None and not torch.is_grad_enabled():
            a, b = (x @ self.decode_w13_t).split(self.d_ff, dim=-1)  # (..., d_ff) each
            return self.w2(swiglu_gate(a, b))
        return self.w2(swiglu_gate(self.w1(x), self.w3(x)))  # (..., d_model)


class SiLUFeedForward(Module):
    """out = w2(silu(w1 x)); w1: (d_ff, d_model), w2: (d_model, d_ff); d_ff defaults to 4 d_model."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = default_d_ff(d_model, "silu") if d_ff is None else d_ff
        self.d_model, self.d_ff = d_model, d_ff
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)))  # (..., d_model)


class RotaryPositionalEmbedding(Module):
    """Rotary position embedding: rotates each adjacent pair (x[2k], x[2k+1]) by the angle
    pos * theta^(-2k / d_k).

    cos/sin for positions 0..max_seq_len-1 are cached in non-persistent buffers (not in the state
    dict), kept in float32 (float64 when the module is cast to float64).
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None, dtype=None):
        super().__init__()
        if d_k % 2 != 0:
            raise ValueError(f"RoPE needs an even head dimension d_k, got d_k={d_k}")
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.theta, self.d_k, self.max_seq_len = float(theta), d_k, max_seq_len
        cos, sin = self._tables(device, torch.float64 if dtype == torch.float64 else torch.float32)
        self.register_buffer("cos", cos, persistent=False)  # (max_seq_len, d_k/2)
        self.register_buffer("sin", sin, persistent=False)  # (max_seq_len, d_k/2)
        self._table_dtype = cos.dtype

    def _tables(self, device, dtype) -> tuple[Tensor, Tensor]:
        """cos and sin of pos * theta^(-2k/d_k), computed in float64 and rounded once to `dtype`."""
        k = torch.arange(0, self.d_k, 2, device=device, dtype=torch.float64)  # (d_k/2,)
        inv_freq = self.theta ** (-k / self.d_k)  # (d_k/2,)
        pos = torch.arange(self.max_seq_len, device=device, dtype=torch.float64)  # (max_seq_len,)
        angles = pos[:, None] * inv_freq  # (max_seq_len, d_k/2)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, x: Tensor, token_positions: Tensor | None = None, start: int = 0) -> Tensor:
        """Args:
            x: (..., seq, d_k).
            token_positions: (..., seq) integer positions in [0, max_seq_len); broadcast against
                x's leading dims (e.g. (batch, 1, seq) positions for (batch, heads, seq, d_k) x).
                None means the consecutive positions start..start+seq-1 (a slice of the tables,
                no gather).
        Returns:
            x rotated, same shape and dtype.
        """
        if x.shape[-1] != self.d_k:
            raise ValueError(f"RoPE was built for d_k={self.d_k}, got input with last dim {x.shape[-1]}")
        if token_positions is None:
            seq = x.shape[-2]
            if start < 0 or start + seq > self.max_seq_len:
                raise ValueError(f"token positions must lie in [0, {self.max_seq_len}), got range [{start}, {start + seq - 1}]")
            rows = slice(start, start + seq)
        else:
            if token_positions.device.type == "cpu" and token_positions.numel() and not torch.compiler.is_compiling():
                # A cheap check on CPU; on accelerators an out-of-range index trips a device-side assert.
                lo, hi = int(token_positions.min()), int(token_positions.max())
                if lo < 0 or hi >= self.max_seq_len:
                    raise ValueError(f"token positions must lie in [0, {self.max_seq_len}), got range [{lo}, {hi}]")
            rows = token_positions
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not torch.compiler.is_compiling():
            pairs = x.unflatten(-1, (-1, 2))  # (..., seq, d_k/2, 2)
            if pairs.storage_offset() % 2 == 0 and pairs.stride(-1) == 1 and all(st % 2 == 0 for st in pairs.stride()[:-1]):
                # Each pair as one complex number times exp(i angle): a single vectorised multiply on
                # the CPU (the strided even/odd arithmetic below is about 30x slower there).
                rotated = torch.view_as_complex(pairs) * self._complex_table(x.dtype)[rows]  # (..., seq, d_k/2)
                return torch.view_as_real(rotated).flatten(-2)  # (..., seq, d_k)
        cos = self.cos[rows].to(x.dtype)  # (..., seq, d_k/2)
        sin = self.sin[rows].to(x.dtype)
        x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., seq, d_k/2) each
        out_even = x_even * cos - x_odd * sin
        out_odd = x_even * sin + x_odd * cos
        return torch.stack((out_even, out_odd), dim=-1).flatten(-2)  # (..., seq, d_k)

    def _complex_table(self, dtype: torch.dtype) -> Tensor:
        """cos + i sin as one (max_seq_len, d_k/2) complex table, built on first use and again
        whenever the real tables are replaced (a move or cast) or another dtype is asked for."""
        key = (dtype, self.cos.data_ptr(), self.cos.device)
        if getattr(self, "_complex_key", None) != key:
            self._complex = torch.complex(self.cos.to(dtype), self.sin.to(dtype))
            self._complex_key = key
        return self._complex

    def _apply(self, fn, recurse=True):
        # Casting a model must not degrade the tables: bf16/fp16 lack the mantissa for positions
        # in the thousands (keep float32), and float64 gets exact tables rather than upcast float32.
        out = super()._apply(fn, recurse)
        dtype = self.cos.dtype
        if dtype not in (torch.float32, torch.float64) or (dtype == torch.float64 and self._table_dtype != dtype):
            table_dtype = torch.float64 if dtype == torch.float64 else torch.float32
            self.cos, self.sin = self._tables(self.cos.device, table_dtype)
        self._table_dtype = self.cos.dtype
        return out

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"


def softmax(x: Tensor, dim: int) -> Tensor:
    """Numerically stable softmax: exp(x - max) / sum(exp(x - max)) along `dim`.

    NOTE: a slice that is entirely -inf returns all zeros (torch.softmax returns NaN there).
    The gradient is written out, p * (g - sum(g * p)), so autograd keeps only the output p (one
    tensor per attention layer instead of the exponentials, sums and quotients).
    Example: softmax(tensor([1000., 1000.]), 0) -> [0.5, 0.5].
    """
    return _Softmax.apply(x, dim)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        ctx.dim = dim
        if x.shape[dim] == 0:  # nothing to normalise (amax has no identity for an empty dim)
            p = x.new_empty(x.shape)
            ctx.save_for_backward(p)
            return p
        x_max = x.amax(dim=dim, keepdim=True)
        x_max = torch.where(x_max == float("-inf"), 0.0, x_max)  # all -inf: exp() below gives zeros
        e = (x - x_max).exp_()
        total = e.sum(dim=dim, keepdim=True)
        p = e.div_(torch.where(total == 0, 1.0, total))
        ctx.dim = dim
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: out of place, so this backward differentiates
            return p * (grad - (grad * p).sum(dim=ctx.dim, keepdim=True)), None
        dot = (grad * p).sum(dim=ctx.dim, keepdim=True)
        return (grad - dot).mul_(p), None


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d_k), masked) v.

    Args:
        q: (..., queries, d_k); k: (..., keys, d_k); v: (..., keys, d_v).
        mask: boolean, broadcastable to (..., queries, keys); True means "may attend". Masked
            scores become -inf before the softmax; a query that may attend nothing outputs zeros.
    Returns:
        (..., queries, d_v).
    """
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (..., queries, keys)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"attention mask must be boolean (True = may attend), got {mask.dtype}")
        scores = torch.where(mask, scores, float("-inf"))
    # Under bf16/fp16 autocast the scores arrive in half precision; normalise them in float32 (as
    # autocast does for torch's softmax), then multiply with v in its own dtype.
    probs = softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1)  # (..., queries, keys)
    return probs.to(v.dtype) @ v  # (..., queries, d_v)


class CausalMask(Module):
    """A cached boolean lower-triangular (max_seq_len, max_seq_len) table; `forward(start, q_len,
    k_len)` returns the (q_len, k_len) view for queries at positions start..start+q_len-1 over keys
    0..k_len-1. Shared by every attention layer of a model."""

    def __init__(self, max_seq_len: int, device=None):
        super().__init__()
        self.max_seq_len = max_seq_len
        tril = torch.ones(max_seq_len, max_seq_len, dtype=torch.bool, device=device).tril()
        self.register_buffer("tril", tril, persistent=False)  # (max_seq_len, max_seq_len)

    def forward(self, start: int, q_len: int, k_len: int) -> Tensor:
        return self.tril[start : start + q_len, :k_len]  # (q_len, k_len)


class MultiHeadSelfAttention(Module):
    """Causal multi-head self-attention with q_proj, k_proj, v_proj, output_proj (no biases).

    The attention itself is `attention.attend`: block-wise (flash) or materialising (reference).

    Args:
        d_model: model width; must be divisible by num_heads (d_k = d_v = d_model / num_heads).
        num_heads: number of heads.
        rope: a shared RotaryPositionalEmbedding for q and k, or None.
        theta, max_seq_len: alternatively build a private RoPE from these (theta=None means no RoPE).
        causal_mask: a shared CausalMask; built from max_seq_len when omitted. Without either,
            the causal mask is built per call.
        attention: "auto" | "reference" | "flash" (see lm336.attention).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        rope: RotaryPositionalEmbedding | None = None,
        theta: float | None = None,
        max_seq_len: int | None = None,
        causal_mask: CausalMask | None = None,
        attention: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if attention not in IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {', '.join(IMPLEMENTATIONS)}; got {attention!r}")
        self.attention = attention
        if num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        if rope is None and theta is not None:
            if max_seq_len is None:
                raise ValueError("building RoPE from theta needs max_seq_len")
            rope = RotaryPositionalEmbedding(theta, self.d_k, max_seq_len, device=device, dtype=dtype)
        if rope is not None and rope.d_k != self.d_k:
            raise ValueError(f"RoPE d_k={rope.d_k} does not match d_model/num_heads={self.d_k}")
        self.rope = rope
        if causal_mask is None:
            max_len = max_seq_len if max_seq_len is not None else (rope.max_seq_len if rope is not None else None)
            causal_mask = CausalMask(max_len, device=device) if max_len is not None else None
        self.causal_mask = causal_mask
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.decode_qkv_t: Tensor | None = None  # [W_q; W_k; W_v]^T, only inside decode_layout

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer_idx: int = 0,
    ) -> Tensor:
        """Args:
            x: (..., seq, d_model).
            token_positions: (..., seq) positions for RoPE; default 0..seq-1 (cache.length + 0..seq-1
                with a cache).
            kv_cache: when given, this layer's new keys/values are appended at cache.length and the
                queries attend over everything cached; the caller (TransformerLM) advances
                cache.length after the last layer.
            layer_idx: which of the cache's layers is this one.
        Returns:
            (..., seq, d_model).
        """
        *lead, seq, _ = x.shape
        start = kv_cache.length if kv_cache is not None else 0
        if self.causal_mask is not None and start + seq > self.causal_mask.max_seq_len:
            raise ValueError(f"sequence of {start + seq} positions exceeds max_seq_len {self.causal_mask.max_seq_len}")
        # 1. Projections. With autograd: one matmul against [W_q; W_k; W_v]. Without (generation,
        # evaluation): against decode_layout's prepared copy, else three matmuls against the weights
        # themselves, so no concatenated copy of them is made per call.
        grad = torch.is_grad_enabled()
        if grad or self.decode_qkv_t is not None:
            if grad:
                w_qkv_t = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight), dim=0).t()  # (d_model, 3 d_model)
            else:
                w_qkv_t = self.decode_qkv_t
            qkv = x @ w_qkv_t  # (..., seq, 3 d_model)
            qkv = qkv.view(*lead, seq, 3, self.num_heads, self.d_k).movedim(-3, -4)  # (..., 3, seq, heads, d_k)
            q, k, v = (t.transpose(-2, -3) for t in qkv.unbind(-4))  # (..., heads, seq, d_k) each
        else:
            q, k, v = (p(x).view(*lead, seq, self.num_heads, self.d_k).transpose(-2, -3)
                       for p in (self.q_proj, self.k_proj, self.v_proj))  # fmt: skip
        # 2. Rotary positions on q and k (default positions: a slice of the tables).
        if self.rope is not None:
            positions = None if token_positions is None else token_positions.unsqueeze(-2)  # (..., 1, seq)
            q = self.rope(q, positions, start)
            k = self.rope(k, positions, start)
        # 3. Keys and values so far.
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v)  # (batch, heads, start + seq, d_k)
        k_len = k.shape[-2]
        # 4. Causal attention: query at cache index start+i sees keys 0..start+i.
        kind = choose_attention(self.attention, q, k)
        if kind != "reference":
            if k.dtype != q.dtype:  # a float32 cache under bf16 autocast
                k, v = k.to(q.dtype), v.to(q.dtype)
            out = attend(q, k, v, kind)  # (..., heads, seq, d_k)
        else:
            if self.causal_mask is not None:
                mask = self.causal_mask(start, seq, k_len)  # (seq, k_len)
            else:
                mask = torch.ones(seq, k_len, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = scaled_dot_product_attention(q, k, v, mask)  # (..., heads, seq, d_k)
        out = out.transpose(-2, -3).reshape(*lead, seq, self.d_model)  # (..., seq, d_model)
        return self.output_proj(out)  # (..., seq, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, attention={self.attention!r}"


class TransformerBlock(Module):
    """One Transformer layer.

    norm="pre":  x = x + attn(ln1(x)); x = x + ffn(ln2(x))
    norm="post": x = ln1(x + attn(x)); x = ln2(x + ffn(x))
    norm="none": x = x + attn(x);      x = x + ffn(x)      (no ln1/ln2 parameters)
    ffn="swiglu" (w1, w2, w3) or "silu" (w1, w2). RoPE when `rope` (or `theta`) is given.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        *,
        norm: str = "pre",
        ffn: str = "swiglu",
        rope: RotaryPositionalEmbedding | None = None,
        theta: float | None = None,
        max_seq_len: int | None = None,
        causal_mask: CausalMask | None = None,
        eps: float = 1e-5,
        attention: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if ffn not in FFNS:
            raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")
        self.norm = norm
        self.attn = MultiHeadSelfAttention(
            d_model, num_heads, rope=rope, theta=theta, max_seq_len=max_seq_len, causal_mask=causal_mask,
            attention=attention, device=device, dtype=dtype,
        )  # fmt: skip
        ffn_cls = SwiGLU if ffn == "swiglu" else SiLUFeedForward
        self.ffn = ffn_cls(d_model, d_ff, device=device, dtype=dtype)
        if norm != "none":
            self.ln1 = RMSNorm(d_model, eps=eps, device=device, dtype=dtype)
            self.ln2 = RMSNorm(d_model, eps=eps, device=device, dtype=dtype)

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer_idx: int = 0,
    ) -> Tensor:
        # x: (..., seq, d_model) -> (..., seq, d_model)
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), token_positions, kv_cache, layer_idx)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, token_positions, kv_cache, layer_idx))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, token_positions, kv_cache, layer_idx)
        return x + self.ffn(x)

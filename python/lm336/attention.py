"""Causal attention computed block by block (FlashAttention-2), without materialising the (T, T)
score matrix, and the choice between it and the materialising reference.

`flash_attention(q, k, v, causal=True)` takes (..., T, d) tensors and returns softmax(q k^T / sqrt(d)) v
with query i seeing keys 0..i. When q has fewer positions than k (decoding with a KV cache), the
queries are the LAST q_len positions: query i sees keys 0..k_len - q_len + i.

The algorithm (Dao, "FlashAttention-2", 2023), the same on every backend:
- forward: for each block of queries, walk the key blocks up to the diagonal (blocks entirely above
  it are skipped: half the work for causal attention) keeping a running row max m, running sum l and
  an unnormalised output (the online softmax); save only q, k, v, the output and the per-row
  log-sum-exp (base 2: m + log2 l);
- backward: D = rowsum(dO * O); block by block recompute P = exp2(S log2(e) - lse) and accumulate
  dV += P^T dO, dS = P * (dO V^T - D), dQ += dS K / sqrt(d), dK += dS^T Q / sqrt(d).
Scores are scaled by log2(e) / sqrt(d) once so the exponentials are exp2 (on the CPU torch's exp2
runs about 4x faster than exp; on the GPU it is the native instruction).

Backends, one `torch.autograd.Function` each:
- `_BlockAttention` (CPU, and any device): torch tensor operations on blocks of queries sized so a
  block's scores stay in cache; intermediates are float32 (float64 stays float64), autocast off.
  The scale rides on the matmul (alpha), the causal mask is an additive -inf on the diagonal
  block only, the row sums come out of the P V matmul (V gets a column of ones), dS out of one
  baddbmm against -D: few passes over the scores, which at d = 32 cost as much as the matmuls.
- `_TritonAttention` (CUDA, in attention_triton.py): our Triton kernels, registered with
  torch.library so torch.compile traces through them.
Each backward gives first derivatives only: differentiating them again (create_graph=True) raises
AttentionError (`first_order_only`); the reference has second derivatives.

`choose(impl, q, k)` and `attend(q, k, v, kind)` are what the model calls; impl is one of
IMPLEMENTATIONS:
- "reference": layers.scaled_dot_product_attention with the causal mask (materialises the scores);
  the test oracle.
- "flash": flash_attention; raises when the device cannot run it (CUDA without Triton, an
  unsupported head size or GPU), never falls back silently.
- "auto": the fastest exact path: on CUDA flash where the kernels run, else the reference; off CUDA
  flash, except that short sequences under autograd take `_MaterialisedAttention` (the whole
  probability matrix in one piece, kept for a lean backward: faster there, and small).

    out = flash_attention(q, k, v)  # (batch, heads, seq, d_k) each -> (batch, heads, seq, d_k)
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import Tensor

IMPLEMENTATIONS = ("auto", "reference", "flash")
LOG2E = math.log2(math.e)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# CPU block sizes: a block of BLOCK_Q queries is scored against every visible key at once when
# there are at most BLOCK_K of them (one exact softmax), else key block by key block with the online
# softmax; heads go HEAD_CHUNK_ELEMENTS x threads // (BLOCK_Q x keys) at a time, so that each
# thread's share of a block's scores (1 MiB in float32) stays in its L2 cache. Measured on a 2-core
# AMD EPYC, 1 and 2 threads, T = 256 and 1024 (benches/bench_lm_components.py): 64 queries, 1024
# keys and 1 MiB beat 32 and 128 queries, 512 keys, 512 KiB and 2-4 MiB by 2-20%. (Cutting the causal
# triangle into levels of large batched squares instead measured no faster.)
BLOCK_Q = 64
BLOCK_K = 1024
HEAD_CHUNK_ELEMENTS = 1 << 18
# Without autograd and with at most this many queries (decoding against a KV cache), the row sums
# come from the probabilities themselves rather than a ones column appended to a copy of V.
DECODE_QUERIES = 16
# "auto" on the CPU keeps the whole probability matrix (no recomputation in the backward) up to this
# many scores per (batch, head): 20-45% faster than the block path up to 64 x 64, even at 128 x 128,
# slower beyond (one thread, benches/bench_lm_components.py shapes).
MATERIALISE_MAX = 64 * 64


class AttentionError(ValueError):
    """Inputs flash_attention cannot take (shapes, dtypes, devices, head size); the message says
    what to change."""


# 1. Input checks ---------------------------------------------------------------------------------


def check_inputs(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> None:
    """Raise AttentionError unless q (..., Tq, d), k (..., Tk, d) and v (..., Tk, d) agree."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise AttentionError(f"flash_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:
            raise AttentionError(f"flash_attention: {name} has layout {t.layout}; pass a dense (strided) tensor")
        if t.dim() < 2:
            raise AttentionError(f"flash_attention: {name} must be (..., seq, head_dim), got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise AttentionError(
                f"flash_attention: {name} has dtype {t.dtype}; use float16, bfloat16, float32 or float64 (e.g. {name}.float())"
            )
    if not (q.dtype == k.dtype == v.dtype):
        raise AttentionError(
            f"flash_attention: q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}; cast them to one (e.g. k.to(q.dtype))"
        )
    if not (q.device == k.device == v.device):
        raise AttentionError(f"flash_attention: q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not (q.dim() == k.dim() == v.dim()) or not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise AttentionError(
            f"flash_attention: q, k and v must have the same leading (batch, head) dims, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}; nothing is broadcast (expand or repeat the smaller one first)"
        )
    if k.shape[-2] != v.shape[-2]:
        raise AttentionError(f"flash_attention: k has {k.shape[-2]} positions but v has {v.shape[-2]}; they must match")
    if not (q.shape[-1] == k.shape[-1] == v.shape[-1]) or q.shape[-1] == 0:
        raise AttentionError(f"flash_attention: q, k and v need one nonzero head dim, got {q.shape[-1]}, {k.shape[-1]}, {v.shape[-1]}")
    if k.shape[-2] == 0 and q.shape[-2] > 0:
        raise AttentionError("flash_attention: no keys (k has 0 positions); every query needs at least one key")
    if causal and q.shape[-2] > k.shape[-2]:
        raise AttentionError(
            f"flash_attention: causal attention with more queries ({q.shape[-2]}) than keys ({k.shape[-2]}); "
            "queries are the last positions of the keys' sequence, so q_len must be <= k_len"
        )


# 2. The CPU (any device) backend -----------------------------------------------------------------


def _flat(t: Tensor) -> Tensor:
    """(..., T, d) -> (N, T, d), a view when the strides allow it."""
    return t.reshape(math.prod(t.shape[:-2]), t.shape[-2], t.shape[-1])  # (not -1: ambiguous when T = 0)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _head_chunk(n: int, block_q: int, keys: int) -> int:
    """Heads per chunk so that one chunk's block of scores holds about HEAD_CHUNK_ELEMENTS floats
    per intra-op thread (each thread takes its share of every operation)."""
    threads = 1 if torch.compiler.is_compiling() else torch.get_num_threads()
    return max(1, min(n, HEAD_CHUNK_ELEMENTS * threads // max(1, block_q * min(keys, BLOCK_K))))


def _hidden_bias(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(n, n): -inf strictly above the diagonal, 0 elsewhere. For queries at positions
    diag..diag+bq-1, `bias[:bq, lo - diag : hi - diag]` hides the keys lo..hi-1 (lo >= diag, hi <=
    diag + bq) that each must not see; added to scores before exp2, it zeroes their probabilities.

    Example: _hidden_bias(2, ...) -> [[0, -inf], [0, 0]].
    """
    return torch.zeros(n, n, device=device, dtype=dtype).masked_fill_(
        torch.ones(n, n, dtype=torch.bool, device=device).triu_(1), float("-inf")
    )


def _block_forward(q: Tensor, k: Tensor, v: Tensor, causal: bool, want_lse: bool) -> tuple[Tensor, Tensor | None]:
    """Online-softmax forward on (N, Tq, d) / (N, Tk, d) tensors of the compute dtype.

    Returns the output (N, Tq, d) and, when asked, lse (N, Tq, 1) = log2 sum_j exp2(s_j) of the
    log2(e)-scaled scores s.
    """
    n, tq, d = q.shape
    tk = k.shape[1]
    out = torch.empty_like(q)
    lse = q.new_empty(n, tq, 1) if want_lse else None
    if tq <= DECODE_QUERIES and not want_lse:
        # Decoding: a handful of queries, their scores summed directly; nothing is copied or
        # allocated in proportion to the cached keys but the scores themselves.
        _forward_heads(q, k, v, causal, out, lse, with_ones=False)
    else:
        # V with a column of ones: P [V | 1] gives the row sums of P with the weighted values, so
        # no separate pass over the probabilities sums them.
        _forward_heads(q, k, torch.cat((v, v.new_ones(n, tk, 1)), dim=-1), causal, out, lse, with_ones=True)
    return out, lse


def _forward_heads(q: Tensor, k: Tensor, v: Tensor, causal: bool, out: Tensor, lse: Tensor | None, with_ones: bool) -> None:
    """_block_forward's loops, written into out and lse. with_ones: v carries a last column of
    ones (so the matmul with P also sums P); else the sums are taken from P."""
    n, tq, d = q.shape
    tk = k.shape[1]
    offset = tk - tq  # query i sits at position offset + i
    c = LOG2E / math.sqrt(d)  # scores come out log2(e)-scaled (the matmul's alpha: no extra pass)
    block_q = max(1, min(BLOCK_Q, tq))
    chunk = _head_chunk(n, block_q, tk)
    bias = _hidden_bias(block_q, q.device, q.dtype) if causal and block_q > 1 else None
    nothing = q.new_zeros(())  # the ignored addend of a beta = 0 baddbmm
    for h0 in range(0, n, chunk):
        h1 = min(n, h0 + chunk)
        for q0 in range(0, tq, block_q):
            q1 = min(tq, q0 + block_q)
            bq = q1 - q0
            diag = offset + q0  # the block's first query position; keys after diag + r are hidden from row r
            kend = diag + bq if causal else tk  # keys from kend on are hidden from the whole block: skipped
            qb = q[h0:h1, q0:q1]  # (h, bq, d)
            m = acc = row_sum = None
            for k0 in range(0, kend, BLOCK_K):
                k1 = min(kend, k0 + BLOCK_K)
                s = torch.baddbmm(nothing, qb, k[h0:h1, k0:k1].transpose(1, 2), beta=0.0, alpha=c)  # (h, bq, k1 - k0)
                if causal and k1 > diag + 1:  # the block reaches the diagonal: hide the keys above it
                    lo = max(k0, diag)
                    s[:, :, lo - k0 :].add_(bias[:bq, lo - diag : k1 - diag])
                m_blk = s.amax(dim=-1, keepdim=True)  # (h, bq, 1)
                if m is None:  # first key block (every row sees key 0, so m is finite)
                    m = m_blk
                    p = s.sub_(m).exp2_()
                    acc = torch.bmm(p, v[h0:h1, k0:k1])  # (h, bq, d [+ 1]): sum_j p_j v_j [| sum_j p_j]
                    row_sum = None if with_ones else p.sum(dim=-1, keepdim=True)
                else:  # online softmax: rescale what was summed under the old max
                    m_new = torch.maximum(m, m_blk)
                    alpha = (m - m_new).exp2_()
                    p = s.sub_(m_new).exp2_()
                    acc = acc.mul_(alpha).baddbmm_(p, v[h0:h1, k0:k1])
                    row_sum = None if with_ones else row_sum.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                    m = m_new
            if with_ones:
                acc, row_sum = acc[:, :, :d], acc[:, :, d:]  # (h, bq, d), (h, bq, 1)
            torch.div(acc, row_sum, out=out[h0:h1, q0:q1])
            if lse is not None:
                torch.add(m, row_sum.log2(), out=lse[h0:h1, q0:q1])


def _block_backward(do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, causal: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of _block_forward (all (N, T, d) in the compute dtype), probabilities recomputed
    block by block from lse."""
    n, tq, d = q.shape
    tk = k.shape[1]
    dq = torch.empty_like(q)
    dk = q.new_zeros(n, tk, d)
    dv = q.new_zeros(n, tk, d)
    _backward_heads(do, q, k, v, out, lse, causal, dq, dk, dv)
    return dq, dk, dv


def _backward_heads(do, q, k, v, out, lse, causal, dq, dk, dv) -> None:
    """_block_backward's loops: writes dq, accumulates into dk and dv (zeros on entry)."""
    n, tq, d = q.shape
    tk = k.shape[1]
    offset = tk - tq
    scale = 1.0 / math.sqrt(d)
    block_q = max(1, min(BLOCK_Q, tq))
    chunk = _head_chunk(n, block_q, tk)
    bias = _hidden_bias(block_q, q.device, q.dtype) if causal else None
    for h0 in range(0, n, chunk):
        h1 = min(n, h0 + chunk)
        for q0 in range(0, tq, block_q):
            q1 = min(tq, q0 + block_q)
            bq = q1 - q0
            diag = offset + q0
            kend = diag + bq if causal else tk
            qb, dob = q[h0:h1, q0:q1], do[h0:h1, q0:q1]  # (h, bq, d)
            neg_delta = (dob * out[h0:h1, q0:q1]).sum(dim=-1, keepdim=True).neg_()  # (h, bq, 1) -rowsum(dO * O) = -sum_j P dP
            neg_lse = lse[h0:h1, q0:q1].neg()
            dq_acc = None
            for k0 in range(0, kend, BLOCK_K):
                k1 = min(kend, k0 + BLOCK_K)
                kb, vb = k[h0:h1, k0:k1], v[h0:h1, k0:k1]
                s = torch.baddbmm(neg_lse, qb, kb.transpose(1, 2), alpha=LOG2E * scale)  # (h, bq, kb): s - lse
                if causal and k1 > diag + 1:
                    lo = max(k0, diag)
                    s[:, :, lo - k0 :].add_(bias[:bq, lo - diag : k1 - diag])
                p = s.exp2_()  # P, the forward's probabilities
                # (A batched matmul then an add: an in-place batched matmul into a slice would run one
                # small matmul per head, each a fork and join of the intra-op threads.)
                dv[h0:h1, k0:k1].add_(torch.bmm(p.transpose(1, 2), dob))  # dV += P^T dO
                ds = torch.baddbmm(neg_delta, dob, vb.transpose(1, 2)).mul_(p)  # dS = P (dO V^T - D)
                dk[h0:h1, k0:k1].add_(torch.bmm(ds.transpose(1, 2), qb), alpha=scale)  # dK += dS^T Q / sqrt(d)
                dq_acc = torch.bmm(ds, kb) if dq_acc is None else dq_acc.baddbmm_(ds, kb)  # dQ += dS K
            torch.mul(dq_acc, scale, out=dq[h0:h1, q0:q1])


class _SecondDerivativeError(torch.autograd.Function):
    """Passes first-order gradients through (the first `count` arguments), attached to what they
    depend on (the rest); differentiating them again raises AttentionError."""

    @staticmethod
    def forward(ctx, count: int, *tensors: Tensor) -> tuple[Tensor, ...]:
        return tuple(g.clone() for g in tensors[:count])

    @staticmethod
    def backward(ctx, *_):
        raise AttentionError(
            "flash_attention has no second derivative (a double backward, e.g. autograd.grad(..., create_graph=True) "
            "differentiated again through attention); use model.attention='reference' (or "
            "lm336.attention.reference_attention) for higher-order gradients"
        )


def first_order_only(backward):
    """Decorates an attention autograd.Function's backward, whose gradients are computed from
    saved tensors outside autograd (the probabilities, the log-sum-exp): under create_graph=True
    they come back attached, through a node that raises AttentionError when differentiated, to the
    inputs and incoming gradients that require grad, instead of second derivatives that would
    silently treat the saved tensors as constants (or leave the inputs out of the graph). Without
    create_graph (grad mode off in the backward) and while torch.compile traces, nothing changes.
    """

    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        if not torch.is_grad_enabled() or torch.compiler.is_compiling():
            return backward(ctx, *grad_outputs)
        with torch.no_grad():
            grads = backward(ctx, *grad_outputs)
        sources = [t for t in (*ctx.saved_tensors, *grad_outputs) if isinstance(t, Tensor) and t.requires_grad]
        if not sources:
            return grads
        tensors = [i for i, g in enumerate(grads) if isinstance(g, Tensor)]
        guarded = _SecondDerivativeError.apply(len(tensors), *(grads[i] for i in tensors), *sources)
        grads = list(grads)
        for i, g in zip(tensors, guarded):
            grads[i] = g
        return tuple(grads)

    return wrapper


def _exact(device: torch.device):
    """Autocast off: the kernels below choose their own precision (float32 or float64), which an
    enclosing autocast region would otherwise lower to bfloat16 matmuls."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class _BlockAttention(torch.autograd.Function):
    """FlashAttention-2 with torch operations: forward saves q, k, v, the output and lse only."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        ct = _compute_dtype(q.dtype)
        with _exact(q.device):
            out, lse = _block_forward(*(_flat(t).to(ct) for t in (q, k, v)), causal, want_lse=True)
        out = out.to(q.dtype).view(q.shape)
        ctx.causal = causal
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        ct = lse.dtype
        with _exact(q.device):
            grads = _block_backward(*(_flat(t).to(ct) for t in (grad_out, q, k, v, out)), lse, ctx.causal)
        return *(g.to(t.dtype).reshape(t.shape) for g, t in zip(grads, (q, k, v))), None


class _MaterialisedAttention(torch.autograd.Function):
    """For short sequences: the whole (Tq, Tk) probability matrix in one piece, kept for the
    backward (no recomputation; at small T it is smaller than the layer's other activations), with
    the same lean gradient: dS = P * (dO V^T - rowsum(dO * O))."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        with _exact(q.device):
            return _MaterialisedAttention._forward(ctx, q, k, v, causal)

    @staticmethod
    def _forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        ct = _compute_dtype(q.dtype)
        qf, kf, vf = (_flat(t).to(ct) for t in (q, k, v))
        tq, tk = qf.shape[1], kf.shape[1]
        s = torch.bmm(qf * (LOG2E / math.sqrt(q.shape[-1])), kf.transpose(1, 2))  # (N, Tq, Tk), log2(e)-scaled
        if causal and tk > 1:
            s.masked_fill_(torch.ones(tq, tk, dtype=torch.bool, device=s.device).triu_(tk - tq + 1), float("-inf"))
        p = s.sub_(s.amax(dim=-1, keepdim=True)).exp2_()
        p = p.div_(p.sum(dim=-1, keepdim=True))  # (N, Tq, Tk) probabilities
        out = torch.bmm(p, vf).to(q.dtype).view(q.shape)
        ctx.save_for_backward(q, k, v, out, p)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad_out: Tensor):
        with _exact(grad_out.device):
            return _MaterialisedAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: Tensor):
        q, k, v, out, p = ctx.saved_tensors
        ct = p.dtype
        do, qf, kf, vf, of = (_flat(t).to(ct) for t in (grad_out, q, k, v, out))
        scale = 1.0 / math.sqrt(q.shape[-1])
        dv = torch.bmm(p.transpose(1, 2), do)
        ds = torch.bmm(do, vf.transpose(1, 2)).sub_((do * of).sum(dim=-1, keepdim=True)).mul_(p)  # (N, Tq, Tk)
        dq = torch.bmm(ds, kf).mul_(scale)
        dk = torch.bmm(ds.transpose(1, 2), qf).mul_(scale)
        return *(g.to(t.dtype).view(t.shape) for g, t in zip((dq, dk, dv), (q, k, v))), None


def _block_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _BlockAttention.apply(q, k, v, causal)
    # Inference (generation): no autograd node, no log-sum-exp.
    with _exact(q.device):
        out, _ = _block_forward(*(_flat(t).to(_compute_dtype(q.dtype)) for t in (q, k, v)), causal, want_lse=False)
    return out.to(q.dtype).view(q.shape)


# 3. Public entry points ----------------------------------------------------------------------------


def flash_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(d)) v, block by block (FlashAttention-2), never materialising the scores.

    Args:
        q: (..., Tq, d) queries; k, v: (..., Tk, d) keys and values, same leading dims, dtype
            and device (float16, bfloat16, float32 or float64; any strides).
        causal: query i sees keys 0..Tk - Tq + i (with Tq < Tk the queries are the last positions,
            as when decoding against a KV cache); False = every query sees every key.
    Returns:
        (..., Tq, d) in the inputs' dtype; differentiable with respect to q, k and v.
    Raises:
        AttentionError (a ValueError) on inputs that do not fit together, or on CUDA when the
        Triton kernels cannot run (no Triton, head dim outside 16..128, an old GPU).

    On CUDA our Triton kernels run (attention_triton.py); on every other device torch operations
    on cache-sized blocks. Accumulation is float32 or better either way.
    """
    check_inputs(q, k, v, causal)
    if q.shape[-2] == 0:
        # No queries: nothing to compute. Under autograd through the block path (on any device; its
        # loops are empty), so the output stays in the graph and k and v get zero gradients.
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return _BlockAttention.apply(q, k, v, causal)
        return q.new_empty(q.shape)
    if q.device.type == "cuda":
        from .attention_triton import triton_attention

        return triton_attention(q, k, v, causal)
    return _block_attention(q, k, v, causal)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """The materialising oracle: layers.scaled_dot_product_attention with the causal mask (query i
    sees keys 0..Tk - Tq + i)."""
    from .layers import scaled_dot_product_attention

    mask = None
    if causal:
        tq, tk = q.shape[-2], k.shape[-2]
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril_(tk - tq)
    return scaled_dot_product_attention(q, k, v, mask)


@torch.compiler.assume_constant_result  # torch.compile asks once, while tracing, and keeps the answer
def flash_unavailable(device: torch.device | str, head_dim: int, dtype: torch.dtype | None = None) -> str | None:
    """Why flash_attention cannot run on `device` for this head size and dtype (a message naming the
    fix), or None when it can. Off CUDA it always can (torch operations)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    try:
        from .attention_triton import triton_unavailable
    except ImportError as e:  # no triton, or a torch without torch.library.triton_op
        return (
            f"our CUDA kernels need Triton and torch >= 2.6 ({e}); install triton (pip install triton) "
            "or set model.attention='reference' (or 'auto')"
        )
    return triton_unavailable(device, head_dim, dtype)


def choose(impl: str, q: Tensor, k: Tensor) -> str:
    """Which kernel the model runs for these queries and keys: "reference", "flash" or
    "materialised" (see the module docstring). Raises AttentionError for "flash" where it cannot run.

    "auto" off CUDA: with autograd and at most MATERIALISE_MAX scores per (batch, head), the
    one-piece path (measured faster than both others there, and its saved probabilities are
    small); otherwise the block path.
    """
    if impl not in IMPLEMENTATIONS:
        raise AttentionError(f"attention must be one of {', '.join(IMPLEMENTATIONS)}; got {impl!r}")
    if impl == "reference":
        return impl
    reason = flash_unavailable(q.device, q.shape[-1], q.dtype)
    if reason is not None:
        if impl == "auto":
            return "reference"
        raise AttentionError(f"model.attention='flash' cannot run here: {reason}")
    if (
        impl == "auto"
        and q.device.type != "cuda"
        and q.shape[-2] * k.shape[-2] <= MATERIALISE_MAX
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad)
    ):
        return "materialised"
    return "flash"


def attend(q: Tensor, k: Tensor, v: Tensor, kind: str) -> Tensor:
    """Causal attention with a kernel `choose` picked ("flash" or "materialised"; the model
    handles "reference" itself, with its shared mask): q (..., Tq, d) are the last Tq positions of
    k, v (..., Tk, d)."""
    if kind == "materialised":
        check_inputs(q, k, v, True)
        return _MaterialisedAttention.apply(q, k, v, True)
    return flash_attention(q, k, v, causal=True)

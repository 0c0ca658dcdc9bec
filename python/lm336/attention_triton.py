"""Our FlashAttention-2 Triton kernels for CUDA: forward, and a backward in three kernels
(D = rowsum(dO * O); dK, dV per key block; dQ per query block, so no atomics), registered as the
custom operators `lm336::flash_attn_fwd` and `lm336::flash_attn_bwd` with `torch.library.triton_op`,
which lets torch.compile trace a model through them without a graph break.

Inputs are (B, H, T, d) with any strides, float16, bfloat16 or float32; products accumulate in
float32 (float32 inputs multiply in TF32 unless torch's float32 matmul precision is "highest").
Head dims up to 128 (padded to a power of two, at least 16, with masked loads). Queries may be the
last Tq of Tk positions (a KV-cache offset): query i sees keys 0..Tk - Tq + i. Scores are scaled by
log2(e) / sqrt(d) so the exponentials are exp2; the saved log-sum-exp is in that base.

Importing this module needs triton; attention.py imports it only for CUDA tensors. Under
TRITON_INTERPRET=1 the same kernels run on CPU tensors (how the tests check them without a GPU).

    out = triton_attention(q, k, v, causal=True)  # (B, H, Tq, d) -> (B, H, Tq, d)
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .attention import first_order_only

LOG2E = math.log2(math.e)
MAX_HEAD_DIM = 128
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# 1. Kernels ----------------------------------------------------------------------------------------


@triton.jit
def _fwd_kernel(
    Q, K, V, OUT, LSE,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sob, soh, som, sod,
    H, TQ, TK, D, qk_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=(offs_m[:, None] < TQ) & mask_d[None, :], other=0.0)  # fmt: skip
    k_base = K + b * skb + h * skh + offs_d[None, :] * skd
    v_base = V + b * svb + h * svh + offs_d[None, :] * svd
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offset = TK - TQ  # query row i sits at position offset + i
    if CAUSAL:
        # Keys below `lo` are visible to every row of the block; keys from `hi` on to none.
        lo = ((offset + start_m) // BLOCK_N) * BLOCK_N
        hi = tl.minimum(TK, offset + start_m + BLOCK_M)
    else:
        lo = (TK // BLOCK_N) * BLOCK_N
        hi = TK
    # Stage 1: whole key blocks below the diagonal, no masks.
    for start_n in range(0, lo, BLOCK_N):
        rows = start_n + offs_n
        k = tl.load(k_base + rows[:, None] * skn, mask=mask_d[None, :], other=0.0)
        v = tl.load(v_base + rows[:, None] * svn, mask=mask_d[None, :], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    # Stage 2: the diagonal (and the ragged end of the keys), masked. Every real row sees key 0,
    # and stage 2 starts at key 0 whenever stage 1 was empty, so m_i is finite after one block.
    for start_n in range(lo, hi, BLOCK_N):
        rows = start_n + offs_n
        k = tl.load(k_base + rows[:, None] * skn, mask=(rows[:, None] < TK) & mask_d[None, :], other=0.0)
        v = tl.load(v_base + rows[:, None] * svn, mask=(rows[:, None] < TK) & mask_d[None, :], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        visible = rows[None, :] < TK
        if CAUSAL:
            visible = visible & (rows[None, :] <= offset + offs_m[:, None])
        qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    acc = acc / l_i[:, None]
    mask_m = offs_m < TQ
    tl.store(OUT + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod, acc.to(OUT.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])  # fmt: skip
    tl.store(LSE + bh * TQ + offs_m, m_i + tl.math.log2(l_i), mask=mask_m)


@triton.jit
def _bwd_delta_kernel(
    OUT, DO, DELTA,
    sob, soh, som, sod,
    sdb, sdh, sdm, sdd,
    H, TQ, D,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """DELTA[bh, i] = sum_d dO * O: the row sums of P * dP."""
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < TQ) & (offs_d[None, :] < D)
    o = tl.load(OUT + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod, mask=mask, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdm + offs_d[None, :] * sdd, mask=mask, other=0.0)
    tl.store(DELTA + bh * TQ + offs_m, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=offs_m < TQ)


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdb, sdh, sdm, sdd,
    H, TQ, TK, D, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One block of keys: dV = sum over queries of P^T dO, dK = sum of dS^T Q / sqrt(d)."""
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    mask_kv = (offs_n[:, None] < TK) & mask_d[None, :]
    k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=mask_kv, other=0.0)
    v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=mask_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    q_base = Q + b * sqb + h * sqh + offs_d[None, :] * sqd
    do_base = DO + b * sdb + h * sdh + offs_d[None, :] * sdd
    offset = TK - TQ
    # Query i sees key j when j <= offset + i: queries before start_n - offset see none of these keys.
    if CAUSAL:
        lo = (tl.maximum(start_n - offset, 0) // BLOCK_M) * BLOCK_M
    else:
        lo = 0
    for start_m in range(lo, TQ, BLOCK_M):
        rows = start_m + offs_m
        mask_q = (rows[:, None] < TQ) & mask_d[None, :]
        q = tl.load(q_base + rows[:, None] * sqm, mask=mask_q, other=0.0)
        do = tl.load(do_base + rows[:, None] * sdm, mask=mask_q, other=0.0)
        lse = tl.load(LSE + bh * TQ + rows, mask=rows < TQ, other=0.0)
        delta = tl.load(DELTA + bh * TQ + rows, mask=rows < TQ, other=0.0)
        qk_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.math.exp2(qk_t - lse[None, :])
        visible = (rows[None, :] < TQ) & (offs_n[:, None] < TK)  # (padding rows and keys: never inf * 0)
        if CAUSAL:
            visible = visible & (offs_n[:, None] <= offset + rows[None, :])
        p_t = tl.where(visible, p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    dk = dk * sm_scale
    tl.store(DK + bh * TK * D + offs_n[:, None] * D + offs_d[None, :], dk.to(DK.dtype.element_ty), mask=mask_kv)
    tl.store(DV + bh * TK * D + offs_n[:, None] * D + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=mask_kv)


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdb, sdh, sdm, sdd,
    H, TQ, TK, D, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One block of queries: dQ = sum over visible keys of dS K / sqrt(d)."""
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    mask_q = (offs_m[:, None] < TQ) & mask_d[None, :]
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd, mask=mask_q, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdm + offs_d[None, :] * sdd, mask=mask_q, other=0.0)
    lse = tl.load(LSE + bh * TQ + offs_m, mask=offs_m < TQ, other=0.0)
    delta = tl.load(DELTA + bh * TQ + offs_m, mask=offs_m < TQ, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    k_base = K + b * skb + h * skh + offs_d[None, :] * skd
    v_base = V + b * svb + h * svh + offs_d[None, :] * svd
    offset = TK - TQ
    if CAUSAL:
        hi = tl.minimum(TK, offset + start_m + BLOCK_M)
    else:
        hi = TK
    for start_n in range(0, hi, BLOCK_N):
        rows = start_n + offs_n
        mask_kv = (rows[:, None] < TK) & mask_d[None, :]
        k = tl.load(k_base + rows[:, None] * skn, mask=mask_kv, other=0.0)
        v = tl.load(v_base + rows[:, None] * svn, mask=mask_kv, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.math.exp2(qk - lse[:, None])
        visible = rows[None, :] < TK
        if CAUSAL:
            visible = visible & (rows[None, :] <= offset + offs_m[:, None])
        p = tl.where(visible, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + bh * TQ * D + offs_m[:, None] * D + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=mask_q)


# 2. Launch configuration ---------------------------------------------------------------------------


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _precision(dtype: torch.dtype) -> str:
    """float32 inputs multiply in TF32 where torch lets CUDA matmuls use it, else in IEEE float32.

    Read from torch.backends.cuda.matmul.fp32_precision ("tf32", "ieee", or "none" = the default,
    IEEE) where torch has it: torch.get_float32_matmul_precision() raises once that newer setting,
    or a mix of it and the legacy ones, has been used. Older torch: the legacy precision.
    """
    if dtype != torch.float32:
        return "tf32"  # (ignored for half-precision inputs)
    setting = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if setting is not None:
        return "tf32" if setting == "tf32" else "ieee"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _fwd_config(tq: int, block_d: int) -> dict:
    # Decoding (a handful of queries) wastes less of a small block; otherwise 128 x 64 tiles.
    block_m = 16 if tq <= 16 else (64 if tq <= 64 else 128)
    return dict(BLOCK_M=block_m, BLOCK_N=64, num_warps=4 if block_d <= 64 else 8, num_stages=3)


def _bwd_config(block_d: int) -> tuple[dict, dict]:
    stages = 3 if block_d > 64 else 4
    dkdv = dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=stages)
    dq = dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=stages)
    return dkdv, dq


def _strides(t: Tensor) -> tuple[int, int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2), t.stride(3)


# 3. The custom operators (B, H, T, d) --------------------------------------------------------------


@triton_op("lm336::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """Returns the output (B, H, Tq, d) like q and the base-2 log-sum-exp (B, H, Tq) in float32."""
    b, h, tq, d = q.shape
    tk = k.shape[2]
    out = torch.empty_like(q)
    lse = torch.empty((b, h, tq), device=q.device, dtype=torch.float32)
    block_d = _block_d(d)
    cfg = _fwd_config(tq, block_d)
    grid = (triton.cdiv(tq, cfg["BLOCK_M"]), b * h)
    wrap_triton(_fwd_kernel)[grid](
        q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
        h, tq, tk, d, LOG2E / math.sqrt(d),
        CAUSAL=causal, BLOCK_D=block_d, PRECISION=_precision(q.dtype), **cfg,
    )  # fmt: skip
    return out, lse


@triton_op("lm336::flash_attn_bwd", mutates_args=())
def flash_attn_bwd(
    grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, causal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (dq, dk, dv), contiguous, in the inputs' dtype."""
    b, h, tq, d = q.shape
    tk = k.shape[2]
    dq = torch.empty((b, h, tq, d), device=q.device, dtype=q.dtype)
    dk = torch.empty((b, h, tk, d), device=q.device, dtype=k.dtype)
    dv = torch.empty((b, h, tk, d), device=q.device, dtype=v.dtype)
    delta = torch.empty((b, h, tq), device=q.device, dtype=torch.float32)
    block_d = _block_d(d)
    precision = _precision(q.dtype)
    sm_scale = 1.0 / math.sqrt(d)
    wrap_triton(_bwd_delta_kernel)[(triton.cdiv(tq, 64), b * h)](
        out, grad_out, delta, *_strides(out), *_strides(grad_out), h, tq, d, BLOCK_M=64, BLOCK_D=block_d,
    )  # fmt: skip
    cfg_kv, cfg_q = _bwd_config(block_d)
    common = (*_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), h, tq, tk, d, LOG2E * sm_scale, sm_scale)
    wrap_triton(_bwd_dkdv_kernel)[(triton.cdiv(tk, cfg_kv["BLOCK_N"]), b * h)](
        q, k, v, grad_out, lse, delta, dk, dv, *common,
        CAUSAL=causal, BLOCK_D=block_d, PRECISION=precision, **cfg_kv,
    )  # fmt: skip
    wrap_triton(_bwd_dq_kernel)[(triton.cdiv(tq, cfg_q["BLOCK_M"]), b * h)](
        q, k, v, grad_out, lse, delta, dq, *common,
        CAUSAL=causal, BLOCK_D=block_d, PRECISION=precision, **cfg_q,
    )  # fmt: skip
    return dq, dk, dv


class _TritonAttention(torch.autograd.Function):
    """FlashAttention-2 on our Triton kernels: forward saves q, k, v, the output and lse only."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        out, lse = torch.ops.lm336.flash_attn_fwd(q, k, v, causal)
        ctx.causal = causal
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.lm336.flash_attn_bwd(grad_out, q, k, v, out, lse, ctx.causal)
        return dq, dk, dv, None


# 4. Entry points -----------------------------------------------------------------------------------


def _as_4d(t: Tensor) -> Tensor:
    """(..., T, d) -> (B, H, T, d): a view for 2, 3 and 4 dims; more leading dims are merged."""
    if t.dim() == 4:
        return t
    if t.dim() < 4:
        return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))
    return t.reshape(-1, *t.shape[-3:])


def triton_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """flash_attention on our Triton kernels; shapes as attention.flash_attention (already checked
    there), on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1)."""
    d = q.shape[-1]
    if d > MAX_HEAD_DIM:
        from .attention import AttentionError

        raise AttentionError(unsupported_head_dim(d))
    if q.dtype not in _DTYPES:
        from .attention import AttentionError

        raise AttentionError(f"the Triton kernels take float16, bfloat16 or float32, got {q.dtype}; cast q, k and v (e.g. .float())")
    out = _TritonAttention.apply(_as_4d(q), _as_4d(k), _as_4d(v), causal)
    return out.reshape(q.shape)


def unsupported_head_dim(d: int) -> str:
    return (
        f"head dim d_k = {d} is larger than the {MAX_HEAD_DIM} the Triton kernels support; use more heads "
        "(d_k = d_model / num_heads) or model.attention='reference'"
    )


_REASONS: dict = {}


def triton_unavailable(device: torch.device, head_dim: int, dtype: torch.dtype | None) -> str | None:
    """Why our kernels cannot run on this CUDA device, head size and dtype (None when they can)."""
    key = (device.index, head_dim, dtype)
    if key not in _REASONS:
        _REASONS[key] = _reason(device, head_dim, dtype)
    return _REASONS[key]


def _reason(device: torch.device, head_dim: int, dtype: torch.dtype | None) -> str | None:
    if head_dim > MAX_HEAD_DIM:
        return unsupported_head_dim(head_dim)
    if dtype is not None and dtype not in _DTYPES:
        return f"the Triton kernels take float16, bfloat16 or float32, not {dtype}; use model.attention='reference'"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (7, 5):
        return f"the GPU's compute capability {major}.{minor} is below the 7.5 Triton needs; use model.attention='reference'"
    if dtype == torch.bfloat16 and major < 8:
        return f"bfloat16 needs compute capability 8.0 or newer (this GPU: {major}.{minor}); use float16 autocast or model.attention='reference'"
    return None

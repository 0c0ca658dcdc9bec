"""lm336 building blocks against torch.nn / torch.nn.functional oracles and hand-computed values.

Run: PYTHONPATH=python python -m pytest tests/test_lm_layers.py -q
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lm_reference import reference_attention, rope_complex
from torch.testing import assert_close

import lm336.layers as layers
from lm336 import (
    Embedding,
    Linear,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    TransformerBlock,
    scaled_dot_product_attention,
    silu,
    softmax,
)
from lm336.layers import default_d_ff, swiglu_gate

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
# Std of a unit normal truncated to [-3, 3]: sqrt(1 - 2*3*phi(3) / (Phi(3) - Phi(-3))).
_PHI3 = math.exp(-4.5) / math.sqrt(2 * math.pi)
TRUNC3_STD = math.sqrt(1 - 6 * _PHI3 / math.erf(3 / math.sqrt(2)))


# -- Initialisation ---------------------------------------------------------------------------------


def test_linear_init_is_truncated_normal_with_xavier_std():
    torch.manual_seed(0)
    layer = Linear(1000, 3000)
    w = layer.weight.detach()
    std = math.sqrt(2 / (1000 + 3000))
    assert w.shape == (3000, 1000)
    assert abs(w.mean().item()) < 0.005 * std
    assert w.std().item() == pytest.approx(TRUNC3_STD * std, rel=0.005)
    # Cut at 3 std (an untruncated normal would put ~8000 of these 3M values beyond it) ...
    assert w.abs().max().item() <= 3 * std
    # ... but the tails are there (a uniform or a hard clip would fail one of these).
    assert (w.abs() > 2.5 * std).float().mean().item() == pytest.approx(0.0124 - 0.0027, abs=0.001)


def test_embedding_init_std_one_cut_at_three():
    torch.manual_seed(1)
    emb = Embedding(4000, 500)
    w = emb.weight.detach()
    assert w.shape == (4000, 500)
    assert w.std().item() == pytest.approx(TRUNC3_STD, rel=0.005)
    assert w.abs().max().item() <= 3.0
    assert w.abs().max().item() > 2.9


# -- Linear, Embedding --------------------------------------------------------------------------------


def test_linear_matches_f_linear_with_leading_dims():
    layer = Linear(7, 5, dtype=F64)
    x = torch.randn(2, 3, 4, 7, dtype=F64)
    assert_close(layer(x), F.linear(x, layer.weight), rtol=1e-12, atol=1e-12)


def test_embedding_matches_f_embedding_and_rejects_negative_ids():
    emb = Embedding(11, 6, dtype=F64)
    ids = torch.randint(0, 11, (3, 4, 5))
    assert_close(emb(ids), F.embedding(ids, emb.weight), rtol=0, atol=0)
    with pytest.raises((IndexError, RuntimeError)):
        emb(torch.tensor([[0, -1]]))


# -- RMSNorm ------------------------------------------------------------------------------------------


def test_rmsnorm_matches_reference_float64():
    norm = RMSNorm(16, eps=1e-5, dtype=F64)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, dtype=F64))
    x = torch.randn(2, 3, 5, 16, dtype=F64)
    expected = F.rms_norm(x, (16,), norm.weight, eps=1e-5)
    assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    manual = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * norm.weight
    assert_close(norm(x), manual, rtol=1e-12, atol=1e-12)


def test_rmsnorm_bf16_input_computes_in_float32_and_returns_bf16():
    torch.manual_seed(2)
    norm = RMSNorm(256)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(256))
    # Large values whose squares overflow bf16's precision badly if summed in bf16.
    x = (torch.randn(4, 8, 256) * 30 + 5).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = F.rms_norm(x.float(), (256,), norm.weight, eps=1e-5).to(torch.bfloat16)
    # Same float32 math, so at most one bf16 rounding step apart anywhere.
    assert_close(out.float(), expected.float(), rtol=2**-7, atol=0)


# -- Feed-forward ----------------------------------------------------------------------------------


def test_silu_matches_f_silu():
    x = torch.randn(100, dtype=F64) * 10
    assert_close(silu(x), F.silu(x), rtol=1e-12, atol=1e-12)


def test_swiglu_matches_manual_formula():
    ffn = SwiGLU(12, 40, dtype=F64)
    assert ffn.w1.weight.shape == (40, 12) and ffn.w3.weight.shape == (40, 12) and ffn.w2.weight.shape == (12, 40)
    x = torch.randn(2, 3, 12, dtype=F64)
    w1, w2, w3 = ffn.w1.weight, ffn.w2.weight, ffn.w3.weight
    expected = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    assert_close(ffn(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1 << 17, 8])
def test_swiglu_gate_gradients_match_autograd_of_the_formula(monkeypatch, chunk):
    """The written-out gradient, whole and in row chunks (8 elements: many ragged chunks)."""
    monkeypatch.setattr(layers, "GATE_CHUNK", chunk)
    torch.manual_seed(12)
    a, b = (torch.randn(5, 7, 9, dtype=F64, requires_grad=True) for _ in range(2))
    g = torch.randn(5, 7, 9, dtype=F64)
    out = swiglu_gate(a, b)
    ours = torch.autograd.grad(out, (a, b), g)
    ref_out = F.silu(a) * b
    ref = torch.autograd.grad(ref_out, (a, b), g)
    assert_close(out, ref_out, rtol=0, atol=1e-14)
    with torch.no_grad():  # the path without an autograd node
        assert_close(swiglu_gate(a, b), ref_out, rtol=0, atol=1e-14)
    for x, y in zip(ours, ref):
        assert_close(x, y, rtol=0, atol=1e-13)
    small = tuple(torch.randn(3, 4, dtype=F64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(swiglu_gate, small) and torch.autograd.gradgradcheck(swiglu_gate, small)


def test_silu_feed_forward_matches_manual_formula():
    ffn = SiLUFeedForward(12, dtype=F64)
    assert ffn.d_ff == 48 and not hasattr(ffn, "w3")
    x = torch.randn(4, 12, dtype=F64)
    assert_close(ffn(x), F.linear(F.silu(F.linear(x, ffn.w1.weight)), ffn.w2.weight), rtol=1e-12, atol=1e-12)


def test_default_d_ff():
    assert default_d_ff(512) == 1344  # the reference TinyStories shape
    assert default_d_ff(768) == 2048
    assert default_d_ff(1600) == 4288  # 4266.7 -> 67 * 64
    assert SwiGLU(512).d_ff == 1344
    assert default_d_ff(512, "silu") == 2048


# -- RoPE ---------------------------------------------------------------------------------------------


def test_rope_matches_complex_formulation_with_arbitrary_positions():
    torch.manual_seed(3)
    rope = RotaryPositionalEmbedding(10_000.0, 16, 64, dtype=F64)
    x = torch.randn(2, 3, 7, 16, dtype=F64)  # (batch, heads, seq, d_k)
    positions = torch.randint(0, 64, (2, 1, 7))  # shuffled, repeated, per batch row
    assert_close(rope(x, positions), rope_complex(x, positions, 10_000.0), rtol=1e-12, atol=1e-12)
    # Leading dims of positions equal to x's.
    positions = torch.randint(0, 64, (2, 3, 7))
    assert_close(rope(x, positions), rope_complex(x, positions, 10_000.0), rtol=1e-12, atol=1e-12)


def test_rope_float32_and_hand_value():
    rope = RotaryPositionalEmbedding(100.0, 4, 10)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # one token
    out = rope(x, torch.tensor([2]))
    # pair 0 rotated by 2 rad, pair 1 by 2 * 100^(-1/2) = 0.2 rad
    expected = torch.tensor([[math.cos(2), math.sin(2), -math.sin(0.2), math.cos(0.2)]])
    assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert rope.state_dict() == {}  # non-persistent tables
    x = torch.randn(5, 9, 4)
    assert_close(rope(x, torch.arange(9)), rope_complex(x, torch.arange(9), 100.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_rope_gradient_matches_autograd_of_the_complex_formulation(dtype):
    """Both code paths: the complex multiply (contiguous pairs) and the even/odd arithmetic (a view
    whose pairs cannot be reinterpreted as complex numbers)."""
    torch.manual_seed(13)
    rope = RotaryPositionalEmbedding(1000.0, 8, 32, dtype=dtype)
    positions = torch.randint(0, 32, (2, 1, 6))
    g = torch.randn(2, 3, 6, 8, dtype=dtype)
    for x in (torch.randn(2, 3, 6, 8, dtype=dtype), torch.randn(2, 3, 6, 9, dtype=dtype)[..., 1:]):
        x = x.requires_grad_()
        ours = torch.autograd.grad(rope(x, positions), x, g)[0]
        ref = torch.autograd.grad(rope_complex(x, positions, 1000.0), x, g)[0]
        assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        ours = torch.autograd.grad(rope(x, start=20), x, g)[0]
        ref = torch.autograd.grad(rope_complex(x, torch.arange(20, 26), 1000.0), x, g)[0]
        assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_rope_complex_table_follows_a_cast_of_the_module():
    """The cached complex table is rebuilt when the real tables are replaced (here: float32 tables
    upcast on use, then exact float64 tables after .double())."""
    rope = RotaryPositionalEmbedding(1000.0, 8, 32)
    x = torch.randn(2, 6, 8, dtype=F64)
    positions = torch.arange(6)
    assert (rope(x) - rope_complex(x, positions, 1000.0)).abs().max() > 1e-10  # float32 tables
    rope.double()
    assert_close(rope(x), rope_complex(x, positions, 1000.0), rtol=0, atol=1e-13)


def test_rope_tables_survive_bf16_cast():
    rope = RotaryPositionalEmbedding(10_000.0, 8, 4096).to(torch.bfloat16)
    assert rope.cos.dtype == torch.float32
    x = torch.randn(1, 8, dtype=torch.bfloat16)
    pos = torch.tensor([4000])
    assert_close(rope(x, pos).float(), rope_complex(x.float(), pos, 10_000.0), rtol=2**-7, atol=2e-2)


def test_rope_bad_input():
    with pytest.raises(ValueError, match="even"):
        RotaryPositionalEmbedding(10_000.0, 7, 16)
    rope = RotaryPositionalEmbedding(10_000.0, 8, 16)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        rope(torch.randn(3, 8), torch.tensor([0, 1, 16]))
    with pytest.raises(ValueError, match="d_k=8"):
        rope(torch.randn(3, 6), torch.arange(3))


# -- softmax and attention --------------------------------------------------------------------------


def test_softmax_matches_f_softmax_any_dim():
    x = torch.randn(3, 4, 5, dtype=F64) * 5
    for dim in (0, 1, -1):
        assert_close(softmax(x, dim), F.softmax(x, dim), rtol=1e-12, atol=1e-14)


def test_softmax_gradient_matches_autograd_of_f_softmax():
    torch.manual_seed(12)
    x = (torch.randn(3, 4, 6, dtype=F64) * 3).requires_grad_()
    upstream = torch.randn(3, 4, 6, dtype=F64)
    for dim in (1, -1):
        (g,) = torch.autograd.grad(softmax(x, dim), x, upstream)
        (g_ref,) = torch.autograd.grad(F.softmax(x, dim), x, upstream)
        assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
    small = torch.randn(2, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: softmax(z, -1), (small,))
    assert torch.autograd.gradgradcheck(lambda z: softmax(z, -1), (small,))


def test_softmax_huge_logits_and_all_masked_rows():
    x = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [1e4, 1e4, 1e4]], dtype=F64)
    out = softmax(x, -1)
    assert torch.isfinite(out).all()
    e = math.exp(-1.0)
    assert_close(out, torch.tensor([[1 / (1 + e), e / (1 + e), 0.0], [1 / 3, 1 / 3, 1 / 3]], dtype=F64))
    # Documented choice: a row with nothing allowed is all zeros, not NaN.
    row = torch.full((1, 4), float("-inf"))
    assert torch.equal(softmax(row, -1), torch.zeros(1, 4))


def test_softmax_and_attention_over_empty_dimensions():
    """Empty inputs behave as torch's: an empty softmax dimension, zero queries (an empty output
    still in the graph), zero keys and values gradients."""
    for shape, dim in [((2, 0), -1), ((0, 3), -1), ((2, 0, 4), 1)]:
        x = torch.randn(shape, dtype=F64, requires_grad=True)
        out = softmax(x, dim)
        assert out.shape == F.softmax(x, dim).shape
        out.sum().backward()
        assert x.grad.shape == x.shape
    q = torch.randn(2, 0, 8, dtype=F64, requires_grad=True)
    k = torch.randn(2, 5, 8, dtype=F64, requires_grad=True)
    out = scaled_dot_product_attention(q, k, k, torch.ones(0, 5, dtype=torch.bool))
    assert out.shape == (2, 0, 8)
    out.sum().backward()
    assert torch.equal(k.grad, torch.zeros_like(k))


def test_sdpa_matches_torch_with_random_masks_and_extra_batch_dims():
    torch.manual_seed(4)
    q = torch.randn(2, 3, 4, 6, 8, dtype=F64)
    k = torch.randn(2, 3, 4, 9, 8, dtype=F64)
    v = torch.randn(2, 3, 4, 9, 5, dtype=F64)
    mask = torch.rand(2, 3, 4, 6, 9) < 0.5
    mask[..., 0] = True  # every query may attend something: the oracle gives NaN otherwise
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(scaled_dot_product_attention(q, k, v, mask), expected, rtol=1e-12, atol=1e-12)
    # A broadcast (queries, keys) mask and no mask.
    mask2 = torch.rand(6, 9) < 0.7
    mask2[:, 3] = True
    assert_close(
        scaled_dot_product_attention(q, k, v, mask2),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask2),
        rtol=1e-12,
        atol=1e-12,
    )
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), rtol=1e-12, atol=1e-12)


def test_sdpa_gradients_match_torch():
    torch.manual_seed(13)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=F64, requires_grad=True) for _ in range(3))
    mask = torch.rand(5, 5) < 0.6
    mask[:, 0] = True
    upstream = torch.randn(2, 3, 5, 4, dtype=F64)
    ours = torch.autograd.grad(scaled_dot_product_attention(q, k, v, mask), (q, k, v), upstream)
    theirs = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), (q, k, v), upstream)
    for a, b in zip(ours, theirs):
        assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_sdpa_fully_masked_query_outputs_zeros_and_mask_must_be_bool():
    q, k, v = torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros(4))
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask.float())


# -- Attention and block against torch.nn references ------------------------------------------------


@pytest.mark.parametrize("use_rope", [True, False])
def test_multihead_attention_matches_reference(use_rope):
    torch.manual_seed(5)
    theta = 10_000.0 if use_rope else None
    attn = MultiHeadSelfAttention(32, 4, theta=theta, max_seq_len=16, dtype=F64)
    x = torch.randn(2, 3, 10, 32, dtype=F64)  # two leading batch dims
    w = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.output_proj.weight]
    assert_close(attn(x), reference_attention(x, *w, 4, theta), rtol=1e-10, atol=1e-12)
    positions = torch.randint(0, 16, (2, 3, 10))
    assert_close(attn(x, positions), reference_attention(x, *w, 4, theta, positions), rtol=1e-10, atol=1e-12)
    names = set(attn.state_dict())
    assert names == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "output_proj.weight"}


def test_attention_without_max_seq_len_builds_mask_per_call():
    attn = MultiHeadSelfAttention(16, 2, dtype=F64)
    assert attn.causal_mask is None and attn.rope is None
    x = torch.randn(3, 20, 16, dtype=F64)
    w = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.output_proj.weight]
    assert_close(attn(x), reference_attention(x, *w, 2), rtol=1e-10, atol=1e-12)


def test_attention_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(30, 4)
    with pytest.raises(ValueError, match="even"):
        MultiHeadSelfAttention(12, 4, theta=10_000.0, max_seq_len=8)
    with pytest.raises(ValueError, match="exceeds max_seq_len 8"):
        MultiHeadSelfAttention(16, 4, max_seq_len=8)(torch.randn(2, 9, 16))


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize("ffn", ["swiglu", "silu"])
def test_transformer_block_matches_reference(norm, ffn):
    torch.manual_seed(6)
    block = TransformerBlock(32, 4, 48, norm=norm, ffn=ffn, theta=1000.0, max_seq_len=12, dtype=F64)
    if norm != "none":
        with torch.no_grad():
            block.ln1.weight.copy_(1 + 0.2 * torch.randn(32, dtype=F64))
            block.ln2.weight.copy_(1 + 0.2 * torch.randn(32, dtype=F64))
    sd = block.state_dict()
    a = block.attn

    weights = (a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.output_proj.weight)

    def attn(h):
        return reference_attention(h, *weights, 4, 1000.0)

    def ff(h):
        up = F.silu(F.linear(h, sd["ffn.w1.weight"]))
        if ffn == "swiglu":
            up = up * F.linear(h, sd["ffn.w3.weight"])
        return F.linear(up, sd["ffn.w2.weight"])

    def ln(h, name):
        return F.rms_norm(h, (32,), sd[f"{name}.weight"], eps=1e-5)

    x = torch.randn(2, 12, 32, dtype=F64)
    if norm == "pre":
        h = x + attn(ln(x, "ln1"))
        expected = h + ff(ln(h, "ln2"))
    elif norm == "post":
        h = ln(x + attn(x), "ln1")
        expected = ln(h + ff(h), "ln2")
    else:
        h = x + attn(x)
        expected = h + ff(h)
    assert_close(block(x), expected, rtol=1e-10, atol=1e-12)
    expected_keys = {f"attn.{p}_proj.weight" for p in ("q", "k", "v", "output")}
    expected_keys |= {"ffn.w1.weight", "ffn.w2.weight"} | ({"ffn.w3.weight"} if ffn == "swiglu" else set())
    expected_keys |= {"ln1.weight", "ln2.weight"} if norm != "none" else set()
    assert set(sd) == expected_keys


def test_block_rejects_unknown_variants():
    with pytest.raises(ValueError, match="norm"):
        TransformerBlock(16, 2, 32, norm="sandwich")
    with pytest.raises(ValueError, match="ffn"):
        TransformerBlock(16, 2, 32, ffn="relu")

"""flash_attention (block-wise FlashAttention-2) against the materialising reference and
F.scaled_dot_product_attention: float64 exactness of outputs and gradients, decoding against a KV
cache, odd strides, half precision, bad input; our Triton kernels under TRITON_INTERPRET=1 (a
subprocess) and on CUDA (marked gpu); the model's `attention` option end to end (logits, KV cache,
saved activations, a 200-step training run, exact resume).

    cd tests && ../.venv/bin/python -m pytest -q lm336/test_attention.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import lm336.attention as attention
from lm336 import TransformerLM, flash_attention
from lm336.attention import AttentionError, attend, choose, reference_attention
from lm336.config import ConfigError, ModelConfig, TrainConfig, apply_overrides

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
HERE = Path(__file__).resolve().parent
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def run(fn, q, k, v, grad_out, **kwargs) -> tuple[torch.Tensor, ...]:
    """(output, dq, dk, dv) of fn on fresh leaf copies of q, k, v."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, **kwargs)
    return (out, *torch.autograd.grad(out, (q, k, v), grad_out))


def assert_all_close(a, b, tol):
    for name, x, y in zip(("output", "dq", "dk", "dv"), a, b):
        assert x.shape == y.shape and x.dtype == y.dtype, name
        err = (x - y).abs().max().item() if x.numel() else 0.0
        assert err <= tol, f"{name}: max abs error {err:.3g} > {tol:g}"


def qkv(lead, tq, tk, d, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, do = (torch.randn(*lead, tq, d, generator=g, dtype=dtype) for _ in range(2))
    k, v = (torch.randn(*lead, tk, d, generator=g, dtype=dtype) for _ in range(2))
    return q, k, v, do


@pytest.fixture(params=["default-blocks", "small-blocks"])
def blocks(request, monkeypatch):
    """The CPU block sizes as shipped, and tiny ones so that short sequences cross many query and
    key blocks (the online softmax, the diagonal masks, ragged last blocks, several head chunks)."""
    if request.param == "small-blocks":
        monkeypatch.setattr(attention, "BLOCK_Q", 8)
        monkeypatch.setattr(attention, "BLOCK_K", 12)
        monkeypatch.setattr(attention, "HEAD_CHUNK_ELEMENTS", 200)
    return request.param


# -- Exactness on the CPU (float64) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "lead, t, d",
    [((2, 3), 70, 16), ((2, 3), 70, 32), ((1, 2), 67, 64), ((2,), 37, 128), ((2, 3), 1, 32), ((), 129, 16), ((2, 1, 2), 23, 32)],
)
def test_float64_equals_reference(blocks, lead, t, d):
    q, k, v, do = qkv(lead, t, t, d)
    assert_all_close(run(flash_attention, q, k, v, do), run(reference_attention, q, k, v, do), 1e-10)


@pytest.mark.parametrize("tk", [1, 13, 70])
def test_decoding_against_a_cache_every_query_length(blocks, tk):
    """q_len 1..k_len: the queries are the last positions of the keys' sequence."""
    for tq in range(1, tk + 1):
        q, k, v, do = qkv((2, 2), tq, tk, 32, seed=tq)
        assert_all_close(run(flash_attention, q, k, v, do), run(reference_attention, q, k, v, do), 1e-10)


def test_decoding_rows_equal_the_full_sequence_rows(blocks):
    """Decoding query i against keys 0..i gives row i of full causal attention."""
    q, k, v, _ = qkv((2, 3), 29, 29, 16)
    full = flash_attention(q, k, v)
    for i in (0, 7, 28):
        assert_close(
            flash_attention(q[..., i : i + 1, :], k[..., : i + 1, :], v[..., : i + 1, :]), full[..., i : i + 1, :], rtol=0, atol=1e-12
        )


def test_non_causal_equals_reference(blocks):
    q, k, v, do = qkv((2, 3), 21, 45, 32)
    assert_all_close(run(flash_attention, q, k, v, do, causal=False), run(reference_attention, q, k, v, do, causal=False), 1e-10)


def test_materialised_path_equals_reference():
    """The one-piece path "auto" takes for short sequences on the CPU."""
    for tq, tk in ((1, 1), (30, 30), (5, 30)):
        q, k, v, do = qkv((2, 3), tq, tk, 32)
        assert_all_close(run(attend, q, k, v, do, kind="materialised"), run(reference_attention, q, k, v, do), 1e-10)


def test_gradcheck():
    q, k, v, _ = qkv((1, 2), 5, 7, 4)
    for causal in (True, False):
        args = tuple(t.requires_grad_() for t in (q.clone(), k.clone(), v.clone()))
        assert torch.autograd.gradcheck(lambda q, k, v, c=causal: flash_attention(q, k, v, causal=c), args)


@pytest.mark.parametrize("kind", ["flash", "materialised"])
def test_second_derivatives_are_refused_not_wrong(kind):
    """Gradients come from saved probabilities or log-sum-exps outside autograd: under
    create_graph=True the first derivatives are exact, and differentiating them again is an
    error naming the fix, never second derivatives that treat those saved tensors as constants."""
    q, k, v, do = qkv((1, 2), 5, 5, 4)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    exact = torch.autograd.grad(reference_attention(q, k, v), (q, k, v), do)
    grads = torch.autograd.grad(attend(q, k, v, kind), (q, k, v), do, create_graph=True)
    for g, e in zip(grads, exact):
        assert_close(g, e, rtol=0, atol=1e-12)
    with pytest.raises(AttentionError, match="no second derivative.*model.attention='reference'"):
        torch.autograd.grad(grads[0].sum(), k)
    # Through the saved inputs alone (an incoming gradient that needs none), and with backward().
    (dq,) = torch.autograd.grad(attend(q, k, v, kind).sum(), q, create_graph=True)
    with pytest.raises(AttentionError, match="no second derivative"):
        (dq.pow(2).sum() + q.sum()).backward()
    # A gradient penalty through the model ("auto" takes the materialised path at this size).
    model = TransformerLM(**SMALL, dtype=F64)
    loss = model(torch.randint(0, 50, (1, 8))).logsumexp(-1).mean()
    (g,) = torch.autograd.grad(loss, model.layers[0].attn.q_proj.weight, create_graph=True)
    with pytest.raises(AttentionError, match="no second derivative"):
        torch.autograd.grad(g.pow(2).sum(), model.layers[0].attn.k_proj.weight)


def test_no_queries_stay_in_the_graph():
    """Tq = 0 under autograd: an empty output attached to the inputs (as F.sdpa's), zero gradients
    for the keys and values."""
    for tk, causal in ((0, True), (5, True), (5, False)):
        q, k, v, _ = qkv((2, 3), 0, tk, 8)
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        out = flash_attention(q, k, v, causal=causal)
        assert out.shape == (2, 3, 0, 8) and out.requires_grad
        out.sum().backward()
        assert q.grad.shape == q.shape and torch.equal(k.grad, torch.zeros_like(k)) and torch.equal(v.grad, torch.zeros_like(v))


def test_matches_torch_sdpa_float32(blocks):
    q, k, v, do = qkv((2, 4), 50, 50, 32, dtype=torch.float32)
    ours = run(flash_attention, q, k, v, do)
    peer = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v, do)
    assert_all_close(ours, peer, 2e-5)
    # Decoding: torch needs the offset causal mask spelled out.
    q, k, v, do = qkv((2, 4), 6, 50, 32, dtype=torch.float32)
    mask = torch.ones(6, 50, dtype=torch.bool).tril(44)
    peer = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), q, k, v, do)
    assert_all_close(run(flash_attention, q, k, v, do), peer, 2e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_keep_their_dtype(dtype):
    q, k, v, do = qkv((2, 3), 40, 40, 32, dtype=torch.float32)
    exact = run(reference_attention, q, k, v, do)
    half = run(flash_attention, *(t.to(dtype) for t in (q, k, v, do)))
    assert all(t.dtype == dtype for t in half)
    tol = 0.05 if dtype == torch.bfloat16 else 0.01
    for x, y in zip(half, exact):
        assert_close(x.float(), y, rtol=tol, atol=tol)


def test_any_strides(blocks):
    """Transposed views, every other position, and keys/values expanded across heads (stride 0,
    whose gradient autograd sums back)."""
    base = torch.randn(2, 30, 3, 4, 16, dtype=F64)  # (batch, seq, {q,k,v}, heads, d) as a fused projection
    q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))  # (2, 4, 30, 16) views
    do = torch.randn(2, 4, 30, 16, dtype=F64)
    assert not q.is_contiguous()
    assert_all_close(run(flash_attention, q, k, v, do), run(reference_attention, q, k, v, do), 1e-10)
    q2, k2, v2, do2 = (t[..., ::2, :] for t in (q, k, v, do))
    assert_all_close(run(flash_attention, q2, k2, v2, do2), run(reference_attention, q2, k2, v2, do2), 1e-10)
    kv = torch.randn(2, 1, 30, 16, dtype=F64, requires_grad=True)
    grads = []
    for fn in (flash_attention, reference_attention):
        out = fn(q, kv.expand(2, 4, 30, 16), kv.expand(2, 4, 30, 16))
        grads.append(torch.autograd.grad(out, kv, do)[0])
    assert_close(grads[0], grads[1], rtol=0, atol=1e-10)


def test_two_intra_op_threads_give_the_reference():
    q, k, v, do = qkv((4, 5), 70, 70, 16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_all_close(run(flash_attention, q, k, v, do), run(reference_attention, q, k, v, do), 1e-10)
    finally:
        torch.set_num_threads(before)


def test_autocast_does_not_lower_the_cpu_kernels_precision():
    q, k, v, do = qkv((2, 3), 40, 40, 32, dtype=torch.float32)
    exact = run(reference_attention, q, k, v, do)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(flash_attention, q, k, v, do)
    assert_all_close(got, exact, 1e-5)


def test_empty_query_block_and_no_grad_path():
    q, k, v, _ = qkv((2,), 0, 5, 8)
    assert flash_attention(q, k, v).shape == (2, 0, 8)
    q, k, v, _ = qkv((2, 3), 9, 9, 8)
    with torch.no_grad():
        assert_close(flash_attention(q, k, v), reference_attention(q, k, v), rtol=0, atol=1e-12)


# -- Bad input ------------------------------------------------------------------------------------


def _bad_cases():
    x = torch.randn(2, 3, 5, 8)
    return [
        ((x, torch.randn(2, 4, 5, 8), x), True, "same leading"),
        ((x, torch.randn(3, 5, 8), x), True, "same leading"),
        ((x, x, torch.randn(2, 3, 6, 8)), True, "k has 5 positions but v has 6"),
        ((x, torch.randn(2, 3, 5, 4), x), True, "head dim"),
        ((x, x.double(), x), True, "one dtype"),
        ((x, x, x.half()), True, "one dtype"),
        ((x.long(), x.long(), x.long()), True, "dtype torch.int64"),
        ((x.to(torch.complex64),) * 3, True, "complex64"),
        ((torch.randn(8), torch.randn(8), torch.randn(8)), True, "seq, head_dim"),
        ((torch.randn(2, 3, 9, 8), x, x), True, "more queries"),
        ((torch.randn(2, 3, 1, 8), torch.randn(2, 3, 0, 8), torch.randn(2, 3, 0, 8)), False, "no keys"),
        ((x, x.to("meta"), x), True, "one device"),
        ((x.to_sparse(), x, x), True, "dense"),
        ((x, [1, 2], x), True, "torch.Tensor"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs_raise_a_clear_error(case):
    (q, k, v), causal, match = _bad_cases()[case]
    with pytest.raises(AttentionError, match=match):
        flash_attention(q, k, v, causal=causal)
    assert issubclass(AttentionError, ValueError)


def test_flash_without_triton_on_cuda_is_an_error_naming_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton now fails
    monkeypatch.delitem(sys.modules, "lm336.attention_triton", raising=False)
    reason = attention.flash_unavailable("cuda", 32)
    assert "Triton" in reason and "model.attention='reference'" in reason
    assert attention.flash_unavailable("cpu", 32) is None
    # The model's choice: "flash" refuses, "auto" falls back to the reference.
    monkeypatch.setattr(attention, "flash_unavailable", lambda device, d, dtype=None: "no Triton here")
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(AttentionError, match="model.attention='flash' cannot run here: no Triton here"):
        choose("flash", q, q)
    assert choose("auto", q, q) == "reference"
    model = TransformerLM(50, 16, 32, 1, 4, 48, 1e4, attention="flash")
    with pytest.raises(AttentionError, match="cannot run here"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_unsupported_head_dim_on_cuda_is_named():
    pytest.importorskip("triton")
    from lm336.attention_triton import triton_unavailable

    reason = triton_unavailable(torch.device("cuda"), 256, torch.bfloat16)  # decided before asking the GPU anything
    assert "head dim d_k = 256" in reason and "num_heads" in reason


def test_attention_option_is_validated_everywhere():
    with pytest.raises(ValueError, match="attention must be one of"):
        TransformerLM(50, 16, 32, 1, 4, 48, 1e4, attention="fast")
    with pytest.raises(ConfigError, match="model.attention must be one of auto, reference, flash"):
        apply_overrides(TrainConfig(), ["model.attention=fast"])
    assert apply_overrides(TrainConfig(), ["model.attention=flash"]).model.attention == "flash"
    with pytest.raises(AttentionError, match="attention must be one of"):
        choose("fast", torch.randn(1, 2, 8), torch.randn(1, 2, 8))


# -- The model ------------------------------------------------------------------------------------

SMALL = dict(vocab_size=50, context_length=40, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=1000.0)


def test_model_logits_and_gradients_equal_across_implementations(blocks):
    torch.manual_seed(0)
    models = {impl: TransformerLM(**SMALL, attention=impl, dtype=F64) for impl in ("reference", "flash", "auto")}
    for m in models.values():
        m.load_state_dict(models["reference"].state_dict())
    ids = torch.randint(0, 50, (3, 37))
    results = {}
    for impl, m in models.items():
        logits = m(ids)
        logits.square().sum().backward()
        results[impl] = (logits, [p.grad for p in m.parameters()])
    for impl in ("flash", "auto"):
        assert_close(results[impl][0], results["reference"][0], rtol=0, atol=1e-10)
        for g, r in zip(results[impl][1], results["reference"][1]):
            assert_close(g, r, rtol=0, atol=1e-10)


def test_model_kv_cache_decoding_with_flash(blocks):
    torch.manual_seed(1)
    model = TransformerLM(**SMALL, attention="flash", dtype=F64)
    ids = torch.randint(0, 50, (2, 30))
    full = model(ids)
    cache = model.new_kv_cache(2)
    pieces = [model(ids[:, :9], kv_cache=cache), model(ids[:, 9:12], kv_cache=cache)]
    pieces += [model(ids[:, t : t + 1], kv_cache=cache) for t in range(12, 30)]
    assert_close(torch.cat(pieces, 1), full, rtol=0, atol=1e-10)
    buffers = [t.data_ptr() for t in cache.keys + cache.values]
    model(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)  # written in place: the same buffers
    assert [t.data_ptr() for t in cache.keys + cache.values] == buffers


def _saved_bytes(model, ids) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(ids).sum().backward()
    return total


def test_flash_keeps_no_score_matrices_for_the_backward():
    """Tensors saved for the backward: the reference keeps (batch, heads, T, T) probabilities per
    layer, flash only q, k, v, the output and one log-sum-exp per row."""
    torch.manual_seed(2)
    cfg = dict(SMALL, context_length=256, num_heads=8)
    ids = torch.randint(0, 50, (2, 256))
    saved = {impl: _saved_bytes(TransformerLM(**cfg, attention=impl), ids) for impl in ("reference", "flash")}
    scores = cfg["num_layers"] * 2 * cfg["num_heads"] * 256 * 256 * 4  # one float32 (B, H, T, T) per layer
    assert saved["reference"] - saved["flash"] >= scores


# -- Training: the same loss curve, exact resume ---------------------------------------------------


@pytest.fixture
def token_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    text = rng.integers(0, 64, size=400)
    path = tmp_path / "tokens.bin"
    np.concatenate([text[s : s + 40] for s in rng.integers(0, 360, size=600)]).astype(np.uint16).tofile(path)
    return path


def _train_cfg(tmp_path, token_file, name, *overrides):
    return apply_overrides(TrainConfig(), [
        "model.vocab_size=64", "model.context_length=24", "model.d_model=32", "model.num_layers=2", "model.num_heads=4",
        "model.d_ff=64", f"data.train_path={token_file}", f"run.out_dir={tmp_path / name}", "run.batch_size=4",
        "run.eval_interval=50", "run.eval_batches=1", "run.log_interval=1", "run.checkpoint_interval=0",
        "run.progress=false", "run.device=cpu", "optimizer.lr=3e-3", "optimizer.warmup_iters=10", *overrides,
    ])  # fmt: skip


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def test_200_steps_flash_and_reference_give_the_same_loss_curve(tmp_path, token_file, monkeypatch):
    from lm336.training import train

    monkeypatch.setattr(attention, "BLOCK_Q", 8)  # several query and key blocks per 24-token sequence
    monkeypatch.setattr(attention, "BLOCK_K", 16)
    curves = {}
    for impl in ("reference", "flash"):
        train(_train_cfg(tmp_path, token_file, impl, "run.max_steps=200", f"model.attention={impl}"))
        curves[impl] = _losses(tmp_path / impl)
    assert len(curves["flash"]) == 200
    assert curves["flash"][-1] < curves["flash"][0] - 1.0  # it learned
    # float32 rounding differs between the two (5e-7 apart after 200 steps when measured)
    assert_close(torch.tensor(curves["flash"]), torch.tensor(curves["reference"]), rtol=1e-5, atol=1e-5)


def test_resume_is_bit_for_bit_with_flash(tmp_path, token_file):
    from lm336.data import read_checkpoint
    from lm336.training import train

    common = ("model.attention=flash", "optimizer.cosine_cycle_iters=30")
    train(_train_cfg(tmp_path, token_file, "resumed", "run.max_steps=15", *common))
    train(_train_cfg(tmp_path, token_file, "resumed", "run.max_steps=30", "run.resume=true", *common))
    train(_train_cfg(tmp_path, token_file, "straight", "run.max_steps=30", *common))
    a, b = (read_checkpoint(tmp_path / name / "ckpt.pt") for name in ("resumed", "straight"))
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")


# -- Our Triton kernels -----------------------------------------------------------------------------

# (lead, tq, tk, d, causal): ragged lengths against the 16/64/128-row tiles, decoding offsets, head
# dims padded to a power of two (8 -> 16, 48 -> 64), non-causal.
TRITON_CASES = [
    ((2, 3), 1, 1, 16, True),
    ((2, 3), 70, 70, 32, True),
    ((1, 2), 130, 130, 64, True),
    ((2,), 40, 40, 128, True),
    ((2, 2), 1, 77, 32, True),
    ((2, 2), 20, 150, 32, True),
    ((1, 2), 33, 77, 16, False),
    ((1, 3), 19, 19, 8, True),
    ((1, 2), 21, 21, 48, True),
]


def check_triton_kernels(device: str, dtypes: tuple[torch.dtype, ...]) -> list[str]:
    """Our Triton kernels against the float64 reference; returns a line per case (raises on a
    mismatch). Runs on CUDA, or on the CPU under TRITON_INTERPRET=1."""
    from lm336.attention_triton import triton_attention

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")  # float32 kernels multiply in IEEE float32 then
    lines = []
    tol = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}
    for dtype in dtypes:
        for lead, tq, tk, d, causal in TRITON_CASES:
            q, k, v, do = qkv(lead, tq, tk, d, dtype=F64, seed=tq + tk + d)
            exact = run(reference_attention, q, k, v, do, causal=causal)
            got = run(triton_attention, *(t.to(device=device, dtype=dtype) for t in (q, k, v, do)), causal=causal)
            for name, x, y in zip(("output", "dq", "dk", "dv"), got, exact):
                assert x.dtype == dtype and x.shape == y.shape, name
                err = ((x.to(F64).cpu() - y).abs() / (1 + y.abs())).max().item()
                assert err < tol[dtype], f"{dtype} {lead} tq={tq} tk={tk} d={d} causal={causal} {name}: error {err:.3g}"
            lines.append(f"{dtype} {lead} tq={tq} tk={tk} d={d} causal={causal}: ok")
    # Strided inputs (a fused projection's views) and a stride-0 gradient (from .sum()).
    base = torch.randn(2, 37, 3, 4, 32, dtype=F64)
    q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))
    exact = run(reference_attention, q, k, v, torch.ones(2, 4, 37, 32, dtype=F64))
    dev = [t.to(device=device, dtype=dtypes[0]) for t in (base,)][0]
    qd, kd, vd = (dev[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))
    out = triton_attention(qd, kd, vd)
    grads = torch.autograd.grad(out.sum(), (qd, kd, vd))
    for x, y in zip((out, *grads), exact):
        assert ((x.to(F64).cpu() - y).abs() / (1 + y.abs())).max().item() < tol[dtypes[0]]
    lines.append("strided inputs, stride-0 gradient: ok")
    # A head dim beyond the kernels is refused by name.
    try:
        triton_attention(*(torch.zeros(1, 1, 4, 160, device=device, dtype=dtypes[0]) for _ in range(3)))
    except AttentionError as e:
        assert "head dim d_k = 160" in str(e)
    else:
        raise AssertionError("head dim 160 was accepted")
    # The kernels are custom operators that torch.compile traces without a graph break. (Under the
    # interpreter the kernels are plain Python functions that cannot see fake tensors: CUDA only.)
    assert hasattr(torch.ops.lm336, "flash_attn_fwd") and hasattr(torch.ops.lm336, "flash_attn_bwd")
    if device == "cuda":
        q, k, v, do = qkv((1, 2), 24, 24, 16, dtype=F64, seed=5)
        exact = run(reference_attention, q, k, v, do)
        compiled = torch.compile(triton_attention, fullgraph=True)
        got = run(compiled, *(t.to(device=device, dtype=dtypes[0]) for t in (q, k, v, do)))
        for x, y in zip(got, exact):
            assert ((x.to(F64).cpu() - y).abs() / (1 + y.abs())).max().item() < tol[dtypes[0]]
    lines.append("custom operators (compiled with fullgraph=True on CUDA): ok")
    return lines


def test_triton_kernels_under_the_interpreter():
    """The CUDA kernels, run by Triton's interpreter on CPU tensors (float32, small shapes)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    code = "import test_attention as t; print('\\n'.join(t.check_triton_kernels('cpu', (torch.float32,))))"
    proc = subprocess.run([sys.executable, "-c", "import torch; " + code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count(": ok") == len(TRITON_CASES) + 2


def test_triton_float32_precision_follows_the_cuda_matmul_setting():
    """The kernels' float32 precision comes from torch.backends.cuda.matmul.fp32_precision (the
    newer setting, under which torch.get_float32_matmul_precision() raises) and from the legacy
    one. A subprocess: the newer setting cannot be undone within one process."""
    pytest.importorskip("triton")
    code = """
import torch, warnings
warnings.simplefilter("ignore")
from lm336.attention_triton import _precision
seen = [_precision(torch.float32)]
torch.set_float32_matmul_precision("high")
seen.append(_precision(torch.float32))
torch.backends.cuda.matmul.fp32_precision = "ieee"
seen.append(_precision(torch.float32))
torch.backends.cuda.matmul.fp32_precision = "tf32"
seen.append(_precision(torch.float32))
torch.backends.cuda.matmul.fp32_precision = "none"
torch.backends.fp32_precision = "tf32"
seen.append(_precision(torch.float32))
print(" ".join(seen))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ieee", "tf32", "ieee", "tf32", "tf32"]


@pytest.mark.gpu
@cuda
def test_triton_kernels_on_cuda():
    lines = check_triton_kernels("cuda", (torch.float32, torch.float16, torch.bfloat16))
    assert len(lines) == 3 * len(TRITON_CASES) + 2


@pytest.mark.gpu
@cuda
def test_compiled_model_on_cuda_matches_the_reference():
    """bf16 autocast + torch.compile (one graph): flash and reference losses and gradients agree."""
    torch.manual_seed(3)
    cfg = dict(SMALL, context_length=256, d_model=128, num_heads=4)
    ids = torch.randint(0, 50, (4, 256), device="cuda")
    results = {}
    for impl in ("reference", "flash"):
        torch.manual_seed(3)
        model = TransformerLM(**cfg, attention=impl, device="cuda")
        fwd = torch.compile(model, fullgraph=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(fwd(ids).float().flatten(0, 1), ids.flatten())
        loss.backward()
        results[impl] = (loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert abs(results["flash"][0] - results["reference"][0]) < 2e-3
    assert_close(results["flash"][1], results["reference"][1], rtol=0.05, atol=2e-3)
    assert choose("auto", torch.randn(1, 1, 4, 32, device="cuda"), torch.randn(1, 1, 4, 32, device="cuda")) == "flash"


@pytest.mark.gpu
@cuda
def test_kv_cache_decoding_on_cuda():
    torch.manual_seed(4)
    model = TransformerLM(**SMALL, attention="flash", device="cuda")
    ids = torch.randint(0, 50, (2, 30), device="cuda")
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache(2)
        pieces = [model(ids[:, :9], kv_cache=cache)] + [model(ids[:, t : t + 1], kv_cache=cache) for t in range(9, 30)]
    assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["flash", "auto"])
def test_model_compiles_as_one_graph_on_the_cpu(impl):
    """torch.compile(fullgraph=True) traces the attention choice and the CPU autograd Functions."""
    torch.manual_seed(5)
    model = TransformerLM(**SMALL, attention=impl)
    ids = torch.randint(0, 50, (2, 21))
    eager = model(ids)
    compiled = torch.compile(model, fullgraph=True, backend="eager")(ids)
    assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    compiled.sum().backward()


def test_model_config_round_trips_the_option():
    cfg = ModelConfig(attention="reference")
    cfg.validate()
    assert TransformerLM.from_config(cfg).config.attention == "reference"

"""Parameter, FLOP and memory accounting against hand-computed values and independent models.

PYTHONPATH=python python -m pytest tests/test_accounting.py -q
"""

from __future__ import annotations

import dataclasses

import pytest

from lm336 import accounting as acc
from lm336.config import ModelConfig

XL = acc.PRESETS["gpt2-xl"]
TINY = ModelConfig(vocab_size=97, context_length=16, d_model=24, num_layers=3, num_heads=4, d_ff=40)


# --- the spec's known values -------------------------------------------------------------------


def test_gpt2_xl_parameters_and_bytes():
    assert acc.count_parameters(XL) == 2_127_057_600
    report = acc.account(XL)
    assert report.parameter_bytes == 8_508_230_400
    assert report.gradient_bytes == 8_508_230_400
    assert report.optimizer_state_bytes == 2 * 8_508_230_400


def test_gpt2_xl_forward_flops():
    assert sum(acc.forward_flops(XL).values()) == 4_513_336_524_800
    assert sum(acc.forward_flops(XL, 16_384).values()) == 149_522_795_724_800
    assert acc.account(XL, context_length=16_384).forward_flops_total == 149_522_795_724_800


def test_gpt2_xl_components_by_hand():
    # Written out from the 2mnp rule, per layer, x 48 layers.
    t, d, dff, v, n = 1024, 1600, 6400, 50_257, 48
    f = acc.forward_flops(XL)
    assert f["attention projections (QKV+O)"] == n * 4 * (2 * t * d * d)
    assert f["attention scores (QK^T)"] == n * 25 * (2 * t * 64 * t)  # per head: (T x d_k) @ (d_k x T)
    assert f["attention-weighted values"] == n * 25 * (2 * t * t * 64)  # per head: (T x T) @ (T x d_k)
    assert f["feed-forward"] == n * 3 * (2 * t * d * dff)
    assert f["lm head"] == 2 * t * d * v
    assert list(f) == list(acc.FLOP_COMPONENTS)


def test_other_presets_parameter_counts():
    def by_hand(v, d, n, dff):
        return 2 * v * d + n * (4 * d * d + 3 * d * dff + 2 * d) + d

    assert acc.count_parameters(acc.PRESETS["gpt2-small"]) == by_hand(50_257, 768, 12, 3072)
    assert acc.count_parameters(acc.PRESETS["gpt2-medium"]) == by_hand(50_257, 1024, 24, 4096)
    assert acc.count_parameters(acc.PRESETS["gpt2-large"]) == by_hand(50_257, 1280, 36, 5120)
    ts = acc.PRESETS["tinystories-17m"]
    shape = (ts.vocab_size, ts.context_length, ts.d_model, ts.d_ff, ts.num_layers, ts.num_heads)
    assert shape == (10_000, 256, 512, 1344, 4, 16)
    assert acc.count_parameters(ts) == 22_696_448
    assert acc.account(ts).non_embedding_parameters == 22_696_448 - 5_120_000


# --- variants change the counts ----------------------------------------------------------------


def test_variants_parameter_counts():
    v, d, n, dff = 97, 24, 3, 40
    base = 2 * v * d + n * (4 * d * d + 3 * d * dff + 2 * d) + d
    assert acc.count_parameters(TINY) == base
    assert acc.count_parameters(dataclasses.replace(TINY, ffn="silu")) == base - n * d * dff
    assert acc.count_parameters(dataclasses.replace(TINY, norm="none")) == base - (2 * n + 1) * d
    assert acc.count_parameters(dataclasses.replace(TINY, norm="post")) == base
    assert acc.count_parameters(dataclasses.replace(TINY, tie_embeddings=True)) == base - v * d
    assert acc.count_parameters(dataclasses.replace(TINY, position="nope")) == base  # RoPE has no weights


def test_default_d_ff_rule():
    assert acc.resolve_d_ff(ModelConfig(d_model=512, d_ff=None)) == 1344
    assert acc.resolve_d_ff(ModelConfig(d_model=768, d_ff=None)) == 2048
    assert acc.resolve_d_ff(ModelConfig(d_model=512, d_ff=None, ffn="silu")) == 2048
    assert acc.resolve_d_ff(ModelConfig(d_model=512, d_ff=1000)) == 1000


def test_silu_flops_use_two_matrices():
    f = acc.forward_flops(dataclasses.replace(TINY, ffn="silu"), 16)
    assert f["feed-forward"] == 3 * 2 * (2 * 16 * 24 * 40)


def test_flops_scale_with_batch_and_per_token():
    one = acc.forward_flops(TINY, 16, batch_size=1)
    five = acc.forward_flops(TINY, 16, batch_size=5)
    assert all(five[k] == 5 * one[k] for k in one)
    assert acc.flops_per_token(TINY, training=False) == sum(one.values()) / 16
    assert acc.flops_per_token(TINY) == 3 * sum(one.values()) / 16
    # nanoGPT's estimate 6 N + 12 L T d uses non-embedding parameters N: the same thing for an
    # untied SwiGLU model once norm gains (no matmul) are left out.
    n_matmul = acc.count_parameters(TINY) - 97 * 24 - (2 * 3 + 1) * 24
    assert acc.flops_per_token(TINY) == 6 * n_matmul + 12 * 3 * 16 * 24
    report = acc.account(TINY, batch_size=5)
    assert report.training_flops_total == 3 * report.forward_flops_total == 3 * 5 * sum(one.values())
    assert report.backward_flops_total == 2 * report.forward_flops_total


# --- memory ------------------------------------------------------------------------------------


def test_activation_elements_by_hand():
    b, t, d, h, dff, n, v = 2, 16, 24, 4, 40, 3, 97
    act = acc.activation_breakdown(TINY, b, t)
    per_layer = (
        2 * (b * t * d + b * t)  # ln1, ln2: input + 1/rms
        + b * t * d  # shared q/k/v projection input
        + 2 * b * t * d  # rotated q, k
        + b * h * t * t  # softmax output
        + b * t * d  # v
        + b * t * d  # merged heads, output_proj input
        + b * t * d
        + 4 * b * t * dff  # swiglu: input, w1 x, w3 x, silu(w1 x), product
    )
    once = (b * t * d + b * t) + b * t * d + b * t * v + b * t  # ln_final, lm head input, logits + lse
    assert sum(act.values()) - act["token ids"] == n * per_layer + once
    assert act["token ids"] == b * t
    report = acc.account(TINY, batch_size=b, context_length=t)
    assert report.activation_bytes == 4 * (n * per_layer + once) + 8 * b * t


def test_memory_dtypes_and_batch_linearity():
    r32 = acc.account(TINY, batch_size=3)
    r16 = acc.account(TINY, batch_size=3, dtype="bf16")
    mixed = acc.account(TINY, batch_size=3, dtype="float32", activation_dtype="bfloat16")
    p = acc.count_parameters(TINY)
    assert r32.static_bytes == 4 * 4 * p and r16.static_bytes == 4 * 2 * p
    assert mixed.static_bytes == r32.static_bytes
    ids = 8 * 3 * TINY.context_length
    assert mixed.activation_bytes - ids == (r32.activation_bytes - ids) // 2
    r6 = acc.account(TINY, batch_size=6)
    assert r6.activation_bytes == 2 * r32.activation_bytes
    assert r6.total_bytes == r6.static_bytes + r6.activation_bytes
    budget = r32.static_bytes + 7 * r32.activation_bytes_per_sequence + 1
    assert r32.max_batch_size(budget) == 7
    assert r32.max_batch_size(r32.static_bytes - 1) == 0


def test_norm_none_keeps_fewer_activations():
    with_norm = acc.activation_breakdown(TINY, 1)
    without = acc.activation_breakdown(dataclasses.replace(TINY, norm="none"), 1)
    t, d = TINY.context_length, TINY.d_model
    assert sum(with_norm.values()) - sum(without.values()) == 7 * (t * d + t)


# --- against an independent torch.nn model ------------------------------------------------------


def _reference_model(cfg: ModelConfig):
    """A GPT built from torch.nn layers with the spec's state-dict names, written independently."""
    nn = pytest.importorskip("torch.nn")
    d, dff = cfg.d_model, acc.resolve_d_ff(cfg)

    def norm():
        return nn.RMSNorm(d) if cfg.norm != "none" else None

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.output_proj = (nn.Linear(d, d, bias=False) for _ in range(4))

    class FFN(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(d, dff, bias=False)
            self.w2 = nn.Linear(dff, d, bias=False)
            if cfg.ffn == "swiglu":
                self.w3 = nn.Linear(d, dff, bias=False)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn, self.ln2, self.ffn = norm(), Attn(), norm(), FFN()

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embeddings = nn.Embedding(cfg.vocab_size, d)
            self.layers = nn.ModuleList(Block() for _ in range(cfg.num_layers))
            self.ln_final = norm()
            self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
            if cfg.tie_embeddings:
                self.lm_head.weight = self.token_embeddings.weight

    return LM()


@pytest.mark.parametrize(
    "changes", [{}, {"ffn": "silu"}, {"norm": "none"}, {"tie_embeddings": True}, {"norm": "post", "position": "nope", "d_ff": None}]
)
def test_against_torch_nn_reference(changes):
    cfg = dataclasses.replace(TINY, **changes)
    model = _reference_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == acc.count_parameters(cfg)
    assert acc.check_parameter_count(cfg, model) == acc.count_parameters(cfg)


def test_check_names_what_differs():
    model = _reference_model(TINY)
    with pytest.raises(ValueError, match=r"layers\.0\.ffn\.w3\.weight"):
        acc.check_parameter_count(dataclasses.replace(TINY, ffn="silu"), model)
    with pytest.raises(ValueError, match="shape"):
        acc.check_parameter_count(dataclasses.replace(TINY, d_ff=41), model)


def test_bad_configs():
    with pytest.raises(ValueError, match="divisible"):
        acc.count_parameters(dataclasses.replace(TINY, num_heads=5))
    with pytest.raises(ValueError, match="norm"):
        acc.count_parameters(dataclasses.replace(TINY, norm="layer"))
    with pytest.raises(ValueError, match="d_model"):
        acc.count_parameters(dataclasses.replace(TINY, d_model=0))
    with pytest.raises(ValueError, match="dtype"):
        acc.account(TINY, dtype="int3")


# --- the command line --------------------------------------------------------------------------


def test_cli_gpt2_xl_table(capsys):
    assert acc.main(["--preset", "gpt2-xl", "--memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    for text in (
        "2,127,057,600",
        "8,508,230,400",
        "4,513,336,524,800",
        "13,540,009,574,400",
        "attention scores (QK^T)",
        "AdamW state",
        "largest batch",
        "context length",
    ):
        assert text in out, text
    assert acc.main(["--preset", "gpt2-xl", "--context-length", "16384"]) == 0
    assert "149,522,795,724,800" in capsys.readouterr().out


def test_cli_custom_config_and_errors(capsys):
    args = [
        "--vocab-size",
        "97",
        "--context-length",
        "16",
        "--d-model",
        "24",
        "--num-layers",
        "3",
        "--num-heads",
        "4",
        "--d-ff",
        "40",
        "--batch-size",
        "2",
        "--dtype",
        "bf16",
    ]
    assert acc.main(args) == 0
    out = capsys.readouterr().out
    assert f"{acc.count_parameters(TINY):,}" in out and "bfloat16" in out
    assert acc.main(args + ["--num-heads", "5"]) == 2
    assert "divisible" in capsys.readouterr().err
    assert acc.main(["--preset", "gpt2-small", "--batch-size", "0"]) == 2
    assert "batch-size" in capsys.readouterr().err


# --- against the package's own TransformerLM ----------------------------------------------------


@pytest.mark.parametrize("preset", sorted(acc.PRESETS))
def test_presets_match_transformer_lm(preset):
    pytest.importorskip("torch")
    # Built on the meta device: GPT-2 XL costs no memory.
    assert acc.check_parameter_count(acc.PRESETS[preset]) == acc.count_parameters(acc.PRESETS[preset])


@pytest.mark.parametrize(
    "changes",
    [
        {"ffn": "silu"},
        {"norm": "none"},
        {"norm": "post"},
        {"tie_embeddings": True},
        {"position": "nope", "d_ff": None},
        {"ffn": "silu", "d_ff": None},
    ],
)
def test_variants_match_transformer_lm(changes):
    torch = pytest.importorskip("torch")
    from lm336.model import TransformerLM

    cfg = dataclasses.replace(TINY, **changes)
    model = TransformerLM.from_config(cfg)
    assert sum(p.numel() for p in model.parameters()) == acc.count_parameters(cfg)
    assert acc.check_parameter_count(cfg, model) == acc.count_parameters(cfg)
    assert isinstance(model.lm_head.weight, torch.Tensor)


@pytest.mark.parametrize("changes", [{}, {"ffn": "silu"}, {"norm": "none"}])
def test_activation_model_bounds_what_autograd_keeps(changes):
    """The accounting counts each tensor backward needs once; autograd on the unfused model keeps
    extra copies (scores and probabilities, sigmoid(a) inside SiLU, the concatenated QKV weight),
    so the measured bytes must lie between 1x and 3x the accounted ones (about 1.8x measured)."""
    torch = pytest.importorskip("torch")
    from lm336.model import TransformerLM

    cfg = dataclasses.replace(TINY, context_length=32, **changes)
    model = TransformerLM.from_config(cfg)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, cfg.vocab_size, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(ids)
        (torch.logsumexp(logits, -1) - logits[..., 0]).mean()  # what a cross-entropy keeps
    accounted = acc.account(cfg, batch_size=3).activation_bytes
    assert accounted <= sum(kept.values()) <= 3 * accounted


def test_cli_checks_against_the_model(capsys):
    pytest.importorskip("torch")
    assert acc.main(["--preset", "tinystories-17m", "--check-model"]) == 0
    assert "TransformerLM has 22,696,448 parameters, as accounted" in capsys.readouterr().out


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize("position", ["rope", "nope"])
@pytest.mark.parametrize("ffn", ["swiglu", "silu"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("d_ff", [40, None])
def test_count_equals_the_real_model_for_every_variant(norm, position, ffn, tied, d_ff):
    """The one parameter count (lm336.accounting) against sum(p.numel()) of a real TransformerLM."""
    from lm336.model import TransformerLM

    cfg = dataclasses.replace(TINY, norm=norm, position=position, ffn=ffn, tie_embeddings=tied, d_ff=d_ff)
    model = TransformerLM.from_config(cfg, device="meta")
    assert acc.count_parameters(cfg) == sum(p.numel() for p in model.parameters()) == model.num_parameters()

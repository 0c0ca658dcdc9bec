"""Resource accounting for a Transformer LM config: parameters, memory and FLOPs, per component.

Everything is computed from the shape of a `ModelConfig` alone (no tensors are allocated), so it
works for GPT-2 XL on a laptop. Known values it reproduces exactly (GPT-2 XL shape, SwiGLU, untied):
2,127,057,600 parameters (8,508,230,400 bytes in float32), 4,513,336,524,800 forward matmul FLOPs
for one sequence of 1,024 tokens and 149,522,795,724,800 for one sequence of 16,384 tokens.

    lm336 accounting --preset gpt2-xl --context-length 16384 --batch-size 4

FLOP model (matmuls only; NOTE: elementwise work such as norms, softmax, RoPE, the activation
function, the loss and the optimizer update is not counted; it is a few percent at most):
- an (m x n) @ (n x p) matmul costs 2mnp FLOPs (one multiply and one add per term);
- per layer and sequence of T tokens: attention projections (Q, K, V, output) 2 T 4 d^2; attention
  scores Q K^T 2 T^2 d; attention-weighted values 2 T^2 d (summed over heads; the causal mask is not
  exploited, as a dense matmul does not); feed-forward 2 T 3 d d_ff (SwiGLU: w1, w3, w2) or
  2 T 2 d d_ff (SiLU: w1, w2); the LM head 2 T d V once; the embedding lookup 0;
- backward = 2 x forward: every matmul C = A B needs dA = dC B^T and dB = A^T dC, each as costly as
  the forward product (the score and value products have two activation operands, same rule). A
  training step is therefore 3 x the forward FLOPs.

Activation model (the tensors a training step keeps from forward for backward; each tensor that
several backward ops read is counted once; nothing is recomputed; per layer, batch B, T tokens):
- each RMSNorm keeps its input (B T d) and the per-token 1/rms (B T);
- the Q/K/V projections read their (shared) input, B T d; the output projection reads the merged
  head outputs, B T d;
- the scores Q K^T read the rotated queries and keys, 2 B T d (RoPE itself reads only its cached
  sin/cos buffers); the softmax keeps its output, the attention probabilities, B h T^2, which the
  weighted-values product reads again, plus the values, B T d;
- SwiGLU keeps its input (B T d), a = w1 x and b = w3 x, silu(a) and silu(a) * b: 4 B T d_ff; the
  SiLU variant keeps its input, a and silu(a): 2 B T d_ff;
- once per model: the token ids (int64, B T), the final norm (as above), the LM head input (B T d),
  and the float logits plus the log-sum-exp that cross-entropy's backward reads (B T V + B T).
The residual additions keep nothing. Activations are counted in float32 unless told otherwise
(`activation_dtype`). NOTE: this is the floor for an implementation without recomputation. Autograd
on an unfused from-first-principles model keeps extra copies (the raw scores beside the
probabilities, sigmoid(a) inside SiLU, a concatenated QKV weight per layer): for this package's
TransformerLM it measures about 1.8x this figure (tests/test_accounting.py checks 1x to 3x), while
fused attention kernels keep far less than B h T^2 per layer.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace

from .common import command
from .config import ModelConfig, default_d_ff


# Presets. The GPT-2 shapes use this package's architecture (RMSNorm, RoPE, SwiGLU with three
# d_model x d_ff matrices, untied embeddings), as in the spec's GPT-2 XL figures.
def _gpt2(num_layers: int, d_model: int, num_heads: int, d_ff: int) -> ModelConfig:
    return ModelConfig(vocab_size=50_257, context_length=1024, d_model=d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff)


PRESETS: dict[str, ModelConfig] = {
    "gpt2-small": _gpt2(12, 768, 12, 3072),
    "gpt2-medium": _gpt2(24, 1024, 16, 4096),
    "gpt2-large": _gpt2(36, 1280, 20, 5120),
    "gpt2-xl": _gpt2(48, 1600, 25, 6400),
    "tinystories-17m": ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344),
}

DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
_DTYPE_ALIASES = {
    "fp64": "float64",
    "double": "float64",
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp8": "float8",
}
TOKEN_ID_BYTES = 8  # token ids are int64 tensors

# Row names, in display order. FLOP_COMPONENTS follows the brief's split of a forward pass.
FLOP_COMPONENTS = (
    "attention projections (QKV+O)",
    "attention scores (QK^T)",
    "attention-weighted values",
    "feed-forward",
    "lm head",
)


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name: `dtype_bytes("bf16") -> 2`."""
    name = _DTYPE_ALIASES.get(str(dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def _canonical_dtype(dtype: str) -> str:
    dtype_bytes(dtype)  # validates
    name = str(dtype).removeprefix("torch.")
    return _DTYPE_ALIASES.get(name, name)


def resolve_d_ff(config: ModelConfig) -> int:
    """The feed-forward width the model uses: `config.d_ff`, or when None the spec's default
    (`lm336.config.default_d_ff`: 512 -> 1344 for SwiGLU, 4 d_model for SiLU)."""
    if config.d_ff is not None:
        return int(config.d_ff)
    return default_d_ff(config.d_model, config.ffn)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model by its state-dict name (SPEC section 4), with its shape.

    A tied lm_head shares token_embeddings.weight and is not listed (as `named_parameters()`
    lists a shared tensor once). RoPE has no parameters (its sin/cos are buffers).

        parameter_shapes(ModelConfig(num_layers=1, ...))["layers.0.attn.q_proj.weight"] -> (d, d)
    """
    config.validate()
    d, v, d_ff = config.d_model, config.vocab_size, resolve_d_ff(config)
    shapes: dict[str, tuple[int, ...]] = {"token_embeddings.weight": (v, d)}
    for i in range(config.num_layers):
        p = f"layers.{i}."
        for proj in ("q", "k", "v", "output"):
            shapes[f"{p}attn.{proj}_proj.weight"] = (d, d)
        if config.norm != "none":
            shapes[f"{p}ln1.weight"] = (d,)
            shapes[f"{p}ln2.weight"] = (d,)
        shapes[f"{p}ffn.w1.weight"] = (d_ff, d)
        shapes[f"{p}ffn.w2.weight"] = (d, d_ff)
        if config.ffn == "swiglu":
            shapes[f"{p}ffn.w3.weight"] = (d_ff, d)
    if config.norm != "none":
        shapes["ln_final.weight"] = (d,)
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (v, d)
    return shapes


def parameter_breakdown(config: ModelConfig) -> dict[str, int]:
    """Parameters per component, summed over layers, in display order.

    Components: token embeddings, attention (q, k, v, output), feed-forward, RMSNorm gains (ln1,
    ln2 per layer and ln_final), lm head (0 when tied to the embeddings).
    """
    config.validate()
    d, v, d_ff, n = config.d_model, config.vocab_size, resolve_d_ff(config), config.num_layers
    ffn_matrices = 3 if config.ffn == "swiglu" else 2
    norms = (2 * n + 1) * d if config.norm != "none" else 0
    return {
        "token embeddings": v * d,
        "attention (q, k, v, output)": n * 4 * d * d,
        "feed-forward": n * ffn_matrices * d * d_ff,
        "norm gains": norms,
        "lm head": 0 if config.tie_embeddings else v * d,
    }


def count_parameters(config: ModelConfig) -> int:
    """Total trainable parameters of `TransformerLM.from_config(config)` (shared tensors once).

    count_parameters(PRESETS["gpt2-xl"]) -> 2_127_057_600
    """
    return sum(parameter_breakdown(config).values())


def check_parameter_count(config: ModelConfig, model=None) -> int:
    """Compare the analytical count with a real `TransformerLM` and return the count.

    The model is built on the `meta` device (no memory, so GPT-2 XL is fine) unless one is given.
    Raises RuntimeError if torch or the model is unavailable, ValueError naming every parameter
    whose presence or shape differs.
    """
    if model is None:
        try:
            import torch

            from .model import TransformerLM
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(f"cannot check against a model: {exc}") from exc
        model = TransformerLM.from_config(config, device=torch.device("meta"))
    expected = parameter_shapes(config)
    actual = {name: tuple(p.shape) for name, p in model.named_parameters()}
    problems = [f"{name}: model has no such parameter (expected {shape})" for name, shape in expected.items() if name not in actual]
    problems += [f"{name}: not in the accounting (shape {shape})" for name, shape in actual.items() if name not in expected]
    problems += [
        f"{name}: model shape {actual[name]}, accounting expects {shape}"
        for name, shape in expected.items()
        if name in actual and actual[name] != shape
    ]
    total = sum(p.numel() for p in model.parameters())
    if problems or total != count_parameters(config):
        detail = "\n  ".join(problems) or "(names and shapes agree; shared-tensor counting differs)"
        raise ValueError(f"parameter accounting ({count_parameters(config):,}) disagrees with the model ({total:,}):\n  {detail}")
    return total


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------


def forward_flops(config: ModelConfig, context_length: int | None = None, batch_size: int = 1) -> dict[str, int]:
    """Forward-pass matmul FLOPs per component for `batch_size` sequences of `context_length`
    tokens (default: the config's context length), summed over layers, in FLOP_COMPONENTS order.

        sum(forward_flops(PRESETS["gpt2-xl"]).values()) -> 4_513_336_524_800
    """
    config.validate()
    t = config.context_length if context_length is None else int(context_length)
    if t <= 0 or batch_size <= 0:
        raise ValueError(f"context_length and batch_size must be positive, got {t} and {batch_size}")
    d, v, d_ff, n = config.d_model, config.vocab_size, resolve_d_ff(config), config.num_layers
    ffn_matrices = 3 if config.ffn == "swiglu" else 2
    per_sequence = {
        "attention projections (QKV+O)": n * 2 * t * 4 * d * d,
        "attention scores (QK^T)": n * 2 * t * t * d,
        "attention-weighted values": n * 2 * t * t * d,
        "feed-forward": n * 2 * t * ffn_matrices * d * d_ff,
        "lm head": 2 * t * d * v,
    }
    return {name: batch_size * flops for name, flops in per_sequence.items()}


def flops_per_token(config: ModelConfig, training: bool = True, context_length: int | None = None) -> float:
    """Matmul FLOPs per token for full sequences of `context_length` tokens (default: the config's),
    for MFU. A training step (forward + backward) is 3 x the forward pass.

        flops_per_token(PRESETS["gpt2-xl"], training=False) -> 4_513_336_524_800 / 1024
    """
    t = config.context_length if context_length is None else int(context_length)
    forward = sum(forward_flops(config, t).values()) / t
    return 3 * forward if training else forward


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def activation_breakdown(config: ModelConfig, batch_size: int, context_length: int | None = None) -> dict[str, int]:
    """Elements kept from the forward pass for backward, per component, summed over layers
    (the module docstring gives the model). "token ids" counts int64 elements; the rest are in
    the activation dtype.
    """
    config.validate()
    b = int(batch_size)
    t = config.context_length if context_length is None else int(context_length)
    if b <= 0 or t <= 0:
        raise ValueError(f"batch_size and context_length must be positive, got {b} and {t}")
    d, v, d_ff, n, h = config.d_model, config.vocab_size, resolve_d_ff(config), config.num_layers, config.num_heads
    bt = b * t
    norm = bt * d + bt  # input + per-token 1/rms
    has_norm = config.norm != "none"
    ffn_kept = 4 if config.ffn == "swiglu" else 2
    return {
        "token ids": bt,
        "norms (inputs, 1/rms)": (2 * n + 1) * norm if has_norm else 0,
        "attention projections (QKV+O) inputs": n * 2 * bt * d,
        "queries and keys": n * 2 * bt * d,
        "attention probabilities": n * b * h * t * t,
        "values": n * bt * d,
        "feed-forward": n * (bt * d + ffn_kept * bt * d_ff),
        "lm head input": bt * d,
        "logits and log-sum-exp": bt * v + bt,
    }


@dataclass(frozen=True)
class AccountingReport:
    """Parameters, FLOPs and training memory of one config at one context length and batch size.

    FLOP figures are for the whole batch; `*_per_sequence` figures divide by the batch size.
    Memory assumes plain AdamW training: parameters, gradients and two moments in `dtype`,
    activations in `activation_dtype` (token ids in int64).
    """

    config: ModelConfig
    context_length: int  # tokens per sequence
    batch_size: int  # sequences per step
    dtype: str  # parameters, gradients and AdamW moments
    activation_dtype: str  # saved activations
    parameters: dict[str, int] = field(default_factory=dict)  # component -> count
    forward_flops: dict[str, int] = field(default_factory=dict)  # component -> FLOPs for the batch
    activations: dict[str, int] = field(default_factory=dict)  # component -> elements for the batch

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters.values())

    @property
    def non_embedding_parameters(self) -> int:
        """Parameters that cost FLOPs (everything but the embedding lookup table)."""
        return self.total_parameters - self.parameters["token embeddings"]

    @property
    def forward_flops_total(self) -> int:
        return sum(self.forward_flops.values())

    @property
    def backward_flops_total(self) -> int:
        return 2 * self.forward_flops_total

    @property
    def training_flops_total(self) -> int:
        """One optimizer step on the batch: forward + backward (= 3 x forward), matmuls only."""
        return 3 * self.forward_flops_total

    @property
    def forward_flops_per_sequence(self) -> int:
        return self.forward_flops_total // self.batch_size

    @property
    def parameter_bytes(self) -> int:
        return self.total_parameters * dtype_bytes(self.dtype)

    @property
    def gradient_bytes(self) -> int:
        return self.total_parameters * dtype_bytes(self.dtype)

    @property
    def optimizer_state_bytes(self) -> int:
        """AdamW's first and second moments: two tensors the size of the parameters."""
        return 2 * self.total_parameters * dtype_bytes(self.dtype)

    def activation_bytes_by_component(self) -> dict[str, int]:
        size = dtype_bytes(self.activation_dtype)
        return {name: elements * (TOKEN_ID_BYTES if name == "token ids" else size) for name, elements in self.activations.items()}

    @property
    def activation_bytes(self) -> int:
        return sum(self.activation_bytes_by_component().values())

    @property
    def static_bytes(self) -> int:
        """Memory that does not depend on the batch size: parameters, gradients, AdamW state."""
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_state_bytes

    @property
    def total_bytes(self) -> int:
        """Peak training memory under this model (no allocator overhead, no temporaries)."""
        return self.static_bytes + self.activation_bytes

    @property
    def activation_bytes_per_sequence(self) -> int:
        return self.activation_bytes // self.batch_size

    def max_batch_size(self, memory_bytes: int) -> int:
        """Largest batch size whose training memory fits in `memory_bytes` (0 if none does)."""
        return max(0, (int(memory_bytes) - self.static_bytes) // self.activation_bytes_per_sequence)

    def fit_text(self, memory_bytes: int) -> str:
        """The largest batch that fits in `memory_bytes`, or why nothing does, for people.

        fit_text(80e9) -> "41"; fit_text(1e9) -> "does not fit: parameters, gradients and AdamW state alone need ..."
        """
        largest = self.max_batch_size(memory_bytes)
        if largest > 0:
            return f"{largest:,}"
        if self.static_bytes > memory_bytes:
            return f"does not fit: parameters, gradients and AdamW state alone need {_bytes(self.static_bytes)}"
        need = self.static_bytes + self.activation_bytes_per_sequence
        return f"does not fit: one sequence needs {_bytes(need)} in all"


def account(
    config: ModelConfig, context_length: int | None = None, batch_size: int = 1, dtype: str = "float32", activation_dtype: str | None = None
) -> AccountingReport:
    """Build the full report for `config`.

    Args:
        config: the model's shape and variants.
        context_length: tokens per sequence (default `config.context_length`; RoPE/NoPE models
            have no positional table, so a longer value changes FLOPs and activations only).
        batch_size: sequences per training step.
        dtype: dtype of parameters, gradients and AdamW moments ("float32", "bfloat16", ...).
        activation_dtype: dtype of saved activations (default: `dtype`).
    """
    t = config.context_length if context_length is None else int(context_length)
    dtype = _canonical_dtype(dtype)
    activation_dtype = _canonical_dtype(activation_dtype or dtype)
    return AccountingReport(
        config=config,
        context_length=t,
        batch_size=int(batch_size),
        dtype=dtype,
        activation_dtype=activation_dtype,
        parameters=parameter_breakdown(config),
        forward_flops=forward_flops(config, t, batch_size),
        activations=activation_breakdown(config, batch_size, t),
    )


# ---------------------------------------------------------------------------------------------
# Table rendering and the command line
# ---------------------------------------------------------------------------------------------


def _bytes(n: int) -> str:
    """`_bytes(8_508_230_400) -> '8,508,230,400 B (7.92 GiB)'`"""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n:,} B ({n / scale:.2f} {unit})"
    return f"{n:,} B"


def _flops(n: float) -> str:
    """`_flops(4.5e12) -> '4.51 TFLOP'`"""
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:,.0f} FLOP"


def _table(title: str, header: tuple[str, ...], rows: list[tuple], footer: list[tuple] = ()) -> str:
    """Aligned text table: first column left, the others right."""
    cells = [tuple(str(c) for c in row) for row in (header, *rows, *footer)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title, line(cells[0]), rule, *(line(r) for r in cells[1 : 1 + len(rows)])]
    if footer:
        out += [rule, *(line(r) for r in cells[1 + len(rows) :])]
    return "\n".join(out)


def _share(part: float, total: float) -> str:
    return f"{100 * part / total:.2f}%" if total else "-"


def flop_shares_by_context(config: ModelConfig, context_lengths: list[int]) -> list[tuple[int, dict[str, float]]]:
    """For each context length, each component's share of the forward FLOPs (fractions summing to 1)."""
    result = []
    for t in context_lengths:
        flops = forward_flops(config, t)
        total = sum(flops.values())
        result.append((t, {name: f / total for name, f in flops.items()}))
    return result


def _attention_half_context(config: ModelConfig) -> int:
    """Context length at which a layer's score + weighted-value FLOPs equal all its other matmuls."""
    k = 3 if config.ffn == "swiglu" else 2
    return 2 * config.d_model + k * resolve_d_ff(config) // 2


def format_report(report: AccountingReport, name: str | None = None, memory_bytes: int | None = None) -> str:
    """The human-readable breakdown `lm336 accounting` prints."""
    c, r = report.config, report
    t, b = r.context_length, r.batch_size
    d_ff = resolve_d_ff(c)
    sections = []
    sections.append(
        f"Model {name or '(custom)'}: vocab {c.vocab_size:,}, context {c.context_length:,}, d_model {c.d_model:,}, "
        f"{c.num_layers} layers, {c.num_heads} heads (d_k {c.d_model // c.num_heads}), d_ff {d_ff:,}\n"
        f"  norm {c.norm}, position {c.position}, ffn {c.ffn}, "
        f"{'tied' if c.tie_embeddings else 'untied'} embeddings; "
        f"accounted at context {t:,}, batch {b}, {r.dtype} weights/grads/AdamW state, "
        f"{r.activation_dtype} activations"
    )

    total_p = r.total_parameters
    rows = [(k, f"{v:,}", _share(v, total_p)) for k, v in r.parameters.items()]
    sections.append(
        _table(
            "Parameters",
            ("component", "parameters", "share"),
            rows,
            [
                ("total", f"{total_p:,}", "100.00%"),
                (
                    "non-embedding (all but the lookup table)",
                    f"{r.non_embedding_parameters:,}",
                    _share(r.non_embedding_parameters, total_p),
                ),
                (f"bytes in {r.dtype}", f"{r.parameter_bytes:,}", ""),
            ],
        )
    )

    per_seq = {k: v // b for k, v in r.forward_flops.items()}
    total_f = r.forward_flops_per_sequence
    rows = [(k, f"{v:,}", _flops(v), _share(v, total_f)) for k, v in per_seq.items()]
    rows.insert(0, ("embedding lookup", "0", "0 FLOP", "0.00%"))
    sections.append(
        _table(
            f"Forward FLOPs for one sequence of {t:,} tokens (matmuls, 2mnp each; summed over layers)",
            ("component", "FLOPs", "", "share"),
            rows,
            [
                ("forward, one sequence", f"{total_f:,}", _flops(total_f), "100.00%"),
                (f"forward, batch of {b}", f"{r.forward_flops_total:,}", _flops(r.forward_flops_total), ""),
                (f"backward, batch of {b} (2 x forward)", f"{r.backward_flops_total:,}", _flops(r.backward_flops_total), ""),
                (f"training step, batch of {b} (3 x forward)", f"{r.training_flops_total:,}", _flops(r.training_flops_total), ""),
                ("per token: forward / training", f"{flops_per_token(c, False, t):,.0f}", f"{flops_per_token(c, True, t):,.0f}", ""),
            ],
        )
    )

    act = r.activation_bytes_by_component()
    rows = [
        ("parameters", _bytes(r.parameter_bytes), _share(r.parameter_bytes, r.total_bytes)),
        ("gradients", _bytes(r.gradient_bytes), _share(r.gradient_bytes, r.total_bytes)),
        ("AdamW state (m, v)", _bytes(r.optimizer_state_bytes), _share(r.optimizer_state_bytes, r.total_bytes)),
        (f"activations, batch of {b}", _bytes(r.activation_bytes), _share(r.activation_bytes, r.total_bytes)),
    ]
    rows += [(f"  {k}", _bytes(v), _share(v, r.total_bytes)) for k, v in act.items()]
    footer = [
        ("total (training step peak)", _bytes(r.total_bytes), "100.00%"),
        ("activations per sequence", _bytes(r.activation_bytes_per_sequence), ""),
        ("static (parameters + gradients + AdamW)", _bytes(r.static_bytes), ""),
    ]
    if memory_bytes:
        footer.append((f"largest batch in {_bytes(memory_bytes)}", r.fit_text(memory_bytes), ""))
    sections.append(_table("Training memory (saved activations: see `pydoc lm336.accounting`)", ("item", "bytes", "share"), rows, footer))

    contexts = sorted({256, 1024, 4096, 16384, c.context_length, t})
    shares = flop_shares_by_context(c, contexts)
    header = ("context", *("QKV+O", "QK^T", "weights x V", "FFN", "lm head"), "forward FLOPs")
    rows = [
        (f"{ctx:,}", *(f"{100 * s[k]:.1f}%" for k in FLOP_COMPONENTS), _flops(sum(forward_flops(c, ctx).values()))) for ctx, s in shares
    ]
    sections.append(
        _table("How the forward FLOP shares move with context length (one sequence)", header, rows)
        + "\n  Projections, FFN and lm head grow linearly with the context T, the scores and weighted"
        "\n  values quadratically: per layer they take 4 T^2 d of 8 T d^2 + 4 T^2 d + 2 k T d d_ff"
        "\n  FLOPs (k = 3 matrices for SwiGLU, 2 for SiLU), a share of T / (T + 2 d + k d_ff / 2),"
        f"\n  which passes one half at T = 2 d + k d_ff / 2 = {_attention_half_context(c):,} tokens"
        " for this model."
    )
    return "\n\n".join(sections)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 accounting",
        description="Parameters, training memory and forward/backward FLOPs of a Transformer LM, per component.",
        epilog="Example: lm336 accounting --preset gpt2-xl --context-length 16384 --batch-size 4 --memory-gb 80",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named shape (flags below override it)")
    default = ModelConfig()
    for flag, help_ in (
        ("vocab-size", "vocabulary size (tokens)"),
        ("d-model", "residual width"),
        ("num-layers", "Transformer blocks"),
        ("num-heads", "attention heads"),
    ):
        fallback = getattr(default, flag.replace("-", "_"))
        p.add_argument(f"--{flag}", type=int, help=f"{help_} (default: preset or {fallback})")
    p.add_argument(
        "--d-ff",
        type=int,
        help="feed-forward width (default: preset or 1344); 0 = the default rule (8/3 d_model rounded to a multiple of 64 for swiglu, 4 d_model for silu)",
    )
    p.add_argument("--context-length", type=int, help="tokens per sequence (default: preset or 256); parameters do not depend on it")
    p.add_argument("--norm", choices=("pre", "post", "none"), help="normalisation placement")
    p.add_argument("--position", choices=("rope", "nope"), help="position encoding")
    p.add_argument("--ffn", choices=("swiglu", "silu"), help="feed-forward variant")
    p.add_argument(
        "--tie-embeddings", action=argparse.BooleanOptionalAction, default=None, help="share token_embeddings.weight with lm_head.weight"
    )
    p.add_argument("--batch-size", type=int, default=1, help="sequences per training step (default 1)")
    p.add_argument(
        "--dtype",
        default="float32",
        help="dtype of parameters, gradients and AdamW state: float32, bfloat16, float16, float64 (default float32)",
    )
    p.add_argument("--activation-dtype", help="dtype of saved activations (default: --dtype)")
    p.add_argument("--memory-gb", type=float, help="device memory in GB (10^9 bytes) to fit: prints the largest batch size")
    p.add_argument("--check-model", action="store_true", help="also build the model on torch's meta device and compare its parameter count")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[ModelConfig, str | None]:
    """The ModelConfig the flags describe (preset, then overrides) and the preset name."""
    config = PRESETS[args.preset] if args.preset else ModelConfig()
    changes = {}
    for name in ("vocab_size", "d_model", "num_layers", "num_heads", "norm", "position", "ffn", "tie_embeddings"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.d_ff is not None:
        changes["d_ff"] = args.d_ff or None
    if args.context_length is not None:
        changes["context_length"] = args.context_length
    config = replace(config, **changes)
    name = args.preset if args.preset and not changes.keys() - {"context_length"} else None
    return config, name


@command("lm336 accounting")
def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config, name = config_from_args(args)
        if args.batch_size <= 0:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        report = account(config, None, args.batch_size, args.dtype, args.activation_dtype)
        memory = None
        if args.memory_gb is not None:
            if not math.isfinite(args.memory_gb) or args.memory_gb <= 0:
                raise ValueError(f"--memory-gb must be positive, got {args.memory_gb}")
            memory = int(args.memory_gb * 1e9)
        print(format_report(report, name, memory))
        if args.check_model:
            count = check_parameter_count(config)
            print(f"\nModel check: TransformerLM has {count:,} parameters, as accounted.")
    except (ValueError, RuntimeError) as exc:
        print(f"lm336 accounting: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

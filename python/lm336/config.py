"""Configuration dataclasses: `ModelConfig` (architecture) and `TrainConfig` (the run).

Every field has a comment with its unit; the CLI builds these from flags / TOML / `--set key=value`.

    cfg = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                      num_heads=16, d_ff=1344)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ModelConfig:
    vocab_size: int = 10_000  # tokens in the vocabulary, specials included
    context_length: int = 256  # longest sequence the model accepts (tokens)
    d_model: int = 512  # residual stream width
    num_layers: int = 4  # Transformer blocks
    num_heads: int = 16  # attention heads; d_model must be divisible by it
    d_ff: int | None = 1344  # feed-forward width; None = 8/3 d_model rounded to 64 (swiglu) or 4 d_model (silu)
    rope_theta: float = 10_000.0  # RoPE base
    norm: str = "pre"  # "pre" | "post" | "none"
    position: str = "rope"  # "rope" | "nope"
    ffn: str = "swiglu"  # "swiglu" | "silu"
    tie_embeddings: bool = False  # share token_embeddings.weight with lm_head.weight
    eps: float = 1e-5  # RMSNorm epsilon

    def to_dict(self) -> dict:
        return asdict(self)

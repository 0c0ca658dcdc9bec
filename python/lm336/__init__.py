"""lm336: a decoder-only Transformer language model written from first principles in PyTorch.

    from lm336 import TransformerLM, AdamW, cross_entropy, get_batch
    model = TransformerLM(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                          num_heads=16, d_ff=1344, rope_theta=10_000.0)

Names are imported on first use, so `import lm336` stays cheap and each piece lives in the
module named for it. One home per concept, which every other module calls:

    common.py      the device policy, the process group, seeding and RNG states, atomic writes,
                   how a command reports errors
    checkpoint.py  the run folder's file names; every checkpoint write and read (checksummed, safe)
    config.py      the configs; ModelConfig.validate, the one check of a model's shape
    accounting.py  parameter counts, memory and FLOPs
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # layers.py: the building blocks
    "Linear": "layers",
    "Embedding": "layers",
    "RMSNorm": "layers",
    "SwiGLU": "layers",
    "SiLUFeedForward": "layers",
    "RotaryPositionalEmbedding": "layers",
    "silu": "layers",
    "softmax": "layers",
    "scaled_dot_product_attention": "layers",
    "MultiHeadSelfAttention": "layers",
    "TransformerBlock": "layers",
    # attention.py: block-wise (flash) attention
    "flash_attention": "attention",
    # model.py
    "TransformerLM": "model",
    "KVCache": "model",
    # optim.py
    "cross_entropy": "optim",
    "AdamW": "optim",
    "lr_cosine_schedule": "optim",
    "clip_gradients": "optim",
    # data.py
    "get_batch": "data",
    "check_token_range": "data",
    # checkpoint.py: run folders and every checkpoint read and write
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "CheckpointError": "checkpoint",
    # common.py
    "resolve_device": "common",
    # config.py
    "ModelConfig": "config",
    "TrainConfig": "config",
    # training.py / sampling.py
    "train": "training",
    "generate": "sampling",
    "generate_ids": "sampling",
    "iter_generate": "sampling",
    # evaluation.py / hf.py / safetensors_io.py
    "evaluate": "evaluation",
    "export_hf": "hf",
    "import_hf": "hf",
    "save_weights": "safetensors_io",
    "load_weights": "safetensors_io",
    # accounting.py
    "count_parameters": "accounting",
    "flops_per_token": "accounting",
    # throughput.py
    "mfu": "throughput",
    "peak_flops": "throughput",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lm336' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Hugging Face Llama <-> lm336: the config mapping, the weight conversion, `lm336 export` and
`lm336 import`.

An lm336 model with pre-norm, RoPE, SwiGLU and no biases is a Llama with
num_key_value_heads == num_attention_heads. Names map one to one (token_embeddings ->
model.embed_tokens, layers.{i}.attn.{q,k,v,output}_proj -> model.layers.{i}.self_attn.{q,k,v,o}_proj,
ln1/ln2 -> input_layernorm/post_attention_layernorm, ffn.w1/w3/w2 -> mlp.gate/up/down_proj,
ln_final -> model.norm). One real difference: our RoPE rotates adjacent pairs (x[2k], x[2k+1])
(Meta's original layout), transformers rotates halves (x[k], x[k + d/2]), so the rows of q_proj and
k_proj are permuted within each head on the way out and back on the way in. Both are pure
re-orderings, so weights survive a round trip bit for bit.

Variants with no Llama equivalent (post-norm, no norm, NoPE, SiLU feed-forward) are refused on
export; on import, everything lm336 cannot represent (biases, grouped-query attention, RoPE
scaling, other activations, sliding windows, quantized weights, pickled weights) is refused by name.
Both commands write their output directory as one unit and write nothing on error.

    lm336.export_hf("runs/a", "exports/a")       # AutoModelForCausalLM/AutoTokenizer.from_pretrained("exports/a")
    lm336.import_hf("hf/tiny-llama", "runs/b")   # lm336 generate --checkpoint runs/b

Shell: `lm336 export runs/a --format hf --out exports/a`, `lm336 import hf/tiny-llama --out runs/b`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import CHECKPOINT, CONFIG, LOG, SUMMARY, TOKENIZER, TOKENIZER_HELP
from .common import command
from .config import ConfigError, ModelConfig, TrainConfig
from .safetensors_io import WEIGHTS, check_state, read_safetensors, save_weights, write_safetensors
from .sampling import EOT

ARCHITECTURE = "LlamaForCausalLM"
HF_CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
HF_WEIGHTS = "model.safetensors"
HF_WEIGHTS_INDEX = "model.safetensors.index.json"


def _export_files() -> frozenset[str]:
    from bpe336.formats import TOKENIZER_FILES

    return frozenset({HF_CONFIG, GENERATION_CONFIG, HF_WEIGHTS}) | TOKENIZER_FILES


# What an export or an imported run folder may hold: a previous version of it is replaced whole,
# anything else in the folder is refused rather than deleted.
EXPORT_FILES = _export_files()
RUN_FILES = frozenset({CHECKPOINT, CONFIG, WEIGHTS, TOKENIZER, LOG, SUMMARY})

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "consolidated.00.pth")

# Per-layer names, ours -> transformers' (under model.layers.{i}.).
_LAYER_NAMES = {
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.output_proj.weight": "self_attn.o_proj.weight",
    "ln1.weight": "input_layernorm.weight",
    "ln2.weight": "post_attention_layernorm.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {
    "token_embeddings.weight": "model.embed_tokens.weight",
    "ln_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_ROPE_ROWS = ("attn.q_proj.weight", "attn.k_proj.weight")


# 1. Names and the RoPE row order ---------------------------------------------------------------


def hf_name(name: str) -> str:
    """transformers' name for one of our state-dict names.

    Example: hf_name("layers.3.ffn.w1.weight") -> "model.layers.3.mlp.gate_proj.weight"
    """
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    prefix, i, rest = name.split(".", 2)
    if prefix != "layers" or rest not in _LAYER_NAMES:
        raise KeyError(f"{name!r} has no Hugging Face Llama counterpart")
    return f"model.layers.{i}.{_LAYER_NAMES[rest]}"


def permute_to_hf(weight: Tensor, num_heads: int) -> Tensor:
    """q/k projection rows from adjacent-pair RoPE order to transformers' half-split order: within
    each head, the even rows, then the odd rows.

    Example (one head, d_k = 4): rows [r0, r1, r2, r3] -> [r0, r2, r1, r3]
    """
    out_features, in_features = weight.shape
    d_k = out_features // num_heads
    return weight.reshape(num_heads, d_k // 2, 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def permute_from_hf(weight: Tensor, num_heads: int) -> Tensor:
    """The inverse of `permute_to_hf`. Example (one head, d_k = 4): [r0, r2, r1, r3] -> [r0, r1, r2, r3]"""
    out_features, in_features = weight.shape
    d_k = out_features // num_heads
    return weight.reshape(num_heads, 2, d_k // 2, in_features).transpose(1, 2).reshape(out_features, in_features)


# 2. Configs ---------------------------------------------------------------------------------------


def check_exportable(cfg: ModelConfig) -> None:
    """Raise ValueError naming every option of `cfg` that a Llama cannot express."""
    problems = []
    if cfg.norm != "pre":
        problems.append(f"model.norm={cfg.norm!r} (Llama is pre-norm: only norm='pre' exports)")
    if cfg.position != "rope":
        problems.append(f"model.position={cfg.position!r} (Llama always applies RoPE: only position='rope' exports)")
    if cfg.ffn != "swiglu":
        problems.append(f"model.ffn={cfg.ffn!r} (Llama's MLP is SwiGLU: only ffn='swiglu' exports)")
    if problems:
        raise ValueError("this model has no Hugging Face Llama equivalent: " + "; ".join(problems))


def llama_config(cfg: ModelConfig, *, bos_token_id: int | None = None, eos_token_id: int | None = None, dtype: str = "float32") -> dict:
    """The config.json of the Llama that computes what `cfg` does. RoPE's base is written both as
    `rope_theta` (transformers 4) and in `rope_parameters` (transformers 5); likewise the dtype as
    `torch_dtype` and `dtype`."""
    check_exportable(cfg)
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads,
        "head_dim": cfg.d_model // cfg.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def model_config_from_llama(hf: dict, *, context_length: int | None = None, source: str = HF_CONFIG) -> ModelConfig:
    """The ModelConfig of a Llama config.json, or ValueError naming everything lm336 cannot represent.

    Args:
        hf: the parsed config.json.
        context_length: overrides max_position_embeddings (our RoPE table and causal mask are
            allocated for the whole context, so a 128k-position model may want less).
        source: the file, for messages.
    """
    if not isinstance(hf, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(hf).__name__}")
    model_type = hf.get("model_type")
    if model_type != "llama":
        raise ValueError(f"{source}: model_type {model_type!r} is not 'llama'; lm336 imports Llama-architecture models only")
    arch = hf.get("architectures")
    if arch and ARCHITECTURE not in arch:
        raise ValueError(f"{source}: architectures {arch} do not include {ARCHITECTURE} (a causal LM head is needed)")
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if not _is_int(hf.get(k))]
    if missing:
        raise ValueError(f"{source}: missing or non-integer {', '.join(missing)}")
    heads = hf["num_attention_heads"]
    problems = []
    kv_heads = hf.get("num_key_value_heads")
    if kv_heads is not None and kv_heads != heads:
        problems.append(f"grouped-query attention (num_key_value_heads={kv_heads} != num_attention_heads={heads})")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        problems.append(f"hidden_act={act!r} (only 'silu', i.e. SwiGLU)")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            problems.append(f"{key}=true (lm336 layers have no biases)")
    if hf.get("rope_scaling"):
        problems.append(f"rope_scaling={hf['rope_scaling']!r} (only plain RoPE)")
    rope_params = hf.get("rope_parameters") or {}
    if (
        not isinstance(rope_params, dict)
        or set(rope_params) - {"rope_type", "rope_theta"}
        or rope_params.get("rope_type", "default") != "default"
    ):
        problems.append(f"rope_parameters={rope_params!r} (only plain RoPE: rope_type 'default')")
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * heads != hf["hidden_size"]:
        problems.append(f"head_dim={head_dim} != hidden_size/num_attention_heads = {hf['hidden_size']}/{heads}")
    if hf.get("sliding_window"):
        problems.append(f"sliding_window={hf['sliding_window']} (attention is full causal)")
    if hf.get("attention_dropout"):
        problems.append(f"attention_dropout={hf['attention_dropout']} (lm336 has no dropout)")
    if hf.get("quantization_config"):
        problems.append("quantization_config (quantized weights)")
    if problems:
        raise ValueError(f"{source}: lm336 cannot represent " + "; ".join(problems))
    theta = rope_params.get("rope_theta", hf.get("rope_theta", 10_000.0))
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"],
        context_length=context_length if context_length is not None else hf.get("max_position_embeddings", 2048),
        d_model=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        d_ff=hf["intermediate_size"],
        rope_theta=float(theta),
        norm="pre",
        position="rope",
        ffn="swiglu",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),  # transformers' Llama default
        eps=float(hf.get("rms_norm_eps", 1e-6)),  # transformers' Llama default
    )
    try:
        cfg.validate()
    except ConfigError as e:
        raise ValueError(f"{source}: {e}") from None
    return cfg


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# 3. Weights ---------------------------------------------------------------------------------------


def to_llama_state_dict(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict -> transformers' LlamaForCausalLM names and RoPE row order. With tied
    embeddings only model.embed_tokens.weight is kept, as transformers saves it."""
    out = {}
    for name, tensor in state.items():
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue
        if name.endswith(_ROPE_ROWS):
            tensor = permute_to_hf(tensor, cfg.num_heads)
        out[hf_name(name)] = tensor
    return out


def from_llama_state_dict(tensors: dict[str, Tensor], cfg: ModelConfig, source: str = HF_WEIGHTS) -> dict[str, Tensor]:
    """transformers' LlamaForCausalLM tensors -> our state dict (lm_head.weight included, the same
    tensor as token_embeddings.weight when tied).

    Raises ValueError naming bias tensors, missing, unexpected and mis-shaped tensors.
    """
    # Old transformers versions stored the RoPE frequencies; they follow from the config.
    tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    biases = sorted(k for k in tensors if k.endswith(".bias"))
    if biases:
        raise ValueError(f"{source}: bias tensors {biases[:4]}{' ...' if len(biases) > 4 else ''} (lm336 layers have no biases)")
    if cfg.tie_embeddings and "lm_head.weight" in tensors:
        if not torch.equal(tensors["lm_head.weight"], tensors.get("model.embed_tokens.weight", torch.empty(0))):
            raise ValueError(f"{source}: tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight")
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    from .model import TransformerLM

    with torch.device("meta"):  # shapes only, no memory
        expected = TransformerLM.from_config(cfg).state_dict()
    expected_hf = {hf_name(k): v for k, v in expected.items() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    check_state(tensors, expected_hf, source)
    state = {}
    for name in expected:
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue
        tensor = tensors[hf_name(name)]
        state[name] = permute_from_hf(tensor, cfg.num_heads) if name.endswith(_ROPE_ROWS) else tensor
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["token_embeddings.weight"]
    return state


def read_hf_weights(hf_dir: Path) -> dict[str, Tensor]:
    """Every tensor of an HF folder: model.safetensors, or the shards its index names. Pickled
    weights (pytorch_model.bin, *.pt, *.pth) are refused: lm336 never unpickles a file."""
    single, index = hf_dir / HF_WEIGHTS, hf_dir / HF_WEIGHTS_INDEX
    if single.is_file():
        tensors, _ = read_safetensors(single)
        return tensors
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no weight_map")
        tensors: dict[str, Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise ValueError(f"{index}: shard {shard!r} is not a file name in {hf_dir}")
            part, _ = read_safetensors(hf_dir / shard)
            twice = sorted(set(part) & set(tensors))
            if twice:
                raise ValueError(f"{hf_dir / shard}: tensors {twice[:4]} are also in another shard")
            tensors.update(part)
        return tensors
    pickles = [p.name for p in sorted(hf_dir.iterdir()) if p.name in _PICKLES or p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    if pickles:
        raise ValueError(
            f"{hf_dir}: the weights are pickles ({', '.join(pickles)}), which lm336 never unpickles; "
            "convert them to safetensors where you trust the file, e.g. "
            "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)"
        )
    raise FileNotFoundError(f"{hf_dir}: no {HF_WEIGHTS} or {HF_WEIGHTS_INDEX}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


# 4. The tokenizer files ---------------------------------------------------------------------------


def save_tokenizer_files(tokenizer, directory: Path, *, model_max_length: int) -> None:
    """Write `tokenizer` into `directory` (a folder published as one unit by the caller) as bpe336
    writes a tokenizer directory: tokenizer.json, tokenizer_config.json and
    special_tokens_map.json for transformers' AutoTokenizer, plus the GPT-2 pair and our sidecar.
    `model_max_length` goes into tokenizer_config.json so AutoTokenizer knows the context length.

    Raises ValueError when the tokenizer cannot be written as a tokenizer.json that Hugging Face
    reads with our ids (a special token spelled like another token); export with --no-tokenizer."""
    names = tokenizer.write_files(directory)
    if names and names[-1].startswith("skipped:"):
        raise ValueError(
            f"the tokenizer cannot be exported for transformers ({names[-1].removeprefix('skipped: ')}); export the model alone with --no-tokenizer"
        )
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_max_length"] = model_max_length
    _write_json(config_path, config)


def _load_tokenizer(path):
    from bpe336 import Tokenizer

    return path if isinstance(path, Tokenizer) else Tokenizer.load(path)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def load_hf_tokenizer(hf_dir: Path):
    """The tokenizer of an HF folder as a bpe336 Tokenizer, or None when the folder holds no
    tokenizer files. Raises ValueError when it holds some that bpe336 cannot read."""
    present = [name for name in _TOKENIZER_FILES if (hf_dir / name).exists()]
    if not present:
        return None
    try:
        return _load_tokenizer(hf_dir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{hf_dir}: holds tokenizer files ({', '.join(present)}) that bpe336 cannot read: {e}") from None


# 5. A directory written as one unit -------------------------------------------------------------


def _directory_unit(out_dir: Path, overwrite: bool, owned: frozenset[str]):
    """bpe336's directory writer (a new sibling directory swapped in as one unit; nothing is
    written on error), after refusing to replace a non-empty `out_dir` without `overwrite`. A
    previous `out_dir` holding entries other than `owned` is refused: the swap would delete them."""
    from bpe336.atomic import atomic_directory

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir}: exists and is not empty; choose another --out or pass --overwrite")
    return atomic_directory(out_dir, owned)


def _check_not_replaced(out_dir: Path, source: Path) -> None:
    """Refuse an out_dir that is, or contains, the source being converted: replacing it would
    destroy the input."""
    out, src = Path(out_dir).resolve(), Path(source).resolve()
    if src == out or out in src.parents:
        raise ValueError(f"{out_dir}: holds the source {source}; write the output somewhere else")


def _write_json(path: Path, obj: Any) -> None:
    from bpe336.atomic import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# 6. Export ----------------------------------------------------------------------------------------


def _load_source(src) -> tuple[Any, torch.dtype, dict]:
    """(model, dtype the weights were stored in, the checkpoint's raw dict) for a TransformerLM,
    a ckpt.pt, a model.safetensors or a run directory."""
    from .checkpoint import load_model
    from .model import TransformerLM

    if isinstance(src, TransformerLM):
        return src, src.lm_head.weight.dtype, {}
    model, raw = load_model(src)
    if "dtype" in raw:  # from model.safetensors
        return model, raw["dtype"], raw
    stored = next((t.dtype for t in raw.get("model", {}).values() if isinstance(t, Tensor) and t.is_floating_point()), torch.float32)
    return model, stored, raw


def export_hf(
    src,
    out_dir: str | os.PathLike,
    *,
    tokenizer=None,
    include_tokenizer: bool = True,
    dtype: str | torch.dtype | None = None,
    eos_token: str | None = EOT,
    overwrite: bool = False,
) -> Path:
    """Write `src` as a Hugging Face Llama folder: config.json, generation_config.json,
    model.safetensors and the tokenizer files, so that `AutoModelForCausalLM.from_pretrained(out_dir)`
    and `AutoTokenizer.from_pretrained(out_dir)` give our logits and our ids (offline).

    Args:
        src: a TransformerLM, a ckpt.pt, a model.safetensors, or a run directory.
        out_dir: the folder to write (as one unit: nothing is written on error).
        tokenizer: a bpe336 Tokenizer or its path; None = the run's (recorded in its config, or
            RUN_DIR/tokenizer). Required for a TransformerLM unless include_tokenizer is False.
        include_tokenizer: False writes the model alone.
        dtype: "float32" | "bfloat16" | "float16" (or the torch dtype); None = as stored.
        eos_token: the end-of-text token (bos/eos of the configs) when the tokenizer has it.
        overwrite: replace an existing non-empty out_dir.
    Returns:
        out_dir as a Path.
    Raises:
        ValueError: a variant Llama cannot express (named), no tokenizer found, a tokenizer larger
        than the model's vocabulary. FileExistsError: out_dir is not empty and overwrite is off.
    """
    model, stored_dtype, raw = _load_source(src)
    cfg = model.config
    check_exportable(cfg)
    out_dtype = _resolve_dtype(dtype, stored_dtype, ("float32", "bfloat16", "float16"))
    tok = None
    if include_tokenizer:
        if tokenizer is None and raw is not None and not isinstance(src, torch.nn.Module):
            from .checkpoint import find_tokenizer

            tokenizer = find_tokenizer(src, raw)
        if tokenizer is None:
            raise ValueError(
                f"no tokenizer found for {src if not isinstance(src, torch.nn.Module) else 'the model'} "
                "(looked in the run's config and for a tokenizer/ folder); pass one (--tokenizer PATH), "
                "or export the model alone (--no-tokenizer)"
            )
        tok = _load_tokenizer(tokenizer)
        if tok.vocab_size > cfg.vocab_size:
            raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size}: not the model's tokenizer")
    eos_id = tok.token_to_id(eos_token) if tok is not None and eos_token in tok.special_tokens else None
    tensors = {k: v.to(out_dtype) for k, v in to_llama_state_dict(model.state_dict(), cfg).items()}
    config = llama_config(cfg, bos_token_id=eos_id, eos_token_id=eos_id, dtype=_DTYPE_NAMES[out_dtype])
    generation = {"bos_token_id": eos_id, "eos_token_id": eos_id}
    if not isinstance(src, torch.nn.Module):
        _check_not_replaced(Path(out_dir), Path(src))
    with _directory_unit(Path(out_dir), overwrite, EXPORT_FILES) as tmp:
        _write_json(tmp / HF_CONFIG, config)
        _write_json(tmp / GENERATION_CONFIG, generation)
        write_safetensors(tensors, tmp / HF_WEIGHTS)
        if tok is not None:
            save_tokenizer_files(tok, tmp, model_max_length=cfg.context_length)
    return Path(out_dir)


def _resolve_dtype(dtype, default: torch.dtype, allowed: tuple[str, ...]) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default
    name = _DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype
    if name not in allowed:
        raise ValueError(f"dtype must be one of {', '.join(allowed)}, got {dtype!r}")
    return _DTYPES[name]


# 7. Import ----------------------------------------------------------------------------------------


def import_hf(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = None,
    context_length: int | None = None,
    include_tokenizer: bool = True,
    overwrite: bool = False,
) -> Path:
    """Turn a Hugging Face Llama folder (config.json + safetensors) into an lm336 run folder:
    ckpt.pt (the weights, a fresh optimizer state, iteration 0 and the config), config.json,
    model.safetensors, and tokenizer/ when the folder holds a tokenizer bpe336 reads.

    The run continues like any other: `lm336 generate --checkpoint RUN`, `lm336 eval --checkpoint
    RUN --data ...`, and fine-tuning with `lm336 train --config RUN/config.json --set
    data.train_path=... --resume`.

    Args:
        hf_dir: the folder `save_pretrained(..., safe_serialization=True)` wrote.
        out_dir: the run folder to write (as one unit: nothing is written on error).
        dtype: "float32" | "bfloat16" | "float64"; None = as stored (float16 becomes float32,
            which lm336 trains in; the conversion is exact).
        context_length: overrides max_position_embeddings.
        include_tokenizer: False skips the tokenizer even when present.
        overwrite: replace an existing non-empty out_dir.
    Raises:
        ValueError naming what lm336 cannot represent (not Llama, grouped-query attention, biases,
        RoPE scaling, other activations, ...), missing/unexpected/mis-shaped tensors, unreadable
        or pickled weights, unreadable tokenizer files. FileNotFoundError: no config or weights.
    """
    from .checkpoint import save_checkpoint
    from .model import TransformerLM
    from .optim import AdamW
    from .training import param_groups

    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise (NotADirectoryError if hf_dir.exists() else FileNotFoundError)(
            f"{hf_dir}: not a directory (expected a Hugging Face model folder)"
        )
    _check_not_replaced(Path(out_dir), hf_dir)
    config_path = hf_dir / HF_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{hf_dir}: no {HF_CONFIG}")
    # 1. Everything is read and checked before anything is written.
    cfg = model_config_from_llama(_read_json(config_path), context_length=context_length, source=str(config_path))
    tensors = read_hf_weights(hf_dir)
    state = from_llama_state_dict(tensors, cfg, source=str(hf_dir))
    stored = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    default = torch.float32 if stored == torch.float16 else stored
    param_dtype = _resolve_dtype(dtype, default, ("float32", "bfloat16", "float64"))
    tokenizer = load_hf_tokenizer(hf_dir) if include_tokenizer else None
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}")
    model = TransformerLM.from_config(cfg, dtype=param_dtype)
    model.load_state_dict(state)
    del tensors, state
    # 2. The run: the config a fine-tuning run resumes with, a checkpoint at iteration 0 with a fresh
    # optimizer (grouped as training groups it, so `--resume` loads it), the weights file.
    train_cfg = TrainConfig(model=cfg)
    train_cfg.run.out_dir = str(out_dir)
    train_cfg.run.dtype = _DTYPE_NAMES[param_dtype]
    train_cfg.validate()
    ocfg = train_cfg.optimizer
    optimizer = AdamW(param_groups(model, ocfg.weight_decay), lr=ocfg.lr, betas=ocfg.betas, eps=ocfg.eps, weight_decay=ocfg.weight_decay)
    with _directory_unit(Path(out_dir), overwrite, RUN_FILES) as tmp:
        save_checkpoint(model, optimizer, 0, tmp / CHECKPOINT, config=train_cfg.to_dict(), imported_from=str(hf_dir))
        _write_json(tmp / CONFIG, train_cfg.to_dict())
        save_weights(model, tmp / WEIGHTS, iteration=0)
        if tokenizer is not None:
            (tmp / TOKENIZER).mkdir()
            tokenizer.save(tmp / TOKENIZER)
    return Path(out_dir)


# 8. Command line ----------------------------------------------------------------------------------


def build_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 export",
        description="Write a trained model as a Hugging Face Llama folder (config.json, model.safetensors, "
        "generation_config.json, tokenizer files) that transformers loads offline with identical logits and ids.",
    )
    p.add_argument("src", metavar="RUN_DIR_OR_CKPT", help="run directory, ckpt.pt or model.safetensors")
    p.add_argument("--format", default="hf", choices=["hf"], help="output format (only 'hf': a transformers Llama folder)")
    p.add_argument("--out", required=True, help="folder to write (written as one unit; must be new or empty unless --overwrite)")
    p.add_argument(
        "--tokenizer",
        default=None,
        help=TOKENIZER_HELP,
    )
    p.add_argument("--no-tokenizer", action="store_true", help="export the model without tokenizer files")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weight dtype of the export (default auto = as stored)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    return p


@command("lm336 export")
def export_main(argv: list[str] | None = None) -> int:
    args = build_export_parser().parse_args(argv)
    out = export_hf(args.src, args.out, tokenizer=args.tokenizer, include_tokenizer=not args.no_tokenizer,
                    dtype=args.dtype, overwrite=args.overwrite)  # fmt: skip
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"exported {args.src} -> {out} ({files})")
    print(f'load it with transformers: AutoModelForCausalLM.from_pretrained("{out}"), AutoTokenizer.from_pretrained("{out}")')
    return 0


def build_import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 import",
        description="Turn a Hugging Face Llama folder (config.json + safetensors; no biases, no grouped-query "
        "attention, no RoPE scaling) into an lm336 run folder for lm336 generate, eval and train --resume.",
    )
    p.add_argument("hf_dir", metavar="HF_DIR", help="folder written by save_pretrained(..., safe_serialization=True)")
    p.add_argument("--out", required=True, help="run folder to write (written as one unit; must be new or empty unless --overwrite)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float64"],
                   help="parameter dtype (default auto = as stored; float16 becomes float32)")  # fmt: skip
    p.add_argument("--context-length", type=int, default=None,
                   help="context length in tokens (default: max_position_embeddings; the causal mask takes "
                        "context_length^2 bytes, so cap very long contexts)")  # fmt: skip
    p.add_argument("--no-tokenizer", action="store_true", help="do not import the folder's tokenizer")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    return p


@command("lm336 import")
def import_main(argv: list[str] | None = None) -> int:
    args = build_import_parser().parse_args(argv)
    out = import_hf(args.hf_dir, args.out, dtype=args.dtype, context_length=args.context_length,
                    include_tokenizer=not args.no_tokenizer, overwrite=args.overwrite)  # fmt: skip
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"imported {args.hf_dir} -> {out} ({files})")
    if not (out / TOKENIZER).exists():
        print("no tokenizer imported: pass --tokenizer to lm336 generate and lm336 eval")
    print(f"next: lm336 generate --checkpoint {out}; lm336 train --config {out / 'config.json'} --set data.train_path=... --resume")
    return 0


__all__ = [
    "export_hf",
    "import_hf",
    "llama_config",
    "model_config_from_llama",
    "to_llama_state_dict",
    "from_llama_state_dict",
    "permute_to_hf",
    "permute_from_hf",
    "check_exportable",
    "save_tokenizer_files",
]

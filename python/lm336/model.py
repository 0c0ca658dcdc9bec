"""The decoder-only Transformer language model and its key/value cache.

`TransformerLM` = token embeddings -> num_layers TransformerBlocks -> final RMSNorm -> LM head; it
returns unnormalised logits. The architecture variants (post-norm, no norm, NoPE, SiLU feed-forward,
tied embeddings) are constructor options; state-dict names are the standard ones
(token_embeddings.weight, layers.{i}.attn.{q,k,v,output}_proj.weight, layers.{i}.ln1.weight,
layers.{i}.ffn.{w1,w2,w3}.weight, layers.{i}.ln2.weight, ln_final.weight, lm_head.weight).

    model = TransformerLM(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                          num_heads=16, d_ff=1344, rope_theta=10_000.0)
    logits = model(token_ids)  # (batch, seq) -> (batch, seq, vocab)

Incremental decoding: `cache = model.new_kv_cache(batch_size)`, then `model(prompt, kv_cache=cache)`
and `model(next_token[:, None], kv_cache=cache)`; each call returns logits for the new positions only.
The cache is allocated once at its full length; each step writes its keys and values in place and
attends over a view of the filled prefix (nothing is concatenated or reallocated per token).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module, ModuleList

from .config import ModelConfig
from .layers import (
    FFNS,
    CausalMask,
    Embedding,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    TransformerBlock,
    default_d_ff,
)


class KVCache:
    """Keys and values of every layer for positions 0..length-1, preallocated to max_seq_len.

    Attributes:
        keys, values: one (batch, heads, max_seq_len, d_k) tensor per layer.
        length: positions filled so far (advanced by TransformerLM.forward after the last layer).
    """

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, max_seq_len: int, d_k: int, device=None, dtype=None):
        shape = (batch_size, num_heads, max_seq_len, d_k)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.batch_size, self.max_seq_len = batch_size, max_seq_len
        self.length = 0

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (batch, heads, new, d_k) at positions length..length+new-1 of layer
        `layer_idx`; return that layer's keys and values for positions 0..length+new-1."""
        end = self.length + k.shape[-2]
        self.keys[layer_idx][:, :, self.length : end] = k
        self.values[layer_idx][:, :, self.length : end] = v
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]  # (batch, heads, end, d_k)

    def reset(self) -> None:
        """Forget everything (the buffers are reused)."""
        self.length = 0

    def crop(self, length: int) -> None:
        """Keep only the first `length` positions (e.g. to roll back speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length must be in [0, {self.length}], got {length}")
        self.length = length


class TransformerLM(Module):
    """Decoder-only Transformer LM.

    Args:
        vocab_size: tokens in the vocabulary.
        context_length: longest sequence accepted (and the RoPE table length).
        d_model, num_layers, num_heads: width, depth, heads (d_model divisible by num_heads).
        d_ff: feed-forward width; None = default_d_ff(d_model, ffn).
        rope_theta: RoPE base (ignored for position="nope").
        norm: "pre" | "post" | "none" ("none" also drops ln_final).
        position: "rope" | "nope".
        ffn: "swiglu" | "silu".
        tie_embeddings: lm_head.weight IS token_embeddings.weight (both names stay in the state
            dict); the shared matrix gets the Linear initialisation, since std-1 output weights
            would give logits of std sqrt(d_model).
        eps: RMSNorm epsilon.
        attention: "auto" | "reference" | "flash": the attention kernel (lm336.attention); the
            same parameters and, within float tolerance, the same results either way.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int | None = None,
        rope_theta: float = 10_000.0,
        *,
        norm: str = "pre",
        position: str = "rope",
        ffn: str = "swiglu",
        tie_embeddings: bool = False,
        eps: float = 1e-5,
        attention: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        # 1. Validate the configuration up front (ModelConfig.validate is the one check), with
        # messages naming the constructor arguments.
        d_ff = default_d_ff(d_model, ffn) if d_ff is None and ffn in FFNS else d_ff
        self._config = ModelConfig(
            vocab_size=vocab_size, context_length=context_length, d_model=d_model, num_layers=num_layers,
            num_heads=num_heads, d_ff=d_ff, rope_theta=rope_theta, norm=norm, position=position, ffn=ffn,
            tie_embeddings=tie_embeddings, eps=eps, attention=attention,
        ).validate(prefix="")  # fmt: skip
        self._config.rope_theta = float(rope_theta)
        d_k = d_model // num_heads

        # 2. Modules. One RoPE table and one causal mask are shared by all layers.
        self.token_embeddings = Embedding(vocab_size, d_model, device=device, dtype=dtype)
        rope = RotaryPositionalEmbedding(rope_theta, d_k, context_length, device=device, dtype=dtype) if position == "rope" else None
        causal_mask = CausalMask(context_length, device=device)
        self.layers = ModuleList(
            TransformerBlock(
                d_model,
                num_heads,
                d_ff,
                norm=norm,
                ffn=ffn,
                rope=rope,
                causal_mask=causal_mask,
                eps=eps,
                attention=attention,
                device=device,
                dtype=dtype,
            )  # fmt: skip
            for _ in range(num_layers)
        )
        self.ln_final = RMSNorm(d_model, eps=eps, device=device, dtype=dtype) if norm != "none" else None
        self.lm_head = Linear(d_model, vocab_size, device=device, dtype=dtype)
        if tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight

    @classmethod
    def from_config(cls, cfg: ModelConfig, device=None, dtype=None) -> TransformerLM:
        """Build the model a ModelConfig describes."""
        return cls(
            cfg.vocab_size, cfg.context_length, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff, cfg.rope_theta,
            norm=cfg.norm, position=cfg.position, ffn=cfg.ffn, tie_embeddings=cfg.tie_embeddings, eps=cfg.eps,
            attention=cfg.attention, device=device, dtype=dtype,
        )  # fmt: skip

    @property
    def config(self) -> ModelConfig:
        """The configuration (d_ff resolved); `TransformerLM.from_config(model.config)` rebuilds it."""
        return ModelConfig(**self._config.to_dict())

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (tied weights counted once); optionally without the input embedding."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings and not self._config.tie_embeddings:
            params.pop(id(self.token_embeddings.weight))
        return sum(p.numel() for p in params.values())

    def new_kv_cache(self, batch_size: int, max_seq_len: int | None = None, device=None, dtype=None) -> KVCache:
        """An empty KVCache for `batch_size` sequences of up to max_seq_len (default context_length)
        tokens, on the model's device, in the dtype given, else autocast's where it is on for that
        device (the keys come out of the projections in it, so decoding never converts the whole
        cache per token), else the parameter dtype."""
        cfg = self._config
        max_seq_len = cfg.context_length if max_seq_len is None else max_seq_len
        if not 1 <= max_seq_len <= cfg.context_length:
            raise ValueError(f"KV cache max_seq_len must be in [1, context_length={cfg.context_length}], got {max_seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        weight = self.lm_head.weight
        device = weight.device if device is None else torch.device(device)
        if dtype is None:
            on = torch.is_autocast_enabled(device.type)
            dtype = torch.get_autocast_dtype(device.type) if on and weight.is_floating_point() else weight.dtype
        return KVCache(
            cfg.num_layers, batch_size, cfg.num_heads, max_seq_len, cfg.d_model // cfg.num_heads, device=device, dtype=dtype,
        )  # fmt: skip

    def _check_inputs(self, token_ids: Tensor, token_positions: Tensor | None, kv_cache: KVCache | None) -> None:
        cfg = self._config
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
            raise ValueError(f"token ids must be an integer tensor, got {token_ids.dtype}")
        if token_ids.dim() < 1:
            raise ValueError("token ids need a sequence dimension: shape (..., seq)")
        seq = token_ids.shape[-1]
        if seq == 0:
            raise ValueError("empty sequence: token ids have shape (..., 0)")
        if kv_cache is None:
            if seq > cfg.context_length:
                raise ValueError(f"sequence length {seq} exceeds context_length {cfg.context_length}")
        else:
            if token_ids.dim() != 2 or token_ids.shape[0] != kv_cache.batch_size:
                raise ValueError(f"with a KV cache token ids must be (batch={kv_cache.batch_size}, seq), got {tuple(token_ids.shape)}")
            if kv_cache.length + seq > kv_cache.max_seq_len:
                raise ValueError(
                    f"KV cache full: {kv_cache.length} cached + {seq} new tokens exceed its max_seq_len {kv_cache.max_seq_len}"
                )
        if token_positions is not None and token_positions.shape[-1] != seq:
            raise ValueError(f"token_positions last dim {token_positions.shape[-1]} != sequence length {seq}")
        # NOTE: value checks read the data, which on an accelerator would force a host sync every step.
        # They run on CPU only; on CUDA an out-of-range id trips a device-side assert in the embedding
        # lookup (never a silent wrong answer). Validate token arrays once with lm336.data.check_token_range.
        if token_ids.device.type == "cpu" and not torch.compiler.is_compiling():
            lo, hi = (int(t) for t in torch.aminmax(token_ids))  # one pass (also per decoded token)
            if lo < 0 or hi >= cfg.vocab_size:
                raise ValueError(f"token ids must lie in [0, {cfg.vocab_size}), got values in [{lo}, {hi}]")

    def forward(self, token_ids: Tensor, token_positions: Tensor | None = None, kv_cache: KVCache | None = None) -> Tensor:
        """Args:
            token_ids: (..., seq) integer ids in [0, vocab_size); (batch, seq) with a cache.
            token_positions: (..., seq) positions for RoPE; default 0..seq-1, or
                cache.length + 0..seq-1 with a cache.
            kv_cache: see KVCache; appended to and advanced by seq.
        Returns:
            logits (..., seq, vocab_size) for the given (new) positions.
        """
        self._check_inputs(token_ids, token_positions, kv_cache)
        x = self.token_embeddings(token_ids)  # (..., seq, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, token_positions, kv_cache, i)  # (..., seq, d_model)
        if kv_cache is not None:
            kv_cache.length += token_ids.shape[-1]
        if self.ln_final is not None:
            x = self.ln_final(x)
        return self.lm_head(x)  # (..., seq, vocab_size)

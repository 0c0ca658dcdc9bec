"""TransformerLM against an independent torch.nn reference loading the same weights; KV-cache
decoding, variants, configuration, bad input, and overfitting one batch.

Run: PYTHONPATH=python python -m pytest tests/test_lm_model.py -q
"""

from __future__ import annotations

import pytest
import torch
from lm_reference import RefLM
from torch.testing import assert_close

from lm336 import AdamW, KVCache, ModelConfig, TransformerLM, cross_entropy

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
SMALL = dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=1000.0)


def randomise_norms(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))


VARIANTS = [
    dict(norm="pre", position="rope", ffn="swiglu", tie_embeddings=False),
    dict(norm="post", position="nope", ffn="silu", tie_embeddings=False),
    dict(norm="none", position="rope", ffn="swiglu", tie_embeddings=True),
    dict(norm="pre", position="nope", ffn="silu", tie_embeddings=True),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_lm_matches_reference(variant):
    torch.manual_seed(7)
    model = TransformerLM(**SMALL, **variant, dtype=F64)
    randomise_norms(model)
    theta = SMALL["rope_theta"] if variant["position"] == "rope" else None
    ref = RefLM(50, 32, 2, 4, 48, theta, variant["norm"], variant["ffn"] == "swiglu").to(F64)
    ref.load_state_dict(model.state_dict(), strict=True)  # the standard names, nothing more or less
    ids = torch.randint(0, 50, (3, 16))
    logits = model(ids)
    assert logits.shape == (3, 16, 50) and logits.dtype == F64
    assert_close(logits, ref(ids), rtol=1e-10, atol=1e-10)
    positions = torch.randint(0, 16, (3, 16))
    assert_close(model(ids, token_positions=positions), ref(ids, positions), rtol=1e-10, atol=1e-10)


def test_state_dict_names_are_the_standard_ones():
    model = TransformerLM(**SMALL)
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.attn.{p}_proj.weight" for p in ("q", "k", "v", "output")}
        expected |= {f"layers.{i}.ffn.w{j}.weight" for j in (1, 2, 3)}
        expected |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"}
    assert set(model.state_dict()) == expected
    sd = model.state_dict()
    assert sd["layers.0.ffn.w1.weight"].shape == (48, 32) and sd["layers.0.ffn.w2.weight"].shape == (32, 48)
    assert sd["token_embeddings.weight"].shape == (50, 32) and sd["lm_head.weight"].shape == (50, 32)


def test_tied_embeddings_share_one_tensor_and_keep_both_names():
    model = TransformerLM(**SMALL, tie_embeddings=True)
    assert model.lm_head.weight is model.token_embeddings.weight
    sd = model.state_dict()
    assert "lm_head.weight" in sd and "token_embeddings.weight" in sd
    untied = TransformerLM(**SMALL)
    assert model.num_parameters() == untied.num_parameters() - 50 * 32
    # One parameter, so the optimizer sees it once and gradients from both uses accumulate in it.
    assert len(list(model.parameters())) == len(list(untied.parameters())) - 1


def test_leading_batch_dims():
    torch.manual_seed(8)
    model = TransformerLM(**SMALL, dtype=F64)
    ids = torch.randint(0, 50, (2, 3, 10))
    out = model(ids)
    assert out.shape == (2, 3, 10, 50)
    assert_close(out[1], model(ids[1]), rtol=1e-12, atol=1e-12)
    assert_close(model(ids[0, 0]), out[0, 0], rtol=1e-12, atol=1e-12)  # no batch dim at all


def test_config_round_trip():
    cfg = ModelConfig(vocab_size=60, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=None,
                      norm="post", position="nope", ffn="silu", tie_embeddings=True, eps=1e-6)  # fmt: skip
    model = TransformerLM.from_config(cfg)
    assert model.config.d_ff == 64  # resolved: 4 d_model for silu
    assert model.config.norm == "post" and model.config.eps == 1e-6 and model.config.tie_embeddings
    again = TransformerLM.from_config(model.config)
    again.load_state_dict(model.state_dict())
    assert model.config == again.config
    assert TransformerLM(**SMALL).config == ModelConfig(**SMALL)


# -- KV cache ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["rope", "nope"])
def test_kv_cache_decoding_equals_full_forward(position):
    torch.manual_seed(9)
    model = TransformerLM(**SMALL, position=position, dtype=F64)
    ids = torch.randint(0, 50, (2, 14))
    full = model(ids)  # (2, 14, vocab)
    cache = model.new_kv_cache(2)
    assert isinstance(cache, KVCache) and cache.length == 0
    pieces = [model(ids[:, :5], kv_cache=cache)]  # prefill
    assert cache.length == 5
    pieces.append(model(ids[:, 5:7], kv_cache=cache))  # a two-token chunk
    for t in range(7, 14):  # then one at a time
        pieces.append(model(ids[:, t : t + 1], kv_cache=cache))
    assert cache.length == 14
    assert_close(torch.cat(pieces, dim=1), full, rtol=1e-10, atol=1e-10)
    # Rolling back and re-decoding gives the same again.
    cache.crop(10)
    assert_close(model(ids[:, 10:], kv_cache=cache), full[:, 10:], rtol=1e-10, atol=1e-10)


def test_kv_cache_limits():
    model = TransformerLM(**SMALL)
    cache = model.new_kv_cache(1, max_seq_len=6)
    assert cache.keys[0].shape == (1, 4, 6, 8) and cache.keys[0].dtype == torch.float32
    model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="KV cache full"):
        model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="batch=1"):
        model(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="context_length=16"):
        model.new_kv_cache(1, max_seq_len=17)


# -- Bad input ------------------------------------------------------------------------------------


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by num_heads \(4\)"):
        TransformerLM(50, 16, 30, 1, 4, 64, 1e4)
    with pytest.raises(ValueError, match="even head dimension"):
        TransformerLM(50, 16, 12, 1, 4, 64, 1e4)  # d_k = 3
    TransformerLM(50, 16, 12, 1, 4, 64, 1e4, position="nope")  # odd d_k is fine without RoPE
    with pytest.raises(ValueError, match="norm"):
        TransformerLM(**SMALL, norm="layer")
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerLM(**{**SMALL, "vocab_size": 0})


def test_bad_input_errors():
    model = TransformerLM(**SMALL)
    with pytest.raises(ValueError, match="sequence length 17 exceeds context_length 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50\)"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        model(torch.tensor([[1, -1, 3]]))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="positions"):
        model(torch.zeros(1, 4, dtype=torch.long), token_positions=torch.tensor([0, 1, 2, 16]))


# -- Training smoke test ----------------------------------------------------------------------------


def test_overfits_one_batch():
    torch.manual_seed(10)
    model = TransformerLM(vocab_size=64, context_length=16, d_model=64, num_layers=2, num_heads=4, d_ff=128,
                          rope_theta=10_000.0)  # fmt: skip
    x = torch.randint(0, 64, (4, 16))
    y = torch.randint(0, 64, (4, 16))  # random targets: only memorisation brings the loss down
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = cross_entropy(model(x), y).item()
    assert first > 3.5  # about log(64) = 4.16 at initialisation
    for _ in range(150):
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_bf16_autocast_and_bf16_weights_with_cache():
    torch.manual_seed(11)
    model = TransformerLM(**SMALL)
    ids = torch.randint(0, 50, (2, 12))
    reference = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
        # Made under autocast, the cache takes its dtype (the keys' dtype there), so no token
        # converts the whole cache; a float32 cache asked for explicitly stores them upcast.
        cache = model.new_kv_cache(2)
        assert cache.keys[0].dtype == torch.bfloat16
        keys = cache.keys[0].data_ptr()
        steps = [model(ids[:, :6], kv_cache=cache)] + [model(ids[:, t : t + 1], kv_cache=cache) for t in range(6, 12)]
        assert cache.keys[0].data_ptr() == keys
        wide = model.new_kv_cache(2, dtype=torch.float32)
        wide_steps = [model(ids[:, :6], kv_cache=wide)] + [model(ids[:, t : t + 1], kv_cache=wide) for t in range(6, 12)]
    assert logits.dtype == torch.bfloat16
    assert_close(logits.float(), reference, rtol=0.02, atol=0.08)
    assert_close(torch.cat(steps, 1).float(), reference, rtol=0.02, atol=0.08)
    assert_close(torch.cat(wide_steps, 1).float(), reference, rtol=0.02, atol=0.08)
    model.to(torch.bfloat16)
    cache = model.new_kv_cache(2)
    assert cache.keys[0].dtype == torch.bfloat16
    steps = [model(ids[:, :6], kv_cache=cache)] + [model(ids[:, t : t + 1], kv_cache=cache) for t in range(6, 12)]
    out = torch.cat(steps, 1)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), reference, rtol=0.02, atol=0.08)

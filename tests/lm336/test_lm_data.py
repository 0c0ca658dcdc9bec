"""lm336 data loading and checkpoints: get_batch on np.memmap, token-range checks, checkpoint round
trips through paths and file objects, mismatch errors, and bit-for-bit resume.

Run: PYTHONPATH=python python -m pytest tests/test_lm_data.py -q
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lm336 import AdamW, TransformerLM, cross_entropy, get_batch, load_checkpoint, save_checkpoint
from lm336.data import check_token_range, read_checkpoint
from lm336.optim import clip_gradients, lr_cosine_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(vocab_size=40, context_length=8, d_model=16, num_layers=2, num_heads=2, d_ff=32, rope_theta=1e4)


@pytest.fixture
def memmap_tokens(tmp_path):
    """50 tokens 100..149 as a uint16 memmap: a window's first value names its start."""
    path = tmp_path / "tokens.bin"
    np.arange(100, 150, dtype=np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


# -- get_batch --------------------------------------------------------------------------------------


def test_get_batch_shapes_dtype_device_and_shift(memmap_tokens):
    x, y = get_batch(memmap_tokens, 6, 8, "cpu", generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 8)
    assert x.dtype == y.dtype == torch.long
    assert x.device.type == y.device.type == "cpu"
    assert torch.equal(y, x + 1)  # next-token targets
    assert torch.equal(x - x[:, :1], torch.arange(8).expand(6, 8))  # contiguous windows
    assert x.is_contiguous() and y.is_contiguous()


@pytest.mark.parametrize("gen", ["torch", "numpy"])
def test_get_batch_every_start_reachable_none_out_of_bounds(memmap_tokens, gen):
    generator = torch.Generator().manual_seed(1) if gen == "torch" else np.random.default_rng(1)
    starts = []
    for _ in range(300):
        x, y = get_batch(memmap_tokens, 8, 8, "cpu", generator=generator)
        starts.extend((x[:, 0] - 100).tolist())
        assert int(y.max()) <= 149  # the last token is a target, never beyond
    # 50 tokens, windows of 8 + 1: starts 0..41, all of them, and no other.
    assert set(starts) == set(range(42))
    counts = np.bincount(starts, minlength=42)
    assert counts.min() > 20  # 2400 draws over 42 starts: about 57 each, uniformly


def test_get_batch_is_reproducible_and_follows_global_seed(memmap_tokens):
    a = get_batch(memmap_tokens, 4, 5, "cpu", generator=np.random.default_rng(7))
    b = get_batch(memmap_tokens, 4, 5, "cpu", generator=np.random.default_rng(7))
    assert torch.equal(a[0], b[0])
    torch.manual_seed(3)
    c = get_batch(memmap_tokens, 4, 5, "cpu")
    torch.manual_seed(3)
    d = get_batch(memmap_tokens, 4, 5, "cpu")
    assert torch.equal(c[0], d[0]) and torch.equal(c[1], d[1])


def test_get_batch_uint32_exact_window(tmp_path):
    path = tmp_path / "tokens32.bin"
    values = np.array([70_000, 5, 4_000_000_000, 9], dtype=np.uint32)
    values.tofile(path)
    x, y = get_batch(np.memmap(path, dtype=np.uint32, mode="r"), 3, 3, "cpu")
    assert torch.equal(x, torch.tensor([[70_000, 5, 4_000_000_000]] * 3))  # the only window
    assert torch.equal(y, torch.tensor([[5, 4_000_000_000, 9]] * 3))


def test_get_batch_bad_input():
    with pytest.raises(ValueError, match="too short"):
        get_batch(np.arange(8, dtype=np.uint16), 2, 8, "cpu")
    with pytest.raises(ValueError, match="1-D"):
        get_batch(np.zeros((4, 4), dtype=np.uint16), 2, 2, "cpu")
    with pytest.raises(ValueError, match="integers"):
        get_batch(np.zeros(20, dtype=np.float32), 2, 2, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_get_batch_cuda(memmap_tokens):
    x, y = get_batch(memmap_tokens, 4, 8, "cuda")
    assert x.device.type == "cuda" and torch.equal(y, x + 1)


def test_get_batch_checks_ids_against_vocab_size(memmap_tokens):
    x, _ = get_batch(memmap_tokens, 2, 4, "cpu", vocab_size=150)  # ids 100..149 fit
    assert x.max() < 150
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 120\)"):
        get_batch(memmap_tokens, 64, 40, "cpu", vocab_size=120)  # every window reaches past 119


def test_check_token_range():
    tokens = np.arange(100, dtype=np.uint16)
    check_token_range(tokens, 100)
    with pytest.raises(ValueError, match="id 99 at index 99"):
        check_token_range(tokens, 99, chunk_size=7)
    with pytest.raises(ValueError, match="id -3 at index 2"):
        check_token_range(np.array([0, 1, -3]), 10)


# -- Checkpoints ----------------------------------------------------------------------------------


def _trained(seed=0, steps=3):
    torch.manual_seed(seed)
    model = TransformerLM(**TINY)
    opt = AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randint(0, 40, (2, 8))
        loss = cross_entropy(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_round_trip_through_path(tmp_path):
    model, opt = _trained()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 123, path, config=model.config.to_dict(), note="hello")
    model2, opt2 = _trained(seed=1, steps=1)
    assert not _same_state(model, model2)
    assert load_checkpoint(path, model2, opt2) == 123
    assert _same_state(model, model2)
    assert opt2.state_dict()["state"][0]["step"] == 3
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    raw = read_checkpoint(path)
    assert raw["iteration"] == 123 and raw["note"] == "hello" and raw["config"]["d_model"] == 16
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_checkpoint_round_trip_through_file_object():
    model, opt = _trained()
    buffer = io.BytesIO()
    save_checkpoint(model, opt, 7, buffer)
    buffer.seek(0)
    model2 = TransformerLM(**TINY)
    assert load_checkpoint(buffer, model2) == 7  # optimizer optional
    assert _same_state(model, model2)


def test_checkpoint_without_optimizer_state(tmp_path):
    model, _ = _trained()
    save_checkpoint(model, None, 1, tmp_path / "m.pt")
    other, opt = _trained(seed=1)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "m.pt", other, opt)
    assert not _same_state(model, other)  # nothing was half-loaded


def test_failed_save_keeps_previous_file(tmp_path):
    model, opt = _trained()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 1, path)
    good = path.read_bytes()
    with pytest.raises(TypeError, match="checkpoint extra 'bad' is a builtins.function"):
        save_checkpoint(model, opt, 2, path, bad=lambda: None)  # not plain data: could not be read back safely
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


class _CompiledLike(torch.nn.Module):
    """Mimics torch.compile's wrapper: the real model under `_orig_mod`."""

    def __init__(self, inner):
        super().__init__()
        self._orig_mod = inner


def test_checkpoint_handles_compile_prefix(tmp_path):
    model, opt = _trained()
    wrapped = _CompiledLike(model)
    assert next(iter(wrapped.state_dict())).startswith("_orig_mod.")
    save_checkpoint(wrapped, opt, 5, tmp_path / "a.pt")
    assert all(not k.startswith("_orig_mod.") for k in read_checkpoint(tmp_path / "a.pt")["model"])
    # A checkpoint written elsewhere straight from a compiled model's state_dict still loads (it has
    # no checksum, so only when the caller says so).
    torch.save({"model": wrapped.state_dict(), "optimizer": None, "iteration": 5}, tmp_path / "b.pt")
    fresh = TransformerLM(**TINY)
    with pytest.raises(ValueError, match="no lm336 checksum"):
        load_checkpoint(tmp_path / "b.pt", _CompiledLike(fresh))
    assert load_checkpoint(tmp_path / "b.pt", _CompiledLike(fresh), allow_missing_checksum=True) == 5
    assert _same_state(model, fresh)


def test_mismatched_checkpoint_names_what_differs(tmp_path):
    model, opt = _trained()
    save_checkpoint(model, opt, 1, tmp_path / "ckpt.pt")
    other = TransformerLM(**{**TINY, "num_layers": 3, "d_ff": 48}, ffn="swiglu")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "ckpt.pt", other)
    message = str(err.value)
    assert "missing keys" in message and "layers.2.attn.q_proj.weight" in message
    assert "layers.0.ffn.w1.weight: checkpoint (32, 16) vs model (48, 16)" in message
    silu = TransformerLM(**TINY, ffn="silu")
    with pytest.raises(ValueError, match=r"unexpected keys \['layers.0.ffn.w3.weight'"):
        load_checkpoint(tmp_path / "ckpt.pt", silu)


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(IsADirectoryError):
        read_checkpoint(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: no lm336 checksum"):
        read_checkpoint(tmp_path / "junk.pt")
    # Extras that only a full unpickle could read back are refused when saving, not when loading.
    with pytest.raises(TypeError, match="numpy.ndarray"):
        save_checkpoint(TransformerLM(**TINY), None, 1, tmp_path / "numpy.pt", legacy_rng=np.random.get_state())
    assert not (tmp_path / "numpy.pt").exists()
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an lm336 checkpoint"):
        read_checkpoint(tmp_path / "other.pt", allow_missing_checksum=True)


# -- Bit-for-bit resume -----------------------------------------------------------------------------


def _train(model, opt, tokens, generator, start, stop):
    for step in range(start, stop):
        for group in opt.param_groups:
            group["lr"] = lr_cosine_schedule(step, 1e-2, 1e-3, 3, 12)
        x, y = get_batch(tokens, 4, 8, "cpu", generator=generator)
        loss = cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), 0.5)
        opt.step()


def test_resume_continues_bit_for_bit(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 40, 500).astype(np.uint16)

    def fresh(seed):
        torch.manual_seed(seed)
        model = TransformerLM(**TINY)
        return model, AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)

    # Uninterrupted: 15 steps.
    model, opt = fresh(0)
    gen = torch.Generator().manual_seed(42)
    _train(model, opt, tokens, gen, 0, 15)
    # Interrupted at 6: save with the data RNG state, rebuild everything differently, load, go on.
    model_a, opt_a = fresh(0)
    gen_a = torch.Generator().manual_seed(42)
    _train(model_a, opt_a, tokens, gen_a, 0, 6)
    save_checkpoint(model_a, opt_a, 6, tmp_path / "ckpt.pt", data_rng=gen_a.get_state())
    del model_a, opt_a, gen_a
    model_b, opt_b = fresh(123)
    step = load_checkpoint(tmp_path / "ckpt.pt", model_b, opt_b)
    gen_b = torch.Generator()
    gen_b.set_state(read_checkpoint(tmp_path / "ckpt.pt")["data_rng"])
    _train(model_b, opt_b, tokens, gen_b, step, 15)
    assert _same_state(model, model_b)

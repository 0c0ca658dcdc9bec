"""Hugging Face export/import and the weights-only model.safetensors, against transformers itself:
logits and greedy generation of `LlamaForCausalLM` loaded from our export, ids of `AutoTokenizer`,
bit-identical weights after import then export of a Llama that transformers made, and one clear
error (with nothing written) for each kind of bad input. Offline throughout.

    cd tests && ../.venv/bin/python -m pytest -q lm336/test_hf.py
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import EOT, make_tokenizer, train_tiny_run

import lm336
from lm336 import cli
from lm336.data import read_checkpoint
from lm336.hf import export_hf, import_hf, permute_from_hf, permute_to_hf
from lm336.model import TransformerLM
from lm336.safetensors_io import load_weights, read_safetensors, save_weights, write_safetensors
from lm336.sampling import generate_ids, load_model

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def _hf_model(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()


def _random_model(vocab: int, d_model: int, heads: int, *, layers: int = 2, context: int = 24, d_ff: int = 48, seed: int = 0, **kw):
    """A TransformerLM whose every parameter, RMSNorm gains included, is perturbed from its init."""
    torch.manual_seed(seed)
    model = TransformerLM(vocab, context, d_model, layers, heads, d_ff, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- the row permutation -----------------------------------------------------------------------


def test_rope_row_permutation_example_and_inverse():
    rows = torch.arange(4.0)[:, None].expand(4, 3)  # one head, d_k = 4
    assert permute_to_hf(rows, 1)[:, 0].tolist() == [0, 2, 1, 3]
    w = torch.randn(48, 16)
    for heads in (1, 2, 3, 6, 12):
        assert torch.equal(permute_from_hf(permute_to_hf(w, heads), heads), w)


# --- export: transformers computes what we compute -----------------------------------------------


SHAPES = [  # (d_model, heads, tie, rope_theta, eps)
    (16, 1, False, 10_000.0, 1e-5),
    (32, 2, True, 500_000.0, 1e-6),
    (48, 4, False, 1234.5, 3e-4),
    (64, 8, True, 10_000.0, 1e-5),
    (128, 16, False, 77_777.0, 2e-6),
]


@pytest.mark.parametrize(("d_model", "heads", "tie", "theta", "eps"), SHAPES)
def test_export_random_weights_match_llama_logits(tmp_path, d_model, heads, tie, theta, eps):
    model = _random_model(97, d_model, heads, rope_theta=theta, eps=eps, tie_embeddings=tie, seed=heads)
    out = export_hf(model, tmp_path / "hf", include_tokenizer=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is tie and config["rope_theta"] == theta and config["rms_norm_eps"] == eps
    tensors, _ = read_safetensors(out / "model.safetensors")
    assert ("lm_head.weight" in tensors) is not tie  # tied: stored once, as transformers does
    hf = _hf_model(out)
    assert isinstance(hf, LlamaForCausalLM)
    if tie:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 97, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    # A proper prefix gives the same logits too (positions, causal mask).
    with torch.no_grad():
        assert (model(ids[:, :7]) - hf(ids[:, :7]).logits).abs().max().item() < 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run and its Hugging Face export (made through the command line)."""
    root = tmp_path_factory.mktemp("trained")
    run = train_tiny_run(root)
    out = root / "hf"
    assert cli.main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    return root, run, out


def test_trained_run_folder_has_model_safetensors(trained):
    root, run, _ = trained
    assert {"ckpt.pt", "model.safetensors", "config.json", "tokenizer"} <= {p.name for p in run.iterdir()}
    from_pt, _ = load_model(run / "ckpt.pt")
    from_st, info = load_model(run / "model.safetensors")
    assert info["iteration"] == 40 and info["model_config"] == from_pt.config.to_dict()
    for (name, a), (_, b) in zip(from_pt.state_dict().items(), from_st.state_dict().items()):
        assert torch.equal(a, b), name


def test_trained_export_logits_ids_and_greedy_generation(trained):
    root, run, out = trained
    model, _ = load_model(run)
    tok = make_tokenizer()
    hf, hf_tok = _hf_model(out), AutoTokenizer.from_pretrained(out, local_files_only=True)
    # Ids: the corpus (with <|endoftext|>) and random Unicode around special tokens.
    rng = random.Random(0)
    texts = [(root / "valid.txt").read_text(encoding="utf-8"), f"a{EOT}{EOT}b  \n\n c", " héllo wörld 🙂🙂 "]
    texts += [
        "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(160, 0x2FFF), 0x1F642, 10, 32])) for _ in range(60)) + EOT
        for _ in range(20)
    ]
    for text in texts:
        assert hf_tok(text)["input_ids"] == tok.encode(text), text
        assert hf_tok.decode(tok.encode(text)) == text
    assert hf_tok.eos_token == EOT and hf.config.eos_token_id == tok.token_to_id(EOT)
    # Logits on validation windows.
    ids = torch.from_numpy(np.load(root / "valid.npy")[:64].astype(np.int64)).view(2, 32)
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() < 1e-4
    # Greedy decoding of 30 tokens, neither side stopping early (within the context: past it ours
    # slides its window while transformers runs positions beyond max_position_embeddings).
    for prompt in ("once upon a time", "the dog", EOT):
        prompt_ids = tok.encode(prompt)
        assert len(prompt_ids) + 30 <= model.config.context_length
        ours = generate_ids(model, prompt_ids, max_new_tokens=30, temperature=0.0)
        gen = GenerationConfig(max_new_tokens=30, do_sample=False, eos_token_id=None, pad_token_id=0)
        x = torch.tensor([prompt_ids])
        theirs = hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gen)[0, len(prompt_ids) :].tolist()
        assert len(ours) == 30 and ours == theirs, prompt


def test_export_from_checkpoint_or_weights_file_is_the_same(trained, tmp_path):
    _, run, out = trained
    for src in (run / "ckpt.pt", run / "model.safetensors"):
        again = export_hf(src, tmp_path / src.name)
        assert _tree(again) == _tree(out)
        for name in _tree(out):
            assert (again / name).read_bytes() == (out / name).read_bytes(), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_export_dtype(tmp_path, dtype):
    model = _random_model(50, 32, 4)
    out = export_hf(model, tmp_path / "hf", include_tokenizer=False, dtype=dtype)
    tensors, _ = read_safetensors(out / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {getattr(torch, dtype)}
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype


@pytest.mark.parametrize(
    ("option", "named"),
    [({"norm": "post"}, "model.norm='post'"), ({"norm": "none"}, "model.norm='none'"),
     ({"position": "nope"}, "model.position='nope'"), ({"ffn": "silu", "d_ff": 64}, "model.ffn='silu'")],
)  # fmt: skip
def test_export_refuses_variants_without_a_llama_equivalent(tmp_path, capsys, option, named):
    kw = {"d_ff": 48, **option}
    torch.manual_seed(0)
    model = TransformerLM(40, 16, 32, 1, 4, kw.pop("d_ff"), **kw)
    with pytest.raises(ValueError, match="no Hugging Face Llama equivalent") as e:
        export_hf(model, tmp_path / "hf", include_tokenizer=False)
    assert named in str(e.value)
    # Through the command line: one error line, nothing written.
    save_weights(model, tmp_path / "model.safetensors")
    assert cli.main(["export", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "hf"), "--no-tokenizer"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lm336 export: error:") and named in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_export_writes_nothing_on_error_and_replaces_only_with_overwrite(trained, tmp_path, capsys):
    _, run, _ = trained
    # No tokenizer to be found: refused before anything is written.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="no tokenizer found"):
        export_hf(bare, tmp_path / "deep" / "out")
    assert not (tmp_path / "deep").exists()
    # A tokenizer larger than the model's vocabulary.
    with pytest.raises(ValueError, match="tokens but the model only"):
        export_hf(bare, tmp_path / "out", tokenizer=make_tokenizer(400))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare"]
    # An existing folder is replaced only with overwrite, and then as a whole.
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_hf(run, out)
    assert cli.main(["export", str(run), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and _tree(out) == ["stale.txt"]
    # Even with overwrite, a folder holding files an export does not make is refused, not deleted.
    with pytest.raises(FileExistsError, match="did not make"):
        export_hf(run, out, overwrite=True)
    assert _tree(out) == ["stale.txt"]
    (out / "stale.txt").unlink()
    export_hf(run, out)
    first = (out / "config.json").read_bytes()
    (out / "config.json").write_text("{}")  # a previous export is replaced as a whole
    export_hf(run, out, overwrite=True)
    assert (out / "config.json").read_bytes() == first and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "out"]  # no temporary siblings left


def test_export_and_import_never_replace_their_own_source(trained, tmp_path):
    _, run, out = trained
    for target in (run, run.parent):
        with pytest.raises(ValueError, match="holds the source"):
            export_hf(run / "ckpt.pt", target, overwrite=True)
        with pytest.raises(ValueError, match="holds the source"):
            import_hf(out, out if target is run else out.parent, overwrite=True)
    assert (run / "ckpt.pt").exists() and (out / "model.safetensors").exists()


def test_export_failure_inside_the_write_leaves_no_trace(trained, tmp_path, monkeypatch):
    _, run, _ = trained
    import lm336.hf as hf_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_module, "save_tokenizer_files", broken)
    with pytest.raises(OSError, match="disk full"):
        export_hf(run, tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


# --- import: a Llama made by transformers -------------------------------------------------------


def _hf_llama(path: Path, *, tie: bool = False, dtype=torch.float32, seed: int = 0, **overrides) -> Path:
    """A random LlamaForCausalLM saved as safetensors (RMSNorm gains randomised too)."""
    torch.manual_seed(seed)
    kw = dict(vocab_size=113, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
              num_key_value_heads=6, max_position_embeddings=40, rope_theta=31_000.0, rms_norm_eps=2e-6,
              tie_word_embeddings=tie)  # fmt: skip
    kw.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    model.to(dtype).save_pretrained(path, safe_serialization=True)
    return path


@pytest.mark.parametrize(("tie", "dtype"), [(False, torch.float32), (True, torch.float32), (False, torch.bfloat16)])
def test_import_then_export_is_bit_identical(tmp_path, tie, dtype):
    src = _hf_llama(tmp_path / "src", tie=tie, dtype=dtype)
    run = import_hf(src, tmp_path / "run")
    assert sorted(p.name for p in run.iterdir()) == ["ckpt.pt", "config.json", "model.safetensors"]
    model, _ = load_model(run)
    assert model.config.rope_theta == 31_000.0 and model.config.eps == 2e-6 and model.config.tie_embeddings is tie
    if dtype == torch.float32:
        hf = _hf_model(src)
        ids = torch.randint(0, 113, (2, 40), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert (model(ids) - hf(ids).logits).abs().max().item() < 1e-4
    back = export_hf(run, tmp_path / "back", include_tokenizer=False)
    original, _ = read_safetensors(src / "model.safetensors")
    exported, _ = read_safetensors(back / "model.safetensors")
    assert sorted(original) == sorted(exported)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    a, b = json.loads((src / "config.json").read_text()), json.loads((back / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_parameters", "tie_word_embeddings")  # fmt: skip
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_import_reads_sharded_safetensors(tmp_path):
    src = tmp_path / "src"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=16))  # fmt: skip
    model.save_pretrained(src, safe_serialization=True, max_shard_size="20KB")
    assert (src / "model.safetensors.index.json").exists() and not (src / "model.safetensors").exists()
    run = import_hf(src, tmp_path / "run")
    ours, _ = load_model(run)
    ids = torch.randint(0, 64, (1, 16))
    with torch.no_grad():
        assert (ours(ids) - model.eval()(ids).logits).abs().max().item() < 1e-4


def test_imported_run_generates_evaluates_and_fine_tunes(trained, tmp_path, capsys):
    root, run, out = trained
    imported = tmp_path / "imported"
    assert cli.main(["import", str(out), "--out", str(imported)]) == 0
    assert (imported / "tokenizer").is_dir()
    assert read_checkpoint(imported / "ckpt.pt")["iteration"] == 0
    # Same weights as the original run, so the same samples and the same evaluation.
    args = ["--prompt", "once upon a time", "--max-new-tokens", "12", "--temperature", "0"]
    capsys.readouterr()
    assert cli.main(["generate", "--checkpoint", str(run), *args]) == 0
    original = capsys.readouterr().out
    assert cli.main(["generate", "--checkpoint", str(imported), *args]) == 0
    assert capsys.readouterr().out == original
    a = lm336.evaluate(run, root / "valid.txt")
    b = lm336.evaluate(imported, root / "valid.txt")
    assert a == b
    # Fine-tuning continues from the imported weights with `lm336 train --resume`.
    before = b["loss"]
    argv = ["train", "--config", str(imported / "config.json"), "--resume", "--set", f"data.train_path={root / 'train.npy'}",
            f"data.val_path={root / 'valid.npy'}", "run.max_steps=5", "run.eval_batches=1", "run.progress=false",
            "run.device=cpu", "run.batch_size=4", "optimizer.lr=1e-3", "optimizer.warmup_iters=0"]  # fmt: skip
    assert cli.main(argv) == 0
    assert read_checkpoint(imported / "ckpt.pt")["iteration"] == 5
    after = lm336.evaluate(imported, root / "valid.txt")["loss"]
    assert after != before and abs(after - before) < 0.5  # continued from the imported weights, not from scratch


# --- import: bad input, one clear error each, nothing written ---------------------------------------


def _edit_config(src: Path, **changes) -> None:
    config = json.loads((src / "config.json").read_text())
    config.update(changes)
    (src / "config.json").write_text(json.dumps(config))


def _edit_tensors(src: Path, edit) -> None:
    tensors, meta = read_safetensors(src / "model.safetensors")
    edit(tensors)
    write_safetensors(tensors, src / "model.safetensors", meta)


def _truncate(src: Path) -> None:
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])


def _pickle_only(src: Path) -> None:
    tensors, _ = read_safetensors(src / "model.safetensors")
    (src / "model.safetensors").unlink()
    torch.save(tensors, src / "pytorch_model.bin")


def _pickle_named_safetensors(src: Path) -> None:
    tensors, _ = read_safetensors(src / "model.safetensors")
    torch.save(tensors, src / "model.safetensors")


BAD_IMPORTS = {
    "not llama": (lambda s: _edit_config(s, model_type="gpt2", architectures=["GPT2LMHeadModel"]), "model_type 'gpt2' is not 'llama'"),
    "gqa": (lambda s: _edit_config(s, num_key_value_heads=2), "grouped-query attention (num_key_value_heads=2"),
    "activation": (lambda s: _edit_config(s, hidden_act="gelu"), "hidden_act='gelu'"),
    "rope scaling": (lambda s: _edit_config(s, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "rope_type"),
    "rope scaling (transformers 4)": (lambda s: _edit_config(s, rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling="),
    "sliding window": (lambda s: _edit_config(s, sliding_window=16), "sliding_window=16"),
    "attention bias": (lambda s: _edit_config(s, attention_bias=True), "attention_bias=true"),
    "bias tensors": (
        lambda s: _edit_tensors(s, lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(48)})),
        "bias tensors",
    ),
    "missing tensor": (
        lambda s: _edit_tensors(s, lambda t: t.pop("model.layers.1.mlp.up_proj.weight")),
        "missing tensors ['model.layers.1.mlp.up_proj.weight']",
    ),
    "unexpected tensor": (
        lambda s: _edit_tensors(s, lambda t: t.update({"model.extra.weight": torch.zeros(2)})),
        "unexpected tensors ['model.extra.weight']",
    ),
    "shape mismatch": (
        lambda s: _edit_config(s, intermediate_size=96),
        "shape differences: model.layers.0.mlp.gate_proj.weight: file (80, 48) vs model (96, 48)",
    ),
    "integer tensor": (
        lambda s: _edit_tensors(s, lambda t: t.update({"model.norm.weight": torch.ones(48, dtype=torch.int8)})),
        "not floating point (quantized or packed weights?): model.norm.weight (int8)",
    ),
    "truncated": (_truncate, "not a readable safetensors file"),
    "pickle": (_pickle_only, "pickles (pytorch_model.bin), which lm336 never unpickles"),
    "pickle named safetensors": (_pickle_named_safetensors, "a PyTorch pickle?"),
    "no config": (lambda s: (s / "config.json").unlink(), "no config.json"),
    "bad json": (lambda s: (s / "config.json").write_text("{nope"), "not valid JSON"),
    "unreadable tokenizer": (
        lambda s: (s / "tokenizer.json").write_text("{}"),
        "holds tokenizer files (tokenizer.json) that bpe336 cannot read",
    ),
}


@pytest.mark.parametrize("case", list(BAD_IMPORTS))
def test_import_refuses_bad_input_and_writes_nothing(tmp_path, capsys, monkeypatch, case):
    breaker, message = BAD_IMPORTS[case]
    src = _hf_llama(tmp_path / "src")
    breaker(src)
    before = _tree(tmp_path)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called on an import")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        import_hf(src, tmp_path / "runs" / "new")
    assert message in str(e.value)
    capsys.readouterr()
    assert cli.main(["import", str(src), "--out", str(tmp_path / "runs" / "new")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lm336 import: error:") and message in err and "Traceback" not in err and err.count("\n") == 1
    assert _tree(tmp_path) == before  # nothing written, not even the parent folder


def test_import_without_tokenizer_flag_skips_a_tokenizer_it_cannot_read(tmp_path):
    src = _hf_llama(tmp_path / "src")
    (src / "tokenizer.json").write_text("{}")
    run = import_hf(src, tmp_path / "run", include_tokenizer=False)
    assert not (run / "tokenizer").exists()


def test_import_context_length_override(tmp_path):
    run = import_hf(_hf_llama(tmp_path / "src"), tmp_path / "run", context_length=16)
    model, _ = load_model(run)
    assert model.config.context_length == 16


# --- model.safetensors: the weights-only file ---------------------------------------------------


@pytest.mark.parametrize("tie", [False, True])
def test_weights_file_round_trip(tmp_path, tie):
    model = _random_model(60, 32, 4, tie_embeddings=tie)
    save_weights(model, tmp_path / "w.safetensors", iteration=7)
    tensors, meta = read_safetensors(tmp_path / "w.safetensors")
    assert ("lm_head.weight" in tensors) is not tie
    assert json.loads(meta["lm336.model_config"]) == model.config.to_dict() and meta["lm336.iteration"] == "7"
    again, info = load_weights(tmp_path / "w.safetensors")
    assert info["iteration"] == 7 and again.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    if tie:
        assert again.lm_head.weight is again.token_embeddings.weight
    # Nothing else in the folder (safetensors' own temporary stays in the writer's), and the
    # permissions a plain open() gives, not mkstemp's 0600.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_weights_file_bad_input(tmp_path):
    model = _random_model(60, 32, 4)
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(path)
    write_safetensors({"a": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no 'lm336.model_config'"):
        load_weights(path)
    tensors = dict(model.state_dict())
    tensors.pop("ln_final.weight")
    write_safetensors(tensors, path, {"lm336.model_config": json.dumps(model.config.to_dict())})
    with pytest.raises(ValueError, match=r"missing tensors \['ln_final.weight'\]"):
        load_weights(path)
    tensors["ln_final.weight"] = torch.ones(32, dtype=torch.int32)
    write_safetensors(tensors, path, {"lm336.model_config": json.dumps(model.config.to_dict())})
    with pytest.raises(ValueError, match=r"not floating point \(quantized or packed weights\?\): ln_final.weight \(int32\)"):
        load_weights(path)
    with pytest.raises(IsADirectoryError):
        load_weights(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.safetensors")


def test_weights_file_detects_every_changed_byte(tmp_path):
    """safetensors has no checksum: ours covers the tensors and the metadata (the model config),
    so a flipped bit anywhere in the file is an error naming it, never a silently different model."""
    import random

    model = _random_model(60, 32, 4)
    path = tmp_path / "w.safetensors"
    save_weights(model, path, iteration=3)
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little") + 8
    rnd = random.Random(0)
    # every byte of the header (names, dtypes, offsets, the config) and a sample of the data
    for i in [*range(8, header), *rnd.sample(range(header, len(data)), 200)]:
        for bit in (0, 6) if i < header else (rnd.randrange(8),):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            path.write_bytes(bytes(flipped))
            try:
                again, info = load_weights(path)
            except ValueError as e:
                assert str(path) in str(e)
                continue
            # the only flips that may load change nothing the model or its config depend on
            # (JSON whitespace) or rename the checksum key itself, leaving every tensor intact
            assert info["iteration"] == 3 and again.config == model.config, (i, bit)
            for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
                assert torch.equal(a, b), (i, bit, name)


def test_weights_file_with_nan_is_refused(tmp_path):
    model = _random_model(60, 32, 4)
    with torch.no_grad():
        model.ln_final.weight[0] = float("nan")
    save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"w.safetensors: the weights hold NaN or inf values \(e.g. ln_final.weight\)"):
        load_weights(tmp_path / "w.safetensors")


def test_generate_reads_the_weights_file_and_reports_a_truncated_one(trained, tmp_path, capsys):
    _, run, _ = trained
    args = ["--prompt", "the cat", "--max-new-tokens", "10", "--seed", "3"]
    capsys.readouterr()
    assert cli.main(["generate", "--checkpoint", str(run / "ckpt.pt"), *args]) == 0
    from_pt = capsys.readouterr().out
    assert cli.main(["generate", "--checkpoint", str(run / "model.safetensors"), *args]) == 0
    assert capsys.readouterr().out == from_pt
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:1000])
    assert cli.main(["generate", "--checkpoint", str(broken), "--tokenizer", str(run / "tokenizer"), *args]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "not a readable safetensors file" in err


def test_training_writes_weights_file_with_each_checkpoint(tmp_path):
    run = train_tiny_run(tmp_path, "run.max_steps=4", "run.checkpoint_interval=2", "run.eval_batches=0")
    _, info = load_weights(run / "model.safetensors")
    assert info["iteration"] == 4 == read_checkpoint(run / "ckpt.pt")["iteration"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left

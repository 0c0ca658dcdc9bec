"""The training loop against an independent torch.nn/torch.optim baseline, exact resume after a
SIGKILL, divergence handling, bad data, logs and the command line.

    PYTHONPATH=python python -m pytest tests/test_training.py -q
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lm336
from lm336.accounting import flops_per_token
from lm336.config import ConfigError, TrainConfig, apply_overrides
from lm336.data import read_checkpoint
from lm336.model import TransformerLM
from lm336.training import (
    BatchStream,
    DataError,
    DivergedError,
    main,
    open_tokens,
    seed_everything,
    train,
    validation_starts,
)

VOCAB = 64


def _tokens(n: int = 30_000, seed: int = 0) -> np.ndarray:
    """A learnable stream: overlapping copies of one random 'text' (so the loss visibly falls)."""
    rng = np.random.default_rng(seed)
    text = rng.integers(0, VOCAB, size=400)
    pieces = [text[s : s + 40] for s in rng.integers(0, 360, size=n // 40 + 1)]
    return np.concatenate(pieces)[:n].astype(np.uint16)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    train_path, val_path = tmp_path / "train.bin", tmp_path / "val.bin"
    _tokens(30_000, 0).tofile(train_path)
    _tokens(4_000, 1).tofile(val_path)
    return train_path, val_path


def _cfg(tmp_path: Path, data, *overrides: str) -> TrainConfig:
    train_path, val_path = data
    return apply_overrides(
        TrainConfig(),
        [
            f"model.vocab_size={VOCAB}", "model.context_length=16", "model.d_model=32", "model.num_layers=2",
            "model.num_heads=4", "model.d_ff=64", f"data.train_path={train_path}", f"data.val_path={val_path}",
            f"run.out_dir={tmp_path / 'run'}", "run.max_steps=20", "run.batch_size=4", "run.eval_interval=10",
            "run.eval_batches=2", "run.log_interval=1", "run.checkpoint_interval=10", "run.progress=false",
            "optimizer.lr=3e-3", "optimizer.min_lr=3e-4", "optimizer.warmup_iters=3", "run.device=cpu",
            *overrides,
        ],
    )  # fmt: skip


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


# --- an independent baseline: torch.nn layers, F.scaled_dot_product_attention, torch.optim.AdamW ----


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate adjacent pairs as complex numbers: (x0 + i x1) * exp(i pos theta^(-2k/d))."""
    seq, d = x.shape[-2], x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * freqs  # (seq, d/2)
    rot = torch.polar(torch.ones_like(angles), angles)  # (seq, d/2) complex128
    xc = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)


class _Block(nn.Module):
    def __init__(self, d: int, h: int, d_ff: int, theta: float):
        super().__init__()
        self.h, self.theta = h, theta
        self.attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "output_proj"):
            setattr(self.attn, name, nn.Linear(d, d, bias=False))
        self.ffn = nn.Module()
        self.ffn.w1, self.ffn.w3 = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.ffn.w2 = nn.Linear(d_ff, d, bias=False)
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)

    def forward(self, x):
        b, t, d = x.shape
        a = self.ln1(x)
        heads = (getattr(self.attn, n)(a) for n in ("q_proj", "k_proj", "v_proj"))
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in heads)
        q, k = _rope(q, self.theta), _rope(k, self.theta)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn.output_proj(o)
        f = self.ln2(x)
        return x + self.ffn.w2(F.silu(self.ffn.w1(f)) * self.ffn.w3(f))


class _Baseline(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.token_embeddings = nn.Embedding(m.vocab_size, m.d_model)
        self.layers = nn.ModuleList(_Block(m.d_model, m.num_heads, m.d_ff, m.rope_theta) for _ in range(m.num_layers))
        self.ln_final = nn.RMSNorm(m.d_model, eps=1e-5)
        self.lm_head = nn.Linear(m.d_model, m.vocab_size, bias=False)

    def forward(self, ids):
        x = self.token_embeddings(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.ln_final(x))


def _baseline_losses(cfg: TrainConfig) -> tuple[list[float], dict]:
    """The same run written with torch.nn/torch.optim: same init, batches, schedule, clipping."""
    seed_everything(cfg.run.seed)
    dtype = getattr(torch, cfg.run.dtype)
    ours = TransformerLM.from_config(cfg.model, dtype=dtype)  # train() initialises exactly so
    base = _Baseline(cfg.model).to(dtype)
    base.load_state_dict(ours.state_dict())
    o = cfg.optimizer
    decay = [p for p in base.parameters() if p.dim() >= 2]
    no_decay = [p for p in base.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr, betas=o.betas, eps=o.eps, foreach=True,
    )  # fmt: skip
    tokens = open_tokens(cfg.data.train_path)
    stream = BatchStream(tokens, cfg.run.batch_size, cfg.model.context_length, "cpu", cfg.run.seed, 0)
    T_w, T_c = o.warmup_iters, cfg.run.max_steps
    losses = []
    for t in range(cfg.run.max_steps):
        if t < T_w:
            lr = o.lr * t / T_w
        else:
            lr = o.min_lr + 0.5 * (1 + math.cos(math.pi * (t - T_w) / (T_c - T_w))) * (o.lr - o.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = stream.next()
        loss = F.cross_entropy(base(x).flatten(0, 1), y.flatten())
        loss.backward()
        nn.utils.clip_grad_norm_(base.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, base.state_dict()


def test_loss_curve_matches_torch_baseline_float64(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.dtype=float64", "optimizer.grad_clip=0.5", "optimizer.lr=1e-2")
    summary = train(cfg)
    ours = [r["train_loss"] for r in _log(summary["run_dir"])]
    expected, base_state = _baseline_losses(cfg)
    assert len(ours) == cfg.run.max_steps
    f64 = torch.float64
    torch.testing.assert_close(torch.tensor(ours, dtype=f64), torch.tensor(expected, dtype=f64), rtol=1e-10, atol=0)
    assert sum(ours[-5:]) / 5 < sum(ours[:5]) / 5 - 0.2  # it learns
    final = read_checkpoint(Path(summary["run_dir"]) / "ckpt.pt")["model"]
    for name, value in base_state.items():
        torch.testing.assert_close(final[name], value, rtol=1e-8, atol=1e-10, msg=name)


def test_loss_curve_matches_torch_baseline_float32(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.dtype=float32")
    summary = train(cfg)
    ours = torch.tensor([r["train_loss"] for r in _log(summary["run_dir"])])
    expected, _ = _baseline_losses(cfg)
    torch.testing.assert_close(ours, torch.tensor(expected), rtol=1e-4, atol=0)  # float32 rounding only


def test_gradient_accumulation_matches_one_big_batch(tmp_path, data):
    # 2 micro-batches of 2 draw the same windows as one batch of 4 (one generator, drawn in order).
    a = train(_cfg(tmp_path, data, "run.dtype=float64", f"run.out_dir={tmp_path / 'a'}"))
    b = train(_cfg(tmp_path, data, "run.dtype=float64", "run.grad_accum_steps=2", f"run.out_dir={tmp_path / 'b'}"))
    la = torch.tensor([r["train_loss"] for r in _log(a["run_dir"])], dtype=torch.float64)
    lb = torch.tensor([r["train_loss"] for r in _log(b["run_dir"])], dtype=torch.float64)
    torch.testing.assert_close(la, lb, rtol=1e-10, atol=1e-10)


TIMINGS = ("time_s", "tokens_per_s", "mfu")  # log fields measured by the clock, not computed


def test_run_directory_log_and_summary(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.log_interval=4", "run.eval_interval=5")
    summary = train(cfg)
    run = Path(summary["run_dir"])
    assert sorted(p.name for p in run.iterdir()) == ["ckpt.pt", "config.json", "log.jsonl", "model.safetensors", "summary.json"]
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    assert json.loads((run / "summary.json").read_text()) == summary
    log = _log(run)
    # log steps 4, 8, 12, 16, 20 and eval steps 5, 10, 15, 20
    assert [r["step"] for r in log] == [4, 5, 8, 10, 12, 15, 16, 20]
    keys = {"step", "tokens", "time_s", "lr", "train_loss", "val_loss", "val_perplexity", "val_bpb", "grad_norm", "tokens_per_s", "mfu"}
    for r in log:
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"]
        assert set(r) == keys
        assert r["val_bpb"] is None  # no data.tokenizer_path
        assert r["tokens"] == r["step"] * cfg.run.batch_size * cfg.model.context_length
        assert (r["val_loss"] is None) == (r["step"] % 5 != 0)
        if r["val_loss"] is not None:
            assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
    assert [r["time_s"] for r in log] == sorted(r["time_s"] for r in log)
    assert summary["steps"] == 20 and summary["tokens"] == 20 * 4 * 16
    assert summary["final_val_loss"] == log[-1]["val_loss"] and summary["final_train_loss"] == log[-1]["train_loss"]
    ckpt = read_checkpoint(run / "ckpt.pt")
    assert ckpt["iteration"] == 20 and ckpt["config"] == cfg.to_dict() and "rng" in ckpt
    assert summary["flops_per_token"] == flops_per_token(cfg.model, training=True)
    assert summary["peak_flops"] > 0 and summary["peak_flops_source"].startswith("measured float32 matmul")
    assert summary["tokens_per_s"] > 0 and summary["peak_memory_bytes"] > 0
    assert summary["mfu"] == pytest.approx(summary["tokens_per_s"] * summary["flops_per_token"] / summary["peak_flops"])


def test_mfu_against_a_stated_peak(tmp_path, data):
    """run.peak_flops overrides the device's peak: MFU = tokens/s x model FLOPs per token / peak."""
    summary = train(_cfg(tmp_path, data, "run.log_interval=5", "run.max_steps=10", "run.peak_flops=1e12"))
    assert summary["peak_flops"] == 1e12 and summary["peak_flops_source"] == "override"
    for r in _log(summary["run_dir"]):
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * summary["flops_per_token"] / 1e12)
    with pytest.raises(ConfigError, match="run.peak_flops"):
        train(_cfg(tmp_path, data, "run.peak_flops=-1"))


def test_validation_uses_fixed_windows(tmp_path, data):
    assert validation_starts(1000, 99, 4).tolist() == [0, 300, 600, 900]
    # Evaluation does not touch the training stream: different eval settings, same train losses.
    a = train(_cfg(tmp_path, data, f"run.out_dir={tmp_path / 'a'}", "run.eval_interval=2", "run.max_steps=8"))
    b = train(_cfg(tmp_path, data, f"run.out_dir={tmp_path / 'b'}", "run.eval_interval=0", "run.max_steps=8"))
    assert [r["train_loss"] for r in _log(a["run_dir"])] == [r["train_loss"] for r in _log(b["run_dir"])]
    assert a["final_val_loss"] == b["final_val_loss"]


def test_lm336_train_is_the_function():
    assert lm336.train is train


# --- resume after a hard kill -------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    root = str(Path(lm336.__file__).resolve().parents[1])  # the package's own tree (source or installed)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same matmul threading as this process
    return env


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.max_steps=100", "run.checkpoint_interval=5", "run.log_interval=5",
               "run.eval_interval=50")  # fmt: skip
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    killed_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lm336", "train", "--config", str(config_file), "--set", f"run.out_dir={killed_dir}"]
    proc = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (killed_dir / "ckpt.pt").exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    killed_at = read_checkpoint(killed_dir / "ckpt.pt")["iteration"]
    assert 0 < killed_at < 100

    assert main(["--config", str(config_file), "--set", f"run.out_dir={killed_dir}", "--resume"]) == 0
    reference = train(apply_overrides(cfg, [f"run.out_dir={tmp_path / 'straight'}"]))

    a = read_checkpoint(Path(reference["run_dir"]) / "ckpt.pt")
    b = read_checkpoint(killed_dir / "ckpt.pt")
    assert a["iteration"] == b["iteration"] == 100
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for pid, state in a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key], b["optimizer"]["state"][pid][key])
    # The log reads as one run: lines the killed process wrote past its checkpoint were replaced.
    drop_time = [{k: v for k, v in r.items() if k not in TIMINGS} for r in _log(killed_dir)]
    assert drop_time == [{k: v for k, v in r.items() if k not in TIMINGS} for r in _log(reference["run_dir"])]


def test_resume_rejects_a_different_model(tmp_path, data):
    train(_cfg(tmp_path, data, "run.max_steps=5"))
    with pytest.raises(ConfigError, match="different model config.*d_model"):
        train(_cfg(tmp_path, data, "run.max_steps=10", "run.resume=true", "model.d_model=64"))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(tmp_path, data, "run.resume=true"))


def test_resume_can_extend_a_finished_run(tmp_path, data):
    train(_cfg(tmp_path, data, "run.max_steps=10", "optimizer.cosine_cycle_iters=20"))
    extended = train(_cfg(tmp_path, data, "run.max_steps=20", "optimizer.cosine_cycle_iters=20", "run.resume=true"))
    straight = train(_cfg(tmp_path, data, "run.max_steps=20", "optimizer.cosine_cycle_iters=20",
                          f"run.out_dir={tmp_path / 'straight'}"))  # fmt: skip
    assert extended["final_train_loss"] == straight["final_train_loss"]
    assert [r["step"] for r in _log(extended["run_dir"])] == list(range(1, 21))


# --- divergence and bad input -------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    train(_cfg(tmp_path, data, "run.max_steps=10"))
    ckpt = tmp_path / "run" / "ckpt.pt"
    before = _sha(ckpt)
    with pytest.raises(DivergedError, match="diverged.*last good checkpoint is kept") as err:
        train(_cfg(tmp_path, data, "run.max_steps=30", "run.resume=true", "optimizer.lr=1e30",
                   "optimizer.min_lr=1e30", "run.checkpoint_interval=2", "run.log_interval=50"))  # fmt: skip
    assert isinstance(err.value, ValueError)
    assert _sha(ckpt) == before  # never overwritten with the diverged state
    state = read_checkpoint(ckpt)
    assert state["iteration"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    model = TransformerLM.from_config(TrainConfig.from_dict(state["config"]).model)
    model.load_state_dict(state["model"])


def test_nan_on_a_log_step_names_the_step(tmp_path, data, monkeypatch):
    # A poisoned weight: the very first forward pass gives NaN, caught on the first log step.
    import lm336.training as training

    real = training.TransformerLM.from_config

    def poisoned(cfg, device=None, dtype=None):
        model = real(cfg, device=device, dtype=dtype)
        with torch.no_grad():
            model.lm_head.weight[0, 0] = float("nan")
        return model

    monkeypatch.setattr(training.TransformerLM, "from_config", staticmethod(poisoned))
    with pytest.raises(DivergedError, match="at step 1 "):
        train(_cfg(tmp_path, data, "run.log_interval=3"))
    assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_overwrite_stopped_before_its_first_checkpoint_leaves_none_of_the_old_run(tmp_path, data, monkeypatch):
    # --overwrite removes every file the old run trained, model.safetensors included: a new run
    # stopped (Ctrl-C, a kill) before its first checkpoint must not leave the old model where
    # load_model, generate and export look for this run's.
    import lm336.training as training
    from lm336.checkpoint import load_model

    train(_cfg(tmp_path, data, "run.max_steps=2"))
    run = tmp_path / "run"
    assert (run / "model.safetensors").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "cross_entropy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, data, "run.overwrite=true", "model.d_model=64"))
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "log.jsonl"]
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(run)


def test_resume_rewrites_a_weights_file_a_kill_left_behind_the_checkpoint(tmp_path, data, monkeypatch):
    # model.safetensors is written just after ckpt.pt; stopped between the two on the last step,
    # the run is complete, so resuming trains nothing, yet must leave the weights of ckpt.pt.
    import lm336.training as training
    from lm336.safetensors_io import load_weights

    real = training.save_weights

    def stopped_on_the_last_step(model, path, *, iteration=None):
        if iteration == 4:
            raise KeyboardInterrupt
        real(model, path, iteration=iteration)

    monkeypatch.setattr(training, "save_weights", stopped_on_the_last_step)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, data, "run.max_steps=4", "run.checkpoint_interval=2"))
    monkeypatch.setattr(training, "save_weights", real)
    run = tmp_path / "run"
    assert load_weights(run / "model.safetensors")[1]["iteration"] == 2
    train(_cfg(tmp_path, data, "run.max_steps=4", "run.checkpoint_interval=2", "run.resume=true"))
    model, info = load_weights(run / "model.safetensors")
    ckpt = read_checkpoint(run / "ckpt.pt")
    assert info["iteration"] == ckpt["iteration"] == 4
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())


def test_token_ids_beyond_vocab_are_rejected(tmp_path, data):
    bad = tmp_path / "bad.bin"
    tokens = _tokens(5_000)
    tokens[1234] = 70
    tokens.tofile(bad)
    with pytest.raises(DataError, match=r"id 70 at index 1234.*vocab_size=64"):
        train(_cfg(tmp_path, data, f"data.train_path={bad}"))
    with pytest.raises(DataError, match="id 70"):
        train(_cfg(tmp_path, data, f"data.val_path={bad}"))


def test_missing_and_malformed_data_files(tmp_path, data, capsys):
    with pytest.raises(FileNotFoundError, match="nope.bin does not exist"):
        train(_cfg(tmp_path, data, f"data.train_path={tmp_path / 'nope.bin'}"))
    with pytest.raises(IsADirectoryError):
        train(_cfg(tmp_path, data, f"data.val_path={tmp_path}"))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match="not a multiple of 2"):
        train(_cfg(tmp_path, data, f"data.train_path={odd}"))
    short = tmp_path / "short.bin"
    np.arange(10, dtype=np.uint16).tofile(short)
    with pytest.raises(DataError, match="too few"):
        train(_cfg(tmp_path, data, f"data.train_path={short}"))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        train(_cfg(tmp_path, data, f"data.train_path={empty}"))
    # a text file (which lm336 eval --data reads as text) is not taken for raw uint16 ids, even
    # when every pair of its bytes happens to be an id within the vocabulary
    text = tmp_path / "corpus.txt"
    text.write_bytes(np.asarray(_tokens(5_000), dtype="<u2").tobytes())
    for key in ("train_path", "val_path"):
        with pytest.raises(DataError, match=r"corpus.txt: not a token array .*bpe336 encode"):
            train(_cfg(tmp_path, data, f"data.{key}={text}"))
    # the command line prints the message instead of a traceback
    assert main(["--set", f"data.train_path={tmp_path / 'nope.bin'}", f"run.out_dir={tmp_path / 'x'}"]) == 1
    assert "nope.bin does not exist" in capsys.readouterr().err


def test_npy_and_uint32_inputs_and_held_out_tail(tmp_path, data):
    npy = tmp_path / "train.npy"
    np.save(npy, _tokens(20_000).astype(np.int32))
    u32 = tmp_path / "train32.bin"
    _tokens(20_000).astype(np.uint32).tofile(u32)
    a = train(_cfg(tmp_path, data, f"data.train_path={npy}", "data.val_path=", "run.max_steps=3",
                   f"run.out_dir={tmp_path / 'a'}"))  # fmt: skip
    b = train(_cfg(tmp_path, data, f"data.train_path={u32}", "data.dtype=uint32", "data.val_path=", "run.max_steps=3",
                   f"run.out_dir={tmp_path / 'b'}"))  # fmt: skip
    assert a["final_train_loss"] == b["final_train_loss"] and a["final_val_loss"] == b["final_val_loss"]


def test_cli_overrides_and_errors(tmp_path, data, capsys):
    cfg = _cfg(tmp_path, data)
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    assert main(["--config", str(config_file), "--set", "optimizer.lr=1e-2", "run.batch_size=8", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optimizer"]["lr"] == 1e-2 and printed["run"]["batch_size"] == 8
    assert main(["--config", str(config_file), "--set", "optimizer.lrr=1"]) == 2
    assert "did you mean optimizer.lr" in capsys.readouterr().err
    assert main(["--config", str(config_file), "--set", "run.max_steps=2"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["steps"] == 2  # log lines, then the summary


def test_wandb_requested_without_package_is_a_clear_error(tmp_path, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ImportError, match="pip install wandb"):
        train(_cfg(tmp_path, data, "run.wandb=true"))


def test_wandb_receives_the_log_when_asked(tmp_path, data, monkeypatch):
    calls = []

    class FakeRun:
        def log(self, d, step=None):
            calls.append((step, d))

        def finish(self):
            calls.append("finish")

    fake = type(sys)("wandb")
    fake.init = lambda **kw: FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train(_cfg(tmp_path, data, "run.wandb=true", "run.max_steps=4"))
    assert [c[0] for c in calls[:-1]] == [1, 2, 3, 4] and calls[-1] == "finish"
    assert "val_loss" in calls[-2][1] and "val_loss" not in calls[0][1]


# --- the accelerator code paths, exercised on the CPU ---------------------------------------------


def test_bf16_autocast_and_dict_or_path_configs(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.autocast=bfloat16", "run.max_steps=6", "optimizer.lr=1e-2")
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    a = train(str(config_file))
    log = _log(a["run_dir"])
    assert all(math.isfinite(r["train_loss"]) for r in log) and log[-1]["train_loss"] < log[0]["train_loss"]
    b = train(apply_overrides(cfg, [f"run.out_dir={tmp_path / 'b'}"]).to_dict())
    assert a["final_val_loss"] == b["final_val_loss"]  # same run from a path and from a dict
    # bf16 matmuls, float32 master weights: close to the float32 run, but not equal
    c = train(apply_overrides(cfg, ["run.autocast=none", f"run.out_dir={tmp_path / 'c'}"]))
    assert c["final_val_loss"] != a["final_val_loss"]
    assert abs(c["final_val_loss"] - a["final_val_loss"]) < 0.05


@pytest.mark.slow
def test_torch_compile_gives_the_eager_loss_curve(tmp_path, data):
    eager = train(_cfg(tmp_path, data, "run.max_steps=5", f"run.out_dir={tmp_path / 'eager'}"))
    compiled = train(_cfg(tmp_path, data, "run.max_steps=5", "run.compile=true", f"run.out_dir={tmp_path / 'c'}"))
    la = torch.tensor([r["train_loss"] for r in _log(eager["run_dir"])])
    lb = torch.tensor([r["train_loss"] for r in _log(compiled["run_dir"])])
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_request_without_cuda_is_an_error_before_any_work(tmp_path, data, capsys):
    # One device policy (lm336.common.resolve_device): a device named explicitly must exist.
    with pytest.raises(ConfigError, match="run.device: device 'cuda' asked for, but CUDA is not available"):
        train(_cfg(tmp_path, data, "run.device=cuda", "run.max_steps=2"))
    assert not (tmp_path / "run").exists()
    summary = train(_cfg(tmp_path, data, "run.device=auto", "run.max_steps=2"))  # auto: the CPU here
    assert summary["steps"] == 2


def test_resume_drops_log_lines_past_the_checkpoint_and_a_torn_line(tmp_path, data):
    cfg = _cfg(tmp_path, data, "run.max_steps=10", "run.checkpoint_interval=5", "run.eval_interval=5",
               "optimizer.cosine_cycle_iters=10")  # fmt: skip
    train(cfg)
    full = _log(tmp_path / "run")
    # As if killed while writing step 8's line: checkpoint at 5, lines up to 7, then a torn line.
    train(apply_overrides(cfg, ["run.max_steps=5", "run.overwrite=true"]))
    log_path = tmp_path / "run" / "log.jsonl"
    lines = log_path.read_text().splitlines()
    assert len(lines) == 5
    extra = [json.dumps(r) for r in full[5:7]] + [json.dumps(full[7])[:20]]
    log_path.write_text("\n".join(lines + extra))
    train(apply_overrides(cfg, ["run.resume=true"]))

    def no_time(rows):
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

    assert no_time(_log(tmp_path / "run")) == no_time(full)

"""Sweeps: planning, end-to-end tiny runs, divergence handling, summary tables and the figure.

PYTHONPATH=python python -m pytest tests/test_sweep.py -q
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lm336 import sweep as sw
from lm336.config import ConfigError, TrainConfig, apply_overrides

TINY = [
    "model.vocab_size=64",
    "model.context_length=16",
    "model.d_model=16",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.d_ff=32",
    "optimizer.warmup_iters=2",
    "run.max_steps=4",
    "run.batch_size=4",
    "run.eval_interval=2",
    "run.eval_batches=1",
    "run.log_interval=1",
    "run.checkpoint_interval=0",
    "run.progress=false",
    "run.device=cpu",
    "run.compile=false",
    "run.autocast=none",
]


@pytest.fixture
def base(tmp_path) -> TrainConfig:
    rng = np.random.default_rng(0)
    # A learnable stream: mostly counting mod 64 with some noise.
    tokens = (np.arange(6000) + (rng.random(6000) < 0.1) * rng.integers(0, 64, 6000)) % 64
    path = tmp_path / "tokens.npy"
    np.save(path, tokens.astype(np.uint16))
    return apply_overrides(TrainConfig(), TINY + [f"data.train_path={path}"])


def test_plan_one_at_a_time_and_grid(base, tmp_path):
    runs = sw.plan_sweep(
        base, tmp_path / "s", ablations=sw.parse_ablations(["norm=pre,post,none", "position=rope,nope", "ffn=swiglu,silu"])
    )
    # The base run, then one run per value that differs from the base (pre, rope, swiglu are the base).
    assert [r.name for r in runs] == ["base", "norm-post", "norm-none", "position-nope", "ffn-silu"]
    assert runs[1].config.model.norm == "post" and runs[1].config.model.ffn == "swiglu"
    assert runs[4].config.run.out_dir == str(tmp_path / "s" / "ffn-silu")
    grid = sw.plan_sweep(base, tmp_path / "s", ablations={"norm": ["pre", "none"], "ffn": ["swiglu", "silu"]}, ablation_mode="grid")
    assert len(grid) == 4 and {(r.config.model.norm, r.config.model.ffn) for r in grid} == {
        ("pre", "swiglu"),
        ("pre", "silu"),
        ("none", "swiglu"),
        ("none", "silu"),
    }
    lr_bs = sw.plan_sweep(base, tmp_path / "s", lrs=["1e-4", "3e-4", "1e-3"], batch_sizes=["2", "4"])
    assert [r.name for r in lr_bs][:2] == ["lr-1e-4_bs-2", "lr-1e-4_bs-4"]
    assert [(r.config.optimizer.lr, r.config.run.batch_size) for r in lr_bs] == [
        (1e-4, 2),
        (1e-4, 4),
        (3e-4, 2),
        (3e-4, 4),
        (1e-3, 2),
        (1e-3, 4),
    ]


def test_plan_token_budget_equalises_batch_sizes(base, tmp_path):
    runs = sw.plan_sweep(base, tmp_path / "s", batch_sizes=["2", "8"], tokens=1600)
    assert [(r.config.run.max_steps, r.config.optimizer.cosine_cycle_iters) for r in runs] == [(50, 50), (12, 12)]


def test_plan_errors(base, tmp_path):
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sw.plan_sweep(base, tmp_path)
    with pytest.raises(ConfigError, match="unknown config key 'nrom'"):
        sw.plan_sweep(base, tmp_path, ablations={"nrom": ["post"]})
    with pytest.raises(ConfigError, match="model.norm must be one of"):
        sw.plan_sweep(base, tmp_path, ablations={"norm": ["sideways"]})
    with pytest.raises(ConfigError, match="KEY=V1"):
        sw.parse_ablations(["norm"])
    with pytest.raises(ConfigError, match="repeated"):
        sw.parse_values("1e-3,1e-3", "--lr")


def test_sweep_end_to_end(base, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    config = tmp_path / "base.json"
    config.write_text(json.dumps(base.to_dict()))
    argv = ["--config", str(config), "--lr", "1e-2", "--ablations", "norm=pre,none", "ffn=silu", "--out", str(out)]
    assert sw.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| run | lr | norm | ffn |" in printed and "3 runs (0 did not finish)" in printed
    for name in ("lr-1e-2", "norm-none_lr-1e-2", "ffn-silu_lr-1e-2"):
        assert (out / name / "log.jsonl").exists() and (out / name / "summary.json").exists()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["lr-1e-2", "norm-none_lr-1e-2", "ffn-silu_lr-1e-2"]
    # Runs that kept the base value show it (pre-norm, SwiGLU).
    assert [(r["lr"], r["norm"], r["ffn"]) for r in rows] == [
        ("1e-2", "pre", "swiglu"),
        ("1e-2", "none", "swiglu"),
        ("1e-2", "pre", "silu"),
    ]
    for r in rows:
        assert float(r["final_val_loss"]) < np.log(64) + 1 and float(r["tokens_per_s"]) > 0
        assert r["diverged"] == "False" and r["status"] == "finished" and r["steps"] == "4"
        summary = json.loads((out / r["run"] / "summary.json").read_text())
        assert float(r["final_val_loss"]) == summary["final_val_loss"]
        assert np.isclose(float(r["final_val_perplexity"]), np.exp(summary["final_val_loss"]))
    saved = json.loads((out / "norm-none_lr-1e-2" / "config.json").read_text())
    assert saved["model"]["norm"] == "none" and saved["optimizer"]["lr"] == 1e-2
    assert json.loads((out / "sweep.json").read_text())[2]["config"]["model"]["ffn"] == "silu"

    # Running the same sweep again reuses every finished run instead of training it again.
    import lm336.training

    monkeypatch.setattr(lm336.training, "train", lambda cfg: pytest.fail("retrained a finished run"))
    assert sw.main(argv) == 0
    assert capsys.readouterr().out.count("already done") == 3


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(base, tmp_path, monkeypatch):
    import lm336.training
    from lm336.training import DivergedError

    real_train = lm336.training.train

    def train(cfg):
        if cfg.optimizer.lr > 1:  # write part of a log as a real run would, then diverge
            real_train(apply_overrides(cfg, ["run.max_steps=2", "optimizer.lr=1e-3"]))
            raise DivergedError("training diverged: non-finite loss or gradient norm at step 3")
        return real_train(cfg)

    monkeypatch.setattr(lm336.training, "train", train)
    out = tmp_path / "s"
    lines = []
    rows = sw.sweep(base, out, lrs=["10", "1e-3"], log=lines.append)
    assert [r["status"] for r in rows] == ["diverged", "finished"]
    assert rows[0]["diverged"] and "step 3" in rows[0]["error"] and rows[0]["steps"] == 2
    assert rows[0]["final_train_loss"] is not None  # taken from its log
    assert not rows[1]["diverged"] and rows[1]["steps"] == 4
    assert any("diverged; the sweep goes on" in line for line in lines)
    md = (out / "summary.md").read_text()
    assert "| lr-10 | 10 |" in md and "yes" in md and "- lr-10: diverged: training diverged" in md
    assert (out / "curves.png").exists()


def test_real_divergence_from_a_huge_learning_rate(base, tmp_path):
    cfg = apply_overrides(base, ["optimizer.warmup_iters=0", "optimizer.grad_clip=0", "optimizer.weight_decay=0"])
    rows = sw.sweep(cfg, tmp_path / "s", lrs=["1e30"], log=lambda _: None)
    assert rows[0]["diverged"] and "diverged" in rows[0]["error"]
    assert (tmp_path / "s" / "summary.csv").exists()


def test_cli_dry_run_and_errors(base, tmp_path, capsys):
    config = tmp_path / "base.json"
    config.write_text(json.dumps(base.to_dict()))
    assert sw.main(["--config", str(config), "--batch-size", "2,4", "--tokens", "640", "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "bs-2: 20 steps x 2 x 16 tokens" in out and "bs-4: 10 steps x 4 x 16 tokens" in out
    assert not (tmp_path / "s").exists()
    assert sw.main(["--config", str(config), "--out", str(tmp_path / "s")]) == 2
    assert "nothing to sweep" in capsys.readouterr().err
    assert sw.main(["--config", str(tmp_path / "missing.toml"), "--lr", "1e-3", "--out", str(tmp_path / "s")]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad_data = apply_overrides(base, [f"data.train_path={tmp_path / 'nope.npy'}"])
    config.write_text(json.dumps(bad_data.to_dict()))
    assert sw.main(["--config", str(config), "--lr", "1e-3", "--out", str(tmp_path / "s")]) == 1
    assert "nope.npy" in capsys.readouterr().err


def test_cli_refuses_a_file_as_the_sweep_directory_before_training(base, tmp_path, capsys):
    config = tmp_path / "base.json"
    config.write_text(json.dumps(base.to_dict()))
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    assert sw.main(["--config", str(config), "--lr", "1e-3,2e-3", "--out", str(taken)]) == 1
    captured = capsys.readouterr()
    assert f"{taken}: is a file" in captured.err
    assert "[1/" not in captured.out + captured.err  # no run started
    assert taken.read_text() == "not a directory"

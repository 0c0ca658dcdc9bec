"""Data-parallel training with PyTorch DDP on the CPU: gloo backend, 2 processes.

    PYTHONPATH=python python -m pytest tests/test_ddp.py -q

Each process draws its own batches; identical weights on both ranks after training prove that the
gradients were averaged (unsynchronised ranks would drift apart at the first step).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lm336.config import TrainConfig, apply_overrides
from lm336.data import read_checkpoint
from lm336.training import BatchStream, train

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, cfg_dict: dict, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))  # fmt: skip
    torch.set_num_threads(1)  # two processes share the cores
    summary = train(TrainConfig.from_dict(cfg_dict), return_model=True)
    torch.save(summary.pop("model").state_dict(), Path(out) / f"rank{rank}.pt")
    (Path(out) / f"summary{rank}.json").write_text(json.dumps(summary))


def _cfg(tmp_path: Path, *overrides: str) -> TrainConfig:
    rng = np.random.default_rng(0)
    text = rng.integers(0, 64, size=300)
    tokens = np.concatenate([text[s : s + 30] for s in rng.integers(0, 270, size=400)]).astype(np.uint16)
    tokens.tofile(tmp_path / "tokens.bin")
    return apply_overrides(
        TrainConfig(),
        [
            "model.vocab_size=64", "model.context_length=16", "model.d_model=32", "model.num_layers=2",
            "model.num_heads=4", "model.d_ff=64", f"data.train_path={tmp_path / 'tokens.bin'}",
            f"run.out_dir={tmp_path / 'run'}", "run.max_steps=8", "run.batch_size=8", "run.eval_interval=4",
            "run.eval_batches=1", "run.log_interval=2", "run.checkpoint_interval=4", "run.progress=false",
            "run.device=cpu", "optimizer.warmup_iters=2", "optimizer.lr=1e-2", *overrides,
        ],
    )  # fmt: skip


def test_ranks_draw_distinct_batches():
    tokens = np.arange(10_000, dtype=np.uint16)
    a = BatchStream(tokens, 4, 16, "cpu", seed=0, rank=0).next()[0]
    b = BatchStream(tokens, 4, 16, "cpu", seed=0, rank=1).next()[0]
    again = BatchStream(tokens, 4, 16, "cpu", seed=0, rank=0).next()[0]
    assert not torch.equal(a, b) and torch.equal(a, again)


@pytest.mark.parametrize("accum", [1, 2])
def test_two_gloo_processes_keep_identical_weights(tmp_path, accum):
    cfg = _cfg(tmp_path, f"run.grad_accum_steps={accum}")
    mp.spawn(_worker, args=(cfg.to_dict(), _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    # The weights moved, and rank 0 alone wrote the run directory with the agreed numbers.
    ckpt = read_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["iteration"] == 8
    for name in w0:
        assert torch.equal(ckpt["model"][name], w0[name])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8]  # one line per log step, not one per process
    assert log[-1]["tokens"] == 8 * 8 * 16  # batch_size counts sequences over both processes
    s0 = json.loads((tmp_path / "summary0.json").read_text())
    s1 = json.loads((tmp_path / "summary1.json").read_text())
    assert s0["final_val_loss"] == s1["final_val_loss"]  # all-reduced validation loss
    assert s0["final_train_loss"] == s1["final_train_loss"]


def test_batch_not_divisible_by_processes_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, "run.batch_size=3")
    # The worker's ConfigError comes back wrapped, with the worker's traceback in its message.
    with pytest.raises(mp.ProcessRaisedException, match=r"ConfigError: run\.batch_size \(3\) must be divisible by processes"):
        mp.spawn(_worker, args=(cfg.to_dict(), _free_port(), str(tmp_path)), nprocs=WORLD, join=True)


@pytest.mark.slow
def test_torchrun_launches_the_cli(tmp_path):
    """The real launcher: torchrun --nproc-per-node 2 -m lm336 train --config ..."""
    import subprocess
    import sys

    import lm336

    cfg = _cfg(tmp_path)
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(lm336.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    launcher = [sys.executable, "-m", "torch.distributed.run"]  # = torchrun, for this interpreter
    done = subprocess.run(
        [*launcher, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "lm336", "train",
         "--config", str(config_file)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout[done.stdout.index("{") :])["steps"] == 8  # the summary, printed once
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["iteration"] == 8

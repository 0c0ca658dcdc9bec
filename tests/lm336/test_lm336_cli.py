"""The `lm336` commands on bad input and at start-up: every mistake prints `lm336 CMD: error: ...` on
one line and exits non-zero (never a traceback); `train` refuses to replace a run silently, prints a
header (and "resumed from step N"), writes plain lines when its output is not a terminal, warns
before a run far too big for a CPU, and keeps to a time budget.

    cd tests && python -m pytest -q lm336/test_lm336_cli.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from testdata import CONFIGS

import lm336
from lm336 import checkpoint as ck
from lm336 import training
from lm336.cli import main
from lm336.common import check_device_name, command, error_message, resolve_device

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB = 64
TINY = [
    f"model.vocab_size={VOCAB}", "model.context_length=8", "model.d_model=16", "model.num_layers=1", "model.num_heads=2",
    "model.d_ff=32", "run.max_steps=4", "run.batch_size=2", "run.eval_batches=1", "run.log_interval=2", "run.device=cpu",
    "optimizer.warmup_iters=1",
]  # fmt: skip


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working directory with a small token file; relative paths in the commands resolve here."""
    monkeypatch.chdir(tmp_path)
    np.random.default_rng(0).integers(0, VOCAB, 3000).astype(np.uint16).tofile(tmp_path / "t.bin")
    return tmp_path


def _train(*extra: str, out: str = "run") -> list[str]:
    return ["train", "--set", *TINY, "data.train_path=t.bin", f"run.out_dir={out}", *extra]


def _fails(capsys, argv: list[str], *needles: str, prog: str | None = None) -> str:
    """Run `lm336 argv` in-process: a non-zero status and exactly one line on stderr, the error."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0, f"{argv} exited 0:\n{out}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{argv}: expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(f"lm336 {prog or argv[0]}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# 1. Bad input to `lm336 train` --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", "-5", str(2**63), str(2**70)])
def test_bad_seed(work, capsys, seed):
    _fails(capsys, _train(f"run.seed={seed}"), "run.seed")
    assert not (work / "run").exists()


def test_out_dir_naming_a_file(work, capsys):
    (work / "afile").write_text("x")
    _fails(capsys, _train(out="afile"), "afile: is a file")
    _fails(capsys, _train(out="afile/run"), "afile: is a file")
    assert (work / "afile").read_text() == "x"


@pytest.mark.parametrize(
    "override, needle",
    [
        ("run.device=bogus", "unknown device 'bogus'"),
        ("run.device=cuda:x", "unknown device"),
        ("run.device=gpu", "unknown device"),
        ("model.d_model=15", "divisible"),
        ("model.d_model=30", "even head dimension"),
        ("model.nosuch=1", "did you mean"),
        ("run.batch_size=abc", "expects an integer"),
        ("optimizer.lr=nan", "finite"),
        ("optimizer.eps=inf", "finite"),
        ("model.rope_theta=-inf", "finite"),
        ("model.eps=1e999", "finite"),
        ("data.dtype=float32", "data.dtype"),
        ("run.max_steps=0", "run.max_steps must be positive"),
        ("run.time_budget_s=-1", "time_budget_s"),
        ("run.resume=true run.overwrite=true", "exclude each other"),
        ("novalue", "section.field=value"),
    ],
)
def test_bad_config_values(work, capsys, override, needle):
    _fails(capsys, _train(*override.split()), needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(work, capsys):
    _fails(capsys, _train("run.device=cuda"), "CUDA is not available")
    _fails(capsys, _train("run.device=cuda:3"), "CUDA is not available")
    assert not (work / "run").exists()


def test_bad_config_files(work, capsys):
    _fails(capsys, ["train", "--config", "missing.toml"], "missing.toml")
    _fails(capsys, ["train", "--config", "."], "is a directory")
    (work / "bad.toml").write_text("[model\nvocab_size = 3")
    _fails(capsys, ["train", "--config", "bad.toml"], "cannot parse")
    (work / "latin.toml").write_bytes(b"[model]\n# caf\xe9\n")
    _fails(capsys, ["train", "--config", "latin.toml"], "latin.toml")
    (work / "list.json").write_text("[1, 2]")
    _fails(capsys, ["train", "--config", "list.json"], "mapping")
    (work / "types.toml").write_text('[model]\nd_model = "wide"\n')
    _fails(capsys, ["train", "--config", "types.toml"], "model.d_model expects an integer")
    (work / "section.toml").write_text("model = 3\n")
    _fails(capsys, ["train", "--config", "section.toml"], "model must be a table")
    os.mkfifo(work / "fifo.toml")
    _fails(capsys, ["train", "--config", "fifo.toml"], "not a regular file")  # never blocks


def test_missing_and_bad_data_files(work, capsys):
    _fails(capsys, _train("data.train_path=nope.bin"), "nope.bin does not exist")
    _fails(capsys, _train("data.train_path=."), "is a directory")
    _fails(capsys, _train("data.train_path="), "no token file")
    (work / "odd.bin").write_bytes(b"\1\0\2")
    _fails(capsys, _train("data.train_path=odd.bin"), "not a multiple of 2")
    np.save(work / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    _fails(capsys, _train("data.train_path=obj.npy"), "obj.npy")  # never unpickled
    (work / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    _fails(capsys, _train("data.train_path=junk.npy"), "junk.npy")


def test_token_ids_beyond_the_vocabulary(work, capsys):
    tokens = np.random.default_rng(1).integers(0, VOCAB, 3000).astype(np.uint16)
    tokens[2500] = VOCAB + 7
    tokens.tofile(work / "big.bin")
    _fails(capsys, _train("data.train_path=big.bin"), f"id {VOCAB + 7}", "vocab_size=64")
    _fails(capsys, _train("data.val_path=big.bin"), f"id {VOCAB + 7}")


def test_nan_loss_stops_nonzero_and_keeps_the_last_good_checkpoint(work, capsys):
    assert main(_train()) == 0
    capsys.readouterr()
    before = (work / "run" / "ckpt.pt").read_bytes()
    _fails(capsys, _train("run.max_steps=30", "optimizer.lr=1e30", "optimizer.min_lr=1e30", "--resume"), "diverged", "last good checkpoint")
    assert (work / "run" / "ckpt.pt").read_bytes() == before


def test_resume_with_a_different_model_config(work, capsys):
    assert main(_train()) == 0
    capsys.readouterr()
    _fails(capsys, _train("model.d_model=32", "--resume"), "different model config", "model.d_model: 16 in the checkpoint vs 32")


def test_resume_without_a_checkpoint(work, capsys):
    _fails(capsys, _train("--resume"), "nothing to resume")


# 2. Replacing a run needs a decision ---------------------------------------------------------------------


def test_train_refuses_to_replace_a_run_silently(work, capsys):
    assert main(_train()) == 0
    capsys.readouterr()
    ckpt = work / "run" / "ckpt.pt"
    before = ckpt.read_bytes()
    log = (work / "run" / "log.jsonl").read_text()
    _fails(capsys, _train(), "already holds a run", "--resume", "--overwrite", "step 4")
    assert ckpt.read_bytes() == before and (work / "run" / "log.jsonl").read_text() == log  # untouched
    # The Python API refuses too, and takes the same two answers.
    cfg = training.apply_overrides(training.TrainConfig(), [*TINY, "data.train_path=t.bin", "run.out_dir=run", "run.progress=false"])
    with pytest.raises(training.RunExistsError, match="run.resume=True or run.overwrite=True"):
        training.train(cfg)
    assert ckpt.read_bytes() == before
    # --overwrite starts afresh; --resume continues.
    assert main(_train("run.seed=1", "--overwrite")) == 0
    out = capsys.readouterr().out
    assert "replacing the run that was there" in out
    assert ck.read_checkpoint(ckpt)["config"]["run"]["seed"] == 1
    assert main(_train("run.seed=1", "run.max_steps=6", "--resume")) == 0
    assert "resumed from step 4 of 6" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: the two flags exclude each other
        main(_train("--resume", "--overwrite"))
    # A directory with an empty log (a run killed before its first step) or other files is not a run.
    (work / "fresh").mkdir()
    (work / "fresh" / "log.jsonl").write_text("")
    (work / "fresh" / "notes.txt").write_text("mine")
    assert main(_train(out="fresh")) == 0
    assert (work / "fresh" / "notes.txt").read_text() == "mine"


def test_saved_configs_never_carry_the_overwrite_decision(work, capsys):
    assert main(_train("--overwrite")) == 0
    saved = json.loads((work / "run" / "config.json").read_text())
    assert saved["run"]["overwrite"] is False and saved["run"]["resume"] is False
    capsys.readouterr()
    _fails(capsys, ["train", "--config", "run/config.json"], "already holds a run")  # rerunning it does not replace the run


# 3. What `lm336 train` prints -----------------------------------------------------------------------------


def test_header_before_the_first_step(work, capsys):
    assert main(_train("run.max_steps=2")) == 0
    out = capsys.readouterr().out
    header = out[: out.index("step 2")]
    n = sum(p.numel() for p in lm336.TransformerLM(VOCAB, 8, 16, 1, 2, 32).parameters())
    for text in ("lm336 train: run: new run", f"{n:,} parameters", "vocab 64, context 8, d_model 16", "train t.bin: 2,850 tokens",
                 "validation the last 5% of t.bin: 150 tokens", "2 sequences x 8 tokens = 16 tokens/step", "2 steps to go",
                 "device     cpu", "AdamW lr"):  # fmt: skip
        assert text in header, (text, header)
    assert "{" not in header  # the JSON summary is the first brace on stdout


def test_plain_lines_when_output_is_piped(work):
    env = {**os.environ, "PYTHONPATH": str(Path(lm336.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "lm336", *_train("run.max_steps=6", "run.progress=true")]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=work)
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert "\r" not in both and "%|" not in both and "step/s" not in both  # no progress bar, redrawn or line by line
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(" |")[0] for line in lines] == ["step 2", "step 4", "step 6"] and "ETA" in lines[-1]


def test_warning_before_a_run_far_too_big_for_a_cpu(work, capsys, monkeypatch):
    monkeypatch.setattr(training, "cpu_matmul_flops", lambda *a, **k: 50e9)  # a laptop's matmul rate
    cfg = training.load_config(CONFIGS / "tinystories-17m.toml", ["run.device=cpu"])
    with pytest.warns(UserWarning, match=r"far too big for a CPU: at least 7\d\.\d s/step, so about 2\d\d hours for 10,000 steps") as w:
        training._warn_if_too_big_for_cpu(cfg, torch.device("cpu"), 10_000)
    assert "configs/cpu-tiny.toml" in str(w[0].message)
    small = training.load_config(CONFIGS / "cpu-tiny.toml")
    monkeypatch.setattr(training, "cpu_matmul_flops", lambda *a, **k: pytest.fail("a small run needs no measurement"))
    training._warn_if_too_big_for_cpu(small, torch.device("cpu"), small.run.max_steps)
    training._warn_if_too_big_for_cpu(cfg, torch.device("cpu"), 2)  # two steps of the big model: minutes, no warning


def test_the_big_config_on_a_cpu_warns_before_its_first_step(work):
    """The README's 17M config, as a user would start it on a laptop: the warning comes first."""
    env = {**os.environ, "PYTHONPATH": str(Path(lm336.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    np.random.default_rng(0).integers(0, 10_000, 5_000).astype(np.uint16).tofile(work / "w.bin")
    argv = [sys.executable, "-m", "lm336", "train", "--config", str(CONFIGS / "tinystories-17m.toml"), "--set", "data.train_path=w.bin",
            "data.val_path=", "run.device=cpu", "run.out_dir=big"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the first thing on stderr, before any training step
    finally:
        proc.kill()
        proc.communicate()
    assert line.startswith("lm336 train: warning: this run is far too big for a CPU"), line
    assert "hours" in line and "configs/cpu-tiny.toml" in line


def test_time_budget_replans_the_steps(work, capsys):
    # _replan: 100 s budget, 20 s spent on 10 steps -> 2 s/step -> 40 more.
    assert training._replan(1000, 10, 0, 100.0, 0.0, 20.0, training.Dist()) == 50
    assert training._replan(1000, 10, 0, 10.0, 0.0, 20.0, training.Dist()) == 11  # over budget: one last step
    assert training._replan(3, 2, 0, 1e6, 0.0, 1.0, training.Dist()) > 1000  # far under budget: more steps
    # A run with a budget of 3 s and room for a million steps stops on its own, evaluated and checkpointed.
    summary = training.train(training.apply_overrides(training.TrainConfig(), [
        *TINY, "data.train_path=t.bin", "run.out_dir=budget", "run.max_steps=1000000", "run.time_budget_s=3",
        "run.progress=false", "run.eval_interval=0", "run.checkpoint_interval=0"]))  # fmt: skip
    assert 2 < summary["steps"] < 1_000_000
    assert summary["final_val_loss"] is not None
    assert ck.read_checkpoint(work / "budget" / "ckpt.pt")["iteration"] == summary["steps"]


# 4. Other commands ------------------------------------------------------------------------------------------


@pytest.fixture
def trained(work, capsys) -> Path:
    assert main(_train()) == 0
    capsys.readouterr()
    return work / "run"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--device", "bogus"], "unknown device 'bogus'"),
        (["--device", "cuda:abc"], "unknown device"),
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "0"], "top_p"),
        (["--max-new-tokens", "-3"], "--max-new-tokens"),
        (["--seed", "-1"], "--seed"),
        (["--tokenizer", "nowhere"], "nowhere"),
    ],
)
def test_generate_bad_input(trained, capsys, args, needle):
    _fails(capsys, ["generate", "--checkpoint", str(trained), *args], needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_generate_on_cuda_without_a_gpu(trained, capsys):
    _fails(capsys, ["generate", "--checkpoint", str(trained), "--device", "cuda"], "CUDA is not available")


def test_generate_without_a_tokenizer_or_with_another_config(trained, capsys):
    _fails(capsys, ["generate", "--checkpoint", str(trained), "--device", "cpu"], "no tokenizer found", "--tokenizer")
    # config.json beside the checkpoint says one shape, the weights another, and the checkpoint holds no config
    state = ck.read_checkpoint(trained / "ckpt.pt")
    model = lm336.TransformerLM(VOCAB, 8, 32, 1, 2, 32)
    ck.save_checkpoint(model, None, 1, trained / "other.pt")
    _fails(capsys, ["generate", "--checkpoint", str(trained / "other.pt"), "--device", "cpu"], "do not match the stored model config")
    assert state["iteration"] == 4


def test_generate_finds_the_tokenizer_a_lone_checkpoint_names(work, capsys):
    """A ckpt.pt away from its run folder still names its tokenizer (data.tokenizer_path in the
    checkpoint's config), and generate uses it as eval and export do."""
    from bpe336 import Tokenizer

    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save(work / "tok")  # 257 tokens
    assert main(_train("model.vocab_size=257", "data.tokenizer_path=tok")) == 0
    lone = work / "elsewhere"
    lone.mkdir()
    shutil.copy(work / "run" / "ckpt.pt", lone / "ckpt.pt")
    capsys.readouterr()
    argv = ["generate", "--checkpoint", str(lone / "ckpt.pt"), "--max-new-tokens", "2", "--seed", "0", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err


def test_other_commands_bad_input(work, capsys):
    _fails(capsys, ["plot", "nowhere"], "nowhere")
    _fails(capsys, ["sweep", "--lr", "1e-3,x", "--out", "s", "--set", "run.device=bogus"], "unknown device")
    _fails(capsys, ["sweep", "--out", "s"], "nothing to sweep")
    _fails(capsys, ["accounting", "--num-heads", "5"], "divisible")
    _fails(capsys, ["pipeline", "--device", "bogus", "--out", "p"], "unknown device")
    _fails(capsys, ["pipeline", "missing.txt"], "missing.txt")
    assert main(["nosuch"]) == 2 and "lm336: error: unknown command 'nosuch'" in capsys.readouterr().err


def test_accounting_says_does_not_fit(capsys):
    assert main(["accounting", "--preset", "gpt2-xl", "--memory-gb", "8"]) == 0
    out = capsys.readouterr().out
    assert "does not fit: parameters, gradients and AdamW state alone need" in out and "largest batch in" in out
    assert main(["accounting", "--preset", "gpt2-small", "--context-length", "65536", "--memory-gb", "4"]) == 0
    out = capsys.readouterr().out
    assert "does not fit: one sequence needs" in out
    assert main(["accounting", "--preset", "gpt2-small", "--memory-gb", "80"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "largest batch" in line)
    assert int(line.split()[-1].replace(",", "")) > 0


# 5. The shared pieces ---------------------------------------------------------------------------------------


def test_one_device_policy():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    for bad in ("bogus", "cuda:", "cuda:-1", "cpu:x", "CUDA", "", " cpu", "mps:x:1", 3):
        with pytest.raises(ValueError):
            check_device_name(bad)
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        check_device_name(good)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="present: .*cpu"):
            resolve_device("cuda:0")


def test_every_device_choice_goes_through_the_one_policy():
    """No module but common.py asks torch which devices exist."""
    root = Path(lm336.__file__).resolve().parent
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name in ("common.py",):
            continue
        assert "mps.is_available" not in text, path
        assert 'else "cpu"' not in text and "else 'cpu'" not in text, path


def test_command_turns_every_error_into_one_line(capsys):
    @command("lm336 demo")
    def demo(argv):
        raise argv[0]

    assert demo([ValueError("bad\nvalue")]) == 1
    assert capsys.readouterr().err == "lm336 demo: error: bad value\n"
    assert demo([ZeroDivisionError("division by zero")]) == 1
    assert "error: ZeroDivisionError: division by zero (set LM336_DEBUG=1" in capsys.readouterr().err
    assert demo([KeyboardInterrupt()]) == 130
    assert error_message(FileNotFoundError(2, "No such file or directory", "x.bin")) == "x.bin: No such file or directory"
    assert error_message(KeyError("no such token")) == "no such token"

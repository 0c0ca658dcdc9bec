"""Tests for lm336.pipeline: the corpus split, the step planner, and end-to-end runs of
`lm336 pipeline` (a fast one on a tiny generated corpus; a slow one on ../shared/data/kjv.txt),
followed by `lm336 generate` on the run it produced.

Run: pytest tests/test_pipeline.py -q            (add -m slow for the KJV run)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from testdata import EOT, SHARED

from lm336 import pipeline, sampling
from lm336.pipeline import plan_steps, prompt_from, split_corpus

# 1. Splitting a corpus ------------------------------------------------------------------------


def _docs(n: int) -> str:
    return "".join(f"Story number {i:03d} is here.\n{EOT}\n" for i in range(n))  # equal lengths


def test_split_by_documents(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text(_docs(100), encoding="utf-8")
    info = split_corpus(src, tmp_path / "t.txt", tmp_path / "v.txt", 0.05)
    train, valid = (tmp_path / "t.txt").read_text(), (tmp_path / "v.txt").read_text()
    assert train + valid == src.read_text()
    assert train.endswith(f"{EOT}\n") and valid.startswith("Story number")
    assert info == {"train_bytes": len(train), "valid_bytes": len(valid), "documents": 100}
    assert valid.count(EOT) == 5  # 5% of 100 equal-length documents (the cut follows the 95% mark)


def test_split_without_separators_cuts_at_a_line_or_character(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("".join(f"line {i} ünïcödé\n" for i in range(200)), encoding="utf-8")
    split_corpus(src, tmp_path / "t.txt", tmp_path / "v.txt", 0.1)
    valid = (tmp_path / "v.txt").read_text(encoding="utf-8")
    assert valid.startswith("line ") and 0 < len(valid) < 0.15 * len(src.read_text())
    one_line = tmp_path / "one.txt"
    one_line.write_text("é" * 1000, encoding="utf-8")  # only 2-byte characters, no line breaks
    split_corpus(one_line, tmp_path / "t.txt", tmp_path / "v.txt", 0.05)
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") + (tmp_path / "v.txt").read_text(encoding="utf-8") == "é" * 1000


def test_split_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        split_corpus(tmp_path / "missing.txt", tmp_path / "t", tmp_path / "v")
    with pytest.raises(IsADirectoryError):
        split_corpus(tmp_path, tmp_path / "t", tmp_path / "v")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        split_corpus(empty, tmp_path / "t", tmp_path / "v")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a")
    with pytest.raises(ValueError, match="too small"):
        split_corpus(tiny, tmp_path / "t", tmp_path / "v")
    with pytest.raises(ValueError, match="valid_fraction"):
        split_corpus(tiny, tmp_path / "t", tmp_path / "v", 1.0)


def test_prompt_from_held_out_text(tmp_path):
    v = tmp_path / "v.txt"
    v.write_text(f"Revelation 20\nAnd I saw an angel come down\n{EOT}\n")
    assert prompt_from(v) == "And I saw an"


def test_plan_steps():
    assert plan_steps(60, 0.5, 3, 6) == 108  # (0.95 * 60 - 6 * 3 * 0.5 / 3) / 0.5
    assert plan_steps(1, 10.0, 4, 6) == 2  # never fewer than two steps


# 2. End to end --------------------------------------------------------------------------------

TINY = [
    "--corpus-mb", "0.25", "--vocab-size", "320", "--max-steps", "12", "--context-length", "32",
    "--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--batch-size", "4", "--eval-batches", "1",
    "--evals", "2", "--sample-tokens", "24", "--device", "cpu", "--no-progress",
]  # fmt: skip


def test_pipeline_end_to_end_tiny(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a new shell: the package's commands are not on the PATH
    # Variants whose parameter count a shortcut formula gets wrong: SiLU (two matrices), tied, no norms.
    variants = ["--set", "model.ffn=silu", "--set", "model.tie_embeddings=true", "--set", "model.norm=none"]
    assert pipeline.main([*TINY, *variants, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("[1/5] corpus", "[2/5] tokenizer", "[3/5] tokens", "[4/5] model", "[5/5] sample"):
        assert stage in printed
    assert "Once upon a time" in printed and "final validation loss" in printed

    # Files of every stage.
    tok_dir = out / "tokenizer"
    assert tok_dir.is_dir() and any(tok_dir.iterdir())
    for name in ("train.txt", "valid.txt", "stories.txt"):
        assert (out / "data" / name).stat().st_size > 0
    train = np.load(out / "data" / "train.npy", mmap_mode="r")
    valid = np.load(out / "data" / "valid.npy", mmap_mode="r")
    assert train.dtype == np.uint16 and len(train) > 1000 and len(valid) > 50
    assert int(train.max()) < 320
    for name in ("ckpt.pt", "log.jsonl", "config.json", "summary.json", "pipeline.json"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 12 and log[-1]["val_loss"] is not None
    result = json.loads((out / "pipeline.json").read_text())
    assert result["steps"] == 12 and math.isfinite(result["final_val_loss"])
    assert result["sample"] and result["sample"] in printed
    if importlib.util.find_spec("lm336.plot") and importlib.util.find_spec("matplotlib"):
        assert sorted(p.name for p in out.glob("curves_*.png")) == ["curves_train_loss.png", "curves_val_loss.png"]
    else:
        assert "curves     : skipped" in printed

    # The printed parameter count is the trained model's.
    from lm336.checkpoint import load_model

    model, _ = load_model(out)
    assert model.config.ffn == "silu" and model.config.tie_embeddings and model.config.norm == "none"
    assert f"model: {sum(p.numel() for p in model.parameters()):,} parameters" in printed

    # The closing hint runs as printed, from a shell that has not activated anything.
    hint = printed.splitlines()[-1].strip()
    assert " generate --checkpoint " in hint
    proc = subprocess.run([*shlex.split(hint), "--max-new-tokens", "3", "--device", "cpu"], capture_output=True, text=True,
                          env={**os.environ, "PATH": "/usr/bin:/bin"}, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    # The generate command finds the model config in the checkpoint and the tokenizer in the run.
    args = ["--checkpoint", str(out / "ckpt.pt"), "--max-new-tokens", "16", "--seed", "3", "--device", "cpu", "--threads", "1"]
    assert sampling.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("Once upon a time") and len(first) > len("Once upon a time\n")
    assert sampling.main(args) == 0
    assert capsys.readouterr().out == first  # seeded: the same text again
    assert sampling.main([*args, "--no-cache"]) == 0
    assert capsys.readouterr().out == first  # the cache changes the speed, not the text

    # A tokenizer that does not belong to the model is refused with a clear message.
    from bpe336 import Tokenizer

    other = tmp_path / "other_tok"
    Tokenizer({i: bytes([i]) for i in range(256)}, []).save(other)
    assert sampling.main([*args, "--tokenizer", str(other)]) == 1
    assert "vocab_size 320" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "fixtures" / "corpus.en").exists(), reason=f"{SHARED}/fixtures not present")
def test_pipeline_on_a_text_file(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [str(SHARED / "fixtures" / "corpus.en"), "--out", str(out), *TINY]
    argv[argv.index("--max-steps") + 1] = "3"
    assert pipeline.main(argv) == 0
    result = json.loads((out / "pipeline.json").read_text())
    # The sample continues the first words of the held-out part of the file.
    valid = (out / "data" / "valid.txt").read_text(encoding="utf-8")
    assert result["prompt"] == prompt_from(out / "data" / "valid.txt") and result["prompt"] in valid
    assert not (out / "data" / "stories.txt").exists()
    assert result["prompt"] + result["sample"] in capsys.readouterr().out


def test_pipeline_keeps_to_its_time_budget(tmp_path, capsys):
    """--minutes sets run.time_budget_s: the loop re-measures its steps and moves max_steps."""
    out = tmp_path / "run"
    argv = [a for a in TINY if a not in ("--max-steps", "12")]
    assert pipeline.main([*argv, "--minutes", "0.05", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "re-measured as it trains" in printed
    saved = json.loads((out / "config.json").read_text())
    assert 0 < saved["run"]["time_budget_s"] <= 3.0  # --minutes 0.05, less the time spent timing steps
    result = json.loads((out / "pipeline.json").read_text())
    assert result["steps"] >= 2 and result["final_val_loss"] is not None


def test_help_needs_nothing_installed():
    """`lm336 pipeline --help` (and so the quickstart's --help) imports only the standard library."""
    code = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'bpe336', 'tqdm'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "from lm336.cli import main\n"
        "main(['pipeline', '--help'])\n"
    )
    root = str(Path(pipeline.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: lm336 pipeline" in proc.stdout and "--minutes" in proc.stdout


def test_pipeline_write_corpus_only(tmp_path, capsys):
    path = tmp_path / "stories.txt"
    assert pipeline.main(["--write-corpus", str(path), "--corpus-mb", "0.05"]) == 0
    assert path.stat().st_size >= 50_000 and path.read_text().count(EOT) > 10
    assert "wrote" in capsys.readouterr().out


def test_pipeline_bad_arguments(tmp_path, capsys):
    assert pipeline.main([str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r")]) == 1
    assert "lm336 pipeline: error: " in capsys.readouterr().err
    assert pipeline.main(["--minutes", "0", "--out", str(tmp_path / "r")]) == 1
    assert "--minutes must be a positive number" in capsys.readouterr().err
    out = tmp_path / "r"
    for size, why in [("256", "too small: it must be at least 256 + 1 special tokens = 257"), (str(2**32), "too large")]:
        assert pipeline.main(["--out", str(out), "--vocab-size", size, "--max-steps", "1"]) == 1
        assert why in capsys.readouterr().err
        assert not out.exists()  # refused before the corpus is written


def test_pipeline_bad_settings_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "r"
    assert pipeline.main(["--out", str(out), "--d-model", "30", "--num-heads", "4"]) == 2  # a config error
    assert "divisible" in capsys.readouterr().err
    assert not (out / "data").exists()
    assert pipeline.main(["--out", str(out), "--set", "optimizer.nosuch=1"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_generate_bad_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert sampling.main(["--checkpoint", str(tmp_path / "nothing.pt")]) == 1
    assert "nothing.pt: no such checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert sampling.main(["--checkpoint", str(junk)]) == 1
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "kjv.txt").exists(), reason=f"{SHARED}/data/kjv.txt not present")
def test_pipeline_kjv_time_budget(tmp_path, capsys):
    """The time-budgeted path on a real corpus: calibrate (threads too), train ~1 minute, sample."""
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "kjv"
    argv = [str(SHARED / "data" / "kjv.txt"), "--out", str(out), "--minutes", "1", "--vocab-size", "1000",
            "--device", "cpu", "--no-progress", "--sample-tokens", "40"]  # fmt: skip
    assert pipeline.main(argv) == 0
    assert torch.get_num_threads() == threads  # the calibration's choice does not leak
    result = json.loads((out / "pipeline.json").read_text())
    assert result["steps"] >= 2
    assert result["final_val_loss"] < math.log(1000)  # better than uniform over the vocabulary
    assert result["prompt"] in capsys.readouterr().out

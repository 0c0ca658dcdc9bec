"""`lm336.evaluate` and `lm336 eval` against direct computations with torch.nn.functional over the
same windows, transformers' sliding-window perplexity on our export, the bits-per-byte identity
(loss * tokens / (bytes * ln 2)), text vs token-array inputs, the command line, bad input, and the
bits per byte the training loop logs on its validation windows.

    cd tests && ../.venv/bin/python -m pytest -q lm336/test_evaluate.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_runs import EOT, make_tokenizer, train_tiny_run

import lm336
from lm336 import cli
from lm336.checkpoint import load_model
from lm336.evaluation import token_byte_lengths, window_plan
from lm336.training import validation_starts

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return root, train_tiny_run(root)


def _direct(model, ids: list[int], context: int, stride: int) -> tuple[float, int]:
    """Sum of token losses, written independently of lm336.evaluation: transformers' perplexity-guide
    loop (labels -100 where already scored) with F.cross_entropy."""
    seq = torch.tensor(ids)
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(seq), stride):
        end = min(begin + context + 1, len(seq))  # inputs seq[begin:end-1], labels seq[begin+1:end]
        x, labels = seq[begin : end - 1], seq[begin + 1 : end].clone()
        fresh = end - 1 - prev_end  # labels not scored yet (the last `fresh` ones)
        labels[: len(labels) - fresh] = -100
        with torch.no_grad():
            logits = model(x[None])[0]
        total += F.cross_entropy(logits.double(), labels, ignore_index=-100, reduction="sum").item()
        count += int((labels != -100).sum())
        prev_end = end - 1
        if end == len(seq):
            break
    return total, count


# --- the windows ---------------------------------------------------------------------------------


def test_window_plan_examples():
    assert window_plan(8, 3) == [(0, 3, 0), (3, 6, 3), (6, 7, 6)]
    assert window_plan(8, 4, 2) == [(0, 4, 0), (2, 6, 4), (4, 7, 6)]
    assert window_plan(2, 5) == [(0, 1, 0)]
    with pytest.raises(ValueError, match="stride"):
        window_plan(10, 4, 5)
    with pytest.raises(ValueError, match="stride"):
        window_plan(10, 4, 0)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 300), context=st.integers(1, 40), data=st.data())
def test_window_plan_scores_each_id_once_with_enough_context(n, context, data):
    stride = data.draw(st.integers(1, context))
    scored = []
    for i, (begin, end, start) in enumerate(window_plan(n, context, stride)):
        assert 0 <= begin <= start < end <= n - 1 and end - begin <= context
        scored += range(start + 1, end + 1)  # ids predicted and scored
        if i > 0:  # every scored prediction sees at least context - stride earlier ids of its window
            assert start - begin >= min(context - stride, start)
    assert scored == list(range(1, n))


# --- scores --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("context", "stride"), [(48, None), (16, None), (16, 5), (12, 1), (7, 7)])
def test_evaluate_equals_direct_computation(run, context, stride):
    root, run_dir = run
    model, _ = load_model(run_dir)
    tok = make_tokenizer()
    text = (root / "valid.txt").read_text(encoding="utf-8")[:1500]
    path = root / f"part-{context}-{stride}.txt"
    path.write_text(text, encoding="utf-8")
    result = lm336.evaluate(run_dir, path, context_length=context, stride=stride, batch_size=3)
    ids = [tok.token_to_id(EOT), *tok.encode(text)]
    total, count = _direct(model, ids, context, stride or context)
    assert result["tokens"] == count == len(ids) - 1  # every token of the text, the first one included
    assert result["loss"] == pytest.approx(total / count, rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-6)
    assert result["bytes"] == len(text.encode("utf-8"))
    assert result["bits_per_byte"] == pytest.approx(result["loss"] * result["tokens"] / (result["bytes"] * math.log(2)), rel=1e-12)
    assert result["windows"] == len(window_plan(len(ids), context, stride))


def test_evaluate_matches_transformers_sliding_window_perplexity(run, tmp_path):
    transformers = pytest.importorskip("transformers")
    os.environ["HF_HUB_OFFLINE"] = "1"
    root, run_dir = run
    out = lm336.export_hf(run_dir, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = (root / "valid.txt").read_text(encoding="utf-8")[:2000]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    # The guide's loop, verbatim in spirit: labels = inputs, -100 where already scored, the model shifts.
    ids = torch.tensor([[hf_tok.eos_token_id, *hf_tok(text)["input_ids"]]])
    max_length, stride = 48, 16
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + max_length, ids.size(1))
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = hf(input_ids, labels=target_ids).loss
        valid = (target_ids[:, 1:] != -100).sum().item()  # the model shifts: the first label is never predicted
        nll_sum += loss.item() * valid
        n_tokens += valid
        prev_end = end
        if end == ids.size(1):
            break
    # The guide's windows hold max_length inputs, whose last prediction is unused: the same
    # predictions, with the same context, as ours with context max_length - 1.
    ours = lm336.evaluate(run_dir, tmp_path / "t.txt", context_length=max_length - 1, stride=stride)
    assert ours["tokens"] == n_tokens
    assert ours["loss"] == pytest.approx(nll_sum / n_tokens, rel=1e-5)
    # Non-overlapping windows are identical predictions: equal to float32 rounding.
    nll_sum, n_tokens = 0.0, 0
    for begin in range(0, ids.size(1) - 1, 48):
        window = ids[:, begin : begin + 49]
        with torch.no_grad():
            loss = hf(window[:, :-1]).logits[0].double().log_softmax(-1)
        nll_sum -= loss.gather(-1, window[0, 1:, None]).sum().item()
        n_tokens += window.size(1) - 1
    ours = lm336.evaluate(run_dir, tmp_path / "t.txt")
    assert ours["tokens"] == n_tokens and ours["loss"] == pytest.approx(nll_sum / n_tokens, rel=1e-5)


def test_text_npy_bin_and_array_inputs_agree(run, tmp_path):
    root, run_dir = run
    tok = make_tokenizer()
    text = (root / "valid.txt").read_text(encoding="utf-8")
    ids = tok.encode_to_numpy(text)
    np.save(tmp_path / "v.npy", ids)
    ids.astype("<u2").tofile(tmp_path / "v16.bin")
    ids.astype("<u4").tofile(tmp_path / "v32.bin")
    by_text = lm336.evaluate(run_dir, root / "valid.txt")
    assert by_text["source"] == "text" and by_text["bytes"] == len(text.encode("utf-8"))
    tok.save(tmp_path / "tok")
    for tok_arg in (str(tmp_path / "tok"), tmp_path / "tok", tok):  # the tokenizer as a str path, a Path, an object
        assert lm336.evaluate(run_dir, root / "valid.txt", tok_arg) == by_text
    for data, dtype in (
        (tmp_path / "v.npy", "uint16"),
        (tmp_path / "v16.bin", "uint16"),
        (tmp_path / "v32.bin", "uint32"),
        (ids, "uint16"),
    ):
        r = lm336.evaluate(run_dir, data, data_dtype=dtype)
        assert {k: v for k, v in r.items() if k != "source"} == {k: v for k, v in by_text.items() if k != "source"}
        assert r["source"] == "tokens"


def test_without_bos_the_first_token_is_context_only(run):
    root, run_dir = run
    tok = make_tokenizer()
    ids = tok.encode((root / "valid.txt").read_text(encoding="utf-8"))
    r = lm336.evaluate(run_dir, np.array(ids), bos_token=None)
    assert r["tokens"] == len(ids) - 1 and r["bos_token"] is None
    assert r["bytes"] == int(token_byte_lengths(tok)[ids[1:]].sum())
    model, _ = load_model(run_dir)
    total, count = _direct(model, ids, 48, 48)
    assert r["loss"] == pytest.approx(total / count, rel=1e-6)
    # Without a tokenizer: loss and perplexity only.
    model, _ = load_model(run_dir)
    bare = lm336.evaluate(model, np.array(ids))
    assert bare["bits_per_byte"] is None and bare["bytes"] is None and bare["loss"] == pytest.approx(r["loss"], rel=1e-12)


def test_token_byte_lengths_example():
    tok = make_tokenizer()
    lengths = token_byte_lengths(tok, tok.vocab_size + 3)
    assert lengths[tok.token_to_id(EOT)] == len(EOT) and lengths[tok.token_to_id(b" the")] == 4
    assert lengths[ord("a") + 1] == 1 and list(lengths[-3:]) == [0, 0, 0]


def test_weights_file_and_checkpoint_evaluate_the_same(run):
    root, run_dir = run
    a = lm336.evaluate(run_dir / "ckpt.pt", root / "valid.txt", context_length=20)
    b = lm336.evaluate(run_dir / "model.safetensors", root / "valid.txt", context_length=20)
    assert a == b


# --- the command line ------------------------------------------------------------------------------


def test_cli_json_plain_output_and_progress_lines(run, capsys):
    root, run_dir = run
    expected = lm336.evaluate(run_dir, root / "valid.txt", stride=24)
    assert cli.main(["eval", "--checkpoint", str(run_dir), "--data", str(root / "valid.txt"), "--stride", "24", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert {k: result[k] for k in expected} == expected and result["data"] == str(root / "valid.txt")
    lines = err.strip().splitlines()  # stderr is not a terminal here: plain progress lines, the last at 100%
    assert (
        lines
        and all(line.startswith("eval: ") for line in lines)
        and f"{expected['windows']}/{expected['windows']} windows (100%)" in lines[-1]
    )
    assert cli.main(["eval", "--checkpoint", str(run_dir / "model.safetensors"), "--data", str(root / "valid.txt"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "bits per byte" in out and "perplexity" in out and "nats/token" in out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("utf8", "invalid UTF-8 at byte offset 6"),
        ("out of range", "outside the vocabulary"),
        ("one token", "nothing to score"),
        ("stride", "stride must be in [1, context_length=48]"),
        ("context", "context_length must be in [1, 48]"),
        ("odd bin", "not a multiple of 2"),
        ("bad checkpoint", "no such checkpoint"),
    ],
)
def test_cli_bad_input_gives_one_error_line(run, tmp_path, capsys, case, message):
    root, run_dir = run
    ckpt, extra = str(run_dir), []
    data = str(root / "valid.txt")
    if case == "missing":
        data = str(tmp_path / "absent.txt")
    elif case == "directory":
        data = str(tmp_path)
    elif case == "utf8":
        data = str(_write(tmp_path / "bad.txt", b"hello \xff world"))
    elif case == "out of range":
        np.save(tmp_path / "big.npy", np.array([1, 2, 60_000], dtype=np.uint16))
        data = str(tmp_path / "big.npy")
    elif case == "one token":
        np.save(tmp_path / "one.npy", np.array([5], dtype=np.uint16))
        data, extra = str(tmp_path / "one.npy"), ["--bos-token", ""]
    elif case == "stride":
        extra = ["--stride", "49"]
    elif case == "context":
        extra = ["--context-length", "49"]
    elif case == "odd bin":
        data = str(_write(tmp_path / "odd.bin", b"\x01\x00\x02"))
    elif case == "bad checkpoint":
        ckpt = str(tmp_path / "nothing.pt")
    assert cli.main(["eval", "--checkpoint", ckpt, "--data", data, "--no-progress", *extra]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("lm336 eval: error:") and message in err and err.count("\n") == 1


# --- bits per byte in training ------------------------------------------------------------------


def test_training_logs_bits_per_byte_on_its_validation_windows(run):
    root, run_dir = run
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["val_loss"] is not None]
    assert [r["step"] for r in evals] == [20, 40]
    # The same windows the loop evaluates: eval_batches * batch_size evenly spaced starts.
    val = np.load(root / "valid.npy")
    starts = validation_starts(len(val), 48, 2 * 8)
    targets = val[starts[:, None] + np.arange(1, 49)]
    nbytes = int(token_byte_lengths(make_tokenizer())[targets].sum())
    for r in evals:
        assert r["val_bpb"] == pytest.approx(r["val_loss"] * targets.size / (nbytes * math.log(2)), rel=1e-9)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_val_bpb"] == evals[-1]["val_bpb"]


def test_training_refuses_an_unreadable_tokenizer_path(tmp_path, capsys):
    root = tmp_path
    np.save(root / "t.npy", np.arange(200, dtype=np.uint16) % 50)
    argv = ["train", "--set", "model.vocab_size=64", "model.context_length=8", "model.d_model=16", "model.num_layers=1",
            "model.num_heads=2", "model.d_ff=32", f"data.train_path={root / 't.npy'}", f"data.tokenizer_path={root / 'absent'}",
            f"run.out_dir={root / 'run'}", "run.max_steps=1", "run.device=cpu", "run.progress=false"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lm336 train: error: data.tokenizer_path") and "cannot load the tokenizer" in err

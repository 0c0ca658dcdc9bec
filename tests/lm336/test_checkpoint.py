"""lm336.checkpoint: the checksum every read verifies (flipped bytes anywhere, truncation, garbage),
safe loading only (a crafted pickle never runs, through every loader and command), and the run
directory's file names.

    cd tests && python -m pytest -q lm336/test_checkpoint.py
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lm336
from lm336 import checkpoint as ck
from lm336 import data, sampling, training
from lm336.config import TrainConfig, apply_overrides
from lm336.model import TransformerLM

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB = 48


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run: 4 steps of a tiny model, so the checkpoint holds weights, AdamW moments, RNG
    states and the config, as `lm336 train` writes them."""
    root = tmp_path_factory.mktemp("ck")
    np.random.default_rng(0).integers(0, VOCAB, 3000).astype(np.uint16).tofile(root / "train.bin")
    cfg = _cfg(root)
    training.train(cfg)
    return root / "run"


def _cfg(root: Path, *overrides: str) -> TrainConfig:
    return apply_overrides(
        TrainConfig(),
        [
            f"model.vocab_size={VOCAB}", "model.context_length=8", "model.d_model=16", "model.num_layers=1",
            "model.num_heads=2", "model.d_ff=32", f"data.train_path={root / 'train.bin'}", f"run.out_dir={root / 'run'}",
            "run.max_steps=4", "run.batch_size=2", "run.eval_batches=1", "run.log_interval=2", "run.progress=false",
            "run.device=cpu", "optimizer.warmup_iters=1", *overrides,
        ],
    )  # fmt: skip


def _model(cfg_dict: dict) -> TransformerLM:
    return TransformerLM.from_config(TrainConfig.from_dict(cfg_dict).model)


# 1. The checksum ------------------------------------------------------------------------------------


def test_trailer_is_sha256_of_the_torch_payload_and_torch_still_reads_the_file(run_dir):
    raw = (run_dir / "ckpt.pt").read_bytes()
    payload, trailer = raw[: -ck.TRAILER_SIZE], raw[-ck.TRAILER_SIZE :]
    assert trailer == f"\n#lm336-checkpoint v1 sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload):016x}\n".encode()
    assert payload[:4] == b"PK\x03\x04"  # torch's zip format
    plain = torch.load(run_dir / "ckpt.pt", weights_only=True)  # readers that ignore the trailer still work
    assert plain["iteration"] == ck.read_checkpoint(run_dir / "ckpt.pt")["iteration"] == 4


def test_every_flipped_byte_is_detected(run_dir, tmp_path):
    """One flipped byte anywhere: weights, AdamW moments, RNG states, config, zip headers, trailer."""
    good = (run_dir / "ckpt.pt").read_bytes()
    size = len(good)
    # Every 97th byte, the last 200 (end record and trailer) and the first 100 (zip header) all.
    positions = sorted(set(range(0, size, 97)) | set(range(max(0, size - 200), size)) | set(range(100)))
    bad = tmp_path / "ckpt.pt"
    loaded = []
    for i in positions:
        for mask in (0x01, 0x80):
            flipped = bytearray(good)
            flipped[i] ^= mask
            bad.write_bytes(bytes(flipped))
            try:
                ck.read_checkpoint(bad)
            except ck.CheckpointError as e:
                message = str(e)
                assert "\n" not in message and str(bad) in message and "weights_only" not in message, message
            else:
                loaded.append((i, mask))
    assert loaded == [], f"flips not detected at {loaded[:10]}"


def test_flips_inside_tensors_are_caught_by_every_loader(run_dir, tmp_path):
    """A flip inside an optimizer tensor decodes to a plausible number: PyTorch alone loads it."""
    good = (run_dir / "ckpt.pt").read_bytes()
    state = ck.read_checkpoint(run_dir / "ckpt.pt")
    moment = state["optimizer"]["state"][0]["exp_avg_sq"]
    needle = moment.numpy().tobytes()[:16]
    at = good.index(needle)
    flipped = bytearray(good)
    flipped[at + 3] ^= 0x01
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(bytes(flipped))
    fooled = torch.load(bad, weights_only=True)  # the silent corruption this guards against
    assert not torch.equal(fooled["optimizer"]["state"][0]["exp_avg_sq"], moment)
    model = _model(state["config"])
    for load in (
        lambda: ck.read_checkpoint(bad),
        lambda: ck.load_checkpoint(bad, model),
        lambda: data.load_checkpoint(bad, model),
        lambda: lm336.load_checkpoint(io.BytesIO(bad.read_bytes()), model),
        lambda: ck.load_model(bad),
    ):
        with pytest.raises(ck.CheckpointError, match="checksum does not match"):
            load()


@pytest.mark.parametrize("step", [1, 7])
def test_truncated_files_are_refused_at_every_length(run_dir, tmp_path, step):
    good = (run_dir / "ckpt.pt").read_bytes()
    bad = tmp_path / "ckpt.pt"
    lengths = sorted(set(range(0, len(good), max(1, len(good) // 150))) | set(range(len(good) - 150, len(good), step)))
    for n in lengths:
        bad.write_bytes(good[:n])
        with pytest.raises(ck.CheckpointError) as err:
            ck.read_checkpoint(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_garbage_extended_and_odd_files(run_dir, tmp_path):
    good = (run_dir / "ckpt.pt").read_bytes()
    cases = {
        "empty": b"",
        "text": b"hello, not a checkpoint\n",
        "random": np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "extended": good + b"\0",
        "doubled": good + good,
        "payload only": good[: -ck.TRAILER_SIZE],
        "trailer only": good[-ck.TRAILER_SIZE :],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        with pytest.raises(ck.CheckpointError) as err:
            ck.read_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), name
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    with pytest.raises(ck.CheckpointError, match="not a regular file"):  # never blocks waiting for a writer
        ck.read_checkpoint(fifo)


def test_file_objects_round_trip_and_are_verified():
    model = TransformerLM(VOCAB, 8, 16, 1, 2, 32)
    buf = io.BytesIO(b"prefix")
    buf.seek(6)
    ck.save_checkpoint(model, None, 3, buf, note="x")
    buf.seek(6)
    assert ck.read_checkpoint(buf)["note"] == "x"  # read from the current position

    class Stream(io.RawIOBase):  # a pipe: no seeking
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.data.readinto(b)

    raw = buf.getvalue()[6:]
    assert ck.read_checkpoint(Stream(raw))["iteration"] == 3
    broken = bytearray(raw)
    broken[len(raw) // 2] ^= 0xFF
    with pytest.raises(ck.CheckpointError, match="checksum"):
        ck.read_checkpoint(io.BytesIO(bytes(broken)))


# 2. Nothing is ever unpickled -------------------------------------------------------------------------


class _Evil:
    """Unpickling this would create the marker file."""

    marker: str = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """Pickles that run code when fully unpickled: a raw pickle, a torch.save zip, and both with a
    correct lm336 trailer appended (anyone can compute a checksum)."""
    _Evil.marker = str(marker)
    raw = pickle.dumps({"model": {}, "iteration": 1, "config": _Evil()})
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(1)}, "iteration": 1, "optimizer": None, "x": _Evil()}, buf)
    zipped = buf.getvalue()

    def trailed(payload: bytes) -> bytes:
        return payload + f"\n#lm336-checkpoint v1 sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload):016x}\n".encode()

    files = {}
    for name, content in {"raw": raw, "zip": zipped, "raw+sum": trailed(raw), "zip+sum": trailed(zipped)}.items():
        run = tmp_path / name.replace("+", "_")
        run.mkdir()
        (run / "ckpt.pt").write_bytes(content)
        files[name] = run / "ckpt.pt"
    assert not marker.exists()
    return files


def test_crafted_pickles_never_run_through_the_python_api(tmp_path):
    marker = tmp_path / "PWNED"
    model = TransformerLM(VOCAB, 8, 16, 1, 2, 32)
    for name, path in _crafted_files(tmp_path, marker).items():
        loaders = [
            lambda p: ck.read_checkpoint(p),
            lambda p: ck.read_checkpoint(p, allow_missing_checksum=True),
            lambda p: ck.load_checkpoint(p, model),
            lambda p: ck.load_checkpoint(p, model, allow_missing_checksum=True),
            lambda p: lm336.read_checkpoint(p),
            lambda p: data.read_checkpoint(io.BytesIO(p.read_bytes())),
            lambda p: ck.load_model(p),
            lambda p: ck.load_model(p.parent),
        ]
        for load in loaders:
            with pytest.raises(ck.CheckpointError) as err:
                load(path)
            message = str(err.value)
            assert "\n" not in message and str(path) in message or "BytesIO" in message, message
            assert "weights_only" not in message and "unsafe" not in message.lower(), message
        assert not marker.exists(), name


def test_crafted_pickles_never_run_through_the_commands(tmp_path, capsys):
    from lm336.cli import main

    marker = tmp_path / "PWNED"
    files = _crafted_files(tmp_path, marker)
    tokens = tmp_path / "train.bin"
    np.random.default_rng(0).integers(0, VOCAB, 2000).astype(np.uint16).tofile(tokens)
    for name, path in files.items():
        commands = [
            ["generate", "--checkpoint", str(path), "--device", "cpu", "--max-new-tokens", "2"],
            ["generate", "--checkpoint", str(path.parent), "--device", "cpu", "--max-new-tokens", "2"],
            ["train", *_train_args(tmp_path, path.parent), "--resume"],
        ]
        for argv in commands:
            assert main(argv) != 0, (name, argv)
            out, err = capsys.readouterr()
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"lm336 {argv[0]}: error: "), (name, err)
            assert str(path) in lines[0] and "weights_only" not in lines[0]
        assert not marker.exists(), name
    # The same through a fresh interpreter, as a user runs it.
    env = {**os.environ, "PYTHONPATH": str(Path(lm336.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "lm336", "generate", "--checkpoint", str(files["zip+sum"]), "--device", "cpu"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


def _train_args(root: Path, out_dir: Path) -> list[str]:
    cfg = _cfg(root, f"run.out_dir={out_dir}")
    return ["--set", *(f"{section}.{k}={v}" for section, values in cfg.to_dict().items() for k, v in values.items()
                       if not isinstance(v, list) and v is not None and k not in ("resume", "overwrite"))]  # fmt: skip


def test_save_refuses_extras_that_only_unpickling_could_read(tmp_path):
    model = TransformerLM(VOCAB, 8, 16, 1, 2, 32)
    for bad in (np.zeros(3), object(), {"nested": [1, {"deep": np.float64(1.0)}]}, {(1, 2): 3}):
        with pytest.raises(TypeError, match="checkpoint extra"):
            ck.save_checkpoint(model, None, 1, tmp_path / "x.pt", extra=bad)
    assert not (tmp_path / "x.pt").exists()
    fine = {"a": [1, 2.5, "s", None, True, b"b", (1, 2)], "t": torch.ones(2), "d": torch.float32}
    ck.save_checkpoint(model, None, 1, tmp_path / "x.pt", extra=fine)
    assert ck.read_checkpoint(tmp_path / "x.pt")["extra"]["a"] == fine["a"]


def test_training_checkpoints_load_safely_and_hold_plain_rng_state(run_dir):
    state = ck.read_checkpoint(run_dir / "ckpt.pt")  # the safe reader: nothing but tensors and plain data
    rng = state["rng"]
    assert set(rng) >= {"python", "numpy", "torch", "batches"}
    assert isinstance(rng["numpy"]["keys"], torch.Tensor) and isinstance(rng["python"]["state"], torch.Tensor)
    assert state["config"]["run"]["resume"] is False and state["config"]["run"]["overwrite"] is False


def test_no_unsafe_load_anywhere_in_the_package():
    """No code path may ask PyTorch (or numpy, or pickle) to unpickle arbitrary objects."""
    root = Path(lm336.__file__).resolve().parent
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "weights_only=False" not in text, path
        assert "allow_pickle=True" not in text, path
        assert "pickle.load" not in text and "import pickle" not in text, path


# 3. Commands on damaged checkpoints ---------------------------------------------------------------------


def test_resume_from_a_corrupt_checkpoint_fails_cleanly(run_dir, tmp_path, capsys):
    good = (run_dir / "ckpt.pt").read_bytes()
    root = run_dir.parent
    for variant, content in {"flipped": bytes(b ^ (i == len(good) // 3) for i, b in enumerate(good)), "truncated": good[:1000]}.items():
        out = tmp_path / variant
        out.mkdir()
        (out / "ckpt.pt").write_bytes(content)
        (out / "config.json").write_text(json.dumps(ck.read_checkpoint(run_dir / "ckpt.pt")["config"]))
        argv = ["--config", str(out / "config.json"), "--set", f"run.out_dir={out}", f"data.train_path={root / 'train.bin'}", "--resume"]
        assert training.main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lm336 train: error: ") and str(out / "ckpt.pt") in err
        assert (out / "ckpt.pt").read_bytes() == content  # nothing was written over it
        with pytest.raises(ck.CheckpointError):
            training.train(apply_overrides(_cfg(root, f"run.out_dir={out}"), ["run.resume=true"]))


def test_generate_on_a_corrupt_checkpoint_is_one_line(run_dir, tmp_path, capsys):
    good = (run_dir / "ckpt.pt").read_bytes()
    for n, content in enumerate((good[: len(good) // 2], good[:-1] + b"X", b"\0" * 100)):
        path = tmp_path / f"c{n}.pt"
        path.write_bytes(content)
        assert sampling.main(["--checkpoint", str(path), "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lm336 generate: error: ") and str(path) in err


# 4. Run folders -------------------------------------------------------------------------------------------


def test_run_files_name_every_file_of_a_run(run_dir):
    files = ck.RunFiles(run_dir)
    assert files.checkpoint == run_dir / "ckpt.pt" and files.config == run_dir / "config.json"
    assert files.log == run_dir / "log.jsonl" and files.summary == run_dir / "summary.json"
    assert files.tokenizer == run_dir / "tokenizer" and files.weights == run_dir / "model.safetensors"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([ck.CHECKPOINT, ck.CONFIG, ck.LOG, ck.SUMMARY, ck.WEIGHTS])
    assert files.existing_run() == ["ckpt.pt", "log.jsonl", "summary.json"] and files.last_logged_step() == 4
    assert ck.RunFiles(run_dir / "nothing").existing_run() == []


def test_prepare_out_dir_refuses_files_in_the_way(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile: is a file"):
        ck.prepare_out_dir(tmp_path / "afile")
    with pytest.raises(NotADirectoryError, match="a parent of the run directory"):
        ck.prepare_out_dir(tmp_path / "afile" / "run")
    assert ck.prepare_out_dir(tmp_path / "a" / "b").is_dir()


def test_load_model_rebuilds_the_trained_model(run_dir):
    model, state = ck.load_model(run_dir)
    assert not model.training and model.config == TrainConfig.from_dict(state["config"]).model
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name])

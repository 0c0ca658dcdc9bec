"""Learning-curve plots from synthetic run logs.

PYTHONPATH=python python -m pytest tests/test_plot.py -q
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import pytest

from lm336 import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_log(run_dir, n=40, lr=1e-3, speed=1.0, val_every=10):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.jsonl", "w") as f:
        for step in range(1, n + 1):
            loss = 9.0 * math.exp(-step * lr * 50) + 1.5
            val = step % val_every == 0
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "tokens": step * 512,
                        "time_s": step * 0.05 / speed,
                        "lr": lr,
                        "train_loss": loss,
                        "val_loss": loss + 0.1 if val else None,
                        "val_perplexity": math.exp(loss + 0.1) if val else None,
                        "grad_norm": 1.0,
                    }
                )
                + "\n"
            )
    return run_dir


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature and the chunk CRC."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def test_several_runs_to_one_png(tmp_path):
    pytest.importorskip("matplotlib")
    a = write_log(tmp_path / "lr1e-3", lr=1e-3)
    b = write_log(tmp_path / "lr3e-3", lr=3e-3, speed=2.0)
    out = tmp_path / "curves.png"
    assert plot.main([str(a), str(b), "--out", str(out)]) == 0
    width, height = png_size(out)
    assert width > 2 * height > 0  # two panels side by side
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing behind
    assert plot.main([str(a), "--out", str(out), "--metric", "train_loss", "--log-y"]) == 0


def test_read_log_and_series(tmp_path):
    records = plot.read_log(write_log(tmp_path / "r", n=20, val_every=5))
    assert len(records) == 20
    steps, vals = plot.series(records, "step", "val_loss")
    assert steps == [5.0, 10.0, 15.0, 20.0] and len(vals) == 4
    # A partially written final line (run in progress) is ignored; a bad middle line is not.
    with open(tmp_path / "r" / "log.jsonl", "a") as f:
        f.write('{"step": 21, "time_')
    assert len(plot.read_log(tmp_path / "r")) == 20
    lines = (tmp_path / "r" / "log.jsonl").read_text().splitlines()
    lines[3] = "not json"
    (tmp_path / "r" / "log.jsonl").write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(ValueError, match=r"log\.jsonl:4: malformed"):
        plot.read_log(tmp_path / "r")


def test_labels_are_distinct():
    assert plot.run_labels(["x/a/run", "x/b/run", "x/c"]) == ["a/run", "b/run", "c"]
    assert plot.run_labels(["sweep/lr1e-3"]) == ["lr1e-3"]


def test_missing_and_empty_logs_are_clear(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no training log"):
        plot.read_log(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        plot.read_log(tmp_path / "empty")
    out = tmp_path / "c.png"
    assert plot.main([str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "no training log" in capsys.readouterr().err
    assert plot.main([str(tmp_path / "empty"), "--out", str(out)]) == 1
    assert "empty" in capsys.readouterr().err
    assert not out.exists()


def test_metric_without_values_and_bad_out(tmp_path, capsys):
    run = write_log(tmp_path / "r", n=5, val_every=100)  # no validation step at all
    assert plot.main([str(run), "--out", str(tmp_path / "c.png")]) == 1
    assert "no run has a value of 'val_loss'" in capsys.readouterr().err
    assert plot.main([str(run), "--out", str(tmp_path / "c.jpg"), "--metric", "train_loss"]) == 1
    assert "PNG" in capsys.readouterr().err
    assert plot.main([str(run), "--out", str(tmp_path / "no" / "c.png"), "--metric", "train_loss"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    run = write_log(tmp_path / "r", n=10)
    with pytest.raises(RuntimeError, match="pip install matplotlib"):
        plot.plot_runs([run], tmp_path / "c.png")


def test_a_sweep_directory_stands_for_its_runs(tmp_path):
    pytest.importorskip("matplotlib")
    sweep = tmp_path / "sweep"
    write_log(sweep / "lr-3e-3")
    write_log(sweep / "lr-1e-3")
    (sweep / "summary.md").write_text("| run |\n")
    assert plot.expand_run_dirs([sweep]) == [sweep / "lr-1e-3", sweep / "lr-3e-3"]
    with pytest.raises(ValueError, match="not a run directory"):
        plot.expand_run_dirs([sweep / "summary.md"])
    assert plot.main([str(sweep), "--out", str(tmp_path / "c.png")]) == 0
    png_size(tmp_path / "c.png")

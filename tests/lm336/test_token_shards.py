"""lm336 reads a directory of token shards (the `.npy` arrays and `manifest.json` that
`bpe336.cluster.encode_files_on_ray` writes, `bpe336.shards`) as one token array, wherever it
takes one: indexing, slices and windows that span shards equal the concatenated array's, and a
training run and an evaluation on the shards equal those on the concatenated `.npy`.

    cd tests && python -m pytest -q lm336/test_token_shards.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import corpus, make_tokenizer

import lm336
from bpe336.shards import TokenShards, shard_file_name, write_manifest
from lm336.config import TrainConfig, apply_overrides
from lm336.data import check_token_range, get_batch
from lm336.training import DataError, open_tokens

pytestmark = pytest.mark.usefixtures("single_thread")


def write_shards(folder: Path, arrays: list[np.ndarray], dtype: str = "uint16") -> Path:
    folder.mkdir(parents=True)
    shards = []
    for i, a in enumerate(arrays):
        np.save(folder / shard_file_name(i), a.astype(dtype))
        shards.append({"file": shard_file_name(i), "tokens": len(a), "source": "corpus.txt", "start": 0, "end": 0})
    write_manifest(folder, shards, dtype)
    return folder


@pytest.fixture()
def shards(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 999, n) for n in (7, 1, 0, 20, 5, 300, 2)]
    arrays[5][250] = 999  # the only id >= 999, in a later shard
    return write_shards(tmp_path / "tokens", arrays), np.concatenate(arrays).astype(np.uint16)


def test_shards_read_as_the_concatenated_array(shards):
    folder, cat = shards
    for path in (folder, folder / "manifest.json", str(folder)):
        ts = open_tokens(path)
        assert isinstance(ts, TokenShards) and len(ts) == len(cat) and ts.dtype == np.uint16 and ts.shape == cat.shape
        assert np.array_equal(np.asarray(ts), cat)
    assert [int(ts[i]) for i in range(-len(cat), len(cat))] == [int(v) for v in np.concatenate([cat, cat])]
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = sorted(rng.integers(-10, len(cat) + 10, 2))
        assert np.array_equal(np.asarray(ts[a:b]), cat[a:b]), (a, b)
    assert np.array_equal(np.asarray(ts[3:200][5:50]), cat[3:200][5:50])  # a view of a view
    # Windows, most of them across shard boundaries: the same gather, the same batches.
    starts = rng.integers(0, len(cat) - 9, 64)
    idx = starts[:, None] + np.arange(9)
    assert np.array_equal(ts[idx], cat[idx])
    for seed in range(3):
        got = get_batch(ts, 16, 8, "cpu", generator=torch.Generator().manual_seed(seed))
        want = get_batch(cat, 16, 8, "cpu", generator=torch.Generator().manual_seed(seed))
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    check_token_range(ts, 1000, chunk_size=16)
    with pytest.raises(ValueError, match=f"id 999 at index {7 + 1 + 20 + 5 + 250}"):
        check_token_range(ts, 999, chunk_size=16)
    with pytest.raises(IndexError):
        ts[len(cat)]
    with pytest.raises(IndexError):
        ts[::2]


def _tiny_config(tmp_path: Path, train: Path, val: Path, vocab_size: int, name: str):
    return apply_overrides(
        TrainConfig(),
        [
            f"model.vocab_size={vocab_size}", "model.context_length=16", "model.d_model=16", "model.num_layers=1",
            "model.num_heads=2", "model.d_ff=32", f"data.train_path={train}", f"data.val_path={val}",
            f"run.out_dir={tmp_path / name}", "run.max_steps=4", "run.batch_size=4", "run.eval_interval=2",
            "run.eval_batches=2", "run.log_interval=1", "run.checkpoint_interval=0", "run.progress=false", "run.device=cpu",
        ],
    )  # fmt: skip


def test_training_and_evaluation_on_shards_equal_the_concatenated_array(tmp_path):
    tok = make_tokenizer()
    ids = tok.encode_to_numpy(corpus(120, 3))
    cuts = [0, 5, 6, 400, 401, 900, len(ids)]  # shards of 5, 1, 394, 1, 499 and the rest
    folder = write_shards(tmp_path / "train", [ids[a:b] for a, b in zip(cuts, cuts[1:])])
    np.save(tmp_path / "train.npy", ids)
    logs = []
    for name, train, val in (("npy", tmp_path / "train.npy", tmp_path / "train.npy"), ("shards", folder, folder / "manifest.json")):
        lm336.train(_tiny_config(tmp_path, train, val, tok.vocab_size, name))
        rows = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        logs.append([(r["step"], r["train_loss"], r.get("val_loss")) for r in rows])
    assert logs[0] == logs[1] and len(logs[0]) >= 4
    model = lm336.TransformerLM(tok.vocab_size, 16, 16, 1, 2, 32, 10_000.0)
    by_array = lm336.evaluate(model, ids, tok, stride=8)
    assert lm336.evaluate(model, folder, tok, stride=8) == by_array
    assert lm336.evaluate(model, str(folder / "manifest.json"), tok, stride=8) == by_array


def test_bad_shard_directories_are_one_clear_error(shards, tmp_path):
    folder, _ = shards
    manifest = json.loads((folder / "manifest.json").read_text())
    cases = [
        ({**manifest, "version": 2}, "manifest version 2"),
        ({**manifest, "format": "other"}, "not a token-shard manifest"),
        ({**manifest, "dtype": "float32"}, "dtype 'float32'"),
        ({**manifest, "tokens": 1}, "the shards hold"),
        (
            {**manifest, "tokens": manifest["tokens"] + 1, "shards": [{**manifest["shards"][0], "tokens": 8}] + manifest["shards"][1:]},
            "expected 8 ids",
        ),
        ({**manifest, "shards": [{**manifest["shards"][0], "file": "../x.npy"}]}, "named like"),
    ]
    for content, message in cases:
        (folder / "manifest.json").write_text(json.dumps(content))
        with pytest.raises(DataError, match=message):
            open_tokens(folder)
    for garbage in ("{not json", '{"tokens": ' + "9" * 5000 + "}", "[" * 100_000):
        (folder / "manifest.json").write_text(garbage)
        with pytest.raises(DataError, match="manifest.json: not a JSON"):
            open_tokens(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / shard_file_name(3)).unlink()
    with pytest.raises(DataError, match="is missing"):
        open_tokens(folder)
    (tmp_path / "plain").mkdir()
    with pytest.raises(IsADirectoryError, match="manifest.json"):
        open_tokens(tmp_path / "plain")

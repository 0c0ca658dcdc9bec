"""Training and encoding on Ray (`bpe336.cluster`), on a local Ray cluster of 2 workers started
once for this module: the same vocabulary and merges as `train_bpe` for every named pattern and
a custom regex, the same ids as `Tokenizer.encode_file`, and one clear exception for a cluster
that cannot be reached or a task that fails. (Ray starts slowly: the tests are few and small;
the exactness of shards is tested hard in test_counts.py, without Ray.)

    cd tests && python -m pytest -q bpe336/test_cluster.py
"""

from __future__ import annotations

import json
import random
import socket

import numpy as np
import pytest
import ray  # a test dependency (the `test` extra): never skip silently
from testdata import DATA, EOT, FIXTURES, needs_shared

from bpe336 import Tokenizer, count_pretokens, train_bpe
from bpe336.cluster import count_pretokens_on_ray, encode_files_on_ray, train_bpe_on_ray
from bpe336.shards import open_token_shards

CUSTOM = r"\p{L}+|\p{N}{1,2}|\s+|[^\s\p{L}\p{N}]+"
SPECIALS = [EOT, "<|x|>"]
PIECES = ["a", "Ab", "it's", " ", "  ", "\r\n", "\n\n", "1", "12345", "é", "中文", "😀", "!", "<|", EOT, "<|x|>", EOT + EOT]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> list:
    """corpus.en, 300 KB of webtext and random Unicode with special tokens: three files."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    folder = tmp_path_factory.mktemp("cluster")
    web = folder / "webtext.txt"
    web.write_text(DATA.joinpath("webtext.txt").read_bytes()[:300_000].decode("utf-8", errors="ignore"), encoding="utf-8")
    rng = random.Random(1)
    uni = folder / "unicode.txt"
    uni.write_text("".join(rng.choice(PIECES) for _ in range(8000)), encoding="utf-8")
    return [FIXTURES / "corpus.en", web, uni]


@needs_shared
@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k", CUSTOM])
def test_training_on_ray_equals_train_bpe(corpora, pattern):
    expected = train_bpe(corpora, 800, SPECIALS, pattern=pattern)
    got = train_bpe_on_ray(corpora, 800, SPECIALS, pattern=pattern, shard_bytes=45_000, progress=pattern == "gpt2")
    assert got == expected
    assert count_pretokens_on_ray(corpora, SPECIALS, pattern=pattern, shard_bytes=45_000, progress=False) == count_pretokens(
        corpora, SPECIALS, pattern
    )


@needs_shared
@pytest.mark.parametrize("pattern", ["gpt2", CUSTOM])
def test_encoding_on_ray_equals_encode_file(corpora, tmp_path, pattern):
    tok = Tokenizer(*train_bpe(corpora, 600, SPECIALS, pattern=pattern), SPECIALS, pattern=pattern)
    out = tmp_path / "tokens"
    manifest = encode_files_on_ray(corpora, tok, out, shard_bytes=40_000, progress=False)
    expected = []
    for path in corpora:
        tok.encode_file(path, tmp_path / "whole.npy", progress=False)
        expected.append(np.load(tmp_path / "whole.npy"))
    expected = np.concatenate(expected)
    shards = open_token_shards(out)
    assert np.array_equal(np.asarray(shards), expected)
    assert manifest == json.loads((out / "manifest.json").read_text()) and manifest["tokens"] == len(expected)
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"]["special_tokens"] == {EOT: 0, "<|x|>": 1}
    # The shards' source ranges tile each file, in order.
    for path in corpora:
        ranges = [(s["start"], s["end"]) for s in manifest["shards"] if s["source"] == str(path.resolve())]
        assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(manifest["shards"]) > len(corpora)
    # A second run replaces the directory as one unit.
    encode_files_on_ray(corpora[:1], tok, out, shard_bytes=1 << 20, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-000000.npy"]


def test_bad_input_is_one_clear_exception(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("hello world " * 50)
    with pytest.raises(ConnectionError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        train_bpe_on_ray(good, 300, address="127.0.0.1:1", progress=False)
    with pytest.raises(ValueError, match="Ray address"):
        train_bpe_on_ray(good, 300, address="nowhere", progress=False)
    # Something listens, but this process is connected to another cluster.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with pytest.raises(ValueError, match="already connected"):
            train_bpe_on_ray(good, 300, address=f"127.0.0.1:{port}", progress=False)
    # A task's error is raised as itself.
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text " * 3000 + b"\xff")
    with pytest.raises(UnicodeDecodeError) as info:
        train_bpe_on_ray(bad, 300, shard_bytes=4096, progress=False)
    assert info.value.start == 30_000
    with pytest.raises(FileNotFoundError, match="no file matches"):
        train_bpe_on_ray(str(tmp_path / "*.none"), 300, progress=False)
    with pytest.raises(ValueError, match="too small"):
        train_bpe_on_ray(good, 100, progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no text to train on"):
        train_bpe_on_ray(str(tmp_path / "empty*.txt"), 300, progress=False)
    # An output directory holding other files is refused before any work.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    tok = Tokenizer(*train_bpe(good, 260), [])
    with pytest.raises(FileExistsError, match="notes.txt"):
        encode_files_on_ray(good, tok, tmp_path / "out", progress=False)

"""Dataset fetching without the network: file:// URLs, a fake HTTP server object, and no network at all.

PYTHONPATH=python python -m pytest tests/test_datasets.py -q
"""

from __future__ import annotations

import email.message
import gzip
import io
import urllib.error
import urllib.request

import pytest

from lm336 import datasets as ds


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test is hermetic: anything but file:// (or an explicit fake) fails like a machine offline."""
    real = urllib.request.urlopen

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        if not url.startswith("file:"):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_no_network_is_one_clear_line(tmp_path, capsys):
    assert ds.main(["fetch", "tinystories", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    url = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-train.txt"
    assert err.startswith(f"lm336 data: error: cannot download {url}")
    assert "no network?" in err and "local text file" in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_urls_of_both_datasets(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert ds.DATASETS["owt"].base_url() == "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main"
    assert ds.DATASETS["tinystories"].files == ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt")
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example/")
    assert ds.DATASETS["owt"].base_url().startswith("https://mirror.example/datasets/stanford-cs336/")


def test_download_from_a_file_url_and_skip_when_complete(tmp_path, monkeypatch):
    src = tmp_path / "src.txt"
    payload = ("Once upon a time there was a tiny test.\n" * 50_000).encode()
    src.write_bytes(payload)
    monkeypatch.setattr(ds, "CHUNK", 4096)  # many chunks
    dest = ds.download(src.as_uri(), tmp_path / "out" / "a.txt", progress=True)
    assert dest.read_bytes() == payload
    assert not list((tmp_path / "out").glob(".*part"))
    # Present and complete: no second request at all.
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded twice"))
    assert ds.download(src.as_uri(), dest).read_bytes() == payload


def test_fetch_dataset_from_a_mirror_directory(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    texts = {"owt_train.txt": "train text\u00e9\n" * 1000, "owt_valid.txt": "valid text\n" * 10}
    for name, text in texts.items():
        with gzip.open(mirror / f"{name}.gz", "wt", encoding="utf-8") as f:
            f.write(text)
    out = tmp_path / "data"
    argv = ["fetch", "owt", "--out", str(out), "--base-url", mirror.as_uri(), "--no-progress"]
    assert ds.main(argv) == 0
    for name, text in texts.items():
        assert (out / name).read_text(encoding="utf-8") == text
    assert sorted(p.name for p in out.iterdir()) == ["owt_train.txt", "owt_valid.txt"]  # archives removed
    capsys.readouterr()
    assert ds.main(argv) == 0  # second time: nothing to do
    assert capsys.readouterr().out.count("already complete") == 2


def test_missing_remote_file_and_corrupt_archive(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    assert ds.main(["fetch", "owt", "--out", str(tmp_path / "d"), "--base-url", mirror.as_uri(), "--no-progress"]) == 1
    assert "cannot download file://" in capsys.readouterr().err
    (mirror / "owt_train.txt.gz").write_bytes(gzip.compress(b"x" * 1000)[:-10])
    assert ds.main(["fetch", "owt", "--out", str(tmp_path / "d"), "--base-url", mirror.as_uri(), "--no-progress"]) == 1
    assert "not a complete gzip archive" in capsys.readouterr().err
    assert not (tmp_path / "d" / "owt_train.txt").exists()


class FakeResponse(io.BytesIO):
    """What urlopen returns, for a server that honours Range requests."""

    def __init__(self, body: bytes, status: int, announced: int | None = None):
        super().__init__(body)
        self.status = status
        self.headers = email.message.Message()
        self.headers["Content-Length"] = str(len(body) if announced is None else announced)

    def getcode(self):
        return self.status


def test_resume_and_short_read(tmp_path, monkeypatch):
    payload = bytes(range(256)) * 400
    dest = tmp_path / "big.bin"
    requests = []

    def server(request, timeout=None):
        requests.append(request.get_header("Range"))
        rng = request.get_header("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            return FakeResponse(payload[start:], 206)
        return FakeResponse(payload[:30_000], 200, announced=len(payload))  # connection drops early

    monkeypatch.setattr(urllib.request, "urlopen", server)
    with pytest.raises(ds.DownloadError, match="incomplete: 30,000 of 102,400 bytes"):
        ds.download("https://example.invalid/big.bin", dest, progress=False)
    assert not dest.exists() and ds._part_path(dest).stat().st_size == 30_000
    ds.download("https://example.invalid/big.bin", dest, progress=False)
    assert requests == [None, "bytes=30000-"]
    assert dest.read_bytes() == payload and not ds._part_path(dest).exists()


def test_server_without_range_restarts_cleanly(tmp_path, monkeypatch):
    payload = b"abc" * 1000
    dest = tmp_path / "f.txt"
    ds._part_path(dest).write_bytes(b"stale partial bytes")
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: FakeResponse(payload, 200))
    ds.download("https://example.invalid/f.txt", dest, progress=False)
    assert dest.read_bytes() == payload


def test_http_error_and_bad_destination(tmp_path, monkeypatch, capsys):
    def not_found(request, timeout=None):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(ds.DownloadError, match="HTTP 404 Not Found"):
        ds.download("https://example.invalid/x", tmp_path / "x", progress=False)
    with pytest.raises(IsADirectoryError):
        ds.download("https://example.invalid/x", tmp_path, progress=False)
    (tmp_path / "file").write_text("")
    assert ds.main(["fetch", "tinystories", "--out", str(tmp_path / "file")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert ds.main(["list"]) == 0
    assert "roneneldan/TinyStories" in capsys.readouterr().out

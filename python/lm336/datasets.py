"""Download the real training corpora: TinyStories (V2, GPT-4 stories) and the OpenWebText sample.

    lm336 data fetch tinystories --out data       # data/TinyStoriesV2-GPT4-{train,valid}.txt (~2.2 GB)
    lm336 data fetch owt --out data               # data/owt_{train,valid}.txt (~12 GB unpacked)
    lm336 data list

Files stream from the Hugging Face hub (TinyStories from roneneldan/TinyStories, the OpenWebText
sample from the copy the Stanford CS336 course publishes, stanford-cs336/owt-sample) into a
`.NAME.part` file beside the target with a progress bar, are checked against the announced size
and only then renamed into place, so a file under its final name is always complete and a second
fetch skips it. An interrupted download resumes from its `.part` file where the server allows
(HTTP Range). The .gz archives of OWT are unpacked (atomically too) and then removed unless
`--keep-archives`. `HF_ENDPOINT` (as for huggingface_hub) or `--base-url` point at a mirror.

With no network this fails with one line naming the URL; any local UTF-8 text file works instead
for every other command (e.g. `bpe336 train my.txt ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .common import atomic_write, command, is_terminal

CHUNK = 1 << 20  # bytes per read while streaming
USER_AGENT = "lm336-data-fetch"


@dataclass(frozen=True)
class Dataset:
    """A corpus on the hub: its repository, the files to fetch, and what the user gets."""

    repo: str  # Hugging Face dataset repository
    files: tuple[str, ...]  # file names under resolve/main/
    description: str

    def base_url(self, endpoint: str | None = None) -> str:
        endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return f"{endpoint}/datasets/{self.repo}/resolve/main"


DATASETS = {
    "tinystories": Dataset(
        "roneneldan/TinyStories",
        ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt"),
        "TinyStories V2 (GPT-4 generated short stories): train ~2.1 GB, valid ~22 MB of text",
    ),
    "owt": Dataset(
        "stanford-cs336/owt-sample",
        ("owt_train.txt.gz", "owt_valid.txt.gz"),
        "OpenWebText sample (CS336 copy): train ~11.9 GB, valid ~290 MB of text, downloaded gzipped",
    ),
}


class DownloadError(OSError):
    """A download that could not start or did not complete; the message is one line and says what to do."""


def _part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    if not (enabled and is_terminal()):  # a pipe or log file gets the start and end lines only
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True, leave=True)


def _no_network_hint(url: str, dest: Path) -> str:
    return (
        f"fetch it on a machine with access and copy it to {dest}, set HF_ENDPOINT or --base-url to a "
        f"reachable mirror, or use any local text file instead (e.g. `bpe336 train your.txt ...`)"
    )


def download(url: str, dest: str | os.PathLike, *, progress: bool = True, force: bool = False, timeout: float = 60.0) -> Path:
    """Stream `url` to `dest` (resuming a partial `.part` file when the server allows), check its
    size against Content-Length, then rename it into place. Skips the download when `dest` exists.

    Args:
        url: http(s):// or file:// URL.
        dest: final path; its directory is created.
        progress: show a tqdm progress bar (bytes).
        force: download again even if `dest` exists (a partial `.part` file is discarded).
        timeout: seconds to wait for the connection or for data before giving up.
    Returns:
        `dest`.
    Raises:
        DownloadError: no network, an HTTP error, or a short read; one line, naming the URL.
    """
    dest = Path(dest)
    if dest.is_dir():
        raise IsADirectoryError(f"{dest}: is a directory, expected a file path")
    if dest.exists() and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    if force:
        part.unlink(missing_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already the whole file (or more): start over
            part.unlink()
            return download(url, dest, progress=progress, force=force, timeout=timeout)
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {_no_network_hint(url, dest)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url} ({reason}); no network? {_no_network_hint(url, dest)}") from None
    with response:
        status = getattr(response, "status", None) or response.getcode()
        resumed = offset > 0 and status == 206
        if not resumed:
            offset = 0  # the server sent the whole file (file:// URLs and servers without Range)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        written = offset
        try:
            with open(part, "ab" if resumed else "wb") as f, _progress(total, offset, dest.name, progress) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (urllib.error.URLError, OSError) as exc:  # connection dropped: keep the .part to resume
            raise DownloadError(
                f"download of {url} interrupted after {written:,} bytes ({exc}); run the same command again to resume"
            ) from None
    if total is not None and written != total:
        raise DownloadError(f"download of {url} is incomplete: {written:,} of {total:,} bytes; run the same command again to resume")
    os.replace(part, dest)
    return dest


def gunzip(src: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True) -> Path:
    """Decompress `src` (.gz) into `dest` atomically; raises DownloadError on a corrupt archive."""
    src, dest = Path(src), Path(dest)
    try:
        with gzip.open(src, "rb") as fin, atomic_write(dest, "wb") as fout, _progress(None, 0, f"unpack {dest.name}", progress) as bar:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except (gzip.BadGzipFile, EOFError) as exc:
        raise DownloadError(f"{src} is not a complete gzip archive ({exc}); delete it and fetch again") from None
    return dest


def fetch(
    name: str,
    out_dir: str | os.PathLike = "data",
    *,
    base_url: str | None = None,
    progress: bool = True,
    force: bool = False,
    keep_archives: bool = False,
    log=print,
) -> list[Path]:
    """Download every file of dataset `name` into `out_dir`; return the text files.

    Files already present are skipped; .gz archives are unpacked next to themselves and removed
    unless `keep_archives`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    base = (base_url or dataset.base_url()).rstrip("/")
    results = []
    for filename in dataset.files:
        archive = filename.endswith(".gz")
        text = out_dir / (filename[:-3] if archive else filename)
        if text.exists() and not force:
            log(f"{text}: already complete, skipped")
            results.append(text)
            continue
        url = f"{base}/{filename}"
        log(f"fetching {url} -> {out_dir / filename}")
        path = download(url, out_dir / filename, progress=progress, force=force)
        if archive:
            gunzip(path, text, progress=progress)
            if not keep_archives:
                path.unlink()
        results.append(text)
    return results


@command("lm336 data")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm336 data", description="Fetch the training corpora (needs a network).")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a dataset", description="Download a dataset's train and valid text files.")
    f.add_argument("dataset", choices=sorted(DATASETS), help="tinystories (~2.2 GB) or owt (~12 GB unpacked)")
    f.add_argument("--out", default="data", help="directory for the files (default ./data)")
    f.add_argument("--base-url", help="fetch the files from this directory URL instead (a mirror, or file:///path)")
    f.add_argument("--force", action="store_true", help="download again even if the files exist")
    f.add_argument("--keep-archives", action="store_true", help="keep the .gz files after unpacking (owt)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("list", help="list the datasets and their sources")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        for name, d in DATASETS.items():
            print(f"{name}: {d.description}\n  {d.base_url()}/{{{','.join(d.files)}}}")
        return 0
    try:
        paths = fetch(
            args.dataset,
            args.out,
            base_url=args.base_url,
            progress=not args.no_progress,
            force=args.force,
            keep_archives=args.keep_archives,
        )
    except (DownloadError, OSError, ValueError) as exc:
        print(f"lm336 data: error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

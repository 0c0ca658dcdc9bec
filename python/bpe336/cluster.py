"""Training and encoding on a Ray cluster, with exactly the results of one machine.

    from bpe336.cluster import encode_files_on_ray, train_bpe_on_ray

    vocab, merges = train_bpe_on_ray("data/*.txt", 32_000, ["<|endoftext|>"])        # a local Ray
    vocab, merges = train_bpe_on_ray("/shared/owt/*.txt", 32_000, ["<|endoftext|>"], address="auto")
    encode_files_on_ray("/shared/owt/train.txt", "tok/", "/shared/owt/train-tokens")  # .npy shards + manifest.json

Install with `pip install 'bpe336[ray]'`. Ray is the engine: its tasks, object store, scheduling
and retries do the distributed work; this module only cuts the work into tasks and collects
what they return.

1. Shards: every input file is split into byte ranges of about `shard_bytes`, and each Ray task
   counts (or encodes) the bytes its range owns (`bpe336.shards`: each boundary moves to a safe
   cut that both neighbouring tasks find from the bytes around it), so the shards of a file add
   up to exactly the whole file, whatever the split.
2. Counting: each task returns its counts as the bytes of the counts file format
   (`PretokenCounts.to_bytes`, no pickled objects of ours); as results arrive, Ray tasks merge
   them in pairs (a tree; each merge is a linear merge-join of two sorted lists), and the driver
   trains on the single result (`train_bpe(counts, ...)`), so the merges are `train_bpe`'s.
3. Encoding: each task writes its shard's `.npy` into the output directory being built (a
   temporary sibling that the driver swaps in as one unit once every task is done) and returns
   its token count and source range; the driver writes `manifest.json` (format in
   `bpe336.shards`). The shards' ids, concatenated in manifest order, are `Tokenizer.encode_file`'s
   ids of the whole input; lm336 reads the directory as one token array.

Files: every worker reads the inputs, and for encoding writes the output directory, at the same
absolute paths as the driver: on one machine nothing to arrange, on a cluster a shared
filesystem. The package must be importable on every node.

Connection (`address`): None uses this process's Ray connection, or starts a local Ray
(`ray.init()`) that stays up for later calls in this process; "auto" joins the cluster this
machine belongs to (`ray start`); "HOST:PORT" or "ray://HOST:PORT" a given one. An address that
cannot be reached raises ConnectionError within seconds (Ray itself would retry for minutes).
A task's error (a missing file on a node, invalid UTF-8) is raised as itself.
"""

from __future__ import annotations

import errno
import glob
import os
import socket
import stat
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .counts import PretokenCounts, count_pretokens, count_pretokens_from_iterator
from .pattern import resolve_pattern
from .shards import ShardDirectoryEntries, plan_byte_ranges, shard_file_name, write_manifest
from .train import Merges, Vocab, _check_path, _check_specials, check_vocab_size, train_bpe

DEFAULT_SHARD_BYTES = 64 << 20
"""Bytes per task by default: large enough that a task's start-up is a small part of it."""
CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a cluster's address to answer before giving up."""

__all__ = ["DEFAULT_SHARD_BYTES", "count_pretokens_on_ray", "encode_files_on_ray", "train_bpe_on_ray"]

PathsArg = str | os.PathLike | Sequence[str | os.PathLike]


# ---------------------------------------------------------------------------------------------
# Ray, inputs and the connection
# ---------------------------------------------------------------------------------------------


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("bpe336.cluster needs Ray: pip install 'bpe336[ray]'") from None
    return ray


def _input_files(paths_or_globs: PathsArg) -> list[Path]:
    """Absolute paths of regular files: each argument a path or a glob pattern (sorted matches);
    a pattern matching nothing, a missing file or a non-file is an error."""
    items = [paths_or_globs] if isinstance(paths_or_globs, (str, os.PathLike)) else list(paths_or_globs)
    if not items:
        raise ValueError("no input files given")
    files: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"input paths must be str or os.PathLike, got {type(item).__name__}")
        text = os.fspath(item)
        if any(c in text for c in "*?["):
            matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "no file matches this pattern", text)
            files.extend(Path(m) for m in matches)
        else:
            files.append(_check_path(text))
    for f in files:
        if not stat.S_ISREG(f.stat().st_mode):
            raise ValueError(f"{f}: not a regular file (shards are byte ranges of files; FIFOs and pipes cannot be split)")
    return [f.resolve() for f in files]


def _host_port(address: str) -> tuple[str, int] | None:
    """("10.0.0.5", 6379) for "10.0.0.5:6379" or "ray://10.0.0.5:10001"; None when no port."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _check_reachable(address: str) -> None:
    """Raise ConnectionError unless something listens at `address` (within CONNECT_TIMEOUT_S)."""
    target = _host_port(address)
    if target is None:
        raise ValueError(f"Ray address {address!r}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address}: {why} (is `ray start --head` running there, and the port open to this machine?)"
        ) from None


def _auto_address() -> str | None:
    """The address "auto" stands for, when one can be found: RAY_ADDRESS, else the address file
    `ray start` leaves on this machine."""
    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        return env
    try:  # Ray's own lookup (not a public API, so absent in some versions)
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:
        return None
    return found if isinstance(found, str) and found else None


def _same_cluster(current: str, wanted: str) -> bool:
    a, b = _host_port(current), _host_port(wanted)
    if a is None or b is None or a[1] != b[1]:
        return False
    loopback = ("localhost", "127.0.0.1", "::1")
    if a[0] == b[0] or a[0] in loopback or b[0] in loopback:
        return True
    try:
        return socket.gethostbyname(a[0]) == socket.gethostbyname(b[0])
    except OSError:
        return False


def _connect(address: str | None = None) -> None:
    """Make sure this process is connected to Ray (see the module docs for `address`)."""
    ray = _ray()
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a str or None, got {type(address).__name__}")
    if address == "auto":
        found = _auto_address()
        if found is not None and not ray.is_initialized():
            _check_reachable(found)
    elif address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        if address not in (None, "auto"):
            current = ray.get_runtime_context().gcs_address
            if not _same_cluster(current, address):
                raise ValueError(
                    f"this process is already connected to the Ray cluster at {current}, not {address}; "
                    "leave address out to use that connection, or call ray.shutdown() first"
                )
        return
    try:
        ray.init(address=address, logging_level="WARNING")
    except ConnectionError as e:
        raise ConnectionError(f"cannot connect to a Ray cluster at {address!r}: {e}") from None


def _get(ray, refs):
    """`ray.get`, raising a task's exception as itself (Ray wraps it with the remote traceback)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _bar(progress: bool, total: int, desc: str):
    from .progress import progress_bar

    return progress_bar(total, desc, unit="B") if progress else None


# ---------------------------------------------------------------------------------------------
# Counting and training
# ---------------------------------------------------------------------------------------------


def _count_task(path: str, start: int, end: int, specials: list[str], pattern: str, threads: int) -> bytes:
    """One shard's counts, as the bytes of the counts file."""
    return count_pretokens(path, specials, pattern, num_threads=threads, byte_range=(start, end)).to_bytes()


def _merge_task(a: bytes, b: bytes) -> bytes:
    """Two counts' sum, as bytes."""
    return (PretokenCounts.from_bytes(a) + PretokenCounts.from_bytes(b)).to_bytes()


def count_pretokens_on_ray(
    paths_or_globs: PathsArg,
    special_tokens: Iterable[str] = (),
    *,
    pattern: str = "gpt2",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    address: str | None = None,
    progress: bool = True,
    num_cpus_per_task: int = 1,
) -> PretokenCounts:
    """`bpe336.count_pretokens` of the files (each an independent text), counted by Ray tasks
    over byte-range shards and merged by Ray tasks in a tree; equal to counting on one machine.

    Args:
        paths_or_globs: a path or glob pattern, or a list of them (`"data/*.txt"`).
        special_tokens, pattern: as `count_pretokens`.
        shard_bytes: bytes of a file per task.
        address: the Ray cluster (module docs); None: this process's, or a new local one.
        progress: a progress bar of the bytes counted.
        num_cpus_per_task: CPUs Ray reserves for each counting task, and its threads.
    """
    ray = _ray()
    files = _input_files(paths_or_globs)
    specials = _check_specials(special_tokens)
    regex = resolve_pattern(pattern)
    plan = [(str(f), s, e) for f in files for s, e in plan_byte_ranges(f.stat().st_size, shard_bytes)]
    if not plan:  # only empty files: nothing for a cluster to do
        return count_pretokens_from_iterator([], specials, regex)
    _connect(address)
    count = ray.remote(num_cpus=num_cpus_per_task)(_count_task)
    merge = ray.remote(num_cpus=1)(_merge_task)
    sizes = {count.remote(path, s, e, specials, regex, num_cpus_per_task): e - s for path, s, e in plan}
    running, ready = list(sizes), []
    bar = _bar(progress, sum(sizes.values()), "count on Ray")
    try:
        # Merge results in pairs as they arrive: the merges overlap the counting, and a tree
        # of pairwise merges moves each count O(log shards) times.
        while running:
            done, running = ray.wait(running, num_returns=1, fetch_local=False)
            for ref in done:
                if bar is not None and ref in sizes:
                    bar.update(sizes[ref])
                ready.append(ref)
            while len(ready) >= 2:
                running.append(merge.remote(ready.pop(0), ready.pop(0)))
        data = _get(ray, ready[0])
    except BaseException:
        for ref in running:
            ray.cancel(ref)
        raise
    finally:
        if bar is not None:
            bar.close()
    return PretokenCounts.from_bytes(data)


def train_bpe_on_ray(
    paths_or_globs: PathsArg,
    vocab_size: int,
    special_tokens: Iterable[str] = (),
    *,
    pattern: str = "gpt2",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    address: str | None = None,
    progress: bool = True,
    num_cpus_per_task: int = 1,
    num_threads: int | None = None,
) -> tuple[Vocab, Merges]:
    """`bpe336.train_bpe` of the files, counted on a Ray cluster (`count_pretokens_on_ray`) and
    merged on the driver: exactly `train_bpe`'s vocabulary and merges.

    Args:
        paths_or_globs, special_tokens, pattern, shard_bytes, address, num_cpus_per_task: as
            `count_pretokens_on_ray`.
        vocab_size: as `train_bpe` (checked before anything starts).
        progress: progress bars for counting and merging.
        num_threads: threads of the driver (for `train_bpe`).

    Returns:
        `(vocab, merges)` as `train_bpe`.
    """
    specials = _check_specials(special_tokens)
    check_vocab_size(vocab_size, len(specials))
    counts = count_pretokens_on_ray(
        paths_or_globs,
        specials,
        pattern=pattern,
        shard_bytes=shard_bytes,
        address=address,
        progress=progress,
        num_cpus_per_task=num_cpus_per_task,
    )
    return train_bpe(counts, vocab_size, progress=progress, num_threads=num_threads)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_WORKER_TOKENIZER: dict[str, Any] = {}


def _worker_tokenizer(data: dict):
    """The tokenizer of this call, built once per worker process (the key is the call's)."""
    from .tokenizer import Tokenizer

    if data["key"] not in _WORKER_TOKENIZER:
        _WORKER_TOKENIZER.clear()
        _WORKER_TOKENIZER[data["key"]] = Tokenizer(data["vocab"], data["merges"], data["special_tokens"], pattern=data["pattern"])
    return _WORKER_TOKENIZER[data["key"]]


def _encode_task(data: dict, path: str, start: int, end: int, out: str, dtype: str, threads: int) -> tuple[int, list[int] | None]:
    """Encodes one shard into `out`: (tokens, [first, last] bytes owned); no file when the shard
    owns nothing."""
    stats = _worker_tokenizer(data).encode_file(path, out, byte_range=(start, end), progress=False, dtype=dtype, num_threads=threads)
    if stats["range"] is None:
        os.unlink(out)
        return 0, None
    return stats["tokens"], list(stats["range"])


def encode_files_on_ray(
    paths_or_globs: PathsArg,
    tokenizer,
    out_dir: str | os.PathLike,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    dtype: object = None,
    address: str | None = None,
    progress: bool = True,
    num_cpus_per_task: int = 1,
) -> dict:
    """Encode text files on a Ray cluster into a directory of `.npy` token arrays plus
    `manifest.json`, written as one unit (a temporary sibling swapped in at the end).

    Concatenated in manifest order, the arrays are exactly `tokenizer.encode_file`'s ids of the
    files one after another; `bpe336.shards.open_token_shards(out_dir)` (and lm336, wherever it
    takes a token array) reads them as one array.

    Args:
        paths_or_globs: a path or glob pattern, or a list of them.
        tokenizer: a `Tokenizer`, or a path `Tokenizer.load` reads.
        out_dir: the directory to write: new, or holding only a previous manifest and shards.
        shard_bytes: bytes of a file per task (and so per `.npy`, at about 2-4 bytes a token).
        dtype: "uint16" or "uint32" (default: uint16 when the vocabulary fits).
        address, progress, num_cpus_per_task: as `count_pretokens_on_ray`.

    Returns:
        The manifest (also written to `out_dir/manifest.json`).
    """
    from .atomic import atomic_directory, check_not_inside, check_output_directory
    from .tokenizer import Tokenizer

    ray = _ray()
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    dt = tok.resolve_dtype(dtype)
    files = _input_files(paths_or_globs)
    out = Path(out_dir)
    owned = ShardDirectoryEntries()
    check_output_directory(out, owned)  # before any work; atomic_directory checks again
    for f in files:
        check_not_inside(f, out)
    plan = [(str(f), s, e) for f in files for s, e in plan_byte_ranges(f.stat().st_size, shard_bytes)]
    data = {
        "key": uuid.uuid4().hex,
        "vocab": tok.vocab,
        "merges": tok.merges,
        "special_tokens": tok.special_token_ids,
        "pattern": tok.pattern,
    }
    if plan:
        _connect(address)
    with atomic_directory(out, owned) as tmp:
        results: list = []
        if plan:
            encode = ray.remote(num_cpus=num_cpus_per_task)(_encode_task)
            shared = ray.put(data)
            refs = [
                encode.remote(shared, path, s, e, str(tmp / shard_file_name(i)), dt.name, num_cpus_per_task)
                for i, (path, s, e) in enumerate(plan)
            ]
            index = {ref: i for i, ref in enumerate(refs)}
            running = list(refs)
            bar = _bar(progress, sum(e - s for _, s, e in plan), "encode on Ray")
            try:
                while running:
                    done, running = ray.wait(running, num_returns=1)
                    for ref in done:
                        _get(ray, ref)  # a failed shard stops the call now
                        if bar is not None:
                            _, s, e = plan[index[ref]]
                            bar.update(e - s)
                results = _get(ray, refs)
            except BaseException:
                for ref in running:
                    ray.cancel(ref)
                raise
            finally:
                if bar is not None:
                    bar.close()
        shards = [
            {"file": shard_file_name(i), "tokens": n, "source": path, "start": r[0], "end": r[1]}
            for i, ((path, _, _), (n, r)) in enumerate(zip(plan, results))
            if r is not None
        ]
        info = {"vocab_size": tok.vocab_size, "pattern": tok.pattern, "special_tokens": tok.special_token_ids}
        manifest = write_manifest(tmp, shards, dt.name, info)
    return manifest

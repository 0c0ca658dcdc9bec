"""Atomic writes: a file, or a whole directory, appears complete or not at all.

Files go to a temporary file beside the target, are fsynced, then renamed over it, so an
interrupted run never leaves a truncated file where a good one was. Directories (a tokenizer, a
model export) are written as a new sibling directory and then swapped in as one unit, so a reader
sees the old complete directory or the new complete one, never a mix. lm336 uses both.

    with atomic_write("vocab.json", "w") as f:
        f.write(text)
    with atomic_directory("tok", owned=TOKENIZER_FILES) as tmp:
        (tmp / "tokenizer.json").write_text(text)

What a target may be (checked before any work, and again just before the rename):
- A missing path in an existing directory, or a regular file: replaced.
- A symlink to a regular file (or directory, for `atomic_directory`): the link is followed and its
  target is replaced; the link itself stays, so `data/train.npy -> /big/disk/train.npy` keeps
  pointing at the new file. A dangling symlink is refused (as `cp` does), since its target's
  directory may not be where the user thinks.
- Anything else (a directory where a file is expected, a character device such as /dev/null, a
  FIFO, a socket) is refused with a `ValueError`/`IsADirectoryError` naming it: a rename would
  replace the device node itself, and writing through could not be atomic.
Writers that read an input and write an output call `check_not_same_file` first: the same file
under another name (a symlink, a hard link, a relative path) is refused before any work.

Temporary names are `.{target}.bpe336-{kind}-{host}-{pid}-{random}.tmp` (kind `tmp` for files,
and for the private folder `atomic_output` puts its path in; `new` and `old` for directories; host
a hash of the hostname). A write killed with SIGKILL cannot clean up after itself, so every write
first removes the stale temporaries of dead processes of this host in its directory; nothing that
does not match this pattern is ever deleted.

Directory swap (`atomic_directory`):
1. The new contents are written into `.{name}.bpe336-new-...tmp` beside the target, fsynced.
2. Linux: `renameat2(RENAME_EXCHANGE)` swaps the two directories in one step (a true atomic
   swap); the old contents, now under the temporary name, are deleted. A kill at any moment
   leaves the old or the new complete directory at the target, plus at most one stale
   temporary that the next write removes.
3. Elsewhere (or on filesystems without RENAME_EXCHANGE) two renames are used: the old
   directory moves aside to `.{name}.bpe336-old-...tmp`, the new one moves in. A kill between
   the two leaves no directory at the target for a moment; the next write moves the old one back
   before doing anything else, and `missing_directory_hint` lets loaders point the user at it.
A manifest with checksums, the other way to make a directory one unit, would let a reader detect
a mix but not avoid one, and every reader (including Hugging Face's) would have to verify it;
the swap needs nothing from readers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.bpe336-(?P<kind>tmp|new|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-(?P<rand>[0-9a-f]+)\.tmp$")
# Process ids are only meaningful on one machine (and in one PID namespace, which containers
# usually give their own hostname): temporaries from other hosts sharing a directory are left alone.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    """A file type in words, e.g. S_IFCHR -> 'a character device'."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _resolve_target(path: str | os.PathLike, want_dir: bool) -> Path:
    """The path to replace: `path` itself, or the target of a symlink at `path`. Raises when the
    target exists with the wrong type, when a symlink dangles, or when the parent is missing."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        path = Path(os.path.abspath(path))
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        lst = None
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise FileNotFoundError(errno.ENOENT, f"{path}: is a dangling symlink (to {os.readlink(path)}); not writing through it")
        path = real
        lst = os.lstat(path)
    if lst is not None:
        if want_dir and not stat.S_ISDIR(lst.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"{path}: exists and is {_kind(lst.st_mode)}, expected a directory")
        if not want_dir and stat.S_ISDIR(lst.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{path}: is a directory, expected a file")
        if not want_dir and not stat.S_ISREG(lst.st_mode):
            raise ValueError(
                f"{path}: exists and is {_kind(lst.st_mode)}, not a regular file; refusing to replace it (write to a regular file path)"
            )
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{path}: directory {parent} does not exist")
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """Check that `path` can be replaced atomically by a regular file (see the module notes) and
    return the path that will be replaced (a symlink's target). Call it before long work."""
    return _resolve_target(path, want_dir=False)


def check_not_same_file(input_path: str | os.PathLike, output_path: str | os.PathLike) -> None:
    """Raise ValueError when `output_path` names the same file as `input_path`, by any route
    (symlink, hard link, relative path): writing it would destroy the input."""
    try:
        same = os.path.samefile(input_path, output_path)
    except OSError:
        return  # the output does not exist yet (or the input does not; its reader will say so)
    if same:
        raise ValueError(f"the output {output_path} is the input file {input_path}; choose another output path")


def check_not_inside(input_path: str | os.PathLike, directory: str | os.PathLike) -> None:
    """Raise ValueError when `input_path` lies inside `directory` (which is about to be replaced as
    a whole, so the input would be deleted)."""
    inp = Path(os.path.realpath(input_path))
    out = Path(os.path.realpath(directory))
    if inp == out or out in inp.parents:
        raise ValueError(
            f"the input {input_path} is inside the output directory {directory}, which is replaced as a whole; choose another output"
        )


def check_output_directory(path: str | os.PathLike, owned: Collection[str]) -> Path:
    """Check that `path` can be replaced as a whole by a directory holding the entries `owned`:
    it is missing, or a directory holding only such entries (a previous version). Anything else
    in it would be deleted by the swap, so it is refused by name. Returns the path to replace."""
    target = _resolve_target(path, want_dir=True)
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if p.name not in owned)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise FileExistsError(
                errno.EEXIST,
                f"{path}: the directory holds files this writer did not make ({shown}); it is replaced as a whole, "
                "so write to a new or empty directory",
            )
        cwd = Path(os.getcwd()).resolve()
        if target.resolve() == cwd or target.resolve() in cwd.parents:
            raise ValueError(f"{path}: is the current directory (or holds it); write to a subdirectory")
    return target


def missing_directory_hint(path: str | os.PathLike) -> str:
    """For loaders: when `path` is missing because a directory swap was interrupted between its
    two renames (non-Linux fallback), a sentence naming the old copy; else ''."""
    path = Path(os.path.abspath(path))
    if not path.parent.is_dir():
        return ""
    for entry in path.parent.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m and m["kind"] == "old" and m["target"] == path.name:
            return f" (an interrupted save left the previous version at {entry}; the next save restores it)"
    return ""


# ---------------------------------------------------------------------------------------------
# Temporaries
# ---------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.bpe336-{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def clean_stale_temporaries(directory: str | os.PathLike) -> None:
    """Remove the temporaries of dead writers in `directory` (only names of our own pattern).
    A directory that an interrupted fallback swap moved aside is moved back when its target is
    missing. Errors are ignored: cleaning is a courtesy, never a reason to fail a write."""
    directory = Path(directory)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_symlink():
                continue  # we never make symlinks: not ours
            if m["kind"] == "old" and entry.is_dir():
                target = directory / m["target"]
                if not os.path.lexists(target):
                    os.rename(entry.path, target)
                    continue
            if entry.is_dir():
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp_file(target: Path) -> tuple[int, Path]:
    """A new temporary file beside `target` with the permissions a plain open() would give
    (mkstemp's 0600 would otherwise survive the rename)."""
    while True:
        tmp = _temp_name(target, "tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
        except FileExistsError:
            continue
        return fd, tmp


def _create_temp_dir(target: Path) -> Path:
    """A new private temporary directory beside `target` (named like a file temporary)."""
    while True:
        tmp = _temp_name(target, "tmp")
        try:
            os.mkdir(tmp, 0o700)
        except FileExistsError:
            continue
        return tmp


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Yield a file object whose contents replace `path` only if the block completes.

    Args:
        path: destination: missing, a regular file, or a symlink to one (its target is
            replaced); its directory must exist.
        mode: "w" or "wb" (text or binary).
        encoding: text encoding for mode "w" (UTF-8 when omitted).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    target = check_output_file(path)
    kwargs = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": ""}
    if target.parent in _BUILDING:
        # Inside a directory that atomic_directory publishes as a whole (and fsyncs): a plain
        # write is enough, and spares a rename and two fsyncs per file.
        with open(target, mode, **kwargs) as f:
            yield f
        return
    clean_stale_temporaries(target.parent)
    fd, tmp = _create_temp_file(target)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for writers that need a path rather than a file object (Rust
    writing a token array, safetensors' save_file); it replaces `path` (fsynced, with the
    permissions a plain open() gives) only if the block completes.

    The path lies in a private temporary directory (`.{target}.bpe336-tmp-...tmp/{name}`): a
    writer that makes temporaries of its own beside the path it is given (safetensors' save_file
    writes `.tmpXXXXXX` and renames it over the path) keeps them in there, so a killed write
    leaves nothing that the next write does not remove."""
    target = check_output_file(path)
    clean_stale_temporaries(target.parent)
    folder = _create_temp_dir(target)
    tmp = folder / target.name
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask()))
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # a writer that renamed its own file here left mkstemp's 0600
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        _commit(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)


def _commit(tmp: str | os.PathLike, target: Path) -> None:
    """Move a complete, fsynced temporary file onto `target` and make the rename durable."""
    check_output_file(target)  # still replaceable (nothing swapped a device in meanwhile)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _discard(tmp: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h
_BUILDING: set[Path] = set()  # directories atomic_directory is filling in this process


@functools.lru_cache(maxsize=1)
def _renameat2():
    """libc's renameat2, or None (other systems, glibc before 2.28)."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically with Linux renameat2(RENAME_EXCHANGE); False where that is
    unavailable (other systems, filesystems that do not support it)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a} into place: {os.strerror(err)}", str(b))


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            file = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(file).st_mode):
                continue
            with contextlib.suppress(OSError), open(file, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, owned: Collection[str]) -> Iterator[Path]:
    """Yield a new empty directory; when the block completes it replaces `path` as one unit.

    Args:
        path: the directory to write: missing (its parent is created), or a directory holding
            only entries named in `owned` (a previous version; anything else is refused before
            the block runs, since the swap would delete it). A symlink is followed.
        owned: the entry names this writer makes, e.g. {"tokenizer.json", "vocab.json"}.

    A kill at any moment leaves the old or the new complete directory (see the module notes).
    """
    path = Path(path)
    made: list[Path] = []  # parent directories created here, removed again if the write fails
    if not os.path.lexists(path):
        parent = path.absolute().parent
        made = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
    try:
        with _swap_in(path, owned) as new:
            yield new
    except BaseException:
        for p in made:  # innermost first; only while still empty
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def _rename_unless_taken(new: Path, target: Path, owned: Collection[str]) -> bool:
    """Move `new` to the missing `target`; False when another writer published a version there
    meanwhile (it is then replaced as a whole like any previous version: the last writer wins)."""
    try:
        os.rename(new, target)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        check_output_directory(target, owned)
        return False
    return True


@contextlib.contextmanager
def _swap_in(path: Path, owned: Collection[str]) -> Iterator[Path]:
    """The body of `atomic_directory` once `path`'s parent exists."""
    target = check_output_directory(path, owned)
    clean_stale_temporaries(target.parent)
    new = _temp_name(target, "new")
    os.mkdir(new, 0o777 & ~_umask())
    _BUILDING.add(new)
    try:
        yield new
        _BUILDING.discard(new)
        _fsync_tree(new)
        check_output_directory(target, owned)
        if not os.path.lexists(target) and _rename_unless_taken(new, target, owned):
            _fsync_dir(target.parent)
        elif _exchange(new, target):
            _fsync_dir(target.parent)
            shutil.rmtree(new)  # the old contents, now under the temporary name
        else:
            old = _temp_name(target, "old")
            os.rename(target, old)
            try:
                os.rename(new, target)
            except BaseException:
                os.rename(old, target)
                raise
            _fsync_dir(target.parent)
            shutil.rmtree(old)
    except BaseException:
        _BUILDING.discard(new)
        with contextlib.suppress(OSError):
            shutil.rmtree(new)
        raise

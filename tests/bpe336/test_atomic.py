"""Atomic writers: what a target may be, input == output, stale temporaries, and directories that
change as one unit under real `kill -9` at random moments.

cd tests && python -m pytest -q bpe336/test_atomic.py
"""

from __future__ import annotations

import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from testdata import EOT

import bpe336
from bpe336 import Tokenizer, atomic, train_bpe
from bpe336.atomic import atomic_directory, atomic_output, atomic_write, check_output_directory, clean_stale_temporaries
from bpe336.formats import TOKENIZER_FILES


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".bpe336-" in p.name)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------------------------
# Targets that are not regular files
# ---------------------------------------------------------------------------------------------


def test_refuses_character_device_fifo_socket_and_directory(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for target, kind in [("/dev/null", "character device"), (fifo, "FIFO"), (sock_path, "socket")]:
            before = os.lstat(target)
            with pytest.raises(ValueError, match=f"{target}.*{kind}.*refusing"):
                with atomic_write(target, "wb") as f:
                    f.write(b"x")
            with pytest.raises(ValueError, match=kind):
                with atomic_output(target):
                    pass
            after = os.lstat(target)
            assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
        with pytest.raises(IsADirectoryError):
            with atomic_write(tmp_path, "w"):
                pass
        with pytest.raises(FileNotFoundError, match="does not exist"):
            with atomic_write(tmp_path / "no" / "such" / "dir.txt", "w"):
                pass
    finally:
        sock.close()
    assert temporaries(tmp_path) == []


def test_encode_file_refuses_a_device_before_any_work(gpt2, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello world", encoding="utf-8")
    with pytest.raises(ValueError, match="character device"):
        gpt2.encode_file(src, "/dev/null", progress=False)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlink_to_a_file_replaces_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "store" / "data.txt"
    real.parent.mkdir()
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_write(link, "w") as f:
        f.write("new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text(encoding="utf-8") == "new"
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "nowhere" / "x.txt")
    with pytest.raises(FileNotFoundError, match="dangling symlink"):
        with atomic_write(dangling, "w"):
            pass
    assert dangling.is_symlink()


# ---------------------------------------------------------------------------------------------
# Input == output
# ---------------------------------------------------------------------------------------------


def test_encode_file_refuses_its_own_input_by_any_name(gpt2, tmp_path, monkeypatch):
    src = tmp_path / "corpus.npy"  # a name that is also the default output of `bpe336 encode`
    src.write_text("some text to keep", encoding="utf-8")
    link = tmp_path / "link.npy"
    link.symlink_to(src)
    hard = tmp_path / "hard.npy"
    os.link(src, hard)
    monkeypatch.chdir(tmp_path)
    for out in [src, link, hard, Path("corpus.npy"), Path(".") / ".." / tmp_path.name / "corpus.npy"]:
        with pytest.raises(ValueError, match="is the input file"):
            gpt2.encode_file(src, out, progress=False)
    with pytest.raises(ValueError, match="is the input file"):
        gpt2.encode_file(link, src, progress=False)
    assert src.read_text(encoding="utf-8") == "some text to keep"
    assert temporaries(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Stale temporaries
# ---------------------------------------------------------------------------------------------


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    dead, alive, host = dead_pid(), os.getpid(), atomic._HOST
    stale_file = tmp_path / f".out.npy.bpe336-tmp-{host}-{dead}-0a1b2c3d.tmp"
    stale_dir = tmp_path / f".tok.bpe336-new-{host}-{dead}-0a1b2c3e.tmp"
    live_file = tmp_path / f".out.npy.bpe336-tmp-{host}-{alive}-0a1b2c3f.tmp"
    other_host = "000000" if host != "000000" else "111111"
    lookalikes = [
        tmp_path / f".out.npy.bpe336-tmp-{host}-notapid-00.tmp",
        tmp_path / "user.tmp",
        tmp_path / f".x.bpe336-tmp-{host}-{dead}-zz.tmp",
        tmp_path / f".x.bpe336-tmp-{other_host}-{dead}-00.tmp",  # another machine's writer: its pids are not ours
    ]
    stale_file.write_bytes(b"partial")
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "vocab.json").write_text("{}", encoding="utf-8")
    live_file.write_bytes(b"in progress")
    for p in lookalikes:
        p.write_bytes(b"not ours")
    with atomic_write(tmp_path / "other.txt", "w") as f:  # any write cleans its directory
        f.write("x")
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and all(p.exists() for p in lookalikes)
    # A symlink with our naming is never followed or removed.
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep").write_text("keep", encoding="utf-8")
    trap = tmp_path / f".tok.bpe336-new-{host}-{dead}-0a1b2c40.tmp"
    trap.symlink_to(target)
    clean_stale_temporaries(tmp_path)
    assert (target / "keep").exists() and trap.is_symlink()


def test_interrupted_fallback_swap_is_restored(tmp_path):
    """Without RENAME_EXCHANGE a kill between the two renames leaves the old directory aside; the
    next write moves it back first (and Tokenizer.load says where it is meanwhile)."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    out = tmp_path / "tok"
    tok.save(out)
    aside = tmp_path / f".tok.bpe336-old-{atomic._HOST}-{dead_pid()}-0a1b2c3d.tmp"
    out.rename(aside)
    with pytest.raises(FileNotFoundError, match="interrupted save left the previous version"):
        Tokenizer.load(out)
    clean_stale_temporaries(tmp_path)
    assert Tokenizer.load(out).special_tokens == [EOT] and not aside.exists()


# ---------------------------------------------------------------------------------------------
# Directories as one unit
# ---------------------------------------------------------------------------------------------


def test_atomic_directory_replaces_only_what_it_owns(tmp_path):
    out = tmp_path / "export"
    with atomic_directory(out, {"a.txt", "b.txt"}) as d:
        (d / "a.txt").write_text("1", encoding="utf-8")
        (d / "b.txt").write_text("1", encoding="utf-8")
    with atomic_directory(out, {"a.txt", "b.txt"}) as d:
        (d / "a.txt").write_text("2", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]  # the unit is replaced, b.txt with it
    (out / "notes.md").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="notes.md"):
        with atomic_directory(out, {"a.txt"}):
            raise AssertionError("the block must not run")
    assert (out / "notes.md").read_text(encoding="utf-8") == "mine"
    file_target = tmp_path / "file"
    file_target.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError):
        check_output_directory(file_target, {"a.txt"})
    # A failing block leaves the old directory and no temporaries.
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "new", {"a.txt"}) as d:
            (d / "a.txt").write_text("half", encoding="utf-8")
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists() and temporaries(tmp_path) == []


def test_an_export_folder_holds_a_tokenizer_as_part_of_its_unit(tmp_path):
    """lm336's exports: a model file and the tokenizer's files, published together."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    out = tmp_path / "export"
    owned = {"config.json", *TOKENIZER_FILES}
    with atomic_directory(out, owned) as d:
        (d / "config.json").write_text("{}", encoding="utf-8")
        names = tok.write_files(d)
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", *names])
    assert Tokenizer.load(out).special_token_ids == {EOT: 256}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_directory_swap_both_ways(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out = tmp_path / "d"
    for n in range(3):
        with atomic_directory(out, {"v"}) as d:
            (d / "v").write_text(str(n), encoding="utf-8")
        assert (out / "v").read_text(encoding="utf-8") == str(n)
    assert temporaries(tmp_path) == []


def test_symlinked_directory_is_followed(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<a>"])
    tok.save(real)
    link.symlink_to(real)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<b>"]).save(link)
    assert link.is_symlink() and Tokenizer.load(real).special_tokens == ["<b>"]


def tokenizers_a_and_b() -> tuple[Tokenizer, Tokenizer]:
    base = {i: bytes([i]) for i in range(256)}
    a = Tokenizer({**base, 300: b"ab"}, [(b"a", b"b")], ["<|a|>", "ĠĠ"])
    b = Tokenizer({**base, 300: b"ba", 301: b"bab"}, [(b"b", b"a"), (b"ba", b"b")], [EOT])
    return a, b


def same(x: Tokenizer, y: Tokenizer) -> bool:
    return x.vocab == y.vocab and x.merges == y.merges and x.special_token_ids == y.special_token_ids


def kill_during_saves(tmp_path: Path, trials: int, seed: int) -> None:
    """A child saves B and A in turn into one directory; it is SIGKILLed at a random moment, then
    the directory must load as exactly A or exactly B (never a mix, never a failure once one save
    completed), and the next save removes what the killed one left.

    The moment is timed from the child itself (it reports each finished save through a pipe): after
    one or two finished saves, a random delay up to 1.5 times its first save's duration. A forked
    copy of a large test process saves much more slowly than the parent would (copy-on-write page
    faults), so a delay measured in the parent would land every kill in the child's first save."""
    a, b = tokenizers_a_and_b()
    out = tmp_path / "tok"
    a.save(out)
    rng = random.Random(seed)
    seen = set()
    for _trial in range(trials):
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: save forever, one byte per finished save
            try:
                os.close(done_r)
                os.write(done_w, b"r")
                while True:
                    for tok in (b, a):
                        tok.save(out)
                        os.write(done_w, b"s")
            finally:
                os._exit(0)
        os.close(done_w)
        os.read(done_r, 1)  # the child runs
        started = time.perf_counter()
        os.read(done_r, 1)  # its first save (B) is done
        one_save = time.perf_counter() - started
        if rng.random() < 0.5:
            os.read(done_r, 1)  # and its second (A)
        time.sleep(rng.uniform(0.0, 1.5 * one_save))  # inside the next save, or just past it
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(done_r)
        back = Tokenizer.load(out)
        assert same(back, a) or same(back, b)
        seen.add("a" if same(back, a) else "b")
        assert sorted(p.name for p in out.iterdir()) == sorted(TOKENIZER_FILES)
    a.save(out)  # cleans what the killed children left
    assert temporaries(tmp_path) == []
    if trials >= 50:
        assert seen == {"a", "b"}  # the kills landed at different moments


def test_kill_9_during_save_leaves_old_or_new_never_a_mix(tmp_path):
    kill_during_saves(tmp_path, trials=12, seed=1234)


def test_kill_9_during_save_many_times_on_tmpfs(fast_dir):
    kill_during_saves(fast_dir, trials=60, seed=2345)


@pytest.mark.slow
def test_kill_9_during_save_very_many_times(tmp_path, fast_dir):
    kill_during_saves(tmp_path, trials=300, seed=4321)
    kill_during_saves(fast_dir, trials=3000, seed=5432)


def test_kill_9_during_cli_train_keeps_a_complete_directory(tmp_path):
    """`bpe336 train --out DIR` killed at random moments: DIR loads as the previous tokenizer or
    the new one, and a finished run leaves no temporaries."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("the quick brown fox jumps over the lazy dog " * 40 + EOT) * 50, encoding="utf-8")
    out = tmp_path / "tok"
    old = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<old>"])
    old.save(out)
    cmd = [
        sys.executable,
        "-m",
        "bpe336.cli",
        "train",
        str(corpus),
        "--vocab-size",
        "400",
        "--special-token",
        EOT,
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(bpe336.__file__).resolve().parents[1])}  # the package under test, installed or not
    rng = random.Random(99)
    for _trial in range(6):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        back = Tokenizer.load(out)
        assert same(back, old) or back.special_tokens == [EOT]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    new = Tokenizer.load(out)
    vocab, merges = train_bpe(corpus, 400, [EOT])
    assert new.vocab == vocab and new.merges == merges and new.special_token_ids == {EOT: 0}
    assert temporaries(tmp_path) == []
    ids = new.encode("the quick brown fox" + EOT)
    assert ids[-1] == 0 and new.decode(ids) == "the quick brown fox" + EOT


def test_encode_file_output_is_atomic_and_leaves_no_temporaries(gpt2, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello world " * 100, encoding="utf-8")
    out = tmp_path / "a.npy"
    gpt2.encode_file(src, out, progress=False)
    assert np.load(out).tolist() == gpt2.encode(src.read_text(encoding="utf-8"))
    assert temporaries(tmp_path) == []


def test_atomic_output_keeps_a_writers_own_temporaries_where_the_next_write_removes_them(tmp_path):
    # safetensors' save_file writes `.tmpXXXXXX` beside the path it is given and renames it over
    # that path (with mkstemp's 0600). Killed, such a writer must leave nothing the next write
    # does not remove, and a completed write gets the permissions a plain open() gives.
    code = f"""
import os
from pathlib import Path
from bpe336.atomic import atomic_output
with atomic_output({str(tmp_path / "w.safetensors")!r}) as tmp:
    own = Path(tmp).parent / ".tmpQ1w2E3"
    own.write_bytes(b"half a model")
    os._exit(9)  # killed: no cleanup runs
"""
    subprocess.run([sys.executable, "-c", code], check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert sorted(p.name for p in tmp_path.iterdir())  # it left something behind
    with atomic_output(tmp_path / "w.safetensors") as tmp:
        own = Path(tmp).parent / ".tmpR4t5Y6"
        fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"a model")
        os.close(fd)
        os.replace(own, tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "w.safetensors").st_mode) == 0o666 & ~mask
    assert (tmp_path / "w.safetensors").read_bytes() == b"a model"


def test_a_directory_another_writer_publishes_first_is_replaced_as_a_whole(tmp_path, monkeypatch):
    # Two writers of a new directory: the other one's rename lands between this one's check that
    # the target is missing and its own rename. The last writer wins, as over any previous version.
    target = tmp_path / "tok"
    real_rename = os.rename

    def other_writer_first(src, dst):
        if Path(dst) == target and not target.exists():
            target.mkdir()
            (target / "vocab.json").write_text("other", encoding="utf-8")
            (target / "merges.txt").write_text("other", encoding="utf-8")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", other_writer_first)
    with atomic_directory(target, TOKENIZER_FILES) as tmp:
        (tmp / "vocab.json").write_text("mine", encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    assert [(p.name, p.read_text(encoding="utf-8")) for p in target.iterdir()] == [("vocab.json", "mine")]

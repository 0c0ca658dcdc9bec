"""Ctrl-C stops every long call promptly with KeyboardInterrupt and leaves nothing behind, even
while the call waits on a FIFO that has no writer (open() of a FIFO blocks until a writer
comes); pipes and process substitution still work as inputs; the core's errors map to the
right Python exceptions.

Each case runs in a child process that gets SIGINT, the way a terminal delivers Ctrl-C.

    cd tests && python -m pytest -q bpe336/test_interrupt.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bpe336 import Tokenizer, _core, train_bpe, train_bpe_from_iterator

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")

BYTES = {i: bytes([i]) for i in range(256)}
CORPUS = "low lower lowest newer wider new " * 200

# After SIGINT the child must be gone within this many seconds (the core checks every 0.1 s).
PROMPT = 5.0


def interrupt_child(code: str, tmp_path: Path, delay: float = 1.0) -> tuple[subprocess.CompletedProcess, float]:
    """Starts `code` in a child, waits until it prints "ready" and then `delay` seconds more (so
    it is blocked in the call), sends SIGINT and waits. Returns the finished process and the
    seconds from SIGINT to exit. The child prints "KeyboardInterrupt" when that is what it got."""
    script = tmp_path / "child.py"
    script.write_text(
        "import sys\n" + textwrap.dedent(code) + "\ntry:\n    print('ready', flush=True)\n    main()\nexcept KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt', flush=True)\n    sys.exit(0)\nprint('finished', flush=True)\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(delay)
    assert proc.poll() is None, f"the child ended before SIGINT: {proc.stdout.read()} {proc.stderr.read()}"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child ignored SIGINT for 30 s: {out} {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - sent


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# ---------------------------------------------------------------------------------------------
# A FIFO with no writer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "train_bpe(FIFO, 300)",
        "train_bpe([CORPUS_FILE, FIFO], 300, num_threads=1)",
        "train_bpe(FIFO, 300, progress=True)",
        "tok.encode_file(FIFO, OUT, progress=False)",
        "tok.encode_file(FIFO, OUT, progress=True)",
        "tok.encode_file(FIFO, OUT, num_threads=_core.default_threads() + 1, progress=False)",  # a private pool
    ],
)
def test_fifo_without_writer_stops_on_ctrl_c(tmp_path, call):
    path = fifo(tmp_path)
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "out" / "tokens.npy"
    out.parent.mkdir()
    proc, seconds = interrupt_child(
        f"""
        from bpe336 import Tokenizer, _core, train_bpe
        FIFO, OUT, CORPUS_FILE = {str(path)!r}, {str(out)!r}, {str(tmp_path / "corpus.txt")!r}
        tok = Tokenizer({{i: bytes([i]) for i in range(256)}}, [])
        def main():
            {call}
        """,
        tmp_path,
    )
    assert proc.stdout.split()[-1] == "KeyboardInterrupt", proc.stdout + proc.stderr[-2000:]
    assert proc.returncode == 0
    assert seconds < PROMPT
    assert leftovers(out.parent, set()) == [], "temporary output left behind"
    assert leftovers(tmp_path, {"fifo", "corpus.txt", "out", "child.py"}) == []


def test_iterator_blocked_on_a_fifo_stops_on_ctrl_c(tmp_path):
    path = fifo(tmp_path)
    proc, seconds = interrupt_child(
        f"""
        from bpe336 import train_bpe_from_iterator
        def lines():
            yield "some text first "
            with open({str(path)!r}, encoding="utf-8") as f:  # blocks: no writer
                yield from f
        def main():
            train_bpe_from_iterator(lines(), 300)
        """,
        tmp_path,
    )
    assert proc.stdout.split()[-1] == "KeyboardInterrupt", proc.stdout + proc.stderr[-2000:]
    assert seconds < PROMPT


def test_long_training_stops_on_ctrl_c(tmp_path):
    """Ctrl-C while the core is busy, not blocked: SIGINT lands in the merge loop (a million
    merges of random words take far longer than the delay)."""
    proc, seconds = interrupt_child(
        """
        import random
        from bpe336 import train_bpe_from_iterator
        rng = random.Random(0)
        words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(5, 30))) + " " for _ in range(200_000)]
        def main():
            train_bpe_from_iterator(words, 10**6)
        """,
        tmp_path,
        delay=3.0,
    )
    assert proc.stdout.split()[-1] == "KeyboardInterrupt", proc.stdout + proc.stderr[-2000:]
    assert seconds < PROMPT


# A custom regex that backtracks on every match (about a millisecond each) without reaching
# fancy-regex's limit; a custom regex has no safe cuts, so each call below gets the text whole.
SLOW_PATTERN = r"(?:a(?!c)|aa)+b| "


@pytest.mark.parametrize(
    "call",
    [
        "tok.encode(TEXT)",
        "tok.encode_ordinary(TEXT)",
        "list(tok.encode_iterable([TEXT]))",
        "tok.encode_batch([TEXT])",
        "tok.encode_to_numpy(TEXT)",
        "tok.encode_file('text.txt', 'ids.npy')",
        "train_bpe('text.txt', 300, pattern=SLOW)",
        "train_bpe_from_iterator([TEXT], 300, pattern=SLOW)",
        "count_pretokens('text.txt', pattern=SLOW)",
    ],
)
def test_a_slow_custom_regex_stops_on_ctrl_c(tmp_path, call):
    """Ctrl-C reaches a custom regex between its matches, not only between chunks."""
    proc, seconds = interrupt_child(
        f"""
        from bpe336 import Tokenizer, count_pretokens, train_bpe, train_bpe_from_iterator
        SLOW = {SLOW_PATTERN!r}
        TEXT = ("a" * 18 + " ") * 200_000
        open("text.txt", "w").write(TEXT)
        tok = Tokenizer({{i: bytes([i]) for i in range(256)}}, [], pattern=SLOW)
        def main():
            {call}
        """,
        tmp_path,
        delay=1.5,
    )
    assert proc.stdout.split()[-1] == "KeyboardInterrupt", proc.stdout + proc.stderr[-2000:]
    assert seconds < PROMPT
    assert not (tmp_path / "ids.npy").exists()


def test_cli_stops_cleanly_on_ctrl_c(tmp_path):
    path = fifo(tmp_path)
    bpe336 = shutil.which("bpe336", path=str(Path(sys.executable).parent))
    argv = [bpe336] if bpe336 else [sys.executable, "-m", "bpe336.cli"]
    for args in (["train", str(path), "--vocab-size", "300", "--out", str(tmp_path / "tok")],):
        proc = subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        time.sleep(2.0)
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < PROMPT
        assert proc.returncode == 130, (out, err)
        assert "interrupted" in err and "Traceback" not in err, err
        assert not (tmp_path / "tok").exists()


def test_cancelled_file_progress_is_a_keyboard_interrupt(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(CORPUS, encoding="utf-8")
    meter = _core.FileProgress()
    meter.cancel()
    enc = _core.Encoder(list(BYTES.items()), [])
    with pytest.raises(KeyboardInterrupt):
        enc.encode_file(str(src), str(tmp_path / "out.bin"), 0, 2, None, meter)
    assert not (tmp_path / "out.bin").exists()


# ---------------------------------------------------------------------------------------------
# Pipes and process substitution keep working
# ---------------------------------------------------------------------------------------------


def test_pipes_and_process_substitution_are_inputs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    expect_vocab, expect_merges = train_bpe(corpus, 300)
    tok = Tokenizer(expect_vocab, expect_merges)
    expect_ids = tok.encode(CORPUS)
    code = textwrap.dedent(
        f"""
        import sys, numpy as np
        from bpe336 import Tokenizer, train_bpe
        vocab, merges = train_bpe(sys.argv[1], 300)
        tok = Tokenizer(vocab, merges)
        tok.encode_file(sys.argv[2], {str(tmp_path / "ids.npy")!r}, progress=False)
        print(len(merges), merges == {expect_merges!r}, np.load({str(tmp_path / "ids.npy")!r}).tolist() == {expect_ids!r})
        """
    )
    script = tmp_path / "child.py"
    script.write_text(code, encoding="utf-8")
    # Process substitution (/dev/fd/N) for both inputs.
    proc = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" "{script}" <(cat "{corpus}") <(cat "{corpus}")'], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(len(expect_merges)), "True", "True"]
    # A pipe on stdin for training, and a FIFO whose writer comes late for encoding.
    path = fifo(tmp_path)
    writer = subprocess.Popen(["bash", "-c", f'sleep 1; cat "{corpus}" > "{path}"'])
    proc = subprocess.run([sys.executable, str(script), "/dev/stdin", str(path)], input=CORPUS, capture_output=True, text=True, timeout=120)
    writer.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(len(expect_merges)), "True", "True"]


# ---------------------------------------------------------------------------------------------
# Error mapping
# ---------------------------------------------------------------------------------------------


class CallbackError(Exception):
    pass


@pytest.mark.parametrize("exc", [CallbackError("mine"), ValueError("from the callback"), KeyboardInterrupt(), MemoryError("x")])
def test_callback_exceptions_are_raised_as_themselves(tmp_path, exc):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS, encoding="utf-8")

    def progress(phase, done, total):
        if phase == "merge":
            raise exc

    with pytest.raises(type(exc)) as info:
        train_bpe(corpus, 400, progress=progress)
    assert info.value is exc

    def items():
        yield "some text "
        raise exc

    with pytest.raises(type(exc)) as info:
        train_bpe_from_iterator(items(), 400)
    assert info.value is exc


def test_core_errors_map_to_python_exceptions(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    # Arguments: ValueError. Unknown ids: KeyError. Files: OSError subclasses.
    with pytest.raises(ValueError):
        _core.train_bpe_files([str(corpus)], 10, [])
    with pytest.raises(KeyError):
        _core.Encoder(list(BYTES.items()), []).decode_bytes([999])
    with pytest.raises(FileNotFoundError):
        _core.train_bpe_files([str(tmp_path / "missing")], 300, [])
    with pytest.raises(IsADirectoryError):
        _core.train_bpe_files([str(tmp_path)], 300, [])
    # Internal errors (a panic in the core): RuntimeError, never pyo3's PanicException.
    with pytest.raises(RuntimeError, match="internal error: a task panicked: deliberate panic"):
        _core._panic_for_test()


def test_thread_start_failure_is_a_runtime_error():
    """Threads that cannot start (here: no address space left for their stacks) are a
    RuntimeError naming the cause."""
    code = textwrap.dedent(
        """
        import resource
        from bpe336 import Tokenizer
        tok = Tokenizer({i: bytes([i]) for i in range(256)}, [])
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (48 << 20), resource.RLIM_INFINITY))
        try:
            tok.encode_batch(["ab"], num_threads=64)
        except RuntimeError as e:
            print("RuntimeError", e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("RuntimeError cannot start 64 worker threads"), proc.stdout

"""Every code block of README.md runs: the Python blocks as written and the shell commands with
small overrides, in order, in one scratch directory holding tiny generated data. A command that
needs a network, a GPU or the whole CI is skipped with its reason; a command this file does not
know fails the test, so a new README example cannot go untested. A Python block that cannot run
here says so on its first line and names the test that runs its calls (PYTHON_SKIPPED).

    cd tests && python -m pytest -q lm336/test_readme.py
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from testdata import ROOT

import lm336

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")

# Commands that cannot run here, with the reason (matched on the start of the command).
SKIPPED = {
    "./scripts/test.sh": "the CI suite itself: builds the wheel and runs every test",
    "./scripts/quickstart.sh": "installs the wheel and its dependencies from the package registries (its --help runs here)",
    "pip install": "needs the package registries",
    "torchrun": "needs 8 processes; tests/lm336/test_ddp.py launches torchrun with 2 CPU processes (slow)",
    "lm336 data fetch": "downloads gigabytes",
    "lm_eval": "lm-evaluation-harness downloads its benchmark datasets",
    "cd tests && python -m pytest -m slow": "the slow test suite",
}
# Python blocks that cannot run here, by their first line (which says why), with the test that
# runs the same calls instead.
PYTHON_SKIPPED = {
    "# starts Ray: tests/bpe336/test_cluster.py": "starts a Ray cluster (tests/bpe336/test_cluster.py runs these calls on a local Ray)",
}
# Small shapes for `lm336 train`/`sweep`: model.vocab_size comes from the tokenizer trained above.
TINY_SET = [
    "model.context_length=16", "model.d_model=16", "model.num_layers=1", "model.num_heads=2", "model.d_ff=32",
    "run.batch_size=4", "run.eval_batches=1", "run.eval_interval=2", "run.log_interval=2", "run.checkpoint_interval=2",
    "run.device=cpu", "optimizer.warmup_iters=1",
]  # fmt: skip


@dataclass
class Block:
    lang: str
    code: str
    line: int  # where it starts in the README


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(m.group(1), "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def test_readme_has_no_unfenced_code():
    """Indented code blocks would escape this test: every example must be fenced."""
    inside, prev_blank = False, True
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line) or line.startswith("```"):
            inside = not inside
        elif not inside and prev_blank and line.startswith("    ") and line.strip():
            pytest.fail(f"README.md:{n}: an indented code block; fence it (```sh or ```python) so that it is tested")
        prev_blank = not line.strip()
    langs = {b.lang for b in readme_blocks(README.read_text(encoding="utf-8"))}
    assert langs <= {"python", "sh"}, langs


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A directory with the files the README's examples name, made small."""
    from lm336.corpus import write_stories

    work = tmp_path_factory.mktemp("readme")
    write_stories(work / "corpus.txt", size_mb=0.2, seed=0)
    write_stories(work / "train.txt", size_mb=0.1, seed=1)
    write_stories(work / "webtext.txt", size_mb=0.05, seed=2)
    (work / "configs").symlink_to(ROOT / "configs")
    return work


def _env(work: Path) -> dict:
    package_root = str(Path(lm336.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", ""), "BPE336_VENV": str(work / "no-venv")}


def _vocab(work: Path) -> int:
    from bpe336 import Tokenizer

    return Tokenizer.load(work / "tok").vocab_size


def _runnable(argv: list[str], work: Path):
    """A callable running the command as this test runs it (in this process, so torch is imported
    once), or the reason it is skipped."""
    line = " ".join(argv)
    program, args = argv[0], argv[1:]
    if program == "./scripts/quickstart.sh" and args == ["--help"]:
        return lambda: _subprocess([str(ROOT / "scripts" / "quickstart.sh"), "--help"], work)
    for prefix, reason in SKIPPED.items():
        if line.startswith(prefix):
            return reason
    if program == "source" and args[0].endswith("bin/activate"):
        return "changes the calling shell (tests/lm336/test_pipeline.py runs the printed commands without it)"
    if program == "bpe336":
        from bpe336.cli import main as bpe336_main

        return lambda: bpe336_main(args)
    if program != "lm336":
        pytest.fail(f"README command not covered by this test: {line}")
    sub = args[0]
    if sub in ("train", "sweep"):
        # Steps scaled down 100x (at least 2), tiny shapes, the tokenizer's vocabulary.
        args = [re.sub(r"^run\.max_steps=(\d+)$", lambda m: f"run.max_steps={max(2, int(m.group(1)) // 100)}", a) for a in args]
        steps = [] if any(a.startswith("run.max_steps=") for a in args) else ["run.max_steps=4"]
        args = [*args, "--set", *TINY_SET, f"model.vocab_size={_vocab(work)}", *steps]
        if sub == "sweep":
            args = [*args, "run.max_steps=2"]
    elif sub == "generate":
        args = [*args, "--max-new-tokens", "8", "--device", "cpu", "--seed", "0"]
    elif sub == "pipeline" and args[1:] == ["--help"]:
        return lambda: _subprocess([sys.executable, "-m", "lm336", *args], work)
    elif sub == "eval":
        args = [*args, "--device", "cpu"]
    elif sub not in ("plot", "accounting", "export", "import"):
        pytest.fail(f"README command not covered by this test: {line}")
    from lm336.cli import main as lm336_main

    return lambda: lm336_main(args)


def _subprocess(argv: list[str], work: Path) -> int:
    proc = subprocess.run(argv, cwd=work, env=_env(work), capture_output=True, text=True, timeout=300)
    assert "usage:" in proc.stdout, proc.stderr
    return proc.returncode


def test_every_readme_block_runs(scratch, monkeypatch, capsys, single_thread):
    monkeypatch.chdir(scratch)
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    ran, skipped = [], []
    for block in blocks:
        where = f"README.md:{block.line}"
        if block.lang == "python":
            first = block.code.lstrip().splitlines()[0]
            reason = next((r for prefix, r in PYTHON_SKIPPED.items() if first.startswith(prefix)), None)
            if reason is not None:
                skipped.append(reason)
                continue
            exec(compile(block.code, where, "exec"), {"__name__": "__readme__"})
            ran.append(where)
            continue
        for argv in shell_commands(block.code):
            run = _runnable(argv, scratch)
            if isinstance(run, str):
                skipped.append(run)
                continue
            code = run()
            out, err = capsys.readouterr()
            assert code == 0, f"{where}: {' '.join(argv)} exited {code}\n{out[-2000:]}\n{err[-3000:]}"
            ran.append(" ".join(argv))
    assert not (scratch / "no-venv").exists()  # `quickstart.sh --help` installed nothing
    assert set(skipped) <= {*SKIPPED.values(), *PYTHON_SKIPPED.values(), _runnable(["source", "x/bin/activate"], scratch)}
    # What the README promises, checked on what the commands left behind.
    assert (scratch / "runs" / "tiny" / "ckpt.pt").is_file() and (scratch / "curves.png").is_file()
    assert (scratch / "sweeps" / "lr" / "summary.md").is_file() and (scratch / "sweeps" / "ablations" / "summary.md").is_file()
    assert lm336.read_checkpoint(scratch / "runs" / "tiny" / "ckpt.pt")["iteration"] == 8  # resumed: 800 / 100
    assert (scratch / "exports" / "tiny" / "model.safetensors").is_file() and (scratch / "runs" / "imported" / "ckpt.pt").is_file()
    for sub in ("train", "generate", "eval", "export", "import", "plot", "sweep", "accounting"):
        assert any(r.startswith(f"lm336 {sub}") for r in ran), sub

"""The `lm336` command. Each subcommand lives in the module named for it, as `main(argv)` (or the
function named after a colon), decorated with `lm336.common.command` so that every error prints
`lm336 CMD: error: ...` and exits non-zero.

lm336 train --config configs/tinystories-17m.toml --set optimizer.lr=1e-3
lm336 generate --checkpoint runs/x/ckpt.pt --prompt "Once upon a time"
lm336 accounting --preset gpt2-xl
lm336 eval --checkpoint runs/x --data valid.txt
lm336 export runs/x --format hf --out exports/x
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("lm336.training", "train a Transformer LM on token arrays"),
    "generate": ("lm336.sampling", "sample text from a checkpoint"),
    "eval": ("lm336.evaluation", "loss, perplexity and bits per byte on held-out text or tokens"),
    "export": ("lm336.hf:export_main", "write a run as a Hugging Face Llama folder (--format hf)"),
    "import": ("lm336.hf:import_main", "turn a Hugging Face Llama folder into a run"),
    "plot": ("lm336.plot", "draw learning curves of one or more runs"),
    "sweep": ("lm336.sweep", "run a learning-rate / batch-size grid or the ablations"),
    "data": ("lm336.datasets", "fetch TinyStories or OpenWebText"),
    "accounting": ("lm336.accounting", "parameters, memory and FLOPs of a model config"),
    "pipeline": ("lm336.pipeline", "raw text -> tokenizer -> tokens -> model -> sample, end to end"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: lm336 COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nlm336: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    module_name, _, function = COMMANDS[argv[0]][0].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:  # e.g. an installation without its compiled extension
        print(f"lm336 {argv[0]}: error: cannot import {module_name} ({e}); reinstall the package", file=sys.stderr)
        return 1
    return int(getattr(module, function or "main")(argv[1:]) or 0)  # errors and a closed pipe: lm336.common.command


if __name__ == "__main__":
    sys.exit(main())

"""The `lm336` command. Each subcommand lives in the module named for it, as `main(argv)`.

lm336 train --config configs/tinystories-17m.toml --set optimizer.lr=1e-3
lm336 generate --checkpoint runs/x/ckpt.pt --prompt "Once upon a time"
lm336 accounting --preset gpt2-xl
lm336 eval --checkpoint runs/x --data valid.txt
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "train": ("lm336.training", "train a Transformer LM on token arrays"),
    "generate": ("lm336.sampling", "sample text from a checkpoint"),
    "eval": ("lm336.evaluation", "loss, perplexity and bits per byte on held-out text or tokens"),
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
            print(f"\nlm336: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return int(module.main(argv[1:]) or 0)
    except BrokenPipeError:  # `lm336 accounting ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small, fast artefacts for the export/import and evaluation tests: a BPE tokenizer trained on an
inline corpus, that corpus as train/valid text and token arrays, and a few-second training run.
(A plain module the tests import, like lm_reference.py.)"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from bpe336 import Tokenizer, train_bpe_from_iterator

EOT = "<|endoftext|>"

_WORDS = (
    "once upon a time there was a little cat who liked the sun . she ran to the river and saw a big "
    "fish , then said hello ! the dog was happy because it's warm today ; we'll play again tomorrow . "
    "café naïve über 日本語 emoji 🙂 façade"
).split()


def corpus(n_docs: int, seed: int) -> str:
    """Documents of random words separated by <|endoftext|>, with newlines and runs of spaces."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))) for _ in range(rng.randint(1, 4))]
        docs.append(("\n" if rng.random() < 0.5 else "  \n").join(lines))
    return EOT.join(docs)


def make_tokenizer(vocab_size: int = 320) -> Tokenizer:
    vocab, merges = train_bpe_from_iterator([corpus(300, 0)], vocab_size, special_tokens=[EOT])
    return Tokenizer(vocab, merges, special_tokens=[EOT])


def train_tiny_run(root: Path, *overrides: str) -> Path:
    """A trained run folder (root/run) with its tokenizer in root/run/tokenizer; the text and token
    arrays in root. Returns the run folder."""
    import lm336
    from lm336.config import TrainConfig, apply_overrides

    root.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer()
    run = root / "run"
    (run / "tokenizer").mkdir(parents=True)
    tok.save(run / "tokenizer")
    for name, seed, n in (("train", 1, 400), ("valid", 2, 40)):
        text = corpus(n, seed)
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
        np.save(root / f"{name}.npy", tok.encode_to_numpy(text))
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"model.vocab_size={tok.vocab_size}", "model.context_length=48", "model.d_model=32", "model.num_layers=2",
            "model.num_heads=4", "model.d_ff=64", f"data.train_path={root / 'train.npy'}", f"data.val_path={root / 'valid.npy'}",
            f"data.tokenizer_path={run / 'tokenizer'}", f"run.out_dir={run}", "run.max_steps=40", "run.batch_size=8",
            "run.eval_interval=20", "run.eval_batches=2", "run.log_interval=10", "run.checkpoint_interval=20",
            "run.progress=false", "run.device=cpu", "optimizer.lr=1e-2", "optimizer.min_lr=1e-3", "optimizer.warmup_iters=4",
            *overrides,
        ],
    )  # fmt: skip
    lm336.train(cfg)
    return run

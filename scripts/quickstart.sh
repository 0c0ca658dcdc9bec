#!/usr/bin/env bash
# The main command on a fresh machine: set up the environment, build and install the wheel, then run
# the whole pipeline (corpus -> BPE tokenizer -> token arrays -> a small LM trained on the CPU for a
# few minutes -> a sample). No network is needed beyond the package registries. Paths are relative
# to the checkout; the run goes to runs/quickstart unless --out says otherwise.
#
#   scripts/quickstart.sh                                  # generated children's stories, ~3 minutes
#   scripts/quickstart.sh ../shared/data/kjv.txt --out runs/kjv --minutes 5
#   scripts/quickstart.sh --help                           # every option of `lm336 pipeline`
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# Builds the wheel with maturin (the Rust extension plus both Python packages) and installs it,
# with matplotlib for the learning-curve PNGs.
# A stale in-place extension from `maturin develop` is not part of the wheel and is left alone.
"$PY" -m pip install -q ".[plot]"

# The checkout root holds no `lm336` folder (it is under python/), so the installed package runs.
exec "$PY" -m lm336 pipeline "$@"

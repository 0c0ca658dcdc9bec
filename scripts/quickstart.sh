#!/usr/bin/env bash
# The main command on a fresh machine: set up the environment, build and install the wheel, then run
# the whole pipeline (corpus -> BPE tokenizer -> token arrays -> a small LM trained on the CPU for a
# few minutes -> a sample). No network is needed beyond the package registries. Paths you give it
# (a text file, --out) are relative to the directory you run it from; the run goes to
# ./runs/quickstart unless --out says otherwise.
#
#   scripts/quickstart.sh                                  # generated children's stories, ~3 minutes
#   scripts/quickstart.sh ../shared/data/kjv.txt --out runs/kjv --minutes 5
#   scripts/quickstart.sh --help                           # every option of `lm336 pipeline`; installs nothing
#
# Afterwards `lm336` and `bpe336` are in the environment's bin/ folder (~/.cache/bpe336-venv/bin, or
# $BPE336_VENV/bin): `source ~/.cache/bpe336-venv/bin/activate` puts them on your PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# --help is answered at once: describing the options needs only the standard library.
for arg in "$@"; do
    if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
        PYTHONPATH="$ROOT/python" exec "$(command -v python3 || command -v python)" -m lm336 pipeline --help
    fi
done

step() { printf '[setup %s] %s\n' "$1" "$2"; }

step 1/4 "Python environment ${BPE336_VENV:-$HOME/.cache/bpe336-venv} (created once, reused by every run)"
source "$ROOT/scripts/env.sh"

step 2/4 "build tool: maturin"
"$PY" -m pip install -q "maturin>=1.7,<2"

step 3/4 "building bpe336 (Rust, release) and lm336 into one wheel; the first build compiles for a minute or two"
rm -rf "$ROOT/target/wheels-quickstart"
(cd "$ROOT" && "$PY" -m maturin build --release --out target/wheels-quickstart)
wheel=$(ls "$ROOT"/target/wheels-quickstart/bpe336-*.whl)

if "$PY" -c "import torch, numpy, tqdm, matplotlib" 2>/dev/null; then
    step 4/4 "installing the wheel (dependencies already present)"
    "$PY" -m pip install -q --force-reinstall --no-deps "$wheel"
    "$PY" -m pip install -q "$wheel[plot]"
else
    step 4/4 "installing the wheel and its dependencies: numpy, PyTorch (a large download the first time), tqdm, matplotlib"
    "$PY" -m pip install --progress-bar on --force-reinstall --no-deps "$wheel"
    "$PY" -m pip install --progress-bar on "$wheel[plot]"
fi

# The console script, not `python -m`: it never imports a source tree from the current directory.
status=0
"$VENV/bin/lm336" pipeline "$@" || status=$?

cat <<EOF

lm336 and bpe336 are installed in $VENV/bin. To use them in this shell:
    source $VENV/bin/activate
or call them by their full path, e.g. $VENV/bin/lm336 --help
EOF
exit "$status"

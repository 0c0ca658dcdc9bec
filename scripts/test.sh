#!/usr/bin/env bash
# Sets up everything on a fresh machine and runs the whole test suite:
# Rust format, lint and unit tests, a release build of the wheel, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

"$PY" -m pip install -q "maturin>=1.7,<2" "pytest>=8" "hypothesis>=6" "tiktoken>=0.7" "regex>=2023" "psutil>=5" "tokenizers>=0.19" "matplotlib>=3.7"

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --release

# A stale in-place extension would shadow the installed wheel.
rm -f python/bpe336/*.so
"$PY" -m maturin build --release --out target/wheels-ci
"$PY" -m pip install -q --force-reinstall --no-deps target/wheels-ci/bpe336-*.whl
"$PY" -m pip install -q target/wheels-ci/bpe336-*.whl

# Run from outside the source tree so the installed wheel, not python/, is imported.
cd tests
"$PY" -m pytest -q -m "not slow and not gpu" -p no:cacheprovider "$@" .

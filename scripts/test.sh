#!/usr/bin/env bash
# Sets up everything on a fresh machine and runs the whole test suite:
# Rust format and lint (with and without the Python bindings), Rust unit tests, a release build of
# the wheel, the wheel installed with its `test` extra, Python lint and format checks, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

"$PY" -m pip install -q "maturin>=1.7,<2"

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features python -- -D warnings
cargo test --release

# A stale in-place extension would shadow the installed wheel.
rm -f python/bpe336/*.so
rm -rf target/wheels-ci
"$PY" -m maturin build --release --out target/wheels-ci
wheel=$(ls target/wheels-ci/bpe336-*.whl)
"$PY" -m pip install -q --force-reinstall --no-deps "$wheel"
# The test dependencies come from the wheel's own `test` extra (pyproject.toml).
"$PY" -m pip install -q "$wheel[test]"

"$PY" -m ruff check python tests benches
"$PY" -m ruff format --check python tests benches

# Run from outside the source tree so the installed wheel, not python/, is imported.
cd tests
"$PY" -m pytest -q -m "not slow and not gpu" -p no:cacheprovider "$@" .

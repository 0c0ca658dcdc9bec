# Sourced by the scripts: one cached virtual environment, reused across runs (PyTorch is large).
# Override its location with BPE336_VENV.
VENV="${BPE336_VENV:-$HOME/.cache/bpe336-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip

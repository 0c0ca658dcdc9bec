# Sourced by the scripts: one cached virtual environment, reused across runs (PyTorch is large).
# Override its location with BPE336_VENV. Defines VENV and PY.
VENV="${BPE336_VENV:-$HOME/.cache/bpe336-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating the virtual environment $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"

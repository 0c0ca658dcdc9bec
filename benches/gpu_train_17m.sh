#!/usr/bin/env bash
# The reference 17M config (configs/tinystories-17m.toml: vocab 10,000, context 256, d_model 512,
# 4 layers, 16 heads, d_ff 1,344) on one GPU, in one command that needs no network:
#   1. installs the carried abi3 wheel (and, only where missing, the carried numpy/pytest/tqdm wheels)
#      into a private folder and runs everything from it;
#   2. benches/bench_lm.py: our model (bf16 autocast + torch.compile, our Triton attention) against
#      the torch.nn + F.scaled_dot_product_attention + fused torch.optim.AdamW baseline (also
#      compiled), on the same batches of the carried webtext token array, alternating blocks:
#      tokens/s, MFU, peak memory, ratio;
#   3. benches/bench_lm_components.py --only attention: our attention kernels alone against
#      F.scaled_dot_product_attention forced to its flash backend (bf16);
#   4. the CUDA tests marked gpu (pytest -m gpu);
#   5. summary.txt / summary.json with every figure and the targets met or missed.
# Everything lands in $OUT; the exit status is non-zero when any step failed.
#
#   bash benches/gpu_train_17m.sh prepare         # here, once: .carry/wheels and .carry/webtext10k
#   bash benches/gpu_train_17m.sh run             # on the GPU machine with .carry carried (about 5 min)
#   DRY_RUN=1 bash benches/gpu_train_17m.sh run   # here: the same steps on the CPU, shrunk
#   bash benches/gpu_train_17m.sh train           # optional, separately: a timed training run + sample
#
# Limits (seconds) per step: BENCH_S (default 240), KERNEL_S (100), TESTS_S (120), so the whole run
# stays under 8 minutes. NOTE: Triton (ours and torch.compile's) builds small C launchers on first
# use; machine.txt says whether a C compiler was found. See benches/README.md for the device-tool call.
set -euo pipefail
cd "$(dirname "$0")/.."
# The checkout's venv when there is one (here), else the machine's Python (the GPU machine).
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="$(command -v python3 || command -v python)"; fi
fi
CARRY="${CARRY:-.carry}"
TOKENS="$CARRY/webtext10k/tokens.bin"
OUT="${OUT:-out/gpu-17m}"
CORPUS="${CORPUS:-../shared/data/webtext.txt}"
DRY_RUN="${DRY_RUN:-0}"
FAILED=()

die() { echo "gpu_train_17m: error: $*" >&2; exit 1; }
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

prepare() {
    mkdir -p "$CARRY/wheels" "$CARRY/webtext10k"
    # 1. Our wheel: abi3 (one file for Python >= 3.11), release build.
    rm -f "$CARRY"/wheels/bpe336-*.whl
    maturin build --release --out "$CARRY/wheels" || die "maturin build failed"
    # 2. Pure-Python or manylinux wheels for Python 3.12, installed on the GPU machine only if missing.
    "$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" \
        numpy pytest pluggy iniconfig packaging tqdm || die "pip download failed (network?)"
    # 3. Tokens: a 10,000-token BPE trained on webtext, the whole corpus encoded as uint16.
    if [ ! -f "$TOKENS" ]; then
        PYTHONPATH="$PWD/python" "$PY" - "$CORPUS" "$CARRY/webtext10k" <<'PYEOF'
import sys, time
from pathlib import Path
from bpe336 import Tokenizer, train_bpe

corpus, carry = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
vocab, merges = train_bpe(corpus, 10_000, ["<|endoftext|>"])
tok = Tokenizer(vocab, merges, special_tokens=["<|endoftext|>"])
tok.save(carry / "tokenizer")
stats = tok.encode_file(corpus, carry / "tokens.bin", progress=False)  # uint16, little-endian
print(f"tokenizer + {stats} in {time.perf_counter() - t:.0f} s -> {carry}")
PYEOF
    fi
    ls -l "$CARRY/wheels"
    local kib
    kib=$(du -sk "$CARRY" | cut -f1)
    echo "$CARRY: $((kib / 1024)) MiB (the device tool carries at most 64 MiB)"
    [ "$kib" -lt $((64 * 1024)) ] || die "$CARRY is over 64 MiB"
}

# Install the carried wheel (and any missing dependency) into a private folder, then check that
# Python imports lm336 from there and not from the checkout.
install() {
    local wheel
    wheel=$(ls "$CARRY"/wheels/bpe336-*.whl 2>/dev/null | head -1) || true
    [ -n "$wheel" ] || die "no $CARRY/wheels/bpe336-*.whl: run 'bash $0 prepare' here and carry $CARRY"
    SITE="$(mktemp -d)/site"
    mkdir -p "$SITE"
    if ! "$PY" -m pip install --quiet --no-deps --no-index --target "$SITE" "$wheel"; then
        echo "pip install failed; unpacking the wheel instead" >&2
        "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$wheel" "$SITE"
    fi
    local mod pkgs
    for mod in numpy:numpy pytest:"pytest pluggy iniconfig packaging" tqdm:tqdm; do
        pkgs="${mod#*:}"
        if ! "$PY" -c "import ${mod%%:*}" 2>/dev/null; then
            echo "installing carried wheels: $pkgs"
            # shellcheck disable=SC2086
            "$PY" -m pip install --quiet --no-index --no-deps --find-links "$CARRY/wheels" --target "$SITE" $pkgs \
                || die "cannot install $pkgs from $CARRY/wheels"
        fi
    done
    export PYTHONPATH="$SITE"
    "$PY" - "$SITE" <<'PYEOF' || die "the installed wheel does not import"
import sys
import lm336, lm336.attention, lm336.model, lm336.throughput
assert lm336.__file__.startswith(sys.argv[1]), f"lm336 comes from {lm336.__file__}, not the installed wheel"
print(f"lm336 from {lm336.__file__}")
try:
    import bpe336  # the Rust extension: not needed by these steps, only reported
    print(f"bpe336 from {bpe336.__file__}")
except ImportError as e:
    print(f"NOTE: bpe336 does not import here ({e}); the benches and gpu tests do not need it")
PYEOF
}

# Run one step under a time limit, its output shown and saved; record a failure instead of
# stopping, so the later steps still run.
attempt() {
    local name="$1" limit="$2" log="$3" rc
    shift 3
    set +e
    timeout "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "gpu_train_17m: step '$name' FAILED (exit $rc; 124 = ran past ${limit} s)" >&2
        FAILED+=("$name")
    fi
}

run() {
    local t0=$SECONDS
    for path in "$TOKENS" benches/bench_lm.py benches/bench_lm_components.py tests/lm336/test_attention.py \
        configs/tinystories-17m.toml; do
        [ -e "$path" ] || die "missing $path (carry $CARRY after 'bash $0 prepare'; run from the checkout)"
    done
    mkdir -p "$OUT"
    step "machine"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none"
        "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
        "$PY" -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton: not installed"
        echo "C compiler: $(command -v cc || command -v gcc || command -v clang || echo 'none found')"
    } | tee "$OUT/machine.txt"
    local device=cuda bench_args=() kernel_args=() test_args=(-m gpu)
    if [ "$DRY_RUN" = 1 ]; then
        echo "DRY_RUN=1: CPU, shrunk sizes; the gpu tests are collected (and skip) plus one CPU check"
        device=cpu
        bench_args=(--batch-size 2 --context-length 64 --steps 1 --blocks 1 --warmup 1 --threads 1)
        kernel_args=(--repeats 2 --threads 1)
        test_args=(-k "gpu or cuda or float64_equals_reference")
    else
        "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
            || die "no CUDA device visible to torch (use DRY_RUN=1 for a CPU rehearsal)"
    fi
    step "install the carried wheel"
    install

    step "1/3 training throughput: lm336 vs torch.nn baseline (same batches, alternating)"
    attempt bench "${BENCH_S:-240}" "$OUT/bench.txt" "$PY" benches/bench_lm.py --device "$device" --tokens "$TOKENS" \
        --json "$OUT/bench.json" "${bench_args[@]}"

    step "2/3 attention kernels alone: ours vs F.scaled_dot_product_attention"
    attempt kernels "${KERNEL_S:-100}" "$OUT/attention.txt" "$PY" benches/bench_lm_components.py --device "$device" \
        --only attention --json "$OUT/attention.json" "${kernel_args[@]}"

    step "3/3 tests marked gpu"
    local test_files
    test_files=$(grep -l "mark.gpu" tests/lm336/*.py tests/bpe336/*.py 2>/dev/null | tr '\n' ' ')
    # shellcheck disable=SC2086
    attempt tests "${TESTS_S:-120}" "$OUT/tests.txt" "$PY" -m pytest -q -p no:cacheprovider -rs "${test_args[@]}" $test_files

    step "summary"
    "$PY" - "$OUT" "$((SECONDS - t0))" "${FAILED[*]:-}" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path

out, seconds, failed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
summary = {"seconds": seconds, "failed_steps": failed}
if (out / "bench.json").exists():
    b = json.loads((out / "bench.json").read_text())
    b = b[0] if isinstance(b, list) else b
    ours, base = b["results"]["lm336"], b["results"]["torch.nn baseline"]
    summary["bench"] = b
    print(f"device {b['device_name']}; batch {b['batch_size']} x {b['context_length']}; peak {b['peak_flops'] / 1e12:.1f} TFLOP/s ({b['peak_source']})")
    for name, r in (("lm336", ours), ("baseline", base)):
        mem = f", peak memory {r['peak_memory_bytes'] / 2**30:.2f} GiB" if r.get("peak_memory_bytes") else ""
        print(f"{name:<9} {r['tokens_per_s']:12,.0f} tokens/s  MFU {100 * r['mfu']:5.1f}%  {r['ms_per_step']:.1f} ms/step{mem}")
    print(f"ratio lm336 / baseline tokens/s: {b['ratio']:.3f}   "
          f"[target >= 1.0: {'met' if b['ratio'] >= 1.0 else 'MISSED'}; >= 1,000,000 tokens/s: "
          f"{'met' if ours['tokens_per_s'] >= 1e6 else 'MISSED'}]")
if (out / "attention.json").exists():
    lines = json.loads((out / "attention.json").read_text())
    summary["attention"] = lines
    for r in lines:
        speed = 1 / r["ratio"]
        print(f"{r['name']}: ours {r['ours_ms']:.3f} ms, peer {r['peer_ms']:.3f} ms, speed {speed:.2f}x the peer "
              f"[target >= 0.9: {'met' if speed >= 0.9 else 'MISSED'}]")
tests = (out / "tests.txt").read_text().strip().splitlines() if (out / "tests.txt").exists() else []
summary["tests"] = tests[-1] if tests else "not run"
print(f"tests: {summary['tests']}")
print(f"{seconds} s in all; failed steps: {', '.join(failed) or 'none'}")
(out / "summary.json").write_text(json.dumps(summary, indent=2))
PYEOF
    [ ${#FAILED[@]} -eq 0 ] || die "failed steps: ${FAILED[*]}"
}

# A timed training run of the reference config on the carried tokens, then a sample (separately:
# it does not fit in the same 8 minutes). Last 5% of the tokens are the validation set.
train() {
    [ -f "$TOKENS" ] || die "missing $TOKENS: run 'bash $0 prepare' and carry $CARRY"
    mkdir -p "$OUT"
    install
    local steps="${STEPS:-}"
    if [ -z "$steps" ]; then
        "$PY" benches/bench_lm.py --device cuda --tokens "$TOKENS" --steps 10 --blocks 1 --json "$OUT/bench-short.json" >/dev/null
        steps=$("$PY" -c "import json; r = json.load(open('$OUT/bench-short.json'))['results']['lm336']['tokens_per_s']; \
print(max(200, min(10_000, int(${TIME_BUDGET_S:-420} * r / 32768 * 0.9))))")
    fi
    echo "training $steps steps" | tee "$OUT/train.txt"
    "$PY" -m lm336 train --config configs/tinystories-17m.toml --set \
        "data.train_path=$TOKENS" "data.val_path=" "run.out_dir=$OUT/run" "run.max_steps=$steps" \
        "optimizer.cosine_cycle_iters=$steps" "optimizer.warmup_iters=$((steps / 50 + 1))" \
        "run.eval_interval=$((steps / 20 + 1))" "run.checkpoint_interval=$steps" "run.progress=false" \
        2>&1 | tee -a "$OUT/train.txt"
    "$PY" -m lm336 generate --checkpoint "$OUT/run/ckpt.pt" --tokenizer "$CARRY/webtext10k/tokenizer" \
        --prompt "The" --max-new-tokens 200 --temperature 0.8 --top-p 0.9 --seed 0 | tee "$OUT/sample.txt"
}

case "${1:-run}" in
    prepare) prepare ;;
    run) run ;;
    train) train ;;
    *) echo "usage: $0 [prepare|run|train]" >&2; exit 2 ;;
esac

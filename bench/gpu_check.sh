#!/usr/bin/env bash
# One-command GPU check: on a machine with one CUDA GPU (a bare checkout is enough), install, run the CUDA-marked
# tests (the CPU tests' equivalences on cuda: logits vs transformers at fp32/bf16/fp16, KV cache vs recompute,
# batched vs single with adapters, a training step vs the CPU, the vision prefix) and bench/decode.py on cuda vs
# transformers, then print a short summary. Bounded: 10 minutes in all (install excluded if already done).
#
#   bash bench/gpu_check.sh              # make install, tests, benchmark
#   bash bench/gpu_check.sh --no-install # use the existing .venv (what `make test` runs, on any machine)
#
# Without a GPU every CUDA test skips with its reason, the benchmark is skipped, and the script exits 0 with
# "no CUDA device" in the summary. Exit status: 0 all ran tests passed, 1 a test or the benchmark failed.
set -u
cd "$(dirname "$0")/.."
INSTALL=1
for arg in "$@"; do
    case "$arg" in
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (use --no-install or --help)" >&2; exit 2 ;;
    esac
done
VENV=${VENV:-.venv}
PY=${PYTHON_BIN:-$VENV/bin/python}
LOG=${GPU_CHECK_LOG:-$(mktemp -d)/gpu_check}
TEST_BUDGET=${GPU_CHECK_TEST_SECONDS:-420}
BENCH_BUDGET=${GPU_CHECK_BENCH_SECONDS:-180}

if [ "$INSTALL" = 1 ]; then
    echo "== make install (one-time; torch, the package, the offline model)"
    make install VENV="$VENV" || { echo "gpu_check: make install failed" >&2; exit 1; }
fi
[ -x "$PY" ] || { echo "gpu_check: no Python at $PY (run without --no-install, or set PYTHON_BIN)" >&2; exit 2; }

echo "== device"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF'
import torch
if torch.cuda.is_available():
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}: {torch.cuda.get_device_name()}")
else:
    print(f"torch {torch.__version__}: no CUDA device (torch.cuda.is_available() is False)")
EOF
HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')

echo "== CUDA-marked tests (budget ${TEST_BUDGET}s)"
timeout "$TEST_BUDGET" "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider tests 2>&1 | tee "$LOG.tests"
TEST_RC=${PIPESTATUS[0]}
[ "$TEST_RC" = 5 ] && TEST_RC=0  # "no tests collected" cannot happen with the markers present; keep it harmless

BENCH_RC=0
if [ "$HAS_CUDA" = 1 ]; then
    echo "== bench/decode.py on cuda vs transformers (budget ${BENCH_BUDGET}s)"
    timeout "$BENCH_BUDGET" "$PY" bench/decode.py --device cuda --reps 3 --new-tokens 32 2>&1 | tee "$LOG.bench"
    BENCH_RC=${PIPESTATUS[0]}
else
    echo "== bench/decode.py on cuda: skipped (no CUDA device)" | tee "$LOG.bench"
fi

echo "== summary"
tail -n 1 "$LOG.tests" | sed 's/^/tests: /'
grep "^SKIPPED" "$LOG.tests" | sed 's/^SKIPPED \[[0-9]*\] [^ ]*: //' | sort -u | sed 's/^/  skip reason: /'
grep -E "^ratio|skipped" "$LOG.bench" | sed 's/^/bench: /'
if [ "$HAS_CUDA" != 1 ]; then
    echo "result: no CUDA device here: the CUDA tests skipped (reasons above); nothing was checked on a GPU"
fi
if [ "$TEST_RC" != 0 ] || [ "$BENCH_RC" != 0 ]; then
    echo "result: FAILED (tests exit $TEST_RC, benchmark exit $BENCH_RC); logs: $LOG.tests $LOG.bench"
    exit 1
fi
[ "$HAS_CUDA" = 1 ] && echo "result: OK on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"
exit 0

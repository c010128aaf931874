#!/bin/bash
# Device-call body for issue #3 (<= 8 min on an H100), from the project root:
#   device call: command `bash bench/gpu/run_kernel.sh`, carry [".carry"]
# 1. GPU correctness: pytest -m gpu tests/gpu/test_sage_extend_kernel_gpu.py (>= 1000 cases)
# 2. bench/kernel_bench.py (speed, accuracy at 2K, per-config regs/spills/smem, autotune choice)
# Returns in $OUT: run_kernel.log, results/{sage_extend_gpu,kernel_bench}.{json,md}.
# The working tree goes first on PYTHONPATH, so a stale project wheel in .carry/whl cannot hide
# the new kernel module. Env: TEST_BUDGET_S (150), BENCH_BUDGET_S (300).
OUT=${OUT:-/tmp/run_kernel_out}
mkdir -p "$OUT/results"
LOG_NAME=run_kernel.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export SGLANG_SAGE_RESULTS_DIR=$OUT/results
nvidia-smi --query-gpu=clocks.sm,temperature.gpu --format=csv
python3 -c "import torch, triton, sglang_sage_ext.kernels.paged_sage as m; \
print('torch', torch.__version__, 'triton', triton.__version__, 'kernel from', m.__file__)"

step "GPU correctness (tests/gpu/test_sage_extend_kernel_gpu.py)"
timeout "${TEST_BUDGET_S:-150}" python3 -m pytest -m gpu -q -rA -p no:cacheprovider \
  tests/gpu/test_sage_extend_kernel_gpu.py
echo "[run_kernel] pytest rc=$?"

step "kernel bench"
timeout "${BENCH_BUDGET_S:-300}" python3 bench/kernel_bench.py --out "$OUT/results"
echo "[run_kernel] bench rc=$?"

step "summary"
[ -f "$OUT/results/sage_extend_gpu.md" ] && cat "$OUT/results/sage_extend_gpu.md"
[ -f "$OUT/results/kernel_bench.md" ] && cat "$OUT/results/kernel_bench.md"
echo "[run_kernel] total $((SECONDS - T0)) s"

#!/bin/bash
# bench/kernel_bench.py (speed, accuracy at 2K, regs/spills/smem per config) + 1000-case kernel accuracy
# 1. tests/gpu/test_sage_extend_kernel_gpu.py (>= 1000 random cases vs float64) and
#    tests/gpu/test_sm90_max_growth_gpu.py (row maxima that grow late: the rescale paths)
# 2. bench/kernel_bench.py: the Sage extend kernels vs cuDNN / flash / SGLang Triton
# The working tree goes first on PYTHONPATH (kernel_step_env). H100/H200, ~4 min (1000 cases x 4 kernels).
# Back: results/{sage_extend_gpu,kernel_bench}.{json,md}.
# Env: TEST_BUDGET_S (300), KBENCH_BUDGET_S (240; 0 skips the bench).
OUT=${OUT:-/tmp/gpu_out/kernel}
mkdir -p "$OUT/results"
LOG_NAME=kernel.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
kernel_step_env
python3 -c "import torch, triton, sglang_sage_ext.kernels.paged_sage as m; \
print('torch', torch.__version__, 'triton', triton.__version__, 'kernel from', m.__file__)"

step "GPU correctness (tests/gpu/test_sage_extend_kernel_gpu.py)"
gpu_pytest "${TEST_BUDGET_S:-300}" tests/gpu/test_sage_extend_kernel_gpu.py tests/gpu/test_sm90_max_growth_gpu.py
echo "[kernel] pytest rc=$?"

if [ "${KBENCH_BUDGET_S:-240}" -gt 0 ]; then
  step "kernel bench"
  timeout "${KBENCH_BUDGET_S:-240}" python3 bench/kernel_bench.py --out "$OUT/results"
  echo "[kernel] bench rc=$?"
fi

step "summary"
for f in sage_extend_gpu kernel_bench; do
  [ -f "$OUT/results/$f.md" ] && cat "$OUT/results/$f.md"
done
rm -rf "$OUT/logs"

#!/bin/bash
# the Hopper CUDA Sage kernel: correctness + TFLOP/s vs Triton and cuDNN, Nsight Compute counters
# 1. bench/sm90_bench.py: rel-L2 vs float64 of the CUDA and Triton kernels in both P·V modes
#    (outputs poisoned with NaN first), then TFLOP/s beside cuDNN SDPA; QUICK=1: two shapes.
#    VARIANTS="a.cu b.cu" times other versions of the .cu beside the shipped one (A/B).
# 2. ncu (--clock-control none) on one steady-state launch at PREFILL 32K: pipes, stall reasons.
# No SGLang needed; the working tree goes first on PYTHONPATH. sm90 only, ~1.5 min.
# Back: results/sm90_bench.json, results/ncu_32k.txt. Env: QUICK, VARIANTS, NCU=0 (skip ncu).
OUT=${OUT:-/tmp/gpu_out/sm90}
mkdir -p "$OUT/results"
LOG_NAME=sm90.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
kernel_step_env

step "bench/sm90_bench.py"
ARGS=(--out "$OUT/results")
[ "${QUICK:-0}" = 1 ] && ARGS+=(--quick)
for v in ${VARIANTS:-}; do ARGS+=(--variant "$v"); done
timeout "${SM90_BUDGET_S:-240}" python3 bench/sm90_bench.py "${ARGS[@]}"
echo "[sm90] bench rc=$?"

if [ "${NCU:-1}" = 1 ]; then
  step "ncu, prefill 32K ($(left) s left)"
  timeout 150 ncu --clock-control none -k regex:sage_sm90 -s 2 -c 1 --section WarpStateStats \
    --section ComputeWorkloadAnalysis --page raw python3 bench/sm90_ncu.py sm90 prefill_32k \
    > "$OUT/results/ncu_raw.txt" 2>&1
  echo "[sm90] ncu rc=$?"
  grep -E "issue_stalled_.*per_issue_active|pipe_(alu|fma|xu|lsu)\.avg\.pct_of_peak_sustained_active|tensor_op_hmma_cycles_active\.avg\.pct_of_peak_sustained_active" \
    "$OUT/results/ncu_raw.txt" | awk '{print $1, $NF}' | sort -k2 -g -r > "$OUT/results/ncu_32k.txt"
  rm -f "$OUT/results/ncu_raw.txt"
  cat "$OUT/results/ncu_32k.txt"
fi
rm -rf "$OUT/logs"

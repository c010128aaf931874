#!/bin/bash
# paged-kernel accuracy on LLM-like inputs (Q smoothing off/on, both P·V modes) + its speed cost
# 1. tests/gpu/test_sage_llm_inputs_gpu.py: the goal (median rel-L2 <= 1e-2 per
#    LLM-like family, FP16 P·V; non-strict xfail) and regression bounds, for the Triton kernel
#    and (sm90) the Hopper CUDA kernel
# 2. bench/llm_accuracy.py: rel-L2 per family x shape x P·V mode x Q smoothing, and TFLOP/s of one
#    layer call with Q smoothing off and on (the table comes last); then, on sm90, the same
#    accuracy table for the Hopper CUDA kernel (--kernel sm90 --no-speed).
# Needs only torch + triton (no SGLang); the working tree goes first on PYTHONPATH.
# H100, ~4 min. Back: results/{sage_llm_inputs_gpu_<kernel>,llm_accuracy}.{json,md},
# results/sm90/.
# Env: TEST_BUDGET_S (200), BENCH_BUDGET_S (240), SM90_BUDGET_S (90).
OUT=${OUT:-/tmp/gpu_out/llm-acc}
mkdir -p "$OUT/results"
LOG_NAME=llm-acc.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
kernel_step_env

step "GPU accuracy test (tests/gpu/test_sage_llm_inputs_gpu.py)"
gpu_pytest "${TEST_BUDGET_S:-200}" tests/gpu/test_sage_llm_inputs_gpu.py
echo "[llm-acc] pytest rc=$?"

step "bench/llm_accuracy.py ($(left) s left)"
timeout "${BENCH_BUDGET_S:-240}" python3 bench/llm_accuracy.py --out "$OUT/results"
echo "[llm-acc] bench rc=$?"

step "bench/llm_accuracy.py --kernel sm90 ($(left) s left)"
timeout "${SM90_BUDGET_S:-90}" python3 bench/llm_accuracy.py --kernel sm90 --no-speed \
  --out "$OUT/results/sm90"
echo "[llm-acc] sm90 rc=$?"
rm -rf "$OUT/logs"

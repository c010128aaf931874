#!/bin/bash
# Issue #10, device call 1 (<= 9 min on an H100), from the repo root:
#   carry [".carry"]; command `bash bench/gpu/run_calibrate.sh`
# 1. bench/calibrate.py: Sage kernel (per-batch plan, reused workspace) vs SGLang's flashinfer
#    prefill vs the previous Sage kernel (.carry/old/old_paged_sage.py) vs cuDNN SDPA, over the
#    cost model's batch shapes; writes the sm90-flashinfer.json table.
# 2. tests/gpu/test_sage_extend_kernel_gpu.py (1000 random cases vs float64) on the new launcher.
# Back: calibrate.log, results/{calibration.json,calibration.md,sm90-flashinfer.json}, logs.tar.gz
OUT=${OUT:-/tmp/calibrate_out}
mkdir -p "$OUT/results"
LOG_NAME=calibrate.log BUDGET=${CAL_BUDGET_S:-540}
# shellcheck disable=SC1091
source bench/gpu/common.sh
step "calibrate"
timeout 330 python3 bench/calibrate.py --out "$OUT/results" --old-kernel .carry/old/old_paged_sage.py \
  > "$OUT/logs/calibrate.out" 2>&1
echo "calibrate rc=$?"; tail -32 "$OUT/logs/calibrate.out"
step "GPU kernel accuracy tests ($(left) s left)"
timeout $(( $(left) - 20 )) python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_sage_extend_kernel_gpu.py \
  -o addopts="" 2>&1 | tail -15
step "collect"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT" "$OUT/results"

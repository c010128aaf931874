#!/bin/bash
# bench/calibrate.py: Sage kernel vs native prefill over the cost model's shapes (the cost table)
# Sage kernel (per-batch plan, reused workspace) vs SGLang's flashinfer prefill vs cuDNN SDPA
# (and the previous Sage kernel when .carry/old/old_paged_sage.py is carried); writes the
# sm90-flashinfer.json cost table. The 1000-case kernel accuracy suite is the `kernel` step
# (~4 min with both CUDA builds, too long to share this call). H100/H200, ~5-6 min.
# Back: results/{calibration.json,calibration.md,sm90-flashinfer.json}, logs.tar.gz.
# Env: CAL_TIMEOUT_S (330), CAL_OLD=0 (skip the old kernel).
OUT=${OUT:-/tmp/gpu_out/calibrate}
mkdir -p "$OUT/results"
LOG_NAME=calibrate.log BUDGET=${CAL_BUDGET_S:-540}
# shellcheck disable=SC1091
source bench/gpu/common.sh
OLD=(); [ "${CAL_OLD:-1}" = 1 ] && [ -f .carry/old/old_paged_sage.py ] && OLD=(--old-kernel .carry/old/old_paged_sage.py)
step "calibrate"
timeout "${CAL_TIMEOUT_S:-330}" python3 bench/calibrate.py --out "$OUT/results" "${OLD[@]}" \
  > "$OUT/logs/calibrate.out" 2>&1
echo "calibrate rc=$?"; tail -32 "$OUT/logs/calibrate.out"
step "collect"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT" "$OUT/results"

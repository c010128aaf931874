#!/bin/bash
# Issue #13 on the GPU (<= 6 min), from the repo root: carry [".carry"];
#   command `bash bench/gpu/run_demo_gpu.sh`
# `sglang-sage doctor` and `sglang-sage demo` exactly as a user runs them; outputs straight to $OUT.
OUT=${OUT:-/tmp/demo_gpu_out}
LOG_NAME=demo_gpu.log BUDGET=${DEMO_BUDGET_S:-380}
# shellcheck disable=SC1091
source bench/gpu/common.sh
step "sglang-sage doctor"
timeout 120 "${SS[@]}" doctor > "$OUT/doctor.txt" 2>"$OUT/logs/doctor.err"; echo "doctor exit=$?"
cat "$OUT/doctor.txt"
step "sglang-sage demo ($(left) s left)"
timeout -s INT -k 15 $(( $(left) - 25 )) "${SS[@]}" demo -o "$OUT/demo" > "$OUT/demo.txt" 2>"$OUT/logs/demo.err"
echo "demo exit=$?"; cat "$OUT/demo.txt"
tail -5 "$OUT/logs/demo.err"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs demo 2>/dev/null && rm -rf "$OUT/logs" "$OUT/demo"
ls -la "$OUT"

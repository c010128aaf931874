#!/bin/bash
# `sglang-sage doctor` and `sglang-sage demo -o $OUT/demo`, as a user runs them, on this GPU
# Back: doctor.txt, demo/ (whatever the demo writes), demo.out. Env: DEMO_ARGS (extra arguments).
OUT=${OUT:-/tmp/gpu_out/demo}
mkdir -p "$OUT"
LOG_NAME=demo.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
step "sglang-sage doctor"
timeout 120 "${SS[@]}" doctor > "$OUT/doctor.txt" 2>&1; echo "[doctor] rc=$?"; cat "$OUT/doctor.txt"
step "sglang-sage demo ($(left) s left)"
# shellcheck disable=SC2086
timeout -s INT -k 15 $(( $(left) - 10 )) "${SS[@]}" demo -o "$OUT/demo" ${DEMO_ARGS:-} 2>&1 \
  | tee "$OUT/demo.out"
rc=${PIPESTATUS[0]}
echo "[demo] rc=$rc"
rm -rf "$OUT/logs"
exit "$rc"

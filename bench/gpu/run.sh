#!/bin/bash
# The one device entry point: named steps, run in order, in ONE device call (carry [".carry"]).
#   bash bench/gpu/build_bundle.sh                 # here, after every code change (.carry/)
#   bash bench/gpu/run.sh STEP [STEP ...]          # device call, from the repo root
#   bash bench/gpu/run.sh --list | --dry-run STEP...   # what the steps are / would run (no GPU)
# Each step is bench/gpu/steps/STEP.sh; its results go to $OUT/STEP/ (results/, logs.tar.gz);
# $OUT/run.log has everything printed, $OUT/steps.txt one "STEP rc=N seconds" line per step.
# The call has BUDGET seconds (default 570, under the 10-minute device-call limit); each step is
# stopped (servers too) when the budget runs out, and later steps are then skipped.
# Env of every step: see the head of its file (e.g. PARTS for decode, NATIVE for e2e).
set -u
cd "$(dirname "$0")/../.." || exit 1
STEPS_DIR=bench/gpu/steps
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
summary() { sed -n '2p' "$STEPS_DIR/$1.sh" | sed 's/^# *//'; }
all_steps() { for f in "$STEPS_DIR"/*.sh; do basename "$f" .sh; done; }

DRY=0; STEPS=()
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --list) for s in $(all_steps); do printf '%-12s %s\n' "$s" "$(summary "$s")"; done; exit 0 ;;
    --dry-run|-n) DRY=1 ;;
    -*) echo "unknown option $a"; usage; exit 2 ;;
    *) [ -f "$STEPS_DIR/$a.sh" ] || { echo "unknown step '$a'; steps: $(all_steps | tr '\n' ' ')"; exit 2; }
       STEPS+=("$a") ;;
  esac
done
[ ${#STEPS[@]} -gt 0 ] || { usage; echo "steps: $(all_steps | tr '\n' ' ')"; exit 2; }

OUT=${OUT:-/tmp/gpu_out}
if [ "$DRY" = 1 ]; then
  echo "would run in one call (budget ${BUDGET:-570} s), results under $OUT/:"
  for s in "${STEPS[@]}"; do
    printf '  %-10s bash %s/%s.sh  -> %s/%s/   # %s\n' "$s" "$STEPS_DIR" "$s" "$OUT" "$s" "$(summary "$s")"
  done
  exit 0
fi

mkdir -p "$OUT"
LOG_NAME=run.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
: > "$OUT/steps.txt"
RC=0
for s in "${STEPS[@]}"; do
  L=$(( $(left) - 5 ))
  if [ "$L" -lt 30 ]; then
    echo "$s skipped (budget spent)" | tee -a "$OUT/steps.txt"; RC=1; continue
  fi
  step "STEP $s ($L s left)"
  t0=$(date +%s)
  OUT=$OUT/$s timeout -s TERM -k 20 "$L" bash "$STEPS_DIR/$s.sh"
  rc=$?; [ "$rc" = 0 ] || RC=1
  echo "$s rc=$rc $(( $(date +%s) - t0 )) s" | tee -a "$OUT/steps.txt"
done
step "done"; rmdir "$OUT/logs" 2>/dev/null
cat "$OUT/steps.txt"
exit $RC

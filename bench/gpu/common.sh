#!/bin/bash
# Shared preamble of the bench/gpu/run_*.sh device-call bodies (source it from the repo root):
#   OUT=... LOG_NAME=x.log BUDGET=570 source bench/gpu/common.sh
# Gives: $OUT (created, all output also teed to $OUT/$LOG_NAME), step "title", left (seconds of
# BUDGET left), the offline bundle set up (setup_site.sh), SS (the `sglang-sage` command), and
# server helpers:
#   launch NAME PORT [ENV=VAL ...] -- launch_server args   (log: $OUT/logs/NAME.log)
#   wait_healthy PORT TIMEOUT_S     stop_all
set -u
mkdir -p "$OUT/logs"
exec > >(tee -a "$OUT/${LOG_NAME:-run.log}") 2>&1
T0=$SECONDS
BUDGET=${BUDGET:-570}
step() { echo; echo "=== [$((SECONDS - T0)) s] $*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }

step "setup (bundle -> /tmp/site, wheels -> site-packages)"
if [ -f .carry/scripts/setup_site.sh ]; then
  # shellcheck disable=SC1091
  source .carry/scripts/setup_site.sh
else
  echo "[common] no .carry/scripts/setup_site.sh: run bash bench/gpu/build_bundle.sh, carry .carry"
  # shellcheck disable=SC1091
  source bench/gpu/setup_site.sh
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 | head -3
# the project's CLI, also where the console script is not on PATH
SS=(sglang-sage)
command -v sglang-sage >/dev/null || SS=(python3 -c "from sglang_sage_ext.cli.main import main; main()")

SERVER_PIDS=()
launch() {  # launch NAME PORT [ENV=VAL ...] -- ARGS...
  local name=$1 port=$2; shift 2
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  [ "${1:-}" = "--" ] && shift
  env "${envs[@]}" setsid python3 -m sglang.launch_server --host 127.0.0.1 --port "$port" "$@" \
    > "$OUT/logs/$name.log" 2>&1 &
  SERVER_PIDS+=($!)
  echo "[server:$name] pid $! port $port: ${envs[*]} $*"
}
wait_healthy() {  # wait_healthy PORT TIMEOUT_S -> 0 when /health answers
  local port=$1 limit=$2 t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$limit" ]; do
    python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" \
      "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { echo "[server:$port] healthy after $((SECONDS - t0)) s"; return 0; }
    sleep 2
  done
  echo "[server:$port] NOT healthy after $limit s"; return 1
}
stop_all() {
  for p in "${SERVER_PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 5
  for p in "${SERVER_PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  SERVER_PIDS=()
}

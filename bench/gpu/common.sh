#!/bin/bash
# Shared preamble of bench/gpu/run.sh and its steps (bench/gpu/steps/*.sh); source it from the
# repo root:   OUT=... LOG_NAME=x.log BUDGET=570 source bench/gpu/common.sh
# The first source in a device call sets up the offline bundle (setup_site.sh), tees all output
# to $OUT/$LOG_NAME and exports SAGE_GPU_READY=1 and the call's DEADLINE (epoch seconds); a step
# run by run.sh sources it again and only gets the helpers (no second setup, no second tee).
# Gives: $OUT (created), GPU_DIR (bench/gpu), MODELS (/tmp/models), step "title",
# left (seconds to DEADLINE), SS (the `sglang-sage` command), ensure_models (make_models.py once),
# kernel_step_env (for steps that test kernels) and gpu_pytest BUDGET_S FILE..., and server
# helpers (stopped on exit):
#   launch NAME PORT [ENV=VAL ...] -- launch_server args   (log: $OUT/logs/NAME.log)
#   wait_healthy PORT TIMEOUT_S     stop_all
set -u
GPU_DIR=bench/gpu
MODELS=${MODELS_DIR:-/tmp/models}
mkdir -p "$OUT/logs"
step() { echo; echo "=== [$(( $(date +%s) - T_START )) s] $*"; }
left() { echo $(( DEADLINE - $(date +%s) )); }

if [ "${SAGE_GPU_READY:-0}" != 1 ]; then
  exec > >(tee -a "$OUT/${LOG_NAME:-run.log}") 2>&1
  T_START=$(date +%s); DEADLINE=$(( T_START + ${BUDGET:-570} ))
  export T_START DEADLINE
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
  export SAGE_GPU_READY=1
fi

kernel_step_env() {  # the working tree first on PYTHONPATH (a stale wheel in .carry/whl cannot
  # hide the kernel under test), GPU results to $OUT/results, the clocks the numbers ran at
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  export SGLANG_SAGE_RESULTS_DIR=$OUT/results
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv
}
gpu_pytest() {  # gpu_pytest BUDGET_S FILE...: the GPU-marked tests of FILEs under a time limit
  local budget=$1; shift
  timeout "$budget" python3 -m pytest -m gpu -q -rA -p no:cacheprovider "$@"
}

# the project's CLI, also where the console script is not on PATH
SS=(sglang-sage)
command -v sglang-sage >/dev/null || SS=(python3 -c "from sglang_sage_ext.cli.main import main; main()")

ensure_models() {  # tokenizer + tiny random Llama + the 8B dummy config under $MODELS, once
  [ -f "$MODELS/llama31-8b-dummy/config.json" ] && [ -f "$MODELS/tiny-llama/config.json" ] && return 0
  timeout 240 python3 "$GPU_DIR/make_models.py" "$MODELS" > "$OUT/logs/make_models.out" 2>&1
  echo "[common] make_models rc=$?"
}

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
  [ ${#SERVER_PIDS[@]} -eq 0 ] && return 0
  for p in "${SERVER_PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 5
  for p in "${SERVER_PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  SERVER_PIDS=()
}
# a step killed by run.sh's timeout still stops its servers
trap stop_all EXIT
trap 'exit 143' TERM INT

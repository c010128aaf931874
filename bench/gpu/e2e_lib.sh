#!/bin/bash
# The bench_serving workloads and server flags of the e2e steps (steps/e2e.sh, steps/tp2.sh), in
# one place so that every step measures the same thing. Source it after common.sh:
#   source bench/gpu/e2e_lib.sh
# Gives (nothing runs at source time):
#   E2E_ALL                  every workload name, in the order they run
#   WORKLOADS                the selection: env WORKLOADS (space separated), default E2E_ALL
#                            (a step sets its own default before sourcing this)
#   e2e_check_workloads      exit 2 naming any unknown name in WORKLOADS (call before servers)
#   e2e_setup                ensure_models, then E2E_MODEL and E2E_SERVER_ARGS (flags shared
#                            by both servers of a step, + EXTRA_SERVER_ARGS)
#   e2e_workloads TAG PORT   each selected workload -> $OUT/jsonl/TAG_NAME.jsonl (the file
#                            bench/e2e_summary.py reads), $OUT/logs/TAG_NAME.out
#   e2e_serve TAG PORT [ENV=VAL ...] -- ARGS...
#                            launch one server (E2E_SERVER_ARGS + ARGS), wait for /health,
#                            run e2e_workloads, then the step's e2e_while_up TAG PORT if it
#                            defines one, stop it; returns 1 if it never got healthy
#   E2E_PORT                 the native server's port (30100); sage_attn's is E2E_PORT + 1
#   e2e_cap SECONDS          SECONDS, or less so that E2E_RESERVE_S (30) of the budget stays
#                            for the summary and the tarball (a step stopped by run.sh's
#                            timeout would bring back neither)
E2E_ALL="single_1k single_8k single_32k single_128k c64_1k_128 mixed_128_8k shared_prefix"
WORKLOADS=${WORKLOADS:-$E2E_ALL}
E2E_HEALTH_S=${E2E_HEALTH_S:-240}
E2E_RESERVE_S=${E2E_RESERVE_S:-30}
E2E_PORT=${E2E_PORT:-30100}

e2e_cap() {
  local cap=$(( $(left) - E2E_RESERVE_S ))
  if [ "$cap" -lt "$1" ]; then echo "$(( cap > 1 ? cap : 1 ))"; else echo "$1"; fi
}

# e2e_workload_args NAME: sets WL (bench_serving arguments) and WL_TIMEOUT; 1 if NAME is unknown.
# Single prompts: e2e latency with 4 output tokens; --random-range-ratio 1 = exact lengths.
# 48 x 1K and 16 x 8K (not 8 and 6): the median of 8 ~50 ms requests with a 5-6 ms spread moved
# by 2-3 ms between servers that ran the very same kernels (H100, 2026-11-28, every batch native).
e2e_workload_args() {
  local ids=(--dataset-name random-ids --tokenize-prompt)
  local one=(--random-range-ratio 1 --random-output-len 4 --max-concurrency 1)
  WL_TIMEOUT=150
  case $1 in
    single_1k)   WL=("${ids[@]}" "${one[@]}" --random-input-len 1024 --num-prompts 48) ;;
    single_8k)   WL=("${ids[@]}" "${one[@]}" --random-input-len 8192 --num-prompts 16) ;;
    single_32k)  WL=("${ids[@]}" "${one[@]}" --random-input-len 32768 --num-prompts 4) ;;
    single_128k) WL=("${ids[@]}" "${one[@]}" --random-input-len 128000 --num-prompts 2) ;;
    c64_1k_128)  WL=("${ids[@]}" --random-range-ratio 1 --random-input-len 1024
                     --random-output-len 128 --num-prompts 256 --max-concurrency 64) ;;
    # input lengths spread over 128..8K (ratio 1/64 of 8192)
    mixed_128_8k) WL=("${ids[@]}" --random-range-ratio 0.015625 --random-input-len 8192
                      --random-output-len 64 --num-prompts 96 --max-concurrency 32) ;;
    # 4 groups x 16 prompts, 6000-token system prompt + 600-token question: radix-cache hits
    shared_prefix) WL_TIMEOUT=120
      WL=(--dataset-name generated-shared-prefix --gsp-num-groups 4 --gsp-prompts-per-group 16
          --gsp-system-prompt-len 6000 --gsp-question-len 600 --gsp-output-len 32
          --num-prompts 64 --max-concurrency 16) ;;
    *) return 1 ;;
  esac
}

e2e_check_workloads() {
  local w
  for w in $WORKLOADS; do
    e2e_workload_args "$w" || { echo "unknown workload '$w'; known: $E2E_ALL"; exit 2; }
  done
}

e2e_setup() {
  ensure_models
  E2E_MODEL=$MODELS/llama31-8b-dummy
  # shellcheck disable=SC2206  # EXTRA_SERVER_ARGS is a word list on purpose
  E2E_SERVER_ARGS=(--model-path "$E2E_MODEL" --load-format dummy --mem-fraction-static 0.8
    --max-total-tokens 160000 --context-length 131072 --random-seed 0 --sampling-backend pytorch
    --grammar-backend none --cuda-graph-max-bs 64 ${EXTRA_SERVER_ARGS:-})
}

e2e_workloads() {  # e2e_workloads TAG PORT
  local tag=$1 port=$2 name out
  mkdir -p "$OUT/jsonl"
  for name in $WORKLOADS; do
    e2e_workload_args "$name" || continue
    step "$tag $name ($(left) s left)"
    if [ "$(e2e_cap 10)" -lt 10 ]; then echo "skipped: budget spent"; continue; fi
    out=$OUT/logs/${tag}_${name}.out
    # --warmup-requests 0: every request is measured (the servers are already warm from start-up)
    timeout "$(e2e_cap "$WL_TIMEOUT")" python3 -m sglang.bench_serving --backend sglang \
      --host 127.0.0.1 --port "$port" --tokenizer "$E2E_MODEL" --request-rate inf \
      --warmup-requests 0 --output-file "$OUT/jsonl/${tag}_${name}.jsonl" "${WL[@]}" > "$out" 2>&1
    echo "rc=$?"; grep -E "Median E2E|Output token throughput|Successful" "$out"
  done
}

e2e_serve() {  # e2e_serve TAG PORT [ENV=VAL ...] -- ARGS...
  local tag=$1 port=$2 envs=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  [ "${1:-}" = "--" ] && shift
  step "server: $tag ($*)"
  if [ "$(e2e_cap 60)" -lt 60 ]; then echo "skipped: budget spent"; return 1; fi
  launch "$tag" "$port" "${envs[@]}" -- "${E2E_SERVER_ARGS[@]}" "$@"
  if ! wait_healthy "$port" "$(e2e_cap "$E2E_HEALTH_S")"; then
    tail -20 "$OUT/logs/$tag.log"; stop_all; return 1
  fi
  grep -hiE "sage_attn|graph|attention backend" "$OUT/logs/$tag.log" | head -12
  e2e_workloads "$tag" "$port"
  if declare -F e2e_while_up >/dev/null; then e2e_while_up "$tag" "$port"; fi
  stop_all
}
